#include "base/random.h"

#include <gtest/gtest.h>

#include <vector>

namespace keel {

TEST(Random, SameSeedSameSequence) {
  SeededRandom a(42), b(42), c(43);
  std::vector<uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next_u64());
    vb.push_back(b.next_u64());
    vc.push_back(c.next_u64());
  }
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
}

TEST(Random, UniformStaysInRangeAndCoversIt) {
  SeededRandom r(7);
  std::vector<int> hits(10, 0);
  for (int i = 0; i < 10000; ++i) {
    auto v = r.uniform(10);
    ASSERT_LT(v, 10u);
    hits[v]++;
  }
  for (int h : hits) EXPECT_GT(h, 800);  // each bucket near 1000
  for (int i = 0; i < 1000; ++i) {
    auto v = r.range(-3, 3);
    ASSERT_GE(v, -3);
    ASSERT_LE(v, 3);
  }
}

}  // namespace keel
