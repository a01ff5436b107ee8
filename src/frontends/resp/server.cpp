#include "frontends/resp/server.h"
#include "frontends/resp/server_async.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>
#include <future>
#include <list>
#include <map>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/assert.h"
#include "base/clock.h"
#include "base/slots.h"
#include "frontends/resp/cache_admin.h"
#include "frontends/resp/route_admin.h"
#include "frontends/resp/transit_admin.h"
#include "security/client_limits.h"
#include "security/acl_service.h"
#include "security/audit.h"
#include "security/tls.h"
#include "frontends/resp/family_util.h"
#include "frontends/resp/key_events.h"
#include "frontends/resp/pubsub_registry.h"
#include "frontends/resp/scratch_engine.h"
#include "services/cache/service.h"
#include "dht/service_async.h"
#include "observe/log_context.h"
#include "observe/slowlog.h"
#include "observe/tracer.h"
#include "runtime/shards.h"
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kResp); }
}  // namespace

namespace keel::resp {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kFlushThreshold = 64 * 1024;  // write replies mid-batch past this size
constexpr size_t kParseAhead = 32;              // requests parsed before any of them runs
// A subscribed connection stops reading requests while this much output waits behind the
// write in flight (the output-buffer limit bounds what messages add; this bounds replies).
constexpr size_t kPushBackpressure = 1 << 20;

// The reply for a write whose commit failed: MISCONF when the disk refuses (full or failing).
// "10.0.0.7:51022" -> "10.0.0.7" (also "::1:51022" -> "::1"): lockout counts per address.
std::string client_ip(std::string_view addr) {
  size_t colon = addr.rfind(':');
  return std::string(colon == std::string_view::npos ? addr : addr.substr(0, colon));
}

std::string durable_error(const Error& e) {
  if (e.code == Errc::kDiskError) return "MISCONF " + e.message;
  return "ERR the write could not be made durable: " + e.message;
}

// A request parsed ahead: its arguments are flat[first, first + argc); argc = 0 for an empty
// request (a blank line) that only consumes bytes.
// The command is looked up once, when parsed; the routed key's partition is computed once, when
// prefetched (kNoPartition if it was not).
constexpr uint32_t kNoPartition = UINT32_MAX;
struct Pending {
  size_t first, argc, consumed;
  const CommandSpec* spec = nullptr;
  uint32_t partition = kNoPartition;
};

struct Blocker;

struct Connection final : PubSubSink {
  tcp::socket sock;
  unsigned shard;
  ClientState client;
  std::string out;
  Reply reply{out};
  bool error_reply = false;
  bool dirty = false;  // writes on this connection's shard not yet committed
  // Client connections (serve_stream): the writes it made on other shards are committed with
  // those shards' group commits before its replies go out (commit_group), not one by one.
  bool group_commits = false;
  std::vector<unsigned> dirty_shards;  // other shards holding its uncommitted writes
  int64_t now_ms = 0;
  bool forwarded = false;  // a request another node forwarded here: never forwarded again
  uint32_t forwarded_from = 0;  // then: the node that forwarded it
  // Cluster mode: the partitions of the command being run (checked on their shard) and what
  // its reply must wait for (partition, lsn) before it is acknowledged.
  std::vector<uint32_t> parts;
  std::vector<dht::Wait> waits;
  std::optional<Error> write_error;
  // The command may be answered by a replica copy here (replica_ok: a read of a cache with
  // readFrom replica, or a read on a READONLY connection); replica_read: route() chose to.
  bool replica_ok = false, replica_read = false;
  struct Deferred {
    size_t begin, end;    // the reply's bytes in `out`
    size_t wbegin, wend;  // what it waits for: deferred_waits[wbegin, wend)
  };
  std::vector<Deferred> deferred;
  // Flat, and kept with their capacity from one batch to the next: no allocation per write.
  std::vector<dht::Wait> deferred_waits;
  std::vector<dht::Wait> settle_waits;  // settle(): merged, in shard order
  // Spans of traced commands whose replies wait for their write quorum (deferred[index]):
  // recorded by settle() once the wait is over, so that they cover it.
  struct HeldSpan {
    observe::SpanData span;
    size_t index;
  };
  std::vector<HeldSpan> held_spans;
  void defer(size_t begin, const std::vector<dht::Wait>& ws) {
    size_t wb = deferred_waits.size();
    deferred_waits.insert(deferred_waits.end(), ws.begin(), ws.end());
    deferred.push_back({begin, out.size(), wb, deferred_waits.size()});
  }
  // Drops the held-back replies from `begin` on (their bytes were cut from `out`).
  void undefer(size_t begin) {
    while (!deferred.empty() && deferred.back().begin >= begin) {
      deferred_waits.resize(deferred.back().wbegin);
      deferred.pop_back();
    }
    std::erase_if(held_spans, [&](const HeldSpan& h) { return h.index >= deferred.size(); });
  }
  // Tracing (tracer != null), the command running now. `head`: the sampler's head decision
  // (a remote parent's sampled flag, else the trace id ratio on `low`). `ctx`: its trace and
  // span ids when it has a trace context (a remote parent: CLIENT TRACEPARENT, the HTTP
  // request or the forwarding node's span; or sampled as a new trace), drawn before it runs so
  // that what its handler logs carries them (observe/log_context.h) and a forward to the
  // partition's primary carries them on. An unsampled command without a parent has none.
  struct CmdTrace {
    std::optional<observe::LogContext> ctx;
    // The connection's trace context (CLIENT TRACEPARENT) as the command began: its span's
    // parent even if the command changes it (CLIENT TRACEPARENT CLEAR is the caller's child, not
    // a second root of its trace).
    std::optional<observe::TraceParent> parent;
    bool head = false;
    uint64_t low = 0;
    uint32_t forwarded_to = 0;  // the node this command was forwarded to, or 0
  } trace;
  // MULTI / EXEC / WATCH.
  struct Tx {
    bool multi = false;
    bool aborted = false;  // a command could not be queued: EXEC answers EXECABORT
    std::vector<std::vector<std::string>> queued;
    std::shared_ptr<WatchFlag> flag = std::make_shared<WatchFlag>();
    struct Watched {
      std::string key;
      unsigned shard;
      int64_t expire_at_ms;  // when WATCHed (0: none, or absent)
    };
    std::vector<Watched> watched;
    int64_t slot = -1;  // cluster mode: the slot every key of the transaction is in
  } tx;
  int gates = 0;  // > 0: holds shard gates (running EXEC or an atomic multi-key command)
  bool deny_blocking = false;  // inside EXEC, or no client to block for (HTTP, forwarded)
  bool blocked = false;        // waiting in a blocking command (the idle sweep spares it)
  bool internal = false;       // no client socket: HTTP's run() or a forwarded request
  Blocker* blocker = nullptr;  // while blocked: woken as by a hangup if the outbox dies
  // Pub/sub. Once the connection subscribed, everything it sends goes through `ob`: messages
  // from any shard or node are appended while the connection waits for requests, and the
  // replies of its commands are appended in order behind them. One write is in flight at a
  // time; the pubsub output-buffer limit is checked on every append (Redis's
  // checkClientOutputBufferLimits).
  struct Outbox {
    bool active = false;   // everything goes through here from now on
    bool dead = false;     // cut off, or a write failed: output is dropped
    bool writing = false;  // `inflight` is being written
    bool kick_posted = false;  // a write starts once the current handler returns
    std::string queued, inflight;
    int64_t soft_since_ms = 0;  // since when the output has been at or above the soft limit
    std::function<void()> start;  // async_write(inflight) on the connection's stream
    asio::steady_timer* waiter = nullptr;  // cancelled when a write ends or the outbox dies
  } ob;
  Server::Impl* owner = nullptr;
  explicit Connection(tcp::socket s, unsigned sh) : sock(std::move(s)), shard(sh) {}
  void message(PubKind kind, const std::string* pattern, std::string_view channel,
               std::string_view payload) override;
};

// A client blocked in BLPOP & co., with the timer it sleeps on (key_events.h).
struct Blocker final : BlockedClient {
  explicit Blocker(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
  // On the client's shard's thread only:
  bool served = false;    // a shard claimed and served it (reply filled)
  bool hangup = false;    // the peer closed the connection
  bool readable = false;  // more requests arrived (pipelined): stop watching for a hangup
};


struct PerShard {
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<tcp::acceptor> tls_acceptor;  // shard 0, while TLS is on
  std::list<Connection*> connections;
  KeyEvents events;      // watched keys, blocked clients, the gate (key_events.h)
  bool serving = false;  // serve_ready() is running
  // Pub/sub: the subscriptions of this shard's connections (and SSE streams), and where to
  // deliver to each subscriber id.
  PubSubRegistry pubsub;
  std::unordered_map<uint64_t, PubSubSink*> sinks;
  // pubsub.clients(), readable from any shard: a PUBLISH skips shards without subscribers. A
  // subscription stored before its confirmation was sent is seen by any later PUBLISH.
  std::atomic<size_t> subscribers{0};
  // Cache names this shard looked up in metadata and found absent, until when (wall ms): a
  // client naming a cache that does not exist costs a metadata read every 200 ms, not one per
  // command. (A cache created elsewhere within those 200 ms is known once this node's catalog
  // follows the metadata, a few ms later.)
  std::unordered_map<std::string, int64_t> absent_caches;
  // Group commit (an engine whose commit does I/O): the connections whose writes wait for the
  // next commit, run once the loop has served every connection that was ready (commit_group).
  struct CommitWaiter {
    asio::steady_timer* timer = nullptr;
    bool ok = false;
  };
  std::vector<CommitWaiter*> commit_waiters;
  bool commit_posted = false;
};

// Splits a reply made of `n` top-level RESP values (bulk, null, integer, simple, error) into
// its elements. Used to merge per-shard MGET replies in key order.
std::vector<std::string_view> split_values(std::string_view s) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find("\r\n", pos);
    if (nl == std::string_view::npos) break;
    size_t end = nl + 2;
    if (s[pos] == '$') {
      int64_t len = 0;
      parse_int64(s.substr(pos + 1, nl - pos - 1), len);
      if (len >= 0) end = nl + 2 + static_cast<size_t>(len) + 2;
    }
    out.push_back(s.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

// "*N\r\n<rest>" → (N, rest); ":N\r\n" → N.
int64_t reply_header_number(std::string_view s, std::string_view& rest) {
  size_t nl = s.find("\r\n");
  int64_t n = 0;
  parse_int64(s.substr(1, nl - 1), n);
  rest = s.substr(nl + 2);
  return n;
}

bool allowed_when_subscribed(std::string_view name) {
  return name == "ping" || name == "subscribe" || name == "ssubscribe" || name == "psubscribe" ||
         name == "unsubscribe" || name == "sunsubscribe" || name == "punsubscribe" || name == "quit" ||
         name == "reset";
}

// The name Redis reports for a command in errors: "config|get" for a container's subcommand.
std::string full_name(const CommandSpec& spec, Args argv) {
  static const std::set<std::string_view> kContainers = {
      "client", "config", "command", "cluster", "object", "memory", "pubsub", "script",
      "function", "xinfo", "xgroup", "acl", "latency", "slowlog", "module"};
  std::string name(spec.name);
  if (argv.size() >= 2 && kContainers.count(spec.name)) name += "|" + to_lower(argv[1]);
  return name;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return out;
}

}  // namespace

struct Server::Impl {
  runtime::ShardSet& shards;
  NodeView& node;
  ServerOptions opt;
  InfoFormatter info;
  std::vector<PerShard> per_shard;
  std::atomic<uint64_t> open{0};
  std::atomic<uint64_t> next_client_id{1};
  std::atomic<bool> stopping{false};
  int bound_tls_port = 0;
  // Changeable at run time (CONFIG SET maxclients / timeout).
  std::atomic<uint64_t> max_clients;
  std::atomic<uint64_t> timeout_s;
  std::atomic<uint64_t> obuf_hard, obuf_soft, obuf_soft_s;  // PubSubLimits, CONFIG SET-able
  cache::Service* caches = nullptr;  // CACHE.* (set before start)
  routing::Service* routes = nullptr;  // ROUTE.* (set before the shards run)
  security::TransitService* transit = nullptr;  // TRANSIT.* (set before the shards run)
  security::SecretsService* secrets = nullptr;  // SECRET.* (set before the shards run)
  std::shared_ptr<security::ClientLimits> client_limits;  // per user / address (set before the shards run)
  std::shared_ptr<security::ClientLimits> connection_limits;  // limits.address_connections (null: none)
  security::AclService* acl_service = nullptr;  // users and access rules (set before start)
  security::Acl* acl = nullptr;
  dht::Service* dht = nullptr;  // cluster mode: routing, forwarding, replication
  observe::Tracer* tracer = nullptr;  // set before start: spans of commands (observe/tracer.h)
  observe::SlowLog* slow = nullptr;   // the node's slow log (null: none)

  Impl(runtime::ShardSet& s, NodeView& n, ServerOptions o, InfoFormatter f)
      : shards(s), node(n), opt(std::move(o)), info(std::move(f)), per_shard(s.size()),
        max_clients(opt.max_clients), timeout_s(opt.timeout_s),
        obuf_hard(opt.pubsub_limits.hard_bytes), obuf_soft(opt.pubsub_limits.soft_bytes),
        obuf_soft_s(opt.pubsub_limits.soft_s) {
    slow = node.slowlog();
    for (unsigned i = 0; i < shards.size(); ++i) {
      auto& ev = per_shard[i].events;
      ev.set_partitions(shards.partitions());
      // A key became ready outside a command (a write by another path): serve it soon.
      ev.on_ready = [this, i] { asio::post(shards.shard(i).io, [this, i] { serve_ready(i); }); };
      if (auto* e = shards.shard(i).engine) e->set_key_observer(&ev);
    }
  }
  ~Impl() {
    if (acl) acl->set_on_change(nullptr);
    for (unsigned i = 0; i < shards.size(); ++i)
      if (auto* e = shards.shard(i).engine) e->set_key_observer(nullptr);
  }

  // co_await when_free(sid, f): runs f() on shard `sid` once no connection holds its gate (at
  // once if none does; else after the holder opens it, in arrival order), then resumes the
  // caller on its own executor.
  template <class F>
  auto when_free(unsigned sid, F& f) {
    auto& target = shards.shard(sid);
    auto& ev = per_shard[sid].events;
    return asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&target, &ev, &f](auto handler) {
          auto attempt = [&ev, &f](auto h) {
            auto finish = [&f](auto hh) {
              f();
              auto ex = asio::get_associated_executor(hh);
              asio::post(ex, std::move(hh));
            };
            if (!ev.gate.held) return finish(std::move(h));
            ev.gate.waiting.emplace_back(
                [finish, h = std::move(h)]() mutable { finish(std::move(h)); });
          };
          if (runtime::ShardSet::current() == static_cast<int>(target.id))
            attempt(std::move(handler));
          else
            asio::post(target.io, [attempt, h = std::move(handler)]() mutable { attempt(std::move(h)); });
        },
        asio::use_awaitable);
  }
  // Closes the gates of `sids` (sorted, distinct: the fixed order makes two transactions
  // unable to wait for each other) for connection `c`; its commands pass them until
  // unlock_shards. Other clients' commands on those shards wait; blocked clients are served
  // when the gates open.
  awaitable<void> lock_shards(Connection& c, const std::vector<unsigned>& sids);
  awaitable<void> unlock_shards(Connection& c, const std::vector<unsigned>& sids);

  // Transactions (MULTI EXEC DISCARD WATCH UNWATCH).
  awaitable<void> execute_tx(Connection& c, const CommandSpec& spec, Args argv);
  void queue_command(Connection& c, const CommandSpec& spec, Args argv);
  awaitable<void> watch(Connection& c, Args argv);
  awaitable<void> exec(Connection& c);
  awaitable<void> unwatch_all(Connection& c);
  void discard_tx(Connection& c) {
    c.tx.multi = false;
    c.tx.aborted = false;
    c.tx.queued.clear();
    c.tx.slot = -1;
  }
  // Cluster mode: "" if this node is the primary of `key`'s partition, else the error to send.
  std::string not_here(Connection& c, std::string_view key);

  // Blocking commands.
  awaitable<void> block(Connection& c, const CommandSpec& spec, Args argv);
  bool ready_for(unsigned sid, const BlockedClient& b, std::string_view key, int64_t now_ms);
  void serve_blocked(unsigned sid, BlockedClient& b, std::string_view key, int64_t now_ms);
  // Serves the clients blocked on this shard's ready keys, first blocked first (on the shard's
  // thread; not while its gate is closed).
  void serve_ready(unsigned sid);

  // Pub/sub (see "Pub/sub" below).
  awaitable<void> execute_pubsub(Connection& c, const CommandSpec& spec, Args argv);
  awaitable<void> pubsub_introspect(Connection& c, Args argv);
  std::string shard_channel_refusal(Connection& c, Args argv);
  // Delivers a message to the subscribers of every shard of this node; returns how many.
  awaitable<int64_t> publish_here(unsigned from, bool shard_channel, std::string_view channel,
                                  std::string_view message);
  // A message from another node (the data plane, any thread): delivered on every shard.
  void publish_from_peer(bool shard_channel, std::string channel, std::string message);
  size_t deliver(unsigned sid, bool shard_channel, std::string_view channel, std::string_view message);
  void push_message(Connection& c, PubKind kind, const std::string* pattern, std::string_view channel,
                    std::string_view payload);
  void outbox_added(Connection& c);
  void kick(Connection& c);
  void written(Connection& c, boost::system::error_code ec, size_t n);
  void cut_off(Connection& c, size_t pending);
  void wake_blocked(Connection& c);
  void pubsub_leave(Connection& c);
  void pubsub_changed(unsigned sid) {
    per_shard[sid].subscribers.store(per_shard[sid].pubsub.clients(), std::memory_order_release);
  }
  awaitable<void> pubsub_flush(Connection& c);
  awaitable<void> pubsub_finish(Connection& c);
  template <class Stream>
  awaitable<bool> write_out(Connection& c, Stream& stream);
  uint64_t next_sink_id() { return next_client_id.fetch_add(1); }

