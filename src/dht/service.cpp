#include "dht/service.h"
#include "dht/service_async.h"
#include "base/random.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/codec.h"
#include "cluster/planner.h"
#include "dht/partition_map_codec.h"
#include "replication/copy.h"
#include "runtime/cluster/meta_service.h"
#include "runtime/cluster/peers.h"
#include "runtime/shards.h"
#include "observe/log.h"
#include "observe/signal_hub.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kDht); }
}  // namespace

namespace keel::dht {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

constexpr const char* kDomain = "dht";
constexpr const char* kMapKey = "map";
constexpr size_t kSnapshotChunkBytes = 256 << 10;
constexpr size_t kMaxForwardArgs = 1 << 20;
// A kReplBatch payload is sent once it holds this much (well under the frame limit).
constexpr size_t kReplBatchBytes = 256 << 10;
enum ReplRecord : uint8_t { kRecordMessage = 0, kRecordTrace = 1 };
// Trace notes kept per partition (sampled writes only): beyond this many, the oldest go.
constexpr size_t kMaxTraceNotes = 64;

// Data-plane payloads (frame type kData): u8 kind, then:
enum Kind : uint8_t { kForward = 1, kForwardReply = 2, kRepl = 3, kMove = 4, kPublish = 5, kForwardTraced = 6, kReplBatch = 7 };
//   kForward:      varint id, bytes sender's data address, u8 protocol, varint argc, argc x bytes
//   kForwardTraced: 16 bytes trace id, 8 bytes parent span id, u8 trace flags, bytes tracestate,
//                  then kForward's fields. Sent only for a sampled request: an unsampled one
//                  costs not one byte more than without tracing.
//   kForwardReply: varint id, bytes reply
//   kRepl:         varint partition, then the replication message (to the end)
//   kReplBatch:    records to the end, each: u8 record type, varint partition, u32be length,
//                  then the body: type 0 a replication message; type 1 a trace note (varint
//                  lsn, 16 bytes trace id, 8 bytes span id: the entry at lsn was written by a
//                  sampled request, whose span that is; it comes before the Append carrying
//                  the entry). What one shard sends one node during one turn of its loop (the
//                  Appends of many partitions, their acks) travels as one frame, is posted to
//                  the receiving shard once, and answered with one frame.
//   kPublish:      u8 shard channel (0/1), bytes channel, bytes message (pub/sub fan-out)
//   kMove:         u8 op, varint partition, varint epoch, varint node, then per op (rebalancing):
enum MoveOp : uint8_t {
  kLearn = 1,          // manager -> primary and learner: stream `node` the partition. + primary
  kLearnProgress = 2,  // primary -> manager, about learner `node`. + acked, u8 snapshotting, commit
  kHandOver = 3,       // manager -> primary: hand the partition over to `node`
  kHandedOver = 4,     // primary -> manager: `node` holds every entry; nothing is acknowledged here
};
// A primary forgets a learner the manager stopped renewing for this long.
constexpr int64_t kLearnerExpiryMs = 3000;
constexpr int64_t kMoveReportMs = 20;

int64_t now_ms() { return SystemClock::instance().monotonic_ns() / 1000000; }
int64_t wall_ms() { return SystemClock::instance().now_ms(); }
int64_t unix_ns() {  // span timestamps
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<cluster::PeerAddress> data_address(const NodeRecord& n) {
  auto p = cluster::parse_peer(fmt::format("{}@{}", n.id, n.data));
  if (!p) return std::nullopt;
  return *p;
}

}  // namespace

// One held-back reply's wait (wait_committed): on every partition it names, until that
// partition's copies hold its LSN. One timer, one suspension, however many partitions.
struct Waiter {
  asio::steady_timer* timer = nullptr;
  uint32_t pending = 0;  // partitions not yet satisfied
  bool failed = false;   // a partition's copy stopped being the primary, or could not commit
  uint32_t failed_partition = 0;
  const char* why = " (this node stopped being the primary)";
};
// A sampled write's entry (lsn) and the span of the request that wrote it. On a primary, until
// the entry is committed (sent with every Append carrying it); on a replica, until applied.
struct TraceNote {
  uint64_t lsn = 0;
  observe::TraceId trace_id{};
  observe::SpanId span_id{};
  int64_t at_unix_ns = 0;  // replica: when it arrived
  uint32_t from = 0;       // replica: the primary that sent it
};
void keep_note(std::vector<TraceNote>& notes, TraceNote n) {
  if (notes.size() >= kMaxTraceNotes) notes.erase(notes.begin());
  notes.push_back(std::move(n));
}

struct WaitReg {
  Waiter* waiter = nullptr;
  uint64_t lsn = 0;
  uint32_t quorum = 0;  // copies that must hold it; 0: the partition's write quorum
};

struct PendingForward {
  asio::steady_timer* timer = nullptr;
  std::optional<std::string> reply;
};

struct ShardState {
  std::shared_ptr<const Topology> topo;
  // A replicated entry was refused by this shard's disk (full or failing) and not applied since:
  // the error is logged once, not for every resend.
  bool apply_refused = false;
  std::unordered_map<uint32_t, std::unique_ptr<replication::Copy>> copies;
  std::vector<replication::Copy*> by_part;  // copies[p].get() or null: the hot path's lookup
  // Partitions whose copy has timers to run (replicas to stream to, or a primary to follow):
  // a primary without replicas has none, and the tick never visits it.
  std::vector<uint32_t> active;
  // 1: this node is the partition's primary and it has no replicas. Nothing can fence such a
  // copy (fences go to replicas), so the hot path serves it without touching the Copy.
  std::vector<uint8_t> lone;
  // Partitions with entries appended since their last shipment, shipped together once the
  // current handler returns to the loop: the writes of a pipelined batch (and of every
  // connection served meanwhile) go out in one Append.
  std::vector<uint32_t> to_ship;
  std::vector<uint8_t> shipping;  // by partition: listed in to_ship
  bool ship_posted = false;
  // An engine whose commit does I/O: writes appended but not yet committed on this primary,
  // made durable by one commit per turn of the loop (commit_appended).
  std::vector<std::pair<uint32_t, uint64_t>> undurable;  // (partition, lsn)
  bool commit_posted = false;
  // Replication messages to each node (a kReplBatch payload being built), sent once the
  // current handler is done (flush_repl), or sooner when one grows past kReplBatchBytes.
  std::vector<std::pair<uint32_t, std::string>> outbox;
  bool flush_posted = false;
  // Partitions that received messages in the batch being handled (driven once each).
  std::vector<uint8_t> touched;
  // Sampled writes (TraceNote): sent with the Appends (primary), applied with a span (replica).
  std::unordered_map<uint32_t, std::vector<TraceNote>> trace_out, trace_in;
  std::vector<std::vector<WaitReg>> waiters;  // by partition
  std::unordered_map<uint64_t, PendingForward*> forwards;
  uint64_t next_forward = 1;
  std::set<std::pair<uint32_t, uint32_t>> snapshots;  // (partition, to) streaming from here
  // Rebalancing, primary side: learners streamed to (partition -> learner -> state) and
  // handovers under way. Learner side: partitions copied here as a learner, with the epoch.
  struct Learner {
    uint32_t manager = 0;
    int64_t renewed_ms = 0, reported_ms = 0;
  };
  std::map<uint32_t, std::map<uint32_t, Learner>> learners;
  struct HandOver {
    uint32_t manager = 0, to = 0;
    int64_t reported_ms = 0;
  };
  std::map<uint32_t, HandOver> handovers;
  struct Learning {
    uint64_t epoch = 0;
    int64_t renewed_ms = 0;
  };
  std::map<uint32_t, Learning> learning;
  // Whether the data a persistent engine kept of partitions this node no longer holds was
  // dropped (once, at the first map that acknowledges this process).
  bool swept = false;
  // Partitions holding part of a transfer to this node as a learner, kept through a restart
  // in case the move is renewed (then it resumes); dropped at `leftover_drop_ms` otherwise.
  std::vector<uint32_t> leftover;
  int64_t leftover_drop_ms = 0;
  std::atomic<uint64_t> forwarded{0}, forward_errors{0}, replicated{0}, replicated_bytes{0};
};

struct Service::Impl : std::enable_shared_from_this<Impl> {
  runtime::ShardSet& shards;
  std::vector<EffectRecorder*> recorders;
  cluster::MetaService& meta;
  ServiceOptions opt;
  std::vector<std::unique_ptr<ShardState>> st;
  // Per partition: fresh_as_of_ms of this node's replica copy (monotonic ms; INT64_MIN when it
  // holds none), written by the partition's shard, read by any (replica reads).
  std::unique_ptr<std::atomic<int64_t>[]> replica_fresh;
  std::atomic<uint64_t> replica_reads{0};
  std::atomic<uint64_t> recovered_copies{0};  // copies started from a persistent engine's log mark
  std::atomic<uint64_t> stale_dropped{0};     // partitions kept on disk that the map no longer gives here
  std::atomic<uint64_t> snapshots_resumed{0};  // transfers this node continued instead of restarting

  // The data plane (transport, failover manager) runs on shard 0's loop: a message for a
  // partition of shard 0 needs no hop at all, and no thread of its own competes for the cores.
  asio::io_context& dio;
  std::atomic<bool> loops_running{false};  // set by the first tick: shard loops are running
  std::unique_ptr<cluster::PeerTransport> transport;
  std::atomic<bool> stopping{false};
  Exec exec;
  SpanSink span_sink;
  std::atomic<uint64_t> spans_made{0};
  PublishHandler on_publish;
  std::atomic<uint64_t> publish_dropped{0};
  uint64_t incarnation = 0;  // this process's start (wall ms)

  // Metadata followed (driver thread writes, data thread reads: under mu).
  std::mutex mu;
  std::map<std::string, cluster::KeyValue> dht_keys;
  uint64_t revision = 0;
  std::shared_ptr<const Topology> latest;
  std::map<uint32_t, bool> alive_view;  // member -> not declared dead (manager's last view)
  std::optional<std::pair<std::string, uint64_t>> latest_map;  // encoded map and its version
  bool creating_map = false;

  // Failover manager (data thread).
  struct Fencing {
    uint64_t new_epoch = 0;
    std::vector<std::pair<uint32_t, replication::FenceAck>> acks;
    int64_t started_ms = 0;
  };
  std::map<uint32_t, Fencing> fencing;
  std::map<uint32_t, PartitionView> decided;  // ready to commit to the map
  std::set<uint32_t> cannot_vouch;            // failovers waiting: no live copy holds every write
  int64_t cannot_vouch_logged_ms = INT64_MIN;
  bool map_write_in_flight = false;
  std::map<uint32_t, cluster::MemberStatus> members;
  bool quorum = false;
  std::atomic<uint64_t> failovers{0};

  // Rebalancing (data thread): moves run by this node while it is the manager.
  struct Transfer {
    uint32_t from = 0;        // the partition's primary
    int64_t renewed_ms = 0;   // last kLearn sent
    uint64_t epoch = 0;
    bool caught_up = false;   // the primary reported the learner holds its committed log
  };
  std::map<std::pair<uint32_t, uint32_t>, Transfer> transfers;  // (partition, learner)
  std::map<uint32_t, std::pair<uint64_t, uint32_t>> handed_over;  // partition -> (epoch, to)
  std::map<uint32_t, int64_t> handover_asked;  // partition -> when kHandOver was last sent
  bool rebalance_posted = false;
  uint64_t map_written = 0;  // the map version our last switch wrote (plan again once followed)
  std::atomic<uint64_t> partitions_moved{0};
  std::atomic<uint32_t> transfers_in_flight{0};
  std::vector<ServiceStatus::Transfer> transfer_view;  // under mu
  // Any node: the rebalance as seen from the map (under mu).
  uint32_t rebalance_total = 0, rebalance_remaining = 0;
  int64_t rebalance_began_ms = 0;

  Impl(runtime::ShardSet& s, std::vector<EffectRecorder*> r, cluster::MetaService& m, ServiceOptions o)
      : shards(s), recorders(std::move(r)), meta(m), opt(std::move(o)), dio(s.shard(0).io) {
    replica_fresh = std::make_unique<std::atomic<int64_t>[]>(opt.partitions);
    for (uint32_t p = 0; p < opt.partitions; ++p) replica_fresh[p].store(INT64_MIN, std::memory_order_relaxed);
    for (unsigned i = 0; i < shards.size(); ++i) {
      st.push_back(std::make_unique<ShardState>());
      st.back()->by_part.assign(opt.partitions, nullptr);
      st.back()->lone.assign(opt.partitions, 0);
      st.back()->touched.assign(opt.partitions, 0);
      st.back()->shipping.assign(opt.partitions, 0);
      st.back()->waiters.resize(opt.partitions);
    }
  }

  unsigned owner(uint32_t p) const { return p % static_cast<unsigned>(st.size()); }

