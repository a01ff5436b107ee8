// Changes described element by element (storage/delta.h): each op against its meaning, the
// idempotence flags, malformed input, and the persistent engine journaling deltas instead of
// whole values (a reopen gives back the same values, plaintext and encrypted at rest, and the
// journal grows by what changed, not by the collection's size).
#include "storage/delta.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "base/random.h"
#include "security/keyring.h"
#include "storage/engine.h"
#include "test_util.h"

namespace keel::storage {
namespace {

using testing::TempDir;

Value empty_of(ValueType t) {
  Value v;
  v.type = t;
  return v;
}

TEST(Delta, HashSetAndZsetOpsApply) {
  Delta d;
  d.hash_set("a", "1");
  d.hash_set("b", "2");
  d.hash_del("a");
  Value h = empty_of(ValueType::kHash);
  h.hash["a"] = "0";
  ASSERT_TRUE(apply_delta(h, d.ops()));
  EXPECT_EQ(h.hash, (HashMap{{"b", "2"}}));
  EXPECT_TRUE(d.described());
  EXPECT_TRUE(d.idempotent());

  Delta s;
  s.set_add("x");
  s.set_add("y");
  s.set_rem("x");
  Value sv = empty_of(ValueType::kSet);
  ASSERT_TRUE(apply_delta(sv, s.ops()));
  EXPECT_EQ(sv.set, (SetMembers{"y"}));

  Delta z;
  z.zset_set("m", 1.5);
  z.zset_set("n", -2);
  z.zset_rem("m");
  Value zv = empty_of(ValueType::kZSet);
  ASSERT_TRUE(apply_delta(zv, z.ops()));
  ASSERT_EQ(zv.zset.size(), 1u);
  EXPECT_EQ(*zv.zset.score("n"), -2);
  // Applying the same ops again changes nothing (they set elements to a state).
  Value again = zv;
  ASSERT_TRUE(apply_delta(again, z.ops()));
  EXPECT_TRUE(same_value(again, zv));
}

TEST(Delta, ListOpsApplyInOrderAndAreNotIdempotent) {
  Delta d;
  d.list_push(false, "a");   // a
  d.list_push(false, "b");   // a b
  d.list_push(true, "z");    // z a b
  d.list_insert(1, "m");     // z m a b
  d.list_set(3, "B");        // z m a B
  d.list_erase(2);           // z m B
  d.list_pop(true, 1);       // m B
  d.list_push(false, "c");   // m B c
  d.list_pop(false, 1);      // m B
  Value v = empty_of(ValueType::kList);
  ASSERT_TRUE(apply_delta(v, d.ops()));
  ASSERT_EQ(v.list.size(), 2u);
  EXPECT_EQ(v.list[0], "m");
  EXPECT_EQ(v.list[1], "B");
  EXPECT_FALSE(d.idempotent());
  // An index past the end is an error naming it, not a crash.
  Delta bad;
  bad.list_set(5, "x");
  auto st = apply_delta(v, bad.ops());
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("index 5 is past a list of 2"), std::string::npos) << st.error().message;
  Delta pop;
  pop.list_pop(true, 3);
  EXPECT_FALSE(apply_delta(v, pop.ops()));
}

// A list change sealed with the list's change number is idempotent: applied to a list that
// already has the number (or a later one) it does nothing; applied to the list it was made on it
// applies and gives the list the number. Ops that do not fit a list they were not made on stop
// without error under the guard (replication replays those only before a reset).
TEST(Delta, SealedListChangesAreGuardedByTheListsChangeNumber) {
  Value v = empty_of(ValueType::kList);
  v.list.push_back("a");
  v.list.set_version(7);
  const Value before = v;
  Delta d;
  v.list.push_back("b");
  (void)v.list.pop_front();
  d.list_push(false, "b");
  d.list_pop(true, 1);
  EXPECT_FALSE(d.idempotent());
  d.seal_list(v.list, before.list.version());
  EXPECT_TRUE(d.idempotent());
  EXPECT_EQ(v.list.version(), 8u);
  Value replayed = before;
  ASSERT_TRUE(apply_delta(replayed, d.ops()));
  EXPECT_TRUE(same_value(replayed, v));
  ASSERT_TRUE(apply_delta(replayed, d.ops()));  // again: skipped
  EXPECT_TRUE(same_value(replayed, v));
  Value later = v;
  later.list.push_back("c");
  later.list.set_version(9);
  const Value later_copy = later;
  ASSERT_TRUE(apply_delta(later, d.ops()));
  EXPECT_TRUE(same_value(later, later_copy));

  // Under the guard, ops that do not fit stop quietly (a newer incarnation with lower numbers).
  Value other = empty_of(ValueType::kList);
  ASSERT_TRUE(apply_delta(other, d.ops()));  // push b, then pop 1 of [b]: fits
  Delta big;
  Value l = empty_of(ValueType::kList);
  l.list.push_back("x");
  big.list_pop(true, 1);
  big.list_set(3, "y");
  big.seal_list(l.list, 0);
  Value small = empty_of(ValueType::kList);
  small.list.push_back("only");
  EXPECT_TRUE(apply_delta(small, big.ops()));
  // Without a guard the same misfit is an error naming it.
  Delta unguarded;
  unguarded.list_set(3, "y");
  EXPECT_FALSE(apply_delta(small, unguarded.ops()));

  // The guard must come first, and a zero number is refused.
  std::string ops(d.ops());
  std::string misplaced = ops.substr(2) + ops.substr(0, 2);  // guard (op 22, varint 8) moved to the end
  Value m = before;
  auto st = apply_delta(m, misplaced);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("must be the first op"), std::string::npos) << st.error().message;
  Value z = before;
  EXPECT_FALSE(apply_delta(z, std::string("\x16\x00", 2)));
  // An unsealed change without ops stays undescribed.
  Delta none;
  Value q = empty_of(ValueType::kList);
  none.seal_list(q.list, 4);
  EXPECT_FALSE(none.described());
  EXPECT_EQ(q.list.version(), 5u);
}

