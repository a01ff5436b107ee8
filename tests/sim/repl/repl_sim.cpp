#include "repl_sim.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <variant>
#include <vector>

#include "lincheck.h"
#include "replication/copy.h"

namespace keel::replsim {

using replication::Config;
using replication::Copy;
using replication::FenceAck;
using replication::NodeId;
using replication::Output;

std::optional<Scenario> parse_scenario(std::string_view s) {
  if (s == "random") return Scenario::kRandom;
  if (s == "primary-partition") return Scenario::kPrimaryPartition;
  if (s == "primary-crash") return Scenario::kPrimaryCrash;
  if (s == "replica-churn") return Scenario::kReplicaChurn;
  if (s == "failover-storm") return Scenario::kFailoverStorm;
  if (s == "move") return Scenario::kMove;
  if (s == "first-epoch-crash") return Scenario::kFirstEpochCrash;
  return std::nullopt;
}

const char* scenario_name(Scenario s) {
  switch (s) {
    case Scenario::kRandom: return "random";
    case Scenario::kPrimaryPartition: return "primary-partition";
    case Scenario::kPrimaryCrash: return "primary-crash";
    case Scenario::kReplicaChurn: return "replica-churn";
    case Scenario::kFailoverStorm: return "failover-storm";
    case Scenario::kMove: return "move";
    case Scenario::kFirstEpochCrash: return "first-epoch-crash";
  }
  return "?";
}

void Counters::add(const Counters& o) {
  seeds += o.seeds;
  ops += o.ops;
  writes_acked += o.writes_acked;
  writes_unknown += o.writes_unknown;
  reads_ok += o.reads_ok;
  refusals += o.refusals;
  backlog_full += o.backlog_full;
  failovers += o.failovers;
  readds += o.readds;
  moves += o.moves;
  moves_abandoned += o.moves_abandoned;
  crashes += o.crashes;
  snapshots += o.snapshots;
  snapshots_resumed += o.snapshots_resumed;
  messages += o.messages;
  dropped += o.dropped;
  beyond_bound += o.beyond_bound;
  lin_states += o.lin_states;
  lin_gave_up += o.lin_gave_up;
}

namespace {

constexpr int kManager = 1000;
constexpr int kClientBase = 2000;
constexpr int64_t kTickMs = 5;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(hi - lo + 1)); }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
};

// --- sim-level messages
struct ClientReq {
  uint64_t attempt = 0;
  bool write = false;
  std::string key;
  uint64_t value = 0;
};
struct ClientResp {
  uint64_t attempt = 0;
  bool ok = false;  // else refused (nothing applied)
  NodeId hint = 0;
  uint64_t value = 0;
};
struct Configure {
  Config c;
  std::map<NodeId, uint64_t> incarnation;
};
// What a node tells the manager every 100 ms: its incarnation, and as a primary how the move
// under way stands (the progress of its learners, whether its stop is done).
struct Heartbeat {
  uint64_t incarnation = 0;
  uint64_t epoch = 0;
  bool primary = false;
  uint64_t committed = 0;
  std::vector<std::pair<NodeId, replication::Copy::PeerProgress>> learners;
  bool handover_done = false;
};
// Manager -> primary and learner: stream the partition of `c` (its learners set) to the learner.
struct Learn {
  Config c;
  uint64_t incarnation = 0;  // the learner's, as the manager heard it
};
// Manager -> primary: stop for the switch, handing over to `to` (itself when it stays).
struct HandOver {
  uint64_t epoch = 0;
  NodeId to = 0;
};
using Payload = std::variant<std::string, ClientReq, ClientResp, Configure, Heartbeat, Learn, HandOver>;

struct InFlight {
  int64_t at;
  uint64_t seq;
  int from, to;
  Payload p;
  uint64_t from_incarnation = 0;  // a node sender's incarnation when it sent (transport's boot id)
};
struct Later {
  bool operator()(const InFlight& a, const InFlight& b) const {
    return a.at != b.at ? a.at > b.at : a.seq > b.seq;
  }
};

std::string effect_of(const std::string& key, uint64_t id) {
  return key + "=" + std::to_string(id);
}
// "key=id", optionally followed by "#" and padding (large values exercise batching, the
// in-flight window and the backlog limit).
bool parse_effect(const std::string& e, std::string* key, uint64_t* id) {
  auto eq = e.find('=');
  if (eq == std::string::npos || eq + 1 >= e.size()) return false;
  *key = e.substr(0, eq);
  *id = std::stoull(e.substr(eq + 1, e.find('#') - eq - 1));
  return true;
}

struct Node {
  NodeId id = 0;
  bool up = true;
  bool persistent = false;
  uint64_t incarnation = 1;
  int64_t offset = 0, drift_ppm = 0;
  std::unique_ptr<Copy> copy;
  std::map<std::string, uint64_t> state;  // key -> write id
  std::map<std::string, uint64_t> key_lsn;
  // The state its log (lineage) gives when applied in order: while the copy claims an LSN
  // (Copy::held()), the state must equal it (a copy that vouches for a log position holds
  // exactly that position's data, nothing of writes it has not received).
  std::map<std::string, uint64_t> folded;
  std::vector<std::pair<uint64_t, uint64_t>> lineage;  // LSN i+1 -> (epoch, write id; 0 barrier)
  uint64_t durable = 0;
  uint64_t committed = 0;
  std::map<uint64_t, std::pair<int, uint64_t>> pending_writes;  // lsn -> (client, attempt)
  struct PendingRead {
    int client;
    uint64_t attempt;
    std::string key;
    int64_t deadline;
  };
  std::vector<PendingRead> pending_reads;
  // A transfer streaming: as in the runtime, each chunk is scanned from the state as it is
  // when the chunk goes out (writes go on meanwhile), two keys per chunk, in key order.
  struct SnapOut {
    NodeId to;
    std::string next_key;  // where the next chunk's scan starts
    bool done = false;
  };
  std::vector<SnapOut> snaps;
  int64_t restart_at = -1;
  int64_t local(int64_t t) const { return offset + t + t * drift_ppm / 1'000'000; }
};

struct ClientState {
  int id = 0;
  NodeId home = 1, guess = 1;
  bool busy = false;
  Op op;
  std::string key;
  uint64_t attempt = 0;
  int64_t attempt_deadline = 0;
  int64_t next_at = 0;
  int refusals = 0;
};

struct AckedWrite {
  uint64_t id, lsn, epoch;
  std::string key;
};

class Sim {
 public:
  explicit Sim(const Options& o) : o_(o), rng_(o.seed) {}
  RunResult go();