  // An idle partition's primary renews its lease (and tells its replicas the commit LSN) four
  // times per lease, at most every 250 ms: enough margin for the lease, replica reads fresh
  // well within dht.replica_read_max_lag_ms, and few messages for a node's hundreds of
  // partitions (each heartbeat is a message and an ack).
  // Each copy this process makes is a snapshot source of its own (replication::Options::source):
  // a transfer it streamed may be resumed only by it.
  std::atomic<uint64_t> copies_made{0};
  uint64_t source_token() { return mix64(incarnation ^ (static_cast<uint64_t>(opt.self) << 40) ^ (++copies_made << 20)); }

  // A copy for a partition whose data a persistent engine kept: it takes up where that data
  // stands (a complete LSN, or part of a snapshot transfer to resume). Returns whether the
  // engine held anything usable.
  bool take_up(replication::Copy& c, storage::Engine& eng, uint32_t p) {
    auto mark = eng.log_mark(p);
    if (!mark) return false;
    if (mark->partial) {
      resume_partial(c, *mark, p);
      return true;
    }
    if (mark->lsn == 0) return false;
    c.recover(mark->lsn, mark->epoch);
    ++recovered_copies;
    return true;
  }

  // How often the copies' timers run: a fifth of the heartbeat interval, within 10..50 ms. Every
  // tick visits every copy with replicas, so at the default lease (heartbeats every 250 ms) a
  // 50 ms tick costs a fifth of a 10 ms one (an idle 3-node cluster: 12% of a core before, 8%
  // after), while a short lease still gets its heartbeats on time.
  int64_t tick_ms() const {
    return std::clamp<int64_t>(std::clamp<int64_t>(opt.lease_ms / 4, 10, 250) / 5, 10, 50);
  }

  // The engine holds part of a snapshot transfer (a partial log mark): the copy asks to resume it.
  void resume_partial(replication::Copy& c, const storage::Engine::LogMark& mark, uint32_t p) {
    c.recover_partial(mark.lsn, mark.epoch, mark.source, mark.next_key);
    klog().info("dht: partition {} holds part of a snapshot begun at lsn {}: asking to resume it", p, mark.lsn);
  }

  replication::Options copy_options() {
    replication::Options ro;
    ro.lease_ms = opt.lease_ms;
    ro.heartbeat_ms = std::clamp<int64_t>(opt.lease_ms / 4, 10, 250);
    // Peer links are TCP: an Append is lost only with its link, and the next heartbeat's
    // mismatch answer brings the resend. The timer is a backstop: at 200 ms (the core's
    // default, for lossy networks) a busy replica's slow acks made the primary send its whole
    // in-flight window again, adding load to the node that was already behind.
    ro.resend_after_ms = std::max<int64_t>(1000, opt.lease_ms / 2);
    ro.log_keep_bytes = std::max<uint64_t>(4 << 10, opt.log_keep_bytes / std::max<uint32_t>(1, opt.partitions));
    // As much again for a copy still receiving: more (the core's 4 MiB) kept the effects of a
    // replica's whole in-flight window alive, and the colder memory cost 10-20% more CPU per
    // SET at write quorum 2 (bench/cluster/cpu_per_op.py).
    ro.lag_keep_bytes = ro.log_keep_bytes;
    ro.source = source_token();
    return ro;
  }

  // ---------------- data plane
  void send(uint32_t to, std::string payload) {
    if (runtime::ShardSet::current() == 0) return send_here(to, std::move(payload));
    asio::post(dio, [self = shared_from_this(), to, payload = std::move(payload)]() mutable {
      self->send_here(to, std::move(payload));
    });
  }
  // On shard 0's loop.
  void send_here(uint32_t to, std::string payload) {
    if (to == opt.self) {  // e.g. a fence to our own copy: delivered as if it arrived
      asio::post(dio, [self = shared_from_this(), to, payload = std::move(payload)]() mutable {
        self->on_data(to, std::move(payload));
      });
      return;
    }
    if (transport) transport->send(to, cluster::MsgType::kData, payload);
  }
  // Queues a replication message to node `to` in the calling shard's outbox (one kReplBatch
  // per node, sent when the current handler is done). Off a shard thread: sent alone.
  void send_repl(uint32_t to, uint32_t partition, const replication::Message& m) {
    const int cur = runtime::ShardSet::current();
    if (cur < 0 || static_cast<size_t>(cur) >= st.size()) {
      std::string out;
      Writer w(out);
      w.u8(kRepl);
      w.varint(partition);
      replication::encode_to(out, m);
      send(to, std::move(out));
      return;
    }
    const unsigned sid = static_cast<unsigned>(cur);
    auto& s = *st[sid];
    auto it = std::find_if(s.outbox.begin(), s.outbox.end(), [&](const auto& o) { return o.first == to; });
    if (it == s.outbox.end()) it = s.outbox.insert(s.outbox.end(), {to, std::string()});
    std::string& buf = it->second;
    if (buf.empty()) buf.push_back(static_cast<char>(kReplBatch));
    Writer w(buf);
    if (!s.trace_out.empty()) [[unlikely]] {
      // The notes of the sampled entries this Append carries go just before it.
      const auto* a = std::get_if<replication::Append>(&m);
      auto nit = s.trace_out.find(partition);
      if (a && !a->entries.empty() && nit != s.trace_out.end()) {
        for (const auto& n : nit->second) {
          if (n.lsn <= a->prev_lsn || n.lsn > a->entries.back().lsn) continue;
          w.u8(kRecordTrace);
          w.varint(partition);
          std::string body;
          Writer b(body);
          b.varint(n.lsn);
          b.raw(std::string_view(reinterpret_cast<const char*>(n.trace_id.data()), n.trace_id.size()));
          b.raw(std::string_view(reinterpret_cast<const char*>(n.span_id.data()), n.span_id.size()));
          w.u32be(static_cast<uint32_t>(body.size()));
          w.raw(body);
        }
      }
    }
    w.u8(kRecordMessage);
    w.varint(partition);
    const size_t len_at = buf.size();
    w.u32be(0);
    replication::encode_to(buf, m);
    const uint32_t len = static_cast<uint32_t>(buf.size() - len_at - 4);
    for (int i = 0; i < 4; ++i) buf[len_at + i] = static_cast<char>(len >> (24 - 8 * i));
    if (buf.size() >= kReplBatchBytes) {
      send(to, std::move(buf));
      buf.clear();
    } else if (!s.flush_posted) {
      s.flush_posted = true;
      asio::post(shards.shard(sid).io, [self = shared_from_this(), sid] { self->flush_repl(sid); });
    }
  }
  // Sends what shard `sid` queued for each node. Shard thread.
  void flush_repl(unsigned sid) {
    auto& s = *st[sid];
    s.flush_posted = false;
    for (auto& [to, buf] : s.outbox) {
      if (buf.empty()) continue;
      send(to, std::move(buf));
      buf.clear();
    }
  }
  // A replication message `m` from node `from` for partition p, on p's shard: handed to the
  // copy (driven by the caller), or answered here if p has no copy on this node.
  bool receive_repl(unsigned sid, uint32_t from, uint32_t p, const replication::Message& m) {
    auto& s = *st[sid];
    auto* copy = s.by_part[p];
    if (!copy) {
      // Not (yet) configured here. A fence must still be answered for failover to
      // proceed, with what this node holds of the partition: what a persistent engine kept
      // through a restart (its log mark), else nothing.
      if (auto* f = std::get_if<replication::Fence>(&m)) {
        auto mark = recorders[sid]->log_mark(p).value_or(storage::Engine::LogMark{});
        send_repl(from, p, replication::FenceAck{.new_epoch = f->new_epoch, .last_lsn = mark.lsn,
                                                 .epoch = 0, .last_epoch = mark.epoch, .in_sync = false});
      }
      return false;
    }
    copy->receive(from, m, now_ms());
    return true;
  }

  void on_data(uint32_t from, std::string payload) {
    Reader r(payload);
    auto kind = r.u8();
    if (!kind) return;
    if (*kind == kForward || *kind == kForwardTraced) {
      std::optional<observe::TraceParent> parent;
      if (*kind == kForwardTraced) {
        auto tid = r.raw(16);
        auto sid = r.raw(8);
        auto flags = r.u8();
        auto state = r.bytes(observe::kMaxTraceStateBytes);
        if (!tid || !sid || !flags || !state) return;
        parent.emplace();
        std::memcpy(parent->trace_id.data(), tid->data(), 16);
        std::memcpy(parent->span_id.data(), sid->data(), 8);
        parent->flags = *flags;
        parent->trace_state.assign(*state);
        // Invalid ids (all zero) are ignored as W3C says: the request starts its own trace.
        if (observe::is_zero(parent->trace_id) || observe::is_zero(parent->span_id)) parent.reset();
      }
      auto id = r.varint();
      auto addr = r.bytes(256);
      auto proto = r.u8();
      auto argc = r.varint();
      if (!id || !addr || !proto || !argc || *argc == 0 || *argc > kMaxForwardArgs) return;
      // The reply goes back on our own link to the sender, which we may not know yet (its
      // record can reach us after its first request).
      if (auto a = cluster::parse_peer(fmt::format("{}@{}", from, *addr)); a && transport)
        transport->add_peer(*a);
      std::vector<std::string> argv;
      argv.reserve(*argc);
      for (uint64_t i = 0; i < *argc; ++i) {
        auto a = r.bytes();
        if (!a) return;
        argv.emplace_back(*a);
      }
      if (!exec) return;
      exec(std::move(argv), *proto, std::move(parent), from,
           [self = shared_from_this(), from, id = *id](std::string reply) {
        std::string out;
        Writer w(out);
        w.u8(kForwardReply);
        w.varint(id);
        w.bytes(reply);
        self->send(from, std::move(out));
      });
      return;
    }
    if (*kind == kPublish) {
      auto shard_channel = r.u8();
      auto channel = r.bytes();
      auto message = r.bytes();
      if (!shard_channel || !channel || !message || !on_publish) return;
      on_publish(*shard_channel != 0, std::string(*channel), std::string(*message));
      return;
    }
    if (*kind == kForwardReply) {
      auto id = r.varint();
      auto reply = r.bytes();
      if (!id || !reply) return;
      unsigned sid = static_cast<unsigned>(*id & 0xff);
      if (sid >= st.size()) return;
      asio::post(shards.shard(sid).io, [self = shared_from_this(), sid, id = *id, rep = std::string(*reply)] {
        auto& s = *self->st[sid];
        auto it = s.forwards.find(id);
        if (it == s.forwards.end()) return;  // timed out already
        it->second->reply = rep;
        it->second->timer->cancel();
      });
      return;
    }
    if (*kind == kMove) {
      auto op = r.u8();
      auto part = r.varint();
      auto epoch = r.varint();
      auto node = r.varint();
      if (!op || !part || !epoch || !node || *part >= opt.partitions || *node > UINT32_MAX) return;
      uint32_t p = static_cast<uint32_t>(*part), n = static_cast<uint32_t>(*node);
      if (*op == kLearnProgress) {  // to the manager (this thread)
        auto acked = r.varint();
        auto snap = r.varint();
        auto commit = r.varint();
        if (acked && snap && commit) on_learn_progress(p, *epoch, n, *acked, *snap != 0, *commit);
        return;
      }
      if (*op == kHandedOver) {
        on_handed_over(p, *epoch, n);
        return;
      }
      uint64_t primary = 0;
      if (*op == kLearn) {
        auto pr = r.varint();
        if (!pr || *pr > UINT32_MAX) return;
        primary = *pr;
      } else if (*op != kHandOver) {
        return;
      }
      unsigned sid = owner(p);
      asio::post(shards.shard(sid).io, [self = shared_from_this(), sid, from, op = *op, p, e = *epoch, n, primary] {
        if (op == kLearn) self->on_learn(sid, from, p, e, n, static_cast<uint32_t>(primary));
        else self->on_hand_over(sid, from, p, e, n);
      });
      return;
    }
    if (*kind == kRepl) {
      auto part = r.varint();
      auto bytes = r.raw(r.remaining());
      if (!part || !bytes || *part >= opt.partitions) return;
      auto msg = replication::decode(*bytes);
      if (!msg) {
        klog().warn("dht: bad replication message from node {}: {}", from, msg.error().message);
        return;
      }
      uint32_t p = static_cast<uint32_t>(*part);
      if (auto* ack = std::get_if<replication::FenceAck>(&*msg)) {
        on_fence_ack(from, p, *ack);  // addressed to the failover manager (this thread)
        return;
      }
      unsigned sid = owner(p);
      asio::post(shards.shard(sid).io, [self = shared_from_this(), sid, p, from, m = std::move(*msg)] {
        if (self->receive_repl(sid, from, p, m)) self->drive(sid, p);
        self->flush_repl(sid);
      });
      return;
    }
    if (*kind == kReplBatch) {
      // Decoded here, handed to each owning shard in one post; every partition touched is
      // driven once after all its messages, and the answers leave in one frame per node.
      std::vector<std::vector<std::pair<uint32_t, replication::Message>>> per(st.size());
      std::vector<std::vector<std::pair<uint32_t, TraceNote>>> notes;  // rare: sampled writes
      while (!r.done()) {
        auto type = r.u8();
        auto part = r.varint();
        auto len = r.u32be();
        if (!type || !part || !len || *part >= opt.partitions || *type > kRecordTrace) {
          klog().warn("dht: bad replication batch from node {}: a record's header is truncated, names a partition "
                      "outside 0..{} or a record type other than 0 (message) and 1 (trace note)", from, opt.partitions - 1);
          break;
        }
        auto bytes = r.raw(*len);
        if (!bytes) {
          klog().warn("dht: bad replication batch from node {}: a record of {} bytes is cut short", from, *len);
          break;
        }
        uint32_t p = static_cast<uint32_t>(*part);
        if (*type == kRecordTrace) {
          Reader b(*bytes);
          auto lsn = b.varint();
          auto tid = b.raw(16);
          auto sid = b.raw(8);
          if (!lsn || !tid || !sid) continue;  // a trace note is advice: a bad one is dropped
          TraceNote n;
          n.lsn = *lsn;
          std::memcpy(n.trace_id.data(), tid->data(), 16);
          std::memcpy(n.span_id.data(), sid->data(), 8);
          n.at_unix_ns = unix_ns();
          n.from = from;
          if (notes.empty()) notes.resize(st.size());
          notes[owner(p)].emplace_back(p, n);
          continue;
        }
        auto msg = replication::decode(*bytes);
        if (!msg) {
          klog().warn("dht: bad replication message from node {}: {}", from, msg.error().message);
          continue;
        }
        if (auto* ack = std::get_if<replication::FenceAck>(&*msg)) {
          on_fence_ack(from, p, *ack);  // addressed to the failover manager (this thread)
          continue;
        }
        per[owner(p)].emplace_back(p, std::move(*msg));
      }
      for (unsigned sid = 0; sid < per.size(); ++sid) {
        if (per[sid].empty()) continue;
        std::vector<std::pair<uint32_t, TraceNote>> ns;
        if (!notes.empty()) ns = std::move(notes[sid]);
        asio::post(shards.shard(sid).io, [self = shared_from_this(), sid, from, ms = std::move(per[sid]),
                                          ns = std::move(ns)] {
          auto& s = *self->st[sid];
          for (auto& [p, n] : ns)
            if (s.by_part[p]) keep_note(s.trace_in[p], n);
          std::vector<uint32_t> drive;
          for (auto& [p, m] : ms) {
            if (!self->receive_repl(sid, from, p, m) || s.touched[p]) continue;
            s.touched[p] = 1;
            drive.push_back(p);
          }
          for (uint32_t p : drive) s.touched[p] = 0;
          self->drive_many(sid, drive);
          self->flush_repl(sid);
        });
      }
    }
  }

