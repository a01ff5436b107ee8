// Binary codec for the Rabia core's messages and durable records (src/base Writer/Reader).
// Layout: a version byte, a type byte, then the fields as varints and length-prefixed bytes.
// Decoding is bounded: counts and sizes are checked against Limits before anything is
// allocated; bad input returns kCorruption/kInvalidArgument naming the field, never crashes.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "consensus/rabia/types.h"

namespace keel::rabia {

inline constexpr uint8_t kCodecVersion = 1;

struct Limits {
  size_t max_requests = 4096;   // requests in one message or record
  size_t max_decisions = 1024;  // decisions in one kDecided
  size_t max_payload_bytes = 4u << 20;  // one request (Options::max_request_bytes must fit)
  size_t max_app_state_bytes = 256u << 20;
  size_t max_members = 64;
  size_t max_dedup = kMaxDedupClients;
  size_t max_chunk_bytes = 16u << 20;  // data in one kSnapshotChunk
};

// Upper bounds of encoded sizes, used by the core to keep every message it sends under the
// transport's frame limit (Options::max_batch_bytes, snapshot_chunk_bytes). Each is >= the
// exact encoding: varints count at their widest.
inline constexpr size_t kRequestOverheadBytes = 48;   // ids, seq, timestamp, origin, kind, length
inline constexpr size_t kBatchOverheadBytes = 10;     // the request count
inline constexpr size_t kDecisionOverheadBytes = 12;  // slot, null flag
inline constexpr size_t kMessageOverheadBytes = 64;  // version, type, from, to, slot, phase, counts
inline constexpr size_t kChunkOverheadBytes = 48;    // total, offset, checksum, length
inline size_t request_wire_bytes(const Request& r) {
  return r.payload.size() + kRequestOverheadBytes;
}
size_t batch_wire_bytes(const std::vector<Request>& batch);
size_t decision_wire_bytes(const Decision& d);

// Checksum of an encoded snapshot for chunked transfer: deterministic, no I/O.
uint64_t snapshot_checksum(std::string_view bytes);

std::string encode(const Message& m);
Result<Message> decode_message(std::string_view in, const Limits& limits = {});

std::string encode(const Record& r);
Result<Record> decode_record(std::string_view in, const Limits& limits = {});

std::string encode(const Snapshot& s);
Result<Snapshot> decode_snapshot(std::string_view in, const Limits& limits = {});

}  // namespace keel::rabia
