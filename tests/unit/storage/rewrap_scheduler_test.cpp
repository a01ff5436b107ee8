// The background rewrap's pure scheduler: order, resume, and the bounded rate.
#include "storage/rewrap_scheduler.h"

#include <gtest/gtest.h>

namespace keel::storage {
namespace {

TEST(RewrapScheduler, VisitsPartitionsInOrderAndResumes) {
  RewrapScheduler s({/*keys_per_s=*/1000, /*burst=*/100});
  s.start(2, {3, 5, 9}, {{5, "k50"}}, 0);
  EXPECT_EQ(s.target(), 2u);
  EXPECT_EQ(s.partitions_pending(), 3u);
  EXPECT_FALSE(s.next(0));  // no tokens yet
  auto a = s.next(100);     // 100 ms: 100 tokens
  ASSERT_TRUE(a);
  EXPECT_EQ(a->partition, 3u);
  EXPECT_EQ(a->start_key, "");
  EXPECT_EQ(a->max_keys, 100u);
  EXPECT_FALSE(s.finished(*a, 40, std::string("k40")));
  auto b = s.next(100);  // 60 tokens left
  ASSERT_TRUE(b);
  EXPECT_EQ(b->partition, 3u);
  EXPECT_EQ(b->start_key, "k40");
  EXPECT_EQ(b->max_keys, 60u);
  EXPECT_TRUE(s.finished(*b, 10, std::nullopt));
  auto c = s.next(100);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->partition, 5u);
  EXPECT_EQ(c->start_key, "k50");  // from the persisted cursor
  EXPECT_TRUE(s.finished(*c, 50, std::nullopt));
  EXPECT_FALSE(s.next(100));  // bucket empty
  auto d = s.next(200);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->partition, 9u);
  EXPECT_TRUE(s.finished(*d, 0, std::nullopt));
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.next(10000));
}

TEST(RewrapScheduler, RateIsBoundedOverTime) {
  // Whatever the driver does, examined keys never exceed rate * elapsed + burst.
  RewrapScheduler s({250, 50});
  std::vector<uint32_t> parts;
  for (uint32_t p = 0; p < 1000; ++p) parts.push_back(p);
  s.start(1, parts, {}, 0);
  uint64_t examined = 0;
  for (int64_t t = 0; t <= 60'000; t += 7) {
    while (auto step = s.next(t)) {
      examined += step->max_keys;
      s.finished(*step, step->max_keys, std::string("more"));
    }
    ASSERT_LE(static_cast<double>(examined), 250.0 * static_cast<double>(t) / 1000.0 + 50.0) << "at " << t;
  }
  EXPECT_GE(examined, 250u * 59u);  // and it does use the rate
}

TEST(RewrapScheduler, ClockGoingBackDoesNotMintTokens) {
  RewrapScheduler s({1000, 1000});
  s.start(1, {0}, {}, 10'000);
  EXPECT_FALSE(s.next(5'000));
  EXPECT_FALSE(s.next(5'000));
  auto a = s.next(5'010);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->max_keys, 10u);
}

TEST(RewrapScheduler, SkipAndRestart) {
  RewrapScheduler s({1000, 10});
  s.start(1, {1, 2}, {}, 0);
  auto a = s.next(1000);
  ASSERT_TRUE(a);
  s.skip_current();
  auto b = s.next(1000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->partition, 2u);
  s.start(2, {7}, {}, 1000);  // a rotation: a new pass
  EXPECT_EQ(s.target(), 2u);
  auto c = s.next(1100);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->partition, 7u);
}

}  // namespace
}  // namespace keel::storage