 private:
  void trace(const std::string& s) {
    if (o_.trace) fmt::print("{:>6} {}\n", now_, s);
  }
  void fail(std::string why) {
    if (res_.ok) {
      res_.ok = false;
      res_.failure = std::move(why);
    }
  }
  int side_of(int ep) const {
    if (ep == kManager) return manager_side_;
    if (ep >= kClientBase) return side_[clients_[ep - kClientBase].home];
    return side_[ep];
  }
  void send(int from, int to, Payload p, bool lossy = true) {
    ++res_.counters.messages;
    if ((partitioned_ && side_of(from) != side_of(to)) || cut_.count({from, to})) {
      ++res_.counters.dropped;
      return;
    }
    if (lossy && rng_.chance(loss_)) {
      ++res_.counters.dropped;
      return;
    }
    // Peer messages may be duplicated; client requests ride a connection (TCP): a request is
    // delivered at most once, its retry is a new attempt.
    const bool client_msg = from >= kClientBase || to >= kClientBase;
    int copies = lossy && !client_msg && rng_.chance(dup_) ? 2 : 1;
    for (int i = copies - 1; i >= 0; --i) {  // the last one sent takes the payload
      int64_t delay = rng_.range(1, max_delay_);
      if (auto sl = slow_.find({from, to}); sl != slow_.end()) delay += sl->second;
      int64_t at = now_ + delay;
      auto& last = link_last_[{from, to}];
      if (!rng_.chance(reorder_)) at = std::max(at, last);  // FIFO unless reordered
      last = std::max(last, at);
      uint64_t inc = from > 0 && from < kManager ? nodes_[from].incarnation : 0;
      net_.push_back(InFlight{at, seq_++, from, to, i ? p : std::move(p), inc});  // i == 0 last
      std::push_heap(net_.begin(), net_.end(), Later{});
    }
  }
  void deliver(InFlight& m);
  void drain(Node& n);
  void node_tick(Node& n);
  void crash(Node& n);
  void restart(Node& n);
  void manager_step();
  bool move_step();
  void start_move();
  void on_learn(Node& n, const Learn& l);
  void check_promotion(NodeId chosen);
  void client_step(ClientState& c);
  void on_client_req(Node& n, int client, const ClientReq& r);
  void answer_reads(Node& n);
  bool converged(std::string* why);
  void final_checks();
  void setup();
  void schedule_faults();

  Options o_;
  Rng rng_;
  RunResult res_;
  int64_t now_ = 0;
  uint64_t seq_ = 0;
  std::vector<InFlight> net_;
  std::map<std::pair<int, int>, int64_t> link_last_;
  std::vector<Node> nodes_;  // index = node id (0 unused)
  std::vector<int> side_;
  int manager_side_ = 0;
  bool partitioned_ = false;
  std::set<std::pair<int, int>> cut_;  // links cut in both directions (node pairs)
  std::map<std::pair<int, int>, int64_t> slow_;  // extra delay on a link (one direction)
  double loss_ = 0, dup_ = 0, reorder_ = 0;
  int64_t max_delay_ = 10;
  uint64_t pad_max_ = 0;  // values padded up to this many bytes
  std::vector<ClientState> clients_;
  std::vector<Op> history_;
  std::vector<std::string> history_keys_;
  std::vector<AckedWrite> acked_;
  std::map<uint64_t, std::string> write_key_;
  uint64_t next_write_id_ = 1, next_attempt_ = 1;
  std::vector<std::string> keys_;
  replication::Options copt_;
  uint32_t copies_ = 3, wq_ = 2;
  size_t n_nodes_ = 3;
  int64_t load_end_ = 8000;
  int64_t first_epoch_crash_at_ = -1;  // first-epoch-crash: when the primary went down for good
  // Copies (node, incarnation) that lost their data (memory engine crash) or were replaced as
  // primary: the durability bound counts these.
  std::set<std::pair<NodeId, uint64_t>> lost_;
  int64_t bound_exceeded_at_ = -1;
  void lose(NodeId n, uint64_t incarnation) {
    lost_.insert({n, incarnation});
    if (lost_.size() >= wq_ && bound_exceeded_at_ < 0) bound_exceeded_at_ = now_;
  }
  std::map<std::tuple<NodeId, uint64_t, uint64_t>, std::vector<std::pair<uint64_t, uint64_t>>>
      snap_lineage_;
  // Transfers resumed (to, epoch, lsn): the keys mix scans made after the LSN, so the state
  // equals the log prefix only once the log after it is applied (checked at convergence).
  std::set<std::tuple<NodeId, uint64_t, uint64_t>> resumed_;
  // Each copy is its own snapshot source (replication::Options::source), as in the runtime.
  uint64_t copies_made_ = 0;
  replication::Options copt_next() {
    replication::Options o = copt_;
    o.source = ++copies_made_;
    return o;
  }
  // Timed faults.
  struct Fault {
    int64_t at;
    int kind;  // 0 partition on, 1 partition off, 2 crash, 3 restart, 4 crash the primary,
               // 5 cut the link node-primary, 6 restore it, 7 isolate the current primary
               // (with `node` = 1: together with a random other node), 8 start a move,
               // 9 crash the primary of the next switch as it happens, 10 crash the
               // primary until the heal (first-epoch-crash)
    NodeId node;
    std::vector<int> sides;
  };
  std::vector<Fault> faults_;
  // Metadata + failover manager.
  struct Meta {
    Config cfg;
    std::map<NodeId, uint64_t> inc;
    std::map<NodeId, int64_t> last_heard;
    std::map<NodeId, uint64_t> heard_inc;
    bool failing_over = false;
    std::vector<std::pair<NodeId, FenceAck>> acks;
    std::map<NodeId, uint64_t> ack_inc;  // incarnation that sent each member's first answer
    int64_t next_fence = 0, next_push = 0;
    std::map<NodeId, Heartbeat> reports;  // each node's last heartbeat
    // A move under way (rebalancing): the learner is streamed to, then the primary stops (when
    // the primary changes or a copy is dropped) until the new primary and the learner hold
    // everything, then the switch to `target` in epoch + 1.
    struct Move {
      bool active = false;
      uint64_t base_epoch = 0;
      Config target;
      NodeId learner = 0;
      int64_t started = 0, next_learn = 0, next_stop = 0;
      bool stop_sent = false;
    } move;
    bool crash_after_switch = false;  // fault: the next switch's primary crashes at once
  } meta_;
  uint64_t hash_ = 1469598103934665603ull;
  void mix(uint64_t v) { hash_ = (hash_ ^ v) * 1099511628211ull; }
};

