// Brute-force lockout (security/lockout.h): the exponential schedule, success clearing, the
// admin's unlock, the bound, and a property against a naive model.
#include "security/lockout.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>

namespace keel::security {
namespace {

TEST(Lockout, LocksAfterThresholdAndDoubles) {
  Lockout l({3, 1000, 8000, 100});
  EXPECT_EQ(l.failure("user:a", 0), 0);
  EXPECT_EQ(l.failure("user:a", 10), 0);
  EXPECT_EQ(l.locked_for("user:a", 10), 0);
  EXPECT_EQ(l.failure("user:a", 20), 1000);
  EXPECT_EQ(l.locked_for("user:a", 20), 1000);
  EXPECT_EQ(l.locked_for("user:a", 1019), 1);
  EXPECT_EQ(l.locked_for("user:a", 1020), 0);
  EXPECT_EQ(l.failure("user:a", 1020), 2000);
  EXPECT_EQ(l.failure("user:a", 3020), 4000);
  EXPECT_EQ(l.failure("user:a", 7020), 8000);
  EXPECT_EQ(l.failure("user:a", 15020), 8000);  // capped
  EXPECT_EQ(l.locked_for("user:b", 15020), 0);
}

TEST(Lockout, SuccessAndUnlockClear) {
  Lockout l({2, 1000, 8000, 100});
  l.failure("user:a", 0);
  l.success("user:a");
  EXPECT_EQ(l.failure("user:a", 1), 0);  // counting starts again
  EXPECT_EQ(l.failure("user:a", 2), 1000);
  l.failure("addr:10.0.0.1", 2);
  l.failure("addr:10.0.0.1", 2);
  ASSERT_EQ(l.entries().size(), 2u);
  EXPECT_EQ(l.entries()[0].subject, "addr:10.0.0.1");
  EXPECT_EQ(l.unlock("user:a"), 1u);
  EXPECT_EQ(l.locked_for("user:a", 3), 0);
  EXPECT_EQ(l.unlock("user:zzz"), 0u);
  EXPECT_EQ(l.unlock("*"), 1u);
  EXPECT_EQ(l.size(), 0u);
}

TEST(Lockout, OffWithThresholdZero) {
  Lockout l({0, 1000, 8000, 100});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(l.failure("user:a", i), 0);
  EXPECT_EQ(l.size(), 0u);
}

TEST(Lockout, BoundedForgetsTheLeastRecent) {
  Lockout l({1, 1000, 8000, 3});
  l.failure("a", 0);
  l.failure("b", 1);
  l.failure("c", 2);
  l.failure("a", 3);  // a is now the most recent
  l.failure("d", 4);  // b is forgotten
  EXPECT_EQ(l.size(), 3u);
  EXPECT_EQ(l.locked_for("b", 4), 0);
  EXPECT_GT(l.locked_for("a", 4), 0);
  EXPECT_GT(l.locked_for("c", 4), 0);
}

// Against a model with unbounded memory: while nothing is evicted, the lock equals the model's.
TEST(Lockout, MatchesModel) {
  rc::check([] {
    const uint64_t threshold = *rc::gen::inRange<uint64_t>(1, 6);
    Lockout l({threshold, 100, 3200, 1000});
    std::map<std::string, std::pair<uint64_t, int64_t>> model;  // failures, locked until
    int64_t now = 0;
    const auto ops = *rc::gen::container<std::vector<std::pair<int, int>>>(
        rc::gen::pair(rc::gen::inRange(0, 3), rc::gen::inRange(0, 4)));
    for (auto [op, who] : ops) {
      std::string s = "user:" + std::to_string(who);
      now += 37;
      if (op == 0) {
        l.success(s);
        model.erase(s);
      } else {
        l.failure(s, now);
        auto& [f, until] = model[s];
        ++f;
        if (f >= threshold) {
          int64_t ms = 100;
          for (uint64_t i = threshold; i < f && ms < 3200; ++i) ms *= 2;
          until = now + std::min<int64_t>(ms, 3200);
        }
      }
      for (auto& [k, v] : model) RC_ASSERT(l.locked_for(k, now) == std::max<int64_t>(0, v.second - now));
    }
  });
}

}  // namespace
}  // namespace keel::security

