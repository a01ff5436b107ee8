// Both engines against a dumb model (std::map with expiry) under random operation sequences,
// with a ManualClock advanced between operations so TTLs fire in the middle of sequences.
#include <gtest/gtest.h>

#include <algorithm>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <set>

#include "base/random.h"
#include "test_util.h"

namespace keel::storage {
namespace {

using testing::EngineHarness;
using testing::Kind;
using testing::same_value;
using testing::to_value;

using Key = std::pair<uint32_t, std::string>;

// The model keeps expired entries until they are overwritten or erased, like the engines may.
struct Model {
  std::map<Key, Value> m;

  static bool alive(const Value& v, int64_t now) {
    return v.expire_at_ms == 0 || v.expire_at_ms > now;
  }
  const Value* get(const Key& k, int64_t now) const {
    auto it = m.find(k);
    if (it == m.end() || !alive(it->second, now)) return nullptr;
    return &it->second;
  }
  void put(const Key& k, Value v, int64_t now) {
    if (!alive(v, now)) {
      m.erase(k);
      return;
    }
    m[k] = std::move(v);
  }
  bool erase(const Key& k, int64_t now) {
    bool was = get(k, now) != nullptr;
    m.erase(k);
    return was;
  }
  std::map<Key, Value> live(int64_t now) const {
    std::map<Key, Value> out;
    for (const auto& [k, v] : m)
      if (alive(v, now)) out.emplace(k, v);
    return out;
  }
};

constexpr uint32_t kPartitionsUsed = 3;  // engines have 4; partition 3 stays empty

struct Runner {
  EngineHarness h;
  Model model;
  SeededRandom rng;

  Runner(Kind kind, uint64_t seed) : h(kind), rng(seed) {}

  Key random_key() {
    return {static_cast<uint32_t>(rng.uniform(kPartitionsUsed)),
            "k" + std::to_string(rng.uniform(16))};
  }
  int64_t random_expiry() {
    if (rng.chance(0.6)) return 0;
    return h.now() + rng.range(-5, 60);  // sometimes already in the past
  }
  std::string random_str() {
    std::string s(rng.uniform(rng.chance(0.1) ? 200 : 12), 'a');
    for (auto& c : s) c = static_cast<char>('a' + rng.uniform(26));
    return s;
  }
  Value random_value() {
    Value v;
    const uint64_t kind = rng.uniform(10);
    if (kind < 6) {
      v.str = random_str();
    } else if (kind < 8) {
      v.type = ValueType::kHash;
      size_t n = rng.uniform(4);
      for (size_t i = 0; i < n; ++i) v.hash["f" + std::to_string(rng.uniform(6))] = random_str();
    } else if (kind == 8 && rng.chance(0.5)) {
      v.type = ValueType::kZSet;
      size_t n = 1 + rng.uniform(6);
      for (size_t i = 0; i < n; ++i)
        v.zset.set("z" + std::to_string(rng.uniform(8)), static_cast<double>(rng.range(-20, 20)) / 8);
    } else if (kind == 8) {
      v.type = ValueType::kList;
      size_t n = 1 + rng.uniform(6);
      for (size_t i = 0; i < n; ++i) v.list.push_back(random_str());
    } else {
      v.type = ValueType::kSet;
      size_t n = 1 + rng.uniform(6);
      for (size_t i = 0; i < n; ++i) v.set.insert("m" + std::to_string(rng.uniform(8)));
    }
    v.expire_at_ms = random_expiry();
    return v;
  }

  void check_get(const Key& k) {
    auto got = h.engine().get(k.first, k.second, h.now());
    const Value* want = model.get(k, h.now());
    RC_ASSERT(got.has_value() == (want != nullptr));
    if (want) RC_ASSERT(same_value(to_value(*got), *want));
  }

