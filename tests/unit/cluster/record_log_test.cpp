#include "runtime/cluster/record_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/random.h"
#include "security/keyring.h"

namespace keel::cluster {
namespace {

rabia::Record decision(uint64_t slot, std::string payload) {
  rabia::Record r;
  r.kind = rabia::Record::Kind::kDecision;
  r.decision.slot = slot;
  r.decision.null = false;
  rabia::Request q;
  q.client_id = 1;
  q.seq = slot + 1;
  q.payload = std::move(payload);
  r.decision.batch.push_back(q);
  return r;
}

struct TempDir {
  std::string path = std::filesystem::temp_directory_path() / ("keel-rlog-" + std::to_string(system_seed()));
  ~TempDir() { std::filesystem::remove_all(path); }
};

TEST(RecordLog, ReopensWhatWasSyncedAndCutsATornTail) {
  TempDir d;
  uint64_t intact = 0;
  {
    RecordLog log;
    auto recs = log.open(d.path);
    ASSERT_TRUE(recs);
    EXPECT_TRUE(recs->empty());
    for (uint64_t s = 0; s < 5; ++s) ASSERT_TRUE(log.append(decision(s, "cmd" + std::to_string(s))));
    ASSERT_TRUE(log.sync());
    intact = log.bytes();
  }
  // The file is grown with zeros ahead of the records; reopening finds the records, and the
  // zeros are not a torn write.
  EXPECT_GT(std::filesystem::file_size(d.path + "/rabia.log"), intact);
  {
    RecordLog log;
    auto recs = log.open(d.path);
    ASSERT_TRUE(recs);
    EXPECT_EQ(recs->size(), 5u);
    EXPECT_EQ(log.torn_bytes_dropped(), 0u);
    EXPECT_EQ(log.bytes(), intact);
  }
  // A crash in the middle of an append: half a record right after the intact ones.
  {
    int fd = ::open((d.path + "/rabia.log").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "\x00\x00\x01\x00\xde\xad", 6, static_cast<off_t>(intact)), 6);
    ::close(fd);
  }
  RecordLog log;
  auto recs = log.open(d.path);
  ASSERT_TRUE(recs) << recs.error().message;
  ASSERT_EQ(recs->size(), 5u);
  EXPECT_EQ((*recs)[4].decision, decision(4, "cmd4").decision);
  EXPECT_EQ(log.torn_bytes_dropped(), 6u);
  EXPECT_EQ(std::filesystem::file_size(d.path + "/rabia.log"), intact);
  // Appends continue where the intact records end.
  ASSERT_TRUE(log.append(decision(5, "cmd5")));
  ASSERT_TRUE(log.sync());
  RecordLog again;
  auto r2 = again.open(d.path);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->size(), 6u);
}

TEST(RecordLog, GarbageAfterTheZerosIsCutToo) {
  TempDir d;
  uint64_t intact = 0;
  {
    RecordLog log;
    ASSERT_TRUE(log.open(d.path));
    ASSERT_TRUE(log.append(decision(0, "a")));
    ASSERT_TRUE(log.sync());
    intact = log.bytes();
  }
  {
    int fd = ::open((d.path + "/rabia.log").c_str(), O_WRONLY | O_APPEND);
    ASSERT_EQ(::write(fd, "xyz", 3), 3);
    ::close(fd);
  }
  RecordLog log;
  auto recs = log.open(d.path);
  ASSERT_TRUE(recs);
  EXPECT_EQ(recs->size(), 1u);
  EXPECT_GT(log.torn_bytes_dropped(), 3u);  // the zeros before it as well
  EXPECT_EQ(std::filesystem::file_size(d.path + "/rabia.log"), intact);
}

