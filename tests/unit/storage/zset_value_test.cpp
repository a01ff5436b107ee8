// ZSetValue (the sorted-set value) against a sorted vector under random operations: ranks,
// elements by rank and score bounds must agree, and copies must be independent.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/random.h"
#include "storage/zset_tree.h"
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

// The B+ tree itself with 4-entry nodes, so that a few thousand entries make five or six
// levels: inserts, erasures that empty leaves and inner nodes (runs from either end and
// random ones), ties on score, rank <-> entry both ways, iteration both ways across leaves,
// bounds with a null member, and moves.
TEST(ZSetTree, MatchesAnOrderedSetThroughGrowthAndErasure) {
  using Tree = BasicZSetTree<4>;
  using Key = std::pair<double, std::string>;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SeededRandom rng(seed);
    std::deque<std::string> members;  // stable addresses, as the hash map's keys are
    std::map<std::string, double> score_of;
    std::set<Key> model;
    Tree t;
    auto entry = [&](const std::string& m) { return ZSetEntry{score_of.at(m), &m}; };
    auto check = [&] {
      ASSERT_EQ(t.size(), model.size());
      size_t r = 0;
      auto it = t.begin();
      for (const auto& [score, member] : model) {
        ASSERT_NE(it, t.end()) << "rank " << r;
        ASSERT_EQ(it->score, score);
        ASSERT_EQ(*it->member, member) << "rank " << r;
        auto at = t.find_by_order(r);
        ASSERT_EQ(*at->member, member) << "find_by_order " << r;
        ASSERT_EQ(t.order_of_key(*it), r);
        ++it;
        ++r;
      }
      ASSERT_EQ(it, t.end());
      if (!model.empty()) {  // backwards from the last entry
        auto back = t.find_by_order(model.size() - 1);
        size_t n = 0;
        for (auto m = model.rbegin(); m != model.rend(); ++m, ++n) {
          ASSERT_EQ(*back->member, m->second) << "backwards " << n;
          if (n + 1 < model.size()) --back;
        }
      }
      for (int k = 0; k < 8; ++k) {  // score bounds: below s, and at most s (null member)
        double s = static_cast<double>(rng.range(-40, 40)) / 4;
        static const std::string kLowest;
        size_t below = 0, at_most = 0;
        for (const auto& [score, member] : model) {
          below += score < s;
          at_most += score <= s;
        }
        ASSERT_EQ(t.order_of_key(ZSetEntry{s, &kLowest}), below);
        ASSERT_EQ(t.order_of_key(ZSetEntry{s, nullptr}), at_most);
      }
    };
    auto add = [&](int id) {
      std::string name = "m" + std::to_string(id);
      if (score_of.count(name)) return;
      members.push_back(name);
      double s = static_cast<double>(rng.range(-40, 40)) / 4;  // many ties
      score_of[name] = s;
      t.insert(ZSetEntry{s, &members.back()});
      model.insert({s, name});
    };
    auto remove = [&](const std::string& name) {
      auto pos = std::find(members.begin(), members.end(), name);
      ASSERT_TRUE(t.erase(entry(*pos)));
      ASSERT_FALSE(t.erase(entry(*pos)));  // gone
      model.erase({score_of.at(name), name});
      score_of.erase(name);
    };
    for (int i = 0; i < 3000; ++i) add(static_cast<int>(rng.uniform(100000)));
    check();
    // Erase the lowest third, the highest third, then random ones, checking as leaves and
    // inner nodes empty; then grow again over the thinned tree.
    for (int phase = 0; phase < 3; ++phase) {
      for (int i = 0; i < 700 && !model.empty(); ++i) {
        Key k = phase == 0 ? *model.begin() : phase == 1 ? *model.rbegin()
                                                         : *std::next(model.begin(), static_cast<long>(rng.uniform(model.size())));
        remove(k.second);
      }
      check();
    }
    for (int i = 0; i < 1500; ++i) add(static_cast<int>(rng.uniform(100000)));
    check();
    Tree moved = std::move(t);
    EXPECT_TRUE(t.empty());
    t = std::move(moved);
    check();
    while (!model.empty()) remove(model.begin()->second);
    check();
    EXPECT_EQ(t.begin(), t.end());
  }
}

// Erasing nine members in ten at random keeps the leaves from thinning to an entry or two
// each (they would cost a whole leaf per member): a leaf down to a quarter joins its neighbour.
TEST(ZSetTree, RandomErasuresKeepLeavesReasonablyFull) {
  using Tree = BasicZSetTree<16>;
  SeededRandom rng(7);
  std::deque<std::string> members;
  std::set<std::pair<double, std::string>> model;
  Tree t;
  for (int i = 0; i < 20000; ++i) {
    members.push_back("m" + std::to_string(i));
    double s = static_cast<double>(rng.uniform(1000000));
    t.insert(ZSetEntry{s, &members.back()});
    model.insert({s, members.back()});
  }
  std::vector<std::pair<double, std::string>> all(model.begin(), model.end());
  for (size_t i = all.size(); i > 1; --i) std::swap(all[i - 1], all[rng.uniform(i)]);
  for (size_t i = 0; i < all.size() * 9 / 10; ++i) {
    auto pos = std::find(members.begin(), members.end(), all[i].second);
    ASSERT_TRUE(t.erase(ZSetEntry{all[i].first, &*pos}));
    model.erase(all[i]);
  }
  ASSERT_EQ(t.size(), model.size());
  size_t r = 0;
  for (auto it = t.begin(); it != t.end(); ++it, ++r) {
    auto m = std::next(model.begin(), static_cast<long>(r));
    ASSERT_EQ(*it->member, m->second);
    ASSERT_EQ(t.order_of_key(*it), r);
  }
  // Without merging: 2,000 entries in 1,170 leaves here (1.7 per leaf). With it: 3 or more.
  EXPECT_GE(t.size(), 3 * t.leaves()) << t.size() << " entries in " << t.leaves() << " leaves";
}

}  // namespace
}  // namespace keel::storage
