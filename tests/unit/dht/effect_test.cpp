// The effect recorder: whatever a sequence of writes does to a primary's engine, applying the
// recorded effects to an empty engine gives the same keys, values and expiry times.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "base/codec.h"
#include "base/random.h"
#include "dht/effect.h"
#include "storage/memory/memory_engine.h"

namespace keel::dht {
namespace {

using storage::UpdateAction;
using storage::Value;
using storage::ValueType;

std::unique_ptr<storage::Engine> memory(uint32_t partitions = 8) {
  storage::EngineConfig c;
  c.kind = storage::EngineConfig::Kind::kMemory;
  c.partitions = partitions;
  return storage::make_memory_engine(c, 1);
}

// Every live key of `e` as "key -> type|expiry|value" (hash fields sorted).
std::map<std::string, std::string> dump(storage::Engine& e, uint32_t partitions, int64_t now) {
  std::map<std::string, std::string> out;
  for (uint32_t p = 0; p < partitions; ++p) {
    std::string start;
    for (;;) {
      auto next = e.scan_partition(p, start, 100, now, [&](std::string_view k, const storage::ValueRef& v) {
        std::string s = std::to_string(p) + "|" + std::to_string(static_cast<int>(v.type)) + "|" +
                        std::to_string(v.expire_at_ms) + "|";
        if (v.type == ValueType::kString) {
          s += v.str;
        } else if (v.type == ValueType::kList) {
          for (size_t i = 0; i < v.list->size(); ++i) s += (*v.list)[i] + ",";
        } else if (v.type == ValueType::kSet) {
          std::set<std::string> sorted(v.set->begin(), v.set->end());
          for (auto& m : sorted) s += m + ";";
        } else if (v.type == ValueType::kZSet) {
          for (auto it = v.zset->tree().begin(); it != v.zset->tree().end(); ++it)
            s += *it->member + "@" + std::to_string(it->score) + ";";
        } else if (v.type == ValueType::kStream) {
          // The whole state: entries, metadata, groups, PEL, consumers (the stored form).
          std::string enc;
          Writer w(enc);
          v.stream->encode(w);
          s += enc;
        } else {
          std::map<std::string, std::string> sorted(v.hash->begin(), v.hash->end());
          for (auto& [f, x] : sorted) s += f + "=" + x + ";";
        }
        out[std::string(k)] = s;
      });
      if (!next) break;
      start = *next;
    }
  }
  return out;
}

TEST(EffectRecorder, RecordsNothingForPartitionsNotRecorded) {
  EffectRecorder rec(memory(), 8);
  ASSERT_TRUE(rec.set_string(1, "a", "1", 0, 1000));
  EXPECT_FALSE(rec.has_pending());
  rec.set_recorded(1, true);
  ASSERT_TRUE(rec.set_string(2, "b", "1", 0, 1000));
  EXPECT_FALSE(rec.has_pending());
  ASSERT_TRUE(rec.set_string(1, "c", "1", 0, 1000));
  ASSERT_TRUE(rec.has_pending());
  auto effects = rec.take();
  ASSERT_EQ(effects.size(), 1u);
  EXPECT_EQ(effects[0].first, 1u);
  EXPECT_FALSE(rec.has_pending());
}

// A write command that changes nothing (SET NX on an existing key, SADD of a member already
// there, HDEL of a missing field) records no effect: an empty one would reach the partition's
// log, where empty entries are epoch barriers (the replication core refuses them).
TEST(EffectRecorder, AnUpdateThatChangesNothingRecordsNothing) {
  EffectRecorder rec(memory(), 8);
  rec.set_recorded(1, true);
  ASSERT_TRUE(rec.set_string(1, "k", "v", 0, 1000));
  (void)rec.take();
  ASSERT_TRUE(rec.update(1, "k", 1000, [](Value*, Value*) { return UpdateAction::kKeep; }));
  ASSERT_TRUE(rec.update(1, "absent", 1000, [](Value*, Value*) { return UpdateAction::kKeep; }));
  ASSERT_TRUE(rec.update(1, "absent", 1000, [](Value*, Value*) { return UpdateAction::kErase; }));
  storage::Delta d;
  ASSERT_TRUE(rec.update_by_element(1, "k", 1000, [](Value*, Value*) { return UpdateAction::kKeep; }, d));
  EXPECT_FALSE(rec.has_pending());
  ASSERT_TRUE(rec.update(1, "k", 1000, [](Value* cur, Value*) {
    cur->str = "w";
    return UpdateAction::kWrite;
  }));
  EXPECT_TRUE(rec.has_pending());
  for (auto& [p, e] : rec.take()) EXPECT_FALSE(e.empty());
}

TEST(EffectRecorder, AbsoluteExpiryAndLazyExpiryTravel) {
  EffectRecorder rec(memory(), 8);
  rec.set_recorded(3, true);
  ASSERT_TRUE(rec.set_string(3, "k", "v", 5000, 1000));  // SET k v PX 4000 at t=1000
  auto replica = memory();
  for (auto& [p, e] : rec.take()) ASSERT_TRUE(apply_effect(*replica, p, e, 1000));
  auto got = replica->get(3, "k", 1000);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->expire_at_ms, 5000);  // absolute: the replica's clock does not move it
  // The primary finds the key expired on access: the deletion travels.
  EXPECT_FALSE(rec.get(3, "k", 6000));
  auto effects = rec.take();
  ASSERT_EQ(effects.size(), 1u);
  ASSERT_TRUE(apply_effect(*replica, 3, effects[0].second, 1000));  // replica clock still early
  EXPECT_FALSE(replica->get(3, "k", 1000));
}

TEST(EffectRecorder, RandomWritesReplayToTheSameState) {
  constexpr uint32_t kParts = 4;
  int streams = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SeededRandom rnd(seed);
    EffectRecorder rec(memory(kParts), kParts);
    for (uint32_t p = 0; p < kParts; ++p) rec.set_recorded(p, true);
    auto replica = memory(kParts);
    int64_t now = 1000;
    for (int i = 0; i < 400; ++i) {
      now += static_cast<int64_t>(rnd.uniform(20));
      uint32_t p = static_cast<uint32_t>(rnd.uniform(kParts));
      std::string key = "k" + std::to_string(rnd.uniform(12));
      switch (rnd.uniform(12)) {
        case 0:
          (void)rec.set_string(p, key, "s" + std::to_string(i), rnd.chance(0.3) ? now + 50 : 0, now);
          break;
        case 1: {
          Value v;
          v.type = ValueType::kHash;
          v.hash["f"] = std::to_string(i);
          (void)rec.put(p, key, v, now);
          break;
        }
        case 2:
          (void)rec.erase(p, key, now);
          break;
        case 3:  // HSET-like in-place change, or an INCR-like string change
          (void)rec.update(p, key, now, [&](Value* cur, Value* scratch) {
            if (!cur) {
              scratch->type = ValueType::kString;
              scratch->str = "1";
              return UpdateAction::kWrite;
            }
            if (cur->type == ValueType::kHash) cur->hash["g" + std::to_string(i % 3)] = "x";
            else cur->str += "+";
            return UpdateAction::kWrite;
          });
          break;
        case 4:
          (void)rec.update(p, key, now, [](Value* cur, Value*) {
            return cur ? UpdateAction::kErase : UpdateAction::kKeep;
          });
          break;
        case 5: {
          std::vector<storage::Engine::BatchOp> ops;
          ops.push_back({p, key, std::nullopt});
          Value v;
          v.str = "b";
          ops.push_back({(p + 1) % kParts, key + "b", v});
          (void)rec.write_batch(std::move(ops), now);
          break;
        }
        case 6:
          (void)rec.get(p, key, now);  // may expire it
          break;
        case 7:  // LPUSH/RPUSH/LPOP-like, in place
          (void)rec.update(p, key, now, [&](Value* cur, Value* scratch) {
            if (cur && cur->type != ValueType::kList) return UpdateAction::kKeep;
            Value* t = cur ? cur : scratch;
            t->type = ValueType::kList;
            if (cur && rnd.chance(0.3)) {
              (void)t->list.pop_front();
              return t->list.empty() ? UpdateAction::kErase : UpdateAction::kWrite;
            }
            if (rnd.chance(0.5)) t->list.push_front("l" + std::to_string(i));
            else t->list.push_back("r" + std::to_string(i));
            return UpdateAction::kWrite;
          });
          break;
        case 8:  // SADD/SPOP-like, in place
          (void)rec.update(p, key, now, [&](Value* cur, Value* scratch) {
            if (cur && cur->type != ValueType::kSet) return UpdateAction::kKeep;
            Value* t = cur ? cur : scratch;
            t->type = ValueType::kSet;
            if (cur && rnd.chance(0.3)) {
              t->set.erase(t->set.begin());
              return t->set.empty() ? UpdateAction::kErase : UpdateAction::kWrite;
            }
            t->set.insert("m" + std::to_string(rnd.uniform(6)));
            return UpdateAction::kWrite;
          });
          break;
        case 10:  // ZADD/ZPOPMIN-like, in place
          (void)rec.update(p, key, now, [&](Value* cur, Value* scratch) {
            if (cur && cur->type != ValueType::kZSet) return UpdateAction::kKeep;
            Value* t = cur ? cur : scratch;
            t->type = ValueType::kZSet;
            if (cur && rnd.chance(0.3)) {
              (void)t->zset.erase(*t->zset.at(0)->member);
              return t->zset.empty() ? UpdateAction::kErase : UpdateAction::kWrite;
            }
            t->zset.set("z" + std::to_string(rnd.uniform(6)), static_cast<double>(rnd.uniform(100)) / 4);
            return UpdateAction::kWrite;
          });
          break;
        case 11:  // XADD (with trimming) / XDEL / XREADGROUP / XACK-like, in place
          (void)rec.update(p, key, now, [&](Value* cur, Value* scratch) {
            if (cur && cur->type != ValueType::kStream) return UpdateAction::kKeep;
            Value* t = cur ? cur : scratch;
            t->type = ValueType::kStream;
            auto& st = t->stream;
            const auto op = rnd.uniform(5);
            if (op == 0 && st.size() > 0) {
              (void)st.erase(*st.first_entry_id());
            } else if (op == 1 && st.size() > 0) {
              auto& g = st.groups()["g"];
              auto& c = g.consumers["c" + std::to_string(rnd.uniform(2))];
              c.seen_time_ms = now;
              const auto id = *st.last_entry_id();
              if (!g.pel.count(id)) {
                g.pel[id] = storage::StreamNack{"c0", now, 1};
                g.consumers["c0"].pending.insert(id);
              }
              g.last_id = id;
            } else if (op == 2 && st.groups().count("g") && !st.groups()["g"].pel.empty()) {
              auto& g = st.groups()["g"];
              auto it = g.pel.begin();
              g.consumers[it->second.consumer].pending.erase(it->first);
              g.pel.erase(it);
            } else {
              const std::string_view fv[] = {"f", "v" + std::to_string(i)};
              st.append({static_cast<uint64_t>(now), static_cast<uint64_t>(i)}, fv);
              if (rnd.chance(0.2)) (void)st.trim_maxlen(rnd.uniform(4), rnd.chance(0.5), 0);
            }
            return UpdateAction::kWrite;
          });
          break;
        case 9: {  // S*STORE-like replacement with an expiry
          Value v;
          v.type = rnd.chance(0.5) ? ValueType::kSet : ValueType::kList;
          if (v.type == ValueType::kSet) v.set = {"a", "b" + std::to_string(i)};
          else v.list.push_back("x" + std::to_string(i));
          v.expire_at_ms = rnd.chance(0.3) ? now + 40 : 0;
          (void)rec.put(p, key, std::move(v), now);
          break;
        }
      }
      if (rnd.chance(0.2)) rec.maintenance(now, 100);
      if (rnd.chance(0.5)) {
        for (auto& [part, e] : rec.take()) ASSERT_TRUE(apply_effect(*replica, part, e, now));
      }
    }
    for (auto& [part, e] : rec.take()) ASSERT_TRUE(apply_effect(*replica, part, e, now));
    const auto primary_state = dump(rec, kParts, now);
    EXPECT_EQ(primary_state, dump(*replica, kParts, now)) << "seed " << seed;
    for (auto& [k, v] : primary_state)
      streams += v.find("|" + std::to_string(static_cast<int>(ValueType::kStream)) + "|") != std::string::npos;
  }
  EXPECT_GT(streams, 0) << "the random writes never left a stream to compare";
}