  void send_move(uint32_t to, MoveOp op, uint32_t p, uint64_t epoch, uint32_t node,
                 std::initializer_list<uint64_t> more = {}) {
    std::string out;
    Writer w(out);
    w.u8(kMove);
    w.u8(op);
    w.varint(p);
    w.varint(epoch);
    w.varint(node);
    for (uint64_t v : more) w.varint(v);
    send(to, std::move(out));
  }

  // ---------------- rebalancing, shard side
  // kLearn: on the primary, stream the partition to `learner` too; on the learner, become a
  // copy that receives that stream (not in the map: routing ignores it until the switch).
  void on_learn(unsigned sid, uint32_t manager, uint32_t p, uint64_t epoch, uint32_t learner,
                uint32_t primary) {
    auto& s = *st[sid];
    const Topology* t = s.topo.get();
    if (!t || p >= t->parts.size() || t->parts[p].epoch != epoch || t->parts[p].primary != primary) return;
    int64_t now = now_ms();
    if (primary == opt.self) {
      auto* c = s.by_part[p];
      if (!c || !c->writable() || c->config().epoch != epoch || t->holds(p, learner)) return;
      auto& ls = s.learners[p];
      bool added = !ls.count(learner);
      auto& l = ls[learner];
      l.manager = manager;
      l.renewed_ms = now;
      if (added) apply_learners(sid, p);
      return;
    }
    if (learner != opt.self || t->holds(p, opt.self)) return;
    if (auto lit = s.learning.find(p); lit != s.learning.end() && lit->second.epoch == epoch) {
      lit->second.renewed_ms = now;
      return;
    }
    if (s.copies.count(p)) return;
    auto copy = std::make_unique<replication::Copy>(opt.self, copy_options());
    auto& pv = t->parts[p];
    replication::Config c{pv.epoch, pv.primary, pv.replicas,
                          std::min<uint32_t>(t->write_quorum, 1 + static_cast<uint32_t>(pv.replicas.size())),
                          {opt.self}};
    if (auto r = copy->configure(c, now); !r) {
      klog().error("dht: learning partition {}: {}", p, r.error().message);
      return;
    }
    auto* eng = recorders[sid];
    eng->set_primary(p, false);
    eng->set_recorded(p, false);
    // Part of an interrupted transfer (this node restarted while learning) is resumed if its
    // primary can; anything else an earlier transfer left is dropped: the snapshot refills it.
    auto mark = eng->log_mark(p);
    if (mark && mark->partial) {
      resume_partial(*copy, *mark, p);
    } else if (auto r = eng->drop_partition(p); !r) {
      klog().error("dht: dropping partition {}: {}", p, r.error().message);
    }
    s.by_part[p] = copy.get();
    s.copies.emplace(p, std::move(copy));
    s.learning[p] = {epoch, now};
    s.active.push_back(p);
    drive(sid, p);
  }

  // The primary's learner list changed: tell the copy, and whether the hot path may skip it.
  void apply_learners(unsigned sid, uint32_t p) {
    auto& s = *st[sid];
    auto* c = s.by_part[p];
    if (!c) return;
    std::vector<uint32_t> ids;
    if (auto it = s.learners.find(p); it != s.learners.end())
      for (auto& [id, l] : it->second) ids.push_back(id);
    if (auto r = c->set_learners(ids, now_ms()); !r) {
      klog().warn("dht: learners of partition {}: {}", p, r.error().message);
      return;
    }
    if (ids.empty()) s.learners.erase(p);
    bool lone = c->is_primary() && c->config().replicas.empty() && ids.empty();
    if (s.lone[p] && !lone) s.active.push_back(p);
    if (!s.lone[p] && lone) std::erase(s.active, p);
    s.lone[p] = lone;
    recorders[sid]->set_recorded(p, c->is_primary() && !lone);
    drive(sid, p);
  }

  void on_hand_over(unsigned sid, uint32_t manager, uint32_t p, uint64_t epoch, uint32_t to) {
    auto& s = *st[sid];
    auto* c = s.by_part[p];
    if (!c || !c->is_primary() || c->config().epoch != epoch) return;
    if (auto r = c->hand_over(to, now_ms()); !r) {
      klog().warn("dht: handing partition {} over to node {}: {}", p, to, r.error().message);
      return;
    }
    if (!s.handovers.count(p)) {
      if (to == opt.self) klog().info("dht: partition {} stops for its switch to new copies", p);
      else observe::signal(observe::Signal::kPartitionHandoff, fmt::format("dht: handing partition {} over to node {}", p, to));
    }
    s.handovers[p] = {manager, to, s.handovers.count(p) ? s.handovers[p].reported_ms : 0};
    drive(sid, p);
  }

  // Every tick: report learners' progress and finished handovers to the manager that asked,
  // and forget learners it stopped renewing.
  void report_moves(unsigned sid, int64_t now) {
    auto& s = *st[sid];
    for (auto it = s.learners.begin(); it != s.learners.end();) {
      uint32_t p = it->first;
      auto* c = s.by_part[p];
      if (!c || !c->is_primary()) {
        it = s.learners.erase(it);
        continue;
      }
      bool expired = false;
      for (auto lit = it->second.begin(); lit != it->second.end();) {
        auto& l = lit->second;
        if (now - l.renewed_ms > kLearnerExpiryMs) {
          lit = it->second.erase(lit);
          expired = true;
          continue;
        }
        if (now - l.reported_ms >= kMoveReportMs) {
          l.reported_ms = now;
          if (auto pr = c->progress(lit->first))
            send_move(l.manager, kLearnProgress, p, c->config().epoch, lit->first,
                      {pr->acked, pr->snapshotting ? 1u : 0u, c->committed_lsn()});
        }
        ++lit;
      }
      ++it;
      if (expired) apply_learners(sid, p);  // may erase p from s.learners (it was advanced)
    }
    // A learner copy the manager stopped renewing (the move was dropped) is dropped here too.
    for (auto it = s.learning.begin(); it != s.learning.end();) {
      uint32_t p = it->first;
      if (now - it->second.renewed_ms <= kLearnerExpiryMs) {
        ++it;
        continue;
      }
      it = s.learning.erase(it);
      if (s.copies.erase(p)) {
        s.by_part[p] = nullptr;
        replica_fresh[p].store(INT64_MIN, std::memory_order_relaxed);
        std::erase(s.active, p);
        if (auto r = recorders[sid]->drop_partition(p); !r)
          klog().error("dht: dropping partition {}: {}", p, r.error().message);
      }
    }
    for (auto it = s.handovers.begin(); it != s.handovers.end();) {
      auto* c = s.by_part[it->first];
      if (!c || !c->is_primary() || c->handing_over_to() != it->second.to) {
        it = s.handovers.erase(it);
        continue;
      }
      if (c->handover_done() && now - it->second.reported_ms >= kMoveReportMs) {
        it->second.reported_ms = now;
        send_move(it->second.manager, kHandedOver, it->first, c->config().epoch, it->second.to);
      }
      ++it;
    }
  }

