#include "runtime/cluster/record_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "base/random.h"

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
  {
    RecordLog log;
    auto recs = log.open(d.path);
    ASSERT_TRUE(recs);
    EXPECT_TRUE(recs->empty());
    for (uint64_t s = 0; s < 5; ++s) ASSERT_TRUE(log.append(decision(s, "cmd" + std::to_string(s))));
    ASSERT_TRUE(log.sync());
  }
  // A crash in the middle of an append: half a record at the end.
  auto full = std::filesystem::file_size(d.path + "/rabia.log");
  {
    int fd = ::open((d.path + "/rabia.log").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "\x00\x00\x01\x00\xde\xad", 6), 6);
    ::close(fd);
  }
  RecordLog log;
  auto recs = log.open(d.path);
  ASSERT_TRUE(recs) << recs.error().message;
  ASSERT_EQ(recs->size(), 5u);
  EXPECT_EQ((*recs)[4].decision, decision(4, "cmd4").decision);
  EXPECT_EQ(log.torn_bytes_dropped(), 6u);
  EXPECT_EQ(std::filesystem::file_size(d.path + "/rabia.log"), full);
  // Appends continue where the intact records end.
  ASSERT_TRUE(log.append(decision(5, "cmd5")));
  ASSERT_TRUE(log.sync());
  RecordLog again;
  auto r2 = again.open(d.path);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->size(), 6u);
}

TEST(RecordLog, FlippedByteInTheMiddleStopsTheReadThere) {
  TempDir d;
  {
    RecordLog log;
    ASSERT_TRUE(log.open(d.path));
    for (uint64_t s = 0; s < 3; ++s) ASSERT_TRUE(log.append(decision(s, "x")));
    ASSERT_TRUE(log.sync());
  }
  auto size = std::filesystem::file_size(d.path + "/rabia.log");
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

}  // namespace
}  // namespace keel::cluster