// A change a command describes element by element travels as a patch of what changed when the
// delta is idempotent (hash, set, sorted set, stream), and whole when it is not (lists): a
// replica applying a patch twice, as after a snapshot taken while writes went on, converges.
TEST(EffectRecorder, DescribedChangesTravelAsPatches) {
  constexpr uint32_t kParts = 2;
  EffectRecorder rec(memory(kParts), kParts);
  rec.set_recorded(1, true);
  auto replica = memory(kParts);
  const int64_t now = 1000;
  auto ship = [&](bool twice = false) {
    size_t bytes = 0;
    for (auto& [p, effect] : rec.take()) {
      bytes += effect.size();
      EXPECT_TRUE(apply_effect(*replica, p, effect, now));
      if (twice) {
        EXPECT_TRUE(apply_effect(*replica, p, effect, now));
      }
    }
    return bytes;
  };
  Value big;
  big.type = ValueType::kHash;
  for (int i = 0; i < 1000; ++i) big.hash["field" + std::to_string(i)] = "value" + std::to_string(i);
  ASSERT_TRUE(rec.put(1, "h", big, now));
  EXPECT_GT(ship(), 10000u);
  storage::Delta d;
  ASSERT_TRUE(rec.update_by_element(1, "h", now, [&](Value* cur, Value*) {
    cur->hash["field7"] = "new";
    cur->hash.erase("field8");
    d.hash_set("field7", "new");
    d.hash_del("field8");
    return UpdateAction::kWrite;
  }, d));
  EXPECT_LT(ship(true), 64u);
  EXPECT_EQ(dump(*replica, kParts, now), dump(rec, kParts, now));

  Value list;
  list.type = ValueType::kList;
  for (int i = 0; i < 100; ++i) list.list.push_back("element" + std::to_string(i));
  ASSERT_TRUE(rec.put(1, "l", list, now));
  ship();
  d.clear();
  ASSERT_TRUE(rec.update_by_element(1, "l", now, [&](Value* cur, Value*) {
    cur->list.push_back("tail");
    d.list_push(false, "tail");
    return UpdateAction::kWrite;
  }, d));
  EXPECT_GT(ship(true), 1000u);  // unguarded: whole, since a push applied twice would push twice
  EXPECT_EQ(dump(*replica, kParts, now), dump(rec, kParts, now));
  d.clear();
  ASSERT_TRUE(rec.update_by_element(1, "l", now, [&](Value* cur, Value*) {
    const uint64_t before = cur->list.version();
    cur->list.push_back("guarded");
    (void)cur->list.pop_front();
    d.list_push(false, "guarded");
    d.list_pop(true, 1);
    d.seal_list(cur->list, before);
    return UpdateAction::kWrite;
  }, d));
  EXPECT_LT(ship(true), 64u);  // guarded by the list's change number: a patch, applied once
  EXPECT_EQ(dump(*replica, kParts, now), dump(rec, kParts, now));
  EXPECT_EQ(replica->get(1, "l", now)->list->version(), rec.get(1, "l", now)->list->version());

  // A patch for a key the replica does not hold builds it from an empty value.
  auto fresh = memory(kParts);
  d.clear();
  ASSERT_TRUE(rec.update_by_element(1, "h", now, [&](Value* cur, Value*) {
    cur->hash["field9"] = "x";
    d.hash_set("field9", "x");
    return UpdateAction::kWrite;
  }, d));
  for (auto& [p, effect] : rec.take()) ASSERT_TRUE(apply_effect(*fresh, p, effect, now));
  auto v = fresh->get(1, "h", now);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->hash->size(), 1u);
}