void Sim::setup() {
  n_nodes_ = static_cast<size_t>(rng_.range(3, 5));
  copies_ = static_cast<uint32_t>(rng_.range(2, 3));
  wq_ = static_cast<uint32_t>(rng_.range(1, copies_));
  if (o_.scenario == Scenario::kFirstEpochCrash) {
    // Failover without the primary needs a write quorum of at least 2 (with 1, only the
    // primary may hold an acknowledged write, and the partition rightly waits for it).
    wq_ = static_cast<uint32_t>(rng_.range(2, copies_));
  }
  if (o_.scenario == Scenario::kPrimaryPartition || o_.scenario == Scenario::kPrimaryCrash ||
      o_.scenario == Scenario::kFailoverStorm) {
    // Failover must keep acknowledged writes here: a write quorum of at least 2.
    copies_ = 3;
    wq_ = static_cast<uint32_t>(rng_.range(2, 3));
  }
  if (o_.break_no_lease) {
    copies_ = 3;
    wq_ = 2;
  }
  if (o_.scenario == Scenario::kMove) {
    n_nodes_ = static_cast<size_t>(rng_.range(4, 5));  // spare nodes to move to
    wq_ = static_cast<uint32_t>(rng_.range(2, copies_));
  }
  copt_.lease_ms = 2000;
  copt_.max_drift_ms = 200;
  copt_.heartbeat_ms = 50;
  copt_.resend_after_ms = 200;
  copt_.max_batch_bytes = 512;
  copt_.max_inflight_bytes = 2048;
  copt_.max_backlog_bytes = 16 << 10;
  copt_.log_keep_bytes = rng_.chance(0.5) ? 256 : 1 << 20;  // small: snapshots happen
  // first-epoch-crash checks that the partition fails over without its primary; a replica the
  // primary was streaming a snapshot to when it crashed (and so not in sync) could make that
  // wait rightly, so no snapshots there: every replica is in sync or has held nothing.
  if (o_.scenario == Scenario::kFirstEpochCrash) copt_.log_keep_bytes = 1 << 20;
  // Half the seeds keep nothing for lagging copies (snapshots happen more), half a little.
  copt_.lag_keep_bytes = o_.seed / 2 % 2 ? 0 : 2048;
  loss_ = rng_.chance(0.3) ? 0.0 : static_cast<double>(rng_.range(1, 5)) / 100.0;
  dup_ = rng_.chance(0.5) ? 0.0 : 0.02;
  reorder_ = rng_.chance(0.5) ? 0.0 : 0.05;
  max_delay_ = rng_.range(2, 15);
  load_end_ = rng_.range(7000, 10000);
  pad_max_ = rng_.chance(0.3) ? 1000 : 0;
  nodes_.resize(n_nodes_ + 1);
  side_.assign(n_nodes_ + 1, 0);
  std::string engines;
  for (NodeId i = 1; i <= n_nodes_; ++i) {
    Node& n = nodes_[i];
    n.id = i;
    n.persistent = rng_.chance(0.5);
    n.offset = rng_.range(1000, 100000);
    n.drift_ppm = rng_.range(-20000, 20000);  // 2%: 2*2%*lease 2000 = 80 ms < max_drift 200
    n.copy = std::make_unique<Copy>(i, copt_next());
    engines += n.persistent ? 'P' : 'M';
  }
  for (int k = 0; k < 3; ++k) keys_.push_back(fmt::format("k{}", k));
  Config c{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = wq_};
  for (NodeId i = 2; i <= copies_; ++i) c.replicas.push_back(i);
  meta_.cfg = c;
  for (NodeId i = 1; i <= n_nodes_; ++i) {
    meta_.inc[i] = 1;
    meta_.heard_inc[i] = 1;
    meta_.last_heard[i] = 0;
  }
  for (NodeId i = 1; i <= n_nodes_; ++i) {
    auto st = nodes_[i].copy->configure(c, nodes_[i].local(0));
    if (!st) fail("initial configure refused: " + st.error().message);
    drain(nodes_[i]);
  }
  if (o_.scenario == Scenario::kFirstEpochCrash && rng_.chance(0.5)) {
    // The primary's first barrier never arrives (its links were not up yet).
    std::erase_if(net_, [](const InFlight& f) { return f.from == 1; });
    std::make_heap(net_.begin(), net_.end(), Later{});
    trace("the primary's first barrier is lost");
  }
  int nclients = static_cast<int>(rng_.range(2, 4));
  for (int i = 0; i < nclients; ++i) {
    ClientState cs;
    cs.id = i;
    // In primary-partition, half the clients sit with the primary that will be cut off.
    cs.home = static_cast<NodeId>(1 + (o_.scenario == Scenario::kPrimaryPartition && i % 2 == 0
                                           ? 0
                                           : rng_.below(n_nodes_)));
    cs.guess = 1;
    cs.next_at = rng_.range(1, 50);
    clients_.push_back(cs);
  }
  res_.setup = fmt::format("nodes={} copies={} write_quorum={} engines={} loss={:.2f} dup={:.2f} "
                           "reorder={:.2f} delay<={} log_keep={} value_pad<={}",
                           n_nodes_, copies_, wq_, engines, loss_, dup_, reorder_, max_delay_,
                           copt_.log_keep_bytes, pad_max_);
  trace("setup " + res_.setup);
}

void Sim::schedule_faults() {
  auto partition = [&](int64_t at, int64_t len, std::vector<int> sides) {
    faults_.push_back({at, 0, 0, sides});
    faults_.push_back({at + len, 1, 0, {}});
  };
  auto random_sides = [&] {
    std::vector<int> s(n_nodes_ + 1, 0);
    for (size_t i = 1; i <= n_nodes_; ++i) s[i] = static_cast<int>(rng_.below(2));
    return s;
  };
  switch (o_.scenario) {
    case Scenario::kPrimaryPartition: {
      // The primary (and the clients homed on it) is cut off from everyone else, long enough
      // for a failover; the manager is on the majority side.
      std::vector<int> s(n_nodes_ + 1, 0);
      s[1] = 1;
      partition(rng_.range(1000, 2000), rng_.range(4500, 6000), s);
      break;
    }
    case Scenario::kPrimaryCrash: {
      // Replica 2 loses its link to the primary (it still reaches the manager and the
      // clients), so it lags; then the primary crashes and the link comes back.
      int64_t at = rng_.range(2500, 4000);
      faults_.push_back({rng_.range(300, 1000), 5, 2, {}});
      faults_.push_back({at, 4, 0, {}});
      faults_.push_back({at, 6, 2, {}});
      break;
    }
    case Scenario::kFailoverStorm: {
      // Again and again, whoever is primary now is cut off, alone or with one other node,
      // while the other side may already hold or miss its latest entries.
      for (int64_t at = rng_.range(800, 1500); at < load_end_ - 500;
           at += rng_.range(1500, 3500)) {
        faults_.push_back({at, 7, static_cast<NodeId>(rng_.below(2)), {}});
        faults_.push_back({at + rng_.range(1200, 3000), 1, 0, {}});
      }
      break;
    }
    case Scenario::kReplicaChurn: {
      for (int k = 0; k < 3; ++k) {
        NodeId victim = static_cast<NodeId>(rng_.range(2, static_cast<int64_t>(copies_)));
        int64_t at = rng_.range(500, load_end_ - 1500);
        faults_.push_back({at, 2, victim, {}});
        faults_.push_back({at + rng_.range(200, 1200), 3, victim, {}});
      }
      break;
    }
    case Scenario::kMove: {
      // Moves one after another; now and then the primary crashes (sometimes right at a
      // switch, losing what it had not sent), or a partition cuts the nodes in two.
      for (int64_t at = rng_.range(300, 800); at < load_end_ - 1000; at += rng_.range(800, 2000)) {
        faults_.push_back({at, 8, 0, {}});
        if (rng_.chance(0.3)) faults_.push_back({at + 1, 9, 0, {}});
      }
      if (rng_.chance(0.3)) faults_.push_back({rng_.range(1000, load_end_ - 1000), 4, 0, {}});
      if (rng_.chance(0.3)) partition(rng_.range(1000, load_end_ - 2000), rng_.range(300, 2500), random_sides());
      break;
    }
    case Scenario::kFirstEpochCrash: {
      // The primary crashes within its first moments, before (or just as) its first barrier
      // reaches the replicas, and stays down until the heal: the partition must fail over
      // without it (checked: (d)).
      faults_.push_back({rng_.range(0, 150), 10, 0, {}});
      break;
    }
    case Scenario::kRandom: {
      int parts = static_cast<int>(rng_.below(3));
      for (int k = 0; k < parts; ++k)
        partition(rng_.range(500, load_end_ - 1000), rng_.range(300, 4000), random_sides());
      int crashes = static_cast<int>(rng_.below(3));
      for (int k = 0; k < crashes; ++k) {
        int64_t at = rng_.range(500, load_end_ - 1000);
        if (rng_.chance(0.4)) {
          faults_.push_back({at, 4, 0, {}});
        } else {
          NodeId v = static_cast<NodeId>(rng_.range(1, static_cast<int64_t>(n_nodes_)));
          faults_.push_back({at, 2, v, {}});
          faults_.push_back({at + rng_.range(300, 3000), 3, v, {}});
        }
      }
      break;
    }
  }
  std::stable_sort(faults_.begin(), faults_.end(),
                   [](const Fault& a, const Fault& b) { return a.at < b.at; });
}