TEST(Delta, StreamOpsAreGuardedAndIdempotent) {
  Delta d;
  std::vector<std::string_view> fv = {"f", "v"};
  for (uint64_t i = 1; i <= 5; ++i) d.stream_append({i, 0}, fv);
  d.stream_delete({2, 0});
  Value trimmed = empty_of(ValueType::kStream);
  for (uint64_t i = 4; i <= 5; ++i) trimmed.stream.append({i, 0}, fv);
  d.stream_trimmed(trimmed.stream);  // kept 4-0 and 5-0
  EXPECT_TRUE(d.idempotent());
  Value v = empty_of(ValueType::kStream);
  ASSERT_TRUE(apply_delta(v, d.ops()));
  EXPECT_EQ(v.stream.size(), 2u);
  EXPECT_EQ(*v.stream.first_entry_id(), (StreamId{4, 0}));
  EXPECT_EQ(v.stream.last_id(), (StreamId{5, 0}));
  // Applied again (as a replica that got a snapshot holding these writes would): unchanged.
  Value again = v;
  ASSERT_TRUE(apply_delta(again, d.ops()));
  EXPECT_TRUE(same_value(again, v));

  // A trim that kept nothing, replayed over a later state, leaves the later entries alone.
  Value emptied = v;
  emptied.stream.trim_maxlen(0, false, 0);
  Delta all;
  all.stream_trimmed(emptied.stream);
  Value later = emptied;
  later.stream.append({9, 0}, fv);
  Value replay = later;
  ASSERT_TRUE(apply_delta(replay, all.ops()));
  EXPECT_TRUE(same_value(replay, later));
  Value from_before = v;
  ASSERT_TRUE(apply_delta(from_before, all.ops()));
  EXPECT_TRUE(same_value(from_before, emptied));
}

TEST(Delta, AnOpForAnotherTypeIsRefused) {
  Delta d;
  d.set_add("x");
  Value h = empty_of(ValueType::kHash);
  auto st = apply_delta(h, d.ops());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::kCorruption);
  EXPECT_NE(st.error().message.find("is for a set but the value is a hash"), std::string::npos) << st.error().message;
}

TEST(Delta, UndescribedAndWholeChangesAreNotDescribed) {
  Delta d;
  EXPECT_FALSE(d.described());
  d.hash_set("a", "b");
  d.whole();
  EXPECT_FALSE(d.described());
  d.clear();
  EXPECT_FALSE(d.described());
  EXPECT_TRUE(d.ops().empty());
}

