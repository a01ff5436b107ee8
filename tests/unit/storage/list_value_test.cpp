// ListValue (the ring buffer behind list keys) against std::deque under random operations.
#include <gtest/gtest.h>

#include <deque>
#include <string>

#include "base/random.h"
#include "storage/list_value.h"

namespace keel::storage {
namespace {

void expect_same(const ListValue& l, const std::deque<std::string>& model) {
  ASSERT_EQ(l.size(), model.size());
  for (size_t i = 0; i < model.size(); ++i) ASSERT_EQ(l[i], model[i]) << "index " << i;
}

TEST(ListValue, MatchesADequeUnderRandomOperations) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SeededRandom rng(seed);
    ListValue l;
    std::deque<std::string> model;
    for (int step = 0; step < 3000; ++step) {
      std::string v = std::to_string(step) + std::string(rng.uniform(3) == 0 ? 20 : 0, 'x');
      // Bias towards growth early and shrinking late, so buffers both grow and shrink.
      const bool grow = step < 1500 ? rng.chance(0.7) : rng.chance(0.3);
      switch (rng.uniform(4)) {
        case 0:
          if (grow) {
            l.push_front(v);
            model.push_front(v);
          } else if (!model.empty()) {
            ASSERT_EQ(l.pop_front(), model.front());
            model.pop_front();
          }
          break;
        case 1:
          if (grow) {
            l.push_back(v);
            model.push_back(v);
          } else if (!model.empty()) {
            ASSERT_EQ(l.pop_back(), model.back());
            model.pop_back();
          }
          break;
        case 2:
          if (grow) {
            size_t i = rng.uniform(model.size() + 1);
            l.insert(i, v);
            model.insert(model.begin() + static_cast<long>(i), v);
          } else if (!model.empty()) {
            size_t i = rng.uniform(model.size());
            l.erase(i);
            model.erase(model.begin() + static_cast<long>(i));
          }
          break;
        case 3:
          if (!model.empty()) {
            size_t i = rng.uniform(model.size());
            l[i] = v;
            model[i] = v;
          }
          break;
      }
      if (step % 97 == 0) expect_same(l, model);
    }
    expect_same(l, model);
    ListValue copy = l;
    EXPECT_TRUE(copy == l);
  }
}

TEST(ListValue, EmptyListHoldsNoBuffer) {
  ListValue l;
  EXPECT_EQ(l.capacity(), 0u);
  for (int i = 0; i < 1000; ++i) l.push_back(std::to_string(i));
  EXPECT_GE(l.capacity(), 1000u);
  while (!l.empty()) (void)l.pop_front();
  EXPECT_EQ(l.capacity(), 0u);
}

}  // namespace
}  // namespace keel::storage