  void step() {
    Engine& e = h.engine();
    const int64_t now = h.now();
    switch (rng.uniform(12)) {
      case 0:
      case 1: {
        Key k = random_key();
        std::string s = random_str();
        int64_t exp = random_expiry();
        RC_ASSERT(e.set_string(k.first, k.second, s, exp, now).has_value());
        Value v;
        v.str = s;
        v.expire_at_ms = exp;
        model.put(k, std::move(v), now);
        break;
      }
      case 2: {
        Key k = random_key();
        Value v = random_value();
        RC_ASSERT(e.put(k.first, k.second, v, now).has_value());
        model.put(k, std::move(v), now);
        break;
      }
      case 3: {
        Key k = random_key();
        auto r = e.erase(k.first, k.second, now);
        RC_ASSERT(r.has_value());
        RC_ASSERT(*r == model.erase(k, now));
        break;
      }
      case 4:
      case 5:
        check_get(random_key());
        break;
      case 6: {
        Key k = random_key();
        const uint64_t choice = rng.uniform(5);
        const std::string extra = random_str();
        const int64_t exp = random_expiry();
        auto apply = [&](Value* cur, Value* scratch) -> UpdateAction {
          if (cur == nullptr) {
            if (choice == 4) return UpdateAction::kKeep;
            scratch->str = "new" + extra;
            return UpdateAction::kWrite;
          }
          switch (choice) {
            case 0:
              if (cur->type == ValueType::kString) {
                cur->str += extra;
              } else if (cur->type == ValueType::kList) {
                cur->list.push_front(extra);
              } else if (cur->type == ValueType::kSet) {
                cur->set.insert(extra);
              } else if (cur->type == ValueType::kZSet) {
                cur->zset.set(extra, static_cast<double>(extra.size()));
              } else {
                cur->hash["g"] = extra;
              }
              return UpdateAction::kWrite;
            case 1:
              cur->expire_at_ms = exp;
              return UpdateAction::kWrite;
            case 2:
              return UpdateAction::kErase;
            case 3:
              return UpdateAction::kKeep;
            default:
              if (cur->type == ValueType::kHash) cur->hash.erase("f1");
              if (cur->type == ValueType::kList && cur->list.size() > 1) (void)cur->list.pop_back();
              // The smallest member: iteration order differs between engines and the model.
              if (cur->type == ValueType::kSet && cur->set.size() > 1)
                cur->set.erase(*std::min_element(cur->set.begin(), cur->set.end()));
              return UpdateAction::kWrite;
          }
        };
        RC_ASSERT(e.update(k.first, k.second, now, apply).has_value());
        const Value* cur = model.get(k, now);
        if (cur == nullptr) {
          Value scratch;
          if (apply(nullptr, &scratch) == UpdateAction::kWrite) model.put(k, scratch, now);
        } else {
          Value copy = *cur;
          Value scratch;
          UpdateAction a = apply(&copy, &scratch);
          if (a == UpdateAction::kWrite) model.put(k, copy, now);
          if (a == UpdateAction::kErase) model.erase(k, now);
        }
        check_get(k);
        break;
      }
      case 7: {
        std::vector<Engine::BatchOp> ops;
        size_t n = 1 + rng.uniform(4);
        for (size_t i = 0; i < n; ++i) {
          Key k = random_key();
          std::optional<Value> v;
          if (rng.chance(0.7)) v = random_value();
          ops.push_back({k.first, k.second, v});
        }
        auto copy = ops;
        RC_ASSERT(e.write_batch(std::move(copy), now).has_value());
        for (auto& op : ops) {
          Key k{op.partition, op.key};
          if (op.value) {
            model.put(k, *op.value, now);
          } else {
            model.erase(k, now);
          }
        }
        break;
      }
      case 8:
        h.clock.advance_ms(rng.range(0, 25));
        break;
      case 9: {
        // Full scan: exactly the live keys, each value matching.
        std::map<Key, int> seen;
        uint64_t cursor = 0;
        int rounds = 0;
        do {
          cursor = e.scan(cursor, 1 + rng.uniform(7), now,
                          [&](std::string_view key, const ValueRef& ref) {
                            // The engine does not say which partition; match by key below.
                            (void)ref;
                            seen[{0, std::string(key)}]++;
                          });
          RC_ASSERT(++rounds < 10000);
        } while (cursor != 0);
        std::map<std::string, int> want;
        for (const auto& [k, v] : model.live(now)) want[k.second]++;
        std::map<std::string, int> got;
        for (const auto& [k, c] : seen) got[k.second] += c;
        // A key name may live in several partitions; without concurrent writes each copy is
        // reported exactly once.
        RC_ASSERT(got == want);
        break;
      }
      case 10: {
        uint32_t p = static_cast<uint32_t>(rng.uniform(kPartitionsUsed + 1));
        // Small pages, or everything at once (SIZE_MAX: a snapshot collecting a partition's keys).
        size_t limit = rng.chance(0.2) ? SIZE_MAX : 1 + rng.uniform(5);
        std::vector<std::pair<std::string, Value>> got;
        std::optional<std::string> next = std::string();
        int rounds = 0;
        while (next) {
          next = e.scan_partition(p, *next, limit, now,
                                  [&](std::string_view key, const ValueRef& ref) {
                                    got.emplace_back(std::string(key), to_value(ref));
                                  });
          RC_ASSERT(++rounds < 1000);
        }
        std::vector<std::pair<std::string, Value>> want;
        for (const auto& [k, v] : model.live(now))
          if (k.first == p) want.emplace_back(k.second, v);
        RC_ASSERT(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          RC_ASSERT(got[i].first == want[i].first);
          RC_ASSERT(same_value(got[i].second, want[i].second));
        }
        break;
      }
      default: {
        if (rng.chance(0.1)) {
          uint32_t p = static_cast<uint32_t>(rng.uniform(kPartitionsUsed));
          RC_ASSERT(e.drop_partition(p).has_value());
          std::erase_if(model.m, [&](const auto& kv) { return kv.first.first == p; });
        } else {
          e.maintenance(now, 1 + rng.uniform(30));
        }
        break;
      }
    }
    // size() may count expired keys that were not reclaimed yet, never fewer than live ones.
    const uint64_t live = model.live(h.now()).size();
    RC_ASSERT(e.size() >= live);
    RC_ASSERT(e.size() <= model.m.size());
  }

