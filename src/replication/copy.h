// The pure per-partition replication core: one `Copy` object is one node's copy of one
// partition, acting as primary or replica as the (metadata-decided) configuration says.
// PacificA-style: the configuration (epoch, primary, replicas) is kept by a consensus service
// (Rabia metadata); data is replicated primary -> replicas outside consensus.
//
// Pure: no clock, socket, file, thread or random device. Time comes in as `now_ms` (this
// node's monotonic clock); messages come in through receive(); everything the copy wants done
// comes out of take_output(). The runtime (src/dht) and the simulator (tests/sim/repl) drive it.
//
// Effects are opaque bytes here: the deterministic result of one write (see src/dht/effect.h).
// Applying the same effects in LSN order to the same starting state gives the same state.
// Effects are full-state ("key k now holds value v" / "key k is absent"), so re-applying one is
// harmless (idempotent) — catch-up may resend.
//
// Protocol summary (messages below):
//  - The primary numbers every write with the next LSN (1, 2, ...; per partition, never reused
//    across epochs: a new primary continues from its own last LSN) and streams entries to every
//    replica in Append messages, batched up to Options::max_batch_bytes, with at most
//    Options::max_inflight_bytes unacknowledged per replica (back-pressure: append() refuses
//    with kUnavailable "replication backlog full" past Options::max_backlog_bytes).
//  - A replica accepts an Append only if its epoch equals the replica's configured epoch and it
//    is not fenced for a newer epoch, and prev_lsn == its last LSN (else it answers with its
//    last LSN so the primary resends from there, or from a snapshot if the log no longer
//    reaches back). Accepted entries come out in Output::apply; the runtime applies them and
//    calls durable(lsn) once they are as durable as the engine promises; only then does the
//    replica acknowledge that LSN.
//  - The primary's commit LSN is the highest LSN held durably by `write_quorum` copies, the
//    primary counted (its own durability also comes in through durable()). Output::committed
//    rises monotonically; the runtime answers every client write with lsn <= committed.
//  - Leases: every AppendAck grants the primary a read lease: the replica promises not to
//    answer a Fence for a newer epoch until lease_ms after it sent the ack, by its own clock.
//    The primary holds the lease until (send time of the Append that was acked) + lease_ms -
//    max_drift_ms, by its own clock, counting only grants from enough replicas that every
//    fence quorum (below) contains one of them. can_serve_reads(now) is false otherwise. With
//    no replicas the primary always holds it.
//  - Failover (driven by the runtime / the simulator's failover manager, decided in metadata):
//    to replace a primary at epoch e, the manager sends Fence{e+1} to the replicas; a fenced
//    replica refuses Appends of epochs < e+1 from then on and answers FenceAck{last lsn} (after
//    any lease it granted has run out). choose_new_primary() picks, from at least
//    fence_quorum() answers, the replica with the highest last LSN. That replica holds every
//    committed write (each is on write_quorum copies; the fence quorum intersects them). The
//    metadata then decides the new configuration with epoch e+1; configure() installs it.
//  - A new primary serves writes at once (continuing its LSNs) and reads once it holds a lease.
//    Replicas of the new epoch whose log diverges (they hold uncommitted entries of the old
//    primary past the new primary's last LSN) are told to truncate: they get a snapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"