TEST(RecordLog, GrowsAcrossManyChunks) {
  TempDir d;
  {
    RecordLog log;
    ASSERT_TRUE(log.open(d.path));
    // ~3 MB of records: many 256 KiB growth steps, records straddling their edges.
    for (uint64_t s = 0; s < 1000; ++s) ASSERT_TRUE(log.append(decision(s, std::string(3000 + s % 7, 'p'))));
    ASSERT_TRUE(log.sync());
  }
  RecordLog log;
  auto recs = log.open(d.path);
  ASSERT_TRUE(recs);
  ASSERT_EQ(recs->size(), 1000u);
  EXPECT_EQ((*recs)[999].decision, decision(999, std::string(3000 + 999 % 7, 'p')).decision);
  EXPECT_EQ(log.torn_bytes_dropped(), 0u);
}

TEST(RecordLog, FlippedByteInTheMiddleStopsTheReadThere) {
  TempDir d;
  uint64_t size = 0;
  {
    RecordLog log;
    ASSERT_TRUE(log.open(d.path));
    for (uint64_t s = 0; s < 3; ++s) ASSERT_TRUE(log.append(decision(s, "x")));
    ASSERT_TRUE(log.sync());
    size = log.bytes();
  }
  {
    int fd = ::open((d.path + "/rabia.log").c_str(), O_RDWR);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(size - 2)), 1);
    c ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(size - 2)), 1);
    ::close(fd);
  }
  RecordLog log;
  auto recs = log.open(d.path);
  ASSERT_TRUE(recs);
  EXPECT_EQ(recs->size(), 2u);  // the damaged last record is treated as never synced
}

TEST(RecordLog, RewriteKeepsOnlyWhatIsGivenDurably) {
  TempDir d;
  RecordLog log;
  ASSERT_TRUE(log.open(d.path));
  for (uint64_t s = 0; s < 10; ++s) ASSERT_TRUE(log.append(decision(s, std::string(100, 'a'))));
  ASSERT_TRUE(log.sync());
  uint64_t before = log.bytes();
  rabia::Record snap;
  snap.kind = rabia::Record::Kind::kSnapshot;
  snap.slot = 8;
  snap.snapshot.next_slot = 8;
  snap.snapshot.app_state = "state";
  ASSERT_TRUE(log.rewrite({snap, decision(8, "a"), decision(9, "b")}));
  EXPECT_LT(log.bytes(), before);
  ASSERT_TRUE(log.append(decision(10, "c")));
  ASSERT_TRUE(log.sync());
  RecordLog again;
  auto recs = again.open(d.path);
  ASSERT_TRUE(recs);
  ASSERT_EQ(recs->size(), 4u);
  EXPECT_EQ((*recs)[0].snapshot, snap.snapshot);
  EXPECT_EQ((*recs)[3].decision, decision(10, "c").decision);
}


// ---- encryption at rest