  // ---------------- shard side
  // Takes a copy's output and does what it asks. Shard thread. drive_many() does it for several
  // partitions with one engine commit for all of them (a batch of Appends from the primary).
  struct Driven {
    uint32_t p = 0;
    replication::Copy* copy = nullptr;
    replication::Output out;
    uint64_t last = 0;     // held once the commit succeeds: acknowledged as durable
    bool applied = false;  // changed the engine: needs the commit
    std::vector<TraceNote> traced;  // replica: sampled entries applied here (a span each)
  };
  void drive(unsigned sid, uint32_t p) {
    Driven d;
    if (!drive_apply(sid, p, d)) return;
    if (d.applied) commit_driven(sid, std::span<Driven>(&d, 1));
    drive_finish(sid, d);
  }
  void drive_many(unsigned sid, std::span<const uint32_t> parts) {
    std::vector<Driven> ds(parts.size());
    size_t n = 0;
    bool applied = false;
    for (uint32_t p : parts)
      if (drive_apply(sid, p, ds[n])) applied |= ds[n++].applied;
    if (applied) commit_driven(sid, std::span<Driven>(ds.data(), n));
    for (size_t i = 0; i < n; ++i) drive_finish(sid, ds[i]);
  }
  // The engine's commit writes the data applied and the log marks after it. What it did not
  // make durable is not acknowledged.
  void commit_driven(unsigned sid, std::span<Driven> ds) {
    if (auto r = recorders[sid]->commit(); !r) {
      klog().error("dht: commit failed on a copy of partition {}: {}", ds.front().p, r.error().message);
      for (auto& d : ds)
        if (d.applied) d.last = 0;
    }
  }
  // Applies what partition p's copy asks to the engine and sets its log mark (committed by the
  // caller). False if this shard holds no copy of p.
  bool drive_apply(unsigned sid, uint32_t p, Driven& d) {
    auto& s = *st[sid];
    auto* cp = s.by_part[p];
    if (!cp) return false;
    auto& copy = *cp;
    d.p = p;
    d.copy = cp;
    d.out = copy.take_output();
    auto& out = d.out;
    auto* eng = recorders[sid];
    int64_t wnow = wall_ms();
    bool applied = false;
    if (out.reset_partition) {
      if (auto r = eng->drop_partition(p); !r) klog().error("dht: dropping partition {}: {}", p, r.error().message);
      applied = true;
    }
    bool snapshot_refused = false;  // a snapshot chunk the disk refused is not acknowledged
    for (auto& e : out.apply_snapshot) {
      if (auto r = apply_effect(*eng, p, e, wnow); !r) {
        klog().error("dht: snapshot of partition {}: {}", p, r.error().message);
        if (r.error().code == Errc::kDiskError) snapshot_refused = true;
      }
      applied = true;
    }
    uint64_t last = 0;
    for (auto& e : out.apply) {
      // An empty effect is an epoch's barrier: nothing to apply, but it is held all the same.
      if (!e.effect.empty()) {
        if (auto r = apply_effect(*eng, p, e.effect, wnow); !r) {
          if (r.error().code == Errc::kDiskError) {
            // The disk refuses writes: this entry and the ones after it are not held, so they
            // are not acknowledged; the copy forgets them and the primary sends them again
            // (docs/operations.md, "Disk full"). Logged once until an entry applies again.
            if (!s.apply_refused) klog().error("dht: partition {} cannot apply lsn {}: {}", p, e.lsn, r.error().message);
            s.apply_refused = true;
            copy.apply_failed(e.lsn, now_ms());
            break;
          }
          klog().error("dht: applying lsn {} of partition {}: {}", e.lsn, p, r.error().message);
        } else if (s.apply_refused) {
          s.apply_refused = false;
          klog().warn("dht: partition {} applies replicated writes again (lsn {})", p, e.lsn);
        }
        applied = true;
      }
      last = e.lsn;
    }
    if (!s.trace_in.empty() && !out.apply.empty()) [[unlikely]] {
      if (auto nit = s.trace_in.find(p); nit != s.trace_in.end()) {
        // The sampled entries applied now get their span (drive_finish); notes at or below
        // what is applied are done with.
        for (auto& n : nit->second)
          if (n.lsn >= out.apply.front().lsn && n.lsn <= last) d.traced.push_back(n);
        std::erase_if(nit->second, [&](const TraceNote& n) { return n.lsn <= last; });
        if (nit->second.empty()) s.trace_in.erase(nit);
      }
    }
    if (out.snapshot_done_lsn) last = std::max(last, out.snapshot_done_lsn);
    // Entries after a snapshot the disk refused build on what is not there: none is held.
    // The replica stays behind (unacknowledged) until it is sent a snapshot again.
    if (snapshot_refused) last = 0;
    s.replicated += out.apply.size();
    uint64_t applied_bytes = 0;
    for (auto& e : out.apply) applied_bytes += e.effect.size();
    s.replicated_bytes += applied_bytes;
    if (snapshot_refused) copy.snapshot_failed(now_ms());  // start over once the disk takes writes
    if (applied) {
      // Written after the data it describes; a snapshot the disk refused part of holds no
      // LSN's state: the mark then claims nothing. Part of a transfer is marked as such.
      auto [held, epoch] = snapshot_refused ? std::pair<uint64_t, uint64_t>{0, 0} : copy.held();
      storage::Engine::LogMark mark{held, epoch};
      if (out.snapshot_progress && !snapshot_refused && !out.snapshot_done_lsn) {
        mark = {out.snapshot_progress->lsn, out.snapshot_progress->epoch, true, out.snapshot_progress->source,
                std::move(out.snapshot_progress->next_key)};
      } else if (auto settling = copy.settling_mark(); settling && !snapshot_refused) {
        // Every key is in, but the log has not yet reached the writes they may hold: after a
        // restart the transfer resumes from its last chunk (and replays the log from its LSN).
        mark = {settling->lsn, settling->epoch, true, settling->source, std::move(settling->next_key)};
      }
      eng->set_log_mark(p, std::move(mark));
    }
    d.last = last;
    d.applied = applied;
    return true;
  }
  // After the commit: acknowledges what is durable, sends what the copy asks, wakes the
  // replies waiting on the partition.
  void drive_finish(unsigned sid, Driven& d) {
    auto& copy = *d.copy;
    auto& out = d.out;
    const uint32_t p = d.p;
    // Sent once the entries are applied: a replica's ack of what it received is then usually
    // superseded by the ack of what it holds durably (below), and only that one goes out.
    if (d.last) {
      copy.durable(d.last, now_ms());
      auto more = copy.take_output();
      for (auto& msg : more.send) {
        // Acks are cumulative: a plain ack to a node replaces the plain acks before it.
        if (const auto* a = std::get_if<replication::AppendAck>(&msg.second); a && !a->mismatch)
          std::erase_if(out.send, [&](const auto& o) {
            const auto* b = std::get_if<replication::AppendAck>(&o.second);
            return o.first == msg.first && b && !b->mismatch;
          });
        out.send.push_back(std::move(msg));
      }
      out.committed_lsn = std::max(out.committed_lsn, more.committed_lsn);
    }
    for (auto& [to, m] : out.send) send_repl(to, p, m);
    for (uint32_t to : out.snapshot_needed) start_snapshot(sid, p, to);
    auto& s = *st[sid];
    if (!s.trace_out.empty()) [[unlikely]] {
      if (auto nit = s.trace_out.find(p); nit != s.trace_out.end()) {
        // A committed entry is not sent again: its note is done with.
        std::erase_if(nit->second, [&](const TraceNote& n) { return n.lsn <= copy.committed_lsn() || !copy.is_primary(); });
        if (nit->second.empty()) s.trace_out.erase(nit);
      }
    }
    if (!d.traced.empty() && span_sink) [[unlikely]] record_apply_spans(sid, d);
    wake(sid, p, &copy);
    replica_fresh[p].store(copy.fresh_as_of_ms(), std::memory_order_relaxed);
  }

  // A replica applied sampled entries: one span each, a child of the span of the request that
  // wrote it on the primary, from the arrival of its note to now (applied, and committed to
  // the engine if that succeeded).
  void record_apply_spans(unsigned sid, const Driven& d) {
    const int64_t end = unix_ns();
    for (const auto& n : d.traced) {
      observe::SpanData sp;
      sp.trace_id = n.trace_id;
      sp.parent_span_id = n.span_id;
      sp.span_id = observe::span_id_from(mix64(incarnation ^ (static_cast<uint64_t>(opt.self) << 48) ^ ++spans_made));
      sp.name = "keel.replication.apply";
      sp.kind = observe::kSpanKindInternal;
      sp.start_unix_ns = std::min(n.at_unix_ns, end);
      sp.end_unix_ns = end;
      sp.attributes.push_back({"keel.partition", static_cast<int64_t>(d.p)});
      sp.attributes.push_back({"keel.lsn", static_cast<int64_t>(n.lsn)});
      sp.attributes.push_back({"keel.primary", static_cast<int64_t>(n.from)});
      sp.attributes.push_back({"keel.durable", d.last >= n.lsn});
      span_sink(sid, std::move(sp));
    }
  }

  void ship_later(unsigned sid, uint32_t p) {
    auto& s = *st[sid];
    if (!s.shipping[p]) {
      s.shipping[p] = 1;
      s.to_ship.push_back(p);
    }
    if (s.ship_posted) return;
    s.ship_posted = true;
    asio::post(shards.shard(sid).io, [self = shared_from_this(), sid] {
      auto& s = *self->st[sid];
      s.ship_posted = false;
      auto parts = std::move(s.to_ship);
      s.to_ship.clear();
      int64_t now = now_ms();
      for (uint32_t p : parts) {
        s.shipping[p] = 0;
        if (auto* c = s.by_part[p]) c->ship(now);
      }
      self->drive_many(sid, parts);
      self->flush_repl(sid);
    });
  }

  // The writes after_write appended since the last turn: one engine commit for all of them, then
  // the primary's copies count them as durable (their replies may go once the quorum holds
  // them). A failed commit fails their waits: the outcome is unknown to the client.
  void commit_appended(unsigned sid) {
    auto& s = *st[sid];
    s.commit_posted = false;
    auto items = std::move(s.undurable);
    s.undurable.clear();
    if (items.empty()) return;
    if (auto r = recorders[sid]->commit(); !r) {
      klog().error("dht: commit of {} writes on their primary failed: {}", items.size(), r.error().message);
      for (auto& [p, lsn] : items) fail_waits(sid, p, lsn);
      return;
    }
    const int64_t now = now_ms();
    std::vector<uint32_t> parts;
    for (auto& [p, lsn] : items) {
      auto* c = s.by_part[p];
      if (!c) continue;
      c->durable(lsn, now);
      if (!s.touched[p]) {
        s.touched[p] = 1;
        parts.push_back(p);
      }
    }
    for (uint32_t p : parts) s.touched[p] = 0;
    drive_many(sid, parts);
    flush_repl(sid);
  }
  void fail_waits(unsigned sid, uint32_t p, uint64_t lsn) {
    std::erase_if(st[sid]->waiters[p], [&](const WaitReg& r) {
      if (r.lsn < lsn) return false;
      Waiter& w = *r.waiter;
      if (!w.failed) {
        w.failed = true;
        w.failed_partition = p;
        w.why = " (its commit to this node's disk failed)";
      }
      w.timer->cancel();
      return true;
    });
  }

  // Resumes the waits on partition p that its copy now satisfies, and fails them all when this
  // node is no longer p's primary (copy null: dropped).
  void wake(unsigned sid, uint32_t p, const replication::Copy* copy) {
    auto& s = *st[sid];
    auto& ws = s.waiters[p];
    if (ws.empty()) return;
    const bool primary = copy && copy->is_primary();
    std::erase_if(ws, [&](const WaitReg& r) {
      if (primary && copy->held_by(r.quorum) < r.lsn) return false;
      Waiter& w = *r.waiter;
      if (!primary && !w.failed) {
        w.failed = true;
        w.failed_partition = p;
      }
      if (--w.pending == 0 || w.failed) w.timer->cancel();
      return true;
    });
  }

  // Streams partition p's keys to replica `to`, then lets the log follow. Shard thread.
  void start_snapshot(unsigned sid, uint32_t p, uint32_t to) {
    auto& s = *st[sid];
    if (!s.snapshots.insert({p, to}).second) return;
    asio::co_spawn(shards.shard(sid).io, snapshot(sid, p, to), asio::detached);
  }
  awaitable<void> snapshot(unsigned sid, uint32_t p, uint32_t to) {
    auto self = shared_from_this();
    auto& s = *st[sid];
    std::string start;
    uint64_t keys = 0;
    std::optional<uint64_t> id;  // the transfer being streamed (Copy::snapshot_id)
    // An engine without ordered scans (the memory engine) would pass over the whole partition
    // for every chunk: its keys are collected once per transfer, in order, and read one by one
    // (a key written after that is in the log that follows the transfer; one deleted is skipped).
    const bool collect = !recorders[sid]->ordered_scan();
    std::vector<std::string> collected;
    size_t collected_at = 0;
    asio::steady_timer pause(shards.shard(sid).io);
    for (;;) {
      auto cit = s.copies.find(p);
      if (cit == s.copies.end() || !cit->second->is_primary() || stopping) break;
      auto& copy = *cit->second;
      if (link_down(to)) {
        // Nothing is sent to a node that cannot receive it (it may be restarting). A transfer
        // under way stops: once the link is back, the node's answer to a probe says whether to
        // resume it (it kept part) or start over. One not begun yet waits for the link.
        if (id) {
          copy.abandon_snapshot(to, now_ms());
          klog().info("dht: snapshot of partition {} to node {} stopped: its data link is down", p, to);
          break;
        }
        pause.expires_after(std::chrono::milliseconds(200));
        co_await pause.async_wait(asio::as_tuple(use_awaitable));
        continue;
      }
      if (!id || copy.snapshot_id(to) != id) {
        // The first transfer, or one begun again: the replica holds part of one and asks to
        // go on from there (or lost it all and needs it whole).
        if (!copy.snapshot_wanted(to)) break;
        auto b = copy.begin_snapshot(to, now_ms());
        start = b.resume ? b.resume_key : std::string();
        if (b.resume) {
          ++snapshots_resumed;
          klog().info("dht: resuming the snapshot of partition {} to node {} (begun at lsn {})", p, to,
                       b.snapshot_lsn);
        }
        send_repl(to, p, b);
        id = copy.snapshot_id(to);
        if (!id) break;
        if (collect) {
          collected.clear();
          collected_at = 0;
          recorders[sid]->scan_partition(p, start, SIZE_MAX, wall_ms(),
                                         [&](std::string_view key, const storage::ValueRef&) { collected.emplace_back(key); });
        }
      }
      replication::SnapshotChunk chunk;
      size_t bytes = 0;
      auto put = [&](std::string_view key, const storage::ValueRef& v) {
        storage::Value val = storage::copy_value(v);
        std::string e;
        encode_put(e, key, val);
        bytes += e.size();
        chunk.effects.push_back(std::move(e));
      };
      std::optional<std::string> next;
      if (collect) {
        const int64_t now = wall_ms();
        for (size_t n = 0; n < 256 && collected_at < collected.size(); ++n, ++collected_at)
          if (auto v = recorders[sid]->peek(p, collected[collected_at], now)) put(collected[collected_at], *v);  // not a use: no LRU touch
        if (collected_at < collected.size()) next = collected[collected_at];
      } else {
        next = recorders[sid]->scan_partition(p, start, 256, wall_ms(), put);
      }
      keys += chunk.effects.size();
      snapshot_bytes += bytes;  // every chunk, the last (often the only) one too
      send_repl(to, p, copy.snapshot_chunk(to, std::move(chunk.effects), !next, now_ms(), next ? *next : std::string()));
      drive(sid, p);
      if (!next) {
        id.reset();
        observe::signal(observe::Signal::kSnapshotSent,
                        fmt::format("dht: snapshot of partition {} sent to node {} ({} keys)", p, to, keys));
        keys = 0;
        continue;  // done, unless another transfer was asked for meanwhile
      }
      start = std::move(*next);
      // Let the shard serve requests between chunks, and keep every snapshot this node sends
      // together within dht.rebalance_mb_per_s.
      pause.expires_after(std::chrono::nanoseconds(std::max<int64_t>(throttle(bytes), 1000000)));
      co_await pause.async_wait(asio::as_tuple(use_awaitable));
    }
    s.snapshots.erase({p, to});
  }

