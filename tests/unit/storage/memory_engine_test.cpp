// Memory-engine specifics: maxmemory policies, eviction quality, active expiry, accounting.
#include "storage/memory/memory_engine.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "base/random.h"
#include "test_util.h"

namespace keel::storage {
namespace {

std::unique_ptr<Engine> make(EvictionPolicy policy, uint64_t max_bytes, uint32_t partitions = 16,
                             uint64_t seed = 1) {
  EngineConfig c;
  c.kind = EngineConfig::Kind::kMemory;
  c.partitions = partitions;
  c.max_memory_bytes = max_bytes;
  c.eviction = policy;
  return make_memory_engine(c, seed);
}

bool volatile_only(EvictionPolicy p) {
  return p == EvictionPolicy::kVolatileLru || p == EvictionPolicy::kVolatileLfu ||
         p == EvictionPolicy::kVolatileTtl;
}

uint32_t part_of(const std::string& k, uint32_t partitions) {
  return static_cast<uint32_t>(mix64(std::hash<std::string>{}(k)) % partitions);
}

TEST(MemoryEngineOom, NoEvictionRefusesAndStoresNothing) {
  auto e = make(EvictionPolicy::kNoEviction, 64 << 10);
  const int64_t now = 1000;
  int stored = 0;
  Status last;
  std::string val(100, 'v');
  for (int i = 0; i < 100000; ++i) {
    std::string k = "key" + std::to_string(i);
    last = e->set_string(part_of(k, 16), k, val, 0, now);
    if (!last) {
      EXPECT_EQ(last.error().code, Errc::kOutOfMemory);
      EXPECT_EQ(last.error().message, "command not allowed when used memory > 'maxmemory'.");
      EXPECT_FALSE(e->get(part_of(k, 16), k, now).has_value());
      break;
    }
    ++stored;
  }
  ASSERT_FALSE(last.has_value()) << "never hit maxmemory";
  EXPECT_GT(stored, 100);
  EXPECT_EQ(e->size(), static_cast<uint64_t>(stored));
  EXPECT_LE(e->stats().used_memory_bytes, 64u << 10);
  EXPECT_EQ(e->stats().evicted_keys_total, 0u);
  // A batch that does not fit stores nothing either.
  std::vector<Engine::BatchOp> ops;
  for (int i = 0; i < 10; ++i)
    ops.push_back({0, "batch" + std::to_string(i), testing::str_value(val)});
  auto st = e->write_batch(ops, now);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, Errc::kOutOfMemory);
  EXPECT_EQ(e->size(), static_cast<uint64_t>(stored));
  EXPECT_FALSE(e->get(0, "batch0", now).has_value());
  // Deleting frees room; overwriting with a same-sized value is allowed again.
  ASSERT_TRUE(e->erase(part_of("key0", 16), "key0", now).value());
  ASSERT_TRUE(e->erase(part_of("key1", 16), "key1", now).value());
  EXPECT_TRUE(e->set_string(part_of("key0", 16), "key0", val, 0, now).has_value());
}

// Fills an engine, makes keys 0..199 hot, then inserts more keys to force evictions; returns
// how many hot keys survived.
// With `scan_after`, every key is then read once more by `scan_after` (as a snapshot stream
// reads a partition) before the inserts.
int hot_survivors(EvictionPolicy policy, uint64_t seed,
                  std::optional<ValueRef> (Engine::*scan_after)(uint32_t, std::string_view, int64_t) = nullptr) {
  // Measure the footprint of 1000 keys first, then cap memory there.
  auto probe = make(EvictionPolicy::kNoEviction, 0, 16, seed);
  std::string val(64, 'x');
  int64_t now = 1'700'000'000'000;
  for (int i = 0; i < 1000; ++i) {
    std::string k = "k" + std::to_string(i);
    EXPECT_TRUE(probe->set_string(part_of(k, 16), k, val, 0, now));
  }
  const uint64_t cap = probe->stats().used_memory_bytes * 21 / 20;  // slack for table growth
  auto e = make(policy, cap, 16, seed);
  for (int i = 0; i < 1000; ++i) {
    std::string k = "k" + std::to_string(i);
    now += 100;
    EXPECT_TRUE(e->set_string(part_of(k, 16), k, val, 0, now));
  }
  for (int round = 0; round < 5; ++round)
    for (int i = 0; i < 200; ++i) {
      std::string k = "k" + std::to_string(i);
      now += 100;
      EXPECT_TRUE(e->get(part_of(k, 16), k, now).has_value());
    }
  if (scan_after)
    for (int i = 0; i < 1000; ++i) {  // the cold keys last: the most recent reads if they count
      std::string k = "k" + std::to_string(i);
      now += 100;
      EXPECT_TRUE(((*e).*scan_after)(part_of(k, 16), k, now).has_value());
    }
  for (int i = 1000; i < 1500; ++i) {
    std::string k = "k" + std::to_string(i);
    now += 100;
    EXPECT_TRUE(e->set_string(part_of(k, 16), k, val, 0, now));
  }
  EXPECT_GT(e->stats().evicted_keys_total, 400u);
  EXPECT_LE(e->stats().used_memory_bytes, cap);
  int alive = 0;
  for (int i = 0; i < 200; ++i) {
    std::string k = "k" + std::to_string(i);
    if (e->get(part_of(k, 16), k, now)) ++alive;
  }
  return alive;
}

// peek() is not a use: a snapshot stream that reads every key must not make the cold keys look
// as recently used as the hot ones (get() does, and then LRU keeps no more hot keys than chance).
TEST(MemoryEngineEviction, PeekDoesNotCountAsAUse) {
  int peeked = 0, read = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    peeked += hot_survivors(EvictionPolicy::kAllKeysLru, seed, &Engine::peek);
    read += hot_survivors(EvictionPolicy::kAllKeysLru, seed, &Engine::get);
  }
  std::printf("hot keys kept (of 600) after a full read: peek=%d get=%d\n", peeked, read);
  EXPECT_GT(peeked, 3 * 200 * 95 / 100);
  EXPECT_LT(read, peeked - 100);
}