  awaitable<void> accept_loop(unsigned shard_id, bool tls);
  awaitable<void> idle_sweep(unsigned shard_id);

  // Commits this connection's writes on its own shard (group commit for the batch). On
  // failure the connection is dropped without its replies: the client must not take the
  // writes as acknowledged.
  bool commit_local(Connection& c) {
    if (!c.dirty) return true;
    c.dirty = false;
    auto st = shards.shard(c.shard).engine->commit();
    if (!st) {
      klog().error("closing client {} ({}) without replies: commit failed: {}", c.client.id,
                    c.client.addr, st.error().message);
      return false;
    }
    return true;
  }
  // The same, shared: when the shard's engine commits with I/O (a journal written or synced),
  // the connection waits for one commit made for every connection that wrote in this turn of
  // the shard's loop — as Redis writes and syncs its AOF once per event loop iteration, not
  // once per client. An engine that commits for free commits at once.
  awaitable<bool> commit_group(Connection& c);
  // On shard sid's thread: waits for that shard's next group commit; false if it failed.
  awaitable<bool> join_commit(unsigned sid);
  void run_group_commit(unsigned sid);
  // `slot`: the connection's place under limits.address_connections, held while it is served.
  awaitable<void> serve(tcp::socket sock, unsigned shard_id, bool tls, std::optional<security::ConnectionSlot> slot);
  // The connection's read-parse-execute-write loop over a plain socket or a TLS stream.
  template <class Stream>
  awaitable<void> serve_stream(Connection& c, Stream& stream);
  awaitable<void> execute(Connection& c, Args argv, const CommandSpec* spec, uint32_t partition);
  // ACL SETUSER / DELUSER (cluster metadata).
  awaitable<void> acl_admin(Connection& c, Args argv);
  // After a change of the users (any thread): each shard re-checks its subscribers, which send
  // no commands to be checked by: a deleted user, or a subscription its user may no longer
  // have, closes the connection (as Redis does).
  void acl_changed() {
    for (unsigned i = 0; i < shards.size(); ++i) asio::post(shards.shard(i).io, [this, i] { acl_sweep(i); });
  }
  void acl_sweep(unsigned sid);
  // AUTH and HELLO ... AUTH: the password is checked off the event loop first (Argon2id).
  awaitable<void> authenticate_command(Connection& c, const CommandSpec& spec, Args argv);
  // Re-reads the connection's user after an ACL change; false if the user was removed.
  // Who runs a command, for the audit log.
  static std::string caller(const Connection& c) { return c.client.user ? c.client.user->name : std::string("default"); }
  // An audit event with the command's trace ids (the log line's and the audit stream entry's).
  static void audit(const Connection& c, std::string_view event, const security::audit::Fields& fields) {
    std::optional<observe::LogScope> scope;
    if (c.trace.ctx) [[unlikely]]
      scope.emplace(&*c.trace.ctx);
    security::audit::emit(event, fields);
  }
  bool refresh_user(Connection& c) {
    c.client.acl_generation = acl->generation();
    auto u = acl->find(c.client.user->name);
    if (!u) return false;
    c.client.user = std::move(u);
    c.client.acl_open = c.client.user->unrestricted() && !c.client.token;
    return true;
  }
  // Before a command runs (tracer != null): its head decision and trace context (c.trace).
  void begin_trace(Connection& c, Args argv);
  // The parent to give the spans of work done elsewhere for the running command (its metadata
  // writes' Rabia decisions): the command's own span, when the command was sampled as it began
  // (a command kept afterwards by a tail rule has none).
  std::optional<observe::TraceParent> span_parent(const Connection& c) const {
    if (!tracer || !c.trace.ctx || !c.trace.head) return std::nullopt;
    observe::TraceParent p;
    p.trace_id = c.trace.ctx->trace_id;
    p.span_id = c.trace.ctx->span_id;
    p.flags = observe::kFlagSampled;
    if (c.client.trace_parent) p.trace_state = c.client.trace_parent->trace_state;
    return p;
  }
  // The sampler's verdict on a finished command, and its span if kept (tracer != null).
  // The trace id of the span kept for the command, if one was.
  std::optional<observe::TraceId> trace_command(Connection& c, const CommandSpec& spec, int64_t t0_ns, int64_t dt_ns, bool failed,
                     size_t reply_begin);
  void prefetch_keys(const Connection& c, std::vector<Pending>& batch,
                     const std::vector<std::string_view>& flat);
  awaitable<void> execute_key(Connection& c, const CommandSpec& spec, Args argv, uint32_t partition);
  awaitable<void> execute_multi_key(Connection& c, const CommandSpec& spec, Args argv,
                                    const std::vector<size_t>& key_pos);
  awaitable<void> execute_multi_key_locked(Connection& c, const CommandSpec& spec, Args argv,
                                           const std::vector<size_t>& key_pos);
  awaitable<void> execute_all(Connection& c, const CommandSpec& spec, Args argv);
  awaitable<void> execute_gathered(Connection& c, const CommandSpec& spec, Args argv,
                                   const std::vector<size_t>& key_pos);
  awaitable<Snapshot> collect();
  // Cluster mode, a key command: runs it here if this node is its partitions' primary (and
  // waits for the write quorum), else forwards it to the primary.
  awaitable<void> settle(Connection& c);
  awaitable<void> cluster_keys_in_slot(Connection& c, Args argv);
  static constexpr uint32_t kNowhere = UINT32_MAX;
  uint32_t route(Connection& c, Args argv, const std::vector<size_t>& keys, uint32_t first_part);
  awaitable<void> execute_forward(Connection& c, Args argv, uint32_t node);
  bool replica_eligible(const Connection& c, const CommandSpec& spec, Args argv) const;
  awaitable<void> pause(unsigned shard, int64_t ms);
  void after_routed(Connection& c, size_t before);
  void execute_forwarded(std::vector<std::string> argv, int protocol,
                         std::optional<observe::TraceParent> parent, uint32_t from,
                         std::function<void(std::string)> done, bool forwarded = true);
  awaitable<void> run_one(unsigned sid, std::vector<std::string> argv, int protocol,
                          std::optional<observe::TraceParent> parent, uint32_t from,
                          std::function<void(std::string)> done, bool forwarded);

  // Runs `spec.handler` with `argv` on shard `sid`, writing the reply into `out`.
  awaitable<void> run_handler(Connection& c, unsigned sid, const CommandSpec& spec, Args argv,
                              std::string& out, const char* routed_key = nullptr,
                              uint32_t routed_partition = 0);
};

// A command read a stored value the engine could not decrypt or decode (an at-rest key retired
// or unknown): the command answers with why instead of its reply, which took the key as absent.
static void answer_read_error(storage::Engine& engine, std::string& out, size_t before, int proto) {
  if (auto e = engine.take_read_error()) [[unlikely]] {
    out.resize(before);
    Reply(out, proto).error("ERR " + e->message);
  }
}

awaitable<void> Server::Impl::run_handler(Connection& c, unsigned sid, const CommandSpec& spec,
                                          Args argv, std::string& out, const char* routed_key,
                                          uint32_t routed_partition) {
  auto& target = shards.shard(sid);
  int proto = c.client.protocol;
  auto work = [&] {
    std::optional<observe::LogScope> log_scope;
    if (c.trace.ctx) [[unlikely]]
      log_scope.emplace(&*c.trace.ctx);
    CmdCtx ctx;
    ctx.engine = target.engine;
    ctx.partitions = shards.partitions();
    ctx.now_ms = c.now_ms;
    ctx.client = &c.client;
    ctx.node = &node;
    ctx.random = &target.random;
    ctx.caches = caches ? &caches->catalog(sid) : nullptr;
    ctx.acl = acl;
    ctx.routed_key = routed_key;
    ctx.routed_partition = routed_partition;
    ctx.replica_read = c.replica_read;
    size_t before = out.size();
    Reply r(out, proto);
    // Only this command's reads count: a read elsewhere (WATCH, a cross-shard command that took
    // an unreadable value as absent) must not answer for it.
    (void)target.engine->take_read_error();
    if (dht && !c.parts.empty() && !c.replica_read) {
      bool write = spec.flags & kWrite;
      for (uint32_t p : c.parts) {
        if (shards.owner(p) != sid) continue;
        if (auto e = dht->check_local(sid, p, write, c.now_ms); !e.empty()) return r.error(e);
      }
      spec.handler(ctx, argv, r);
      answer_read_error(*target.engine, out, before, proto);
      // Reads may expire keys (deletions to replicate) as well as writes. Recorded effects
      // are committed locally, then shipped to the replicas.
      const size_t had = c.waits.size();
      if (auto st = dht->after_write(sid, c.now_ms, c.waits, c.trace.ctx ? &*c.trace.ctx : nullptr); !st) {
        c.write_error = st.error();
      } else if (c.waits.size() > had) {
        // after_write commits these writes (at once, or in its group commit) before their waits end.
        for (size_t i = had; i < c.waits.size(); ++i) c.waits[i].quorum = ctx.write_quorum;  // a named cache's writeQuorum
        if (sid == c.shard) c.dirty = false;
        return;
      }
      // Nothing written (a read, or a write that changed nothing: SETNX on a taken key,
      // CACHE.GET): the reply may still show earlier writes, so it waits until they are held
      // as a write of this command would be — a read never shows a write a failover could
      // still lose.
      for (uint32_t p : c.parts)
        if (shards.owner(p) == sid)
          if (uint64_t lsn = dht->read_fence(sid, p, c.now_ms)) c.waits.push_back({p, lsn, ctx.write_quorum});
    } else {
      spec.handler(ctx, argv, r);
      answer_read_error(*target.engine, out, before, proto);
    }
    if (!(spec.flags & kWrite)) return;
    if (sid == c.shard) {
      c.dirty = true;  // committed once for the whole batch, before the replies are written
      return;
    }
    if (c.group_commits && target.engine->commit_does_io()) {
      // Another shard's write, joined to that shard's next group commit (commit_group).
      if (std::find(c.dirty_shards.begin(), c.dirty_shards.end(), sid) == c.dirty_shards.end())
        c.dirty_shards.push_back(sid);
      return;
    }
    // Another shard's write: commit it there before its reply can be sent.
    if (auto st = target.engine->commit(); !st) {
      out.resize(before);
      Reply(out, proto).error(durable_error(st.error()));
    }
  };
  // Clients blocked on keys this command filled are served right after it, before anything
  // else runs on the shard.
  auto work_then_serve = [&] {
    work();
    serve_ready(sid);
  };
  if (sid == c.shard && (c.gates > 0 || !per_shard[sid].events.gate.held)) {
    work_then_serve();
    co_return;
  }
  if (sid != c.shard) ++shards.shard(c.shard).stats.cross_shard_hops;
  if (c.gates > 0) co_await runtime::run_on(target, work_then_serve);
  else co_await when_free(sid, work_then_serve);
}

// Hands the engine of this connection's shard the keys of a parsed batch that it owns.
void Server::Impl::prefetch_keys(const Connection& c, std::vector<Pending>& batch,
                                 const std::vector<std::string_view>& flat) {
  storage::Engine::KeyRef keys[kParseAhead];
  size_t n = 0;
  for (Pending& p : batch) {
    const CommandSpec* spec = p.spec;
    if (p.argc < 2 || !spec || spec->routing != Routing::kKey || spec->first_key < 1 ||
        static_cast<size_t>(spec->first_key) >= p.argc || spec->streams_keys)
      continue;
    std::string_view key = flat[p.first + static_cast<size_t>(spec->first_key)];
    uint32_t part = key_partition(key, shards.partitions());
    p.partition = part;
    if (shards.owner(part) == c.shard) keys[n++] = {part, key};
  }
  if (n > 1) shards.shard(c.shard).engine->prefetch({keys, n});
}

// `spec` is find_command(argv[0]) (null: unknown command); `partition` is the routed key's
// partition if the caller computed it, else kNoPartition.
awaitable<void> Server::Impl::execute(Connection& c, Args argv, const CommandSpec* spec,
                                      uint32_t partition) {
  auto& r = c.reply;
  r.set_protocol(c.client.protocol);
  if (!spec) {
    if (c.tx.multi) c.tx.aborted = true;
    std::string args;
    for (size_t i = 1; i < argv.size() && args.size() < 128; ++i)
      args += fmt::format("'{}' ", argv[i].substr(0, 128));
    r.error(fmt::format("ERR unknown command '{}', with args beginning with: {}",
                        argv[0].substr(0, 128), args));
    co_return;
  }
  if (!arity_ok(*spec, argv.size())) {
    if (c.tx.multi) c.tx.aborted = true;
    r.error(wrong_args(spec->name));
    co_return;
  }
  if (!c.client.authenticated && !(spec->flags & kNoAuth)) {
    if (c.tx.multi) c.tx.aborted = true;
    r.error("NOAUTH Authentication required.");
    co_return;
  }
  // Users and access rules: one atomic load per command while the user may do everything.
  // Requests forwarded by another node, and the HTTP door's, were checked where they entered.
  if (c.client.user) {
    if (c.client.acl_generation != acl->generation_counter().load(std::memory_order_relaxed)) [[unlikely]] {
      if (!refresh_user(c)) {
        r.error("ERR this connection's user was removed (ACL DELUSER); the connection is closed");
        c.client.close_after_reply = true;
        co_return;
      }
      if (c.client.token) {
        if (auto id = acl->revoked(*c.client.token)) {
          if (c.tx.multi) c.tx.aborted = true;
          r.error(fmt::format("NOAUTH revoked: the token this connection authenticated with (revocation id {}) was "
                              "revoked by an administrator (ACL REVOKE); the connection is closed: connect again with "
                              "a new token (keel token issue) or a password",
                              *id));
          c.client.close_after_reply = true;
          co_return;
        }
      }
    }
    if (!c.client.acl_open && !(spec->flags & kNoAuth)) [[unlikely]] {
      if (c.client.token && c.now_ms / 1000 >= c.client.token->expires_s) {
        if (c.tx.multi) c.tx.aborted = true;
        r.error(fmt::format("NOAUTH the token this connection authenticated with expired {} s ago; AUTH with a new "
                            "token (keel token issue) or a password",
                            c.now_ms / 1000 - c.client.token->expires_s));
        co_return;
      }
      auto d = acl_check(*c.client.user, *spec, argv);
      if (!d && c.client.token) d = token_check(*c.client.token, *spec, argv);
      if (d) {
        if (c.tx.multi) c.tx.aborted = true;
        c.client.last_cmd.assign(spec->name);
        const bool in_exec = c.client.in_exec;
        c.client.in_exec = in_exec || c.tx.multi;  // ACL LOG context "multi", as Redis
        acl_log(*acl, c.client, d->reason, d->object, c.client.user->name, c.now_ms);
        c.client.in_exec = in_exec;
        r.error(d->error);
        co_return;
      }
    }
  }
  // Rate limits per user and per client address (off unless configured); requests that came
  // through another door or node were counted where they entered.
  if (client_limits && !c.internal && !(spec->flags & kNoAuth)) [[unlikely]] {
    const std::string_view user = c.client.user ? std::string_view(c.client.user->name) : std::string_view("default");
    if (auto no = client_limits->check(user, client_ip(c.client.addr), sdk::SteadyClock::instance().now())) {
      if (c.tx.multi) c.tx.aborted = true;
      r.error("ERR " + no->message);
      co_return;
    }
  }
  // RESP2 subscribed mode: only these may run (Redis's processCommand); RESP3 has no limits.
  if (c.client.pubsub > 0 && c.client.protocol == 2 && !allowed_when_subscribed(spec->name)) {
    if (c.tx.multi) c.tx.aborted = true;
    r.error(fmt::format("ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
                        "RESET are allowed in this context",
                        full_name(*spec, argv)));
    co_return;
  }
  // Inside MULTI every command but these is queued for EXEC (Redis's processCommand).
  if (c.tx.multi && spec->name != "exec" && spec->name != "discard" && spec->name != "multi" &&
      spec->name != "watch" && spec->name != "quit" && spec->name != "reset") {
    queue_command(c, *spec, argv);
    co_return;
  }
  c.client.last_cmd.assign(spec->name);
  size_t before = c.out.size();
  int64_t t0 = SystemClock::instance().monotonic_ns();
  // A command inside EXEC runs within EXEC's own: EXEC's trace is put back after it.
  std::optional<Connection::CmdTrace> outer_trace;
  if (tracer) [[unlikely]] {
    outer_trace.emplace(c.trace);
    begin_trace(c, argv);
  }

  bool blocked = false;  // a blocking command that waited for data
  switch (spec->routing) {
    case Routing::kLocal:
      if (spec->group == "pubsub") {
        co_await execute_pubsub(c, *spec, argv);
      } else if (spec->group == "transactions") {
        co_await execute_tx(c, *spec, argv);
      } else if (spec->name == "reset") {
        discard_tx(c);
        co_await unwatch_all(c);
        pubsub_leave(c);  // silently, as Redis's RESET
        co_await run_handler(c, c.shard, *spec, argv, c.out);
      } else if (spec->name == "client" && argv.size() == 2 && iequals(argv[1], "list")) {
        std::string lines;
        for (unsigned i = 0; i < shards.size(); ++i) {
          auto gather = [&, i] {
            for (auto* conn : per_shard[i].connections) {
              auto& cl = conn->client;
              lines += fmt::format("id={} addr={} laddr={} fd={} name={} age={} idle={} db=0 resp={} cmd={} user={}\n",
                                   cl.id, cl.addr, cl.laddr, conn->sock.native_handle(), cl.name,
                                   (c.now_ms - cl.created_ms) / 1000,
                                   (c.now_ms - cl.last_cmd_ms) / 1000, cl.protocol,
                                   cl.last_cmd.empty() ? "NULL" : cl.last_cmd,
                                   cl.user ? cl.user->name : "default");
            }
          };
          co_await runtime::run_on(shards.shard(i), gather);
        }
        r.verbatim(lines);
      } else if (spec->name == "cluster" && argv.size() >= 3 &&
                 (iequals(argv[1], "countkeysinslot") || iequals(argv[1], "getkeysinslot"))) {
        co_await cluster_keys_in_slot(c, argv);
      } else if (acl_service && (spec->name == "auth" || spec->name == "hello")) {
        co_await authenticate_command(c, *spec, argv);
      } else if (spec->name == "acl" &&
                 (iequals(argv[1], "setuser") || iequals(argv[1], "deluser") || iequals(argv[1], "revoke") ||
                  (acl_service && acl_service->lockout_cluster_wide() &&
                   ((iequals(argv[1], "lockouts") && argv.size() == 2) ||
                    (iequals(argv[1], "unlock") && argv.size() == 3))))) {
        co_await acl_admin(c, argv);
      } else if (spec->name == "config" && argv.size() == 4 && iequals(argv[1], "set") &&
                 iequals(argv[2], "requirepass") && acl_service) {
        // As Redis: the default user's password (no password: nopass), on every node.
        std::string name = "default";
        std::vector<std::string> rules;
        if (argv[3].empty()) rules = {"nopass"};
        else rules = {"resetpass", ">" + std::string(argv[3])};
        auto st = co_await acl_service->setuser(name, rules, span_parent(c));
        if (!st) {
          reply_metadata_error(r, st.error(), "check ACL GETUSER default");
        } else {
          audit(c, security::audit::kUserSet,
                                {{"user", name}, {"rules", security::audit::redact_rules(rules)}, {"by", caller(c)},
                                 {"door", "resp"}, {"addr", client_ip(c.client.addr)}, {"via", "CONFIG SET requirepass"}});
          r.ok();
        }
      } else if (!spec->handler && spec->group == "transit") {  // TRANSIT.*
        if (transit) co_await execute_transit(*transit, *spec, argv, r, span_parent(c));
        else r.error("ERR transit keys are not available on this node (they need cluster metadata)");
      } else if (!spec->handler && spec->group == "secret") {  // SECRET.*
        if (secrets) co_await execute_secret(*secrets, *spec, argv, r, caller(c));
        else r.error("ERR secrets are not available on this node (they need cluster metadata)");
      } else if (!spec->handler && spec->group == "route") {  // ROUTE.REGISTER, DEREGISTER
        if (routes) co_await execute_route_admin(*routes, *spec, argv, r);
        else r.error("ERR the gateway's route registration is not running on this node");
      } else if (!spec->handler) {  // CACHE.CREATE, INFO, LIST, DROP, CLEAR
        if (caches) co_await execute_cache_admin(*caches, *spec, argv, r, span_parent(c));
        else r.error("ERR the caching service is not running on this node");
      } else {
        co_await run_handler(c, c.shard, *spec, argv, c.out);
      }
      break;
    case Routing::kKey: {
      if (!(spec->flags & kBlocking)) {
        co_await execute_key(c, *spec, argv, partition);
        break;
      }
      c.client.would_block = false;
      c.client.block_argv.clear();
      co_await execute_key(c, *spec, argv, partition);
      if (c.client.would_block && !c.deny_blocking) {
        blocked = true;
        // Nothing to pop: instead of the timeout reply the handler gave, block.
        c.out.resize(before);
        c.undefer(before);
        if (c.client.block_argv.empty()) {
          co_await block(c, *spec, argv);
        } else {
          // XREAD with "$": block on the ids the handler resolved.
          const std::vector<std::string> owned = std::move(c.client.block_argv);
          c.client.block_argv.clear();
          std::vector<std::string_view> views(owned.begin(), owned.end());
          co_await block(c, *spec, Args(views.data(), views.size()));
        }
      }
      c.client.would_block = false;
      c.client.block_argv.clear();
      break;
    }
    case Routing::kAll:
      co_await execute_all(c, *spec, argv);
      break;
  }

  bool failed = c.out.size() > before && c.out[before] == '-';
  int64_t dt = SystemClock::instance().monotonic_ns() - t0;
  auto& st = shards.shard(c.shard).stats;
  if (st.commands.size() <= spec->index) st.commands.resize(all_commands().size());
  st.commands[spec->index].record(static_cast<uint64_t>(dt), failed);
  std::optional<observe::TraceId> traced;
  if (tracer) [[unlikely]] {
    traced = trace_command(c, *spec, t0, dt, failed, before);
    c.trace = std::move(*outer_trace);
  }
  // The slow log, as Redis's: the time the command ran, not the time it spent blocked; the
  // HTTP door logs its own requests (not the commands it runs through here).
  if (slow && slow->wants(dt / 1000) && !blocked && (!c.internal || c.forwarded)) [[unlikely]] {
    slow->add(SystemClock::instance().now_ms(), dt / 1000, argv,
              c.forwarded ? fmt::format("forwarded from node {}", c.forwarded_from) : c.client.addr,
              c.client.name, "resp", traced ? observe::to_hex(*traced) : std::string());
    if (traced) tracer->keep(*traced);  // its spans here stay in memory for the admin page
  }
}