std::unique_ptr<security::at_rest::MasterKeyProvider> master() {
  return security::at_rest::env_provider("KEEL_TEST_MASTER", [](const char*) {
    return "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  });
}

std::string file_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(RecordLog, SealedUnderTheKeyringNothingInTheClear) {
  TempDir d;
  std::filesystem::create_directories(d.path);
  auto kr = security::at_rest::Keyring::open(d.path, *master());
  ASSERT_TRUE(kr) << kr.error().message;
  {
    RecordLog log;
    log.set_keyring(*kr);
    ASSERT_TRUE(log.open(d.path + "/cluster"));
    for (uint64_t s = 0; s < 4; ++s) ASSERT_TRUE(log.append(decision(s, "needle-in-the-log-" + std::to_string(s))));
    ASSERT_TRUE(log.sync());
    EXPECT_EQ(log.key_versions(), (std::map<uint32_t, uint64_t>{{1, 4}}));
  }
  EXPECT_EQ(file_text(d.path + "/cluster/rabia.log").find("needle-in-the-log"), std::string::npos);
  {
    RecordLog log;
    log.set_keyring(*kr);
    auto recs = log.open(d.path + "/cluster");
    ASSERT_TRUE(recs) << recs.error().message;
    ASSERT_EQ(recs->size(), 4u);
    EXPECT_EQ((*recs)[3].decision, decision(3, "needle-in-the-log-3").decision);
  }
  {
    RecordLog log;  // no master key: refused, saying what to set
    auto recs = log.open(d.path + "/cluster");
    ASSERT_FALSE(recs);
    EXPECT_NE(recs.error().message.find("encrypted at rest (key version 1)"), std::string::npos) << recs.error().message;
    EXPECT_NE(recs.error().message.find("security.at_rest.key_file"), std::string::npos);
  }
}

TEST(RecordLog, ResealMovesEveryRecordToTheCurrentKey) {
  TempDir d;
  std::filesystem::create_directories(d.path);
  {
    RecordLog log;  // written before encryption was turned on
    ASSERT_TRUE(log.open(d.path + "/cluster"));
    ASSERT_TRUE(log.append(decision(0, "plain-needle")));
    ASSERT_TRUE(log.sync());
  }
  auto kr = security::at_rest::Keyring::open(d.path, *master());
  ASSERT_TRUE(kr);
  RecordLog log;
  log.set_keyring(*kr);
  auto recs = log.open(d.path + "/cluster");
  ASSERT_TRUE(recs) << recs.error().message;  // the plaintext records still open
  ASSERT_EQ(recs->size(), 1u);
  ASSERT_TRUE(log.append(decision(1, "sealed-needle")));
  EXPECT_EQ(log.key_versions(), (std::map<uint32_t, uint64_t>{{0, 1}, {1, 1}}));
  EXPECT_NE(file_text(d.path + "/cluster/rabia.log").find("plain-needle"), std::string::npos);
  ASSERT_TRUE(log.reseal());
  EXPECT_EQ(log.key_versions(), (std::map<uint32_t, uint64_t>{{1, 2}}));
  EXPECT_EQ(file_text(d.path + "/cluster/rabia.log").find("plain-needle"), std::string::npos);
  // A rotation: resealed under version 2; then version 1 can go and the log still opens.
  auto v2 = (*kr)->rotate();
  ASSERT_TRUE(v2);
  ASSERT_TRUE(log.append(decision(2, "third")));
  ASSERT_TRUE(log.reseal());
  EXPECT_EQ(log.key_versions(), (std::map<uint32_t, uint64_t>{{2, 3}}));
  ASSERT_TRUE(log.append(decision(3, "fourth")));  // appends go on after a reseal
  ASSERT_TRUE(log.sync());
  ASSERT_TRUE((*kr)->retire(1));
  RecordLog again;
  again.set_keyring(*kr);
  auto all = again.open(d.path + "/cluster");
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].decision, decision(0, "plain-needle").decision);
  EXPECT_EQ((*all)[3].decision, decision(3, "fourth").decision);
}

TEST(RecordLog, ARecordUnderARetiredKeyIsAnErrorNamingIt) {
  TempDir d;
  std::filesystem::create_directories(d.path);
  auto kr = security::at_rest::Keyring::open(d.path, *master());
  ASSERT_TRUE(kr);
  {
    RecordLog log;
    log.set_keyring(*kr);
    ASSERT_TRUE(log.open(d.path + "/cluster"));
    ASSERT_TRUE(log.append(decision(0, "under-1")));
    ASSERT_TRUE(log.sync());
  }
  ASSERT_TRUE((*kr)->rotate());
  ASSERT_TRUE((*kr)->retire(1));  // without a reseal first (what /v1/keys refuses to do)
  RecordLog log;
  log.set_keyring(*kr);
  auto recs = log.open(d.path + "/cluster");
  ASSERT_FALSE(recs);
  EXPECT_NE(recs.error().message.find("sealed under at-rest key version 1"), std::string::npos) << recs.error().message;
}

}  // namespace
}  // namespace keel::cluster
