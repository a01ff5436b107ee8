// The cache operations against a real memory Engine: TTLs, per-partition bounds with lru, lfu
// and none, generations, purge.
#include "services/cache/ops.h"

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/slots.h"
#include "services/cache/keyspace.h"

namespace keel::cache {
namespace {

constexpr uint32_t kParts = 1024;

class CacheOps : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::EngineConfig c;
    c.kind = storage::EngineConfig::Kind::kMemory;
    c.partitions = kParts;
    auto e = storage::open_engines(c, 1, clock);
    ASSERT_TRUE(e);
    engines = std::move(*e);
  }
  storage::Engine& eng() { return *engines[0]; }
  static uint32_t part(std::string_view k) { return key_partition(k, kParts); }
  Result<PutOutcome> put(const Active& a, std::string_view k, std::string_view v,
                         std::optional<int64_t> ttl = std::nullopt) {
    return cache::put(eng(), part(k), kParts, a, k, v, ttl, clock.now_ms());
  }
  std::optional<std::string> get(const Active& a, std::string_view k) {
    auto r = cache::get(eng(), part(k), a, k, clock.now_ms());
    EXPECT_TRUE(r);
    if (!r || !*r) return std::nullopt;
    return (*r)->value;
  }
  static Active make(uint64_t gen, Eviction ev, uint64_t max_entries, uint64_t max_memory = 0) {
    Active a;
    a.def.name = "c";
    a.def.eviction = ev;
    a.def.max_entries = max_entries;
    a.def.max_memory_bytes = max_memory;
    a.generation = gen;
    return a;
  }
  ManualClock clock;
  std::vector<std::unique_ptr<storage::Engine>> engines;
};

TEST_F(CacheOps, PutGetRemoveAndDefaultTtl) {
  Active a = make(1, Eviction::kLru, 0);
  a.def.default_ttl_ms = 1000;
  ASSERT_TRUE(put(a, "k", "v"));
  ASSERT_TRUE(put(a, "long", "v", 10'000));
  EXPECT_EQ(get(a, "k"), "v");
  // The entry is stored under the cache's namespace, in the user key's partition.
  auto raw = eng().get(part("k"), entry_key("c", 1, "k"), clock.now_ms());
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->expire_at_ms, clock.now_ms() + 1000);
  EXPECT_FALSE(eng().get(part("k"), "k", clock.now_ms()));
  clock.advance_ms(1001);
  EXPECT_EQ(get(a, "k"), std::nullopt);  // defaultTtl applied
  EXPECT_EQ(get(a, "long"), "v");        // explicit ttl wins
  EXPECT_EQ(*cache::remove(eng(), part("long"), a, "long", clock.now_ms()), true);
  EXPECT_EQ(*cache::remove(eng(), part("long"), a, "long", clock.now_ms()), false);
  EXPECT_EQ(get(a, "long"), std::nullopt);
}

// maxEntries 2048 over 1024 partitions: two entries per partition. {t} keeps the keys in one.
TEST_F(CacheOps, LruEvictsTheLeastRecentlyUsedInThePartition) {
  Active a = make(1, Eviction::kLru, 2 * kParts);
  ASSERT_TRUE(put(a, "{t}a", "1"));
  ASSERT_TRUE(put(a, "{t}b", "2"));
  EXPECT_EQ(get(a, "{t}a"), "1");  // a is now more recent than b
  auto r = put(a, "{t}c", "3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->evicted, 1u);
  EXPECT_EQ(get(a, "{t}a"), "1");
  EXPECT_EQ(get(a, "{t}b"), std::nullopt);
  EXPECT_EQ(get(a, "{t}c"), "3");
  // Overwriting an entry does not evict.
  r = put(a, "{t}c", "33");
  EXPECT_EQ(r->evicted, 0u);
  EXPECT_EQ(usage_in_partition(eng(), part("{t}a"), a, clock.now_ms()).entries, 2u);
  // Other partitions are not limited by this one.
  ASSERT_TRUE(put(a, "elsewhere", "x"));
  EXPECT_NE(part("elsewhere"), part("{t}a"));
  EXPECT_EQ(get(a, "elsewhere"), "x");
}

TEST_F(CacheOps, LfuEvictsTheLeastFrequentlyUsed) {
  Active a = make(1, Eviction::kLfu, 2 * kParts);
  ASSERT_TRUE(put(a, "{t}a", "1"));
  ASSERT_TRUE(put(a, "{t}b", "2"));
  get(a, "{t}a");
  get(a, "{t}a");
  get(a, "{t}b");  // b is the most recent, but a has more hits
  ASSERT_EQ(put(a, "{t}c", "3")->evicted, 1u);
  EXPECT_EQ(get(a, "{t}a"), "1");
  EXPECT_EQ(get(a, "{t}b"), std::nullopt);
}

TEST_F(CacheOps, NoneRefusesWhenFullAndWritesNothing) {
  Active a = make(1, Eviction::kNone, 2 * kParts);
  ASSERT_TRUE(put(a, "{t}a", "1"));
  ASSERT_TRUE(put(a, "{t}b", "2"));
  auto r = put(a, "{t}c", "3");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kOutOfMemory);
  EXPECT_NE(r.error().message.find("eviction is none"), std::string::npos) << r.error().message;
  EXPECT_EQ(get(a, "{t}c"), std::nullopt);
  EXPECT_EQ(get(a, "{t}a"), "1");
  EXPECT_TRUE(put(a, "{t}a", "11"));  // replacing is not growing
}

TEST_F(CacheOps, MaxMemoryCountsKeyAndValueBytes) {
  Active a = make(1, Eviction::kLru, 0, 100 * kParts);  // 100 bytes per partition
  std::string v50(50, 'x');
  ASSERT_TRUE(put(a, "{t}a", v50));             // 4 + 50
  ASSERT_EQ(put(a, "{t}b", v50)->evicted, 1u);  // 108 > 100: a goes
  EXPECT_EQ(get(a, "{t}a"), std::nullopt);
  auto big = put(a, "{t}z", std::string(200, 'y'));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::kLimitExceeded);
  EXPECT_EQ(get(a, "{t}b"), v50);
}

