#include "keel/epoch_cache.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace keel::sdk {
namespace {

using Cache = EpochCache<std::string, std::string>;

TEST(EpochCache, PutGetAndFreshness) {
  Cache c;
  EXPECT_EQ(c.put("k", "v1", 5), EpochPut::kStored);
  EXPECT_EQ(c.get("k"), "v1");
  EXPECT_TRUE(c.is_fresh("k", 5));
  EXPECT_FALSE(c.is_fresh("k", 6));  // filled before the reader's epoch
  EXPECT_EQ(c.get("k", 6), std::nullopt);
  EXPECT_FALSE(c.is_fresh("other", 0));
  EXPECT_EQ(c.put("k", "old", 4), EpochPut::kOlder);  // a newer fill is already cached
  EXPECT_EQ(c.get("k"), "v1");
  EXPECT_EQ(c.put("k", "v2", 7), EpochPut::kStored);
  EXPECT_EQ(c.get("k", 7), "v2");
}

TEST(EpochCache, InvalidateDropsOlderFillsAndRefusesLateOnes) {
  Cache c;
  c.put("a", "1", 3);
  c.put("b", "1", 3);
  c.put("c", "1", 9);
  c.invalidate({"a", "c", "never-cached"}, 5);
  EXPECT_EQ(c.get("a"), std::nullopt);
  EXPECT_EQ(c.get("b"), "1");  // not named
  EXPECT_EQ(c.get("c"), "1");  // filled after the change
  // A read that started before the change and finishes after it must not resurrect it.
  EXPECT_EQ(c.put("a", "late", 4), EpochPut::kStale);
  EXPECT_EQ(c.put("never-cached", "late", 4), EpochPut::kStale);
  EXPECT_EQ(c.put("a", "new", 5), EpochPut::kStored);
  EXPECT_EQ(c.stats().refused, 2u);
}

TEST(EpochCache, EpochBoundaryDropsEverythingOlder) {
  Cache c;
  c.put("a", "1", 1);
  c.put("b", "1", 2);
  c.put("c", "1", 3);
  c.invalidate_all(3);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_TRUE(c.is_fresh("c", 3));
  EXPECT_EQ(c.put("a", "x", 2), EpochPut::kStale);
  EXPECT_EQ(c.floor_epoch(), 3u);
}

TEST(EpochCache, LruEviction) {
  Cache c(Cache::Options{.max_entries = 2, .max_marks = 8});
  c.put("a", "1", 1);
  c.put("b", "1", 1);
  EXPECT_EQ(c.get("a"), "1");  // a is now the most recent
  c.put("c", "1", 1);          // evicts b
  EXPECT_EQ(c.get("b"), std::nullopt);
  EXPECT_EQ(c.get("a"), "1");
  EXPECT_EQ(c.get("c"), "1");
  EXPECT_EQ(c.stats().evicted, 1u);
}

TEST(EpochCache, ForgettingAMarkRaisesTheFloorSoNothingStaleGetsIn) {
  Cache c(Cache::Options{.max_entries = 8, .max_marks = 2});
  c.put("z", "1", 1);
  c.invalidate({"a"}, 4);
  c.invalidate({"b"}, 5);
  c.invalidate({"c"}, 6);  // drops a's mark (the oldest): floor becomes 4
  EXPECT_EQ(c.marks(), 2u);
  EXPECT_EQ(c.floor_epoch(), 4u);
  EXPECT_EQ(c.put("a", "late", 3), EpochPut::kStale);
  EXPECT_EQ(c.get("z"), std::nullopt);  // filled at 1 < floor
}

// ---- model ---------------------------------------------------------------------------------
// The obvious implementation: vectors, linear scans, same rules.
struct Model {
  size_t max_entries, max_marks;
  struct E {
    int key;
    int value;
    uint64_t epoch;
  };
  std::vector<E> lru;                             // most recent first
  std::vector<std::pair<int, uint64_t>> marks;    // oldest first
  uint64_t floor = 0;