// A key command: runs it on the shard owning its keys (or, in a cluster, on the node that is
// their primary). `partition` is the routed key's partition if known, else kNoPartition.
awaitable<void> Server::Impl::execute_key(Connection& c, const CommandSpec& spec, Args argv,
                                          uint32_t partition) {
  std::string_view first = argv[routing_key_index(spec, argv)];
  uint32_t part = partition != kNoPartition ? partition : key_partition(first, shards.partitions());
  if (dht) {
    if (!dht->current(c.shard)) {
      co_return c.reply.error("CLUSTERDOWN The cluster is down (this node does not know the partition map yet; retry)");
    }
    static const std::vector<size_t> kNoOtherKeys;
    std::vector<size_t> keys;
    if (has_other_keys(spec)) keys = command_keys(spec, argv);
    // A command on one partition refused with TRYAGAIN (the partition is moving or failing
    // over: nothing ran) is tried again here, routed by the newest map, until the request
    // timeout: the client sees a slower reply, not the error. A node serving a forwarded
    // command leaves that to the node the client is connected to.
    bool one_partition = !c.forwarded;
    for (size_t k : keys) one_partition &= key_partition(argv[k], shards.partitions()) == part;
    if (spec.group == "cache" && caches && argv.size() > 1 && argv[1] != cache::kDefaultCache &&
        !caches->catalog(c.shard).count(argv[1])) {
      // A cache created through another node a moment ago may not have reached this node's
      // catalog yet: look it up in metadata (linearizable) before answering "no cache named".
      auto& absent = per_shard[c.shard].absent_caches;
      std::string name(argv[1]);
      auto it = absent.find(name);
      if (it == absent.end() || it->second < c.now_ms) {
        if (!co_await caches->learn(name)) {
          if (absent.size() >= 4096) absent.clear();  // bounded
          absent[name] = c.now_ms + 200;
        } else {
          absent.erase(name);
        }
      }
    }
    c.replica_ok = replica_eligible(c, spec, argv);
    int64_t give_up = 0;
    for (int64_t pause_ms = 2;; pause_ms = std::min<int64_t>(pause_ms * 2, 50)) {
      size_t before = c.out.size();
      uint32_t where = route(c, argv, keys.empty() ? kNoOtherKeys : keys, part);
      if (where == kNowhere) break;
      if (where != 0) {
        co_await execute_forward(c, argv, where);
      } else {
        c.waits.clear();
        c.write_error.reset();
        unsigned owner = shards.owner(part);
        bool one_shard = true;
        for (uint32_t p : c.parts) one_shard &= shards.owner(p) == owner;
        if (one_shard) co_await run_handler(c, owner, spec, argv, c.out, first.data(), part);
        else co_await execute_multi_key(c, spec, argv, keys);
        after_routed(c, before);
      }
      if (!one_partition || c.out.compare(before, 9, "-TRYAGAIN") != 0) break;
      int64_t now = SystemClock::instance().monotonic_ns() / 1000000;
      if (give_up == 0) give_up = now + dht->options().request_timeout_ms;
      if (now + pause_ms > give_up) break;
      c.out.resize(before);
      co_await pause(c.shard, pause_ms);
    }
    co_return;
  }
  unsigned owner = shards.owner(part);
  bool one_shard = true;
  if (has_other_keys(spec) && shards.size() > 1) {
    for (size_t k : command_keys(spec, argv))
      one_shard &= shards.owner(key_partition(argv[k], shards.partitions())) == owner;
  }
  if (one_shard) co_await run_handler(c, owner, spec, argv, c.out, first.data(), part);
  else co_await execute_multi_key(c, spec, argv, command_keys(spec, argv));
}


void Server::Impl::begin_trace(Connection& c, Args argv) {
  auto& t = c.trace;
  t.ctx.reset();
  t.forwarded_to = 0;
  t.parent = c.client.trace_parent;
  if (auto& parent = c.client.trace_parent) {
    t.head = observe::Sampler::head_parent(parent->sampled());
    t.ctx = observe::LogContext{parent->trace_id, observe::span_id_from(tracer->random(c.shard))};
  } else {
    // The only cost for a command that is not sampled: one random number, one comparison.
    t.low = tracer->random(c.shard);
    t.head = tracer->sampler().head_root(t.low);
    if (t.head) [[unlikely]]
      t.ctx = observe::LogContext{observe::trace_id_from(tracer->random(c.shard), t.low),
                                  observe::span_id_from(tracer->random(c.shard))};
  }
  if (c.forwarded && klog().should_log(spdlog::level::debug)) [[unlikely]] {
    std::optional<observe::LogScope> scope;
    if (t.ctx) scope.emplace(&*t.ctx);
    klog().debug("running {} forwarded by node {}", argv[0].substr(0, 64), c.forwarded_from);
  }
}

