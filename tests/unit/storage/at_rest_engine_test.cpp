// Encryption at rest in the persistent engine (both modes: reads from RocksDB, and the resident
// default): nothing in plaintext on disk, versions, the clear error for a retired key, the
// background rewrap with its persisted cursors, and plaintext data dirs taken over.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "security/keyring.h"
#include "storage/engine.h"
#include "test_util.h"

namespace keel::storage {
namespace {

using security::at_rest::Keyring;
using testing::Kind;
using testing::TempDir;

std::unique_ptr<security::at_rest::MasterKeyProvider> master() {
  return security::at_rest::env_provider("KEEL_TEST_MASTER", [](const char*) {
    return "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  });
}

struct Node {
  Kind kind;
  TempDir dir;
  ManualClock clock;
  std::shared_ptr<Keyring> keyring;
  std::vector<std::unique_ptr<Engine>> engines;
  double rate = 1000;  // rewrap keys/s for the node

  explicit Node(Kind k) : kind(k) {}
  std::string data() const { return dir.path() + "/db"; }
  void open(bool encrypted = true, unsigned shards = 2) {
    engines.clear();
    keyring.reset();
    EngineConfig c;
    c.kind = EngineConfig::Kind::kPersistent;
    c.keep_in_memory = kind == Kind::kResident;
    c.partitions = 8;
    c.data_dir = data();
    c.fsync = FsyncPolicy::kNo;
    c.block_cache_bytes = 1 << 20;
    c.min_free_bytes = 0;
    c.rewrap_keys_per_s = rate;
    if (encrypted) {
      std::filesystem::create_directories(c.data_dir);
      auto kr = Keyring::open(c.data_dir, *master());
      ASSERT_TRUE(kr) << kr.error().message;
      keyring = *kr;
      c.keyring = keyring;
    }
    auto e = open_engines(c, shards, clock);
    ASSERT_TRUE(e) << e.error().message;
    engines = std::move(*e);
  }
  void close() {
    for (auto& e : engines) ASSERT_TRUE(e->flush());
    engines.clear();
  }
  Engine& shard_of(uint32_t p) { return *engines[p % engines.size()]; }
  void set(uint32_t p, const std::string& k, const std::string& v) {
    ASSERT_TRUE(shard_of(p).set_string(p, k, v, 0, clock.now_ms()));
    ASSERT_TRUE(shard_of(p).commit());
  }
  std::optional<std::string> get(uint32_t p, const std::string& k) {
    auto v = shard_of(p).get(p, k, clock.now_ms());
    if (!v) return std::nullopt;
    return std::string(v->str);
  }
  // Runs every shard's maintenance for `seconds` of manual time, 100 ms apart.
  void run(int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      clock.advance_ms(100);
      for (auto& e : engines) e->maintenance(clock.now_ms(), 100);
    }
  }
  std::map<uint32_t, uint64_t> census() {
    auto c = engines[0]->at_rest_census(clock.now_ms());
    EXPECT_TRUE(c) << c.error().message;
    return c ? *c : std::map<uint32_t, uint64_t>{};
  }
  // Whether any file of the data directory holds `needle`.
  bool on_disk(const std::string& needle) {
    for (auto& f : std::filesystem::recursive_directory_iterator(data())) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      if (ss.str().find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

class AtRestEngine : public ::testing::TestWithParam<Kind> {};

TEST_P(AtRestEngine, ValuesAreSealedOnDiskAndReadBack) {
  Node n(GetParam());
  n.open();
  n.set(1, "card:1", "plaintext-needle-4111111111111111");
  Value h;
  h.type = ValueType::kHash;
  h.hash = {{"field-needle-x", "value-needle-y"}};
  ASSERT_TRUE(n.shard_of(2).put(2, "h", h, n.clock.now_ms()));
  ASSERT_TRUE(n.shard_of(2).commit());
  n.close();
  EXPECT_FALSE(n.on_disk("plaintext-needle"));
  EXPECT_FALSE(n.on_disk("value-needle-y"));
  EXPECT_TRUE(n.on_disk("card:1"));  // keys stay in plaintext (ordering, scans)
  n.open();
  EXPECT_EQ(n.get(1, "card:1"), "plaintext-needle-4111111111111111");
  auto hv = n.shard_of(2).get(2, "h", n.clock.now_ms());
  ASSERT_TRUE(hv);
  EXPECT_EQ(hv->hash->at("field-needle-x"), "value-needle-y");
  EXPECT_EQ(n.census(), (std::map<uint32_t, uint64_t>{{1, 2}}));
}

TEST_P(AtRestEngine, RetiredKeyIsAClearErrorAndOtherKeysServe) {
  Node n(GetParam());
  n.open();
  n.set(1, "old", "under-v1");
  ASSERT_TRUE(n.keyring->rotate());
  n.set(1, "new", "under-v2");
  // Retired without rewrap (what the admin door refuses; the keyring itself does not check).
  ASSERT_TRUE(n.keyring->retire(1));
  n.close();
  n.open();
  EXPECT_EQ(n.get(1, "new"), "under-v2");
  EXPECT_FALSE(n.shard_of(1).take_read_error());
  EXPECT_EQ(n.get(1, "old"), std::nullopt);
  auto err = n.shard_of(1).take_read_error();
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, Errc::kCorruption);
  EXPECT_EQ(err->message,
            "cannot read key 'old': at-rest key version 1 is retired (keel keys retire 1); its key was deleted; "
            "other keys are served, and SET or DEL replaces it");
  EXPECT_FALSE(n.shard_of(1).take_read_error());  // once
  // A read-modify-write refuses it; SET replaces it.
  auto upd = n.shard_of(1).update(1, "old", n.clock.now_ms(), [](Value*, Value* s) {
    s->str = "x";
    return UpdateAction::kWrite;
  });
  ASSERT_FALSE(upd);
  EXPECT_NE(upd.error().message.find("at-rest key version 1 is retired"), std::string::npos);
  n.set(1, "old", "replaced");
  EXPECT_EQ(n.get(1, "old"), "replaced");
  EXPECT_FALSE(n.shard_of(1).take_read_error());
}

TEST_P(AtRestEngine, RotationRewrapsInTheBackgroundAndResumes) {
  Node n(GetParam());
  n.rate = 200;
  n.open();
  for (int i = 0; i < 400; ++i) n.set(static_cast<uint32_t>(i % 8), "k" + std::to_string(i), "v" + std::to_string(i));
  ASSERT_TRUE(n.keyring->rotate());
  n.run(1);  // 200 keys/s for the node: some of the 400, not all
  auto mid = n.keyring->rewrap_progress();
  EXPECT_FALSE(mid.complete);
  EXPECT_GT(mid.keys_total, 0u);
  // Writes meanwhile land under version 2.
  n.set(3, "k3", "changed");
  n.close();  // a restart mid-rewrap: cursors resume
  n.open();
  n.run(3);
  auto done = n.keyring->rewrap_progress();
  EXPECT_TRUE(done.complete);
  EXPECT_EQ(n.census(), (std::map<uint32_t, uint64_t>{{2, 400}}));
  for (int i = 0; i < 400; ++i)
    EXPECT_EQ(n.get(static_cast<uint32_t>(i % 8), "k" + std::to_string(i)), i == 3 ? "changed" : "v" + std::to_string(i));
  ASSERT_TRUE(n.keyring->retire(1));
  n.close();
  n.open();
  EXPECT_EQ(n.get(5, "k5"), "v5");
}

TEST_P(AtRestEngine, PlaintextDataDirIsVersionZeroAndRewrapped) {
  Node n(GetParam());
  n.open(/*encrypted=*/false);
  n.set(1, "a", "plain-a");
  n.set(2, "b", "plain-b");
  n.close();
  n.open();
  EXPECT_EQ(n.get(1, "a"), "plain-a");
  EXPECT_EQ(n.census(), (std::map<uint32_t, uint64_t>{{0, 2}}));
  n.run(1);
  EXPECT_EQ(n.census(), (std::map<uint32_t, uint64_t>{{1, 2}}));
  ASSERT_TRUE(n.keyring->retire(0));
  EXPECT_EQ(n.get(2, "b"), "plain-b");
}

TEST_P(AtRestEngine, EncryptedDataWithoutKeyringIsAnError) {
  Node n(GetParam());
  n.open();
  n.set(1, "a", "sealed");
  n.close();
  n.open(/*encrypted=*/false);
  EXPECT_EQ(n.get(1, "a"), std::nullopt);
  auto err = n.shard_of(1).take_read_error();
  ASSERT_TRUE(err);
  EXPECT_EQ(err->message,
            "cannot read key 'a': it is encrypted (at-rest key version 1) and this node has no master key; set "
            "security.at_rest.key_file or security.at_rest.key_env; other keys are served, and SET or DEL replaces it");
}

INSTANTIATE_TEST_SUITE_P(Modes, AtRestEngine, ::testing::Values(Kind::kPersistent, Kind::kResident),
                         [](const auto& info) { return std::string(testing::kind_name(info.param)); });

}  // namespace
}  // namespace keel::storage
