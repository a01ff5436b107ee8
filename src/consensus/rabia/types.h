// Vocabulary of the Rabia core: requests, decisions, configurations, messages and the
// durable records a driver must persist. Plain values, no behaviour beyond small helpers.
// The codec for Message and Record lives in codec.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace keel::rabia {

using NodeId = uint32_t;
using Slot = uint64_t;   // position in the replicated log (0, 1, 2, ...)
using Phase = uint32_t;  // Weak-MVC phase inside one slot (1, 2, ...); separate from Slot

// A client request. (client_id, seq) identifies it: it is executed at most once. A client
// issues increasing seq numbers; a request whose seq is not above the highest executed seq of
// its client is a duplicate and is dropped.
struct Request {
  enum class Kind : uint8_t {
    kCommand = 0,   // opaque bytes for the state machine on top (e.g. src/meta)
    kReconfig = 1,  // payload = encoded member list (encode_members); governs from next slot
  };
  uint64_t client_id = 0;
  uint64_t seq = 0;
  int64_t timestamp_ms = 0;  // assigned by the replica that received it from the client
  NodeId origin = 0;         // that replica
  Kind kind = Kind::kCommand;
  std::string payload;

  // Pending-queue order: (timestamp, origin, client id, seq).
  friend bool operator<(const Request& a, const Request& b) {
    if (a.timestamp_ms != b.timestamp_ms) return a.timestamp_ms < b.timestamp_ms;
    if (a.origin != b.origin) return a.origin < b.origin;
    if (a.client_id != b.client_id) return a.client_id < b.client_id;
    return a.seq < b.seq;
  }
  friend bool operator==(const Request&, const Request&) = default;
};

// The outcome of one slot: NULL (Weak-MVC decided 0; every replica requeues its proposal) or a
// batch (decided 1: the proposal that a majority of the slot's members proposed).
struct Decision {
  Slot slot = 0;
  bool null = true;
  std::vector<Request> batch;
  friend bool operator==(const Decision&, const Decision&) = default;
};

// Membership. Quorums come from here only: n = members.size(), f = (n - 1) / 2, and every
// wait collects n - f messages from distinct members.
struct Config {
  uint64_t cluster_id = 0;
  uint64_t epoch = 0;           // +1 on every decided reconfiguration
  std::vector<NodeId> members;  // sorted, unique

  size_t n() const { return members.size(); }
  size_t f() const { return members.empty() ? 0 : (members.size() - 1) / 2; }
  size_t quorum() const { return n() - f(); }      // n - f
  size_t majority() const { return n() / 2 + 1; }  // floor(n/2) + 1
  bool contains(NodeId id) const;
  friend bool operator==(const Config&, const Config&) = default;
};

// Executed-request table used for at-most-once execution: per client, the highest executed
// seq and the slot that executed it. It holds at most kMaxDedupClients clients; beyond that the
// client whose last execution is oldest (lowest slot, then lowest id) is forgotten — the same
// choice on every replica, since it depends on the log only. A forgotten client's old request,
// retried after that, would execute again: at-most-once holds within that window.
inline constexpr size_t kMaxDedupClients = 65536;
struct DedupEntry {
  uint64_t client_id = 0;
  uint64_t seq = 0;
  uint64_t slot = 0;
  friend bool operator==(const DedupEntry&, const DedupEntry&) = default;
};
using DedupTable = std::vector<DedupEntry>;  // sorted by client id

// Everything needed to resume at `next_slot` without the log before it.
struct Snapshot {
  Slot next_slot = 0;     // first slot NOT covered by the snapshot
  Config config;          // configuration governing next_slot
  DedupTable dedup;       // executed requests up to next_slot
  std::string app_state;  // opaque, produced by the application (e.g. meta::Store::snapshot)
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

// Vote values. kQuestion is the paper's "?".
enum class Bit : uint8_t { k0 = 0, k1 = 1, kQuestion = 2 };

enum class MsgType : uint8_t {
  kForward = 1,   // requests[0..]: a client request shared with every member
  kProposal = 2,  // slot, requests = proposed batch (may be empty: nothing pending)
  kState = 3,     // slot, phase, bit (0/1)
  kVote = 4,      // slot, phase, bit (0/1/?)
  kDecided = 5,   // decisions (consecutive slots); answer to anything about a decided slot
  kCatchUp = 6,   // slot = first slot the sender lacks; asks for decisions or a snapshot
  kSnapshot = 7,  // snapshot: answer to kCatchUp for compacted slots (when it fits one chunk)
  // A snapshot larger than Options::snapshot_chunk_bytes travels in chunks, pulled by the
  // receiver one at a time (see replica.h, "Snapshot transfer"):
  kSnapshotChunk = 8,  // slot = snapshot's next_slot; chunk = {total, offset, checksum, data}
  kSnapshotPull = 9,   // slot, chunk = {total, offset wanted, checksum}: send me this chunk
};

// One piece of an encoded Snapshot (codec.h encode(Snapshot)), identified by the snapshot's
// next_slot (Message::slot) and the checksum of the whole encoding.
struct SnapshotChunk {
  uint64_t total = 0;     // bytes of the whole encoded snapshot
  uint64_t offset = 0;    // where `data` starts (kSnapshotPull: the offset wanted)
  uint64_t checksum = 0;  // snapshot_checksum() of the whole encoding
  std::string data;       // empty in kSnapshotPull
  friend bool operator==(const SnapshotChunk&, const SnapshotChunk&) = default;
};

struct Message {
  MsgType type = MsgType::kForward;
  NodeId from = 0;
  NodeId to = 0;
  Slot slot = 0;
  Phase phase = 0;
  Bit bit = Bit::k0;
  std::vector<Request> requests;
  std::vector<Decision> decisions;
  std::optional<Snapshot> snapshot;
  std::optional<SnapshotChunk> chunk;  // kSnapshotChunk, kSnapshotPull
  friend bool operator==(const Message&, const Message&) = default;
};

// What must be durable (fsync'ed) before the messages of the same Ready leave. See the
// durability rules in replica.h.
struct Record {
  enum class Kind : uint8_t {
    kProposal = 1,  // slot, requests: my proposal for slot
    kState = 2,     // slot, phase, bit: my STATE for (slot, phase)
    kVote = 3,      // slot, phase, bit: my VOTE for (slot, phase)
    kDecision = 4,  // decision: slot decided (log entry)
    kSnapshot = 5,  // snapshot: replaces decisions before snapshot.next_slot
  };
  Kind kind = Kind::kDecision;
  Slot slot = 0;
  Phase phase = 0;
  Bit bit = Bit::k0;
  std::vector<Request> requests;
  Decision decision;
  Snapshot snapshot;
  friend bool operator==(const Record&, const Record&) = default;
};

// A decided slot handed to the application, in slot order. `requests` excludes duplicates
// (already executed); reconfigurations are included (the application may ignore them: the core
// already switched configuration).
struct Entry {
  Slot slot = 0;
  bool null = true;
  std::vector<Request> requests;
  Config config_after;  // configuration governing slot + 1
};

}  // namespace keel::rabia
