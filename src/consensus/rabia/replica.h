// A pure Rabia replica (Pan et al., SOSP 2021), shaped like etcd raft's RawNode: feed it
// client requests (propose), peer messages (step) and time (tick); drain a Ready with what to
// persist, what to send and what to apply; call advance() once that Ready has been handled.
// It reads no clock, socket, file, thread id or random source. Not thread-safe: one owner.
//
// Protocol (per slot s, config C of s: n members, f = (n-1)/2):
//   1. Every member proposes the oldest pending requests (a bounded batch; queue ordered by
//      (timestamp, origin, client, seq)) and collects n - f proposals (its own included).
//      state = 1 if one proposal is held by >= floor(n/2)+1 of them, else 0.
//   2. Phase p = 1, 2, ...: STATE round: broadcast state, collect n - f states; vote = v if
//      >= floor(n/2)+1 states are v, else ?. VOTE round: broadcast vote, collect n - f votes;
//      if >= f+1 votes are the same v != ? decide v; else if some vote is v != ? adopt
//      state = v; else state = coin(cluster id, epoch, s, p). Next phase.
//   3. Decide 1 -> the majority proposal (learned from more proposals or from a peer's
//      kDecided if this replica lacks it); decide 0 -> NULL, requests stay queued.
//   Only the first message per (sender, slot, kind, phase) counts. Nothing carries from one slot
//   to the next except the log. One slot is in flight at a time.
//
// DURABILITY RULES (the driver's contract; the simulator crashes replicas to check them):
//   R1. Every Record in Ready::persist must be durable before ANY message of the same Ready is
//       sent and before any Entry of it is applied. (A replica must never send two different
//       proposals, states or votes for the same slot/phase, even across a crash: that would let
//       two replicas see two different majorities.)
//   R2. A decision (kDecision) must be durable before its entry is applied or acknowledged to a
//       client, and before the replica answers anyone with it (kDecided).
//   R3. A kSnapshot record must be durable before the decisions it covers are dropped; after
//       that, decisions with slot < snapshot.next_slot and kProposal/kState/kVote records for
//       decided slots may be deleted (log truncation).
//   R4. Received messages are never persisted: after a restart the replica re-broadcasts its
//       own records for its current slot and peers re-send theirs (stalled-replica rule).
// Restart: build the Replica from the durable records (in the order they were persisted).
//
// MESSAGE SIZES: every message this core emits is at most max_message_bytes(options) bytes
// encoded (codec.h), so a driver whose transport frames hold that much never has to drop one.
// Proposals, kDecided answers and non-member forwards are cut at max_batch_bytes (at least one
// request or decision each; a request is at most max_request_bytes, which fits a batch).
//
// SNAPSHOT TRANSFER: a snapshot whose encoding fits snapshot_chunk_bytes travels whole
// (kSnapshot). A larger one travels in chunks pulled by the receiver, one in flight at a time:
// the sender answers a catch-up with chunk 0 (kSnapshotChunk: snapshot slot, total size,
// checksum of the whole encoding, data); the receiver appends in order and asks for the next
// offset (kSnapshotPull); a pull whose chunk is lost is sent again after rebroadcast_interval;
// the assembled bytes are checked (length, checksum, decoding) before they are persisted and
// installed, exactly like a whole kSnapshot. A transfer that makes no progress for
// snapshot_stale_ms, or that a newer snapshot supersedes, is discarded. The sender keeps the
// encodings of its two latest snapshots, so one compaction during a transfer does not restart
// it; a pull for an encoding it no longer holds is answered with chunk 0 of the current one.
// Chunking lives here, in the pure core, rather than in the driver: the simulator then runs it
// under loss, duplication, reordering, crashes and partitions like every other message, and
// the transfer's progress is decided by the same tick() clock as the rest of the protocol.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "consensus/rabia/types.h"