// A replica that receives keys scanned while writes went on, then the log from before the scan
// (docs/consistency.md, "Resuming a snapshot transfer"), ends equal to the primary for lists
// changed by guarded patches: pushes, pops, sets, inserts and erases the scanned list already
// has are skipped; a key deleted and created again (its numbers restart) is reset by the whole
// value that created it again.
TEST(EffectRecorder, GuardedListPatchesReplayedOverALaterScanConverge) {
  constexpr uint32_t kParts = 2;
  int patches = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SeededRandom rnd(seed);
    EffectRecorder rec(memory(kParts), kParts);
    rec.set_recorded(1, true);
    const int64_t now = 1000;
    const std::vector<std::string> keys = {"a", "b", "c"};
    constexpr int kSteps = 120;
    const int from = static_cast<int>(rnd.uniform(kSteps));  // the transfer's LSN L
    std::map<std::string, int> scan_at;                        // when each key is scanned (>= L)
    for (auto& k : keys) scan_at[k] = from + static_cast<int>(rnd.uniform(kSteps - from + 1));
    std::map<std::string, std::optional<Value>> scanned;
    std::vector<std::string> log;  // the effect of each step
    auto scan = [&](int step) {
      for (auto& k : keys)
        if (scan_at[k] == step) {
          auto v = rec.get(1, k, now);
          scanned[k] = v ? std::optional<Value>(storage::copy_value(*v)) : std::nullopt;
        }
    };
    scan(0);
    for (int step = 1; step <= kSteps; ++step) {
      const std::string& key = keys[rnd.uniform(keys.size())];
      const auto kind = rnd.uniform(10);
      if (kind == 0) {
        (void)rec.erase(1, key, now);
      } else if (kind == 1) {  // RENAME/COPY-like: a whole new list
        Value v;
        v.type = ValueType::kList;
        v.list.push_back("w" + std::to_string(step));
        (void)rec.put(1, key, std::move(v), now);
      } else {  // a list command: described, sealed
        storage::Delta d;
        ASSERT_TRUE(rec.update_by_element(1, key, now, [&](Value* cur, Value* scratch) {
          if (cur && cur->type != ValueType::kList) return UpdateAction::kKeep;
          Value* t = cur ? cur : scratch;
          t->type = ValueType::kList;
          auto& l = t->list;
          const uint64_t before = l.version();
          const std::string e = "e" + std::to_string(step);
          const bool head = rnd.chance(0.5);
          if (l.empty() || kind <= 4) {
            if (head) l.push_front(e);
            else l.push_back(e);
            d.list_push(head, e);
          } else if (kind <= 6) {
            const uint64_t n = 1 + rnd.uniform(std::min<size_t>(l.size(), 3));
            for (uint64_t i = 0; i < n; ++i) (void)(head ? l.pop_front() : l.pop_back());
            d.list_pop(head, n);
          } else {
            const uint64_t i = rnd.uniform(l.size());
            if (kind == 7) {
              l[i] = e;
              d.list_set(i, e);
            } else if (kind == 8) {
              l.insert(i, e);
              d.list_insert(i, e);
            } else {
              l.erase(i);
              d.list_erase(i);
            }
          }
          d.seal_list(l, before);
          if (l.empty()) return cur ? UpdateAction::kErase : UpdateAction::kKeep;
          return UpdateAction::kWrite;
        }, d));
      }
      std::string effect;
      for (auto& [p, e] : rec.take()) effect += e;
      patches += !effect.empty() && effect[0] == 4;
      log.push_back(std::move(effect));
      scan(step);
    }
    // The replica: the scanned keys, then the log from L + 1.
    auto replica = memory(kParts);
    for (auto& [k, v] : scanned) {
      if (!v) continue;
      std::string e;
      encode_put(e, k, *v);
      ASSERT_TRUE(apply_effect(*replica, 1, e, now));
    }
    for (int step = from + 1; step <= kSteps; ++step)
      ASSERT_TRUE(apply_effect(*replica, 1, log[static_cast<size_t>(step - 1)], now)) << "seed " << seed;
    ASSERT_EQ(dump(*replica, kParts, now), dump(rec, kParts, now)) << "seed " << seed << " from " << from;
    for (auto& k : keys) {
      auto pv = rec.get(1, k, now);
      auto rv = replica->get(1, k, now);
      ASSERT_EQ(pv.has_value(), rv.has_value());
      if (pv) {
        EXPECT_EQ(pv->list->version(), rv->list->version()) << "seed " << seed << " key " << k;
      }
    }
  }
  EXPECT_GT(patches, 1000) << "list changes should travel as patches";
}