void Sim::crash(Node& n) {
  if (!n.up) return;
  ++res_.counters.crashes;
  n.up = false;
  // A copy in the middle of a transfer (or settling after one) claims no LSN: its engine's mark
  // says so, and it restarts holding nothing it can vouch for.
  const bool claims = n.copy->held().first > 0;
  n.copy.reset();
  n.pending_writes.clear();
  n.pending_reads.clear();
  n.snaps.clear();
  bool member = n.id == meta_.cfg.primary ||
                std::count(meta_.cfg.replicas.begin(), meta_.cfg.replicas.end(), n.id) ||
                (meta_.move.active && meta_.move.learner == n.id);  // about to be one
  if (n.persistent) {
    if (!claims) n.lineage.clear();
    n.lineage.resize(std::min<size_t>(n.lineage.size(), n.durable));  // unsynced writes lost
  } else {
    if (member && !n.lineage.empty()) lose(n.id, n.incarnation);  // a memory copy loses all
    n.lineage.clear();
  }
  n.durable = n.lineage.size();
  n.state.clear();
  n.key_lsn.clear();
  for (size_t i = 0; i < n.lineage.size(); ++i) {
    if (!n.lineage[i].second) continue;
    const std::string& k = write_key_[n.lineage[i].second];
    n.state[k] = n.lineage[i].second;
    n.key_lsn[k] = i + 1;
  }
  n.folded = n.state;
  n.committed = 0;
  trace(fmt::format("crash node {} ({}), keeps {} entries", n.id,
                    n.persistent ? "persistent" : "memory", n.lineage.size()));
}

void Sim::restart(Node& n) {
  if (n.up) return;
  n.up = true;
  ++n.incarnation;
  n.copy = std::make_unique<Copy>(n.id, copt_next());
  if (n.persistent && !n.lineage.empty())
    n.copy->recover(n.lineage.size(), n.lineage.back().first);
  trace(fmt::format("restart node {} incarnation {} at lsn {}", n.id, n.incarnation,
                    n.lineage.size()));
}

void Sim::drain(Node& n) {
  for (int round = 0; round < 100 && n.up; ++round) {
    Output out = n.copy->take_output();
    bool again = false;
    if (out.reset_partition) {
      // The copy drops what it held to be rebuilt from a snapshot: until the snapshot is in,
      // it is a lost copy for the durability bound (counted once per incarnation).
      if (!n.lineage.empty()) lose(n.id, n.incarnation);
      n.state.clear();
      n.folded.clear();
      n.key_lsn.clear();
      n.lineage.clear();
      n.durable = 0;
      n.pending_writes.clear();
    }
    for (const auto& e : out.apply) {
      if (n.lineage.size() + 1 != e.lsn) {
        fail(fmt::format("node {} was given lsn {} to apply after lsn {}", n.id, e.lsn,
                         n.lineage.size()));
        return;
      }
      uint64_t id = 0;
      if (!e.effect.empty()) {
        std::string key;
        const std::string effect(e.effect.view());
        if (!parse_effect(effect, &key, &id)) {
          fail("bad effect " + effect);
          return;
        }
        n.state[key] = id;
        n.folded[key] = id;
        n.key_lsn[key] = e.lsn;
      }
      n.lineage.emplace_back(e.epoch, id);
    }
    for (const auto& s : out.apply_snapshot) {
      std::string key;
      uint64_t id;
      if (!parse_effect(s, &key, &id)) {
        fail("bad snapshot effect " + s);
        return;
      }
      n.state[key] = id;
    }
    if (out.snapshot_done_lsn) {
      auto it = snap_lineage_.find({n.id, n.copy->config().epoch, out.snapshot_done_lsn});
      if (it == snap_lineage_.end()) {
        fail(fmt::format("node {} installed a snapshot at lsn {} nobody sent", n.id,
                         out.snapshot_done_lsn));
        return;
      }
      n.lineage = it->second;
      std::map<std::string, uint64_t> want;
      n.key_lsn.clear();
      for (size_t i = 0; i < n.lineage.size(); ++i)
        if (n.lineage[i].second) {
          want[write_key_[n.lineage[i].second]] = n.lineage[i].second;
          n.key_lsn[write_key_[n.lineage[i].second]] = i + 1;
        }
      // The keys were scanned while writes went on: they hold the state at the snapshot's LSN
      // overwritten by some later writes, which the log after the LSN replays (held() claims
      // nothing until it has; the check below holds it to that).
      n.folded = std::move(want);
      if (resumed_.count({n.id, n.copy->config().epoch, out.snapshot_done_lsn}) > 0)
        ++res_.counters.snapshots_resumed;
      ++res_.counters.snapshots;
    }
    for (auto& [to, msg] : out.send) {
      std::string bytes = replication::encode(msg);
      int dest = std::holds_alternative<FenceAck>(msg) ? kManager : static_cast<int>(to);
      send(n.id, dest, std::move(bytes));
    }
    for (NodeId r : out.snapshot_needed) {
      auto sb = n.copy->begin_snapshot(r, n.local(now_));
      // A resumed transfer continues at an older LSN, which the log still holds.
      if (sb.resume ? n.lineage.size() < sb.snapshot_lsn : n.lineage.size() != sb.snapshot_lsn) {
        fail(fmt::format("node {} snapshot lsn {} but holds {}", n.id, sb.snapshot_lsn,
                         n.lineage.size()));
        return;
      }
      snap_lineage_[{r, sb.epoch, sb.snapshot_lsn}] = std::vector<std::pair<uint64_t, uint64_t>>(
          n.lineage.begin(), n.lineage.begin() + static_cast<ptrdiff_t>(sb.snapshot_lsn));
      if (sb.resume) resumed_.insert({r, sb.epoch, sb.snapshot_lsn});
      send(n.id, static_cast<int>(r), replication::encode(sb));
      Node::SnapOut so;
      so.to = r;
      if (sb.resume) so.next_key = sb.resume_key;  // from where a resumed transfer stopped
      std::erase_if(n.snaps, [&](const Node::SnapOut& s) { return s.to == r; });
      n.snaps.push_back(std::move(so));
      trace(fmt::format("node {} snapshots to {} at lsn {}", n.id, r, sb.snapshot_lsn));
    }
    n.committed = std::max(n.committed, out.committed_lsn);
    if (auto [held, held_epoch] = n.copy->held(); held > 0 && n.folded != n.state) {
      fail(fmt::format("node {} claims lsn {} (epoch {}) but its data differs from its log applied in "
                       "order (it holds writes its log does not have)",
                       n.id, held, held_epoch));
      return;
    }
    if (!n.copy->is_primary()) n.pending_writes.clear();
    // Acknowledge committed writes.
    while (!n.pending_writes.empty() && n.pending_writes.begin()->first <= n.committed) {
      auto [lsn, who] = *n.pending_writes.begin();
      n.pending_writes.erase(n.pending_writes.begin());
      if (lsn > n.lineage.size()) continue;
      send(n.id, who.first, ClientResp{.attempt = who.second, .ok = true});
    }
    answer_reads(n);
    // A memory engine is as durable as it gets once applied.
    if (!n.persistent && n.durable < n.copy->last_lsn()) {
      n.durable = n.copy->last_lsn();
      n.copy->durable(n.durable, n.local(now_));
      again = true;
    }
    if (!again) break;
  }
}