namespace keel::security {
namespace {

// ---- The cluster-wide table's pure parts (AclService's cluster-wide lockout) ----

TEST(LockoutTable, LockMsIsTheScheduleOfThePolicy) {
  LockoutPolicy p{3, 1000, 8000, 100};
  EXPECT_EQ(Lockout::lock_ms(p, 2), 0);
  EXPECT_EQ(Lockout::lock_ms(p, 3), 1000);
  EXPECT_EQ(Lockout::lock_ms(p, 4), 2000);
  EXPECT_EQ(Lockout::lock_ms(p, 100), 8000);
  EXPECT_EQ(Lockout::lock_ms({0, 1000, 8000, 100}, 100), 0);  // off
}

TEST(LockoutTable, MirrorReplacesAndForgetsAndStaysBounded) {
  Lockout l({3, 1000, 8000, 2});
  l.failure("user:a", 0);
  // The cluster says: 5 failures, locked until 9000.
  l.mirror({"user:a", 5, 100, 9000});
  EXPECT_EQ(l.locked_for("user:a", 1000), 8000);
  ASSERT_EQ(l.entries().size(), 1u);
  EXPECT_EQ(l.entries()[0].failures, 5u);
  // Cleared through another node: the cluster holds nothing, so neither does this node.
  l.mirror({"user:a", 0, 0, 0});
  EXPECT_EQ(l.size(), 0u);
  EXPECT_EQ(l.locked_for("user:a", 1000), 0);
  l.mirror({"addr:1", 1, 1, 0});
  l.mirror({"addr:2", 1, 2, 0});
  l.mirror({"addr:3", 1, 3, 0});
  EXPECT_EQ(l.size(), 2u);  // bounded: the least recent went
  EXPECT_EQ(l.entries()[0].subject, "addr:3");
}

TEST(LockoutTable, EntriesFromTheHashMostRecentFirst) {
  using V = std::optional<std::string>;
  std::vector<V> flat{V("user:a"), V("4"), V("user:a t"), V("1000 61000"), V("addr:10.0.0.7"), V("2"),
                      V("addr:10.0.0.7 t"), V("2000 0"), V("user:b t"), V("garbage"), V("user:c"), V("x")};
  auto es = lockout_entries(flat);
  ASSERT_EQ(es.size(), 2u);  // user:b has no count, user:c a malformed one
  EXPECT_EQ(es[0].subject, "addr:10.0.0.7");
  EXPECT_EQ(es[0].failures, 2u);
  EXPECT_EQ(es[0].last_failure_ms, 2000);
  EXPECT_EQ(es[0].locked_until_ms, 0);
  EXPECT_EQ(es[1].subject, "user:a");
  EXPECT_EQ(es[1].failures, 4u);
  EXPECT_EQ(es[1].locked_until_ms, 61000);
  EXPECT_EQ(lockout_times_field("user:a"), "user:a t");
  EXPECT_EQ(encode_lockout_times(5, 6), "5 6");
  auto e = lockout_entry("user:z", std::nullopt, std::nullopt);
  EXPECT_EQ(e.failures, 0u);
}

TEST(LockoutTable, RepliesAreParsedStrictly) {
  auto a = parse_bulk_array("*3\r\n$1\r\n3\r\n$-1\r\n$9\r\n1000 2000\r\n");
  ASSERT_TRUE(a);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ((*a)[0], "3");
  EXPECT_FALSE((*a)[1]);
  EXPECT_EQ((*a)[2], "1000 2000");
  EXPECT_TRUE(parse_bulk_array("*0\r\n")->empty());
  EXPECT_FALSE(parse_bulk_array("-CLUSTERDOWN no quorum\r\n"));
  EXPECT_FALSE(parse_bulk_array("*2\r\n$1\r\n3\r\n"));        // cut
  EXPECT_FALSE(parse_bulk_array("*1\r\n$5\r\n3\r\n"));        // wrong length
  EXPECT_FALSE(parse_bulk_array("*1\r\n:3\r\n"));             // not a bulk string
  EXPECT_EQ(parse_integer_reply(":42\r\n"), 42);
  EXPECT_FALSE(parse_integer_reply("-WRONGTYPE x\r\n"));
  EXPECT_FALSE(parse_integer_reply(":4x\r\n"));
}

}  // namespace
}  // namespace keel::security