TEST(EffectRecorder, ClearTravelsAsADropPerRecordedPartition) {
  EffectRecorder rec(memory(), 8);
  rec.set_recorded(0, true);
  auto replica = memory();
  ASSERT_TRUE(replica->set_string(0, "old", "x", 0, 1));
  ASSERT_TRUE(rec.set_string(0, "a", "1", 0, 1));
  ASSERT_TRUE(rec.clear());
  for (auto& [p, e] : rec.take()) ASSERT_TRUE(apply_effect(*replica, p, e, 1));
  EXPECT_EQ(replica->size(), 0u);
}

TEST(EffectRecorder, FlushInAClusterDropsOnlyThePartitionsThisNodeIsPrimaryOf) {
  EffectRecorder rec(memory(), 8);
  rec.set_primary(0, true);
  rec.set_primary(1, false);  // a replica copy: the primary's to change
  ASSERT_TRUE(rec.set_string(0, "mine", "1", 0, 1));
  ASSERT_TRUE(rec.set_string(1, "theirs", "1", 0, 1));
  ASSERT_TRUE(rec.clear());
  EXPECT_FALSE(rec.get(0, "mine", 1));
  EXPECT_TRUE(rec.get(1, "theirs", 1));
}

TEST(ApplyEffect, GarbageIsRefusedWithTheReason) {
  auto e = memory();
  SeededRandom rnd(7);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rnd.uniform(40), '\0');
    for (auto& ch : junk) ch = static_cast<char>(rnd.uniform(256));
    auto st = apply_effect(*e, 0, junk, 1);  // must not crash or hang
    if (!st) {
      EXPECT_EQ(st.error().code, Errc::kCorruption);
    }
  }
  auto st = apply_effect(*e, 0, std::string("\x09", 1), 1);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("unknown op 9"), std::string::npos);
}

}  // namespace
}  // namespace keel::dht
