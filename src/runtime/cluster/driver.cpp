#include "runtime/cluster/driver.h"

#include <xxhash.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "base/assert.h"
#include "base/clock.h"
#include "base/random.h"
#include "runtime/cluster/peers.h"
#include "runtime/cluster/record_log.h"
#include "consensus/rabia/codec.h"
#include "consensus/rabia/replica.h"
#include "observe/log.h"
#include "observe/signal_hub.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kCluster); }
}  // namespace

namespace keel::cluster {

namespace asio = boost::asio;

namespace {
// First byte of every replicated command: what the driver does with it when applied.
constexpr char kEnvCommand = 0;  // hand to the state machine
constexpr char kEnvBarrier = 1;  // a linearizable read point: run the waiting read here

int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::vector<PeerAddress> members_from(uint32_t self, const std::vector<PeerAddress>& peers,
                                      const std::string& bind, int peer_port) {
  std::vector<PeerAddress> out = peers;
  bool listed = std::any_of(out.begin(), out.end(), [&](auto& p) { return p.id == self; });
  if (!listed) out.push_back({self, bind == "0.0.0.0" ? "127.0.0.1" : bind, static_cast<uint16_t>(peer_port)});
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.id < b.id; });
  return out;
}

struct Driver::Impl : std::enable_shared_from_this<Impl> {
  DriverOptions opt;
  std::shared_ptr<StateMachine> sm;
  asio::io_context io{1};
  std::unique_ptr<PeerTransport> transport;
  std::unique_ptr<rabia::Replica> replica;
  RecordLog log;
  std::vector<rabia::Record> tail;  // records since the last snapshot (to rewrite the log)
  FailureDetector fd;
  asio::steady_timer ticker{io};
  std::thread thread;
  bool flush_posted = false;
  bool stopping = false;
  std::string fatal;  // set when the log cannot be written: the node stops taking part

  // A submission made for a sampled request while spans are wanted (DriverOptions::span_sink):
  // the span it becomes once it is decided, refused or given up.
  struct Traced {
    observe::TraceParent parent;
    int64_t start_unix_ns = 0;     // when submit() was called (the caller's thread)
    int64_t proposed_unix_ns = 0;  // when the core took it (0: never)
    uint64_t first_slot = 0;       // the first undecided slot when it was proposed
  };
  struct Pending {
    Callback cb;
    std::function<std::string(StateMachine&)> read;  // barriers only
    int64_t deadline_ms = 0;
    size_t lane = 0;
    std::unique_ptr<Traced> trace;  // null unless traced
  };
  // How the slot of the Ready being applied was decided, when the core's counters tell it
  // unambiguously (the Ready applies one slot): by this node's own votes in `phases` phases, or
  // learned from a peer.
  struct HowDecided {
    const char* by = nullptr;  // "vote", "transfer" or null (not known)
    uint64_t phases = 0;
  };
  uint64_t seen_by_vote = 0, seen_by_transfer = 0, seen_phases = 0;
  SeededRandom span_rng{system_seed()};
  std::map<std::pair<uint64_t, uint64_t>, Pending> pending;  // (client id, seq)
  struct Lane {
    uint64_t client_id = 0;
    uint64_t seq = 0;
  };
  std::vector<Lane> lanes;
  std::vector<size_t> free_lanes;

  std::function<std::optional<PeerAddress>(uint32_t)> address_book;
  std::vector<std::function<void()>> applied_hooks;
  std::vector<std::function<void()>> installed_hooks;
  uint64_t oversized = 0, too_large = 0;
  bool oversize_logged = false;
  std::vector<std::function<void(const StatusChange&)>> status_hooks;
  std::map<uint32_t, uint64_t> reported_slot;  // from heartbeats
  // Members removed by a decided reconfiguration keep their link until they report (in a
  // heartbeat) a slot past the one that removed them, or for kLeaverGraceMs: closing it at
  // once would drop the frames still queued for them, and a leaver that missed the deciding
  // votes could never learn that it left (its catch-up requests would go unanswered).
  struct Leaver {
    uint64_t until_slot = 0;
    int64_t deadline_ms = 0;
  };
  std::map<uint32_t, Leaver> leavers;
  static constexpr int64_t kLeaverGraceMs = 60'000;
  uint64_t hb_seq = 0;
  int64_t last_hb_ms = 0;
  int64_t last_now_ms = 0;
  uint64_t applied_commands = 0;
  uint64_t last_snapshot_slot = 0;
  uint64_t log_bytes_at_snapshot = 0;  // the log's size right after the last rewrite
  uint64_t snapshots_written = 0;
  uint64_t no_quorum = 0, timed_out = 0;
  uint64_t commands_synced = 0;
  std::deque<std::pair<int64_t, uint64_t>> rate;  // (mono ms, slots decided)