std::optional<observe::TraceId> Server::Impl::trace_command(Connection& c, const CommandSpec& spec, int64_t t0_ns,
                                                           int64_t dt_ns, bool failed, size_t reply_begin) {
  auto& parent = c.trace.parent;
  if (!tracer->sampler().keep(c.trace.head, failed, dt_ns)) return std::nullopt;
  observe::SpanData s;
  if (parent) {
    s.trace_id = parent->trace_id;
    s.parent_span_id = parent->span_id;
    s.trace_state = parent->trace_state;
  } else if (c.trace.ctx) {
    s.trace_id = c.trace.ctx->trace_id;
  } else {  // kept by a tail rule (an error, or slow)
    s.trace_id = observe::trace_id_from(tracer->random(c.shard), c.trace.low);
  }
  s.span_id = c.trace.ctx ? c.trace.ctx->span_id : observe::span_id_from(tracer->random(c.shard));
  s.name.assign(spec.name);
  for (auto& ch : s.name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  // Wall-clock end = now minus the time since the command ended (monotonic).
  int64_t end_mono = t0_ns + dt_ns;
  s.end_unix_ns = observe::Tracer::now_unix_ns() - (SystemClock::instance().monotonic_ns() - end_mono);
  s.start_unix_ns = s.end_unix_ns - dt_ns;
  s.attributes.push_back({"db.system.name", std::string("keel")});
  s.attributes.push_back({"db.operation.name", s.name});
  s.attributes.push_back({"client.address", c.client.addr});
  s.attributes.push_back({"keel.shard", static_cast<int64_t>(c.shard)});
  if (c.forwarded) {
    s.attributes.push_back({"keel.forwarded", true});
    s.attributes.push_back({"keel.forwarded_from", static_cast<int64_t>(c.forwarded_from)});
  }
  if (c.trace.forwarded_to) s.attributes.push_back({"keel.forwarded_to", static_cast<int64_t>(c.trace.forwarded_to)});
  if (failed && reply_begin < c.out.size()) {
    std::string_view err(c.out.data() + reply_begin + 1, c.out.size() - reply_begin - 1);
    err = err.substr(0, std::min(err.find("\r\n"), size_t{256}));
    s.status_code = observe::kStatusError;
    s.status_message.assign(err);
    s.attributes.push_back({"error.type", std::string(err.substr(0, err.find(' ')))});
  }
  if (!c.deferred.empty() && c.deferred.back().begin >= reply_begin) {
    // Its reply waits for the write quorum: settle() ends the span when the wait does.
    const auto id = s.trace_id;
    c.held_spans.push_back({std::move(s), c.deferred.size() - 1});
    return id;
  }
  const auto id = s.trace_id;
  // Only a command the slow log may take (its trace is then kept: Tracer::keep), or one run for
  // another request (an HTTP request's, a forwarding node's), is offered to the ring of recent
  // slow traces: a fast command from a client costs no copy.
  const bool may_be_kept = c.internal || c.forwarded || (slow && slow->wants(dt_ns / 1000));
  tracer->record(c.shard, std::move(s), may_be_kept);
  return id;
}

// CLUSTER COUNTKEYSINSLOT slot | CLUSTER GETKEYSINSLOT slot count: the keys of one slot that
// this node holds (as in Redis Cluster, a node answers for its own data), read on the shard
// owning the slot's partition.
awaitable<void> Server::Impl::cluster_keys_in_slot(Connection& c, Args argv) {
  auto& r = c.reply;
  bool get = iequals(argv[1], "getkeysinslot");
  if (argv.size() != (get ? 4u : 3u))
    co_return r.error(fmt::format("ERR wrong number of arguments for 'cluster|{}' command", to_lower(argv[1])));
  int64_t slot = 0, count = 0;
  if (!parse_int64(argv[2], slot) || slot < 0 || slot >= kSlotCount)
    co_return r.error("ERR Invalid slot");
  if (get && (!parse_int64(argv[3], count) || count < 0))
    co_return r.error("ERR Invalid number of keys");
  uint32_t part = slot_partition(static_cast<uint32_t>(slot), shards.partitions());
  auto& owner = shards.shard(shards.owner(part));
  int64_t n = 0;
  std::vector<std::string> keys;
  int64_t now = c.now_ms;
  auto work = [&] {
    std::string start;
    for (;;) {
      auto next = owner.engine->scan_partition(part, start, 1024, now, [&](std::string_view k, const ValueRef&) {
        if (key_slot(k) != static_cast<uint32_t>(slot)) return;
        ++n;
        if (get && static_cast<int64_t>(keys.size()) < count) keys.emplace_back(k);
      });
      if (!next || (get && static_cast<int64_t>(keys.size()) >= count)) break;
      start = std::move(*next);
    }
  };
  co_await runtime::run_on(owner, work);
  if (!get) co_return r.integer(n);
  r.array(keys.size());
  for (auto& k : keys) r.bulk(k);
}

// Whether a replica copy may answer this command: a read of a named cache whose readFrom is
// replica (CACHE.GET, CACHE.TTL), or a read-only command on a connection that sent READONLY
// (Redis Cluster's way to read from replicas).
bool Server::Impl::replica_eligible(const Connection& c, const CommandSpec& spec, Args argv) const {
  if (spec.group == "cache") {
    if (spec.name != "cache.get" && spec.name != "cache.ttl") return false;
    if (!caches || argv.size() < 2) return false;
    const auto& catalog = caches->catalog(c.shard);
    auto it = catalog.find(argv[1]);
    return it != catalog.end() && it->second.def.read_from == cache::ReadFrom::kReplica;
  }
  return c.client.readonly && (spec.flags & kReadonly) && !(spec.flags & (kWrite | kBlocking));
}

// Where a key command runs (no suspension): here (0), on another node (its id), or nowhere
// (an error reply was written). Fills c.parts with the command's partitions.
uint32_t Server::Impl::route(Connection& c, Args argv, const std::vector<size_t>& keys,
                             uint32_t first_part) {
  auto& r = c.reply;
  const dht::Topology* topo = dht->current(c.shard);
  c.parts.clear();
  c.replica_read = false;
  c.parts.push_back(first_part);
  for (size_t k : keys) {
    uint32_t p = key_partition(argv[k], shards.partitions());
    if (std::find(c.parts.begin(), c.parts.end(), p) == c.parts.end()) c.parts.push_back(p);
  }
  uint32_t primary = topo->parts[first_part].primary;
  for (uint32_t p : c.parts) {
    if (topo->parts[p].primary != primary) {
      c.parts.clear();
      r.error("CROSSSLOT Keys in request don't hash to the same slot (their partitions have different "
              "primaries in this cluster; put the keys in one slot with a {hash tag})");
      return kNowhere;
    }
  }
  if (primary == 0) {
    c.parts.clear();
    r.error("CLUSTERDOWN Hash slot not served (the partition map has no primary for it)");
    return kNowhere;
  }
  if (primary == topo->self) return 0;
  if (c.replica_ok) {
    // A read a replica may answer: here, if this node holds an in-sync replica copy of every
    // partition it reads, fresh enough (dht.replica_read_max_lag_ms); else the primary's.
    bool here = true;
    for (uint32_t p : c.parts) {
      const auto& reps = topo->parts[p].replicas;
      int64_t lag = dht->replica_lag_ms(p);
      here &= std::find(reps.begin(), reps.end(), topo->self) != reps.end() && lag >= 0 &&
              lag <= dht->options().replica_read_max_lag_ms;
    }
    if (here) {
      c.replica_read = true;
      dht->note_replica_read();
      return 0;
    }
  }
  c.parts.clear();
  if (c.forwarded) {
    r.error(fmt::format("TRYAGAIN partition {} moved while the request was forwarded; retry", first_part));
    return kNowhere;
  }
  return primary;
}

awaitable<void> Server::Impl::pause(unsigned shard, int64_t ms) {
  asio::steady_timer t(shards.shard(shard).io, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::as_tuple(use_awaitable));
}

awaitable<void> Server::Impl::execute_forward(Connection& c, Args argv, uint32_t node) {
  // A command with a trace context carries it to the primary, whose span becomes this one's
  // child; one without (not sampled, no parent) sends the frame it always did.
  std::optional<observe::TraceParent> tp;
  if (tracer && c.trace.ctx) [[unlikely]] {
    c.trace.forwarded_to = node;
    tp.emplace();
    tp->trace_id = c.trace.ctx->trace_id;
    tp->span_id = c.trace.ctx->span_id;
    tp->flags = c.trace.head ? observe::kFlagSampled : 0;
    if (c.client.trace_parent) tp->trace_state = c.client.trace_parent->trace_state;
  }
  if (klog().should_log(spdlog::level::debug)) [[unlikely]] {
    std::optional<observe::LogScope> scope;  // (not held across the co_await below)
    if (c.trace.ctx) scope.emplace(&*c.trace.ctx);
    klog().debug("forwarding {} to node {}, the primary of its partition", argv[0].substr(0, 64), node);
  }
  auto reply = co_await dht::forward(*dht, c.shard, node, argv, c.client.protocol, tp ? &*tp : nullptr);
  if (!reply)
    co_return c.reply.error((reply.error().code == Errc::kTimeout ? "TIMEOUT " : "TRYAGAIN ") +
                            reply.error().message);
  c.out += *reply;
}

// After a key command ran here: its reply is held back until its writes (or, for a read, the
// partition's earlier writes) hold the write quorum; the next pipelined command need not wait
// for that (settle()).
void Server::Impl::after_routed(Connection& c, size_t before) {
  c.parts.clear();
  if (c.write_error) {
    c.out.resize(before);
    c.reply.error("TIMEOUT outcome unknown: " + c.write_error->message);
    c.write_error.reset();
  } else if (!c.waits.empty()) {
    c.defer(before, c.waits);
  }
  c.waits.clear();
}

// Waits until every reply held back by the write quorum may go out: one wait per shard for
// the highest LSN per partition. If a wait fails (the quorum did not answer in time, or this
// node stopped being a primary), every held-back reply on that shard becomes a TIMEOUT error
// (outcome unknown) — possibly also for a write that did reach its quorum, which is still a
// true answer.
awaitable<void> Server::Impl::settle(Connection& c) {
  if (c.deferred.empty()) co_return;
  const int64_t wait_start = SystemClock::instance().monotonic_ns();
  // Per shard, the highest LSN per (partition, quorum): sorted so that each shard's waits are
  // one contiguous run. A handful of waits, in vectors the connection keeps.
  auto& ws = c.settle_waits;
  ws.clear();
  for (auto& w : c.deferred_waits) {
    auto it = std::find_if(ws.begin(), ws.end(), [&](const dht::Wait& x) {
      return x.partition == w.partition && x.quorum == w.quorum;
    });
    if (it == ws.end()) ws.push_back(w);
    else it->lsn = std::max(it->lsn, w.lsn);
  }
  std::sort(ws.begin(), ws.end(), [&](const dht::Wait& x, const dht::Wait& y) {
    return shards.owner(x.partition) < shards.owner(y.partition);
  });
  std::map<unsigned, std::string> failed;
  for (size_t i = 0; i < ws.size();) {
    const unsigned sid = shards.owner(ws[i].partition);
    size_t j = i;
    while (j < ws.size() && shards.owner(ws[j].partition) == sid) ++j;
    const std::span<const dht::Wait> group(ws.data() + i, j - i);
    i = j;
    // On this connection's own shard the wait runs inline; elsewhere it hops there.
    // Not `cond ? co_await a : co_await b`: GCC 12 destroys the result of a co_await in a
    // conditional expression twice (a double free once it holds an error message).
    Status st;
    if (sid == c.shard)
      st = co_await dht::wait_committed(*dht, sid, group);
    else
      st = co_await asio::co_spawn(shards.shard(sid).io, dht::wait_committed(*dht, sid, group), use_awaitable);
    if (!st) failed[sid] = st.error().message;
  }
  if (!failed.empty()) {
    std::string out;
    size_t pos = 0;
    for (auto& d : c.deferred) {
      const std::string* why = nullptr;
      for (size_t i = d.wbegin; i < d.wend; ++i)
        if (auto it = failed.find(shards.owner(c.deferred_waits[i].partition)); it != failed.end()) why = &it->second;
      if (!why) continue;
      out.append(c.out, pos, d.begin - pos);
      Reply(out, c.client.protocol).error("TIMEOUT " + *why);
      pos = d.end;
    }
    out.append(c.out, pos, std::string::npos);
    c.out.swap(out);
  }
  if (!c.held_spans.empty()) {
    // The spans of traced writes end when their quorum answered (or did not), with the wait
    // as an event: what the client waited for beyond running the command.
    const int64_t now_unix = observe::Tracer::now_unix_ns();
    const int64_t waited = SystemClock::instance().monotonic_ns() - wait_start;
    for (auto& h : c.held_spans) {
      auto& s = h.span;
      const std::string* why = nullptr;
      const auto& d = c.deferred[h.index];
      for (size_t i = d.wbegin; i < d.wend; ++i)
        if (auto it = failed.find(shards.owner(c.deferred_waits[i].partition)); it != failed.end()) why = &it->second;
      s.end_unix_ns = std::max(s.end_unix_ns, now_unix);
      s.attributes.push_back({"keel.replication.wait_ns", waited});
      observe::SpanEvent ev;
      ev.time_unix_ns = now_unix;
      ev.name = why ? "keel.write_quorum.timeout" : "keel.write_quorum.reached";
      if (why) {
        ev.attributes.push_back({"exception.message", *why});
        s.status_code = observe::kStatusError;
        s.status_message = "TIMEOUT " + *why;
      }
      s.events.push_back(std::move(ev));
      tracer->record(c.shard, std::move(s));
    }
    c.held_spans.clear();
  }
  c.deferred.clear();
  c.deferred_waits.clear();
}

awaitable<void> Server::Impl::authenticate_command(Connection& c, const CommandSpec& spec, Args argv) {
  std::string user, pass;
  bool has = false;
  if (spec.name == "auth") {
    if (argv.size() == 3) {
      user.assign(argv[1]);
      pass.assign(argv[2]);
      has = true;
    } else if (argv.size() == 2 && security::looks_like_token(argv[1])) {
      pass.assign(argv[1]);  // AUTH <token>: the token names its user
      has = true;
    } else if (argv.size() == 2 && !acl->default_user()->nopass) {
      user = "default";
      pass.assign(argv[1]);
      has = true;
    }
  } else {
    // HELLO [protover [AUTH user pass] [SETNAME name]]: the handler answers every other error.
    size_t i = 1;
    int64_t proto = 0;
    if (argv.size() >= 2) i = parse_int64(argv[1], proto) && proto >= 2 && proto <= 3 ? 2 : argv.size();
    for (; i < argv.size(); ++i) {
      if (iequals(argv[i], "auth") && i + 2 < argv.size()) {
        user.assign(argv[i + 1]);
        pass.assign(argv[i + 2]);
        has = true;
        break;
      }
      if (iequals(argv[i], "setname") && i + 1 < argv.size()) ++i;
      else break;
    }
  }
  if (has) {
    // Brute-force lockout: a locked user or address is refused before anything is checked.
    const std::string ip = client_ip(c.client.addr);
    // Who is counted: the user named, or the one an AUTH <token> names (unverified yet).
    std::string who = user;
    if (who.empty()) {
      auto parsed = security::parse_token(pass);
      who = parsed ? parsed->parts[0].block.user : std::string("(token)");
    }
    // Cluster-wide lockout (docs/security.md): the cluster's records decide before a password is
    // hashed; a password this node verified before is answered without asking, unless this
    // node's copy of the records shows a lock.
    const bool token = security::looks_like_token(pass);
    std::optional<std::shared_ptr<const security::User>> quick;
    if (!token) quick = acl->authenticate_cached(user, pass);
    const bool fast = token || (quick && *quick);
    auto chk = co_await acl_service->lockout_gate(who, ip, c.now_ms, fast);
    auto& lk = chk.locked;
    const bool recorded = chk.recorded;
    if (lk) {
      c.client.last_cmd.assign(spec.name);
      acl_log(*acl, c.client, "auth", "auth", who, c.now_ms);
      audit(c, security::audit::kAuthLocked,
                            {{"door", "resp"}, {"user", who}, {"addr", ip}, {"subject", lk->subject}});
      co_return c.reply.error(fmt::format(
          "LOCKED too many failed authentications for {}: further attempts are refused unchecked for {} ms; wait, "
          "or an administrator can run ACL UNLOCK {}",
          lk->subject, lk->remaining_ms, lk->subject));
    }
    if (token) {
      auto login = acl->authenticate_token(user, pass, c.client.cert_sha256, c.now_ms);
      if (!login) {
        c.client.last_cmd.assign(spec.name);
        acl_log(*acl, c.client, "auth", "auth", who, c.now_ms);
        audit(c, security::audit::kAuthFailure, {{"door", "resp"}, {"method", "token"}, {"user", who},
                                                              {"addr", ip}, {"reason", login.error().message}});
        co_await acl_service->lockout_failed(who, ip, c.now_ms);
        co_return c.reply.error("WRONGPASS token refused: " + login.error().message);
      }
      co_await acl_service->lockout_succeeded(login->user->name, ip, recorded);
      if (security::audit::success_due("resp|token|" + login->user->name + "|" + ip, c.now_ms))
        audit(c, security::audit::kAuthSuccess,
                              {{"door", "resp"}, {"method", "token"}, {"user", login->user->name}, {"addr", ip},
                               {"token_id", login->grant->revocation_ids.back()}});
      c.client.verified = std::move(login->user);
      c.client.verified_token = std::move(login->grant);
    } else {
      std::shared_ptr<const security::User> u;
      if (quick) u = *quick;
      else u = co_await acl_service->authenticate(user, pass);
      if (!u) {
        c.client.last_cmd.assign(spec.name);
        acl_log(*acl, c.client, "auth", "auth", user, c.now_ms);
        audit(c, security::audit::kAuthFailure,
                              {{"door", "resp"}, {"method", "password"}, {"user", user}, {"addr", ip},
                               {"reason", "wrong password, or no such user, or the user is off"}});
        co_await acl_service->lockout_failed(user, ip, c.now_ms);
        co_return c.reply.error("WRONGPASS invalid username-password pair or user is disabled.");
      }
      co_await acl_service->lockout_succeeded(user, ip, recorded);
      if (security::audit::success_due("resp|password|" + user + "|" + ip, c.now_ms))
        audit(c, security::audit::kAuthSuccess,
                              {{"door", "resp"}, {"method", "password"}, {"user", user}, {"addr", ip}});
      c.client.verified = std::move(u);
    }
  }
  co_await run_handler(c, c.shard, spec, argv, c.out);
  c.client.verified.reset();
  c.client.verified_token.reset();
}

awaitable<void> Server::Impl::acl_admin(Connection& c, Args argv) {
  auto& r = c.reply;
  if (!acl_service) co_return r.error("ERR users and access rules are not available on this server");
  // A cluster member's lockout table is the cluster's (the keyspace); acl_commands.cpp answers
  // the same for a node outside a cluster from its own table.
  if (iequals(argv[1], "lockouts")) {
    auto all = co_await acl_service->lockouts();
    if (!all) co_return r.error("TRYAGAIN " + all.error().message);
    reply_lockouts(r, *all, c.now_ms);
    co_return;
  }
  if (iequals(argv[1], "unlock")) {
    std::string subject(argv[2]);
    if (subject != "*" && !subject.starts_with("user:") && !subject.starts_with("addr:"))
      co_return r.error(fmt::format("ERR '{}' is not a lockout subject; allowed: user:<name>, addr:<ip> (as ACL "
                                    "LOCKOUTS shows them) or * for all",
                                    subject.substr(0, 128)));
    auto cleared = co_await acl_service->unlock(subject);
    if (!cleared) co_return r.error("TRYAGAIN " + cleared.error().message);
    audit(c, security::audit::kUnlock,
          {{"subject", subject}, {"cleared", std::to_string(*cleared)}, {"by", caller(c)}, {"door", "resp"},
           {"addr", client_ip(c.client.addr)}});
    co_return r.integer(static_cast<int64_t>(*cleared));
  }
  if (iequals(argv[1], "setuser")) {
    if (argv.size() < 3) co_return r.error(wrong_args("acl|setuser"));
    std::string name(argv[2]);
    std::vector<std::string> rules(argv.begin() + 3, argv.end());
    auto st = co_await acl_service->setuser(name, rules, span_parent(c));
    if (!st) {
      if (st.error().code == Errc::kInvalidArgument) co_return r.error("ERR " + st.error().message);
      co_return reply_metadata_error(r, st.error(), "check ACL GETUSER " + name);
    }
    audit(c, security::audit::kUserSet, {{"user", name}, {"rules", security::audit::redact_rules(rules)},
                                                      {"by", caller(c)}, {"door", "resp"}, {"addr", client_ip(c.client.addr)}});
    co_return r.ok();
  }
  if (iequals(argv[1], "revoke")) {
    auto parsed = security::parse_revoke_request(argv.subspan(2), c.now_ms / 1000);
    if (!parsed) co_return r.error("ERR " + parsed.error().message);
    const std::string id = parsed->id, token_user = parsed->user;
    const int64_t expires_s = parsed->expires_s;
    auto st = co_await acl_service->revoke(std::move(*parsed));
    if (!st) {
      if (st.error().code == Errc::kInvalidArgument) co_return r.error("ERR " + st.error().message);
      co_return reply_metadata_error(r, st.error(), "check ACL REVOCATIONS");
    }
    audit(c, security::audit::kTokenRevoked,
                          {{"id", id}, {"user", token_user}, {"expires_s", std::to_string(expires_s)}, {"by", caller(c)},
                           {"door", "resp"}, {"addr", client_ip(c.client.addr)}});
    co_return r.bulk(id);
  }
  if (argv.size() < 3) co_return r.error(wrong_args("acl|deluser"));
  std::vector<std::string> names(argv.begin() + 2, argv.end());
  auto n = co_await acl_service->deluser(names);
  if (!n) {
    if (n.error().code == Errc::kInvalidArgument) co_return r.error("ERR " + n.error().message);
    co_return reply_metadata_error(r, n.error(), "check ACL USERS");
  }
  {
    std::string list;
    for (auto& nm : names) list += (list.empty() ? "" : " ") + nm;
    audit(c, security::audit::kUserDeleted, {{"users", list}, {"deleted", std::to_string(*n)}, {"by", caller(c)},
                                                          {"door", "resp"}, {"addr", client_ip(c.client.addr)}});
  }
  co_return r.integer(*n);
}

void Server::Impl::execute_forwarded(std::vector<std::string> argv, int protocol,
                                     std::optional<observe::TraceParent> parent, uint32_t from,
                                     std::function<void(std::string)> done, bool forwarded) {
  static std::atomic<unsigned> next{0};
  unsigned sid = next.fetch_add(1, std::memory_order_relaxed) % shards.size();
  // A member coroutine with by-value parameters (they live in its frame), not a capturing
  // coroutine lambda.
  asio::co_spawn(shards.shard(sid).io,
                 run_one(sid, std::move(argv), protocol, std::move(parent), from, std::move(done), forwarded),
                 asio::detached);
}

awaitable<void> Server::Impl::run_one(unsigned sid, std::vector<std::string> argv, int protocol,
                                      std::optional<observe::TraceParent> parent, uint32_t from,
                                      std::function<void(std::string)> done, bool forwarded) {
  Connection c(tcp::socket(shards.shard(sid).io), sid);
  c.forwarded = forwarded;
  c.forwarded_from = from;
  c.client.trace_parent = std::move(parent);
  c.deny_blocking = true;  // no client connection to block: a blocking command answers at once
  c.internal = true;
  c.owner = this;
  c.client.protocol = protocol;
  c.client.addr = forwarded ? "forwarded" : "internal";
  c.now_ms = SystemClock::instance().now_ms();
  std::vector<std::string_view> views(argv.begin(), argv.end());
  const CommandSpec* spec = views.empty() ? nullptr : find_command(views[0]);
  if (!views.empty()) co_await execute(c, Args(views.data(), views.size()), spec, kNoPartition);
  co_await settle(c);
  if (!commit_local(c)) {
    c.out.clear();
    Reply(c.out, protocol).error("ERR the write could not be made durable on the primary");
  }
  done(std::move(c.out));
}

// Commands whose keys live on several shards of this node. Redis runs them atomically on one
// thread; here the gates of the shards holding the keys are closed while the command runs, so
// no other client's command on those shards interleaves with it (MSETNX checks and sets,
// RENAME moves, SINTERSTORE reads and stores as one step).
awaitable<void> Server::Impl::execute_multi_key(Connection& c, const CommandSpec& spec, Args argv,
                                                const std::vector<size_t>& key_pos) {
  if (c.gates > 0) co_return co_await execute_multi_key_locked(c, spec, argv, key_pos);
  std::vector<unsigned> sids;
  for (size_t k : key_pos) sids.push_back(shards.owner(key_partition(argv[k], shards.partitions())));
  std::sort(sids.begin(), sids.end());
  sids.erase(std::unique(sids.begin(), sids.end()), sids.end());
  co_await lock_shards(c, sids);
  co_await execute_multi_key_locked(c, spec, argv, key_pos);
  co_await unlock_shards(c, sids);
}

awaitable<void> Server::Impl::lock_shards(Connection& c, const std::vector<unsigned>& sids) {
  for (unsigned sid : sids) {
    auto& ev = per_shard[sid].events;
    auto take = [&ev] { ev.gate.held = true; };
    co_await when_free(sid, take);
  }
  ++c.gates;
}

awaitable<void> Server::Impl::unlock_shards(Connection& c, const std::vector<unsigned>& sids) {
  --c.gates;
  for (unsigned sid : sids) {
    auto open = [this, sid] {
      per_shard[sid].events.open_gate();
      serve_ready(sid);
    };
    co_await runtime::run_on(shards.shard(sid), open);
  }
}

awaitable<void> Server::Impl::execute_multi_key_locked(Connection& c, const CommandSpec& spec,
                                                       Args argv, const std::vector<size_t>& key_pos) {
  auto& r = c.reply;
  auto owner_of = [&](std::string_view k) { return shards.owner(key_partition(k, shards.partitions())); };
  std::string_view name = spec.name;

  if (name == "del" || name == "unlink" || name == "exists" || name == "touch" || name == "mget" ||
      name == "mset") {
    // Group keys (with their values for MSET) per shard, preserving order inside each group.
    std::map<unsigned, std::vector<std::string_view>> groups;
    std::map<unsigned, std::vector<size_t>> positions;  // key index within argv order
    size_t step = name == "mset" ? 2 : 1;
    if (name == "mset" && argv.size() % 2 == 0) {
      r.error(wrong_args(name));
      co_return;
    }
    for (size_t i = 0; i < key_pos.size(); ++i) {
      size_t p = key_pos[i];
      auto& g = groups[owner_of(argv[p])];
      if (g.empty()) g.push_back(argv[0]);
      for (size_t j = 0; j < step; ++j) g.push_back(argv[p + j]);
      positions[owner_of(argv[p])].push_back(i);
    }
    int64_t sum = 0;
    std::vector<std::string_view> elems(key_pos.size());
    std::vector<std::string> bufs;
    bufs.reserve(groups.size());
    for (auto& [sid, sub] : groups) {
      bufs.emplace_back();
      auto& out = bufs.back();
      co_await run_handler(c, sid, spec, Args(sub.data(), sub.size()), out);
      if (!out.empty() && out[0] == '-') {
        c.out += out;
        co_return;
      }
      std::string_view rest;
      if (name == "mget") {
        reply_header_number(out, rest);
        auto vals = split_values(rest);
        auto& pos = positions[sid];
        for (size_t i = 0; i < vals.size() && i < pos.size(); ++i) elems[pos[i]] = vals[i];
      } else if (name != "mset") {
        sum += reply_header_number(out, rest);
      }
    }
    if (name == "mget") {
      r.array(elems.size());
      for (auto e : elems) c.out.append(e);
    } else if (name == "mset") {
      r.ok();
    } else {
      r.integer(sum);
    }
    co_return;
  }

  if (name == "msetnx") {
    if (argv.size() % 2 == 0) {
      r.error(wrong_args(name));
      co_return;
    }
    // Check every key first, then write each shard's part (atomic: the shards' gates are closed).
    for (size_t p : key_pos) {
      std::string out;
      std::array<std::string_view, 2> sub{"exists", argv[p]};
      co_await run_handler(c, owner_of(argv[p]), *find_command("exists"), Args(sub.data(), 2), out);
      if (out != ":0\r\n") {
        r.integer(0);
        co_return;
      }
    }
    std::vector<std::string_view> all(argv.begin(), argv.end());
    all[0] = "mset";
    co_await execute_multi_key(c, *find_command("mset"), Args(all.data(), all.size()), key_pos);
    // execute_multi_key appended +OK; replace it with MSETNX's reply.
    if (c.out.size() >= 5 && c.out.compare(c.out.size() - 5, 5, "+OK\r\n") == 0) {
      c.out.resize(c.out.size() - 5);
      r.integer(1);
    }
    co_return;
  }

  if (name == "rename" || name == "renamenx" || name == "copy") {
    std::string_view src = argv[1], dst = argv[2];
    bool replace = false;
    if (name == "copy") {
      for (size_t i = 3; i < argv.size(); ++i) {
        if (iequals(argv[i], "replace")) {
          replace = true;
        } else if (iequals(argv[i], "db") && i + 1 < argv.size()) {
          int64_t db;
          if (!parse_int64(argv[i + 1], db)) co_return r.not_integer();
          if (db != 0) co_return r.error("ERR DB index is out of range");
          ++i;
        } else {
          co_return r.syntax_error();
        }
      }
    }
    auto& s_src = shards.shard(owner_of(src));
    auto& s_dst = shards.shard(owner_of(dst));
    uint32_t p_src = key_partition(src, shards.partitions());
    uint32_t p_dst = key_partition(dst, shards.partitions());
    int64_t now = c.now_ms;
    bool dst_exists = false;
    auto check_dst = [&] { dst_exists = s_dst.engine->get(p_dst, dst, now).has_value(); };
    co_await runtime::run_on(s_dst, check_dst);
    std::optional<Value> value;
    Status st;
    bool take = name != "copy";
    bool blocked = (name == "renamenx" && dst_exists) || (name == "copy" && dst_exists && !replace);
    auto read_src = [&] {
      auto v = s_src.engine->get(p_src, src, now);
      if (!v || blocked) {
        if (v) value.emplace();  // exists, but not moved
        return;
      }
      value = storage::copy_value(*v);
      if (take) {
        auto e = s_src.engine->erase(p_src, src, now);
        if (!e) st = std::unexpected(e.error());
        else st = s_src.engine->commit();
      }
    };
    co_await runtime::run_on(s_src, read_src);
    if (!value) {
      if (name == "copy") co_return r.integer(0);
      co_return r.error("ERR no such key");
    }
    if (blocked) co_return r.integer(0);
    if (!st) co_return reply_status_error(r, st.error());
    auto write_dst = [&] {
      st = s_dst.engine->put(p_dst, dst, std::move(*value), now);
      if (st) st = s_dst.engine->commit();
    };
    co_await runtime::run_on(s_dst, write_dst);
    if (!st) co_return reply_status_error(r, st.error());
    if (name == "rename") r.ok();
    else r.integer(1);
    co_return;
  }

  if (spec.group == "list" || spec.group == "set" || spec.group == "sorted-set" ||
      spec.group == "bitmap" || spec.group == "stream") {
    co_await execute_gathered(c, spec, argv, key_pos);
    co_return;
  }

  r.error("CROSSSLOT Keys in request don't hash to the same slot");
}

// A list, set or sorted-set command over keys on several shards (SINTER, SMOVE, LMOVE,
// S*STORE, ZUNIONSTORE...): the keys are copied here, the ordinary handler runs against the
// copies (scratch_engine.h), and each key it changed is written back to its shard. Atomic
// because the caller closed the shards' gates (execute_multi_key). In a cluster each shard's part is checked (primary, lease,
// fence) and its reply waits for the write quorum (or a read's fence), as run_handler does.
awaitable<void> Server::Impl::execute_gathered(Connection& c, const CommandSpec& spec, Args argv,
                                               const std::vector<size_t>& key_pos) {
  const uint32_t parts = shards.partitions();
  const int64_t now = c.now_ms;
  const bool write = spec.flags & kWrite;
  ScratchEngine scratch;
  std::set<std::string_view> seen;
  std::string refused;
  for (size_t pos : key_pos) {
    std::string_view k = argv[pos];
    if (!seen.insert(k).second) continue;
    uint32_t part = key_partition(k, parts);
    const unsigned sid = shards.owner(part);
    auto& sh = shards.shard(sid);
    auto read = [&] {
      if (dht && !c.replica_read) {
        if (auto e = dht->check_local(sid, part, write, now); !e.empty()) {
          refused = std::move(e);
          return;
        }
        if (!write)
          if (uint64_t lsn = dht->read_fence(sid, part, now)) c.waits.push_back({part, lsn, 0});
      }
      if (auto v = sh.engine->get(part, k, now)) scratch.load(part, k, storage::copy_value(*v));
    };
    co_await runtime::run_on(sh, read);
    if (!refused.empty()) co_return c.reply.error(refused);
  }
  std::string out;
  {
    CmdCtx ctx;
    ctx.engine = &scratch;
    ctx.partitions = parts;
    ctx.now_ms = now;
    ctx.client = &c.client;
    ctx.node = &node;
    ctx.random = &shards.shard(c.shard).random;
    Reply r(out, c.client.protocol);
    spec.handler(ctx, argv, r);
  }
  for (const auto& k : scratch.changed()) {
    const unsigned sid = shards.owner(k.first);
    auto& sh = shards.shard(sid);
    const Value* v = scratch.value(k);
    Status st;
    auto write_back = [&] {
      if (v) {
        st = sh.engine->put(k.first, k.second, *v, now);
      } else if (auto e = sh.engine->erase(k.first, k.second, now); !e) {
        st = std::unexpected(e.error());
      }
      if (!st) return;
      if (dht) {
        // Ship the effects; the reply waits for their quorum (after_routed). after_write
        // commits this shard's engine first.
        if (auto w = dht->after_write(sid, now, c.waits); !w) c.write_error = w.error();
        return;
      }
      st = sh.engine->commit();
    };
    co_await runtime::run_on(sh, write_back);
    if (!st) co_return reply_status_error(c.reply, st.error());
  }
  c.out += out;
}

// ---- Transactions -------------------------------------------------------------------------
//
// MULTI queues commands on the connection; EXEC closes the gates of every shard the queued
// commands and the watched keys live on (in shard order), checks the WATCH flag and the
// watched keys' expiry, runs the commands one after the other, and opens the gates. Other
// clients' commands on those shards wait at the gate meanwhile, so none of them interleaves
// with the transaction; commands on other shards go on. Blocking commands inside EXEC answer
// as if they timed out, as in Redis.

awaitable<void> Server::Impl::execute_tx(Connection& c, const CommandSpec& spec, Args argv) {
  auto& r = c.reply;
  std::string_view name = spec.name;
  if (name == "multi") {
    if (c.tx.multi) co_return r.error("ERR MULTI calls can not be nested");
    discard_tx(c);
    c.tx.multi = true;
    co_return r.ok();
  }
  if (name == "discard") {
    if (!c.tx.multi) co_return r.error("ERR DISCARD without MULTI");
    discard_tx(c);
    co_await unwatch_all(c);
    co_return r.ok();
  }
  if (name == "watch") {
    if (c.tx.multi) co_return r.error("ERR WATCH inside MULTI is not allowed");
    co_return co_await watch(c, argv);
  }
  if (name == "unwatch") {
    co_await unwatch_all(c);
    co_return r.ok();
  }
  co_await exec(c);
}

std::string Server::Impl::not_here(Connection& c, std::string_view key) {
  const dht::Topology* topo = dht->current(c.shard);
  if (!topo) return "CLUSTERDOWN The cluster is down (this node does not know the partition map yet; retry)";
  const uint32_t primary = topo->parts[key_partition(key, shards.partitions())].primary;
  if (primary == topo->self) return "";
  const dht::NodeRecord* n = topo->node(primary);
  if (primary == 0 || !n) return "CLUSTERDOWN Hash slot not served (the partition map has no primary for it)";
  return fmt::format("MOVED {} {}", key_slot(key), n->resp);
}

void Server::Impl::queue_command(Connection& c, const CommandSpec& spec, Args argv) {
  auto& r = c.reply;
  if (dht && spec.routing == Routing::kKey) {
    // In a cluster of several nodes a transaction's keys share one slot, served by this node
    // (Redis Cluster's rule: a slot never splits, so they stay together through failovers). A
    // single node (the embedded one-member cluster) takes any keys.
    const dht::Topology* topo = dht->current(c.shard);
    const bool several = topo && topo->nodes.size() > 1;
    for (size_t k : command_keys(spec, argv)) {
      const auto slot = static_cast<int64_t>(key_slot(argv[k]));
      if (c.tx.slot == -1) c.tx.slot = slot;
      if (several && c.tx.slot != slot) {
        c.tx.aborted = true;
        return r.error("CROSSSLOT Keys in request don't hash to the same slot");
      }
      if (auto e = not_here(c, argv[k]); !e.empty()) {
        c.tx.aborted = true;
        return r.error(e);
      }
    }
  }
  c.tx.queued.emplace_back(argv.begin(), argv.end());
  r.simple("QUEUED");
}

awaitable<void> Server::Impl::watch(Connection& c, Args argv) {
  auto& r = c.reply;
  if (dht)
    for (size_t i = 1; i < argv.size(); ++i)
      if (auto e = not_here(c, argv[i]); !e.empty()) co_return r.error(e);
  // No point in watching more once a watched key changed (Redis does the same).
  if (c.tx.flag->dirty.load()) co_return r.ok();
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string_view key = argv[i];
    bool dup = false;
    for (auto& w : c.tx.watched) dup |= w.key == key;
    if (dup) continue;
    const uint32_t part = key_partition(key, shards.partitions());
    const unsigned sid = shards.owner(part);
    int64_t expire_at = 0;
    const int64_t now = c.now_ms;
    auto reg = [&] {
      // Looked up first: a key found expired here is removed before the watch starts.
      auto v = shards.shard(sid).engine->get(part, key, now);
      if (v) expire_at = v->expire_at_ms;
      per_shard[sid].events.watch(key, c.tx.flag, v.has_value());
    };
    co_await when_free(sid, reg);
    c.tx.watched.push_back({std::string(key), sid, expire_at});
  }
  r.ok();
}