namespace keel::replication {

using NodeId = uint32_t;

struct Entry {
  uint64_t lsn = 0;
  std::string effect;
};

// A partition's configuration, as decided in metadata.
struct Config {
  uint64_t epoch = 0;
  NodeId primary = 0;
  std::vector<NodeId> replicas;  // ordered, primary excluded
  uint32_t write_quorum = 1;     // copies (primary counted) that must hold a write to ack it
};

// Replicas whose answers a failover needs: enough that their highest LSN covers every
// committed write. min(replicas, copies - write_quorum + 1), at least 1. (With write_quorum 1
// no answer set is enough: a write acknowledged by the primary alone is lost with it; the
// most up-to-date of all answering replicas is taken, as Redis does.)
uint32_t fence_quorum(const Config& c);

// --- Messages (the runtime adds the partition id and encodes them; see codec below).
struct Append {
  uint64_t epoch = 0;
  uint64_t prev_lsn = 0;  // entries[0].lsn == prev_lsn + 1 (no entries: a heartbeat)
  std::vector<Entry> entries;
  uint64_t commit_lsn = 0;
  int64_t sent_ms = 0;  // primary's clock; echoed in the ack (lease accounting)
};
struct AppendAck {
  uint64_t epoch = 0;
  uint64_t durable_lsn = 0;  // the replica holds every entry through this LSN durably
  uint64_t last_lsn = 0;     // ... and has received through this one
  bool mismatch = false;     // prev_lsn did not match: resend from durable_lsn + 1
  int64_t echo_sent_ms = 0;
};
// Snapshot transfer: the primary streams the partition's live keys as effects, then the log
// from `snapshot_lsn` + 1 on. The pure core only decides when; the runtime scans the engine.
struct SnapshotBegin {
  uint64_t epoch = 0;
  uint64_t snapshot_lsn = 0;  // entries after this LSN follow as Appends
};
struct SnapshotChunk {
  uint64_t epoch = 0;
  std::vector<std::string> effects;
  bool last = false;
};
struct Fence {
  uint64_t new_epoch = 0;
};
struct FenceAck {
  uint64_t new_epoch = 0;
  uint64_t last_lsn = 0;
  uint64_t epoch = 0;  // the replica's configured epoch when it answered
};
using Message = std::variant<Append, AppendAck, SnapshotBegin, SnapshotChunk, Fence, FenceAck>;

std::string encode(const Message& m);
Result<Message> decode(std::string_view bytes);  // bounded; kCorruption names what is wrong

struct Options {
  size_t max_batch_bytes = 256 << 10;     // effects per Append
  size_t max_inflight_bytes = 4 << 20;    // unacknowledged bytes per replica
  size_t max_backlog_bytes = 64 << 20;    // append() refuses past this (not yet committed)
  size_t log_keep_bytes = 64 << 20;       // committed entries kept for catch-up
  int64_t heartbeat_ms = 50;              // empty Append when idle (lease renewal)
  int64_t resend_after_ms = 200;          // resend unacknowledged entries
  int64_t lease_ms = 2000;
  int64_t max_drift_ms = 200;             // clock rate/offset bound assumed between nodes
};

enum class Role { kNone, kPrimary, kReplica };

struct Output {
  std::vector<std::pair<NodeId, Message>> send;
  std::vector<Entry> apply;  // replica: effects to apply to the engine, in LSN order
  // Replica: a snapshot is starting: drop the partition's keys before applying what follows.
  bool reset_partition = false;
  std::vector<std::string> apply_snapshot;  // replica: snapshot effects to apply (any order)
  // Primary: stream a snapshot to this replica (runtime scans the engine, sends chunks with
  // snapshot_chunk(); starting LSN is given by begin_snapshot()).
  std::vector<NodeId> snapshot_needed;
  uint64_t committed_lsn = 0;  // primary: every write with lsn <= this is acknowledged
};

struct CopyStatus {
  Role role = Role::kNone;
  uint64_t epoch = 0;
  uint64_t last_lsn = 0, durable_lsn = 0, committed_lsn = 0;
  uint64_t fenced_epoch = 0;
  bool lease = false;
  struct ReplicaState {
    NodeId id = 0;
    uint64_t acked_lsn = 0;
    bool snapshotting = false;
  };
  std::vector<ReplicaState> replicas;
  uint64_t backlog_bytes = 0;
};

class Copy {
 public:
  Copy(NodeId self, Options opt = {});

  // Installs a decided configuration (called for every new epoch, in epoch order; an older or
  // equal epoch is ignored). last_lsn continues from what this copy holds.
  void configure(const Config& c, int64_t now_ms);

  // Primary only: numbers a write's effect. kUnavailable if not the primary, fenced, or the
  // backlog is full (the message says which).
  Result<uint64_t> append(std::string effect, int64_t now_ms);
  // Local durability: entries through `lsn` are as durable as the engine promises.
  void durable(uint64_t lsn, int64_t now_ms);
  bool can_serve_reads(int64_t now_ms) const;
  bool is_primary() const;

  void receive(NodeId from, const Message& m, int64_t now_ms);
  void tick(int64_t now_ms);

  // Primary, snapshot to `to`: begin_snapshot returns the SnapshotBegin to send (its LSN is
  // the primary's last LSN now); chunks go out through send_snapshot_chunk; after the last
  // chunk the replica is streamed the log from snapshot_lsn + 1.
  SnapshotBegin begin_snapshot(NodeId to, int64_t now_ms);
  void snapshot_chunk_sent(NodeId to, bool last, int64_t now_ms);

  Output take_output();
  CopyStatus status(int64_t now_ms) const;
  uint64_t last_lsn() const;
};

// From FenceAcks gathered for `new_epoch` (at least fence_quorum(c) of c's replicas), the
// replica to promote: the highest last_lsn, ties broken by replica order. nullopt if too few.
std::optional<NodeId> choose_new_primary(const Config& c, const std::vector<std::pair<NodeId, FenceAck>>& acks);

}  // namespace keel::replication