  Impl(DriverOptions o, std::shared_ptr<StateMachine> s)
      : opt(std::move(o)), sm(std::move(s)),
        fd(FailureDetectorOptions{opt.suspect_after_ms, opt.dead_after_ms}) {}

  int64_t mono_ms() const { return SystemClock::instance().monotonic_ns() / 1'000'000; }
  // The core's time: wall clock (so queue timestamps are comparable across members), never
  // moving backwards.
  int64_t core_now() {
    last_now_ms = std::max(last_now_ms, SystemClock::instance().now_ms());
    return last_now_ms;
  }

  rabia::Config initial_config() const {
    rabia::Config c;
    c.cluster_id = XXH64(opt.cluster_id.data(), opt.cluster_id.size(), 0);
    for (auto& m : opt.members)
      if (!(opt.join && m.id == opt.node_id)) c.members.push_back(m.id);
    return c;
  }

  size_t reachable() const {
    size_t n = 0;
    for (auto id : replica->config().members) {
      if (id == opt.node_id) ++n;
      else if (transport->connected(id) && (fd.status(id) == MemberStatus::kAlive || fd.status(id) == MemberStatus::kSuspect)) ++n;
    }
    return n;
  }

  void schedule_flush() {
    if (flush_posted) return;
    flush_posted = true;
    asio::post(io, [self = shared_from_this()] {
      self->flush_posted = false;
      self->flush();
    });
  }

  void flush() {
    if (!fatal.empty()) return;
    while (replica->has_ready()) {
      auto rd = replica->ready();
      // 1. Durable first (R1, R2).
      bool snap = false;
      if (!rd.persist.empty()) {
        for (auto& r : rd.persist) {
          if (auto st = log.append(r); !st) return die(st.error().message);
          snap |= r.kind == rabia::Record::Kind::kSnapshot;
          tail.push_back(r);
        }
        if (auto st = log.sync(); !st) return die(st.error().message);
        if (snap) rewrite_log();
      }
      // 2. Then send.
      KEEL_ASSERT(transport || rd.messages.empty());
      for (auto& m : rd.messages) send(m);
      // 3. Install, 4. apply.
      bool installed = false;
      if (rd.install) {
        if (auto st = sm->restore(rd.install->app_state); !st)
          return die("restoring the metadata snapshot failed: " + st.error().message);
        last_snapshot_slot = rd.install->next_slot;
        installed = transport != nullptr;  // not the replay at start
      }
      if (installed)
        for (auto& h : installed_hooks) h();
      bool any = installed;
      HowDecided how;
      {
        const auto& st = replica->stats();
        const uint64_t dv = st.decided_by_vote - seen_by_vote, dt = st.decided_by_transfer - seen_by_transfer;
        if (rd.apply.size() == 1 && dv == 1 && dt == 0) how = {"vote", st.phases_total - seen_phases};
        else if (rd.apply.size() == 1 && dv == 0 && dt == 1) how = {"transfer", 0};
        seen_by_vote = st.decided_by_vote;
        seen_by_transfer = st.decided_by_transfer;
        seen_phases = st.phases_total;
      }
      for (auto& e : rd.apply) any |= apply(e, how);
      replica->advance();
      if (any)
        for (auto& h : applied_hooks) h();
      maybe_compact();
    }
  }

  // The core keeps every message under max_message_bytes (checked against the frame limit at
  // start), so this never refuses one; if it ever must, it says so instead of letting the
  // transport drop the frame silently on every resend.
  void send(const rabia::Message& m) {
    std::string bytes = rabia::encode(m);
    if (bytes.size() > opt.max_frame_bytes) {
      ++oversized;
      if (!oversize_logged)
        klog().error("cluster: a consensus message (type {}) to node {} is {} bytes, above the frame limit of {} "
                      "bytes; it is not sent (counted in messages_oversized; logged once)",
                      static_cast<int>(m.type), m.to, bytes.size(), opt.max_frame_bytes);
      oversize_logged = true;
      return;
    }
    transport->send(m.to, MsgType::kRabia, bytes);
  }