  // Reserves `bytes` of the node's snapshot bandwidth: how long to wait before sending more.
  int64_t throttle(size_t bytes) {
    if (opt.rebalance_bytes_per_s == 0) return 0;
    std::lock_guard lk(throttle_mu);
    int64_t now = SystemClock::instance().monotonic_ns();
    int64_t start = std::max(now, throttle_next_ns);
    throttle_next_ns = start + static_cast<int64_t>(static_cast<double>(bytes) * 1e9 /
                                                    static_cast<double>(opt.rebalance_bytes_per_s));
    return throttle_next_ns - now;
  }
  std::mutex throttle_mu;
  int64_t throttle_next_ns = 0;
  std::atomic<uint64_t> snapshot_bytes{0};

  awaitable<void> ticker(unsigned sid) {
    auto self = shared_from_this();
    auto& s = *st[sid];
    loops_running = true;
    // The timer lives in this frame, so it goes with its own loop at shutdown (a timer owned
    // by Impl could outlive the loop it belongs to: the last reference to Impl may drop while
    // another shard's loop is destroyed).
    asio::steady_timer tick(shards.shard(sid).io);
    while (!stopping) {
      tick.expires_after(std::chrono::milliseconds(tick_ms()));
      co_await tick.async_wait(asio::as_tuple(use_awaitable));
      if (stopping) break;
      int64_t now = now_ms();
      // Keys the engine expired or evicted during maintenance travel as deletions.
      flush_background_effects(sid, now);
      if (!s.learners.empty() || !s.handovers.empty() || !s.learning.empty()) report_moves(sid, now);
      if (!s.leftover.empty() && now >= s.leftover_drop_ms) drop_leftovers(sid);
      for (uint32_t p : s.active) {
        auto* c = s.by_part[p];
        if (!c) continue;
        c->tick(now);
        if (c->has_output()) drive(sid, p);  // most ticks of a busy copy send nothing
      }
    }
  }

  // Effects recorded outside a command (expiry, eviction): appended without a waiter.
  void flush_background_effects(unsigned sid, int64_t now) {
    if (!recorders[sid]->has_pending()) return;
    recorders[sid]->drain([&](uint32_t p, std::string_view effect) {
      auto it = st[sid]->copies.find(p);
      if (it == st[sid]->copies.end() || !it->second->is_primary()) return;
      if (auto lsn = it->second->append(effect, now); lsn) {
        auto [held, epoch] = it->second->held();
        recorders[sid]->set_log_mark(p, {held, epoch});
        it->second->durable(*lsn, now);
      }
    });
  }

  // A new topology for shard `sid`: (re)configure the copies it owns. Shard thread.
  void install(unsigned sid, std::shared_ptr<const Topology> t) {
    auto& s = *st[sid];
    s.topo = t;
    int64_t now = now_ms();
    auto* eng = recorders[sid];
    // Until the map acknowledges this incarnation (bumping the epochs of what it lists here),
    // this process serves nothing: it may have answered fences before it restarted.
    auto inc = t->incarnations.find(opt.self);
    bool welcome = inc != t->incarnations.end() && inc->second == incarnation;
    for (uint32_t p = sid; p < t->parts.size(); p += static_cast<uint32_t>(st.size())) {
      auto& pv = t->parts[p];
      bool holds = welcome && t->holds(p, opt.self);
      auto it = s.copies.find(p);
      if (it == s.copies.end() || it->second->config().epoch != pv.epoch) {
        // A new epoch ends the moves of the old one (the manager renews those still wanted).
        s.learners.erase(p);
        s.handovers.erase(p);
      }
      if (auto lit = s.learning.find(p); lit != s.learning.end()) {
        if (!holds && welcome && it != s.copies.end() && lit->second.epoch == pv.epoch)
          continue;  // a learner of this epoch: kept until the switch names it, or a new epoch
        s.learning.erase(lit);
      }
      eng->set_primary(p, holds && pv.primary == opt.self);
      if (!holds) {
        if (it != s.copies.end()) {
          s.copies.erase(it);
          s.by_part[p] = nullptr;
          eng->set_recorded(p, false);
          if (auto r = eng->drop_partition(p); !r) klog().error("dht: dropping partition {}: {}", p, r.error().message);
          wake(sid, p, nullptr);
          replica_fresh[p].store(INT64_MIN, std::memory_order_relaxed);
        }
        continue;
      }
      if (it == s.copies.end()) {
        it = s.copies.emplace(p, std::make_unique<replication::Copy>(opt.self, copy_options())).first;
        s.by_part[p] = it->second.get();
        // A persistent engine kept this partition's data through a restart, and where in the
        // log it stands: the copy starts from there (a replica catches up from the primary's
        // log when it still reaches back that far, and answers fences with what it holds).
        take_up(*it->second, *eng, p);
      }
      replication::Config c;
      c.epoch = pv.epoch;
      c.primary = pv.primary;
      c.replicas = pv.replicas;
      c.write_quorum = std::min<uint32_t>(t->write_quorum, 1 + static_cast<uint32_t>(pv.replicas.size()));
      if (auto st = it->second->configure(c, now); !st)
        klog().error("dht: partition {} epoch {}: {}", p, c.epoch, st.error().message);
      eng->set_recorded(p, pv.primary == opt.self && !pv.replicas.empty());
      drive(sid, p);
    }
    if (welcome && !s.swept) sweep(sid, *t, now);
    s.active.clear();
    for (uint32_t p = sid; p < s.lone.size(); p += static_cast<uint32_t>(st.size())) s.lone[p] = 0;
    for (auto& [p, c] : s.copies) {
      bool lone = c->is_primary() && c->config().replicas.empty() && !s.learners.count(p);
      s.lone[p] = lone;
      if (!lone) s.active.push_back(p);
      if (c->is_primary()) eng->set_recorded(p, !lone);
    }
  }

  // A persistent engine keeps every partition it held before a restart; the first map that
  // acknowledges this process says which of them are still this node's. The rest would only
  // take disk space and show up in SCAN, KEYS and DBSIZE: dropped, data and log mark. (A
  // partition given back here later starts empty and is refilled by a snapshot, as a learner
  // does.) Shard thread, once per process.
  void sweep(unsigned sid, const Topology& t, int64_t now) {
    auto& s = *st[sid];
    s.swept = true;
    s.leftover_drop_ms = now + 3 * kLearnerExpiryMs;
    auto* eng = recorders[sid];
    for (uint32_t p = sid; p < t.parts.size(); p += static_cast<uint32_t>(st.size())) {
      if (s.copies.count(p) || s.learning.count(p) || t.holds(p, opt.self)) continue;
      auto mark = eng->log_mark(p);
      if (mark && mark->partial) {
        s.leftover.push_back(p);
        continue;
      }
      bool any = mark.has_value();
      if (!any) eng->scan_partition(p, "", 1, now, [&](std::string_view, const storage::ValueRef&) { any = true; });
      if (!any) continue;
      if (auto r = eng->drop_partition(p); !r) {
        klog().error("dht: dropping partition {} that this node no longer holds: {}", p, r.error().message);
        continue;
      }
      ++stale_dropped;
    }
  }

  void drop_leftovers(unsigned sid) {
    auto& s = *st[sid];
    for (uint32_t p : s.leftover) {
      if (s.copies.count(p)) continue;  // taken up (resumed, or refilled)
      if (auto r = recorders[sid]->drop_partition(p); !r)
        klog().error("dht: dropping partition {} that this node no longer holds: {}", p, r.error().message);
      else
        ++stale_dropped;
    }
    s.leftover.clear();
  }

  void publish(std::shared_ptr<const Topology> t) {
    {
      std::lock_guard lk(mu);
      latest = t;
    }
    for (unsigned i = 0; i < st.size(); ++i)
      asio::post(shards.shard(i).io, [self = shared_from_this(), i, t] { self->install(i, t); });
    asio::post(dio, [self = shared_from_this(), t] {
      if (!self->transport) return;
      for (auto& [id, n] : t->nodes)
        if (id != self->opt.self)
          if (auto a = data_address(n)) self->transport->add_peer(*a);
    });
  }

  // ---------------- metadata (driver thread callbacks)
  void rebuild() {
    auto t = std::make_shared<Topology>();
    t->self = opt.self;
    t->version = revision;
    for (auto& [k, kv] : dht_keys) {
      if (k.rfind("node/", 0) == 0) {
        auto n = decode_node(kv.value);
        if (!n) continue;
        n->id = static_cast<uint32_t>(std::strtoul(k.c_str() + 5, nullptr, 10));
        t->nodes[n->id] = *n;
      }
    }
    auto mit = dht_keys.find(kMapKey);
    if (mit == dht_keys.end()) {
      maybe_create_map(*t);
      return;
    }
    auto m = decode_partition_map(mit->second.value);
    if (!m) {
      klog().error("dht: the partition map in metadata is unreadable: {}", m.error().message);
      return;
    }
    t->version = mit->second.mod_revision;
    {
      std::lock_guard lk(mu);
      latest_map = std::make_pair(mit->second.value, mit->second.version);
    }
    t->copies = m->copies;
    t->write_quorum = m->write_quorum;
    t->parts = std::move(m->parts);
    t->incarnations = std::move(m->incarnations);
    publish(t);
    asio::post(dio, [self = shared_from_this()] { self->rebalance_soon(); });  // the next moves
  }

  static cluster::Member member_of(const NodeRecord& n) {
    return cluster::Member{n.id, std::max<uint32_t>(1, n.weight), n.zone,
                           n.storage ? cluster::Role::kStorage : cluster::Role::kGateway};
  }

  void maybe_create_map(const Topology& t) {
    if (creating_map) return;
    std::vector<cluster::Member> members;
    bool any_storage = false;
    for (uint32_t id : opt.initial_members) {
      auto* n = t.node(id);
      if (!n) return;  // wait until every initial member has published its addresses
      members.push_back(member_of(*n));
      any_storage |= n->storage;
    }
    if (!any_storage) return;
    auto made = initial_partition_map(members, opt.partitions, opt.copies, opt.write_quorum);
    if (!made) {
      klog().error("dht: cannot place the partitions: {}", made.error().message);
      return;
    }
    PartitionMapData m = std::move(*made);
    for (auto& [id, n] : t.nodes) m.incarnations[id] = n.incarnation;
    creating_map = true;
    meta.put(kDomain, kMapKey, encode_partition_map(m), uint64_t{0},
             [self = shared_from_this()](Result<cluster::WriteResult> r) {
               self->creating_map = false;
               if (r) klog().info("dht: created the partition map");
               else if (r.error().code != Errc::kConflict)
                 klog().warn("dht: creating the partition map: {}", r.error().message);
             });
  }

  // Follows domain "dht" through an in-process subscription: a reset with every key, then
  // each change in revision order (again a reset after a snapshot install). Driver thread.
  void follow() {
    if (stopping) return;
    auto sub = meta.subscribe(kDomain, "", [self = weak_from_this()](const cluster::MetaUpdate& u) {
      auto s = self.lock();
      if (!s || s->stopping) return;
      if (u.reset) {
        s->dht_keys.clear();
        for (auto& kv : u.contents) s->dht_keys[kv.key] = kv;
      }
      for (auto& e : u.events) {
        if (e.deleted) s->dht_keys.erase(e.kv.key);
        else s->dht_keys[e.kv.key] = e.kv;
      }
      s->revision = u.revision;
      s->rebuild();
    });
    if (!sub) {
      klog().error("dht: cannot follow the partition map: {}", sub.error().message);
      meta_retry([self = shared_from_this()] { self->follow(); });
      return;
    }
    subscription = std::make_unique<cluster::Subscription>(std::move(*sub));
  }
  std::unique_ptr<cluster::Subscription> subscription;

  void meta_retry(std::function<void()> f) {
    auto t = std::make_shared<asio::steady_timer>(dio, std::chrono::milliseconds(200));
    t->async_wait([t, f = std::move(f)](const boost::system::error_code& ec) {
      if (!ec) f();
    });
  }

