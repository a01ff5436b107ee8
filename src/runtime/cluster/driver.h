// The Rabia driver: the effectful shell around the pure consensus core (consensus/rabia).
// It owns one thread running an io_context with the peer transport, a 10 ms tick, heartbeats
// and the failure detector, and the durable record log. Its loop, per batch of inputs:
//
//   step / propose / tick the core  ->  Ready:
//     1. append Ready.persist to the record log and fdatasync it   (rule R1/R2: BEFORE sending)
//     2. send Ready.messages to the peers
//     3. restore the state machine from Ready.install, if any
//     4. apply Ready.apply: run each decided command on the state machine, answer the client
//        that submitted it (if it was submitted here)
//     5. advance; every snapshot_every slots (or once the log holds snapshot_log_bytes),
//        compact (snapshot + log rewrite, rule R3)
//
// Many client requests share one Ready, so one fsync covers a batch (group commit).
//
// Clients submit from any thread; callbacks run on the driver thread (post them elsewhere if
// needed). A submission fails at once with kUnavailable "no quorum" if fewer than a majority of
// the configured members are reachable (this node + members whose link is up and that the
// failure detector has heard from and not declared dead): such a refusal is definite, nothing
// was or will be applied. Once submitted, a request that is not decided within
// request_timeout_ms fails with kTimeout: its outcome is unknown (it stays queued in the core
// and on peers, and may be applied later). The same holds for requests still waiting when the
// node stops. docs/consistency.md has the table.
//
// When the failure detector suspects a member (or declares it dead), the driver closes and
// redials its outbound link (PeerTransport::reconnect), so a partition's silently dropped
// connection is replaced within about a second of the heal instead of waiting on TCP's
// retransmission backoff.
//
// Sizes: every consensus message the driver sends fits one peer frame (wire.h WireLimits,
// 16 MiB) by construction: a command is at most max_command_bytes (larger ones are refused at
// submission), proposals and catch-up answers are cut at max_batch_bytes, and snapshots larger
// than snapshot_chunk_bytes travel in chunks (consensus/rabia/replica.h). start() refuses
// settings that would break this. Should a message still not fit, it is counted
// (DriverStatus::messages_oversized) and logged once with its size, never dropped silently.
//
// Tracing: a submission made with a sampled trace context (submit(…, trace)) while
// DriverOptions::span_sink is set becomes one span, `keel.rabia.decision` (kind internal), a child
// of the request's span: it starts when submit() is called and ends when the command is applied
// here (outcome `decided`), refused before it was proposed (`no_quorum`, `refused`: definite,
// nothing applied), not decided in time (`timeout`: outcome unknown, status error) or failed by
// a stop or a log failure (`unknown`). The spans are made here, where the clock is read; the pure
// core knows nothing of them. Without a trace context or a sink, a submission costs one branch
// more.
//
// Each submission occupies a "lane" (a client id of this process) until it is decided or
// times out, so the core's (client id, seq) deduplication never sees seq n+1 executed before
// seq n of a waiting client.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "cluster/failure_detector.h"
#include "cluster/peer_address.h"
#include "observe/otlp_json.h"
#include "observe/trace_context.h"