  // The span of a traced submission (see driver.h, "Tracing"). `decided`: the entry of the slot
  // that decided it (outcome "decided"), with how it was decided if known; `error`: the status
  // message of a failed outcome.
  void end_span(Traced& t, const char* kind, const char* outcome, const std::string& error,
                const rabia::Entry* decided = nullptr, const HowDecided* how = nullptr) {
    observe::SpanData s;
    s.trace_id = t.parent.trace_id;
    s.parent_span_id = t.parent.span_id;
    s.trace_state = t.parent.trace_state;
    s.span_id = observe::span_id_from(span_rng.next_u64());
    s.name = "keel.rabia.decision";
    s.kind = observe::kSpanKindInternal;
    s.start_unix_ns = t.start_unix_ns;
    s.end_unix_ns = std::max(unix_ns(), t.start_unix_ns);
    s.attributes.push_back({"keel.rabia.kind", std::string(kind)});
    s.attributes.push_back({"keel.rabia.outcome", std::string(outcome)});
    s.attributes.push_back({"keel.node_id", static_cast<int64_t>(opt.node_id)});
    s.attributes.push_back({"keel.rabia.members", static_cast<int64_t>(replica->config().n())});
    s.attributes.push_back({"keel.rabia.config_epoch", static_cast<int64_t>(replica->config().epoch)});
    if (t.proposed_unix_ns) {
      s.attributes.push_back({"keel.rabia.first_slot", static_cast<int64_t>(t.first_slot)});
      s.events.push_back({t.proposed_unix_ns, "keel.rabia.proposed",
                          {{"keel.rabia.first_slot", static_cast<int64_t>(t.first_slot)}}});
    }
    if (decided) {
      s.attributes.push_back({"keel.rabia.slot", static_cast<int64_t>(decided->slot)});
      s.attributes.push_back({"keel.rabia.slots_waited", static_cast<int64_t>(decided->slot - t.first_slot)});
      s.attributes.push_back({"keel.rabia.batch_requests", static_cast<int64_t>(decided->requests.size())});
      if (how && how->by) {
        s.attributes.push_back({"keel.rabia.decided_by", std::string(how->by)});
        if (how->phases) s.attributes.push_back({"keel.rabia.phases", static_cast<int64_t>(how->phases)});
      }
      s.events.push_back({s.end_unix_ns, "keel.rabia.applied", {{"keel.rabia.slot", static_cast<int64_t>(decided->slot)}}});
    }
    if (!error.empty()) {
      s.status_code = observe::kStatusError;
      s.status_message = error.substr(0, 256);
    }
    opt.span_sink(std::move(s));
  }

  void die(const std::string& why) {
    fatal = why;
    klog().critical("cluster: the record log failed ({}); this node stops taking part in consensus", why);
    fail_all(Errc::kIoError, "outcome unknown: this node's consensus log failed (" + why +
                                 ") after the request was submitted; the other members may still apply it");
  }

  void rewrite_log() {
    // Keep the newest snapshot and everything about the slots it does not cover.
    const rabia::Record* snap = nullptr;
    for (auto& r : tail)
      if (r.kind == rabia::Record::Kind::kSnapshot) snap = &r;
    KEEL_ASSERT(snap);
    uint64_t from = snap->snapshot.next_slot;
    std::vector<rabia::Record> keep{*snap};
    for (auto& r : tail) {
      if (r.kind == rabia::Record::Kind::kSnapshot) continue;
      uint64_t slot = r.kind == rabia::Record::Kind::kDecision ? r.decision.slot : r.slot;
      if (slot >= from) keep.push_back(r);
    }
    if (auto st = log.rewrite(keep); !st) return die(st.error().message);
    tail = std::move(keep);
    log_bytes_at_snapshot = log.bytes();
    ++snapshots_written;
  }

  void maybe_compact() {
    uint64_t next = replica->next_slot();
    // The log file holds the last snapshot and every record after it, as does `tail` in memory:
    // the records after the snapshot are bounded by slots and by bytes (not the snapshot itself,
    // or a state larger than the limit would be snapshotted at every slot).
    if (next == last_snapshot_slot) return;
    if (next - last_snapshot_slot < opt.snapshot_every && log.bytes() - log_bytes_at_snapshot < opt.snapshot_log_bytes)
      return;
    auto st = replica->compact(next, sm->snapshot());
    if (st) {
      last_snapshot_slot = next;
      schedule_flush();
    }
  }

  bool apply(const rabia::Entry& e, const HowDecided& how) {
    bool any = false;
    for (auto& r : e.requests) {
      if (r.kind != rabia::Request::Kind::kCommand) {
        apply_reconfig(e.config_after);
        observe::signal(observe::Signal::kMembersChanged,
                        fmt::format("cluster: configuration epoch {} from slot {}: members {}", e.config_after.epoch,
                                    e.slot + 1, fmt::join(e.config_after.members, ",")));
        auto it = r.origin == opt.node_id ? pending.find({r.client_id, r.seq}) : pending.end();
        if (it != pending.end()) {
          auto p = std::move(it->second);
          pending.erase(it);
          free_lanes.push_back(p.lane);
          p.cb(std::string());
        }
        continue;
      }
      std::string reply;
      std::function<std::string(StateMachine&)> read;
      auto it = r.origin == opt.node_id ? pending.find({r.client_id, r.seq}) : pending.end();
      if (!r.payload.empty() && r.payload[0] == kEnvCommand) {
        reply = sm->apply(e.slot, std::string_view(r.payload).substr(1));
        ++applied_commands;
        any = true;
      } else if (!r.payload.empty() && r.payload[0] == kEnvBarrier) {
        if (it != pending.end() && it->second.read) reply = it->second.read(*sm);
      }
      if (it != pending.end()) {
        auto p = std::move(it->second);
        pending.erase(it);
        free_lanes.push_back(p.lane);
        ++commands_synced;
        if (p.trace) [[unlikely]]
          end_span(*p.trace, p.read ? "read_barrier" : "write", "decided", {}, &e, &how);
        p.cb(std::move(reply));
      }
    }
    return any;
  }