  void publish_self() {
    NodeRecord n;
    n.resp = opt.resp_address;
    n.data = fmt::format("{}:{}", opt.bind, opt.data_port);
    n.name = opt.name;
    n.storage = opt.storage;
    n.incarnation = incarnation;
    n.weight = opt.weight;
    n.zone = opt.zone;
    meta.put(kDomain, fmt::format("node/{}", opt.self), encode_node(n), std::nullopt,
             [self = shared_from_this()](Result<cluster::WriteResult> r) {
               if (self->stopping) return;
               if (!r) {
                 self->meta_retry([self] { self->publish_self(); });
                 return;
               }
               self->follow();
             });
  }

  // ---------------- failover manager (data thread)
  awaitable<void> manager() {
    auto self = shared_from_this();
    asio::steady_timer timer(dio);  // in this frame: see ticker()
    while (!stopping) {
      timer.expires_after(std::chrono::milliseconds(200));
      co_await timer.async_wait(asio::as_tuple(use_awaitable));
      if (stopping) break;
      meta.status([self](Result<cluster::DriverStatus> r) {
        if (!r) return;
        asio::post(self->dio, [self, s = std::move(*r)] { self->manage(s); });
      });
    }
  }

  // A node that left the configuration (keel cluster leave) while the map still names it as a
  // copy is no longer watched by the failure detector: while it drains it is alive, but if it
  // stops first its partitions would never fail over. So the data plane watches it: once its
  // link has been down for two lease lengths (the failure detector's dead_after by default),
  // it counts as dead here, and its partitions fail over like any other dead member's.
  void watch_departed(const Topology& t) {
    int64_t now = now_ms();
    std::set<uint32_t> named;
    for (auto& pv : t.parts) {
      if (pv.primary) named.insert(pv.primary);
      named.insert(pv.replicas.begin(), pv.replicas.end());
    }
    std::erase_if(departed_down_since, [&](const auto& e) { return !named.count(e.first) || members.count(e.first); });
    for (uint32_t id : named) {
      if (id == opt.self || members.count(id)) continue;
      if (transport && transport->connected(id)) {
        departed_down_since.erase(id);
        continue;
      }
      auto [it, fresh] = departed_down_since.emplace(id, now);
      if (fresh) klog().info("dht: node {} left the configuration and its data link is down; its partitions fail over in {} ms unless it comes back", id, 2 * opt.lease_ms);
      if (now - it->second >= 2 * opt.lease_ms) members[id] = cluster::MemberStatus::kDead;
    }
  }
  std::map<uint32_t, int64_t> departed_down_since;  // data thread
  // Peers whose data link is down (as of the manager's last pass, every 200 ms): snapshots to
  // them wait rather than stream into a closed link.
  std::mutex links_mu;
  std::set<uint32_t> links_down;
  bool link_down(uint32_t id) {
    std::lock_guard lk(links_mu);
    return links_down.count(id) > 0;
  }
  ServiceStatus seen;  // under mu: the member figures of status()

  bool dead(uint32_t id) const {
    auto it = members.find(id);
    return it != members.end() && it->second == cluster::MemberStatus::kDead;
  }

  void manage(const cluster::DriverStatus& s) {
    if (transport) {
      std::set<uint32_t> down;
      for (auto& l : transport->stats())
        if (!l.connected) down.insert(l.id);
      std::lock_guard lk(links_mu);
      links_down = std::move(down);
    }
    members.clear();
    for (auto& m : s.members) members[m.id] = m.self ? cluster::MemberStatus::kAlive : m.status;
    quorum = s.quorum;
    std::shared_ptr<const Topology> t;
    {
      std::lock_guard lk(mu);
      t = latest;
    }
    if (t) watch_departed(*t);
    {
      std::lock_guard lk(mu);
      alive_view.clear();
      for (auto& [id, st] : members) alive_view[id] = st != cluster::MemberStatus::kDead;
      seen = ServiceStatus{};
      seen.members_known = true;
      seen.quorum = quorum;
      for (auto& m : s.members) {  // the configured members (a departed one is not counted)
        auto st = m.self ? cluster::MemberStatus::kAlive : m.status;
        if (st == cluster::MemberStatus::kDead) ++seen.members_dead;
        else if (st == cluster::MemberStatus::kSuspect) ++seen.members_suspect;
        else ++seen.members_alive;
      }
    }
    if (!t || !quorum) return;
    auto moves = plan_moves(*t);
    measure_rebalance(moves);
    // The manager is the lowest-numbered live storage member; if two think they are, the
    // map's compare-and-set lets one win.
    for (auto& [id, n] : t->nodes)
      if (n.storage && !dead(id)) {
        if (id != opt.self) return;
        break;
      }
    int64_t now = now_ms();
    auto restarted = restarted_nodes(*t);
    for (uint32_t p = 0; p < t->parts.size(); ++p) {
      auto& pv = t->parts[p];
      if (!pv.primary || !(dead(pv.primary) || restarted.count(pv.primary)) || decided.count(p)) continue;
      auto fit = fencing.find(p);
      if (fit != fencing.end() && fit->second.new_epoch > pv.epoch && now - fit->second.started_ms < 5000) continue;
      bool any_replica = false;
      for (uint32_t r : pv.replicas) any_replica |= !dead(r);
      if (!any_replica) {
        // No other copy to fence or promote. A primary that restarted keeps its partition (a
        // persistent engine kept the data; a memory engine starts it empty) in a new epoch;
        // a dead one leaves it unavailable until it returns.
        if (!dead(pv.primary)) decided[p] = PartitionView{pv.epoch + 1, pv.primary, {}};
        continue;
      }
      Fencing f;
      f.new_epoch = pv.epoch + 1;
      f.started_ms = now;
      fencing[p] = f;
      // Replicas that restarted answer too (they hold nothing the log knows of: LSN 0). So does
      // a primary that restarted: when every copy restarted, only an answer from every member
      // lets the partition have a primary again (else it stays without one, and the members
      // whose incarnation waits on it never serve anything).
      for (uint32_t r : pv.replicas)
        if (!dead(r)) send_repl(r, p, replication::Fence{f.new_epoch});
      if (!dead(pv.primary)) send_repl(pv.primary, p, replication::Fence{f.new_epoch});
    }
    std::erase_if(cannot_vouch, [&](uint32_t p) { return p >= t->parts.size() || !dead(t->parts[p].primary); });
    if (!cannot_vouch.empty() && now - cannot_vouch_logged_ms >= 10000) {
      cannot_vouch_logged_ms = now;
      std::vector<uint32_t> some(cannot_vouch.begin(), std::next(cannot_vouch.begin(), std::min<size_t>(cannot_vouch.size(), 8)));
      klog().warn("dht: {} partition(s) cannot fail over: no live copy holds every write they acknowledged (the others "
                  "were being filled by a snapshot, or restarted); they wait for their primary to return (partitions {}{})",
                  cannot_vouch.size(), fmt::join(some, ", "), cannot_vouch.size() > some.size() ? ", ..." : "");
    }
    commit_decisions(t, restarted);
    rebalance(*t, moves);
  }

  // ---------------- rebalancing (data thread, on the manager)
  // The storage members partitions are placed over: live members of the cluster whose
  // incarnation the map acknowledged. nullopt while the map still names a dead or restarted
  // member (failover and re-creation come first) or has a partition without a primary.
  std::optional<std::vector<cluster::Member>> placement_members(const Topology& t) {
    std::vector<cluster::Member> out;
    auto acknowledged = [&](uint32_t id) {
      auto n = t.nodes.find(id);
      auto inc = t.incarnations.find(id);
      return n != t.nodes.end() && inc != t.incarnations.end() && inc->second == n->second.incarnation;
    };
    for (auto& pv : t.parts) {
      if (!pv.primary || dead(pv.primary) || !acknowledged(pv.primary)) return std::nullopt;
      for (uint32_t r : pv.replicas)
        if (dead(r) || !acknowledged(r)) return std::nullopt;
    }
    for (auto& [id, n] : t.nodes)
      if (n.storage && members.count(id) && !dead(id) && acknowledged(id)) out.push_back(member_of(n));
    return out;
  }

  // Where placement puts the partitions over the current members, and which are not there yet.
  struct MovePlan {
    size_t members = 0;
    cluster::PartitionMap cur;     // the map now
    cluster::PartitionMap target;  // where the partitions should be
    std::vector<uint32_t> changed; // partitions whose copies or primary differ
  };
  // nullopt: no moves to plan now (a dead or restarted member in the map, no members), or the
  // planner could not place them (logged).
  std::optional<MovePlan> plan_moves(const Topology& t) {
    auto live = placement_members(t);
    if (!live || live->empty()) return std::nullopt;
    // The plan depends only on the map and the members: steps that see neither change (every
    // 200 ms, on every node) reuse it instead of hashing every partition again.
    if (last_plan && last_plan_version == t.version && last_plan_members == *live) return last_plan;
    auto mp = compute_plan(t, *live);
    last_plan = mp;
    last_plan_version = t.version;
    last_plan_members = std::move(*live);
    return mp;
  }
  std::optional<MovePlan> last_plan;  // data thread
  uint64_t last_plan_version = 0;
  std::vector<cluster::Member> last_plan_members;

  std::optional<MovePlan> compute_plan(const Topology& t, const std::vector<cluster::Member>& live_members) {
    const auto* live = &live_members;
    MovePlan mp;
    mp.members = live->size();
    mp.cur = cluster_map(t);
    auto pl = cluster::plan(mp.cur, *live, t.copies);
    if (!pl) {
      if (pl.error().message != plan_error)  // once, not every step
        klog().warn("dht: cannot plan the partition moves over {} members: {}", live->size(), pl.error().message);
      plan_error = pl.error().message;
      return std::nullopt;
    }
    plan_error.clear();
    mp.target = cluster::prefer_placed_primaries(pl->now, std::move(pl->target), *live, t.copies);
    for (uint32_t p = 0; p < mp.cur.partition_count(); ++p) {
      auto& a = mp.cur.partitions[p];
      auto& b = mp.target.partitions[p];
      if (a.primary != b.primary || a.replicas != b.replicas) mp.changed.push_back(p);
    }
    return mp;
  }

  std::string plan_error;  // the planner's last refusal (data thread)

  // Every node: how many partitions are not yet where placement puts them, for status.
  void measure_rebalance(const std::optional<MovePlan>& mp) {
    uint32_t remaining = mp ? static_cast<uint32_t>(mp->changed.size()) : 0;
    std::lock_guard lk(mu);
    rebalance_remaining = remaining;
    if (remaining == 0) {
      rebalance_total = 0;
    } else if (rebalance_total == 0 || remaining > rebalance_total) {
      rebalance_total = remaining;  // a rebalance begins (or grows: a member joined meanwhile)
      rebalance_began_ms = now_ms();
    }
  }

  static cluster::PartitionMap cluster_map(const Topology& t) {
    PartitionMapData d;
    d.parts = t.parts;
    return to_cluster_map(d);
  }

  void on_learn_progress(uint32_t p, uint64_t epoch, uint32_t learner, uint64_t acked, bool snapshotting,
                         uint64_t commit) {
    auto it = transfers.find({p, learner});
    if (it == transfers.end() || it->second.epoch != epoch) return;
    bool caught = !snapshotting && acked > 0 && acked >= commit;
    if (caught && !it->second.caught_up) {
      it->second.caught_up = true;
      rebalance_soon();
    }
  }

  void on_handed_over(uint32_t p, uint64_t epoch, uint32_t to) {
    auto& h = handed_over[p];
    if (h == std::make_pair(epoch, to)) return;
    h = {epoch, to};
    rebalance_soon();
  }

  void rebalance_soon() {
    if (rebalance_posted) return;
    rebalance_posted = true;
    asio::post(dio, [self = shared_from_this()] {
      self->rebalance_posted = false;
      std::shared_ptr<const Topology> t;
      {
        std::lock_guard lk(self->mu);
        t = self->latest;
      }
      if (!t || !self->quorum) return;
      auto moves = self->plan_moves(*t);
      self->measure_rebalance(moves);
      self->rebalance(*t, moves);
    });
  }