namespace keel::rabia {

struct Options {
  NodeId self = 0;
  Config initial;  // bootstrap configuration (ignored once a snapshot/reconfig says otherwise)
  size_t max_batch = 16;        // requests per proposal
  size_t max_pending = 10'000;  // pending queue bound; propose() refuses beyond it
  size_t max_request_bytes = 1 << 20;
  // Bytes (codec.h request_wire_bytes) of one proposal, one kDecided answer, one forward.
  // REQUIRES: max_request_bytes + kRequestOverheadBytes + kBatchOverheadBytes <= max_batch_bytes.
  size_t max_batch_bytes = 4u << 20;
  // A snapshot whose encoding is larger travels in chunks of this many bytes.
  size_t snapshot_chunk_bytes = 1u << 20;
  // The largest snapshot encoding accepted from a peer (a larger transfer is refused).
  size_t max_snapshot_bytes = (256u << 20) + (4u << 20);
  // An incoming transfer without progress for this long is discarded (0: 20 rebroadcast
  // intervals).
  int64_t snapshot_stale_ms = 0;
  int64_t rebroadcast_interval_ms = 50;  // a stalled replica re-sends its slot messages
  // 0: propose the queue head at once. > 0: start a slot only with requests at least this old
  // (by their timestamps), so forwards reach every replica first and batches match; a replica
  // joining a slot includes everything up to the newest request in its peers' proposals.
  int64_t propose_delay_ms = 0;
  // 0: any replica with pending requests starts the next slot at once. > 0: slot s is started
  // by members[s % n]; the others propose when its (or any) proposal arrives, or start
  // themselves once they have waited this long (a starter that is down or slow). Replicas that
  // start together from different queues (requests arriving everywhere at once) propose
  // different batches and decide NULL; one starter per slot avoids that.
  int64_t start_timeout_ms = 0;
  size_t catchup_batch = 64;  // decisions per kDecided answer
  size_t future_window = 4;   // slots ahead whose messages are buffered
  size_t log_retain = 4096;   // decided entries kept in memory to answer catch-up
  // Fault injection for the simulator only: re-broadcast votes but not the proposal (the
  // production bug in Rabia's history). Never set outside tests.
  bool testing_votes_only_rebroadcast = false;
};

struct Ready {
  std::vector<Record> persist;      // R1: durable first
  std::vector<Message> messages;    // then send
  std::optional<Snapshot> install;  // then restore the application from this (if set) ...
  std::vector<Entry> apply;         // ... then apply these in order
  bool empty() const { return persist.empty() && messages.empty() && !install && apply.empty(); }
};

struct Stats {
  uint64_t slots_decided = 0;        // by this replica
  uint64_t decided_by_vote = 0;      // through its own Weak-MVC rounds
  uint64_t decided_by_transfer = 0;  // learned from a peer (kDecided / kSnapshot)
  uint64_t decided_phase1 = 0;       // decided by vote in phase 1 (the fast path)
  uint64_t phases_total = 0;         // sum of phases over decided_by_vote
  uint64_t null_decisions = 0;
  uint64_t coin_flips = 0;
  uint64_t rebroadcasts = 0;
  uint64_t fetches = 0;  // decided 1 without holding the majority proposal
  uint64_t duplicates_dropped = 0;
  uint64_t snapshots_sent = 0;  // transfers begun (whole, or chunk 0 offered)
  uint64_t snapshots_installed = 0;
  uint64_t snapshot_chunks_sent = 0;
  uint64_t snapshot_chunks_received = 0;      // accepted in order
  uint64_t snapshot_transfers_discarded = 0;  // stale or superseded partial transfers
  uint64_t snapshot_transfers_failed = 0;     // assembled bytes with a wrong checksum or decoding
  uint64_t protocol_violations = 0;  // peers that broke the protocol (e.g. durability rules)
};

// The largest encoded message a replica with these options sends (codec.h encode(Message)).
size_t max_message_bytes(const Options& o);

// The common coin: a deterministic function of (cluster id, epoch, slot, phase).
Bit common_coin(uint64_t cluster_id, uint64_t epoch, Slot slot, Phase phase);

// Member list <-> kReconfig payload.
std::string encode_members(const std::vector<NodeId>& members);
Result<std::vector<NodeId>> decode_members(std::string_view payload);

class Replica {
 public:
  // A fresh replica (empty log) or one restarted from its durable records (R1-R4).
  Replica(Options opts, const std::vector<Record>& durable = {});

  // A client request arrives at this replica. Sets origin = self and timestamp = the last
  // tick's time (monotonic per replica); shares it with the members. Errors: duplicate
  // (kAlreadyExists), queue full (kLimitExceeded), too large or bad reconfig (kInvalidArgument).
  Status propose(Request r);
  // A message from a peer. Malformed or foreign messages are dropped (counted), never asserted.
  void step(const Message& m);
  // Time moves. REQUIRES: now_ms never decreases.
  void tick(int64_t now_ms);

  // True when there is output, or when this replica is due to propose for the current slot
  // (it does so in ready(), after every input before it: one proposal per burst of requests).
  bool has_ready() const;
  // Takes everything produced since the last ready(). REQUIRES: previous Ready advanced.
  Ready ready();
  // The last Ready was persisted, sent and applied.
  void advance();

  // The application has applied everything before `next_slot` and hands its state: the core
  // keeps a snapshot (to persist: a kSnapshot record appears in the next Ready) and drops its
  // in-memory log before next_slot. REQUIRES: next_slot <= this->next_slot().
  Status compact(Slot next_slot, std::string app_state);

  Slot next_slot() const { return next_slot_; }  // first undecided slot
  const Config& config() const { return config_; }
  NodeId id() const { return opts_.self; }
  size_t pending() const { return queue_.size(); }
  const Stats& stats() const { return stats_; }
  bool is_member() const { return config_.contains(opts_.self); }
  // Highest executed seq of a client (0 if none).
  uint64_t executed_seq(uint64_t client_id) const;