TEST(MemoryEngineEviction, LruKeepsHotKeysMoreThanRandom) {
  int lru = 0, lfu = 0, rnd = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    lru += hot_survivors(EvictionPolicy::kAllKeysLru, seed);
    lfu += hot_survivors(EvictionPolicy::kAllKeysLfu, seed);
    rnd += hot_survivors(EvictionPolicy::kAllKeysRandom, seed);
  }
  std::printf("hot keys kept (of 600): lru=%d lfu=%d random=%d\n", lru, lfu, rnd);
  // Random eviction of ~1/3 of the keys loses about a third of the hot set; the approximated
  // LRU/LFU lose far fewer.
  EXPECT_GT(lru, rnd + 100) << "lru=" << lru << " random=" << rnd;
  EXPECT_GT(lfu, rnd + 100) << "lfu=" << lfu << " random=" << rnd;
  EXPECT_GT(lru, 3 * 200 * 95 / 100);  // the eviction pool makes the approximation close
}

// LFU counters decay (1 per minute idle): keys that were hot an hour ago lose to keys that are
// warm now.
TEST(MemoryEngineEviction, LfuCountersDecay) {
  std::string val(64, 'x');
  auto probe = make(EvictionPolicy::kNoEviction, 0, 16);
  int64_t now = 1'700'000'000'000;
  for (int i = 0; i < 400; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(probe->set_string(part_of(k, 16), k, val, 0, now));
  }
  const uint64_t cap = probe->stats().used_memory_bytes * 21 / 20;
  auto e = make(EvictionPolicy::kAllKeysLfu, cap, 16);
  for (int i = 0; i < 400; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(e->set_string(part_of(k, 16), k, val, 0, now));
  }
  // Keys 0..99 are very hot now; an hour later keys 100..199 are touched a little.
  for (int round = 0; round < 200; ++round)
    for (int i = 0; i < 100; ++i) {
      std::string k = "k" + std::to_string(i);
      ASSERT_TRUE(e->get(part_of(k, 16), k, now).has_value());
    }
  now += 3'600'000;
  for (int round = 0; round < 10; ++round)
    for (int i = 100; i < 200; ++i) {
      std::string k = "k" + std::to_string(i);
      ASSERT_TRUE(e->get(part_of(k, 16), k, now).has_value());
    }
  for (int i = 400; i < 550; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(e->set_string(part_of(k, 16), k, val, 0, now));
  }
  int old_hot = 0, warm = 0;
  for (int i = 0; i < 100; ++i) {
    std::string a = "k" + std::to_string(i), b = "k" + std::to_string(100 + i);
    old_hot += e->get(part_of(a, 16), a, now).has_value();
    warm += e->get(part_of(b, 16), b, now).has_value();
  }
  EXPECT_GT(warm, old_hot + 30) << "warm=" << warm << " old_hot=" << old_hot;
  EXPECT_GT(warm, 90);
}