  // One step of the moves from the map to where placement puts the partitions over the
  // current members (cluster::plan): a new copy is first a learner, streamed to by the primary
  // (snapshot, then the log); once every new copy of a partition is caught up — and, when its
  // primary changes, once the old primary handed over (it stopped taking writes and the new one
  // holds all it has) — the partition switches to its target assignment, epoch + 1, by a
  // compare-and-set of the map. Stateless across managers: a new manager plans from the map.
  void rebalance(const Topology& t, const std::optional<MovePlan>& mp) {
    if (!opt.rebalance) return;
    if (!quorum || map_write_in_flight || !fencing.empty() || !decided.empty() || stopping) return;
    for (auto& [id, n] : t.nodes)  // only the manager runs moves
      if (n.storage && !dead(id) && members.count(id)) {
        if (id != opt.self) return clear_moves();
        break;
      }
    if (!mp) return;
    const auto& cur = mp->cur;
    const auto& target_map = mp->target;
    const auto& changed = mp->changed;
    if (changed.empty()) return clear_moves();
    int64_t now = now_ms();
    std::erase_if(transfers, [&](const auto& e) {  // no longer wanted (the members changed)
      return !target_map.partitions[e.first.first].holds(e.first.second);
    });
    std::map<uint32_t, uint32_t> load;
    // Forget transfers the map overtook (switched, or a new epoch from a failover).
    std::erase_if(transfers, [&](const auto& e) {
      auto& a = cur.partitions[e.first.first];
      return a.epoch != e.second.epoch || a.holds(e.first.second);
    });
    for (auto& [key, tr] : transfers) {
      ++load[tr.from];
      ++load[key.second];
    }
    std::vector<uint32_t> ready;
    for (uint32_t p : changed) {
      const auto& a = cur.partitions[p];
      const auto& target = target_map.partitions[p];
      bool all_caught = true;
      for (uint32_t n : target.copies()) {
        if (a.holds(n)) continue;
        auto it = transfers.find({p, n});
        if (it == transfers.end()) {
          all_caught = false;
          if (load[a.primary] >= opt.rebalance_transfers || load[n] >= opt.rebalance_transfers) continue;
          ++load[a.primary];
          ++load[n];
          it = transfers.emplace(std::make_pair(p, n), Transfer{a.primary, 0, a.epoch, false}).first;
        }
        all_caught &= it->second.caught_up;
        if (now - it->second.renewed_ms >= 200) {  // (re)start it, and keep the primary streaming
          it->second.renewed_ms = now;
          send_move(n, kLearn, p, a.epoch, n, {a.primary});
          send_move(a.primary, kLearn, p, a.epoch, n, {a.primary});
        }
      }
      if (!all_caught) continue;
      // A new primary, or a copy dropped: first the primary stops and waits until the new
      // primary and every new copy hold all it has (hand_over; to itself when it stays), so
      // every acknowledged write is on write_quorum copies of the new assignment.
      bool drops = false;
      for (uint32_t n : a.copies()) drops |= !target.holds(n);
      if (target.primary != a.primary || drops) {
        auto h = handed_over.find(p);
        if (h == handed_over.end() || h->second != std::make_pair(a.epoch, target.primary)) {
          auto& asked = handover_asked[p];
          if (now - asked >= 200) {
            asked = now;
            send_move(a.primary, kHandOver, p, a.epoch, target.primary);
          }
          continue;
        }
      }
      ready.push_back(p);
    }
    publish_moves();
    if (ready.empty()) return;
    propose_map(
        [&](PartitionMapData& m, uint64_t version) {
          if (version < map_written || m.parts.size() != cur.partitions.size())
            return false;  // our last switch is not followed yet
          for (uint32_t p : ready) {
            if (m.parts[p].epoch != cur.partitions[p].epoch) return false;  // the map moved on: plan again
            const auto& target = target_map.partitions[p];
            m.parts[p] = PartitionView{cur.partitions[p].epoch + 1, target.primary, target.replicas};
          }
          return true;
        },
        [self = shared_from_this(), ready](const Result<cluster::WriteResult>& r) {
          if (!r) {
            klog().warn("dht: switching {} moved partition(s): {}", ready.size(), r.error().message);
            return;
          }
          self->map_written = r->version;
          for (uint32_t p : ready) {
            self->handed_over.erase(p);
            self->handover_asked.erase(p);
          }
          self->partitions_moved += ready.size();
          observe::signal(observe::Signal::kPartitionsMoved, fmt::format("dht: {} partition(s) switched to their new copies", ready.size()));
          self->rebalance_soon();
        });
  }

  void clear_moves() {
    transfers.clear();
    handed_over.clear();
    handover_asked.clear();
    publish_moves();
  }

  void publish_moves() {
    std::vector<ServiceStatus::Transfer> v;
    for (auto& [key, tr] : transfers) v.push_back({key.first, tr.from, key.second, tr.caught_up});
    transfers_in_flight = static_cast<uint32_t>(v.size());
    std::lock_guard lk(mu);
    transfer_view = std::move(v);
  }

  // Live members whose record names an incarnation the map has not acknowledged: they
  // restarted (or are new) since the epochs of their partitions were decided.
  std::set<uint32_t> restarted_nodes(const Topology& t) {
    std::set<uint32_t> out;
    for (auto& [id, n] : t.nodes) {
      if (dead(id)) continue;
      auto it = t.incarnations.find(id);
      if (it == t.incarnations.end() || it->second != n.incarnation) out.insert(id);
    }
    return out;
  }

  void on_fence_ack(uint32_t from, uint32_t p, const replication::FenceAck& ack) {
    auto it = fencing.find(p);
    if (it == fencing.end() || ack.new_epoch != it->second.new_epoch) return;
    std::shared_ptr<const Topology> t;
    {
      std::lock_guard lk(mu);
      t = latest;
    }
    if (!t || p >= t->parts.size()) return;
    auto& acks = it->second.acks;
    for (auto& [id, a] : acks)
      if (id == from) return;
    acks.emplace_back(from, ack);
    auto& pv = t->parts[p];
    replication::Config c{pv.epoch, pv.primary, pv.replicas,
                          std::min<uint32_t>(t->write_quorum, 1 + static_cast<uint32_t>(pv.replicas.size()))};
    auto chosen = replication::choose_new_primary(c, acks);
    if (!chosen) {
      // Every live copy answered and none can vouch for the partition's acknowledged writes
      // (being filled by a snapshot, or restarted): it waits for its primary. Said in the log.
      bool all_answered = true;
      for (uint32_t r : pv.replicas)
        all_answered &= dead(r) || std::any_of(acks.begin(), acks.end(), [&](const auto& a) { return a.first == r; });
      if (all_answered) cannot_vouch.insert(p);
      return;
    }
    cannot_vouch.erase(p);
    PartitionView next;
    next.epoch = it->second.new_epoch;
    next.primary = *chosen;
    for (uint32_t r : pv.replicas)
      if (r != *chosen && !dead(r)) next.replicas.push_back(r);
    // A primary that restarted stays a copy (it is re-filled by a snapshot); a dead one goes.
    if (!dead(pv.primary) && pv.primary != *chosen) next.replicas.push_back(pv.primary);
    decided[p] = next;
    fencing.erase(it);
  }

  void commit_decisions(std::shared_ptr<const Topology> t, const std::set<uint32_t>& restarted) {
    if (map_write_in_flight) return;
    // Re-create lost copies: a partition with fewer copies than the target gets a replica on
    // the live storage member that placement (weighted rendezvous, zone spread) puts first
    // among those not holding it.
    std::map<uint32_t, PartitionView> changes = decided;
    std::vector<cluster::Member> live;
    for (auto& [id, n] : t->nodes)
      if (n.storage && !dead(id) && !restarted.count(id)) live.push_back(member_of(n));
    std::optional<cluster::Placer> placer;
    if (cluster::validate_members(live)) placer.emplace(live);
    for (uint32_t p = 0; p < t->parts.size() && changes.size() < 256 && placer; ++p) {
      if (changes.count(p) || fencing.count(p)) continue;
      auto pv = t->parts[p];
      if (!pv.primary || dead(pv.primary)) continue;
      bool changed = false;
      std::erase_if(pv.replicas, [&](uint32_t r) { return dead(r) && (changed = true); });
      if (1 + pv.replicas.size() < t->copies) {
        for (uint32_t id : placer->place(p, t->copies + static_cast<uint32_t>(pv.replicas.size()) + 1)) {
          if (1 + pv.replicas.size() >= t->copies) break;
          if (id == pv.primary || std::find(pv.replicas.begin(), pv.replicas.end(), id) != pv.replicas.end())
            continue;
          pv.replicas.push_back(id);
          changed = true;
        }
      }
      if (changed) {
        pv.epoch += 1;
        changes[p] = pv;
      }
    }
    // Acknowledge a restarted member's incarnation once every partition it was the primary of
    // has a new primary in this write; the partitions it is a replica of get a new epoch.
    std::map<uint32_t, uint64_t> acknowledged;
    for (uint32_t id : restarted) {
      bool ready = true;
      for (uint32_t p = 0; p < t->parts.size() && ready; ++p)
        if (t->parts[p].primary == id && !decided.count(p)) ready = false;
      if (!ready) continue;
      for (uint32_t p = 0; p < t->parts.size(); ++p) {
        auto& pv = t->parts[p];
        if (changes.count(p) || !t->holds(p, id)) continue;
        auto next = pv;
        next.epoch += 1;
        changes[p] = next;
      }
      acknowledged[id] = t->node(id)->incarnation;
    }
    if (changes.empty() && acknowledged.empty()) return;
    size_t n = changes.size();
    propose_map(
        [&](PartitionMapData& m, uint64_t) {
          for (auto& [p, pv] : changes) {
            if (m.parts[p].epoch + 1 != pv.epoch) {  // decided on a stale map: start over
              decided.clear();
              return false;
            }
            m.parts[p] = pv;
          }
          for (auto& [id, inc] : acknowledged) m.incarnations[id] = inc;
          return true;
        },
        [self = shared_from_this(), n, promoted = decided](const Result<cluster::WriteResult>& r) {
          if (!r) {
            klog().warn("dht: updating the partition map: {}", r.error().message);
            self->decided.clear();
            return;
          }
          std::map<uint32_t, int> to;
          for (auto& [p, pv] : promoted) {
            self->decided.erase(p);
            ++self->failovers;
            ++to[pv.primary];
          }
          for (auto& [node, count] : to)
            observe::signal(observe::Signal::kPrimaryChanged, fmt::format("dht: {} partition(s) now have node {} as primary in a new epoch (failover, or its restart)", count, node));
          klog().info("dht: partition map updated ({} partitions changed)", n);
        });
  }