  void verify_all() {
    for (uint32_t p = 0; p < kPartitionsUsed; ++p)
      for (int i = 0; i < 16; ++i) check_get({p, "k" + std::to_string(i)});
    // Counters are exact once expired keys are reclaimed: the memory engine reclaimed them in
    // the gets above; the persistent engine's maintenance walks every partition (one per call
    // with this budget), deleting expired keys and recounting.
    if (is_persistent(h.kind))
      for (int i = 0; i < 6; ++i) h.engine().maintenance(h.now(), 100000);
    const auto live = model.live(h.now());
    uint64_t with_ttl = 0;
    for (const auto& [k, v] : live) with_ttl += v.expire_at_ms != 0;
    RC_ASSERT(h.engine().size() == live.size());
    RC_ASSERT(h.engine().stats().keys_with_expiry == with_ttl);
  }
};

void run_model(Kind kind, uint64_t seed, int steps) {
  RC_TAG(seed % 8);
  Runner r(kind, seed);
  for (int i = 0; i < steps; ++i) r.step();
  r.verify_all();
  if (is_persistent(kind)) {
    // Everything must survive a close + reopen.
    r.h.open();
    r.verify_all();
  }
}

RC_GTEST_PROP(MemoryEngineModel, RandomOpsMatchModel, (uint64_t seed)) {
  run_model(Kind::kMemory, seed, 400);
}

RC_GTEST_PROP(PersistentEngineModel, RandomOpsMatchModel, (uint64_t seed)) {
  run_model(Kind::kPersistent, seed, 250);
}

RC_GTEST_PROP(ResidentEngineModel, RandomOpsMatchModel, (uint64_t seed)) {
  run_model(Kind::kResident, seed, 250);
}

// Scan completeness under concurrent writes: every key present for the whole scan is seen,
// while other keys are inserted (forcing table growth) and removed between scan calls.
void run_scan_under_writes(Kind kind, uint64_t seed) {
  EngineHarness h(kind, 8);
  SeededRandom rng(seed);
  Engine& e = h.engine();
  const int64_t now = h.now();
  std::set<std::string> stable;
  for (int i = 0; i < 300; ++i) {
    std::string k = "stable" + std::to_string(i);
    ASSERT_TRUE(e.set_string(static_cast<uint32_t>(rng.uniform(8)), k, "v", 0, now));
    stable.insert(k);
  }
  std::set<std::string> seen;
  uint64_t cursor = 0;
  int churn = 0;
  int rounds = 0;
  do {
    cursor = e.scan(cursor, 1 + rng.uniform(20), now,
                    [&](std::string_view key, const ValueRef&) { seen.emplace(key); });
    // Grow: many inserts; shrink: many erases.
    int n = static_cast<int>(rng.uniform(200));
    bool grow = rng.chance(0.6);
    for (int i = 0; i < n; ++i) {
      uint32_t p = static_cast<uint32_t>(rng.uniform(8));
      std::string k =
          "churn" + std::to_string(grow ? churn++ : static_cast<int>(rng.uniform(churn + 1)));
      if (grow) {
        ASSERT_TRUE(e.set_string(p, k, "x", 0, now));
      } else {
        for (uint32_t q = 0; q < 8; ++q) ASSERT_TRUE(e.erase(q, k, now));
      }
    }
    ASSERT_LT(++rounds, 100000);
  } while (cursor != 0);
  for (const auto& k : stable) EXPECT_TRUE(seen.count(k)) << kind_name(kind) << " missed " << k;
}

TEST(MemoryEngineScan, KeysPresentThroughoutAreSeenDespiteRehash) {
  for (uint64_t seed = 1; seed <= 5; ++seed) run_scan_under_writes(Kind::kMemory, seed);
}

TEST(PersistentEngineScan, KeysPresentThroughoutAreSeenDespiteWrites) {
  run_scan_under_writes(Kind::kPersistent, 7);
  run_scan_under_writes(Kind::kResident, 7);
}

// A batch with one invalid op applies nothing.
void run_batch_atomicity(Kind kind) {
  EngineHarness h(kind);
  Engine& e = h.engine();
  ASSERT_TRUE(e.set_string(0, "a", "old", 0, h.now()));
  std::vector<Engine::BatchOp> ops;
  ops.push_back({0, "a", testing::str_value("new")});
  ops.push_back({1, "b", testing::str_value("b")});
  ops.push_back({2, "c", testing::str_value("c", -5)});  // invalid deadline
  auto st = e.write_batch(ops, h.now());
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(e.get(0, "a", h.now())->str, "old");
  EXPECT_FALSE(e.get(1, "b", h.now()).has_value());
  ops.pop_back();
  ops.push_back({0, "a", std::nullopt});  // later op on the same key wins
  ASSERT_TRUE(e.write_batch(ops, h.now()));
  EXPECT_FALSE(e.get(0, "a", h.now()).has_value());
  EXPECT_EQ(e.get(1, "b", h.now())->str, "b");
  EXPECT_EQ(e.size(), 1u);
}

TEST(MemoryEngineBatch, InvalidOpAppliesNothing) { run_batch_atomicity(Kind::kMemory); }
TEST(PersistentEngineBatch, InvalidOpAppliesNothing) { run_batch_atomicity(Kind::kPersistent); }
TEST(ResidentEngineBatch, InvalidOpAppliesNothing) { run_batch_atomicity(Kind::kResident); }

// update(): kKeep writes nothing, kErase removes, absent key can be created from scratch, and
// TTL set through update is honoured.
void run_update_semantics(Kind kind) {
  EngineHarness h(kind);
  Engine& e = h.engine();
  const int64_t now = h.now();
  ASSERT_TRUE(e.update(0, "h", now, [](Value* cur, Value* scratch) {
    EXPECT_EQ(cur, nullptr);
    scratch->type = ValueType::kHash;
    scratch->hash["a"] = "1";
    return UpdateAction::kWrite;
  }));
  ASSERT_TRUE(e.update(0, "h", now, [&](Value* cur, Value*) {
    EXPECT_NE(cur, nullptr);
    EXPECT_EQ(cur->type, ValueType::kHash);
    cur->hash["b"] = "2";
    cur->expire_at_ms = now + 100;
    return UpdateAction::kWrite;
  }));
  auto got = e.get(0, "h", now);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->hash->size(), 2u);
  EXPECT_EQ(got->expire_at_ms, now + 100);
  ASSERT_TRUE(e.update(0, "absent", now, [](Value*, Value*) { return UpdateAction::kKeep; }));
  EXPECT_FALSE(e.get(0, "absent", now).has_value());
  ASSERT_TRUE(e.update(0, "h", now, [](Value*, Value*) { return UpdateAction::kErase; }));
  EXPECT_FALSE(e.get(0, "h", now).has_value());
  EXPECT_EQ(e.size(), 0u);
  // String through update, then expiry.
  ASSERT_TRUE(e.set_string(1, "s", "abc", now + 10, now));
  ASSERT_TRUE(e.update(1, "s", now, [](Value* cur, Value*) {
    cur->str += "def";
    return UpdateAction::kWrite;
  }));
  EXPECT_EQ(e.get(1, "s", now)->str, "abcdef");
  EXPECT_EQ(e.get(1, "s", now)->expire_at_ms, now + 10);
  h.clock.advance_ms(10);
  EXPECT_FALSE(e.get(1, "s", h.now()).has_value());
  if (kind == Kind::kMemory) {
    EXPECT_EQ(e.stats().expired_keys_total, 1u);
  }
}

TEST(MemoryEngineUpdate, Semantics) { run_update_semantics(Kind::kMemory); }
TEST(PersistentEngineUpdate, Semantics) { run_update_semantics(Kind::kPersistent); }
TEST(ResidentEngineUpdate, Semantics) { run_update_semantics(Kind::kResident); }

}  // namespace
// prefetch() is only a hint: on an empty table, for absent keys, for partitions out of range
// and for more keys than a batch holds, it must neither crash nor change what reads return.
void run_prefetch_is_a_hint(Kind kind) {
  EngineHarness h(kind);
  Engine& e = h.engine();
  std::vector<Engine::KeyRef> refs = {{0, "a"}, {3, "b"}, {99, "c"}, {7, ""}};
  e.prefetch(refs);  // empty engine
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(e.set_string(i % 4, "k" + std::to_string(i), "v", 0, h.now()));
  std::vector<std::string> names;
  for (int i = 0; i < 150; ++i) names.push_back("k" + std::to_string(i * 2));
  refs.clear();
  for (size_t i = 0; i < names.size(); ++i) refs.push_back({static_cast<uint32_t>(i % 5), names[i]});
  e.prefetch(refs);
  for (int i = 0; i < 200; ++i) {
    auto got = e.get(i % 4, "k" + std::to_string(i), h.now());
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(got->str, "v");
  }
  EXPECT_EQ(e.size(), 200u);
}
TEST(MemoryEnginePrefetch, IsOnlyAHint) { run_prefetch_is_a_hint(Kind::kMemory); }
TEST(PersistentEnginePrefetch, IsOnlyAHint) { run_prefetch_is_a_hint(Kind::kPersistent); }
TEST(ResidentEnginePrefetch, IsOnlyAHint) { run_prefetch_is_a_hint(Kind::kResident); }

}  // namespace keel::storage