awaitable<void> Server::Impl::unwatch_all(Connection& c) {
  if (!c.tx.watched.empty()) {
    std::map<unsigned, std::vector<std::string>> by_shard;
    for (auto& w : c.tx.watched) by_shard[w.shard].push_back(std::move(w.key));
    c.tx.watched.clear();
    const WatchFlag* flag = c.tx.flag.get();
    for (auto it = by_shard.begin(); it != by_shard.end(); ++it) {
      const unsigned sid = it->first;
      const std::vector<std::string>& keys = it->second;
      auto remove = [&] {
        for (auto& k : keys) per_shard[sid].events.unwatch(k, flag);
      };
      co_await runtime::run_on(shards.shard(sid), remove);
    }
  }
  c.tx.flag->dirty.store(false);
}

awaitable<void> Server::Impl::exec(Connection& c) {
  auto& r = c.reply;
  if (!c.tx.multi) co_return r.error("ERR EXEC without MULTI");
  std::vector<std::vector<std::string>> queued = std::move(c.tx.queued);
  const bool aborted = c.tx.aborted;
  discard_tx(c);
  if (aborted) {
    co_await unwatch_all(c);
    co_return r.error("EXECABORT Transaction discarded because of previous errors.");
  }
  // The shards to close: those of every queued command's keys and of the watched keys.
  std::vector<std::vector<std::string_view>> cmds(queued.size());
  std::vector<unsigned> sids;
  for (auto& w : c.tx.watched) sids.push_back(w.shard);
  for (size_t i = 0; i < queued.size(); ++i) {
    cmds[i].assign(queued[i].begin(), queued[i].end());
    const CommandSpec* spec = find_command(cmds[i][0]);
    if (!spec) continue;
    Args args(cmds[i].data(), cmds[i].size());
    if (spec->routing == Routing::kAll) {
      for (unsigned s = 0; s < shards.size(); ++s) sids.push_back(s);
    } else if (spec->routing == Routing::kKey) {
      for (size_t k : command_keys(*spec, args))
        sids.push_back(shards.owner(key_partition(args[k], shards.partitions())));
    }
  }
  std::sort(sids.begin(), sids.end());
  sids.erase(std::unique(sids.begin(), sids.end()), sids.end());
  const bool lock = c.gates == 0 && !sids.empty();
  if (lock) co_await lock_shards(c, sids);
  // With the gates closed no write can reach a watched key until the commands ran.
  bool dirty = c.tx.flag->dirty.load();
  const int64_t now = SystemClock::instance().now_ms();
  for (auto& w : c.tx.watched) dirty |= w.expire_at_ms != 0 && w.expire_at_ms <= now;
  if (dirty) {
    if (lock) co_await unlock_shards(c, sids);
    co_await unwatch_all(c);
    co_return r.null_array();
  }
  r.array(cmds.size());
  const bool deny = c.deny_blocking;
  c.deny_blocking = true;
  c.client.in_exec = true;
  for (auto& cmd : cmds)
    co_await execute(c, Args(cmd.data(), cmd.size()), find_command(cmd[0]), kNoPartition);
  c.client.in_exec = false;
  c.deny_blocking = deny;
  if (lock) co_await unlock_shards(c, sids);
  co_await unwatch_all(c);
}

// ---- Blocking commands ---------------------------------------------------------------------
//
// A blocking command first runs like its non-blocking form. If it found nothing, the client
// is registered, in order, on every key it waits for (on the key's shard) and sleeps on a
// timer. A write to such a key marks it ready (KeyEvents is the engine's key observer); right
// after the command that wrote it (or when a transaction opens the shard's gate) the shard
// serves its blocked clients first come, first served: it claims one, runs its command on
// that key alone, and wakes it with the reply. The shard thread never waits; a blocked client
// costs a timer and a registration per key. A timeout or a hangup claims the client itself,
// and every registration is removed before the command returns.

namespace {

// A blocked client's argv as views (its strings are owned by the BlockedClient).
std::vector<std::string_view> argv_views(const BlockedClient& b) {
  return std::vector<std::string_view>(b.argv.begin(), b.argv.end());
}

bool is_move(const CommandSpec& spec) { return spec.name == "blmove" || spec.name == "brpoplpush"; }

// The keys a blocking command waits on (distinct, in order): BLMOVE waits on its source only.
std::vector<std::string> blocking_keys(const CommandSpec& spec, Args argv) {
  std::vector<std::string> keys;
  if (is_move(spec)) {
    keys.emplace_back(argv[1]);
    return keys;
  }
  for (size_t k : command_keys(spec, argv))
    if (std::find(keys.begin(), keys.end(), argv[k]) == keys.end()) keys.emplace_back(argv[k]);
  return keys;
}

}  // namespace

bool Server::Impl::ready_for(unsigned sid, const BlockedClient& b, std::string_view key,
                             int64_t now_ms) {
  const uint32_t part = key_partition(key, shards.partitions());
  auto v = shards.shard(sid).engine->get(part, key, now_ms);
  if (b.spec->group == "stream") {
    if (!stream_block_ready(v ? &*v : nullptr, Args(argv_views(b)), key)) return false;
    return !dht || dht->check_local(sid, part, true, now_ms).empty();
  }
  // An empty collection is never stored, so a key of the right type has something to pop.
  if (!v || v->type != (b.spec->group == "sorted-set" ? ValueType::kZSet : ValueType::kList))
    return false;
  return !dht || dht->check_local(sid, part, true, now_ms).empty();
}