  // Reads the map as last followed, lets `edit` change it (false: leave it), and writes it back
  // with a compare-and-set on the version it was read at, so a map that moved on meanwhile
  // wins. `done` runs on the data thread once the write is decided. One write at a time.
  void propose_map(const std::function<bool(PartitionMapData&, uint64_t version)>& edit,
                   std::function<void(const Result<cluster::WriteResult>&)> done) {
    std::optional<std::pair<std::string, uint64_t>> current;
    {
      std::lock_guard lk(mu);
      current = latest_map;
    }
    if (!current) return;
    auto m = decode_partition_map(current->first);
    if (!m || !edit(*m, current->second)) return;
    map_write_in_flight = true;
    meta.put(kDomain, kMapKey, encode_partition_map(*m), current->second,
             [self = shared_from_this(), done = std::move(done)](Result<cluster::WriteResult> r) {
               asio::post(self->dio, [self, r, done] {
                 self->map_write_in_flight = false;
                 done(r);
               });
             });
  }

};


// ---------------- public API

Service::Service(runtime::ShardSet& shards, std::vector<EffectRecorder*> recorders,
                 cluster::MetaService& meta, ServiceOptions opt)
    : opt_(opt), impl_(std::make_shared<Impl>(shards, std::move(recorders), meta, std::move(opt))) {}

Service::~Service() { stop(); }

Result<int> Service::start() {
  auto& im = *impl_;
  cluster::TransportOptions to;
  to.cluster_id = im.opt.cluster_id;
  to.node_id = im.opt.self;
  to.bind = im.opt.bind;
  to.port = im.opt.data_port;
  to.tls = im.opt.tls;
  std::weak_ptr<Impl> weak = impl_;
  im.transport = std::make_unique<cluster::PeerTransport>(
      im.dio, to, [weak](uint32_t from, cluster::MsgType type, std::string payload) {
        if (type != cluster::MsgType::kData) return;
        if (auto self = weak.lock()) self->on_data(from, std::move(payload));
      });
  auto port = im.transport->start();
  if (!port) return port;
  im.incarnation = static_cast<uint64_t>(wall_ms());
  im.opt.data_port = *port;
  opt_.data_port = *port;
  for (unsigned i = 0; i < im.st.size(); ++i)
    asio::co_spawn(im.shards.shard(i).io, im.ticker(i), asio::detached);
  asio::co_spawn(im.dio, im.manager(), asio::detached);
  im.publish_self();
  return *port;
}

void Service::stop() {
  auto& im = *impl_;
  if (im.stopping.exchange(true)) return;
  if (im.subscription) im.subscription->cancel();
  auto close = [&im] {
    if (im.transport) im.transport->stop();
    im.transport.reset();
  };
  if (!im.loops_running) {  // the shard loops never ran: nothing runs concurrently
    close();
    return;
  }
  std::promise<void> done;
  asio::post(im.dio, [&] {
    close();
    done.set_value();
  });
  done.get_future().wait();
}

std::shared_ptr<const Topology> Service::topology(unsigned shard) const { return impl_->st[shard]->topo; }
const Topology* Service::current(unsigned shard) const { return impl_->st[shard]->topo.get(); }

bool Service::wait_installed(int64_t timeout_ms) {
  auto& im = *impl_;
  for (int64_t waited = 0; waited <= timeout_ms; waited += 5) {
    unsigned ready = 0;
    for (unsigned i = 0; i < im.st.size(); ++i) {
      std::promise<bool> has;
      asio::post(im.shards.shard(i).io, [&, i] {
        auto& t = im.st[i]->topo;
        auto inc = t ? t->incarnations.find(im.opt.self) : decltype(t->incarnations.end()){};
        has.set_value(t && inc != t->incarnations.end() && inc->second == im.incarnation);
      });
      ready += has.get_future().get();
    }
    if (ready == im.st.size()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::shared_ptr<const Topology> Service::latest() const {
  int cur = runtime::ShardSet::current();
  std::lock_guard lk(impl_->mu);
  // On a shard thread, the topology that shard routes by.
  auto base = cur >= 0 ? impl_->st[static_cast<unsigned>(cur)]->topo : impl_->latest;
  if (!base) return nullptr;
  auto t = std::make_shared<Topology>(*base);
  t->alive = impl_->alive_view;
  return t;
}

std::string Service::check_local(unsigned shard, uint32_t partition, bool write, int64_t) {
  auto& s = *impl_->st[shard];
  if (s.lone[partition]) return {};
  auto* c = s.by_part[partition];
  if (!c || !c->is_primary())
    return fmt::format("TRYAGAIN partition {} has no primary on this node right now; retry", partition);
  if (uint32_t to = c->handing_over_to())
    return to == impl_->opt.self
               ? fmt::format("TRYAGAIN partition {} is switching to its new copies (rebalancing); retry", partition)
               : fmt::format("TRYAGAIN partition {} is moving to node {} (rebalancing); retry", partition, to);
  if (write) {
    if (!c->writable())
      return fmt::format("TRYAGAIN partition {} is failing over (this primary's epoch {} is fenced); retry",
                         partition, c->config().epoch);
    return {};
  }
  if (!c->config().replicas.empty() && !c->can_serve_reads(now_ms()))
    return fmt::format("TRYAGAIN partition {}: this primary's read lease has lapsed (its replicas "
                       "have not answered lately); retry",
                       partition);
  return {};
}

Service::ShardHealth Service::shard_health(unsigned shard) {
  auto& s = *impl_->st[shard];
  ShardHealth h;
  h.has_map = s.topo != nullptr;
  int64_t now = now_ms();
  for (auto& [p, c] : s.copies) {
    if (!c->is_primary()) {
      if (c->config().primary != impl_->opt.self) ++h.replicas;
      continue;
    }
    ++h.primaries;
    if (!c->writable()) ++h.fenced;
    else if (!s.lone[p] && !c->config().replicas.empty() && !c->can_serve_reads(now)) ++h.lease_lapsed;
  }
  return h;
}

uint64_t Service::read_fence(unsigned shard, uint32_t partition, int64_t) {
  auto& s = *impl_->st[shard];
  if (s.lone[partition]) return 0;  // nothing is appended to a lone primary's log
  auto* c = s.by_part[partition];
  if (!c) return 0;
  return c->last_lsn() > c->committed_lsn() ? c->last_lsn() : 0;
}

void Service::note_replica_read() { impl_->replica_reads.fetch_add(1, std::memory_order_relaxed); }

int64_t Service::replica_lag_ms(uint32_t partition) const {
  if (partition >= impl_->opt.partitions) return -1;
  int64_t fresh = impl_->replica_fresh[partition].load(std::memory_order_relaxed);
  if (fresh == INT64_MIN) return -1;
  return std::max<int64_t>(0, now_ms() - fresh);
}

void Service::set_span_sink(SpanSink sink) { impl_->span_sink = std::move(sink); }

Status Service::after_write(unsigned shard, int64_t, std::vector<Wait>& waits, const observe::LogContext* trace) {
  auto& im = *impl_;
  auto* rec = im.recorders[shard];
  if (!rec->has_pending()) return {};
  int64_t now = now_ms();
  std::optional<Error> err;
  auto& s = *im.st[shard];
  const size_t first = waits.size();
  // Each effect gets its LSN, and the engine the mark of where its data now stands; the
  // commit writes the mark after the data. Only then is the primary's own copy durable.
  rec->drain([&](uint32_t p, std::string_view effect) {
    auto* copy = s.by_part[p];
    if (!copy) return;
    auto lsn = copy->append(effect, now);
    if (!lsn) {
      err = lsn.error();
      return;
    }
    auto [held, epoch] = copy->held();
    rec->set_log_mark(p, {held, epoch});
    waits.push_back({p, *lsn, 0});
    if (trace) [[unlikely]] keep_note(s.trace_out[p], {*lsn, trace->trace_id, trace->span_id});
  });
  if (rec->commit_does_io()) {
    // Shipped now (a replica may hold a write before its primary does); committed here once
    // per turn of the loop with every other write appended meanwhile: the replies wait.
    for (size_t i = first; i < waits.size(); ++i) {
      s.undurable.emplace_back(waits[i].partition, waits[i].lsn);
      im.ship_later(shard, waits[i].partition);
    }
    if (!s.commit_posted && !s.undurable.empty()) {
      s.commit_posted = true;
      asio::post(im.shards.shard(shard).io, [self = impl_, shard] { self->commit_appended(shard); });
    }
    if (err) return std::unexpected(*err);
    return {};
  }
  if (auto c = rec->commit(); !c) {
    waits.resize(first);  // appended (and maybe shipped), but not durable here: outcome unknown
    return c;
  }
  for (size_t i = first; i < waits.size(); ++i) {
    if (auto* c = s.by_part[waits[i].partition]) c->durable(waits[i].lsn, now);
    im.ship_later(shard, waits[i].partition);
  }
  if (err) return std::unexpected(*err);
  return {};
}

void Service::set_executor(Exec exec) { impl_->exec = std::move(exec); }

void Service::publish(const std::vector<uint32_t>& nodes, bool shard_channel, std::string_view channel,
                      std::string_view message) {
  std::string out;
  Writer w(out);
  w.u8(kPublish);
  w.u8(shard_channel ? 1 : 0);
  w.bytes(channel);
  w.bytes(message);
  auto send_all = [self = impl_, nodes, out = std::move(out)] {
    for (uint32_t to : nodes) {
      if (to == self->opt.self) continue;
      if (!self->transport || !self->transport->send(to, cluster::MsgType::kData, out)) ++self->publish_dropped;
    }
  };
  if (runtime::ShardSet::current() == 0) send_all();
  else asio::post(impl_->dio, std::move(send_all));
}

void Service::set_publish_handler(PublishHandler handler) { impl_->on_publish = std::move(handler); }
uint64_t Service::publish_dropped() const { return impl_->publish_dropped.load(); }

ServiceStatus Service::status() {
  auto& im = *impl_;
  ServiceStatus s;
  std::shared_ptr<const Topology> t;
  {
    std::lock_guard lk(im.mu);
    t = im.latest;
  }
  if (t) {
    s.map_version = t->version;
    s.copies = t->copies;
    s.write_quorum = t->write_quorum;
    s.partitions = static_cast<uint32_t>(t->parts.size());
    for (auto& [id, n] : t->nodes) s.nodes[id];
    for (auto& pv : t->parts) {
      if (pv.primary) ++s.nodes[pv.primary].primaries;
      for (auto r : pv.replicas) ++s.nodes[r].replicas;
      if (pv.primary == im.opt.self) ++s.primaries_here;
      for (auto r : pv.replicas)
        if (r == im.opt.self) ++s.replicas_here;
      if (1 + pv.replicas.size() < t->copies) ++s.under_replicated;
    }
  }
  {
    std::lock_guard lk(im.mu);
    s.members_known = im.seen.members_known;
    s.quorum = im.seen.quorum;
    s.members_alive = im.seen.members_alive;
    s.members_suspect = im.seen.members_suspect;
    s.members_dead = im.seen.members_dead;
  }
  s.replica_reads = im.replica_reads.load(std::memory_order_relaxed);
  for (uint32_t p = 0; p < im.opt.partitions; ++p) s.replica_lag_max_ms = std::max(s.replica_lag_max_ms, replica_lag_ms(p));
  for (auto& st : im.st) {
    s.forwarded += st->forwarded;
    s.forward_errors += st->forward_errors;
    s.replicated_entries += st->replicated;
    s.replicated_bytes += st->replicated_bytes;
  }
  s.failovers = im.failovers;
  s.partitions_moved = im.partitions_moved;
  s.transfers_in_flight = im.transfers_in_flight;
  s.snapshot_bytes_sent = im.snapshot_bytes;
  s.recovered_copies = im.recovered_copies.load();
  s.stale_dropped = im.stale_dropped.load();
  s.snapshots_resumed = im.snapshots_resumed.load();
  {
    std::lock_guard lk(im.mu);
    s.transfers = im.transfer_view;
    s.rebalance_remaining = im.rebalance_remaining;
    s.rebalance_total = im.rebalance_total;
    uint32_t done = s.rebalance_total - std::min(s.rebalance_total, s.rebalance_remaining);
    int64_t elapsed = now_ms() - im.rebalance_began_ms;
    if (s.rebalance_remaining && done)
      s.rebalance_eta_s = (elapsed * s.rebalance_remaining / done + 999) / 1000;
  }
  return s;
}

awaitable<Status> wait_committed(Service& svc, unsigned shard,
                                 std::span<const Wait> waits) {
  auto& im = svc.impl();
  auto& s = *im.st[shard];
  Waiter w;
  for (auto& [p, lsn, quorum] : waits) {
    auto* copy = s.by_part[p];
    if (!copy)
      co_return make_error(Errc::kTimeout, fmt::format("outcome unknown: partition {} moved away from this node before the write was replicated; it may or may not have been applied", p));
    if (copy->held_by(quorum) >= lsn) continue;
    s.waiters[p].push_back({&w, lsn, quorum});
    ++w.pending;
  }
  if (w.pending == 0) co_return Status{};
  // One deadline for all of them (a wait on several partitions is not several timeouts).
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  w.timer = &timer;
  timer.expires_after(std::chrono::milliseconds(im.opt.request_timeout_ms));
  co_await timer.async_wait(asio::as_tuple(use_awaitable));
  if (w.pending == 0 && !w.failed) co_return Status{};
  // Timed out, or a partition's copy stopped being the primary: the registrations left go.
  std::optional<uint32_t> late;
  for (auto& wt : waits) {
    auto& ws = s.waiters[wt.partition];
    if (std::erase_if(ws, [&](const WaitReg& r) { return r.waiter == &w; }) && !late) late = wt.partition;
  }
  const uint32_t p = w.failed ? w.failed_partition : late.value_or(waits.front().partition);
  co_return make_error(
      Errc::kTimeout,
      fmt::format("outcome unknown: the write was applied on partition {}'s primary but fewer than "
                  "write_quorum copies confirmed it within {} ms{}; it may or may not survive a failover",
                  p, im.opt.request_timeout_ms, w.failed ? w.why : ""));
}

awaitable<Result<std::string>> forward(Service& svc, unsigned shard, uint32_t node,
                                       std::span<const std::string_view> argv, int protocol,
                                       const observe::TraceParent* trace) {
  auto& im = svc.impl();
  auto& s = *im.st[shard];
  uint64_t id = (s.next_forward++ << 8) | shard;
  std::string out;
  Writer w(out);
  if (trace) [[unlikely]] {
    w.u8(kForwardTraced);
    w.raw(std::string_view(reinterpret_cast<const char*>(trace->trace_id.data()), trace->trace_id.size()));
    w.raw(std::string_view(reinterpret_cast<const char*>(trace->span_id.data()), trace->span_id.size()));
    w.u8(trace->flags);
    w.bytes(trace->trace_state);
  } else {
    w.u8(kForward);
  }
  w.varint(id);
  w.bytes(fmt::format("{}:{}", im.opt.bind, im.opt.data_port));
  w.u8(static_cast<uint8_t>(protocol));
  w.varint(argv.size());
  for (auto a : argv) w.bytes(a);
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  PendingForward pf;
  pf.timer = &timer;
  s.forwards[id] = &pf;
  ++s.forwarded;
  im.send(node, std::move(out));
  timer.expires_after(std::chrono::milliseconds(im.opt.request_timeout_ms));
  co_await timer.async_wait(asio::as_tuple(use_awaitable));
  s.forwards.erase(id);
  if (!pf.reply) {
    ++s.forward_errors;
    co_return make_error(Errc::kTimeout,
                         fmt::format("outcome unknown: node {} (the key's primary) did not answer within {} ms; "
                                     "the command may or may not have run",
                                     node, im.opt.request_timeout_ms));
  }
  co_return std::move(*pf.reply);
}

}  // namespace keel::dht