TEST(MemoryEngineEviction, VolatilePoliciesOnlyEvictKeysWithTtl) {
  for (auto policy :
       {EvictionPolicy::kVolatileLru, EvictionPolicy::kVolatileLfu, EvictionPolicy::kVolatileTtl}) {
    auto e = make(policy, 48 << 10);
    const int64_t now = 5000;
    std::string val(64, 'x');
    // Persistent keys take about half the budget.
    int persistent = 0;
    while (e->stats().used_memory_bytes < (24 << 10)) {
      std::string k = "p" + std::to_string(persistent++);
      ASSERT_TRUE(e->set_string(part_of(k, 16), k, val, 0, now));
    }
    for (int i = 0; i < 1000; ++i) {
      std::string k = "t" + std::to_string(i);
      ASSERT_TRUE(e->set_string(part_of(k, 16), k, val, now + 1000 + i, now))
          << eviction_policy_name(policy);
    }
    EXPECT_GT(e->stats().evicted_keys_total, 0u);
    for (int i = 0; i < persistent; ++i) {
      std::string k = "p" + std::to_string(i);
      EXPECT_TRUE(e->get(part_of(k, 16), k, now).has_value()) << eviction_policy_name(policy);
    }
    if (policy == EvictionPolicy::kVolatileTtl) {
      // The latest deadlines survive far more often than the earliest.
      int early = 0, late = 0;
      for (int i = 0; i < 100; ++i) {
        std::string a = "t" + std::to_string(i), b = "t" + std::to_string(900 + i);
        early += e->get(part_of(a, 16), a, now).has_value();
        late += e->get(part_of(b, 16), b, now).has_value();
      }
      EXPECT_GT(late, early + 50);
    }
  }
}

TEST(MemoryEngineEviction, VolatilePolicyWithoutTtlKeysIsOom) {
  auto e = make(EvictionPolicy::kVolatileLru, 16 << 10);
  Status st;
  for (int i = 0; i < 10000 && st; ++i) {
    std::string k = "p" + std::to_string(i);
    st = e->set_string(part_of(k, 16), k, std::string(64, 'x'), 0, 1);
  }
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, Errc::kOutOfMemory);
}

TEST(MemoryEngineExpiry, ActiveExpiryIsBoundedAndEventuallyComplete) {
  auto e = make(EvictionPolicy::kNoEviction, 0);
  int64_t now = 10'000;
  for (int i = 0; i < 2000; ++i) {
    std::string k = "t" + std::to_string(i);
    ASSERT_TRUE(e->set_string(part_of(k, 16), k, "v", i < 1000 ? now + 50 : 0, now));
  }
  EXPECT_EQ(e->stats().keys_with_expiry, 1000u);
  now += 100;
  e->maintenance(now, 30);
  const uint64_t after_one = e->stats().expired_keys_total;
  EXPECT_GT(after_one, 0u);
  EXPECT_LE(after_one, 30u);
  for (int i = 0; i < 1000 && e->stats().keys_with_expiry > 0; ++i) e->maintenance(now, 30);
  EXPECT_EQ(e->stats().keys_with_expiry, 0u);
  EXPECT_EQ(e->stats().expired_keys_total, 1000u);
  EXPECT_EQ(e->size(), 1000u);
}