  std::optional<PeerAddress> address_of(uint32_t id) const {
    for (auto& m : opt.members)
      if (m.id == id) return m;
    if (address_book) return address_book(id);
    return std::nullopt;
  }

  void apply_reconfig(const rabia::Config& c) {
    if (!transport) return;  // replay at start: the transport is built from the final config
    // Members that joined need a link: addresses from the configured list, else the address
    // book (metadata). A member without a known address shows as unreachable in the status.
    for (auto id : c.members) {
      if (id == opt.node_id) continue;
      if (auto a = address_of(id)) {
        transport->add_peer(*a);
        fd.add(id, mono_ms());
      } else {
        klog().warn("cluster: member {} joined but its address is unknown here", id);
      }
    }
    for (auto& l : transport->stats())
      if (!c.contains(l.id) && !leavers.contains(l.id)) {
        leavers[l.id] = Leaver{replica->next_slot(), mono_ms() + kLeaverGraceMs};
        fd.remove(l.id);
      }
    for (auto id : c.members) leavers.erase(id);  // back again before its grace ended
    drop_leavers();
  }

  void drop_leavers() {
    int64_t now = mono_ms();
    for (auto it = leavers.begin(); it != leavers.end();) {
      auto rs = reported_slot.find(it->first);
      bool caught_up = rs != reported_slot.end() && rs->second >= it->second.until_slot;
      if (!caught_up && now < it->second.deadline_ms) {
        ++it;
        continue;
      }
      klog().info("cluster: closing the link to former member {} ({})", it->first,
                   caught_up ? "it has learned the configuration that removed it" : "it did not catch up in time");
      transport->remove_peer(it->first);
      reported_slot.erase(it->first);
      it = leavers.erase(it);
    }
  }

  void reconfigure(MembersChange change, Callback cb) {
    if (stopping) return cb(make_error(Errc::kUnavailable, "this node is stopping; the request was not submitted"));
    auto next = change(replica->config().members);
    if (!next) return cb(std::unexpected(next.error()));
    std::sort(next->begin(), next->end());
    next->erase(std::unique(next->begin(), next->end()), next->end());
    if (next->empty()) return cb(make_error(Errc::kInvalidArgument, "a configuration needs at least one member"));
    if (!replica->is_member())
      return cb(make_error(Errc::kUnavailable, fmt::format("node {} is not a member; ask a member", opt.node_id)));
    if (reachable() < replica->config().quorum()) {
      ++no_quorum;
      return cb(make_error(Errc::kUnavailable, fmt::format("no quorum: {}; the change was not applied", quorum_text())));
    }
    if (free_lanes.empty()) return cb(make_error(Errc::kLimitExceeded, "too many requests in flight"));
    size_t lane = free_lanes.back();
    auto& l = lanes[lane];
    rabia::Request r;
    r.client_id = l.client_id;
    r.seq = l.seq + 1;
    r.kind = rabia::Request::Kind::kReconfig;
    r.payload = rabia::encode_members(*next);
    if (auto st = replica->propose(r); !st) return cb(make_error(st.error().code, "reconfiguration refused: " + st.error().message));
    free_lanes.pop_back();
    l.seq = r.seq;
    pending[{r.client_id, r.seq}] = Pending{std::move(cb), {}, mono_ms() + opt.request_timeout_ms, lane};
    schedule_flush();
  }

  void fail_all(Errc code, const std::string& msg) {
    auto all = std::move(pending);
    pending.clear();
    for (auto& [k, p] : all) {
      free_lanes.push_back(p.lane);
      if (p.trace) [[unlikely]]
        end_span(*p.trace, p.read ? "read_barrier" : "write", p.read ? "not_served" : "unknown", msg);
      p.cb(make_error(code, msg));
    }
  }

  std::string quorum_text() const {
    return fmt::format("{} of {} members reachable, {} needed", reachable(), replica->config().n(),
                       replica->config().quorum());
  }

