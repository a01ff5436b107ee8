// The durable log of a Rabia replica: an append-only file of the core's Records
// (consensus/rabia/codec), each framed as
//     u32be length | u32be XXH32(data) | data        (length >= 1)
// append() writes, sync() makes everything appended so far durable (fdatasync) — the driver
// calls it once per Ready, before any message of that Ready leaves (rule R1 in replica.h).
//
// The file is grown ahead of the records in 256 KiB chunks of written zeros (not fallocate, whose
// unwritten extents need a metadata update on the first write): a record then overwrites
// blocks that already exist, and fdatasync has no file size or extent change to journal —
// about half the time of a sync that appends, on ext4 here. A zero length marks the end.
//
// open() reads every intact record in write order. A torn tail (a record cut short or with a
// bad checksum: the process died mid-append, before the sync) is cut off: it was never synced,
// so no message depending on it was sent.
//
// Truncation (rule R3): when a kSnapshot record is appended, rewrite() replaces the file with
// the snapshot plus the records about slots it does not cover, via a temporary file, fsync and
// an atomic rename.
//
// Encryption at rest: with a keyring (the node's security.at_rest master key), every record
// written is sealed under the keyring's current data key (AES-256-GCM, at_rest_codec.h):
//     data = 0xE1 | u32be key version | nonce | ciphertext | tag     (the plaintext: the record)
// with "keel.rabia.log" as associated data. A record's plain encoding starts with the codec's
// version (1), so both kinds are told apart, and a log written before encryption was turned on
// still opens; reseal() rewrites every record under the current key (after a key rotation, and
// before an older key is retired). A sealed record that cannot be opened (a retired or unknown
// key version, a failed authentication) stops open() with an error naming the offset and why.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "consensus/rabia/types.h"

namespace keel::security::at_rest {
class Keyring;
}

namespace keel::cluster {

class RecordLog {
 public:
  RecordLog() = default;
  ~RecordLog();
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // Records are sealed under `keyring`'s current key from now on. Call before open().
  void set_keyring(std::shared_ptr<security::at_rest::Keyring> keyring) { keyring_ = std::move(keyring); }
  // Creates `dir` if needed, reads the log and leaves the file open for appending.
  Result<std::vector<rabia::Record>> open(const std::string& dir);
  // Rewrites the whole log with every record sealed under the keyring's current key (a no-op
  // when every record already is). Durable on return.
  Status reseal();
  // How many records the file holds under each at-rest key version (0: in the clear). Any thread.
  std::map<uint32_t, uint64_t> key_versions() const;
  Status append(const rabia::Record& r);
  Status sync();
  // Replaces the file with `keep` (a snapshot record first, then later records). Durable on
  // return.
  Status rewrite(const std::vector<rabia::Record>& keep);

  uint64_t bytes() const { return bytes_; }  // of records (the file is longer: zeros ahead)
  uint64_t syncs() const { return syncs_; }
  uint64_t torn_bytes_dropped() const { return torn_; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  Status ensure_room(size_t n);
  // The framed form of `r` (sealed when there is a keyring); `version` gets its key version.
  Status frame(std::string& out, const rabia::Record& r, uint32_t& version) const;
  // Reads the intact records of the open file (cut at a torn tail: `end` is where they stop).
  Result<std::vector<rabia::Record>> read_all(std::string& all, size_t& end, std::map<uint32_t, uint64_t>& versions);
  std::shared_ptr<security::at_rest::Keyring> keyring_;
  mutable std::mutex versions_mu_;
  std::map<uint32_t, uint64_t> versions_;  // records in the file by key version
  uint64_t bytes_ = 0;      // end of the last record: where the next one is written
  uint64_t allocated_ = 0;  // file size (zeros from bytes_ on)
  uint64_t syncs_ = 0;
  uint64_t torn_ = 0;
};

}  // namespace keel::cluster