TEST(MemoryEngineAccounting, ReturnsToZeroAndTracksGrowth) {
  auto e = make(EvictionPolicy::kNoEviction, 0);
  const uint64_t base = e->stats().used_memory_bytes;  // the empty engine's fixed cost
  EXPECT_GT(base, 0u);
  EXPECT_LT(base, 4096u);
  for (int i = 0; i < 500; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(e->set_string(part_of(k, 16), k, std::string(64, 'x'), i % 2 ? 99999 : 0, 1));
  }
  const uint64_t used = e->stats().used_memory_bytes - base;
  EXPECT_GT(used, 500u * (64 + 4));
  EXPECT_LT(used, 500u * 200);
  // A hash grown through update() is charged for its fields.
  ASSERT_TRUE(e->update(0, "h", 1, [](Value* cur, Value* scratch) {
    EXPECT_EQ(cur, nullptr);
    scratch->type = ValueType::kHash;
    for (int i = 0; i < 300; ++i) scratch->hash["field" + std::to_string(i)] = std::string(40, 'y');
    return UpdateAction::kWrite;
  }));
  EXPECT_GT(e->stats().used_memory_bytes, base + used + 300 * 40);
  ASSERT_TRUE(e->drop_partition(0));
  ASSERT_TRUE(e->clear());
  EXPECT_EQ(e->stats().used_memory_bytes, base);
  EXPECT_EQ(e->size(), 0u);
  EXPECT_EQ(e->stats().keys_with_expiry, 0u);
}

TEST(EngineNames, RoundTripAndRejectUnknown) {
  for (auto p :
       {EvictionPolicy::kNoEviction, EvictionPolicy::kAllKeysLru, EvictionPolicy::kAllKeysLfu,
        EvictionPolicy::kVolatileLru, EvictionPolicy::kVolatileLfu, EvictionPolicy::kVolatileTtl,
        EvictionPolicy::kAllKeysRandom})
    EXPECT_EQ(parse_eviction_policy(eviction_policy_name(p)), p);
  EXPECT_EQ(parse_eviction_policy("ALLKEYS-LRU"), EvictionPolicy::kAllKeysLru);
  EXPECT_FALSE(parse_eviction_policy("lru").has_value());
  for (auto p : {FsyncPolicy::kAlways, FsyncPolicy::kEverySec, FsyncPolicy::kNo})
    EXPECT_EQ(parse_fsync_policy(fsync_policy_name(p)), p);
  EXPECT_FALSE(parse_fsync_policy("sometimes").has_value());
}

TEST(OpenEngines, RejectsBadConfig) {
  ManualClock clock;
  EngineConfig c;
  c.kind = EngineConfig::Kind::kMemory;
  EXPECT_EQ(open_engines(c, 0, clock).error().code, Errc::kInvalidArgument);
  c.eviction_samples = 0;
  auto r = open_engines(c, 2, clock);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("eviction_samples"), std::string::npos);
  c.eviction_samples = 5;
  r = open_engines(c, 2, clock);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->size(), 2u);
}

}  // namespace
}  // namespace keel::storage