  void submit(char envelope, std::string command, Callback cb, std::function<std::string(StateMachine&)> read,
              std::unique_ptr<Traced> trace) {
    // A refusal: nothing was proposed, nothing will be applied.
    auto refuse = [&](const char* outcome, Error e) {
      if (trace) [[unlikely]]
        end_span(*trace, read ? "read_barrier" : "write", outcome, e.message);
      cb(std::unexpected(std::move(e)));
    };
    auto refused = [&](Errc code, std::string msg) { return Error{code, std::move(msg)}; };
    if (stopping) return refuse("refused", refused(Errc::kUnavailable, "this node is stopping; the request was not submitted"));
    if (command.size() > opt.max_command_bytes) {
      ++too_large;
      return refuse("refused",
                    refused(Errc::kLimitExceeded,
                            fmt::format("metadata command of {} bytes exceeds the limit of {} bytes "
                                        "(cluster.max_command_bytes); it was not applied",
                                        command.size(), opt.max_command_bytes)));
    }
    if (!fatal.empty()) return refuse("refused", refused(Errc::kIoError, "this node's consensus log failed: " + fatal));
    if (!replica->is_member())
      return refuse("refused", refused(Errc::kUnavailable,
                                       fmt::format("node {} is not a member of the current configuration", opt.node_id)));
    if (reachable() < replica->config().quorum()) {
      ++no_quorum;
      return refuse("no_quorum", refused(Errc::kUnavailable,
                                         fmt::format("no quorum: {}; the request was not applied", quorum_text())));
    }
    if (free_lanes.empty())
      return refuse("refused", refused(Errc::kLimitExceeded,
                                       fmt::format("too many metadata requests in flight on this node (limit {})", lanes.size())));
    size_t lane = free_lanes.back();
    auto& l = lanes[lane];
    rabia::Request r;
    r.client_id = l.client_id;
    r.seq = l.seq + 1;
    r.kind = rabia::Request::Kind::kCommand;
    r.payload.reserve(command.size() + 1);
    r.payload.push_back(envelope);
    r.payload += command;
    const uint64_t first_slot = replica->next_slot();
    auto st = replica->propose(r);
    if (!st) {
      Errc c = st.error().code == Errc::kLimitExceeded ? Errc::kLimitExceeded : st.error().code;
      return refuse("refused", refused(c, "metadata request refused: " + st.error().message));
    }
    if (trace) [[unlikely]] {
      trace->proposed_unix_ns = unix_ns();
      trace->first_slot = first_slot;
    }
    free_lanes.pop_back();
    l.seq = r.seq;
    pending[{r.client_id, r.seq}] =
        Pending{std::move(cb), std::move(read), mono_ms() + opt.request_timeout_ms, lane, std::move(trace)};
    schedule_flush();
  }

  void on_message(uint32_t from, MsgType type, std::string payload) {
    if (stopping) return;
    if (type == MsgType::kHeartbeat) {
      auto h = decode_heartbeat(payload);
      if (!h || h->node_id != from) return;
      reported_slot[from] = h->last_decided_slot;
      for (auto& c : fd.heartbeat(from, mono_ms())) status_changed(c);
      return;
    }
    if (type != MsgType::kRabia) return;
    auto m = rabia::decode_message(payload);
    if (!m) {
      klog().warn("cluster: dropping a malformed consensus message from node {}: {}", from, m.error().message);
      return;
    }
    if (m->from != from) return;  // a member speaks only for itself
    replica->step(*m);
    schedule_flush();
  }

  void status_changed(const StatusChange& c) {
    auto text = fmt::format("cluster: member {} is {} (was {})", c.member, member_status_name(c.to),
                            member_status_name(c.from));
    if (c.to == MemberStatus::kSuspect) observe::signal(observe::Signal::kMemberSuspected, text);
    else if (c.to == MemberStatus::kDead) observe::signal(observe::Signal::kMemberDead, text);
    else if (c.to == MemberStatus::kAlive) observe::signal(observe::Signal::kMemberAlive, text);
    else klog().info("{}", text);
    // Silence on a link TCP still calls up is what a partition looks like: redial it now
    // rather than wait for the kernel's retransmission backoff to notice (PeerTransport).
    if (transport && (c.to == MemberStatus::kSuspect || c.to == MemberStatus::kDead) &&
        transport->reconnect(c.member, fmt::format("nothing heard from member {} for {} ms; redialling", c.member,
                                                   fd.silence_ms(c.member, mono_ms()))))
      klog().info("cluster: closed the link to member {} ({}) to redial it", c.member, member_status_name(c.to));
    for (auto& h : status_hooks) h(c);
  }