// Random bytes and every truncation of valid deltas: an error or a result, never a crash.
TEST(Delta, MalformedBytesNeverCrash) {
  std::mt19937_64 rng(42);
  Delta valid;
  valid.hash_set("field", "value");
  valid.list_push(true, "e");
  valid.stream_append({1, 1}, std::vector<std::string_view>{"a", "b"});
  valid.zset_set("m", 3);
  const std::string ops(valid.ops());
  for (ValueType t : {ValueType::kHash, ValueType::kList, ValueType::kSet, ValueType::kZSet, ValueType::kStream}) {
    for (size_t n = 0; n <= ops.size(); ++n) {
      Value v = empty_of(t);
      (void)apply_delta(v, std::string_view(ops).substr(0, n));
    }
    for (int i = 0; i < 3000; ++i) {
      std::string junk(rng() % 40, '\0');
      for (auto& ch : junk) ch = static_cast<char>(rng() % 23);  // mostly valid op codes
      Value v = empty_of(t);
      auto st = apply_delta(v, junk);
      if (!st) {
        EXPECT_EQ(st.error().code, Errc::kCorruption);
      }
    }
  }
}

// ---- the persistent engine -------------------------------------------------------------------

uint64_t dir_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

std::unique_ptr<security::at_rest::MasterKeyProvider> master() {
  return security::at_rest::env_provider("KEEL_TEST_MASTER", [](const char*) {
    return "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  });
}

struct Resident {
  TempDir dir;
  ManualClock clock;
  std::shared_ptr<security::at_rest::Keyring> keyring;
  std::vector<std::unique_ptr<Engine>> engines;

  void open(bool encrypted) {
    engines.clear();
    EngineConfig c;
    c.kind = EngineConfig::Kind::kPersistent;
    c.keep_in_memory = true;
    c.partitions = 4;
    c.data_dir = dir.path() + "/db";
    c.fsync = FsyncPolicy::kNo;
    c.block_cache_bytes = 1 << 20;
    c.min_free_bytes = 0;
    if (encrypted) {
      std::filesystem::create_directories(c.data_dir);
      auto kr = security::at_rest::Keyring::open(c.data_dir, *master());
      ASSERT_TRUE(kr) << kr.error().message;
      keyring = *kr;
      c.keyring = keyring;
    }
    auto e = open_engines(c, 1, clock);
    ASSERT_TRUE(e) << e.error().message;
    engines = std::move(*e);
  }
  Engine& e() { return *engines[0]; }

  // Changes the collection at `key` by element: `fn` changes the value and records the delta.
  template <class F>
  void change(const std::string& key, ValueType type, F&& fn) {
    Delta d;
    auto st = e().update_by_element(0, key, clock.now_ms(), [&](Value* cur, Value* scratch) {
      Value* t = cur ? cur : scratch;
      t->type = type;
      fn(*t, d);
      return UpdateAction::kWrite;
    }, d);
    ASSERT_TRUE(st) << st.error().message;
    ASSERT_TRUE(e().commit());
  }
};

class DeltaJournal : public ::testing::TestWithParam<bool> {};

TEST_P(DeltaJournal, ReopenGivesBackWhatDeltasBuilt) {
  const bool encrypted = GetParam();
  Resident n;
  n.open(encrypted);
  if (::testing::Test::HasFatalFailure()) return;
  std::map<std::string, Value> model;
  std::mt19937_64 rng(7);
  // Collections start large enough to be journaled by element (the resident engine writes
  // small ones whole).
  {
    Value h = empty_of(ValueType::kHash), st = empty_of(ValueType::kSet), z = empty_of(ValueType::kZSet),
          l = empty_of(ValueType::kList);
    for (int i = 0; i < 100; ++i) {
      const std::string e = "SECRET-ELEMENT-base-" + std::to_string(i);
      h.hash[e] = "v";
      st.set.insert(e);
      z.zset.set(e, i);
      l.list.push_back(e);
    }
    for (auto& [k, v] : std::vector<std::pair<std::string, Value*>>{{"h", &h}, {"s", &st}, {"z", &z}, {"l", &l}})
      ASSERT_TRUE(n.e().put(0, k, *v, n.clock.now_ms()));
  }
  std::vector<std::string_view> fv = {"field", "SECRET-ELEMENT-stream"};
  uint64_t ms = 1;
  for (int i = 0; i < 1500; ++i) {
    const std::string e = "SECRET-ELEMENT-" + std::to_string(rng() % 50);
    switch (i % 5) {
      case 0:
        n.change("h", ValueType::kHash, [&](Value& v, Delta& d) {
          if (rng() % 3 == 0 && v.hash.erase(e)) return d.hash_del(e);
          v.hash[e] = std::to_string(i);
          d.hash_set(e, std::to_string(i));
        });
        break;
      case 1:
        n.change("s", ValueType::kSet, [&](Value& v, Delta& d) {
          if (rng() % 3 == 0 && v.set.erase(e)) return d.set_rem(e);
          v.set.insert(e);
          d.set_add(e);
        });
        break;
      case 2:
        n.change("z", ValueType::kZSet, [&](Value& v, Delta& d) {
          v.zset.set(e, static_cast<double>(i) / 3);
          d.zset_set(e, static_cast<double>(i) / 3);
        });
        break;
      case 3:
        n.change("l", ValueType::kList, [&](Value& v, Delta& d) {
          const uint64_t before = v.list.version();
          const bool sealed = rng() % 4 != 0;  // as the list commands do; some left unguarded
          if (v.list.size() > 3 && rng() % 3 == 0) {
            v.list.pop_front();
            d.list_pop(true, 1);
          } else {
            v.list.push_back(e);
            d.list_push(false, e);
          }
          if (sealed) d.seal_list(v.list, before);
        });
        break;
      case 4:
        n.change("x", ValueType::kStream, [&](Value& v, Delta& d) {
          v.stream.append({ms, 0}, fv);
          d.stream_append({ms++, 0}, fv);
          if (v.stream.size() > 90) {
            v.stream.trim_maxlen(90, false, 0);
            d.stream_trimmed(v.stream);
          }
        });
        break;
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
  // A small list is journaled whole: its change number is stored with its elements.
  for (int i = 0; i < 10; ++i)
    n.change("sl", ValueType::kList, [&](Value& v, Delta& d) {
      const uint64_t before = v.list.version();
      v.list.push_back("e");
      d.list_push(false, "e");
      d.seal_list(v.list, before);
    });
  if (::testing::Test::HasFatalFailure()) return;
  for (const char* k : {"h", "s", "z", "l", "x", "sl"}) {
    auto v = n.e().get(0, k, n.clock.now_ms());
    ASSERT_TRUE(v) << k;
    model[k] = copy_value(*v);
  }
  ASSERT_TRUE(n.e().flush());
  n.open(encrypted);
  if (::testing::Test::HasFatalFailure()) return;
  for (auto& [k, want] : model) {
    auto v = n.e().get(0, k, n.clock.now_ms());
    ASSERT_TRUE(v) << k;
    EXPECT_TRUE(same_value(copy_value(*v), want)) << "key " << k << " differs after reopen";
  }
  EXPECT_EQ(model["sl"].list.version(), 10u);
  EXPECT_GT(model["l"].list.version(), 100u);
  if (encrypted) {
    // No element of a delta reaches the disk in the clear.
    for (auto& f : std::filesystem::recursive_directory_iterator(n.dir.path())) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(bytes.find("SECRET-ELEMENT"), std::string::npos) << f.path();
    }
  }
}

// Changing one field of a large hash journals the field, not the hash: 2000 such changes to a
// 20,000-field hash (about 600 KB) add a few hundred KB to the data directory; journaled whole
// they would add over a gigabyte.
TEST_P(DeltaJournal, AChangeCostsWhatItChanges) {
  Resident n;
  n.open(GetParam());
  if (::testing::Test::HasFatalFailure()) return;
  Value big = empty_of(ValueType::kHash);
  for (int i = 0; i < 20000; ++i) big.hash["field-" + std::to_string(i)] = "value-0123456789-" + std::to_string(i);
  ASSERT_TRUE(n.e().put(0, "big", big, n.clock.now_ms()));
  ASSERT_TRUE(n.e().commit());
  ASSERT_TRUE(n.e().flush());
  const uint64_t before = dir_bytes(n.dir.path());
  for (int i = 0; i < 2000; ++i) {
    const std::string f = "field-" + std::to_string(i * 7 % 20000);
    n.change("big", ValueType::kHash, [&](Value& v, Delta& d) {
      v.hash[f] = "changed";
      d.hash_set(f, "changed");
      big.hash[f] = "changed";
    });
    if (::testing::Test::HasFatalFailure()) return;
  }
  ASSERT_TRUE(n.e().flush());
  const uint64_t grew = dir_bytes(n.dir.path()) - before;
  EXPECT_LT(grew, 8u << 20) << "2000 one-field changes grew the data directory by " << grew << " bytes";
  n.open(GetParam());
  if (::testing::Test::HasFatalFailure()) return;
  auto v = n.e().get(0, "big", n.clock.now_ms());
  ASSERT_TRUE(v);
  EXPECT_TRUE(same_value(copy_value(*v), big));
}

INSTANTIATE_TEST_SUITE_P(PlainAndEncrypted, DeltaJournal, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "encrypted" : "plaintext"; });

}  // namespace
}  // namespace keel::storage