void Server::Impl::serve_blocked(unsigned sid, BlockedClient& b, std::string_view key,
                                 int64_t now_ms) {
  // The command on this key alone (the other keys it waits on may be on other shards).
  std::vector<std::string_view> args;
  const auto& a = b.argv;
  const std::string_view name = b.spec->name;
  std::vector<std::string> narrowed;
  if (b.spec->group == "stream") {
    narrowed = stream_block_args(Args(argv_views(b)), key);
    args.assign(narrowed.begin(), narrowed.end());
  } else if (name == "blmpop" || name == "bzmpop") {
    int64_t numkeys = 0;
    parse_int64(a[2], numkeys);
    args = {a[0], a[1], "1", key};
    for (size_t i = 3 + static_cast<size_t>(numkeys); i < a.size(); ++i) args.push_back(a[i]);
  } else if (is_move(*b.spec)) {
    args.assign(a.begin(), a.end());
  } else {
    args = {a[0], key, a.back()};
  }
  auto& target = shards.shard(sid);
  ClientState client;
  client.protocol = b.protocol;
  CmdCtx ctx;
  ctx.engine = target.engine;
  ctx.partitions = shards.partitions();
  ctx.now_ms = now_ms;
  ctx.client = &client;
  ctx.node = &node;
  ctx.random = &target.random;
  Reply r(b.reply, b.protocol);
  const size_t before = b.reply.size();
  (void)target.engine->take_read_error();
  b.spec->handler(ctx, Args(args.data(), args.size()), r);
  answer_read_error(*target.engine, b.reply, before, b.protocol);
  if (dht) {
    b.waits.clear();
    if (auto w = dht->after_write(sid, now_ms, b.waits); !w) {
      b.write_error = w.error().message;
      return;
    }
    if (!b.waits.empty()) return;  // after_write commits them before the waits end
  }
  if (auto st = target.engine->commit(); !st) {
    b.reply.clear();
    Reply(b.reply, b.protocol).error(durable_error(st.error()));
  }
}

void Server::Impl::serve_ready(unsigned sid) {
  auto& ps = per_shard[sid];
  auto& ev = ps.events;
  if (!ev.has_ready() || ev.gate.held || ps.serving) return;
  ps.serving = true;
  const int64_t now = SystemClock::instance().now_ms();
  while (auto key = ev.next_ready()) {
    auto* readers = ev.waiters(*key);
    if (readers && std::any_of(readers->begin(), readers->end(),
                               [](const auto& w) { return w->spec->group == "stream"; })) {
      // XREAD / XREADGROUP clients wait for different things (entries after their own id, or
      // after their group's last id): each is looked at, in the order they blocked, and one
      // that cannot be served yet does not hold up those behind it.
      for (size_t i = 0; i < readers->size();) {
        std::shared_ptr<BlockedClient> w = (*readers)[i];
        if (w->claimed() || !ready_for(sid, *w, *key, now) || !w->try_claim()) {
          ++i;
          continue;
        }
        readers->erase(readers->begin() + static_cast<std::ptrdiff_t>(i));
        serve_blocked(sid, *w, *key, now);
        auto b = std::static_pointer_cast<Blocker>(w);
        asio::post(shards.shard(b->conn_shard).io, [b] {
          b->served = true;
          b->timer.cancel();
        });
      }
      (void)ev.waiters(*key);  // drops the key once nobody waits on it
      continue;
    }
    while (auto* queue = ev.waiters(*key)) {
      std::shared_ptr<BlockedClient> w = queue->front();
      if (!ready_for(sid, *w, *key, now)) break;  // empty, or holds another type: keep waiting
      if (!w->try_claim()) continue;  // served elsewhere, or timed out: waiters() drops it
      queue->pop_front();
      if (!w->wake_only) serve_blocked(sid, *w, *key, now);
      auto b = std::static_pointer_cast<Blocker>(w);
      asio::post(shards.shard(b->conn_shard).io, [b] {
        b->served = true;
        b->timer.cancel();
      });
      // A client woken to move across shards runs its move itself; the key is looked at again
      // when that changes it (or when the client blocks again).
      if (w->wake_only) break;
    }
  }
  ps.serving = false;
}

awaitable<void> Server::Impl::block(Connection& c, const CommandSpec& spec, Args argv) {
  using clock = std::chrono::steady_clock;
  const int64_t timeout_ms = c.client.block_timeout_ms;
  const auto deadline =
      timeout_ms > 0 ? clock::now() + std::chrono::milliseconds(timeout_ms) : clock::time_point::max();
  const std::vector<std::string> keys = blocking_keys(spec, argv);
  for (;;) {
    auto b = std::make_shared<Blocker>(shards.shard(c.shard).io);
    b->argv.assign(argv.begin(), argv.end());
    b->spec = &spec;
    b->protocol = c.client.protocol;
    b->conn_shard = c.shard;
    if (is_move(spec))
      b->wake_only = shards.owner(key_partition(argv[1], shards.partitions())) !=
                     shards.owner(key_partition(argv[2], shards.partitions()));
    for (const auto& k : keys) {
      const unsigned sid = shards.owner(key_partition(k, shards.partitions()));
      auto reg = [&] {
        auto& ev = per_shard[sid].events;
        ev.block(k, b);
        // Filled between the first try and now: serve at once (whoever blocked first).
        if (ready_for(sid, *b, k, SystemClock::instance().now_ms())) ev.mark_ready(k);
        serve_ready(sid);
      };
      co_await runtime::run_on(shards.shard(sid), reg);
    }
    // A hangup while blocked ends the wait (Redis notices it too); pipelined requests behind
    // the blocking one stop the watch and wait their turn.
    // (Not on a subscribed connection: cancelling the watch would cancel its outbox's write
    // too; a hangup there is noticed when the wait ends.)
    if (!c.ob.active) {
      c.sock.async_wait(tcp::socket::wait_read, [b, fd = c.sock.native_handle()](boost::system::error_code ec) {
        if (ec == asio::error::operation_aborted) return;
        char ch;
        ssize_t n = ec ? 0 : ::recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) b->readable = true;
        else b->hangup = true;
        b->timer.cancel();
      });
    }
    b->timer.expires_at(deadline);
    c.blocked = true;
    c.blocker = b.get();
    bool timed_out = false;
    while (!b->served) {  // (served already if a shard served it while it registered)
      auto [ec] = co_await b->timer.async_wait(asio::as_tuple(use_awaitable));
      if (b->served) break;
      if (b->hangup || (!ec && !b->readable)) {
        if (b->try_claim()) {
          timed_out = !b->hangup;
          break;
        }
        // A shard claimed it first: its reply is on the way.
        b->timer.expires_at(clock::time_point::max());
        continue;
      }
      b->readable = false;
    }
    c.blocked = false;
    c.blocker = nullptr;
    boost::system::error_code ignored;
    if (!c.ob.active) c.sock.cancel(ignored);  // the hangup watch
    for (const auto& k : keys) {
      const unsigned sid = shards.owner(key_partition(k, shards.partitions()));
      auto unreg = [&] { per_shard[sid].events.unblock(k, b.get()); };
      co_await runtime::run_on(shards.shard(sid), unreg);
    }
    if (!b->served) {
      if (!timed_out) {
        c.client.close_after_reply = true;  // hung up: nothing to answer
        co_return;
      }
      if (is_move(spec)) c.reply.null();
      else c.reply.null_array();
      co_return;
    }
    const size_t before = c.out.size();
    if (b->wake_only) {
      // Move across shards as a plain command (atomic: it closes both shards' gates). If
      // another client took the element first, block again.
      c.client.would_block = false;
      co_await execute_key(c, spec, argv, kNoPartition);
      if (!c.client.would_block) co_return;
      c.out.resize(before);
      c.undefer(before);
      continue;
    }
    c.out += b->reply;
    if (b->write_error) {
      c.out.resize(before);
      c.reply.error("TIMEOUT outcome unknown: " + *b->write_error);
    } else if (!b->waits.empty()) {
      c.defer(before, b->waits);
    }
    co_return;
  }
}

awaitable<void> Server::Impl::execute_all(Connection& c, const CommandSpec& spec, Args argv) {
  auto& r = c.reply;
  std::string_view name = spec.name;
  if (name == "info") {
    auto snap = co_await collect();
    std::string section = argv.size() >= 2 ? to_lower(argv[1]) : "default";
    r.verbatim(info(section, snap));
    co_return;
  }
  if (name == "scan") {
    // The cursor encodes (engine cursor, shard): engine_cursor * shards + shard.
    int64_t cur;
    if (!parse_int64(argv[1], cur) || cur < 0) {
      // Redis accepts any unsigned 64-bit; larger values are simply "invalid cursor".
      co_return r.error("ERR invalid cursor");
    }
    std::string_view pattern, type;
    size_t count = 10;
    for (size_t i = 2; i < argv.size(); ++i) {
      if (iequals(argv[i], "match") && i + 1 < argv.size()) {
        pattern = argv[++i];
      } else if (iequals(argv[i], "count") && i + 1 < argv.size()) {
        int64_t n;
        if (!parse_int64(argv[++i], n)) co_return r.not_integer();
        if (n < 1) co_return r.syntax_error();
        count = static_cast<size_t>(std::min<int64_t>(n, 1 << 20));
      } else if (iequals(argv[i], "type") && i + 1 < argv.size()) {
        type = argv[++i];
      } else {
        co_return r.syntax_error();
      }
    }
    uint64_t n = shards.size();
    uint64_t shard = static_cast<uint64_t>(cur) % n;
    uint64_t ecur = static_cast<uint64_t>(cur) / n;
    std::vector<std::string> keys;
    uint64_t next = 0;
    while (shard < n) {
      auto& s = shards.shard(static_cast<unsigned>(shard));
      uint64_t got = 0;
      auto work = [&] {
        ecur = s.engine->scan(ecur, count, c.now_ms, [&](std::string_view k, const ValueRef& v) {
          ++got;
          if (!pattern.empty() && !glob_match(pattern, k)) return;
          if (!type.empty() && !iequals(type, storage::type_name(v.type))) return;
          keys.emplace_back(k);
        });
      };
      co_await runtime::run_on(s, work);
      if (ecur != 0) {
        next = ecur * n + shard;
        break;
      }
      ++shard;
      ecur = 0;
      if (shard < n) next = shard;  // continue with the next shard from its start
      else next = 0;
      if (got >= count) break;
    }
    r.array(2);
    r.bulk(std::to_string(next));
    r.array(keys.size());
    for (auto& k : keys) r.bulk(k);
    co_return;
  }
  if (name == "randomkey") {
    std::vector<unsigned> order;
    for (unsigned i = 0; i < shards.size(); ++i) order.push_back(i);
    auto& rnd = shards.shard(c.shard).random;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rnd.uniform(i)]);
    for (unsigned sid : order) {
      auto& s = shards.shard(sid);
      std::optional<std::string> key;
      auto work = [&] {
        // Sample a window of keys from a scan and pick one: cheap, roughly uniform within a
        // shard for small keyspaces, biased toward early buckets for large ones.
        std::vector<std::string> sample;
        uint64_t cursor = 0;
        do {
          cursor = s.engine->scan(cursor, 64, c.now_ms,
                                  [&](std::string_view k, const ValueRef&) { sample.emplace_back(k); });
        } while (cursor != 0 && sample.size() < 64);
        if (!sample.empty()) key = sample[s.random.uniform(sample.size())];
      };
      co_await runtime::run_on(s, work);
      if (key) co_return r.bulk(*key);
    }
    co_return r.null();
  }
  // DBSIZE, FLUSHALL, FLUSHDB, KEYS: run on every shard and merge.
  int64_t sum = 0;
  std::vector<std::string> bufs(shards.size());
  int64_t total_elems = 0;
  for (unsigned i = 0; i < shards.size(); ++i) {
    co_await run_handler(c, i, spec, argv, bufs[i]);
    if (!bufs[i].empty() && bufs[i][0] == '-') {
      c.out += bufs[i];
      co_return;
    }
    std::string_view rest;
    if (bufs[i][0] == ':' || bufs[i][0] == '*') {
      int64_t v = reply_header_number(bufs[i], rest);
      sum += v;
      total_elems += v;
    }
  }
  if (name == "keys") {
    r.array(static_cast<size_t>(total_elems));
    for (auto& b : bufs) {
      std::string_view rest;
      reply_header_number(b, rest);
      c.out.append(rest);
    }
  } else if (name == "dbsize") {
    r.integer(sum);
  } else {
    r.ok();
  }
}

awaitable<Snapshot> Server::Impl::collect() {
  Snapshot snap;
  snap.shards = shards.size();
  // Distinct over shards (a channel subscribed to on two shards is one channel).
  std::vector<std::string> channels, shard_channels, patterns;
  for (unsigned i = 0; i < shards.size(); ++i) {
    auto& s = shards.shard(i);
    observe::ShardStats st;
    storage::EngineStats es;
    auto work = [&] {
      st = s.stats;
      st.connections_current = per_shard[i].connections.size();
      const auto& reg = per_shard[i].pubsub;
      reg.channels(PubKind::kChannel, nullptr, channels);
      reg.channels(PubKind::kShard, nullptr, shard_channels);
      reg.patterns(patterns);
      st.pubsub_clients = reg.clients();
      es = s.engine->stats();
    };
    co_await runtime::run_on(s, work);
    snap.stats.merge(st);
    snap.engine.keys += es.keys;
    snap.engine.keys_with_expiry += es.keys_with_expiry;
    snap.engine.used_memory_bytes += es.used_memory_bytes;
    snap.engine.expired_keys_total += es.expired_keys_total;
    snap.engine.evicted_keys_total += es.evicted_keys_total;
    snap.engine.disk_bytes = std::max(snap.engine.disk_bytes, es.disk_bytes);
    snap.engine.syncs_total += es.syncs_total;
  }
  if (shards.size() > 0) snap.disk = shards.shard(0).engine->disk_state();
  auto distinct = [](std::vector<std::string>& v) {
    std::sort(v.begin(), v.end());
    return static_cast<uint64_t>(std::unique(v.begin(), v.end()) - v.begin());
  };
  snap.stats.pubsub_channels = distinct(channels);
  snap.stats.pubsub_shard_channels = distinct(shard_channels);
  snap.stats.pubsub_patterns = distinct(patterns);
  if (dht) snap.stats.pubsub_fanout_dropped = dht->publish_dropped();
  co_return snap;
}

awaitable<void> Server::Impl::serve(tcp::socket sock, unsigned shard_id, bool tls,
                                    [[maybe_unused]] std::optional<security::ConnectionSlot> slot) {
  auto& shard = shards.shard(shard_id);
  Connection c(std::move(sock), shard_id);
  c.owner = this;
  auto& ps = per_shard[shard_id];
  ps.connections.push_front(&c);
  auto self = ps.connections.begin();
  ++shard.stats.connections_total;
  c.client.id = next_client_id.fetch_add(1);
  if (acl) {
    c.client.user = acl->default_user();
    c.client.acl_generation = acl->generation();
    c.client.acl_open = c.client.user->unrestricted();
    c.client.authenticated = c.client.user->nopass && c.client.user->enabled;
  } else {
    c.client.authenticated = !node.auth_required();
  }
  c.client.created_ms = c.client.last_cmd_ms = SystemClock::instance().now_ms();
  boost::system::error_code ec;
  auto rep = c.sock.remote_endpoint(ec);
  if (!ec) c.client.addr = fmt::format("{}:{}", rep.address().to_string(), rep.port());
  auto lep = c.sock.local_endpoint(ec);
  if (!ec) c.client.laddr = fmt::format("{}:{}", lep.address().to_string(), lep.port());
  c.sock.set_option(tcp::no_delay(true), ec);

  if (!tls) {
    co_await serve_stream(c, c.sock);
  } else {
    // RESP over TLS: the same loop over the TLS stream (the socket stays the connection's,
    // so shutdown, the idle sweep and the hangup watch work on it as for plain clients).
    std::shared_ptr<asio::ssl::context> ctx = opt.tls->get();  // kept for the connection's life
    asio::ssl::stream<tcp::socket&> stream(c.sock, *ctx);
    // A client that connects and never completes the handshake is dropped after 10 s.
    auto handshaken = std::make_shared<bool>(false);
    asio::steady_timer deadline(shard.io);
    deadline.expires_after(std::chrono::seconds(10));
    deadline.async_wait([handshaken, sock = &c.sock](boost::system::error_code tec) {
      if (tec || *handshaken) return;
      boost::system::error_code ignored;
      sock->shutdown(tcp::socket::shutdown_both, ignored);
      sock->cancel(ignored);
    });
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(use_awaitable));
    *handshaken = true;
    deadline.cancel();
    if (hec) {
      ++shard.stats.tls_handshake_failures;
      klog().debug("client {} ({}): TLS handshake failed: {}", c.client.id, c.client.addr, hec.message());
    } else {
      // What tokens are bound to; and, with auth.cert_users, the user the certificate names.
      c.client.cert_sha256 = security::peer_certificate_sha256(stream.native_handle());
      if (acl && !c.client.cert_sha256.empty()) {
        if (auto u = acl->user_for_certificate(security::peer_certificate_uris(stream.native_handle()))) {
          c.client.user = std::move(u);
          c.client.acl_open = c.client.user->unrestricted();
          c.client.authenticated = true;
          klog().debug("client {} ({}): authenticated as user '{}' by its certificate", c.client.id, c.client.addr,
                       c.client.user->name);
          const std::string ip = client_ip(c.client.addr);
          if (security::audit::success_due("resp|certificate|" + c.client.user->name + "|" + ip,
                                           SystemClock::instance().now_ms()))
            security::audit::emit(security::audit::kAuthSuccess, {{"door", "resp"}, {"method", "certificate"},
                                                                  {"user", c.client.user->name}, {"addr", ip}});
        }
      }
      co_await serve_stream(c, stream);
    }
  }

  // A disconnect leaves no watch behind.
  if (!c.tx.watched.empty()) co_await unwatch_all(c);
  c.sock.shutdown(tcp::socket::shutdown_both, ec);
  c.sock.close(ec);
  ps.connections.erase(self);
  open.fetch_sub(1);
}