  void tick() {
    if (stopping) return;
    replica->tick(core_now());
    int64_t now = mono_ms();
    for (auto& c : fd.tick(now)) status_changed(c);
    if (!leavers.empty()) drop_leavers();
    if (now - last_hb_ms >= opt.heartbeat_ms) {
      last_hb_ms = now;
      Heartbeat h{opt.node_id, ++hb_seq, replica->next_slot(), replica->config().epoch};
      auto payload = encode_heartbeat(h);
      for (auto id : replica->config().members)
        if (id != opt.node_id) transport->send(id, MsgType::kHeartbeat, payload);
    }
    // Requests past their deadline: no quorum answered in time.
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline_ms > now) {
        ++it;
        continue;
      }
      auto p = std::move(it->second);
      it = pending.erase(it);
      free_lanes.push_back(p.lane);
      ++timed_out;
      // Submitted, so no longer ours to refuse: the core keeps it queued and peers may hold
      // it, so it can still be decided. Only a read (a barrier) is known to have changed nothing.
      auto err = make_error(Errc::kTimeout,
                      p.read ? fmt::format("the linearizable read was not served within {} ms ({}); nothing was changed, "
                                           "retrying is safe",
                                           opt.request_timeout_ms, quorum_text())
                             : fmt::format("outcome unknown: the request was submitted but not decided within {} ms ({}); "
                                           "it may still be applied later, so read before retrying a write that is not "
                                           "idempotent",
                                           opt.request_timeout_ms, quorum_text()));
      if (p.trace) [[unlikely]]
        end_span(*p.trace, p.read ? "read_barrier" : "write", "timeout", err.error().message);
      p.cb(std::move(err));
    }
    if (rate.empty() || now - rate.back().first >= 1000) {
      rate.emplace_back(now, replica->stats().slots_decided);
      while (rate.size() > 6) rate.pop_front();
    }
    schedule_flush();
    ticker.expires_after(std::chrono::milliseconds(opt.tick_ms));
    ticker.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->tick();
    });
  }

  DriverStatus status() {
    DriverStatus s;
    s.node_id = opt.node_id;
    s.cluster_id = opt.cluster_id;
    auto& c = replica->config();
    s.config_epoch = c.epoch;
    s.config_members = c.members;
    int64_t now = mono_ms();
    auto links = transport->stats();
    std::vector<PeerAddress> shown;
    for (auto id : c.members) {
      auto a = address_of(id);
      shown.push_back(a ? *a : PeerAddress{id, "?", 0});
    }
    for (auto& m : opt.members)
      if (!c.contains(m.id) && m.id == opt.node_id) shown.push_back(m);  // a learner shows itself
    for (auto& m : shown) {
      MemberInfo mi;
      mi.id = m.id;
      mi.address = fmt::format("{}:{}", m.host, m.port);
      mi.self = m.id == opt.node_id;
      if (mi.self) {
        mi.connected = true;
        mi.status = fatal.empty() ? MemberStatus::kAlive : MemberStatus::kDead;
        mi.silence_ms = 0;
        mi.last_decided_slot = replica->next_slot();
      } else {
        mi.connected = transport->connected(m.id);
        for (auto& l : links)
          if (l.id == m.id && !mi.connected) mi.link_error = l.last_error;
        mi.status = fd.status(m.id);
        mi.silence_ms = fd.silence_ms(m.id, now);
        mi.last_decided_slot = reported_slot[m.id];
      }
      s.members.push_back(mi);
    }
    s.quorum = reachable() >= c.quorum();
    s.next_slot = replica->next_slot();
    s.applied_commands = applied_commands;
    s.pending = replica->pending();
    s.in_flight = pending.size();
    if (rate.size() >= 2 && rate.back().first > rate.front().first)
      s.decisions_per_s = static_cast<double>(rate.back().second - rate.front().second) * 1000.0 /
                          static_cast<double>(rate.back().first - rate.front().first);
    auto& st = replica->stats();
    s.slots_decided = st.slots_decided;
    s.decided_by_vote = st.decided_by_vote;
    s.decided_by_transfer = st.decided_by_transfer;
    s.decided_phase1 = st.decided_phase1;
    s.phases_total = st.phases_total;
    s.null_decisions = st.null_decisions;
    s.coin_flips = st.coin_flips;
    s.rebroadcasts = st.rebroadcasts;
    s.snapshots_installed = st.snapshots_installed;
    s.snapshots_sent = st.snapshots_sent;
    s.snapshot_chunks_sent = st.snapshot_chunks_sent;
    s.snapshot_chunks_received = st.snapshot_chunks_received;
    s.snapshot_transfers_discarded = st.snapshot_transfers_discarded;
    s.snapshot_transfers_failed = st.snapshot_transfers_failed;
    s.messages_oversized = oversized;
    s.commands_too_large = too_large;
    s.log_bytes = log.bytes();
    s.log_syncs = log.syncs();
    s.snapshots_written = snapshots_written;
    s.commands_per_sync_x100 = log.syncs() ? commands_synced * 100 / log.syncs() : 0;
    s.requests_no_quorum = no_quorum;
    s.requests_timed_out = timed_out;
    return s;
  }
};