void Sim::answer_reads(Node& n) {
  int64_t local = n.local(now_);
  bool serving = o_.break_no_lease ? n.copy->config().primary == n.id
                                   : n.copy->can_serve_reads(local);
  if (!serving) return;
  std::erase_if(n.pending_reads, [&](const Node::PendingRead& r) {
    auto it = n.key_lsn.find(r.key);
    uint64_t need = it == n.key_lsn.end() ? 0 : it->second;
    if (need > n.committed) return false;  // its last write is not committed yet
    auto v = n.state.find(r.key);
    send(n.id, r.client,
         ClientResp{.attempt = r.attempt, .ok = true, .value = v == n.state.end() ? 0 : v->second});
    return true;
  });
}

void Sim::on_client_req(Node& n, int client, const ClientReq& r) {
  NodeId hint = n.copy->config().primary;
  if (r.write) {
    std::string effect = effect_of(r.key, r.value);
    if (pad_max_) effect += "#" + std::string(r.value * 7919 % pad_max_, 'x');
    auto lsn = n.copy->append(std::move(effect), n.local(now_));
    if (!lsn) {
      if (lsn.error().message.find("backlog full") != std::string::npos)
        ++res_.counters.backlog_full;
      send(n.id, client, ClientResp{.attempt = r.attempt, .ok = false, .hint = hint});
      return;
    }
    n.state[r.key] = r.value;
    n.folded[r.key] = r.value;
    n.key_lsn[r.key] = *lsn;
    n.lineage.emplace_back(n.copy->config().epoch, r.value);
    if (n.lineage.size() != *lsn) fail(fmt::format("node {} numbered lsn {} after {}", n.id, *lsn,
                                                   n.lineage.size() - 1));
    n.pending_writes[*lsn] = {client, r.attempt};
    if (n.persistent == false) {
      n.durable = *lsn;
      n.copy->durable(*lsn, n.local(now_));
    }
    drain(n);
    return;
  }
  bool serving = o_.break_no_lease ? n.copy->config().primary == n.id
                                   : n.copy->can_serve_reads(n.local(now_));
  if (!serving) {
    send(n.id, client, ClientResp{.attempt = r.attempt, .ok = false, .hint = hint});
    return;
  }
  n.pending_reads.push_back({client, r.attempt, r.key, now_ + 1000});
  answer_reads(n);
}

void Sim::deliver(InFlight& m) {
  mix(static_cast<uint64_t>(m.at) * 31 + static_cast<uint64_t>(m.from) * 7 +
      static_cast<uint64_t>(m.to));
  if (m.to == kManager) {
    if (auto* bytes = std::get_if<std::string>(&m.p)) {
      auto msg = replication::decode(*bytes);
      if (!msg) return fail("manager could not decode: " + msg.error().message);
      if (auto* fa = std::get_if<FenceAck>(&*msg)) {
        if (meta_.failing_over && fa->new_epoch == meta_.cfg.epoch + 1) {
          meta_.acks.emplace_back(static_cast<NodeId>(m.from), *fa);
          meta_.ack_inc.emplace(static_cast<NodeId>(m.from), m.from_incarnation);
        }
      }
    } else if (auto* hb = std::get_if<Heartbeat>(&m.p)) {
      meta_.last_heard[static_cast<NodeId>(m.from)] = now_;
      meta_.heard_inc[static_cast<NodeId>(m.from)] = hb->incarnation;
      meta_.reports[static_cast<NodeId>(m.from)] = *hb;
    }
    return;
  }
  if (m.to >= kClientBase) {
    ClientState& c = clients_[m.to - kClientBase];
    auto* r = std::get_if<ClientResp>(&m.p);
    if (!r || !c.busy || r->attempt != c.attempt) return;
    if (!r->ok) {
      ++res_.counters.refusals;
      c.guess = r->hint && r->hint != c.guess ? r->hint
                                              : static_cast<NodeId>(1 + rng_.below(n_nodes_));
      c.attempt = 0;  // resend after a pause
      c.next_at = now_ + 30;
      if (++c.refusals > 30) c.busy = false;  // give up: it was never applied
      return;
    }
    c.op.complete = now_;
    if (!c.op.write) c.op.value = r->value;
    history_.push_back(c.op);
    history_keys_.push_back(c.key);
    if (c.op.write) {
      ++res_.counters.writes_acked;
      // Remember where the write sits, for the durability check.
      Node& p = nodes_[static_cast<size_t>(m.from)];
      for (size_t i = 0; i < p.lineage.size(); ++i)
        if (p.lineage[i].second == c.op.value)
          acked_.push_back({c.op.value, i + 1, p.lineage[i].first, c.key});
    } else {
      ++res_.counters.reads_ok;
    }
    trace(fmt::format("client {} {} {}={} done [{},{}] via node {}", c.id,
                      c.op.write ? "write" : "read", c.key, c.op.value, c.op.invoke, now_,
                      m.from));
    c.busy = false;
    c.next_at = now_ + rng_.range(1, 40);
    return;
  }
  Node& n = nodes_[static_cast<size_t>(m.to)];
  if (!n.up) return;
  if (auto* bytes = std::get_if<std::string>(&m.p)) {
    auto msg = replication::decode(*bytes);
    if (!msg) return fail("node could not decode: " + msg.error().message);
    n.copy->receive(static_cast<NodeId>(m.from), *msg, n.local(now_));
    drain(n);
  } else if (auto* req = std::get_if<ClientReq>(&m.p)) {
    on_client_req(n, m.from, *req);
  } else if (auto* cf = std::get_if<Configure>(&m.p)) {
    const Config& c = cf->c;
    bool member = c.primary == n.id || std::count(c.replicas.begin(), c.replicas.end(), n.id);
    if (c.epoch <= n.copy->config().epoch) return;
    // A restarted copy joins only a configuration decided for its new incarnation.
    if (member && cf->incarnation.at(n.id) != n.incarnation) return;
    auto st = n.copy->configure(c, n.local(now_));
    if (!st) return fail("configure refused: " + st.error().message);
    trace(fmt::format("node {} configured epoch {} primary {}", n.id, c.epoch, c.primary));
    drain(n);
  } else if (auto* l = std::get_if<Learn>(&m.p)) {
    on_learn(n, *l);
  } else if (auto* h = std::get_if<HandOver>(&m.p)) {
    if (!n.copy->is_primary() || n.copy->config().epoch != h->epoch) return;
    if (n.copy->handing_over_to() != h->to) {
      auto st = n.copy->hand_over(h->to, n.local(now_));
      if (!st) return fail("hand_over refused: " + st.error().message);
      trace(fmt::format("node {} stops epoch {} for its switch (to {})", n.id, h->epoch, h->to));
    }
    drain(n);
  }
}

// A move's learner: on the primary, stream to it; on the learner, become a copy that receives
// that stream, starting empty (as the service drops what a node held of the partition).
void Sim::on_learn(Node& n, const Learn& l) {
  const Config& c = l.c;
  const Config& mine = n.copy->config();
  if (c.primary == n.id) {
    if (!n.copy->is_primary() || mine.epoch != c.epoch || n.copy->handing_over_to()) return;
    if (mine.learners != c.learners) {
      auto st = n.copy->set_learners(c.learners, n.local(now_));
      if (!st) return fail("set_learners refused: " + st.error().message);
    }
    drain(n);
    return;
  }
  if (std::find(c.learners.begin(), c.learners.end(), n.id) == c.learners.end() ||
      l.incarnation != n.incarnation || mine.epoch > c.epoch)
    return;
  if (mine.epoch == c.epoch &&
      (std::find(mine.learners.begin(), mine.learners.end(), n.id) != mine.learners.end() ||
       mine.primary == n.id || std::find(mine.replicas.begin(), mine.replicas.end(), n.id) != mine.replicas.end()))
    return;  // already its learner (or a member: the manager's view is stale)
  n.copy = std::make_unique<Copy>(n.id, copt_next());
  n.state.clear();
  n.folded.clear();
  n.key_lsn.clear();
  n.lineage.clear();
  n.durable = 0;
  n.committed = 0;
  n.pending_writes.clear();
  n.pending_reads.clear();
  n.snaps.clear();
  auto st = n.copy->configure(c, n.local(now_));
  if (!st) return fail("learner configure refused: " + st.error().message);
  trace(fmt::format("node {} learns epoch {} from primary {}", n.id, c.epoch, c.primary));
  drain(n);
}