template <class Stream>
awaitable<void> Server::Impl::serve_stream(Connection& c, Stream& stream) {
  auto& shard = shards.shard(c.shard);
  c.group_commits = true;
  Parser parser(opt.limits);
  std::string in;
  in.resize(kReadChunk);
  size_t used = 0;
  std::vector<std::string_view> argv;
  argv.reserve(16);
  std::vector<Pending> batch;
  std::vector<std::string_view> flat;  // the arguments of every request in `batch`
  // Used once the connection subscribes (pub/sub): the outbox writes on this stream.
  c.ob.start = [this, &c, &stream] {
    asio::async_write(stream, asio::buffer(c.ob.inflight),
                      [this, &c](boost::system::error_code ec, size_t n) { written(c, ec, n); });
  };

  for (;;) {
    if (in.size() - used < kReadChunk / 4) {
      size_t want = std::max(in.size() * 2, parser.bytes_wanted() + kReadChunk);
      in.resize(std::min<size_t>(want, opt.query_buffer_limit + kReadChunk));
    }
    if (used >= opt.query_buffer_limit) {
      klog().warn("closing client {} ({}): query buffer limit of {} bytes reached", c.client.id,
                   c.client.addr, opt.query_buffer_limit);
      break;
    }
    auto [rec, n] = co_await stream.async_read_some(asio::buffer(in.data() + used, in.size() - used),
                                                    asio::as_tuple(use_awaitable));
    if (rec || n == 0) break;
    used += n;
    shard.stats.net_input_bytes += n;
    c.now_ms = SystemClock::instance().now_ms();
    c.client.last_cmd_ms = c.now_ms;

    size_t start = 0;
    bool close = false;
    while (start < used && !close) {
      // Parse a batch of requests ahead of running them, so the engine can prefetch the keys
      // they touch (their cache misses then overlap). `in` is not modified until the batch
      // has run, so the argument views stay valid; an inline request's views live in the
      // parser, so one ends the batch.
      batch.clear();
      flat.clear();
      bool protocol_error = false;
      for (size_t pos = start; pos < used && batch.size() < kParseAhead;) {
        std::string_view data(in.data() + pos, used - pos);
        auto res = parser.parse(data);
        if (res == Parser::Result::kNeedMore) break;
        if (res == Parser::Result::kError) {
          protocol_error = true;
          break;
        }
        Pending p{flat.size(), 0, parser.consumed()};
        pos += parser.consumed();
        if (res == Parser::Result::kRequest) {
          parser.args(data, argv);
          p.argc = argv.size();
          p.spec = argv.empty() ? nullptr : find_command(argv[0]);
          flat.insert(flat.end(), argv.begin(), argv.end());
        }
        batch.push_back(p);
        if (p.argc > 0 && (flat[p.first].data() < in.data() || flat[p.first].data() >= in.data() + used))
          break;  // inline request
      }
      if (batch.empty() && !protocol_error) break;  // the rest is an incomplete request
      if (batch.size() > 1) prefetch_keys(c, batch, flat);
      for (const Pending& p : batch) {
        if (p.argc > 0) co_await execute(c, Args(flat.data() + p.first, p.argc), p.spec, p.partition);
        start += p.consumed;
        if (c.client.close_after_reply) {
          close = true;
          break;
        }
        if (c.out.size() >= kFlushThreshold) {
          co_await settle(c);
          const bool committed = co_await commit_group(c);
          if (!committed) {
            close = true;
            c.out.clear();
            break;
          }
          if (!co_await write_out(c, stream)) {
            close = true;
            break;
          }
        }
      }
      if (close) break;
      if (protocol_error) {
        ++shard.stats.protocol_errors;
        c.reply.error("ERR " + parser.error());
        klog().debug("client {} ({}): {}", c.client.id, c.client.addr, parser.error());
        close = true;
        break;
      }
    }
    if (start > 0) {
      std::memmove(in.data(), in.data() + start, used - start);
      used -= start;
    }
    co_await settle(c);
    if (!c.out.empty()) {
      const bool committed = co_await commit_group(c);
      if (!committed) break;  // replies would acknowledge lost writes
    }
    if (!c.out.empty() && !co_await write_out(c, stream)) break;
    if (close || stopping.load(std::memory_order_relaxed)) break;
  }
  if (c.ob.active) co_await pubsub_finish(c);
}

awaitable<bool> Server::Impl::commit_group(Connection& c) {
  bool ok = true;
  if (c.dirty) {
    if (!shards.shard(c.shard).engine->commit_does_io()) {
      ok = commit_local(c);
    } else {
      c.dirty = false;
      ok = co_await join_commit(c.shard);
    }
  }
  while (!c.dirty_shards.empty()) {
    const unsigned sid = c.dirty_shards.back();
    c.dirty_shards.pop_back();
    const bool done = co_await asio::co_spawn(shards.shard(sid).io, join_commit(sid), use_awaitable);
    ok = ok && done;
  }
  if (!ok)
    klog().error("closing client {} ({}) without replies: the commit of its writes failed", c.client.id, c.client.addr);
  co_return ok;
}

awaitable<bool> Server::Impl::join_commit(unsigned sid) {
  auto& shard = shards.shard(sid);
  auto& ps = per_shard[sid];
  asio::steady_timer timer(shard.io, asio::steady_timer::time_point::max());
  PerShard::CommitWaiter w{&timer, false};
  ps.commit_waiters.push_back(&w);
  if (!ps.commit_posted) {
    ps.commit_posted = true;
    asio::post(shard.io, [this, sid] { run_group_commit(sid); });
  }
  co_await timer.async_wait(asio::as_tuple(use_awaitable));
  co_return w.ok;
}

void Server::Impl::run_group_commit(unsigned sid) {
  auto& ps = per_shard[sid];
  ps.commit_posted = false;
  auto waiters = std::move(ps.commit_waiters);
  ps.commit_waiters.clear();
  auto st = shards.shard(sid).engine->commit();
  if (!st) klog().error("commit failed for {} connections' writes: {}", waiters.size(), st.error().message);
  for (auto* w : waiters) {
    w->ok = st.has_value();
    w->timer->cancel();
  }
}

// Writes the replies in c.out: directly, or behind the messages a subscribed connection has
// queued. Returns false if the connection is to close (a write failed, or it was cut off).
template <class Stream>
awaitable<bool> Server::Impl::write_out(Connection& c, Stream& stream) {
  if (c.ob.active) {
    if (c.ob.dead) {
      c.out.clear();
      co_return false;
    }
    c.ob.queued.append(c.out);
    c.out.clear();
    outbox_added(c);
    while (!c.ob.dead && c.ob.writing && c.ob.queued.size() > kPushBackpressure) {
      asio::steady_timer t(shards.shard(c.shard).io, std::chrono::steady_clock::time_point::max());
      c.ob.waiter = &t;
      co_await t.async_wait(asio::as_tuple(use_awaitable));
      c.ob.waiter = nullptr;
    }
    co_return !c.ob.dead;
  }
  auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(c.out), asio::as_tuple(use_awaitable));
  shards.shard(c.shard).stats.net_output_bytes += wn;
  // Keep the buffer's capacity for the next batch unless one huge reply inflated it.
  if (c.out.capacity() > (1 << 20)) std::string().swap(c.out);
  else c.out.clear();
  co_return !wec;
}

// ---- Pub/sub -------------------------------------------------------------------------------
//
// Subscriptions live in the registry of the subscriber's shard (PerShard::pubsub): a PUBLISH
// visits every shard of the node in turn and each delivers to its own subscribers, so no shard
// ever touches another's connections. In a cluster PUBLISH also goes to every other member
// over the data plane (dht::Service::publish: a bounded peer queue, never waited on), and the
// reply counts this node's receivers only, as Redis Cluster's does. Shard channels (SPUBLISH)
// go to the slot's owners only: the primary delivers and sends the message to the partition's
// replicas; SSUBSCRIBE is served by an owner and answered -MOVED elsewhere.

void Connection::message(PubKind kind, const std::string* pattern, std::string_view channel,
                         std::string_view payload) {
  owner->push_message(*this, kind, pattern, channel, payload);
}

void Server::Impl::push_message(Connection& c, PubKind kind, const std::string* pattern,
                                std::string_view channel, std::string_view payload) {
  if (c.ob.dead) return;
  Reply r(c.ob.queued, c.client.protocol);
  reply_message(r, kind, pattern, channel, payload);
  outbox_added(c);
}

void Server::Impl::outbox_added(Connection& c) {
  const size_t pending = c.ob.queued.size() + c.ob.inflight.size();
  const uint64_t hard = obuf_hard.load(std::memory_order_relaxed);
  const uint64_t soft = obuf_soft.load(std::memory_order_relaxed);
  bool over = hard > 0 && pending >= hard;
  if (!over && soft > 0 && pending >= soft) {
    const int64_t now = SystemClock::instance().monotonic_ns() / 1000000;
    const auto soft_ms = static_cast<int64_t>(obuf_soft_s.load(std::memory_order_relaxed)) * 1000;
    if (c.ob.soft_since_ms == 0) c.ob.soft_since_ms = now;
    else if (now - c.ob.soft_since_ms > soft_ms) over = true;
  } else if (!over) {
    c.ob.soft_since_ms = 0;
  }
  if (over) return cut_off(c, pending);
  // The write starts once the current handler returns (Redis writes before its next poll too):
  // the messages of every PUBLISH that runs meanwhile go out in one write.
  if (c.ob.writing || c.ob.kick_posted) return;
  c.ob.kick_posted = true;
  asio::post(shards.shard(c.shard).io, [this, &c] {
    c.ob.kick_posted = false;
    kick(c);
    if (c.ob.waiter) c.ob.waiter->cancel();
  });
}

void Server::Impl::kick(Connection& c) {
  if (c.ob.writing || c.ob.dead || c.ob.queued.empty() || !c.ob.start) return;
  KEEL_ASSERT(c.ob.inflight.empty());
  c.ob.inflight.swap(c.ob.queued);
  c.ob.writing = true;
  c.ob.start();
}

void Server::Impl::written(Connection& c, boost::system::error_code ec, size_t n) {
  KEEL_ASSERT(c.ob.writing);
  shards.shard(c.shard).stats.net_output_bytes += n;
  c.ob.writing = false;
  if (ec) {
    if (!c.ob.dead) {  // the peer went away: the read loop ends too
      c.ob.dead = true;
      std::string().swap(c.ob.queued);
      boost::system::error_code ignored;
      c.sock.shutdown(tcp::socket::shutdown_both, ignored);
      c.sock.cancel(ignored);
      wake_blocked(c);
    }
    std::string().swap(c.ob.inflight);
  } else {
    if (c.ob.inflight.capacity() > (1 << 20)) std::string().swap(c.ob.inflight);
    else c.ob.inflight.clear();
    kick(c);
  }
  if (c.ob.waiter) c.ob.waiter->cancel();
}

void Server::Impl::cut_off(Connection& c, size_t pending) {
  c.ob.dead = true;
  ++shards.shard(c.shard).stats.client_output_buffer_limit_disconnections;
  klog().warn("closing client id={} addr={} name={}: its output buffer reached {} bytes, over the pubsub "
               "limit (client-output-buffer-limit pubsub {} {} {}); it reads slower than messages arrive",
               c.client.id, c.client.addr, c.client.name, pending, obuf_hard.load(), obuf_soft.load(),
               obuf_soft_s.load());
  std::string().swap(c.ob.queued);
  boost::system::error_code ignored;
  c.sock.shutdown(tcp::socket::shutdown_both, ignored);
  c.sock.cancel(ignored);  // the write in flight ends (written() frees it), and the read loop
  if (c.ob.waiter) c.ob.waiter->cancel();
  wake_blocked(c);
}

// A subscribed client blocked in BLPOP & co. (RESP3) whose outbox died ends its wait as if it
// had hung up (its hangup watch is off while it subscribes).
void Server::Impl::wake_blocked(Connection& c) {
  if (!c.blocker) return;
  c.blocker->hangup = true;
  c.blocker->timer.cancel();
}

void Server::Impl::pubsub_leave(Connection& c) {
  auto& ps = per_shard[c.shard];
  if (c.client.pubsub > 0) ps.pubsub.remove_client(c.client.id);
  ps.sinks.erase(c.client.id);
  c.client.pubsub = 0;
  pubsub_changed(c.shard);
}

// The replies so far go out behind the messages already queued (and before any message that
// a subscription just made could bring), once they may be acknowledged.
awaitable<void> Server::Impl::pubsub_flush(Connection& c) {
  if (!c.ob.active) co_return;
  co_await settle(c);
  // (GCC 12: the result of a co_await is not used inside a condition.)
  const bool committed = co_await commit_group(c);
  if (!committed) {
    c.out.clear();
    c.client.close_after_reply = true;
    co_return;
  }
  if (c.ob.dead) {
    c.out.clear();
    co_return;
  }
  c.ob.queued.append(c.out);
  c.out.clear();
  outbox_added(c);
}

// The connection ends: no more messages; its last replies (QUIT's +OK) get one second to be
// written, then whatever is in flight is abandoned. Returns once no write or posted kick
// refers to it.
awaitable<void> Server::Impl::pubsub_finish(Connection& c) {
  pubsub_leave(c);
  auto& io = shards.shard(c.shard).io;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    if (!c.ob.kick_posted) kick(c);
    if (!c.ob.writing && !c.ob.kick_posted) break;  // nothing refers to the connection now
    asio::steady_timer t(io, c.ob.dead ? std::chrono::steady_clock::time_point::max() : deadline);
    c.ob.waiter = &t;
    auto [ec] = co_await t.async_wait(asio::as_tuple(use_awaitable));
    c.ob.waiter = nullptr;
    if (!ec && !c.ob.dead) {  // the deadline passed
      c.ob.dead = true;
      boost::system::error_code ignored;
      c.sock.cancel(ignored);
    }
  }
  c.ob.start = nullptr;
}

size_t Server::Impl::deliver(unsigned sid, bool shard_channel, std::string_view channel,
                             std::string_view message) {
  auto& ps = per_shard[sid];
  if (ps.pubsub.clients() == 0) return 0;
  const PubKind kind = shard_channel ? PubKind::kShard : PubKind::kChannel;
  const size_t n = ps.pubsub.publish(shard_channel, channel, [&](uint64_t id, const std::string* pattern) {
    auto it = ps.sinks.find(id);
    KEEL_ASSERT(it != ps.sinks.end());
    it->second->message(kind, pattern, channel, message);
  });
  shards.shard(sid).stats.pubsub_messages_delivered += n;
  return n;
}

awaitable<int64_t> Server::Impl::publish_here(unsigned from, bool shard_channel, std::string_view channel,
                                              std::string_view message) {
  int64_t receivers = 0;
  for (unsigned i = 0; i < shards.size(); ++i) {
    if (i != from && per_shard[i].subscribers.load(std::memory_order_acquire) == 0) continue;
    size_t n = 0;
    auto work = [&] { n = deliver(i, shard_channel, channel, message); };
    if (i == from) work();
    else co_await runtime::run_on(shards.shard(i), work);
    receivers += static_cast<int64_t>(n);
  }
  co_return receivers;
}

void Server::Impl::publish_from_peer(bool shard_channel, std::string channel, std::string message) {
  auto m = std::make_shared<const std::pair<std::string, std::string>>(std::move(channel), std::move(message));
  for (unsigned i = 0; i < shards.size(); ++i)
    if (per_shard[i].subscribers.load(std::memory_order_acquire) > 0)
      asio::post(shards.shard(i).io, [this, i, shard_channel, m] { deliver(i, shard_channel, m->first, m->second); });
}

// Cluster mode, SSUBSCRIBE: "" if this node may serve the shard channels (an owner of their
// slot: the partition's primary or a replica), else the error to send: -MOVED to the primary,
// as Redis Cluster answers, or -CROSSSLOT if they are in several slots.
std::string Server::Impl::shard_channel_refusal(Connection& c, Args argv) {
  const dht::Topology* topo = dht->current(c.shard);
  if (!topo) return "CLUSTERDOWN The cluster is down (this node does not know the partition map yet; retry)";
  const uint32_t slot = key_slot(argv[1]);
  // A single node (the embedded one-member cluster) takes any channels, as Redis does outside
  // cluster mode.
  if (topo->nodes.size() > 1)
    for (size_t i = 2; i < argv.size(); ++i)
      if (key_slot(argv[i]) != slot) return "CROSSSLOT Keys in request don't hash to the same slot";
  const auto& part = topo->parts[slot_partition(slot, shards.partitions())];
  if (part.primary == topo->self ||
      std::find(part.replicas.begin(), part.replicas.end(), topo->self) != part.replicas.end())
    return "";
  const dht::NodeRecord* n = topo->node(part.primary);
  if (part.primary == 0 || !n) return "CLUSTERDOWN Hash slot not served (the partition map has no primary for it)";
  return fmt::format("MOVED {} {}", slot, n->resp);
}