Driver::Driver(DriverOptions opt, std::shared_ptr<StateMachine> sm)
    : impl_(std::make_shared<Impl>(std::move(opt), std::move(sm))) {}

Driver::~Driver() { stop(); }

Result<int> Driver::start() {
  auto& im = *impl_;
  KEEL_ASSERT(im.opt.max_in_flight > 0 && im.opt.max_in_flight <= 65535);
  im.log.set_keyring(im.opt.keyring);
  auto records = im.log.open(im.opt.data_dir);
  if (!records) return std::unexpected(records.error());
  if (im.log.torn_bytes_dropped())
    klog().warn("cluster: dropped {} bytes of an unfinished record at the end of {}", im.log.torn_bytes_dropped(), im.log.path());
  rabia::Options ro;
  ro.self = im.opt.node_id;
  ro.initial = im.initial_config();
  ro.max_batch = im.opt.max_batch;
  ro.log_retain = im.opt.log_retain;
  ro.propose_delay_ms = im.opt.propose_delay_ms;
  ro.start_timeout_ms = im.opt.start_timeout_ms;
  ro.max_pending = std::max<size_t>(10000, im.opt.max_in_flight * 2);
  // Byte bounds: refuse settings under which a message could outgrow a peer frame.
  ro.max_request_bytes = im.opt.max_command_bytes + 1;  // + the envelope byte
  ro.max_batch_bytes = im.opt.max_batch_bytes;
  ro.snapshot_chunk_bytes = im.opt.snapshot_chunk_bytes;
  if (im.opt.snapshot_chunk_bytes == 0)
    return make_error(Errc::kInvalidArgument, "cluster.snapshot_chunk_bytes must be at least 1");
  if (ro.max_request_bytes > rabia::Limits{}.max_payload_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("cluster.max_command_bytes = {} is above the largest request the consensus codec "
                                  "accepts ({} bytes)", im.opt.max_command_bytes, rabia::Limits{}.max_payload_bytes - 1));
  if (ro.max_request_bytes + rabia::kRequestOverheadBytes + rabia::kBatchOverheadBytes > ro.max_batch_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("cluster.max_batch_bytes = {} cannot hold one command of cluster.max_command_bytes = {}; "
                                  "allowed: max_batch_bytes >= max_command_bytes + {}",
                                  im.opt.max_batch_bytes, im.opt.max_command_bytes,
                                  1 + rabia::kRequestOverheadBytes + rabia::kBatchOverheadBytes));
  if (rabia::max_message_bytes(ro) > im.opt.max_frame_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("cluster.max_batch_bytes = {} and cluster.snapshot_chunk_bytes = {} make consensus "
                                  "messages of up to {} bytes, above the peer frame limit of {} bytes; lower them",
                                  im.opt.max_batch_bytes, im.opt.snapshot_chunk_bytes, rabia::max_message_bytes(ro),
                                  im.opt.max_frame_bytes));
  im.replica = std::make_unique<rabia::Replica>(ro, *records);
  im.tail = std::move(*records);
  im.log_bytes_at_snapshot = im.log.bytes();  // counts from here until the next snapshot
  // Rebuild the state machine from the snapshot and the decided log (no messages, no persist).
  im.flush();
  if (!im.fatal.empty()) return make_error(Errc::kIoError, im.fatal);
  klog().info("cluster: node {} of '{}' recovered {} slots from {} ({} bytes)", im.opt.node_id, im.opt.cluster_id,
               im.replica->next_slot(), im.log.path(), im.log.bytes());

  uint64_t nonce = system_seed() & 0xffffffffu;
  im.lanes.resize(im.opt.max_in_flight);
  for (size_t i = 0; i < im.lanes.size(); ++i) {
    im.lanes[i].client_id = (uint64_t{im.opt.node_id} << 48) | (nonce << 16) | i;
    im.free_lanes.push_back(im.lanes.size() - 1 - i);
  }

  TransportOptions to;
  to.cluster_id = im.opt.cluster_id;
  to.node_id = im.opt.node_id;
  to.bind = im.opt.bind;
  to.port = im.opt.peer_port;
  to.tls = im.opt.tls;
  to.config_epoch = im.replica->config().epoch;
  to.limits.max_payload_bytes = static_cast<uint32_t>(im.opt.max_frame_bytes);
  if (!im.opt.join) to.initial_members = im.initial_config().members;
  for (auto& m : im.opt.members)
    if (m.id != im.opt.node_id && im.replica->config().contains(m.id)) to.peers.push_back(m);
  std::weak_ptr<Impl> weak = impl_;
  im.transport = std::make_unique<PeerTransport>(
      im.io, to, [weak](uint32_t from, MsgType t, std::string p) {
        if (auto s = weak.lock()) s->on_message(from, t, std::move(p));
      });
  auto port = im.transport->start();
  if (!port) return std::unexpected(port.error());
  for (auto& p : to.peers) im.fd.add(p.id, im.mono_ms());
  im.tick();
  im.thread = std::thread([self = impl_] { self->io.run(); });
  return *port;
}