  std::optional<size_t> find(int k) const {
    for (size_t i = 0; i < lru.size(); ++i)
      if (lru[i].key == k) return i;
    return std::nullopt;
  }
  uint64_t mark(int k) const {
    for (auto& [mk, me] : marks)
      if (mk == k) return me;
    return 0;
  }
  void raise(uint64_t e) {
    floor = e;
    std::erase_if(lru, [&](const E& x) { return x.epoch < floor; });
    std::erase_if(marks, [&](const auto& m) { return m.second <= floor; });
  }
  EpochPut put(int k, int v, uint64_t e) {
    if (e < floor || e < mark(k)) return EpochPut::kStale;
    if (auto i = find(k)) {
      if (e < lru[*i].epoch) return EpochPut::kOlder;
      lru.erase(lru.begin() + static_cast<long>(*i));
    }
    lru.insert(lru.begin(), E{k, v, e});
    if (lru.size() > max_entries) lru.pop_back();
    return EpochPut::kStored;
  }
  std::optional<int> get(int k, uint64_t min) {
    auto i = find(k);
    if (!i || lru[*i].epoch < min) return std::nullopt;
    E x = lru[*i];
    lru.erase(lru.begin() + static_cast<long>(*i));
    lru.insert(lru.begin(), x);
    return x.value;
  }
  bool fresh(int k, uint64_t e) const {
    auto i = find(k);
    return i && lru[*i].epoch >= e;
  }
  void invalidate(const std::vector<int>& keys, uint64_t e) {
    for (int k : keys) {
      if (e <= floor) continue;
      if (mark(k) < e) {
        std::erase_if(marks, [&](const auto& m) { return m.first == k; });
        marks.emplace_back(k, e);
        while (marks.size() > max_marks) {
          auto [ok, oe] = marks.front();
          marks.erase(marks.begin());
          if (oe > floor) raise(oe);
        }
      }
      if (auto i = find(k); i && lru[*i].epoch < e) lru.erase(lru.begin() + static_cast<long>(*i));
    }
  }
  void invalidate_all(uint64_t e) {
    if (e > floor) raise(e);
  }
};

RC_GTEST_PROP(EpochCacheProps, BehavesLikeTheModel, ()) {
  const size_t max_entries = *rc::gen::inRange<size_t>(1, 6);
  const size_t max_marks = *rc::gen::inRange<size_t>(1, 5);
  EpochCache<int, int> cache(EpochCache<int, int>::Options{max_entries, max_marks});
  Model model{max_entries, max_marks, {}, {}, 0};
  const int nops = *rc::gen::inRange(1, 200);
  for (int i = 0; i < nops; ++i) {
    const int op = *rc::gen::inRange(0, 10);
    const int key = *rc::gen::inRange(0, 8);
    const uint64_t epoch = *rc::gen::inRange<uint64_t>(0, 30);
    if (op <= 3) {
      const int value = *rc::gen::inRange(0, 1000);
      RC_ASSERT(cache.put(key, value, epoch) == model.put(key, value, epoch));
    } else if (op <= 5) {
      RC_ASSERT(cache.get(key, epoch / 3) == model.get(key, epoch / 3));
    } else if (op == 6) {
      RC_ASSERT(cache.is_fresh(key, epoch) == model.fresh(key, epoch));
    } else if (op <= 8) {
      std::vector<int> keys = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 8));
      cache.invalidate(std::span<const int>(keys), epoch);
      model.invalidate(keys, epoch);
    } else if (*rc::gen::inRange(0, 3) == 0) {
      cache.invalidate_all(epoch / 2);
      model.invalidate_all(epoch / 2);
    }
    RC_ASSERT(cache.size() <= max_entries);
    RC_ASSERT(cache.marks() <= max_marks);
    RC_ASSERT(cache.size() == model.lru.size());
    RC_ASSERT(cache.marks() == model.marks.size());
    RC_ASSERT(cache.floor_epoch() == model.floor);
  }
  std::vector<std::tuple<int, int, uint64_t>> got, want;
  cache.for_each([&](int k, int v, uint64_t e) { got.emplace_back(k, v, e); });
  for (auto& e : model.lru) want.emplace_back(e.key, e.value, e.epoch);
  RC_ASSERT(got == want);
}

// The safety property on its own, against a history of writes: a value the cache returns for
// an epoch is never one that an invalidation the cache has seen made stale.
RC_GTEST_PROP(EpochCacheProps, NeverServesAValueOlderThanAKnownInvalidation, ()) {
  EpochCache<int, int> cache(EpochCache<int, int>::Options{4, 2});
  std::vector<uint64_t> newest_inv(8, 0);
  const int nops = *rc::gen::inRange(1, 200);
  for (int i = 0; i < nops; ++i) {
    const int key = *rc::gen::inRange(0, 8);
    const uint64_t epoch = *rc::gen::inRange<uint64_t>(0, 40);
    switch (*rc::gen::inRange(0, 3)) {
      case 0:
        cache.put(key, static_cast<int>(epoch), epoch);  // the value is its fill epoch
        break;
      case 1: {
        const int k[1] = {key};
        cache.invalidate(std::span<const int>(k), epoch);
        newest_inv[static_cast<size_t>(key)] = std::max(newest_inv[static_cast<size_t>(key)], epoch);
        break;
      }
      default:
        if (auto v = cache.get(key)) {
          RC_ASSERT(static_cast<uint64_t>(*v) >= newest_inv[static_cast<size_t>(key)]);
        }
    }
  }
}

}  // namespace
}  // namespace keel::sdk