 private:
  struct Key {
    uint64_t client_id;
    uint64_t seq;
    auto operator<=>(const Key&) const = default;
  };
  struct PhaseState {
    std::map<NodeId, Bit> states;
    std::map<NodeId, Bit> votes;
    std::optional<Bit> my_state;
    std::optional<Bit> my_vote;
  };
  struct SlotState {
    std::map<NodeId, std::vector<Request>> proposals;
    std::optional<std::vector<Request>> my_proposal;
    std::map<Phase, PhaseState> phases;
    Phase phase = 0;          // 0: proposal exchange; p >= 1: in phase p
    bool state_sent = false;  // my STATE for `phase` sent
    bool vote_sent = false;   // my VOTE for `phase` sent
    std::optional<Bit> decided;
    bool violation_reported = false;
  };

  void replay(const Record& r);
  void apply_snapshot(const Snapshot& s, bool from_peer);
  void start_slot_if_ready();
  void make_proposal();
  bool my_turn_to_start();
  void progress();
  bool progress_once();
  void on_decided_bit(Bit b);
  void finish_slot(Decision d, bool by_vote);
  std::optional<std::vector<Request>> majority_proposal() const;
  void handle_slot_message(const Message& m);
  void handle_catchup(const Message& m);
  void handle_decided(const Message& m);
  void send(Message m);
  void broadcast(Message m);
  void rebroadcast();
  void persist(Record r);
  void enqueue(const Request& r);
  bool executed(const Request& r) const;
  void drop_executed_from_queue();
  void request_catchup(NodeId to);
  // Snapshot transfer (see SNAPSHOT TRANSFER above).
  struct Encoded {
    Slot slot = 0;
    uint64_t checksum = 0;
    std::string bytes;
  };
  struct Incoming {
    NodeId from = 0;
    Slot slot = 0;
    uint64_t total = 0;
    uint64_t checksum = 0;
    std::string bytes;
    int64_t last_ms = 0;  // last chunk accepted
    int64_t pull_ms = 0;  // last pull sent
  };
  const Encoded& latest_encoding();
  void offer_snapshot(NodeId to);
  void send_chunk(NodeId to, const Encoded& e, uint64_t offset);
  void send_pull();
  void handle_chunk(const Message& m);
  void handle_pull(const Message& m);
  void install_from_peer(const Snapshot& s, NodeId from);
  bool transfer_active() const;
  int64_t stale_ms() const;

  Options opts_;
  Config config_;
  Slot next_slot_ = 0;
  std::optional<Snapshot> snapshot_;           // latest snapshot (durable once persisted)
  std::map<Slot, Decision> log_;               // recent decided slots (bounded by log_retain)
  std::map<Slot, Decision> future_decisions_;  // learned out of order, applied when contiguous
  struct Executed {
    uint64_t seq;
    Slot slot;
  };
  void record_executed(uint64_t client_id, uint64_t seq, Slot slot);
  std::map<uint64_t, Executed> dedup_;                 // client -> highest executed seq
  std::set<std::pair<Slot, uint64_t>> dedup_by_slot_;  // eviction order (bounded table)
  std::set<Request> queue_;                            // pending, ordered
  std::map<Key, Request> queued_keys_;                 // key -> the copy held in queue_
  SlotState cur_;
  std::map<Slot, std::vector<Message>> buffered_;  // future-slot messages
  int64_t now_ms_ = 0;
  int64_t last_ts_ms_ = 0;
  int64_t last_progress_ms_ = 0;
  int64_t last_catchup_ms_ = -1'000'000;
  uint64_t idle_probe_ = 0;  // round robin over members for idle catch-up probes
  Ready out_;
  bool outstanding_ = false;  // a Ready was taken and not advanced
  // Proposals are made at batch points (tick() and ready()), not on each propose()/step():
  // requests and forwards that arrive together then go into one proposal, and replicas that
  // receive the same burst propose the same batch (a NULL slot otherwise).
  bool may_start_ = false;
  Slot wait_slot_ = ~Slot{0};  // the slot this replica waits to see started ...
  int64_t wait_since_ms_ = 0;  // ... since then (start_timeout_ms)
  std::set<NodeId> silent_starters_;  // let their last turn time out; not waited for
  bool start_deferred_ = false;  // a proposal is due at the next batch point
  std::vector<Encoded> serving_;  // encodings of the latest snapshots (at most 2), on demand
  std::map<NodeId, std::pair<uint64_t, int64_t>> offered_;  // peer -> (checksum, when) chunk 0
  std::optional<Incoming> incoming_;                        // the transfer this replica receives
  Stats stats_;
};

}  // namespace keel::rabia