void Driver::stop() {
  auto& im = *impl_;
  if (!im.thread.joinable()) return;
  std::promise<void> done;
  asio::post(im.io, [&] {
    im.stopping = true;
    im.flush();  // persist what was decided
    im.fail_all(Errc::kTimeout, "outcome unknown: this node is stopping while the request was submitted; the other "
                                "members may still apply it");
    im.ticker.cancel();
    im.transport->stop();
    done.set_value();
  });
  done.get_future().wait();
  im.io.stop();
  im.thread.join();
}

namespace {
// The span to make of a submission, if it is for a sampled request and spans are wanted.
std::unique_ptr<Driver::Impl::Traced> traced(const DriverOptions& opt, std::optional<observe::TraceParent>& trace) {
  if (!trace || !trace->sampled() || !opt.span_sink) return nullptr;
  auto t = std::make_unique<Driver::Impl::Traced>();
  t->parent = std::move(*trace);
  t->start_unix_ns = unix_ns();
  return t;
}
}  // namespace

void Driver::submit(std::string command, Callback cb) { submit(std::move(command), std::move(cb), std::nullopt); }

void Driver::submit(std::string command, Callback cb, std::optional<observe::TraceParent> trace) {
  auto t = trace ? traced(impl_->opt, trace) : nullptr;
  asio::post(impl_->io, [self = impl_, c = std::move(command), cb = std::move(cb), t = std::move(t)]() mutable {
    self->submit(kEnvCommand, std::move(c), std::move(cb), {}, std::move(t));
  });
}

void Driver::read_barrier(std::function<std::string(StateMachine&)> read, Callback cb) {
  read_barrier(std::move(read), std::move(cb), std::nullopt);
}

void Driver::read_barrier(std::function<std::string(StateMachine&)> read, Callback cb,
                          std::optional<observe::TraceParent> trace) {
  auto t = trace ? traced(impl_->opt, trace) : nullptr;
  asio::post(impl_->io, [self = impl_, r = std::move(read), cb = std::move(cb), t = std::move(t)]() mutable {
    self->submit(kEnvBarrier, std::string(), std::move(cb), std::move(r), std::move(t));
  });
}

void Driver::post(std::function<void()> f) { asio::post(impl_->io, std::move(f)); }

void Driver::reconfigure(MembersChange change, Callback cb) {
  asio::post(impl_->io, [self = impl_, change = std::move(change), cb = std::move(cb)]() mutable {
    self->reconfigure(std::move(change), std::move(cb));
  });
}

void Driver::set_address_book(std::function<std::optional<PeerAddress>(uint32_t)> lookup) {
  asio::post(impl_->io, [self = impl_, f = std::move(lookup)]() mutable { self->address_book = std::move(f); });
}

void Driver::after(int64_t ms, std::function<void()> f) {
  asio::post(impl_->io, [self = impl_, ms, f = std::move(f)]() mutable {
    if (self->stopping) return;
    auto t = std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(ms));
    t->async_wait([self, t, f = std::move(f)](const boost::system::error_code& ec) {
      if (!ec && !self->stopping) f();
    });
  });
}

void Driver::on_applied(std::function<void()> f) {
  asio::post(impl_->io, [self = impl_, f = std::move(f)]() mutable { self->applied_hooks.push_back(std::move(f)); });
}

void Driver::on_installed(std::function<void()> f) {
  asio::post(impl_->io, [self = impl_, f = std::move(f)]() mutable { self->installed_hooks.push_back(std::move(f)); });
}

void Driver::on_member_status(std::function<void(const StatusChange&)> f) {
  asio::post(impl_->io, [self = impl_, f = std::move(f)]() mutable { self->status_hooks.push_back(std::move(f)); });
}

DriverStatus Driver::status_on_driver_thread() { return impl_->status(); }

DriverStatus Driver::status() {
  if (!impl_->thread.joinable()) return {};
  std::promise<DriverStatus> p;
  asio::post(impl_->io, [&] { p.set_value(impl_->status()); });
  return p.get_future().get();
}

Result<std::map<uint32_t, uint64_t>> Driver::reseal_log() {
  if (!impl_->thread.joinable()) return make_error(Errc::kUnavailable, "the cluster metadata driver is not running");
  std::promise<Status> p;
  asio::post(impl_->io, [&] { p.set_value(impl_->log.reseal()); });
  if (auto st = p.get_future().get(); !st) return std::unexpected(st.error());
  return impl_->log.key_versions();
}

}  // namespace keel::cluster