awaitable<void> Server::Impl::execute_pubsub(Connection& c, const CommandSpec& spec, Args argv) {
  auto& r = c.reply;
  const std::string_view name = spec.name;
  auto& ps = per_shard[c.shard];
  const uint64_t id = c.client.id;

  if (name == "publish") {
    const int64_t n = co_await publish_here(c.shard, false, argv[1], argv[2]);
    if (dht) {
      if (const dht::Topology* topo = dht->current(c.shard)) {
        std::vector<uint32_t> others;
        for (const auto& [node_id, rec] : topo->nodes)
          if (node_id != topo->self) others.push_back(node_id);
        if (!others.empty()) dht->publish(others, false, argv[1], argv[2]);
      }
    }
    co_return r.integer(n);
  }
  if (name == "spublish") {
    std::vector<uint32_t> replicas;
    if (dht) {
      const dht::Topology* topo = dht->current(c.shard);
      if (!topo) co_return r.error("CLUSTERDOWN The cluster is down (this node does not know the partition map yet; retry)");
      const auto& part = topo->parts[key_partition(argv[1], shards.partitions())];
      if (part.primary == 0) co_return r.error("CLUSTERDOWN Hash slot not served (the partition map has no primary for it)");
      if (part.primary != topo->self) {
        // Like a key command: run by the slot's primary, which reaches the slot's owners.
        if (c.forwarded) co_return r.error("TRYAGAIN the shard channel's slot moved while SPUBLISH was forwarded; retry");
        const uint32_t primary = part.primary;
        co_return co_await execute_forward(c, argv, primary);
      }
      replicas = part.replicas;
    }
    const int64_t n = co_await publish_here(c.shard, true, argv[1], argv[2]);
    if (!replicas.empty()) dht->publish(replicas, true, argv[1], argv[2]);
    co_return r.integer(n);
  }
  if (name == "pubsub") co_return co_await pubsub_introspect(c, argv);

  PubKind kind = PubKind::kChannel;
  if (name == "psubscribe" || name == "punsubscribe") kind = PubKind::kPattern;
  else if (name == "ssubscribe" || name == "sunsubscribe") kind = PubKind::kShard;
  auto count = [&] {
    return kind == PubKind::kShard ? ps.pubsub.count(id, PubKind::kShard) : ps.pubsub.subscriptions(id);
  };
  if (!name.ends_with("unsubscribe")) {
    if (c.internal)
      co_return r.error(fmt::format("ERR {} isn't allowed for a DENY BLOCKING client", upper(name)));
    if (kind == PubKind::kShard && dht)
      if (auto e = shard_channel_refusal(c, argv); !e.empty()) co_return r.error(e);
    c.ob.active = true;
    ps.sinks[id] = &c;
    for (size_t i = 1; i < argv.size(); ++i) {
      ps.pubsub.subscribe(id, kind, argv[i]);
      reply_subscription(r, name, &argv[i], count());
    }
  } else if (argv.size() == 1) {
    const auto names = ps.pubsub.names(id, kind);
    if (names.empty()) reply_subscription(r, name, nullptr, count());
    for (const auto& n : names) {
      ps.pubsub.unsubscribe(id, kind, n);
      const std::string_view v = n;
      reply_subscription(r, name, &v, count());
    }
  } else {
    for (size_t i = 1; i < argv.size(); ++i) {
      ps.pubsub.unsubscribe(id, kind, argv[i]);
      reply_subscription(r, name, &argv[i], count());
    }
  }
  c.client.pubsub = ps.pubsub.total(id);
  if (c.client.pubsub == 0) ps.sinks.erase(id);
  pubsub_changed(c.shard);
  co_await pubsub_flush(c);
}

// PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP, over every shard of this node
// (in a cluster, as in Redis Cluster, a node answers for its own subscribers).
awaitable<void> Server::Impl::pubsub_introspect(Connection& c, Args argv) {
  auto& r = c.reply;
  const std::string sub = to_lower(argv[1]);
  if (sub == "help") {
    if (argv.size() != 2) co_return r.error(wrong_args("pubsub|help"));
    static const std::vector<std::string_view> kHelp = {
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Print this help."};
    r.array(kHelp.size());
    for (auto line : kHelp) r.simple(line);
    co_return;
  }
  const bool shard_kind = sub == "shardchannels" || sub == "shardnumsub";
  const PubKind kind = shard_kind ? PubKind::kShard : PubKind::kChannel;
  if (sub == "channels" || sub == "shardchannels") {
    if (argv.size() > 3)
      co_return r.error(fmt::format("ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
                                    argv[1].substr(0, 128), upper(argv[0])));
    std::optional<std::string> pattern;
    if (argv.size() == 3) pattern.emplace(argv[2]);
    std::vector<std::string> names;
    for (unsigned i = 0; i < shards.size(); ++i) {
      auto work = [&] { per_shard[i].pubsub.channels(kind, pattern ? &*pattern : nullptr, names); };
      co_await runtime::run_on(shards.shard(i), work);
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    r.array(names.size());
    for (const auto& n : names) r.bulk(n);
    co_return;
  }
  if (sub == "numsub" || sub == "shardnumsub") {
    std::vector<int64_t> counts(argv.size() - 2, 0);
    for (unsigned i = 0; i < shards.size(); ++i) {
      auto work = [&] {
        for (size_t j = 2; j < argv.size(); ++j)
          counts[j - 2] += static_cast<int64_t>(per_shard[i].pubsub.numsub(kind, argv[j]));
      };
      co_await runtime::run_on(shards.shard(i), work);
    }
    r.array(counts.size() * 2);
    for (size_t j = 2; j < argv.size(); ++j) {
      r.bulk(argv[j]);
      r.integer(counts[j - 2]);
    }
    co_return;
  }
  if (sub == "numpat") {
    if (argv.size() != 2) co_return r.error(wrong_args("pubsub|numpat"));
    std::vector<std::string> patterns;
    for (unsigned i = 0; i < shards.size(); ++i) {
      auto work = [&] { per_shard[i].pubsub.patterns(patterns); };
      co_await runtime::run_on(shards.shard(i), work);
    }
    std::sort(patterns.begin(), patterns.end());
    r.integer(static_cast<int64_t>(std::unique(patterns.begin(), patterns.end()) - patterns.begin()));
    co_return;
  }
  r.error(fmt::format("ERR unknown subcommand '{}'. Try {} HELP.", argv[1].substr(0, 128), upper(argv[0])));
}

// One acceptor (on shard 0) hands connections to shards round-robin. (SO_REUSEPORT on every
// shard would spread them too, but would also let a second keel silently share the port.)
awaitable<void> Server::Impl::accept_loop(unsigned shard_id, bool tls) {
  auto& ps = per_shard[shard_id];
  auto& shard = shards.shard(shard_id);
  auto& acceptor = tls ? *ps.tls_acceptor : *ps.acceptor;
  unsigned next = 0;
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping) co_return;
      klog().warn("accept failed: {}", ec.message());
      continue;
    }
    if (open.load() >= max_clients.load(std::memory_order_relaxed)) {
      ++shard.stats.rejected_connections;
      if (tls) {  // no handshake yet: the message could not be read; just close
        boost::system::error_code cec;
        sock.close(cec);
        continue;
      }
      static const char kMsg[] = "-ERR max number of clients reached\r\n";
      boost::system::error_code wec;
      asio::write(sock, asio::buffer(kMsg, sizeof kMsg - 1), wec);
      sock.close(wec);
      continue;
    }
    std::optional<security::ConnectionSlot> slot;
    if (connection_limits) {  // limits.address_connections, shared with the HTTP door
      boost::system::error_code rec;
      std::string why;
      slot = connection_limits->open_connection(sock.remote_endpoint(rec).address().to_string(), why);
      if (!slot) {
        ++shard.stats.rejected_connections;
        boost::system::error_code wec;
        if (!tls) {  // a TLS client would need a handshake to read it: just closed
          const std::string msg = "-ERR " + why + "\r\n";
          asio::write(sock, asio::buffer(msg), wec);
        }
        sock.close(wec);
        continue;
      }
    }
    open.fetch_add(1);
    unsigned target = next++ % shards.size();
    if (target == shard_id) {
      asio::co_spawn(shard.io, serve(std::move(sock), target, tls, std::move(slot)), asio::detached);
      continue;
    }
    auto protocol = sock.local_endpoint().protocol();
    int fd = sock.release();
    asio::post(shards.shard(target).io, [this, fd, protocol, target, tls, slot = std::move(slot)]() mutable {
      tcp::socket moved(shards.shard(target).io);
      boost::system::error_code aec;
      moved.assign(protocol, fd, aec);
      if (aec) {
        ::close(fd);
        open.fetch_sub(1);
        return;
      }
      asio::co_spawn(shards.shard(target).io, serve(std::move(moved), target, tls, std::move(slot)), asio::detached);
    });
  }
}

// Closes connections idle longer than timeout_s (checked once a second per shard).
awaitable<void> Server::Impl::idle_sweep(unsigned shard_id) {
  auto& shard = shards.shard(shard_id);
  asio::steady_timer timer(shard.io);
  while (!stopping) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(use_awaitable));
    if (ec || stopping) co_return;
    int64_t now = SystemClock::instance().now_ms();
    auto limit = static_cast<int64_t>(timeout_s.load(std::memory_order_relaxed));
    if (limit == 0) continue;
    for (auto* c : per_shard[shard_id].connections) {
      // Subscribers are not subject to the timeout (as in Redis).
      if (!c->blocked && c->client.pubsub == 0 && now - c->client.last_cmd_ms > limit * 1000) {
        klog().debug("closing client {} ({}): idle for more than {} s", c->client.id, c->client.addr,
                      limit);
        boost::system::error_code sec;
        c->sock.shutdown(tcp::socket::shutdown_both, sec);
        c->sock.cancel(sec);
      }
    }
  }
}

Server::Server(runtime::ShardSet& shards, NodeView& node, ServerOptions options, InfoFormatter info)
    : impl_(std::make_unique<Impl>(shards, node, std::move(options), std::move(info))) {}

Server::~Server() = default;

Result<int> Server::start() {
  auto& im = *impl_;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(im.opt.bind, ec);
  if (ec) return make_error(Errc::kInvalidArgument, fmt::format("server.bind: '{}' is not an IP address", im.opt.bind));
  int port = 0;
  if (im.opt.plaintext) {
    auto acc = std::make_unique<tcp::acceptor>(im.shards.shard(0).io);
    tcp::endpoint ep(addr, static_cast<unsigned short>(im.opt.port));
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return make_error(Errc::kIoError, fmt::format("cannot listen for RESP on {}:{}: {}", im.opt.bind, im.opt.port, ec.message()));
    port = acc->local_endpoint().port();
    im.per_shard[0].acceptor = std::move(acc);
  }
  if (im.opt.tls) {
    auto tacc = std::make_unique<tcp::acceptor>(im.shards.shard(0).io);
    tcp::endpoint tep(addr, static_cast<unsigned short>(im.opt.tls_port));
    tacc->open(tep.protocol(), ec);
    if (!ec) tacc->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) tacc->bind(tep, ec);
    if (!ec) tacc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return make_error(Errc::kIoError, fmt::format("cannot listen for RESP over TLS on {}:{} (tls.port): {}", im.opt.bind,
                                                    im.opt.tls_port, ec.message()));
    im.bound_tls_port = tacc->local_endpoint().port();
    im.per_shard[0].tls_acceptor = std::move(tacc);
    asio::co_spawn(im.shards.shard(0).io, im.accept_loop(0, true), asio::detached);
  }
  if (im.per_shard[0].acceptor) asio::co_spawn(im.shards.shard(0).io, im.accept_loop(0, false), asio::detached);
  for (unsigned i = 0; i < im.shards.size(); ++i)
    asio::co_spawn(im.shards.shard(i).io, im.idle_sweep(i), asio::detached);
  return port;
}

void Server::shutdown() {
  auto& im = *impl_;
  im.stopping = true;
  for (unsigned i = 0; i < im.shards.size(); ++i) {
    std::promise<void> done;
    asio::post(im.shards.shard(i).io, [&, i] {
      boost::system::error_code ec;
      if (im.per_shard[i].acceptor) im.per_shard[i].acceptor->close(ec);
      if (im.per_shard[i].tls_acceptor) im.per_shard[i].tls_acceptor->close(ec);
      // Pending reads complete with EOF; requests already read are answered first.
      for (auto* c : im.per_shard[i].connections) c->sock.shutdown(tcp::socket::shutdown_receive, ec);
      done.set_value();
    });
    done.get_future().wait();
  }
}

awaitable<Snapshot> collect_snapshot(Server& server) { co_return co_await server.impl()->collect(); }

uint64_t Server::open_connections() const { return impl_->open.load(); }
int Server::tls_port() const { return impl_->bound_tls_port; }
void Server::set_max_clients(uint64_t n) { impl_->max_clients.store(n); }
void Server::set_timeout_s(uint64_t s) { impl_->timeout_s.store(s); }
void Server::set_pubsub_limits(PubSubLimits l) {
  impl_->obuf_hard.store(l.hard_bytes);
  impl_->obuf_soft.store(l.soft_bytes);
  impl_->obuf_soft_s.store(l.soft_s);
}
PubSubLimits Server::pubsub_limits() const {
  return {impl_->obuf_hard.load(), impl_->obuf_soft.load(), impl_->obuf_soft_s.load()};
}
uint64_t Server::subscribe_sink(unsigned shard, PubKind kind, std::string_view name, PubSubSink* sink) {
  KEEL_ASSERT(runtime::ShardSet::current() == static_cast<int>(shard));
  auto& ps = impl_->per_shard[shard];
  const uint64_t id = impl_->next_sink_id();
  ps.pubsub.subscribe(id, kind, name);
  ps.sinks[id] = sink;
  impl_->pubsub_changed(shard);
  return id;
}
void Server::unsubscribe_sink(unsigned shard, uint64_t id) {
  KEEL_ASSERT(runtime::ShardSet::current() == static_cast<int>(shard));
  auto& ps = impl_->per_shard[shard];
  ps.pubsub.remove_client(id);
  ps.sinks.erase(id);
  impl_->pubsub_changed(shard);
}
void Server::count_output_limit_disconnection(unsigned shard) {
  ++impl_->shards.shard(shard).stats.client_output_buffer_limit_disconnections;
}
void Server::set_caches(cache::Service* caches) { impl_->caches = caches; }
void Server::set_routes(routing::Service* routes) { impl_->routes = routes; }
void Server::set_transit(security::TransitService* transit) { impl_->transit = transit; }
void Server::set_secrets(security::SecretsService* secrets) { impl_->secrets = secrets; }
void Server::set_client_limits(std::shared_ptr<security::ClientLimits> limits) {
  impl_->connection_limits = limits && limits->limits_connections() ? limits : nullptr;
  impl_->client_limits = limits && limits->enabled() ? std::move(limits) : nullptr;
}
void Server::set_acl(security::AclService* acl) {
  impl_->acl_service = acl;
  impl_->acl = acl ? &acl->acl() : nullptr;
  if (impl_->acl) {
    Impl* im = impl_.get();
    impl_->acl->set_on_change([im] { im->acl_changed(); });
  }
}

void Server::Impl::acl_sweep(unsigned sid) {
  if (stopping) return;
  auto& ps = per_shard[sid];
  int64_t now = SystemClock::instance().now_ms();
  for (Connection* c : ps.connections) {
    if (!c->client.user || c->internal || c->client.pubsub == 0 || c->ob.dead) continue;
    auto u = acl->find(c->client.user->name);
    std::string refused;
    std::optional<std::string> revoked_id;
    if (c->client.token) revoked_id = acl->revoked(*c->client.token);
    if (u && !u->allchannels && !revoked_id) {
      for (PubKind kind : {PubKind::kChannel, PubKind::kPattern, PubKind::kShard}) {
        for (auto& name : ps.pubsub.names(c->client.id, kind))
          if (!u->channel_allowed(name, kind == PubKind::kPattern)) refused = name;
      }
    }
    if (u && refused.empty() && !revoked_id) {
      c->client.user = std::move(u);
      c->client.acl_open = c->client.user->unrestricted() && !c->client.token;
      c->client.acl_generation = acl->generation();
      continue;
    }
    klog().info("closing subscriber id={} addr={} user={}: {}", c->client.id, c->client.addr,
                 c->client.user->name,
                 revoked_id ? fmt::format("the token it authenticated with was revoked (id {})", *revoked_id)
                 : u        ? fmt::format("its user may no longer subscribe to '{}'", refused)
                            : std::string("its user was removed"));
    if (u && !revoked_id) acl_log(*acl, c->client, "channel", refused, u->name, now);
    c->ob.dead = true;
    std::string().swap(c->ob.queued);
    boost::system::error_code ignored;
    c->sock.shutdown(tcp::socket::shutdown_both, ignored);
    c->sock.cancel(ignored);
    if (c->ob.waiter) c->ob.waiter->cancel();
    wake_blocked(*c);
  }
}
bool Server::clustered() const { return impl_->dht != nullptr; }
void Server::run(std::vector<std::string> argv, std::function<void(std::string)> done,
                 std::optional<observe::TraceParent> parent) {
  impl_->execute_forwarded(std::move(argv), 2, std::move(parent), 0, std::move(done), false);
}
void Server::set_tracer(observe::Tracer* tracer) { impl_->tracer = tracer; }
void Server::set_dht(dht::Service* dht) {
  impl_->dht = dht;
  if (dht)
    dht->set_publish_handler([im = impl_.get()](bool shard_channel, std::string channel, std::string message) {
      im->publish_from_peer(shard_channel, std::move(channel), std::move(message));
    });
  if (dht)
    dht->set_executor([im = impl_.get()](std::vector<std::string> argv, int protocol,
                                         std::optional<observe::TraceParent> parent, uint32_t from,
                                         std::function<void(std::string)> done) {
      im->execute_forwarded(std::move(argv), protocol, std::move(parent), from, std::move(done));
    });
}

Snapshot Server::collect_blocking() {
  std::promise<Snapshot> p;
  asio::co_spawn(impl_->shards.shard(0).io, impl_->collect(),
                 [&p](std::exception_ptr e, Snapshot s) {
                   if (e) p.set_exception(e);
                   else p.set_value(std::move(s));
                 });
  return p.get_future().get();
}

}  // namespace keel::resp