TEST_F(CacheOps, ExpiredEntriesDoNotCountAgainstTheBound) {
  Active a = make(1, Eviction::kNone, 2 * kParts);
  ASSERT_TRUE(put(a, "{t}a", "1", 10));
  ASSERT_TRUE(put(a, "{t}b", "2", 10));
  clock.advance_ms(11);
  EXPECT_TRUE(put(a, "{t}c", "3"));
}

TEST_F(CacheOps, GenerationsIsolateAndPurgeRemovesOldOnes) {
  Active g1 = make(1, Eviction::kLru, 0);
  Active g2 = make(2, Eviction::kLru, 0);
  Active other = make(1, Eviction::kLru, 0);
  other.def.name = "c2";
  ASSERT_TRUE(put(g1, "k", "old"));
  ASSERT_TRUE(put(other, "k", "other"));
  EXPECT_EQ(get(g2, "k"), std::nullopt);
  ASSERT_TRUE(put(g2, "k", "new"));
  auto n = purge_partition(eng(), part("k"), "c", uint64_t{2}, clock.now_ms());
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(get(g1, "k"), std::nullopt);
  EXPECT_EQ(get(g2, "k"), "new");
  EXPECT_EQ(get(other, "k"), "other");  // "c2" is not "c"
  EXPECT_EQ(*purge_partition(eng(), part("k"), "c", std::nullopt, clock.now_ms()), 1u);
  EXPECT_EQ(get(g2, "k"), std::nullopt);
  EXPECT_EQ(get(other, "k"), "other");
}

// The garbage pass keeps exactly the current generation of the caches in the catalog.
TEST_F(CacheOps, PurgeStaleKeepsOnlyCurrentGenerationsOfKnownCaches) {
  Active cur = make(5, Eviction::kLru, 0);
  Active old = make(4, Eviction::kLru, 0);
  Active gone = make(1, Eviction::kLru, 0);
  gone.def.name = "gone";
  for (auto* a : {&cur, &old, &gone}) ASSERT_TRUE(put(*a, "{t}k", "v"));
  ASSERT_TRUE(eng().set_string(part("{t}k"), "{t}plain", "p", 0, clock.now_ms()));
  Catalog catalog;
  catalog.emplace("c", cur);
  auto n = purge_stale(eng(), part("{t}k"), catalog, clock.now_ms());
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(get(cur, "{t}k"), "v");
  EXPECT_EQ(get(old, "{t}k"), std::nullopt);
  EXPECT_EQ(get(gone, "{t}k"), std::nullopt);
  EXPECT_TRUE(eng().get(part("{t}k"), "{t}plain", clock.now_ms()));  // plain keys untouched
}

}  // namespace
}  // namespace keel::cache
