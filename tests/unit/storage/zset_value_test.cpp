// ZSetValue (the sorted-set value) against a sorted vector under random operations: ranks,
// elements by rank and score bounds must agree, and copies must be independent.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "base/random.h"
#include "storage/zset_value.h"

namespace keel::storage {
namespace {

using Model = std::map<std::string, double>;

std::vector<std::pair<double, std::string>> sorted(const Model& m) {
  std::vector<std::pair<double, std::string>> v;
  for (auto& [k, s] : m) v.emplace_back(s, k);
  std::sort(v.begin(), v.end());
  return v;
}

void check(const ZSetValue& z, const Model& m, SeededRandom& rng) {
  auto v = sorted(m);
  ASSERT_EQ(z.size(), v.size());
  for (size_t r = 0; r < v.size(); ++r) {
    auto it = z.at(r);
    ASSERT_EQ(*it->member, v[r].second) << "rank " << r;
    ASSERT_EQ(it->score, v[r].first);
    ASSERT_EQ(z.rank(v[r].second), static_cast<long long>(r));
  }
  EXPECT_EQ(z.rank("absent-member"), -1);
  for (int i = 0; i < 5; ++i) {
    double s = static_cast<double>(rng.range(-10, 10)) / 2;
    size_t below = 0, at_most = 0;
    for (auto& [score, member] : v) {
      below += score < s;
      at_most += score <= s;
    }
    ASSERT_EQ(z.count_below(s, false), below) << s;
    ASSERT_EQ(z.count_below(s, true), at_most) << s;
  }
}

TEST(ZSetValue, MatchesASortedVectorUnderRandomOperations) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SeededRandom rng(seed);
    ZSetValue z;
    Model m;
    for (int step = 0; step < 1500; ++step) {
      std::string member = "m" + std::to_string(rng.uniform(200));
      double score = static_cast<double>(rng.range(-10, 10)) / 2;  // many ties
      if (rng.chance(0.65)) {
        bool added = z.set(member, score);
        ASSERT_EQ(added, m.count(member) == 0);
        m[member] = score;
      } else {
        ASSERT_EQ(z.erase(member), m.erase(member) > 0);
      }
      if (step % 150 == 0) check(z, m, rng);
    }
    check(z, m, rng);
    ZSetValue copy = z;
    ZSetValue moved = std::move(copy);
    check(moved, m, rng);
    if (!m.empty()) {
      moved.erase(m.begin()->first);
      check(z, m, rng);  // the original is untouched by changes to its copy
    }
    EXPECT_TRUE(z == z);
  }
}

}  // namespace
}  // namespace keel::storage
