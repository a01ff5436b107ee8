// The durable log of a Rabia replica: an append-only file of the core's Records
// (consensus/rabia/codec), each framed as
//     u32be length | u32be XXH32(data) | data
// append() writes, sync() makes everything appended so far durable (fdatasync) — the driver
// calls it once per Ready, before any message of that Ready leaves (rule R1 in replica.h).
//
// open() reads every intact record in write order. A torn tail (a record cut short or with a
// bad checksum: the process died mid-append, before the sync) is cut off: it was never synced,
// so no message depending on it was sent.
//
// Truncation (rule R3): when a kSnapshot record is appended, rewrite() replaces the file with
// the snapshot plus the records about slots it does not cover, via a temporary file, fsync and
// an atomic rename.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "consensus/rabia/types.h"

namespace keel::cluster {

class RecordLog {
 public:
  RecordLog() = default;
  ~RecordLog();
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // Creates `dir` if needed, reads the log and leaves the file open for appending.
  Result<std::vector<rabia::Record>> open(const std::string& dir);
  Status append(const rabia::Record& r);
  Status sync();
  // Replaces the file with `keep` (a snapshot record first, then later records). Durable on
  // return.
  Status rewrite(const std::vector<rabia::Record>& keep);

  uint64_t bytes() const { return bytes_; }
  uint64_t syncs() const { return syncs_; }
  uint64_t torn_bytes_dropped() const { return torn_; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  uint64_t syncs_ = 0;
  uint64_t torn_ = 0;
};

}  // namespace keel::cluster