void Sim::node_tick(Node& n) {
  if (!n.up) {
    if (n.restart_at >= 0 && now_ >= n.restart_at) {
      n.restart_at = -1;
      restart(n);
    }
    return;
  }
  int64_t local = n.local(now_);
  n.copy->tick(local);
  // Persistent engines flush now and then; durability is reported after the flush.
  if (n.persistent && n.durable < n.copy->last_lsn() && rng_.chance(0.3)) {
    n.durable = n.copy->last_lsn();
    n.copy->durable(n.durable, local);
  }
  // One snapshot chunk per tick per transfer, scanned now.
  for (auto& s : n.snaps) {
    std::vector<std::string> chunk;
    auto it = n.state.lower_bound(s.next_key);
    for (; it != n.state.end() && chunk.size() < 2; ++it) chunk.push_back(effect_of(it->first, it->second));
    const bool last = it == n.state.end();
    auto c = n.copy->snapshot_chunk(s.to, std::move(chunk), last, local, last ? std::string() : it->first);
    if (o_.break_no_settle) c.settle_lsn = 0;  // the replica vouches for the LSN at once
    if (!last) s.next_key = it->first;
    s.done = last;
    send(n.id, static_cast<int>(s.to), replication::encode(c));
  }
  std::erase_if(n.snaps, [](const Node::SnapOut& s) { return s.done; });
  std::erase_if(n.pending_reads, [&](const Node::PendingRead& r) { return now_ > r.deadline; });
  if (now_ % 100 == 0) {
    Heartbeat hb{.incarnation = n.incarnation};
    hb.epoch = n.copy->config().epoch;
    hb.primary = n.copy->is_primary();
    hb.committed = n.copy->committed_lsn();
    for (NodeId l : n.copy->config().learners)
      if (auto pr = n.copy->progress(l)) hb.learners.emplace_back(l, *pr);
    hb.handover_done = n.copy->handover_done();
    send(n.id, kManager, std::move(hb));
  }
  drain(n);
}

void Sim::manager_step() {
  Meta& m = meta_;
  auto members = [&] {
    std::vector<NodeId> v = m.cfg.replicas;
    v.insert(v.begin(), m.cfg.primary);
    return v;
  };
  auto push = [&] {
    for (NodeId i = 1; i <= n_nodes_; ++i) send(kManager, static_cast<int>(i), Configure{m.cfg, m.inc});
    m.next_push = now_ + 100;
  };
  NodeId p = m.cfg.primary;
  if (!m.failing_over) {
    bool lost = now_ - m.last_heard[p] > 1000 || m.heard_inc[p] != m.inc[p];
    if (lost) {
      m.failing_over = true;
      m.acks.clear();
      m.ack_inc.clear();
      m.next_fence = now_;
      trace(fmt::format("manager: primary {} unreachable, fencing for epoch {}", p,
                        m.cfg.epoch + 1));
    }
  }
  if (m.failing_over) {
    if (now_ >= m.next_fence) {
      for (NodeId x : members())
        send(kManager, static_cast<int>(x),
             replication::encode(replication::Fence{.new_epoch = m.cfg.epoch + 1}));
      m.next_fence = now_ + 200;
    }
    std::optional<NodeId> chosen;
    if (o_.break_promote_any) {
      // Broken on purpose: the first replica in configuration order that answered, whatever
      // it holds (a naive "promote a live replica").
      for (NodeId x : m.cfg.replicas)
        for (const auto& [from, ack] : m.acks)
          if (from == x && !chosen) chosen = x;
    } else {
      chosen = replication::choose_new_primary(m.cfg, m.acks);
    }
    if (!chosen) return;
    check_promotion(*chosen);
    Config next = m.cfg;
    next.epoch = m.cfg.epoch + 1;
    next.primary = *chosen;
    next.replicas.clear();
    for (NodeId x : members())
      if (x != *chosen) next.replicas.push_back(x);
    if (*chosen != p) lose(p, m.inc[p]);  // the old primary's copy no longer counts
    // A member is named with the incarnation that answered: if it restarted since, it will
    // not take this configuration (and a restarted primary is replaced again).
    for (const auto& [from, inc] : m.ack_inc) m.inc[from] = inc;
    m.cfg = next;
    m.failing_over = false;
    ++res_.counters.failovers;
    trace(fmt::format("manager: epoch {} primary {} (was {}), lost copies so far {}", next.epoch,
                      next.primary, p, lost_.size()));
    push();
    return;
  }
  // Re-add a member that restarted (new incarnation) and is alive: a new epoch, same primary.
  for (NodeId x : members()) {
    if (x == m.cfg.primary) continue;
    if (m.heard_inc[x] != m.inc[x] && now_ - m.last_heard[x] < 300) {
      m.inc[x] = m.heard_inc[x];
      m.cfg.epoch += 1;
      ++res_.counters.readds;
      trace(fmt::format("manager: re-add node {} incarnation {} in epoch {}", x, m.inc[x],
                        m.cfg.epoch));
      push();
      return;
    }
  }
  if (move_step()) return;
  if (now_ >= m.next_push) push();
}

void Sim::start_move() {
  Meta& m = meta_;
  if (m.failing_over || m.move.active) return;
  std::vector<NodeId> members = m.cfg.replicas;
  members.insert(members.begin(), m.cfg.primary);
  std::vector<NodeId> spare;
  for (NodeId i = 1; i <= n_nodes_; ++i)
    if (std::find(members.begin(), members.end(), i) == members.end()) spare.push_back(i);
  Meta::Move mv;
  mv.active = true;
  mv.base_epoch = m.cfg.epoch;
  mv.started = now_;
  Config t = m.cfg;
  t.epoch = m.cfg.epoch + 1;
  t.learners.clear();
  std::vector<NodeId> copies = members;
  if (!spare.empty() && rng_.chance(0.8)) {
    // One copy moves to a spare node; the primary stays, or moves there, or to a kept copy.
    mv.learner = spare[rng_.below(spare.size())];
    NodeId drop = members[rng_.below(members.size())];
    std::erase(copies, drop);
    copies.push_back(mv.learner);
    t.primary = drop != m.cfg.primary && !rng_.chance(0.3) ? m.cfg.primary : copies[rng_.below(copies.size())];
  } else {
    if (m.cfg.replicas.empty()) return;
    t.primary = m.cfg.replicas[rng_.below(m.cfg.replicas.size())];  // a new primary, same copies
  }
  t.replicas.clear();
  for (NodeId x : copies)
    if (x != t.primary) t.replicas.push_back(x);
  mv.target = t;
  m.move = mv;
  // Half the time the learner sits behind a slow link: it lags the replicas it replaces.
  slow_.clear();
  if (mv.learner && rng_.chance(0.5))
    slow_[{static_cast<int>(m.cfg.primary), static_cast<int>(mv.learner)}] = rng_.range(20, 60);
  trace(fmt::format("manager: move epoch {} -> primary {} replicas {} (learner {})", m.cfg.epoch, t.primary,
                    fmt::join(t.replicas, ","), mv.learner));
}

