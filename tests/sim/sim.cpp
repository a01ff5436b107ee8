#include "sim.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "base/assert.h"
#include "base/codec.h"
#include "consensus/rabia/codec.h"
#include "meta/store.h"

namespace keel::sim {

using rabia::Bit;
using rabia::Decision;
using rabia::Entry;
using rabia::Message;
using rabia::MsgType;
using rabia::NodeId;
using rabia::Record;
using rabia::Replica;
using rabia::Request;
using rabia::Slot;

namespace {

constexpr std::array<Scenario, 8> kAll = {
    Scenario::kRandom,    Scenario::kProposalLoss, Scenario::kStaleRestartMinority,
    Scenario::kColdStart, Scenario::kNullStorm,    Scenario::kReconfigPartition,
    Scenario::kSteady,    Scenario::kLargeState};

uint64_t hash_str(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

uint64_t digest(const Request& r) {
  return mix64(r.client_id * 0x9e3779b97f4a7c15ULL ^ mix64(r.seq) ^ hash_str(r.payload) ^
               mix64(static_cast<uint64_t>(r.timestamp_ms) + r.origin * 7919 +
                     static_cast<uint64_t>(r.kind)));
}

uint64_t digest(const Decision& d) {
  uint64_t h = mix64(d.slot ^ (d.null ? 0xdead : 0xbeef));
  for (const auto& r : d.batch) h = mix64(h ^ digest(r));
  return h;
}

// The replicated application is keel's metadata store (src/meta). Its snapshot carries the
// store plus the running hash of everything executed and the next slot.
struct App {
  meta::Store store{meta::Limits{.max_history = 64}};
  uint64_t hash = 0;
  Slot next = 0;

  // The store's bytes, hashed 8 bytes at a time (states of several MiB are hashed per slot).
  uint64_t store_hash() const { return rabia::snapshot_checksum(store.snapshot()); }

  std::string serialize() const {
    std::string out;
    Writer w(out);
    w.u64be(hash);
    w.varint(next);
    w.bytes(store.snapshot());
    return out;
  }
  static std::optional<App> parse(const std::string& s) {
    Reader r(s);
    auto h = r.u64be();
    auto nx = r.varint();
    auto st = r.bytes();
    if (!h || !nx || !st) return std::nullopt;
    auto store = meta::Store::restore(*st, meta::Limits{.max_history = 64});
    if (!store) return std::nullopt;
    App a;
    a.hash = *h;
    a.next = *nx;
    a.store = std::move(*store);
    return a;
  }
};

struct Node {
  NodeId id = 0;
  std::unique_ptr<Replica> replica;  // null while down
  std::vector<std::string> disk;     // durable encoded records, in write order
  App app;
  std::set<std::pair<uint64_t, uint64_t>> applied;  // this incarnation (integrity)
  int64_t tick_period_ms = 10;
  int64_t next_tick_ms = 0;
  int64_t extra_delay_ms = 0;  // slow replica
  int64_t drift_permille = 1000;
  int64_t down_until_ms = -1;
  uint64_t incarnation = 0;
  size_t state_bytes = 0;  // size of the store after the last applied slot
  rabia::Stats stats_acc;  // stats of previous incarnations
};

struct Client {
  uint64_t id = 0;
  uint64_t seq = 0;
  bool outstanding = false;
  bool reconfig = false;
  Request req;
  int64_t next_action_ms = 0;
  int64_t retry_at_ms = 0;
  uint64_t issued = 0;
  uint64_t quota = 0;
};

struct Packet {
  NodeId to;
  std::string bytes;
};

class Sim {
 public:
  explicit Sim(const Options& o)
      : opts_(o), rnd_(mix64(o.seed) ^ static_cast<uint64_t>(o.scenario)) {}
  Result run();

 private:
  void setup();
  void fail(std::string why) {
    if (res_.ok) {
      res_.ok = false;
      res_.failure = fmt::format("t={}ms: {}", now_, why);
    }
  }
  void trace(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
    res_.trace_hash = mix64(res_.trace_hash ^ mix64(a ^ mix64(b ^ mix64(c ^ mix64(d + now_)))));
  }
  template <class... A>
  void log(fmt::format_string<A...> f, A&&... a) {
    if (opts_.trace) fmt::print("t={:>6} {}\n", now_, fmt::format(f, std::forward<A>(a)...));
  }
  int64_t local_now(const Node& n) const { return now_ * n.drift_permille / 1000; }
  rabia::Options replica_options(NodeId id) const;
  void start(Node& n);
  void crash(Node& n, const char* why);
  void drain(Node& n);
  void send(NodeId from, const Message& m);
  void deliver(const Packet& p);
  void on_apply(Node& n, const Entry& e);
  void on_install(Node& n, const rabia::Snapshot& s);
  void on_persist(Node& n, const Record& r);
  void clients_step();
  void faults_step();
  void scenario_step();
  void partition_random();
  void check_large_state();
  meta::Command random_command(const Client& c);
  bool blocked(NodeId from, NodeId to) const { return blocked_.contains({from, to}); }
  bool converged() const;
  Node& node(NodeId id) { return nodes_[id - 1]; }
  std::vector<NodeId> live() const {
    std::vector<NodeId> v;
    for (auto& n : nodes_)
      if (n.replica) v.push_back(n.id);
    return v;
  }

  Options opts_;
  SeededRandom rnd_;
  Result res_;
  int64_t now_ = 0;
  std::vector<Node> nodes_;
  std::vector<Client> clients_;
  std::multimap<std::pair<int64_t, uint64_t>, Packet> net_;
  uint64_t pkt_seq_ = 0;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  int64_t partition_until_ms_ = -1;
  // knobs
  rabia::Config initial_;
  size_t max_batch_ = 8;
  int64_t rebroadcast_ms_ = 40;
  int64_t propose_delay_ms_ = 0;
  int64_t start_timeout_ms_ = 0;
  size_t catchup_batch_ = 64;
  size_t log_retain_ = 16;
  // Byte bounds: the sim's "transport" carries frames of at most frame_limit_ bytes, and a
  // larger message is a failure (the real transport would drop it on every resend).
  size_t max_request_bytes_ = 512;
  size_t max_batch_bytes_ = 4u << 20;
  size_t chunk_bytes_ = 1u << 20;
  size_t frame_limit_ = 16u << 20;
  double p_drop_ = 0.02, p_dup_ = 0.02, p_drop_proposal_ = 0, p_drop_forward_ = 0;
  int64_t delay_min_ = 1, delay_max_ = 5;
  double p_crash_ = 0, p_torn_ = 0.3, p_partition_ = 0;
  double p_compact_ = 0.05;
  int64_t heal_at_ = 3000, bound_ms_ = 30000;
  bool healed_ = false;
  int64_t think_ms_ = 5;
  // checkers
  std::map<Slot, uint64_t> decided_;                          // slot -> decision digest (agreement)
  std::map<Slot, uint64_t> state_after_;                      // slot -> app hash after applying it
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> issued_;  // validity
  std::set<Slot> null_slots_;
};

rabia::Options Sim::replica_options(NodeId id) const {
  rabia::Options o;
  o.self = id;
  o.initial = initial_;
  o.max_batch = max_batch_;
  o.rebroadcast_interval_ms = rebroadcast_ms_;
  o.propose_delay_ms = propose_delay_ms_;
  o.start_timeout_ms = start_timeout_ms_;
  o.catchup_batch = catchup_batch_;
  o.log_retain = log_retain_;
  o.max_request_bytes = max_request_bytes_;
  o.max_batch_bytes = max_batch_bytes_;
  o.snapshot_chunk_bytes = chunk_bytes_;
  o.testing_votes_only_rebroadcast = opts_.break_rebroadcast;
  return o;
}

void Sim::setup() {
  const bool five = rnd_.chance(0.4);
  size_t n = five ? 5 : 3;
  initial_.cluster_id = opts_.seed;
  max_batch_ = std::array<size_t, 4>{1, 2, 8, 32}[rnd_.uniform(4)];
  rebroadcast_ms_ = rnd_.range(15, 80);
  propose_delay_ms_ = std::array<int64_t, 4>{0, 0, 5, 20}[rnd_.uniform(4)];
  start_timeout_ms_ = std::array<int64_t, 4>{0, 10, 10, 40}[rnd_.uniform(4)];
  catchup_batch_ = rnd_.chance(0.5) ? 4 : 64;
  log_retain_ = rnd_.chance(0.5) ? 2 : 32;
  p_drop_ = rnd_.chance(0.3) ? 0 : rnd_.unit() * 0.15;
  p_dup_ = rnd_.unit() * 0.1;
  delay_min_ = rnd_.range(0, 3);
  delay_max_ = delay_min_ + rnd_.range(1, 30);
  p_crash_ = rnd_.chance(0.3) ? 0 : 0.0005 + rnd_.unit() * 0.002;
  p_partition_ = rnd_.chance(0.4) ? 0 : 0.001 + rnd_.unit() * 0.003;
  size_t nclients = rnd_.range(1, 6);
  think_ms_ = rnd_.range(0, 20);
  uint64_t quota = rnd_.range(5, 40);
  switch (opts_.scenario) {
    case Scenario::kRandom:
      break;
    case Scenario::kProposalLoss:
      p_drop_proposal_ = 0.6;
      p_crash_ = 0;
      break;
    case Scenario::kStaleRestartMinority:
      n = 3;
      p_crash_ = 0;
      p_partition_ = 0;
      break;
    case Scenario::kColdStart:
      p_crash_ = 0;
      break;
    case Scenario::kNullStorm:
      max_batch_ = 1;
      p_drop_forward_ = 0.7;
      nclients = 8;
      think_ms_ = 0;
      delay_max_ = delay_min_ + 20;
      break;
    case Scenario::kReconfigPartition:
      n = 5;
      p_crash_ = 0;
      p_partition_ = 0;
      break;
    case Scenario::kSteady:
      p_drop_ = p_dup_ = 0;
      p_crash_ = 0;
      p_partition_ = 0;
      break;
    case Scenario::kLargeState:
      // Node 3 is down while 6 clients write values of 8..30 KiB under distinct keys (about
      // 4.5 MiB of state); it restarts once the others hold 3 MiB and must catch up by a
      // snapshot, chunked because the frame limit is 64 KiB. Loss, duplication and reordering stay on (lost chunks).
      n = 3;
      p_crash_ = 0;
      p_partition_ = 0;
      nclients = 6;
      quota = 40;
      think_ms_ = rnd_.range(0, 5);
      heal_at_ = 8000;
      break;
  }
  // Byte bounds. Requests of at most 512 bytes; half the seeds cut batches at a few hundred
  // bytes; a third send every snapshot in chunks of 64 bytes and a third in chunks of 512 (the
  // state is a few KiB), so the chunked transfer runs under every fault. large-state: below.
  {
    static constexpr size_t kChunks[] = {64, 512, 1u << 20};
    chunk_bytes_ = kChunks[rnd_.uniform(3)];
    max_batch_bytes_ =
        rnd_.chance(0.5) ? max_request_bytes_ + 2 * rabia::kRequestOverheadBytes : (1u << 20);
    frame_limit_ = rabia::max_message_bytes(replica_options(1));
  }
  if (opts_.scenario == Scenario::kLargeState) {
    frame_limit_ = 64u << 10;
    max_request_bytes_ = 32u << 10;
    max_batch_bytes_ = 40u << 10;
    chunk_bytes_ = 48u << 10;
    p_compact_ = 0.1;
    max_batch_ = 32;  // batches are cut by bytes (1..4 values), not by a seed's small count
    log_retain_ = 2;
  }
  if (opts_.break_chunking) chunk_bytes_ = size_t{1} << 30;
  if (opts_.propose_delay_ms >= 0) propose_delay_ms_ = opts_.propose_delay_ms;
  if (opts_.start_timeout_ms >= 0) start_timeout_ms_ = opts_.start_timeout_ms;
  if (opts_.max_batch > 0) max_batch_ = static_cast<size_t>(opts_.max_batch);
  size_t members = n;
  if (opts_.scenario == Scenario::kReconfigPartition)
    members = 3;
  else if (n == 5 && opts_.scenario != Scenario::kSteady && rnd_.chance(0.3))
    members = 3;  // two spares that may be added later
  for (NodeId i = 1; i <= members; ++i) initial_.members.push_back(i);
  nodes_.resize(n);
  for (NodeId i = 1; i <= n; ++i) {
    Node& nd = node(i);
    nd.id = i;
    nd.tick_period_ms = rnd_.range(3, 12);
    // Clock rate error: up to 5% (clock drift), or none in the steady baseline.
    nd.drift_permille = opts_.scenario == Scenario::kSteady ? 1000 : rnd_.range(950, 1050);
    if (opts_.scenario != Scenario::kSteady && rnd_.chance(0.15)) {  // a slow replica
      nd.tick_period_ms *= 4;
      nd.extra_delay_ms = rnd_.range(10, 60);
    }
    nd.next_tick_ms = rnd_.range(0, nd.tick_period_ms);
    start(nd);
  }
  for (size_t i = 0; i < nclients; ++i) {
    Client c;
    c.id = 100 + i;
    c.quota = quota;
    c.next_action_ms = rnd_.range(0, 20);
    clients_.push_back(c);
  }
  // An administrator that changes membership (scenario, or sometimes with 5 nodes).
  if (opts_.scenario == Scenario::kReconfigPartition ||
      (n == 5 && opts_.scenario != Scenario::kSteady && rnd_.chance(0.3))) {
    Client a;
    a.id = 99;
    a.reconfig = true;
    a.quota = 3;
    a.next_action_ms = rnd_.range(200, 600);
    clients_.push_back(a);
  }
  if (!opts_.break_chunking && rabia::max_message_bytes(replica_options(1)) > frame_limit_)
    fail(fmt::format("setup: the replicas may send {} bytes, above the frame limit of {}",
                     rabia::max_message_bytes(replica_options(1)), frame_limit_));
  log("setup seed={} scenario={} n={} members={} batch={} drop={:.3f} dup={:.3f} delay=[{},{}] "
      "crash={:.4f} part={:.4f} clients={} propose_delay={} start_timeout={}",
      opts_.seed, scenario_name(opts_.scenario), n, members, max_batch_, p_drop_, p_dup_,
      delay_min_, delay_max_, p_crash_, p_partition_, clients_.size(), propose_delay_ms_, start_timeout_ms_);
}

void Sim::start(Node& n) {
  std::vector<Record> recs;
  recs.reserve(n.disk.size());
  for (const auto& b : n.disk) {
    auto r = rabia::decode_record(b);
    if (!r) {
      fail(fmt::format("node {}: durable record does not decode: {}", n.id, r.error().message));
      return;
    }
    recs.push_back(std::move(*r));
  }
  n.replica = std::make_unique<Replica>(replica_options(n.id), recs);
  n.app = App{};
  n.applied.clear();
  n.incarnation++;
  n.replica->tick(std::max<int64_t>(local_now(n), 0));
  trace(1, n.id, n.incarnation, recs.size());
  log("node {} starts (incarnation {}, {} durable records, next slot {})", n.id, n.incarnation,
      recs.size(), n.replica->next_slot());
  drain(n);
}

void Sim::crash(Node& n, const char* why) {
  if (!n.replica) return;
  auto s = n.replica->stats();
  n.stats_acc.decided_by_vote += s.decided_by_vote;
  n.stats_acc.decided_phase1 += s.decided_phase1;
  n.stats_acc.phases_total += s.phases_total;
  n.stats_acc.decided_by_transfer += s.decided_by_transfer;
  n.stats_acc.coin_flips += s.coin_flips;
  n.stats_acc.rebroadcasts += s.rebroadcasts;
  n.stats_acc.snapshots_installed += s.snapshots_installed;
  n.stats_acc.snapshot_chunks_received += s.snapshot_chunks_received;
  n.replica.reset();
  res_.counters.crashes++;
  trace(2, n.id);
  log("node {} crashes ({})", n.id, why);
}

void Sim::on_persist(Node& n, const Record& r) {
  if (r.kind == Record::Kind::kDecision) {
    uint64_t d = digest(r.decision);
    auto [it, fresh] = decided_.try_emplace(r.decision.slot, d);
    if (!fresh && it->second != d)
      fail(fmt::format("AGREEMENT: node {} decided slot {} differently", n.id, r.decision.slot));
    if (r.decision.null) null_slots_.insert(r.decision.slot);
    for (const auto& q : r.decision.batch) {
      auto iss = issued_.find({q.client_id, q.seq});
      if (iss == issued_.end() ||
          iss->second != hash_str(q.payload) + static_cast<uint64_t>(q.kind))
        fail(fmt::format("VALIDITY: slot {} holds request (client {}, seq {}) never proposed",
                         r.decision.slot, q.client_id, q.seq));
    }
  }
}

void Sim::on_install(Node& n, const rabia::Snapshot& s) {
  auto app = App::parse(s.app_state);
  if (!app) {
    fail(fmt::format("node {}: snapshot application state does not parse", n.id));
    return;
  }
  n.app = std::move(*app);
  n.applied.clear();
  if (n.app.next != s.next_slot)
    fail(fmt::format("node {}: snapshot app state at {} but snapshot slot {}", n.id, n.app.next,
                     s.next_slot));
  if (s.next_slot > 0) {
    auto it = state_after_.find(s.next_slot - 1);
    if (it != state_after_.end() && it->second != mix64(n.app.hash ^ n.app.store_hash()))
      fail(fmt::format("STATE: node {} installed a snapshot differing at slot {}", n.id,
                       s.next_slot - 1));
  }
  log("node {} installs snapshot at slot {}", n.id, s.next_slot);
}

void Sim::on_apply(Node& n, const Entry& e) {
  if (e.slot != n.app.next) {
    fail(fmt::format("node {}: applied slot {} but expected {}", n.id, e.slot, n.app.next));
    return;
  }
  n.app.hash = mix64(n.app.hash ^ mix64(e.slot) ^ (e.null ? 1 : 2));
  for (const auto& r : e.requests) {
    if (!n.applied.insert({r.client_id, r.seq}).second)
      fail(fmt::format("INTEGRITY: node {} executed (client {}, seq {}) twice", n.id, r.client_id,
                       r.seq));
    n.app.hash = mix64(n.app.hash ^ mix64(r.client_id) ^ mix64(r.seq) ^ hash_str(r.payload));
    if (r.kind == Request::Kind::kCommand) {
      // The outcome (revision or deterministic error) is part of the replicated state.
      auto out = n.app.store.apply_bytes(r.payload);
      n.app.hash = mix64(n.app.hash ^
                         (out ? out->revision : 0x8000 + static_cast<uint64_t>(out.error().code)));
    }
    for (auto& c : clients_)
      if (c.id == r.client_id && c.outstanding && c.seq == r.seq) {
        c.outstanding = false;
        c.next_action_ms = now_ + think_ms_;
        res_.counters.requests_done++;
      }
  }
  n.app.next = e.slot + 1;
  const std::string store_bytes = n.app.store.snapshot();
  n.state_bytes = store_bytes.size();
  res_.counters.max_state_bytes =
      std::max<uint64_t>(res_.counters.max_state_bytes, store_bytes.size());
  const uint64_t state = mix64(n.app.hash ^ rabia::snapshot_checksum(store_bytes));
  auto [it, fresh] = state_after_.try_emplace(e.slot, state);
  if (!fresh && it->second != state)
    fail(
        fmt::format("STATE: node {} has a different applied state after slot {} (revision {}, "
                    "{} keys)",
                    n.id, e.slot, n.app.store.revision(), n.app.store.size()));
  if (!(e.config_after == n.replica->config()) && e.slot + 1 == n.replica->next_slot())
    fail(fmt::format("node {}: config after slot {} differs from the replica's", n.id, e.slot));
  if (n.replica->stats().protocol_violations > 0)
    fail(fmt::format("PROTOCOL: node {} saw opposite votes or decisions in one phase", n.id));
  trace(3, n.id, e.slot, state);
  log("node {} applies slot {} {} ({} requests) epoch={} state={:x}", n.id, e.slot,
      e.null ? "NULL" : "batch", e.requests.size(), e.config_after.epoch, state);
}

void Sim::drain(Node& n) {
  for (int guard = 0; n.replica && n.replica->has_ready(); ++guard) {
    KEEL_ASSERT(guard < 100000);
    rabia::Ready rd = n.replica->ready();
    if (opts_.break_durability) {
      // Deliberately wrong driver: messages leave before the records are durable.
      for (const auto& m : rd.messages) send(n.id, m);
      rd.messages.clear();
    }
    // A crash in the middle of the write loses the unsynced tail of the records.
    if (!healed_ && (p_crash_ > 0 || opts_.break_durability) && !rd.persist.empty() &&
        rnd_.chance(opts_.break_durability ? 0.05 : p_crash_ * 20)) {
      size_t keep = rnd_.uniform(rd.persist.size() + 1);
      if (!opts_.break_durability) {
        for (size_t i = 0; i < keep; ++i) n.disk.push_back(rabia::encode(rd.persist[i]));
        for (size_t i = 0; i < keep; ++i) on_persist(n, rd.persist[i]);
      }
      res_.counters.torn_writes++;
      crash(n, "torn write");
      n.down_until_ms = now_ + rnd_.range(20, 300);
      return;
    }
    bool snap = false;
    for (const auto& r : rd.persist) {
      n.disk.push_back(rabia::encode(r));
      on_persist(n, r);
      snap |= r.kind == Record::Kind::kSnapshot;
    }
    if (snap) {
      // R3: with a snapshot durable, drop what it covers (log truncation).
      std::vector<std::string> kept;
      Slot from = 0;
      size_t last_snap = 0;
      for (size_t i = 0; i < n.disk.size(); ++i) {
        auto r = rabia::decode_record(n.disk[i]);
        if (r && r->kind == Record::Kind::kSnapshot) {
          last_snap = i;
          from = r->snapshot.next_slot;
        }
      }
      // Keep the latest snapshot and every record about a slot it does not cover (even one
      // written before it: the proposal for the snapshot's next slot may precede it).
      kept.push_back(n.disk[last_snap]);
      for (size_t i = 0; i < n.disk.size(); ++i) {
        if (i == last_snap) continue;
        auto r = rabia::decode_record(n.disk[i]);
        if (r->kind != Record::Kind::kSnapshot && r->slot >= from) kept.push_back(n.disk[i]);
      }
      n.disk = std::move(kept);
    }
    for (const auto& m : rd.messages) send(n.id, m);
    if (rd.install) on_install(n, *rd.install);
    for (const auto& e : rd.apply) on_apply(n, e);
    n.replica->advance();
    if (!rd.apply.empty() && rnd_.chance(p_compact_) && !n.replica->has_ready()) {
      auto st = n.replica->compact(n.replica->next_slot(), n.app.serialize());
      if (!st) fail(fmt::format("node {}: compact failed: {}", n.id, st.error().message));
    }
  }
}

void Sim::send(NodeId from, const Message& m) {
  res_.counters.messages++;
  std::string bytes = rabia::encode(m);
  res_.counters.max_message_bytes =
      std::max<uint64_t>(res_.counters.max_message_bytes, bytes.size());
  if (bytes.size() > frame_limit_) {
    // What the peer transport would do: drop it (on every resend). Never allowed.
    fail(fmt::format("FRAME: node {} sent a message of type {} of {} bytes; the frame limit is {}",
                     from, static_cast<int>(m.type), bytes.size(), frame_limit_));
    res_.counters.dropped++;
    return;
  }
  if (blocked(from, m.to) || rnd_.chance(p_drop_) ||
      (m.type == MsgType::kProposal && !healed_ && rnd_.chance(p_drop_proposal_)) ||
      (m.type == MsgType::kForward && !healed_ && rnd_.chance(p_drop_forward_))) {
    res_.counters.dropped++;
    trace(4, from, m.to, static_cast<uint64_t>(m.type));
    return;
  }
  int copies = rnd_.chance(p_dup_) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    int64_t at = now_ + rnd_.range(delay_min_, delay_max_) + node(from).extra_delay_ms +
                 (m.to >= 1 && m.to <= nodes_.size() ? node(m.to).extra_delay_ms : 0);
    net_.emplace(std::pair{at, pkt_seq_++}, Packet{m.to, bytes});
  }
}

void Sim::deliver(const Packet& p) {
  if (p.to < 1 || p.to > nodes_.size()) return;
  Node& n = node(p.to);
  if (!n.replica) return;
  auto m = rabia::decode_message(p.bytes);
  if (!m) {
    fail(fmt::format("codec: a sent message does not decode: {}", m.error().message));
    return;
  }
  if (blocked(m->from, m->to)) return;  // partition began while in flight
  trace(5, m->from, m->to,
        static_cast<uint64_t>(m->type) ^ (m->slot << 8) ^ (uint64_t{m->phase} << 40));
  log("deliver {}->{} type={} slot={} phase={} bit={} reqs={} decs={}", m->from, m->to,
      static_cast<int>(m->type), m->slot, m->phase, static_cast<int>(m->bit), m->requests.size(),
      m->decisions.size());
  n.replica->step(*m);
  drain(n);
}

void Sim::clients_step() {
  auto lv = live();
  if (lv.empty()) return;
  for (auto& c : clients_) {
    if (c.outstanding) {
      if (now_ >= c.retry_at_ms) {
        NodeId to = lv[rnd_.uniform(lv.size())];
        if (!node(to).replica) continue;  // crashed during this step
        auto st = node(to).replica->propose(c.req);
        trace(6, c.id, c.seq, to);
        log("client {} retries seq {} at node {} ({})", c.id, c.seq, to,
            st ? "ok" : st.error().message);
        drain(node(to));
        c.retry_at_ms = now_ + 200 + static_cast<int64_t>(rnd_.uniform(200));
      }
      continue;
    }
    if (c.issued >= c.quota || healed_ || now_ < c.next_action_ms) continue;
    c.seq++;
    c.issued++;
    c.outstanding = true;
    c.req = Request{.client_id = c.id, .seq = c.seq};
    if (c.reconfig) {
      // A membership change: 3..5 of the nodes.
      std::vector<NodeId> all;
      for (auto& nd : nodes_) all.push_back(nd.id);
      std::vector<NodeId> pick;
      size_t want = rnd_.range(3, static_cast<int64_t>(all.size()));
      while (pick.size() < want) {
        NodeId x = all[rnd_.uniform(all.size())];
        if (std::find(pick.begin(), pick.end(), x) == pick.end()) pick.push_back(x);
      }
      std::sort(pick.begin(), pick.end());
      c.req.kind = Request::Kind::kReconfig;
      c.req.payload = rabia::encode_members(pick);
      c.next_action_ms = now_ + rnd_.range(300, 800);
    } else {
      c.req.payload = meta::encode(random_command(c));
    }
    issued_[{c.id, c.seq}] = hash_str(c.req.payload) + static_cast<uint64_t>(c.req.kind);
    NodeId to = lv[rnd_.uniform(lv.size())];
    c.retry_at_ms = now_ + 300;
    if (!node(to).replica) continue;  // crashed during this step: the retry resends
    auto st = node(to).replica->propose(c.req);
    trace(7, c.id, c.seq, to);
    log("client {} proposes seq {} at node {} ({})", c.id, c.seq, to,
        st ? "ok" : st.error().message);
    c.retry_at_ms = now_ + 300;
    drain(node(to));
  }
}

// A metadata command over a few keys of two domains: puts, deletes, CAS and transactions
// whose compares may or may not hold (deterministic conflicts are part of the state).
meta::Command Sim::random_command(const Client& c) {
  static const char* kDomains[] = {"members", "partitions"};
  meta::Command cmd;
  if (opts_.scenario == Scenario::kLargeState && !rnd_.chance(0.1)) {
    // A large definition under its own key: the state grows by 8..30 KiB.
    size_t len = rnd_.range(8 << 10, 30 << 10);
    std::string v(len, static_cast<char>('a' + c.seq % 26));
    for (size_t i = 0; i < len; i += 997) v[i] = static_cast<char>('A' + (c.id + i) % 26);
    cmd.op = meta::Command::Op::kPut;
    cmd.put = meta::Put{"partitions", fmt::format("big/{}/{}", c.id, c.seq), std::move(v)};
    return cmd;
  }
  std::string d = kDomains[rnd_.uniform(2)];
  std::string k = fmt::format("k{}", rnd_.uniform(6));
  std::string v = fmt::format("{}:{}", c.id, c.seq + 0);
  switch (rnd_.uniform(4)) {
    case 0:
      cmd.op = meta::Command::Op::kPut;
      cmd.put = meta::Put{d, k, v};
      break;
    case 1:
      cmd.op = meta::Command::Op::kDelete;
      cmd.del = meta::Delete{d, k};
      break;
    case 2:
      cmd.op = meta::Command::Op::kCas;
      cmd.cas = meta::CompareAndSet{d, k, rnd_.uniform(3), v};
      break;
    default:
      cmd.op = meta::Command::Op::kTxn;
      cmd.txn.compares = {{d, k, rnd_.uniform(3)}};
      cmd.txn.puts = {{d, k, v}, {d, fmt::format("k{}", rnd_.uniform(6)), v}};
      break;
  }
  return cmd;
}

void Sim::partition_random() {
  blocked_.clear();
  // Split the nodes in two random groups; sometimes only one direction is cut.
  std::vector<int> side(nodes_.size());
  for (auto& s : side) s = static_cast<int>(rnd_.uniform(2));
  bool asym = rnd_.chance(0.3);
  for (size_t a = 0; a < nodes_.size(); ++a)
    for (size_t b = 0; b < nodes_.size(); ++b)
      if (side[a] != side[b] && (!asym || side[a] == 0))
        blocked_.insert({static_cast<NodeId>(a + 1), static_cast<NodeId>(b + 1)});
  partition_until_ms_ = now_ + rnd_.range(50, 800);
  trace(8, blocked_.size(), asym);
  log("partition: {} directed links cut{}", blocked_.size(), asym ? " (asymmetric)" : "");
}

void Sim::faults_step() {
  if (healed_) return;
  if (partition_until_ms_ >= 0 && now_ >= partition_until_ms_) {
    blocked_.clear();
    partition_until_ms_ = -1;
    log("partition heals");
  }
  if (p_partition_ > 0 && partition_until_ms_ < 0 && rnd_.chance(p_partition_)) partition_random();
  if (p_crash_ > 0 && rnd_.chance(p_crash_)) {
    Node& n = nodes_[rnd_.uniform(nodes_.size())];
    if (n.replica) {
      crash(n, "random");
      n.down_until_ms = now_ + rnd_.range(20, 600);
    }
  }
}

void Sim::scenario_step() {
  switch (opts_.scenario) {
    case Scenario::kStaleRestartMinority:
      // Node 3 falls behind (down), node 2 goes down, node 3 restarts with its stale log while
      // only node 1 of the up-to-date replicas is alive; node 2 returns later.
      if (now_ == 200) {
        crash(node(3), "scenario: falls behind");
        node(3).down_until_ms = 1'000'000;
      }
      if (now_ == 1500) {
        crash(node(2), "scenario: majority lost");
        node(2).down_until_ms = 1'000'000;
      }
      if (now_ == 1600) node(3).down_until_ms = now_;
      if (now_ == 2400) node(2).down_until_ms = now_;
      break;
    case Scenario::kColdStart:
      if (now_ == 700 || now_ == 1500 || now_ == 2300) {
        for (auto& n : nodes_) {
          // Lose whatever an in-progress Ready had not synced: crash before draining.
          crash(n, "scenario: power loss");
          n.down_until_ms = now_ + 100;
        }
      }
      break;
    case Scenario::kReconfigPartition:
      if (now_ == 300) {
        // Cut member 3 off: inbound always, outbound only half of the seeds (asymmetric).
        bool asym = rnd_.chance(0.5);
        for (auto& n : nodes_) {
          if (n.id == 3) continue;
          blocked_.insert({n.id, 3});
          if (!asym) blocked_.insert({3, n.id});
        }
        partition_until_ms_ = 2000;
        log("scenario: member 3 partitioned{}", asym ? " (inbound only)" : "");
      }
      break;
    case Scenario::kLargeState:
      if (now_ == 50) {
        crash(node(3), "scenario: down while the state grows");
        node(3).down_until_ms = 1'000'000;
      }
      // Back once the others hold 3 MiB (or at 7 s, before the clients stop at 8 s).
      // The others compact then (as a driver does every snapshot_every slots), so the slots
      // node 3 lacks are gone from their logs and only a snapshot can bring it back.
      if (!node(3).replica && node(3).down_until_ms > now_ &&
          (node(1).state_bytes >= (3u << 20) || node(2).state_bytes >= (3u << 20) ||
           now_ >= 7000)) {
        node(3).down_until_ms = now_;
        for (NodeId id : {1u, 2u}) {
          Node& p = node(id);
          if (!p.replica || p.replica->has_ready()) continue;
          auto st = p.replica->compact(p.replica->next_slot(), p.app.serialize());
          if (!st) fail(fmt::format("node {}: compact failed: {}", id, st.error().message));
          drain(p);
        }
      }
      break;
    default:
      break;
  }
}

// large-state: the replica that was down caught up by a chunked snapshot of a state larger
// than a frame (the old code sent it whole: a frame over the limit, dropped on every resend).
void Sim::check_large_state() {
  Node& n = node(3);
  rabia::Stats s = n.stats_acc;
  if (n.replica) {
    s.snapshots_installed += n.replica->stats().snapshots_installed;
    s.snapshot_chunks_received += n.replica->stats().snapshot_chunks_received;
  }
  const uint64_t state = n.app.store.snapshot().size();
  if (state <= frame_limit_ * 16)
    fail(
        fmt::format("LARGE-STATE: node 3 holds {} bytes of state, not the several MiB this "
                    "scenario needs (frame limit {})",
                    state, frame_limit_));
  else if (s.snapshots_installed == 0 || s.snapshot_chunks_received < 2)
    fail(
        fmt::format("LARGE-STATE: node 3 caught up without a chunked snapshot ({} installed, {} "
                    "chunks)",
                    s.snapshots_installed, s.snapshot_chunks_received));
}

bool Sim::converged() const {
  for (auto& c : clients_)
    if (c.outstanding) return false;
  std::optional<Slot> slot;
  for (auto& n : nodes_) {
    if (!n.replica) return false;
    if (n.replica->has_ready()) return false;
    if (slot && *slot != n.replica->next_slot()) return false;
    slot = n.replica->next_slot();
    if (n.app.next != n.replica->next_slot()) return false;
  }
  return true;
}

Result Sim::run() {
  setup();
  const int64_t end = heal_at_ + bound_ms_;
  for (now_ = 0; now_ <= end && res_.ok; ++now_) {
    if (!healed_ && now_ >= heal_at_) {
      healed_ = true;
      blocked_.clear();
      p_drop_ = std::min(p_drop_, 0.02);
      log("HEAL: partitions removed, every node restarted, loss at most 2%");
      for (auto& n : nodes_) n.down_until_ms = std::min<int64_t>(n.down_until_ms, now_);
    }
    scenario_step();
    faults_step();
    for (auto& n : nodes_)
      if (!n.replica && n.down_until_ms >= 0 && now_ >= n.down_until_ms) {
        n.down_until_ms = -1;
        start(n);
      }
    while (!net_.empty() && net_.begin()->first.first <= now_ && res_.ok) {
      Packet p = std::move(net_.begin()->second);
      net_.erase(net_.begin());
      deliver(p);
    }
    clients_step();
    for (auto& n : nodes_) {
      if (!n.replica || now_ < n.next_tick_ms) continue;
      n.next_tick_ms = now_ + n.tick_period_ms;
      n.replica->tick(local_now(n));
      drain(n);
    }
    if (healed_ && now_ % 50 == 0 && converged()) break;
  }
  if (res_.ok && !converged()) {
    std::string st;
    for (auto& n : nodes_)
      st += fmt::format(" node{}:{}", n.id,
                        n.replica ? fmt::format("slot={},pending={}", n.replica->next_slot(),
                                                n.replica->pending())
                                  : std::string("down"));
    size_t open = 0;
    for (auto& c : clients_) open += c.outstanding;
    fail(fmt::format("LIVENESS: not converged {}ms after healing ({} requests open;{})", bound_ms_,
                     open, st));
  }
  if (res_.ok && opts_.scenario == Scenario::kLargeState) check_large_state();
  // Counters.
  Counters& k = res_.counters;
  k.seeds = 1;
  k.slots = decided_.size();
  k.null_slots = null_slots_.size();
  for (auto& n : nodes_) {
    rabia::Stats s = n.stats_acc;
    if (n.replica) {
      auto c = n.replica->stats();
      s.decided_by_vote += c.decided_by_vote;
      s.decided_phase1 += c.decided_phase1;
      s.phases_total += c.phases_total;
      s.decided_by_transfer += c.decided_by_transfer;
      s.coin_flips += c.coin_flips;
      s.rebroadcasts += c.rebroadcasts;
      s.snapshots_installed += c.snapshots_installed;
      s.snapshot_chunks_received += c.snapshot_chunks_received;
    }
    k.decided_by_vote += s.decided_by_vote;
    k.decided_phase1 += s.decided_phase1;
    k.phases_total += s.phases_total;
    k.by_transfer += s.decided_by_transfer;
    k.coin_flips += s.coin_flips;
    k.rebroadcasts += s.rebroadcasts;
    k.snapshots_installed += s.snapshots_installed;
    k.snapshot_chunks += s.snapshot_chunks_received;
  }
  log("end: {} slots ({} NULL), ok={} {}", k.slots, k.null_slots, res_.ok, res_.failure);
  return res_;
}

}  // namespace

const char* scenario_name(Scenario s) {
  switch (s) {
    case Scenario::kRandom:
      return "random";
    case Scenario::kProposalLoss:
      return "proposal-loss";
    case Scenario::kStaleRestartMinority:
      return "stale-restart-minority";
    case Scenario::kColdStart:
      return "cold-start";
    case Scenario::kNullStorm:
      return "null-storm";
    case Scenario::kReconfigPartition:
      return "reconfig-partition";
    case Scenario::kSteady:
      return "steady";
    case Scenario::kLargeState:
      return "large-state";
  }
  return "?";
}

std::optional<Scenario> parse_scenario(std::string_view name) {
  for (Scenario s : kAll)
    if (name == scenario_name(s)) return s;
  return std::nullopt;
}

void Counters::add(const Counters& o) {
  seeds += o.seeds;
  slots += o.slots;
  decided_by_vote += o.decided_by_vote;
  decided_phase1 += o.decided_phase1;
  phases_total += o.phases_total;
  by_transfer += o.by_transfer;
  null_slots += o.null_slots;
  coin_flips += o.coin_flips;
  rebroadcasts += o.rebroadcasts;
  snapshots_installed += o.snapshots_installed;
  snapshot_chunks += o.snapshot_chunks;
  max_message_bytes = std::max(max_message_bytes, o.max_message_bytes);
  max_state_bytes = std::max(max_state_bytes, o.max_state_bytes);
  crashes += o.crashes;
  torn_writes += o.torn_writes;
  requests_done += o.requests_done;
  messages += o.messages;
  dropped += o.dropped;
}

Result run(const Options& opts) { return Sim(opts).run(); }

}  // namespace keel::sim
