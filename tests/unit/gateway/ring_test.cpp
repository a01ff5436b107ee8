// Consistent hashing (gateway.balancer = consistent_hash): the same key goes to the same
// instance, removing one of N instances remaps only about 1/N of the keys, weights are
// honoured, unusable instances are skipped clockwise; and where the key comes from.
#include "gateway/ring.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>

#include "gateway/table.h"

namespace keel::gateway {
namespace {

std::vector<RingMember> members(size_t n, uint32_t weight = 1) {
  std::vector<RingMember> m;
  for (size_t i = 0; i < n; ++i) m.push_back({"svc/i-" + std::to_string(i), weight});
  return m;
}

const auto kAll = [](size_t) { return true; };

std::string owner(const HashRing& r, const std::vector<RingMember>& ms, std::string_view key) {
  auto i = r.pick(stable_hash(key), kAll);
  EXPECT_TRUE(i);
  return ms[*i].key;
}

TEST(HashRing, SameKeySameInstanceWhateverTheOrderOrTheNode) {
  auto ms = members(5);
  auto ring = HashRing::build(ms);
  EXPECT_EQ(ring.points(), 5 * HashRing::kPointsPerWeight);
  auto reversed = std::vector<RingMember>(ms.rbegin(), ms.rend());
  auto ring2 = HashRing::build(reversed);  // another node, instances listed in another order
  std::set<std::string> owners;
  for (int k = 0; k < 2000; ++k) {
    auto key = "user-" + std::to_string(k);
    auto a = owner(ring, ms, key);
    EXPECT_EQ(owner(ring, ms, key), a);
    EXPECT_EQ(owner(ring2, reversed, key), a) << key;
    owners.insert(a);
  }
  EXPECT_EQ(owners.size(), 5u);  // every instance owns some keys
  EXPECT_FALSE(HashRing().pick(1, kAll));
}

// Removing one of N instances moves the keys it owned and no other, and the share moved is
// about 1/N: for every N from 2 to 12 and every instance removed, over 20,000 keys, within
// [0.7/N, 1.3/N] (an instance's 128 points own its share give or take about 1/sqrt(128)).
TEST(HashRing, RemovingOneOfNRemapsAboutOneNth) {
  double worst = 0;
  for (size_t n = 2; n <= 12; ++n) {
    double total = 0;
    for (size_t gone = 0; gone < n; ++gone) {
      auto before = members(n);
      auto after = before;
      after.erase(after.begin() + static_cast<long>(gone));
      auto r1 = HashRing::build(before), r2 = HashRing::build(after);
      const int kKeys = 20000;
      int moved = 0;
      for (int k = 0; k < kKeys; ++k) {
        auto key = fmt::format("key-{}-{}", n, k);
        auto a = owner(r1, before, key), b = owner(r2, after, key);
        if (a != b) {
          ++moved;
          ASSERT_EQ(a, before[gone].key) << "a key of another instance moved";
        } else {
          ASSERT_NE(a, before[gone].key);
        }
      }
      double ratio = (double(moved) / kKeys) * double(n);  // 1.0 = exactly 1/N
      EXPECT_LE(ratio, 1.3) << "n=" << n << " gone=" << gone;
      EXPECT_GE(ratio, 0.7) << "n=" << n << " gone=" << gone;
      worst = std::max(worst, std::abs(ratio - 1));
      total += double(moved) / kKeys;
    }
    // Over all the instances removed, each key moved exactly once: the shares add up to 1.
    EXPECT_NEAR(total, 1.0, 1e-9) << "n=" << n;
  }
  RecordProperty("worst_relative_deviation", std::to_string(worst));
}

TEST(HashRing, WeightsAreHonoured) {
  std::vector<RingMember> ms{{"svc/light", 1}, {"svc/heavy", 3}, {"svc/mid", 2}};
  auto ring = HashRing::build(ms);
  std::map<std::string, int> count;
  const int kKeys = 60000;
  for (int k = 0; k < kKeys; ++k) ++count[owner(ring, ms, "k" + std::to_string(k))];
  EXPECT_NEAR(count["svc/light"] / double(kKeys), 1.0 / 6, 0.04);
  EXPECT_NEAR(count["svc/mid"] / double(kKeys), 2.0 / 6, 0.04);
  EXPECT_NEAR(count["svc/heavy"] / double(kKeys), 3.0 / 6, 0.04);
  EXPECT_GT(count["svc/heavy"], count["svc/mid"]);
  EXPECT_GT(count["svc/mid"], count["svc/light"]);
}

TEST(HashRing, UnusableInstancesAreSkippedClockwiseAndTheirKeysComeBack) {
  auto ms = members(4);
  auto ring = HashRing::build(ms);
  int moved = 0;
  for (int k = 0; k < 5000; ++k) {
    auto h = stable_hash("s" + std::to_string(k));
    auto a = *ring.pick(h, kAll);
    auto b = ring.pick(h, [](size_t i) { return i != 2; });  // instance 2 ejected
    ASSERT_TRUE(b);
    EXPECT_NE(*b, 2u);
    if (a != 2) EXPECT_EQ(*b, a);  // the others keep their keys
    else ++moved;
    EXPECT_EQ(*ring.pick(h, kAll), a);  // and when 2 is back, its keys are its own again
  }
  EXPECT_GT(moved, 0);
  EXPECT_FALSE(ring.pick(7, [](size_t) { return false; }));
  // Each member is asked once per pick, however many points it has.
  int asked = 0;
  ring.pick(7, [&](size_t) { ++asked; return false; });
  EXPECT_EQ(asked, 4);
}

TEST(HashKey, ParsesTheThreeSourcesAndRefusesOthersNamingWhatIsAllowed) {
  auto h = parse_hash_key("header:X-User");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->kind, HashKeySpec::Kind::kHeader);
  EXPECT_EQ(h->text(), "header:x-user");
  EXPECT_EQ(parse_hash_key("cookie:session")->kind, HashKeySpec::Kind::kCookie);
  EXPECT_EQ(parse_hash_key("param:userId")->text(), "param:userId");
  for (std::string bad : {"", "x-user", "query:a", "header:", "param:a-b", "cookie:a b"}) {
    auto r = parse_hash_key(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("allowed: header:NAME"), std::string::npos) << r.error().message;
  }
  EXPECT_NE(parse_hash_key("query:a").error().message.find("unknown source 'query'"), std::string::npos);
}

TEST(HashKey, CookieValues) {
  EXPECT_EQ(cookie_value("a=1; session=xyz; b=2", "session"), "xyz");
  EXPECT_EQ(cookie_value("session=\"q\"", "session"), "q");
  EXPECT_EQ(cookie_value("xsession=1;session=2", "session"), "2");
  EXPECT_FALSE(cookie_value("a=1; b", "session"));
  EXPECT_FALSE(cookie_value("", "session"));
}

TEST(HashKey, PolicyNames) {
  EXPECT_EQ(*parse_policy("consistent_hash"), Policy::kConsistentHash);
  EXPECT_EQ(*parse_policy("ring_hash"), Policy::kConsistentHash);
  EXPECT_EQ(policy_name(Policy::kConsistentHash), "consistent_hash");
  auto bad = parse_policy("maglev");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("allowed: least_request (p2c), round_robin, consistent_hash"), std::string::npos);
}

}  // namespace
}  // namespace keel::gateway