// One step of the move under way; true if it sent something or switched (skip the push).
bool Sim::move_step() {
  Meta& m = meta_;
  Meta::Move& mv = m.move;
  if (!mv.active) return false;
  if (m.cfg.epoch != mv.base_epoch || (!mv.stop_sent && now_ - mv.started > 5000)) {
    // Overtaken by a failover or a re-add, or not caught up in time: dropped (a stopped
    // primary stays stopped until that new epoch, as in the service).
    ++res_.counters.moves_abandoned;
    trace(fmt::format("manager: move from epoch {} abandoned", mv.base_epoch));
    mv = {};
    return false;
  }
  auto rit = m.reports.find(m.cfg.primary);
  const Heartbeat* r = rit != m.reports.end() && rit->second.epoch == m.cfg.epoch && rit->second.primary
                           ? &rit->second
                           : nullptr;
  bool caught = true;
  if (mv.learner) {
    if (now_ >= mv.next_learn) {
      Config lc = m.cfg;
      lc.learners = {mv.learner};
      Learn l{lc, m.heard_inc[mv.learner]};
      send(kManager, static_cast<int>(m.cfg.primary), l);
      send(kManager, static_cast<int>(mv.learner), l);
      mv.next_learn = now_ + 200;
    }
    caught = false;
    if (r)
      for (const auto& [id, pr] : r->learners)
        if (id == mv.learner) caught = !pr.snapshotting && pr.acked > 0 && pr.acked >= r->committed;
  }
  if (!caught) return false;
  std::vector<NodeId> now_copies = m.cfg.replicas;
  now_copies.push_back(m.cfg.primary);
  bool drops = false;
  for (NodeId x : now_copies)
    drops |= x != mv.target.primary &&
             std::find(mv.target.replicas.begin(), mv.target.replicas.end(), x) == mv.target.replicas.end();
  bool stop = mv.target.primary != m.cfg.primary || drops;
  if (o_.break_no_stop && mv.target.primary == m.cfg.primary) stop = false;  // broken on purpose
  if (stop && !(r && r->handover_done)) {
    if (now_ >= mv.next_stop) {
      send(kManager, static_cast<int>(m.cfg.primary), HandOver{m.cfg.epoch, mv.target.primary});
      mv.next_stop = now_ + 200;
      mv.stop_sent = true;
    }
    return false;
  }
  // The switch.
  if (mv.learner) m.inc[mv.learner] = m.heard_inc[mv.learner];
  NodeId was = m.cfg.primary;
  m.cfg = mv.target;
  m.reports.clear();
  ++res_.counters.moves;
  trace(fmt::format("manager: switch to epoch {} primary {} (was {}) replicas {}", m.cfg.epoch, m.cfg.primary, was,
                    fmt::join(m.cfg.replicas, ",")));
  mv = {};
  for (NodeId i = 1; i <= n_nodes_; ++i) send(kManager, static_cast<int>(i), Configure{m.cfg, m.inc});
  m.next_push = now_ + 100;
  if (m.crash_after_switch) {
    // The fault: the new primary crashes at once, and what it had not sent yet is lost.
    m.crash_after_switch = false;
    Node& victim = nodes_[m.cfg.primary];
    std::erase_if(net_, [&](const InFlight& f) { return f.from == static_cast<int>(victim.id); });
    std::make_heap(net_.begin(), net_.end(), Later{});
    crash(victim);
    victim.restart_at = now_ + rng_.range(1500, 3000);
  }
  return true;
}

// (b) at every promotion: the new primary holds every acknowledged write that a replica still
// in sync in the fenced epoch holds (such a copy holds the epoch's barrier, so its log is a
// prefix of that epoch's primary log; the promotion rule must not lose what it holds). This
// needs no loss counting: a copy that lost data is not in sync.
void Sim::check_promotion(NodeId chosen) {
  const Meta& m = meta_;
  const Node& y = nodes_[chosen];
  if (!y.up || y.incarnation != m.ack_inc.at(chosen)) return;  // it will not take the config
  auto holds = [](const Node& n, const AckedWrite& w) {
    return w.lsn <= n.lineage.size() && n.lineage[w.lsn - 1] == std::pair(w.epoch, w.id);
  };
  // The replaced primary counts only if it answered the fence: with write_quorum 1 what only
  // it holds is lost with it, by design.
  std::vector<NodeId> members = m.cfg.replicas;
  for (const auto& [from, ack] : m.acks)
    if (from == m.cfg.primary) members.push_back(m.cfg.primary);
  for (const AckedWrite& w : acked_) {
    if (holds(y, w)) continue;
    for (NodeId x : members) {
      const Node& n = nodes_[x];
      if (!n.up || n.copy->config().epoch != m.cfg.epoch || n.copy->last_epoch() != m.cfg.epoch)
        continue;
      if (holds(n, w)) {
        fail(fmt::format("(b) promoting node {} for epoch {} loses acknowledged write {}={} "
                         "(lsn {}, epoch {}) that node {}, in sync in epoch {}, holds",
                         chosen, m.cfg.epoch + 1, w.key, w.id, w.lsn, w.epoch, x, m.cfg.epoch));
        return;
      }
    }
  }
}

void Sim::client_step(ClientState& c) {
  const int ep = kClientBase + c.id;
  if (c.busy && c.attempt && now_ > c.attempt_deadline) {
    // Timed out: the outcome of a write is unknown from here on.
    if (c.op.write) {
      c.op.complete = kNever;
      history_.push_back(c.op);
      history_keys_.push_back(c.key);
      ++res_.counters.writes_unknown;
    }
    c.busy = false;
    c.guess = static_cast<NodeId>(1 + rng_.below(n_nodes_));
    c.next_at = now_ + 20;
  }
  if (now_ < c.next_at) return;
  if (!c.busy) {
    if (now_ >= load_end_) return;
    c.busy = true;
    c.refusals = 0;
    c.key = keys_[rng_.below(keys_.size())];
    c.op = Op{.client = static_cast<uint64_t>(c.id), .write = rng_.chance(0.5), .value = 0,
              .invoke = now_, .complete = 0};
    if (c.op.write) {
      c.op.value = next_write_id_++;
      write_key_[c.op.value] = c.key;
    }
    c.attempt = 0;
    ++res_.counters.ops;
  }
  if (c.busy && c.attempt == 0) {
    c.attempt = next_attempt_++;
    c.attempt_deadline = now_ + 500;
    send(ep, static_cast<int>(c.guess),
         ClientReq{.attempt = c.attempt, .write = c.op.write, .key = c.key, .value = c.op.value});
  }
}

bool Sim::converged(std::string* why) {
  const Meta& m = meta_;
  if (m.failing_over) return *why = "failover in progress", false;
  Node& p = nodes_[m.cfg.primary];
  if (!p.up || !p.copy->is_primary() || p.copy->config().epoch != m.cfg.epoch)
    return *why = fmt::format("primary {} not serving epoch {}", p.id, m.cfg.epoch), false;
  if (p.committed < p.copy->last_lsn())
    return *why = fmt::format("primary committed {} of {}", p.committed, p.copy->last_lsn()), false;
  for (NodeId r : m.cfg.replicas) {
    Node& n = nodes_[r];
    if (!n.up || n.copy->config().epoch != m.cfg.epoch)
      return *why = fmt::format("replica {} not in epoch {}", r, m.cfg.epoch), false;
    if (n.copy->last_lsn() != p.copy->last_lsn() || n.durable != n.copy->last_lsn())
      return *why = fmt::format("replica {} at lsn {} (durable {}), primary at {}", r,
                                n.copy->last_lsn(), n.durable, p.copy->last_lsn()),
             false;
    if (n.state != p.state || n.lineage != p.lineage)
      return *why = fmt::format("replica {} state differs from the primary's", r), false;
  }
  return true;
}