namespace keel::cluster {

// What the driver replicates. Called on the driver thread only.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies one decided command (identical on every member, in the same order). Returns the
  // reply for the client that submitted it. Must be deterministic.
  virtual std::string apply(uint64_t slot, std::string_view command) = 0;
  virtual std::string snapshot() const = 0;
  virtual Status restore(std::string_view state) = 0;
};

}  // namespace keel::cluster
namespace keel::security {
class PeerTls;
}
namespace keel::security::at_rest {
class Keyring;
}
namespace keel::cluster {

struct DriverOptions {
  uint32_t node_id = 1;
  std::string cluster_id = "keel";
  std::vector<PeerAddress> members;  // every member, this node included
  std::string bind = "127.0.0.1";
  int peer_port = 9380;
  std::string data_dir;  // the record log lives in data_dir/rabia.log
  int64_t request_timeout_ms = 2000;
  int64_t heartbeat_ms = 200;
  int64_t suspect_after_ms = 1000;
  int64_t dead_after_ms = 3000;
  size_t max_batch = 64;
  // Byte bounds (see "Sizes" above). max_command_bytes + 59 <= max_batch_bytes, and
  // max_batch_bytes and snapshot_chunk_bytes (+ 76 bytes of headers) must fit one frame.
  size_t max_command_bytes = 2u << 20;     // one submitted command (its encoding)
  size_t max_batch_bytes = 8u << 20;       // one proposal / catch-up answer
  size_t snapshot_chunk_bytes = 1u << 20;  // snapshots larger than this travel in chunks
  size_t max_frame_bytes = 16u << 20;      // the peer transport's frame payload limit
  int64_t propose_delay_ms = 0;  // rabia::Options::propose_delay_ms
  int64_t start_timeout_ms = 10;  // rabia::Options::start_timeout_ms
  size_t max_in_flight = 4096;    // lanes: concurrent submissions from this node
  uint64_t snapshot_every = 10000;          // slots between snapshots ...
  uint64_t snapshot_log_bytes = 64u << 20;  // ... or sooner, once the record log is this large
  size_t log_retain = 4096;  // decided slots kept in memory after a snapshot to answer catch-up
  int64_t tick_ms = 5;
  // Start as a learner: the initial configuration is `members` without this node; it catches
  // up and becomes a voter once a member decides a reconfiguration that adds it.
  bool join = false;
  // Mutual TLS on the links to the other members (tls.peer = yes); null = plaintext.
  std::shared_ptr<security::PeerTls> tls;
  // Encryption at rest: the record log is sealed under this keyring's current key (record_log.h);
  // null = written in the clear.
  std::shared_ptr<security::at_rest::Keyring> keyring;
  // Where the spans of traced submissions go (see "Tracing" above); called on the driver thread.
  // Null: no spans.
  std::function<void(observe::SpanData)> span_sink;
};

struct MemberInfo {
  uint32_t id = 0;
  std::string address;
  bool self = false;
  bool connected = false;
  MemberStatus status = MemberStatus::kUnknown;
  int64_t silence_ms = -1;
  uint64_t last_decided_slot = 0;  // as last reported in a heartbeat
  std::string link_error;          // why our link to it is down (empty when connected)
};

struct DriverStatus {
  uint32_t node_id = 0;
  std::string cluster_id;
  uint64_t config_epoch = 0;
  std::vector<uint32_t> config_members;
  std::vector<MemberInfo> members;
  bool quorum = false;
  uint64_t next_slot = 0;          // first undecided slot
  uint64_t applied_commands = 0;
  uint64_t pending = 0;            // in the core's queue
  uint64_t in_flight = 0;          // submissions from this node waiting
  double decisions_per_s = 0;      // over the last few seconds
  // Core counters (consensus/rabia Stats).
  uint64_t slots_decided = 0, decided_by_vote = 0, decided_by_transfer = 0, decided_phase1 = 0;
  uint64_t phases_total = 0, null_decisions = 0, coin_flips = 0, rebroadcasts = 0;
  uint64_t snapshots_installed = 0;
  uint64_t snapshots_sent = 0, snapshot_chunks_sent = 0, snapshot_chunks_received = 0;
  uint64_t snapshot_transfers_discarded = 0, snapshot_transfers_failed = 0;
  uint64_t messages_oversized = 0;  // consensus messages larger than a frame (never expected)
  uint64_t commands_too_large = 0;  // submissions refused for their size
  // Durability.
  uint64_t log_bytes = 0, log_syncs = 0, commands_per_sync_x100 = 0;
  uint64_t snapshots_written = 0;  // by this node since it started
  uint64_t requests_no_quorum = 0, requests_timed_out = 0;
};

class Driver {
 public:
  Driver(DriverOptions opt, std::shared_ptr<StateMachine> sm);
  ~Driver();
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // Reads the record log, rebuilds the core and the state machine, binds the peer port and
  // starts the thread. Returns the bound peer port.
  Result<int> start();
  void stop();

  using Callback = std::function<void(Result<std::string>)>;
  // Replicates `command`; `cb` gets the state machine's reply once it is applied here.
  void submit(std::string command, Callback cb);
  // The same, on behalf of a request with a trace context: with `trace` sampled and a span
  // sink, the wait for the decision is a span, a child of trace->span_id (see "Tracing").
  void submit(std::string command, Callback cb, std::optional<observe::TraceParent> trace);
  // A linearizable read: once every command decided before this call is applied here, runs
  // `read` on the driver thread against the state machine and passes its result to `cb`.
  void read_barrier(std::function<std::string(StateMachine&)> read, Callback cb);
  void read_barrier(std::function<std::string(StateMachine&)> read, Callback cb,
                    std::optional<observe::TraceParent> trace);
  // Runs `f` on the driver thread (e.g. a stale local read, or registering a watcher).
  void post(std::function<void()> f);
  // Decided reconfiguration: `change` gets the current members (on the driver thread) and
  // returns the new list or an error; the new configuration governs from the slot after the
  // one that decides it. `cb` gets "" once applied here.
  using MembersChange = std::function<Result<std::vector<uint32_t>>(const std::vector<uint32_t>&)>;
  void reconfigure(MembersChange change, Callback cb);
  // Where to find members that are not in DriverOptions::members (e.g. from metadata).
  // Called on the driver thread.
  void set_address_book(std::function<std::optional<PeerAddress>(uint32_t)> lookup);
  // Runs `f` on the driver thread after `ms` milliseconds (not run if the driver stops first).
  void after(int64_t ms, std::function<void()> f);
  // Called on the driver thread after every batch of applied commands.
  void on_applied(std::function<void()> f);
  // Called on the driver thread right after the state machine was restored from a snapshot
  // received from a peer (a lagging node catching up): its state jumped, so anything derived
  // from it incrementally must be rebuilt. The on_applied hooks run after it.
  void on_installed(std::function<void()> f);
  // Called on the driver thread when the failure detector changes a member's status.
  void on_member_status(std::function<void(const StatusChange&)> f);

  DriverStatus status();  // thread-safe (waits for the driver thread)
  // Encryption at rest: rewrites the record log with every record sealed under the keyring's
  // current key (after a rotation, before an older key is retired), and returns how many
  // records it holds under each key version (0: in the clear). Thread-safe (waits for the
  // driver thread); an error if the driver is not running or the rewrite failed.
  Result<std::map<uint32_t, uint64_t>> reseal_log();
  // REQUIRES: called on the driver thread (from a callback or post).
  DriverStatus status_on_driver_thread();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// A member list from cluster settings: `peers` plus this node at bind:peer_port if absent.
std::vector<PeerAddress> members_from(uint32_t self, const std::vector<PeerAddress>& peers,
                                      const std::string& bind, int peer_port);

}  // namespace keel::cluster