namespace keel::storage {
namespace {

// Under maxmemory with any policy, the engine is always a subset of the model (evicted keys
// are gone, never altered), stays within its limit after every successful write, and its TTL
// index and accounting stay consistent.
RC_GTEST_PROP(MemoryEngineEvictionModel, EngineIsSubsetOfModelAndWithinLimit, (uint64_t seed)) {
  SeededRandom rng(seed);
  const EvictionPolicy policies[] = {EvictionPolicy::kNoEviction,   EvictionPolicy::kAllKeysLru,
                                     EvictionPolicy::kAllKeysLfu,   EvictionPolicy::kVolatileLru,
                                     EvictionPolicy::kVolatileLfu,  EvictionPolicy::kVolatileTtl,
                                     EvictionPolicy::kAllKeysRandom};
  const EvictionPolicy policy = policies[rng.uniform(7)];
  const uint64_t max = 4096 + rng.uniform(8192);
  auto e = make(policy, max, 4, seed);
  std::map<std::pair<uint32_t, std::string>, Value> model;
  int64_t now = 1'000'000;
  auto alive = [&](const Value& v) { return v.expire_at_ms == 0 || v.expire_at_ms > now; };
  for (int step = 0; step < 300; ++step) {
    const uint32_t p = static_cast<uint32_t>(rng.uniform(4));
    const std::string k = "k" + std::to_string(rng.uniform(40));
    const int64_t exp = rng.chance(0.5) ? now + rng.range(1, 5000) : 0;
    Status st;
    switch (rng.uniform(6)) {
      case 0:
      case 1: {
        Value v = testing::str_value(std::string(rng.uniform(120), 'a' + rng.uniform(26)), exp);
        st = e->put(p, k, v, now);
        if (st) model[{p, k}] = v;
        break;
      }
      case 2: {
        HashMap h;
        for (uint64_t i = 0, n = rng.uniform(5); i < n; ++i) h["f" + std::to_string(i)] = "x";
        Value v = testing::hash_value(h, exp);
        st = e->put(p, k, v, now);
        if (st) model[{p, k}] = v;
        break;
      }
      case 3:
        RC_ASSERT(e->erase(p, k, now).has_value());
        model.erase({p, k});
        break;
      case 4: {
        st = e->update(p, k, now, [&](Value* cur, Value* scratch) {
          if (!cur) {
            *scratch = testing::str_value("u", exp);
            return UpdateAction::kWrite;
          }
          if (cur->type == ValueType::kString) {
            cur->str += "++";
          } else {
            cur->hash["g"] = "y";
          }
          return UpdateAction::kWrite;
        });
        // On success the model applies the same change (if the key was evicted meanwhile the
        // engine only holds less, which the subset check tolerates).
        if (st) {
          auto it = model.find({p, k});
          if (it == model.end() || !alive(it->second)) {
            model[{p, k}] = testing::str_value("u", exp);
          } else if (it->second.type == ValueType::kString) {
            it->second.str += "++";
          } else {
            it->second.hash["g"] = "y";
          }
        }
        break;
      }
      default:
        now += rng.range(0, 1500);
        e->maintenance(now, 20);
        break;
    }
    if (!st) RC_ASSERT(st.error().code == Errc::kOutOfMemory);
    if (st && policy != EvictionPolicy::kNoEviction && !volatile_only(policy))
      RC_ASSERT(e->stats().used_memory_bytes <= max);
    if (policy == EvictionPolicy::kNoEviction) RC_ASSERT(e->stats().evicted_keys_total == 0);
    // Subset: what the engine has is exactly what the model says.
    uint64_t engine_live = 0, with_ttl = 0;
    for (uint32_t q = 0; q < 4; ++q)
      for (int i = 0; i < 40; ++i) {
        std::string kk = "k" + std::to_string(i);
        auto got = e->get(q, kk, now);
        auto it = model.find({q, kk});
        if (!got) {
          // Evicted or expired: the model forgets it too, so later updates agree.
          if (it != model.end()) model.erase(it);
          continue;
        }
        ++engine_live;
        if (got->expire_at_ms) ++with_ttl;
        RC_ASSERT(it != model.end() && alive(it->second));
        if (!testing::same_value(testing::to_value(*got), it->second)) {
          Value g = testing::to_value(*got);
          RC_FAIL(
              fmt::format("policy {} step {} key {}/{}: engine type {} str '{}' exp {} "
                          "fields {}; model type {} str '{}' exp {} fields {}",
                          eviction_policy_name(policy), step, q, kk, int(g.type), g.str,
                          g.expire_at_ms, g.hash.size(), int(it->second.type), it->second.str,
                          it->second.expire_at_ms, it->second.hash.size()));
        }
      }
    RC_ASSERT(e->size() == engine_live);  // every get above reclaimed expired keys
    RC_ASSERT(e->stats().keys_with_expiry == with_ttl);
  }
  RC_ASSERT(e->clear().has_value());
  RC_ASSERT(e->stats().used_memory_bytes == make(policy, max, 4, seed)->stats().used_memory_bytes);
}

}  // namespace
}  // namespace keel::storage