void Sim::final_checks() {
  // Every engine holds exactly its log applied in order (replicas equal the primary already).
  {
    const Node& p = nodes_[meta_.cfg.primary];
    std::map<std::string, uint64_t> folded;
    for (const auto& [epoch, id] : p.lineage)
      if (id) folded[write_key_[id]] = id;
    if (folded != p.state) {
      fail(fmt::format("(c) primary {} state differs from its log applied in order", p.id));
      return;
    }
  }
  // (b) durability: every acknowledged write is in the final primary's log, at the LSN and
  // epoch where it was acknowledged, as long as at most write_quorum - 1 copies were lost.
  const bool within = lost_.size() + 1 <= wq_;
  if (!within) {
    ++res_.counters.beyond_bound;
    trace(fmt::format("beyond the durability bound at {}: {} copies lost, write_quorum {}; "
                      "checking the history before that time only",
                      bound_exceeded_at_, lost_.size(), wq_));
  } else {
    const Node& p = nodes_[meta_.cfg.primary];
    for (const AckedWrite& w : acked_) {
      if (w.lsn > p.lineage.size() || p.lineage[w.lsn - 1] != std::pair(w.epoch, w.id)) {
        fail(fmt::format("(b) acknowledged write {}={} (lsn {}, epoch {}) lost with {} of {} "
                         "copies lost (bound: write_quorum - 1 = {})",
                         w.key, w.id, w.lsn, w.epoch, lost_.size(), copies_, wq_ - 1));
        return;
      }
    }
  }
  // (a) linearizability per key. Beyond the bound, acknowledged writes may be lost: only the
  // history before the bound was exceeded is checked (operations still running then count as
  // of unknown outcome).
  const int64_t cut = within ? kNever : bound_exceeded_at_;
  for (const std::string& k : keys_) {
    std::vector<Op> ops;
    for (size_t i = 0; i < history_.size(); ++i) {
      if (history_keys_[i] != k) continue;
      Op op = history_[i];
      if (op.invoke >= cut) continue;
      if (op.complete >= cut) {
        if (!op.write) continue;
        op.complete = kNever;
      }
      ops.push_back(op);
    }
    LinResult lr = check_register(ops);
    res_.counters.lin_states += lr.states;
    if (lr.gave_up) {
      ++res_.counters.lin_gave_up;
      continue;
    }
    if (!lr.ok) {
      fail(fmt::format("(a) history of key {} is not linearizable ({} ops): {}", k, ops.size(),
                       lr.explain));
      return;
    }
  }
}

RunResult Sim::go() {
  setup();
  schedule_faults();
  size_t next_fault = 0;
  const int64_t heal_at = load_end_ + 1500;
  const int64_t deadline = heal_at + 30000;
  bool healed = false;
  for (now_ = 0; res_.ok; ++now_) {
    while (next_fault < faults_.size() && faults_[next_fault].at <= now_ && !healed) {
      Fault& f = faults_[next_fault++];
      if (f.kind == 0) {
        side_ = f.sides;
        side_.resize(n_nodes_ + 1, 0);
        // The manager (the metadata majority) sits with the larger side.
        size_t ones = 0;
        for (size_t i = 1; i <= n_nodes_; ++i) ones += side_[i] == 1;
        manager_side_ = ones * 2 > n_nodes_ ? 1 : 0;
        partitioned_ = true;
        trace(fmt::format("partition on: {}", fmt::join(side_, "")));
      } else if (f.kind == 1) {
        partitioned_ = false;
        trace("partition off");
      } else if (f.kind == 2) {
        crash(nodes_[f.node]);
      } else if (f.kind == 3) {
        nodes_[f.node].restart_at = now_;
      } else if (f.kind == 5) {
        int a = static_cast<int>(f.node), b = static_cast<int>(meta_.cfg.primary);
        cut_.insert({a, b});
        cut_.insert({b, a});
        trace(fmt::format("link {}-{} cut", a, b));
      } else if (f.kind == 6) {
        cut_.clear();
        trace("links restored");
      } else if (f.kind == 7) {
        side_.assign(n_nodes_ + 1, 0);
        side_[meta_.cfg.primary] = 1;
        if (f.node == 1) side_[1 + rng_.below(n_nodes_)] = 1;
        manager_side_ = 0;
        partitioned_ = true;
        trace(fmt::format("primary {} isolated: {}", meta_.cfg.primary, fmt::join(side_, "")));
      } else if (f.kind == 8) {
        start_move();
      } else if (f.kind == 9) {
        meta_.crash_after_switch = true;
      } else if (f.kind == 4) {
        Node& victim = nodes_[meta_.cfg.primary];
        crash(victim);
        victim.restart_at = now_ + rng_.range(1500, 3000);
      } else if (f.kind == 10) {
        crash(nodes_[meta_.cfg.primary]);
        first_epoch_crash_at_ = now_;
        trace(fmt::format("primary {} crashed in epoch {}, down until the heal", meta_.cfg.primary, meta_.cfg.epoch));
      }
    }
    if (!healed && now_ >= heal_at) {
      healed = true;
      partitioned_ = false;
      loss_ = dup_ = 0;
      cut_.clear();
      slow_.clear();
      for (size_t i = 1; i <= n_nodes_; ++i)
        if (!nodes_[i].up) restart(nodes_[i]);
      trace("heal: partitions off, no loss, every node up");
    }
    while (!net_.empty() && net_.front().at <= now_) {
      std::pop_heap(net_.begin(), net_.end(), Later{});
      InFlight m = std::move(net_.back());
      net_.pop_back();
      if (m.to > 0 && m.to < kManager && !nodes_[m.to].up) continue;
      deliver(m);
      if (!res_.ok) break;
    }
    if (now_ % kTickMs == 0) {
      for (size_t i = 1; i <= n_nodes_; ++i) node_tick(nodes_[i]);
      if (now_ % 10 == 0) manager_step();
      for (auto& c : clients_) client_step(c);
    }
    // (d) first-epoch-crash: a failover within 6 s (suspicion after 1 s, fence answers once the
    // 2 s leases the replicas may have granted ran out), while the old primary is still down.
    if (first_epoch_crash_at_ >= 0 && now_ == first_epoch_crash_at_ + 6000 && meta_.cfg.epoch == 1) {
      fail(fmt::format("(d) no failover 6 s after primary {} crashed in the partition's first epoch",
                       meta_.cfg.primary));
      break;
    }
    if (healed && now_ % 100 == 0 && now_ >= heal_at + 2000) {
      bool clients_idle = std::none_of(clients_.begin(), clients_.end(),
                                       [](const ClientState& c) { return c.busy; });
      std::string why;
      if (clients_idle && converged(&why)) break;
      if (now_ >= deadline) {
        fail("(c) no convergence 30 s after healing: " + why);
        break;
      }
    }
  }
  if (res_.ok) final_checks();
  res_.counters.seeds = 1;
  res_.trace_hash = hash_;
  return res_;
}

}  // namespace

RunResult run(const Options& o) {
  Sim s(o);
  return s.go();
}

}  // namespace keel::replsim
