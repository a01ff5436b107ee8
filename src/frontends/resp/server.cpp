#include "frontends/resp/server.h"
#include "frontends/resp/server_async.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <unistd.h>
#include <future>
#include <list>
#include <map>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/slots.h"
#include "frontends/resp/cache_admin.h"
#include "frontends/resp/family_util.h"
#include "frontends/resp/scratch_engine.h"
#include "services/cache/service.h"
#include "dht/service_async.h"
#include "observe/log_context.h"
#include "observe/tracer.h"
#include "runtime/shards.h"

namespace keel::resp {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kFlushThreshold = 64 * 1024;  // write replies mid-batch past this size
constexpr size_t kParseAhead = 32;              // requests parsed before any of them runs

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

struct Connection {
  tcp::socket sock;
  unsigned shard;
  ClientState client;
  std::string out;
  Reply reply{out};
  bool error_reply = false;
  bool dirty = false;  // writes on this connection's shard not yet committed
  int64_t now_ms = 0;
  bool forwarded = false;  // a request another node forwarded here: never forwarded again
  // Cluster mode: the partitions of the command being run (checked on their shard) and what
  // its reply must wait for (partition, lsn) before it is acknowledged.
  std::vector<uint32_t> parts;
  std::vector<std::pair<uint32_t, uint64_t>> waits;
  std::optional<Error> write_error;
  struct Deferred {
    size_t begin, end;  // the reply's bytes in `out`
    std::vector<std::pair<uint32_t, uint64_t>> waits;
  };
  std::vector<Deferred> deferred;
  // Tracing, a command with a remote parent (CLIENT TRACEPARENT): its trace and span ids,
  // drawn before it runs so that what its handler logs carries them (observe/log_context.h).
  std::optional<observe::LogContext> log_ctx;
  explicit Connection(tcp::socket s, unsigned sh) : sock(std::move(s)), shard(sh) {}
};


struct PerShard {
  std::unique_ptr<tcp::acceptor> acceptor;
  std::list<Connection*> connections;
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
  // Changeable at run time (CONFIG SET maxclients / timeout).
  std::atomic<uint64_t> max_clients;
  std::atomic<uint64_t> timeout_s;
  cache::Service* caches = nullptr;  // CACHE.* (set before start)
  dht::Service* dht = nullptr;  // cluster mode: routing, forwarding, replication
  observe::Tracer* tracer = nullptr;  // set before start: spans of commands (observe/tracer.h)

  Impl(runtime::ShardSet& s, NodeView& n, ServerOptions o, InfoFormatter f)
      : shards(s), node(n), opt(std::move(o)), info(std::move(f)), per_shard(s.size()),
        max_clients(opt.max_clients), timeout_s(opt.timeout_s) {}

  awaitable<void> accept_loop(unsigned shard_id);
  awaitable<void> idle_sweep(unsigned shard_id);

  // Commits this connection's writes on its own shard (group commit for the batch). On
  // failure the connection is dropped without its replies: the client must not take the
  // writes as acknowledged.
  bool commit_local(Connection& c) {
    if (!c.dirty) return true;
    c.dirty = false;
    auto st = shards.shard(c.shard).engine->commit();
    if (!st) {
      spdlog::error("closing client {} ({}) without replies: commit failed: {}", c.client.id,
                    c.client.addr, st.error().message);
      return false;
    }
    return true;
  }
  awaitable<void> serve(tcp::socket sock, unsigned shard_id);
  awaitable<void> execute(Connection& c, Args argv, const CommandSpec* spec, uint32_t partition);
  // The sampler's verdict on a finished command, and its span if kept (tracer != null).
  void trace_command(Connection& c, const CommandSpec& spec, int64_t t0_ns, int64_t dt_ns, bool failed,
                     size_t reply_begin);
  void prefetch_keys(const Connection& c, std::vector<Pending>& batch,
                     const std::vector<std::string_view>& flat);
  awaitable<void> execute_multi_key(Connection& c, const CommandSpec& spec, Args argv,
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
  awaitable<void> pause(unsigned shard, int64_t ms);
  void after_routed(Connection& c, size_t before);
  void execute_forwarded(std::vector<std::string> argv, int protocol,
                         std::function<void(std::string)> done, bool forwarded = true);
  awaitable<void> run_one(unsigned sid, std::vector<std::string> argv, int protocol,
                          std::function<void(std::string)> done, bool forwarded);

  // Runs `spec.handler` with `argv` on shard `sid`, writing the reply into `out`.
  awaitable<void> run_handler(Connection& c, unsigned sid, const CommandSpec& spec, Args argv,
                              std::string& out, const char* routed_key = nullptr,
                              uint32_t routed_partition = 0);
};

awaitable<void> Server::Impl::run_handler(Connection& c, unsigned sid, const CommandSpec& spec,
                                          Args argv, std::string& out, const char* routed_key,
                                          uint32_t routed_partition) {
  auto& target = shards.shard(sid);
  int proto = c.client.protocol;
  auto work = [&] {
    std::optional<observe::LogScope> log_scope;
    if (c.log_ctx) [[unlikely]]
      log_scope.emplace(&*c.log_ctx);
    CmdCtx ctx;
    ctx.engine = target.engine;
    ctx.partitions = shards.partitions();
    ctx.now_ms = c.now_ms;
    ctx.client = &c.client;
    ctx.node = &node;
    ctx.random = &target.random;
    ctx.caches = caches ? &caches->catalog(sid) : nullptr;
    ctx.routed_key = routed_key;
    ctx.routed_partition = routed_partition;
    size_t before = out.size();
    Reply r(out, proto);
    if (dht && !c.parts.empty()) {
      bool write = spec.flags & kWrite;
      for (uint32_t p : c.parts) {
        if (shards.owner(p) != sid) continue;
        if (auto e = dht->check_local(sid, p, write, c.now_ms); !e.empty()) return r.error(e);
      }
      if (!write)
        for (uint32_t p : c.parts)
          if (shards.owner(p) == sid)
            if (uint64_t lsn = dht->read_fence(sid, p, c.now_ms)) c.waits.emplace_back(p, lsn);
      spec.handler(ctx, argv, r);
      // Reads may expire keys (deletions to replicate) as well as writes. Recorded effects
      // are committed locally, then shipped to the replicas.
      auto waits = dht->after_write(sid, c.now_ms);
      if (!waits) {
        c.write_error = waits.error();
      } else if (!waits->empty()) {
        // after_write committed this shard's engine (every write so far) before shipping.
        c.waits.insert(c.waits.end(), waits->begin(), waits->end());
        if (sid == c.shard) c.dirty = false;
        return;
      }
    } else {
      spec.handler(ctx, argv, r);
    }
    if (!(spec.flags & kWrite)) return;
    if (sid == c.shard) {
      c.dirty = true;  // committed once for the whole batch, before the replies are written
      return;
    }
    // Another shard's write: commit it there before its reply can be sent.
    if (auto st = target.engine->commit(); !st) {
      out.resize(before);
      Reply(out, proto).error("ERR the write could not be made durable: " + st.error().message);
    }
  };
  if (sid == c.shard) {
    work();
    co_return;
  }
  ++shards.shard(c.shard).stats.cross_shard_hops;
  co_await runtime::run_on(target, work);
}

// Hands the engine of this connection's shard the keys of a parsed batch that it owns.
void Server::Impl::prefetch_keys(const Connection& c, std::vector<Pending>& batch,
                                 const std::vector<std::string_view>& flat) {
  storage::Engine::KeyRef keys[kParseAhead];
  size_t n = 0;
  for (Pending& p : batch) {
    const CommandSpec* spec = p.spec;
    if (p.argc < 2 || !spec || spec->routing != Routing::kKey || spec->first_key < 1 ||
        static_cast<size_t>(spec->first_key) >= p.argc)
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
    std::string args;
    for (size_t i = 1; i < argv.size() && args.size() < 128; ++i)
      args += fmt::format("'{}' ", argv[i].substr(0, 128));
    r.error(fmt::format("ERR unknown command '{}', with args beginning with: {}",
                        argv[0].substr(0, 128), args));
    co_return;
  }
  if (!arity_ok(*spec, argv.size())) {
    r.error(wrong_args(spec->name));
    co_return;
  }
  if (!c.client.authenticated && !(spec->flags & kNoAuth)) {
    r.error("NOAUTH Authentication required.");
    co_return;
  }
  c.client.last_cmd.assign(spec->name);
  size_t before = c.out.size();
  int64_t t0 = SystemClock::instance().monotonic_ns();
  if (tracer) [[unlikely]] {
    if (c.client.trace_parent)
      c.log_ctx = observe::LogContext{c.client.trace_parent->trace_id, observe::span_id_from(tracer->random(c.shard))};
    else
      c.log_ctx.reset();
  }

  switch (spec->routing) {
    case Routing::kLocal:
      if (spec->name == "client" && argv.size() == 2 && iequals(argv[1], "list")) {
        std::string lines;
        for (unsigned i = 0; i < shards.size(); ++i) {
          auto gather = [&, i] {
            for (auto* conn : per_shard[i].connections) {
              auto& cl = conn->client;
              lines += fmt::format("id={} addr={} laddr={} fd={} name={} age={} idle={} db=0 resp={} cmd={}\n",
                                   cl.id, cl.addr, cl.laddr, conn->sock.native_handle(), cl.name,
                                   (c.now_ms - cl.created_ms) / 1000,
                                   (c.now_ms - cl.last_cmd_ms) / 1000, cl.protocol,
                                   cl.last_cmd.empty() ? "NULL" : cl.last_cmd);
            }
          };
          co_await runtime::run_on(shards.shard(i), gather);
        }
        r.verbatim(lines);
      } else if (spec->name == "cluster" && argv.size() >= 3 &&
                 (iequals(argv[1], "countkeysinslot") || iequals(argv[1], "getkeysinslot"))) {
        co_await cluster_keys_in_slot(c, argv);
      } else if (!spec->handler) {  // CACHE.CREATE, INFO, LIST, DROP, CLEAR
        if (caches) co_await execute_cache_admin(*caches, *spec, argv, r);
        else r.error("ERR the caching service is not running on this node");
      } else {
        co_await run_handler(c, c.shard, *spec, argv, c.out);
      }
      break;
    case Routing::kKey: {
      std::string_view first = argv[static_cast<size_t>(spec->first_key)];
      uint32_t part = partition != kNoPartition ? partition : key_partition(first, shards.partitions());
      if (dht) {
        if (!dht->current(c.shard)) {
          r.error("CLUSTERDOWN The cluster is down (this node does not know the partition map yet; retry)");
          break;
        }
        static const std::vector<size_t> kNoOtherKeys;
        std::vector<size_t> keys;
        if (has_other_keys(*spec)) keys = command_keys(*spec, argv);
        // A command on one partition refused with TRYAGAIN (the partition is moving or failing
        // over: nothing ran) is tried again here, routed by the newest map, until the request
        // timeout: the client sees a slower reply, not the error. A node serving a forwarded
        // command leaves that to the node the client is connected to.
        bool one_partition = !c.forwarded;
        for (size_t k : keys) one_partition &= key_partition(argv[k], shards.partitions()) == part;
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
            if (one_shard) co_await run_handler(c, owner, *spec, argv, c.out, first.data(), part);
            else co_await execute_multi_key(c, *spec, argv, keys);
            after_routed(c, before);
          }
          if (!one_partition || c.out.compare(before, 9, "-TRYAGAIN") != 0) break;
          int64_t now = SystemClock::instance().monotonic_ns() / 1000000;
          if (give_up == 0) give_up = now + dht->options().request_timeout_ms;
          if (now + pause_ms > give_up) break;
          c.out.resize(before);
          co_await pause(c.shard, pause_ms);
        }
        break;
      }
      unsigned owner = shards.owner(part);
      bool one_shard = true;
      if (has_other_keys(*spec) && shards.size() > 1) {
        for (size_t k : command_keys(*spec, argv))
          one_shard &= shards.owner(key_partition(argv[k], shards.partitions())) == owner;
      }
      if (one_shard) co_await run_handler(c, owner, *spec, argv, c.out, first.data(), part);
      else co_await execute_multi_key(c, *spec, argv, command_keys(*spec, argv));
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
  if (tracer) [[unlikely]]
    trace_command(c, *spec, t0, dt, failed, before);
}

void Server::Impl::trace_command(Connection& c, const CommandSpec& spec, int64_t t0_ns, int64_t dt_ns,
                                 bool failed, size_t reply_begin) {
  auto& parent = c.client.trace_parent;
  uint64_t low = 0;
  bool head;
  if (parent) {
    head = observe::Sampler::head_parent(parent->sampled());
  } else {
    low = tracer->random(c.shard);
    head = tracer->sampler().head_root(low);
  }
  if (!tracer->sampler().keep(head, failed, dt_ns)) return;
  observe::SpanData s;
  if (parent) {
    s.trace_id = parent->trace_id;
    s.parent_span_id = parent->span_id;
    s.trace_state = parent->trace_state;
  } else {
    s.trace_id = observe::trace_id_from(tracer->random(c.shard), low);
  }
  s.span_id = c.log_ctx ? c.log_ctx->span_id : observe::span_id_from(tracer->random(c.shard));
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
  if (c.forwarded) s.attributes.push_back({"keel.forwarded", true});
  if (failed && reply_begin < c.out.size()) {
    std::string_view err(c.out.data() + reply_begin + 1, c.out.size() - reply_begin - 1);
    err = err.substr(0, std::min(err.find("\r\n"), size_t{256}));
    s.status_code = observe::kStatusError;
    s.status_message.assign(err);
    s.attributes.push_back({"error.type", std::string(err.substr(0, err.find(' ')))});
  }
  tracer->record(c.shard, std::move(s));
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

// Where a key command runs (no suspension): here (0), on another node (its id), or nowhere
// (an error reply was written). Fills c.parts with the command's partitions.
uint32_t Server::Impl::route(Connection& c, Args argv, const std::vector<size_t>& keys,
                             uint32_t first_part) {
  auto& r = c.reply;
  const dht::Topology* topo = dht->current(c.shard);
  c.parts.clear();
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
  auto reply = co_await dht::forward(*dht, c.shard, node, argv, c.client.protocol);
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
    c.deferred.push_back({before, c.out.size(), std::move(c.waits)});
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
  std::map<unsigned, std::map<uint32_t, uint64_t>> by_shard;
  for (auto& d : c.deferred)
    for (auto& [p, lsn] : d.waits) {
      auto& m = by_shard[shards.owner(p)][p];
      m = std::max(m, lsn);
    }
  std::map<unsigned, std::string> failed;
  for (auto& [sid, parts] : by_shard) {
    std::vector<std::pair<uint32_t, uint64_t>> ws(parts.begin(), parts.end());
    // On this connection's own shard the wait runs inline; elsewhere it hops there.
    // Not `cond ? co_await a : co_await b`: GCC 12 destroys the result of a co_await in a
    // conditional expression twice (a double free once it holds an error message).
    Status st;
    if (sid == c.shard)
      st = co_await dht::wait_committed(*dht, sid, ws);
    else
      st = co_await asio::co_spawn(shards.shard(sid).io, dht::wait_committed(*dht, sid, ws), use_awaitable);
    if (!st) failed[sid] = st.error().message;
  }
  if (!failed.empty()) {
    std::string out;
    size_t pos = 0;
    for (auto& d : c.deferred) {
      const std::string* why = nullptr;
      for (auto& [p, lsn] : d.waits)
        if (auto it = failed.find(shards.owner(p)); it != failed.end()) why = &it->second;
      if (!why) continue;
      out.append(c.out, pos, d.begin - pos);
      Reply(out, c.client.protocol).error("TIMEOUT " + *why);
      pos = d.end;
    }
    out.append(c.out, pos, std::string::npos);
    c.out.swap(out);
  }
  c.deferred.clear();
}

void Server::Impl::execute_forwarded(std::vector<std::string> argv, int protocol,
                                     std::function<void(std::string)> done, bool forwarded) {
  static std::atomic<unsigned> next{0};
  unsigned sid = next.fetch_add(1, std::memory_order_relaxed) % shards.size();
  // A member coroutine with by-value parameters (they live in its frame), not a capturing
  // coroutine lambda.
  asio::co_spawn(shards.shard(sid).io, run_one(sid, std::move(argv), protocol, std::move(done), forwarded),
                 asio::detached);
}

awaitable<void> Server::Impl::run_one(unsigned sid, std::vector<std::string> argv, int protocol,
                                      std::function<void(std::string)> done, bool forwarded) {
  Connection c(tcp::socket(shards.shard(sid).io), sid);
  c.forwarded = forwarded;
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

// Commands whose keys live on several shards. Redis runs them atomically on one thread; here
// each shard's part is atomic, the whole is not (documented in docs/resp.md).
awaitable<void> Server::Impl::execute_multi_key(Connection& c, const CommandSpec& spec, Args argv,
                                                const std::vector<size_t>& key_pos) {
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
    // Check every key first, then write each shard's part. Not atomic across shards.
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

  if (spec.group == "list" || spec.group == "set" || spec.group == "sorted-set") {
    co_await execute_gathered(c, spec, argv, key_pos);
    co_return;
  }

  r.error("CROSSSLOT Keys in request don't hash to the same slot");
}

// A list, set or sorted-set command over keys on several shards (SINTER, SMOVE, LMOVE,
// S*STORE, ZUNIONSTORE...): the keys are copied here, the ordinary handler runs against the
// copies (scratch_engine.h), and each key it changed is written back to its shard. Not atomic
// across shards, like the rest. In a cluster each shard's part is checked (primary, lease,
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
      if (dht) {
        if (auto e = dht->check_local(sid, part, write, now); !e.empty()) {
          refused = std::move(e);
          return;
        }
        if (!write)
          if (uint64_t lsn = dht->read_fence(sid, part, now)) c.waits.emplace_back(part, lsn);
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
        auto waits = dht->after_write(sid, now);
        if (!waits) c.write_error = waits.error();
        else c.waits.insert(c.waits.end(), waits->begin(), waits->end());
        return;
      }
      st = sh.engine->commit();
    };
    co_await runtime::run_on(sh, write_back);
    if (!st) co_return reply_status_error(c.reply, st.error());
  }
  c.out += out;
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
  for (unsigned i = 0; i < shards.size(); ++i) {
    auto& s = shards.shard(i);
    observe::ShardStats st;
    storage::EngineStats es;
    auto work = [&] {
      st = s.stats;
      st.connections_current = per_shard[i].connections.size();
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
  co_return snap;
}

awaitable<void> Server::Impl::serve(tcp::socket sock, unsigned shard_id) {
  auto& shard = shards.shard(shard_id);
  Connection c(std::move(sock), shard_id);
  auto& ps = per_shard[shard_id];
  ps.connections.push_front(&c);
  auto self = ps.connections.begin();
  ++shard.stats.connections_total;
  c.client.id = next_client_id.fetch_add(1);
  c.client.authenticated = !node.auth_required();
  c.client.created_ms = c.client.last_cmd_ms = SystemClock::instance().now_ms();
  boost::system::error_code ec;
  auto rep = c.sock.remote_endpoint(ec);
  if (!ec) c.client.addr = fmt::format("{}:{}", rep.address().to_string(), rep.port());
  auto lep = c.sock.local_endpoint(ec);
  if (!ec) c.client.laddr = fmt::format("{}:{}", lep.address().to_string(), lep.port());
  c.sock.set_option(tcp::no_delay(true), ec);

  Parser parser(opt.limits);
  std::string in;
  in.resize(kReadChunk);
  size_t used = 0;
  std::vector<std::string_view> argv;
  argv.reserve(16);
  std::vector<Pending> batch;
  std::vector<std::string_view> flat;  // the arguments of every request in `batch`

  for (;;) {
    if (in.size() - used < kReadChunk / 4) {
      size_t want = std::max(in.size() * 2, parser.bytes_wanted() + kReadChunk);
      in.resize(std::min<size_t>(want, opt.query_buffer_limit + kReadChunk));
    }
    if (used >= opt.query_buffer_limit) {
      spdlog::warn("closing client {} ({}): query buffer limit of {} bytes reached", c.client.id,
                   c.client.addr, opt.query_buffer_limit);
      break;
    }
    auto [rec, n] = co_await c.sock.async_read_some(asio::buffer(in.data() + used, in.size() - used),
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
          if (!commit_local(c)) {
            close = true;
            c.out.clear();
            break;
          }
          auto [wec, wn] = co_await asio::async_write(c.sock, asio::buffer(c.out), asio::as_tuple(use_awaitable));
          shard.stats.net_output_bytes += wn;
          c.out.clear();
          if (wec) {
            close = true;
            break;
          }
        }
      }
      if (close) break;
      if (protocol_error) {
        ++shard.stats.protocol_errors;
        c.reply.error("ERR " + parser.error());
        spdlog::debug("client {} ({}): {}", c.client.id, c.client.addr, parser.error());
        close = true;
        break;
      }
    }
    if (start > 0) {
      std::memmove(in.data(), in.data() + start, used - start);
      used -= start;
    }
    co_await settle(c);
    if (!c.out.empty() && !commit_local(c)) break;  // replies would acknowledge lost writes
    if (!c.out.empty()) {
      auto [wec, wn] = co_await asio::async_write(c.sock, asio::buffer(c.out), asio::as_tuple(use_awaitable));
      shard.stats.net_output_bytes += wn;
      // Keep the buffer's capacity for the next batch unless one huge reply inflated it.
      if (c.out.capacity() > (1 << 20)) std::string().swap(c.out);
      else c.out.clear();
      if (wec) break;
    }
    if (close || stopping.load(std::memory_order_relaxed)) break;
  }
  c.sock.shutdown(tcp::socket::shutdown_both, ec);
  c.sock.close(ec);
  ps.connections.erase(self);
  open.fetch_sub(1);
}

// One acceptor (on shard 0) hands connections to shards round-robin. (SO_REUSEPORT on every
// shard would spread them too, but would also let a second keel silently share the port.)
awaitable<void> Server::Impl::accept_loop(unsigned shard_id) {
  auto& ps = per_shard[shard_id];
  auto& shard = shards.shard(shard_id);
  unsigned next = 0;
  for (;;) {
    auto [ec, sock] = co_await ps.acceptor->async_accept(asio::as_tuple(use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping) co_return;
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    if (open.load() >= max_clients.load(std::memory_order_relaxed)) {
      ++shard.stats.rejected_connections;
      static const char kMsg[] = "-ERR max number of clients reached\r\n";
      boost::system::error_code wec;
      asio::write(sock, asio::buffer(kMsg, sizeof kMsg - 1), wec);
      sock.close(wec);
      continue;
    }
    open.fetch_add(1);
    unsigned target = next++ % shards.size();
    if (target == shard_id) {
      asio::co_spawn(shard.io, serve(std::move(sock), target), asio::detached);
      continue;
    }
    auto protocol = sock.local_endpoint().protocol();
    int fd = sock.release();
    asio::post(shards.shard(target).io, [this, fd, protocol, target] {
      tcp::socket moved(shards.shard(target).io);
      boost::system::error_code aec;
      moved.assign(protocol, fd, aec);
      if (aec) {
        ::close(fd);
        open.fetch_sub(1);
        return;
      }
      asio::co_spawn(shards.shard(target).io, serve(std::move(moved), target), asio::detached);
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
      if (now - c->client.last_cmd_ms > limit * 1000) {
        spdlog::debug("closing client {} ({}): idle for more than {} s", c->client.id, c->client.addr,
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
  auto acc = std::make_unique<tcp::acceptor>(im.shards.shard(0).io);
  tcp::endpoint ep(addr, static_cast<unsigned short>(im.opt.port));
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(Errc::kIoError, fmt::format("cannot listen for RESP on {}:{}: {}", im.opt.bind, im.opt.port, ec.message()));
  int port = acc->local_endpoint().port();
  im.per_shard[0].acceptor = std::move(acc);
  asio::co_spawn(im.shards.shard(0).io, im.accept_loop(0), asio::detached);
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
      // Pending reads complete with EOF; requests already read are answered first.
      for (auto* c : im.per_shard[i].connections) c->sock.shutdown(tcp::socket::shutdown_receive, ec);
      done.set_value();
    });
    done.get_future().wait();
  }
}

awaitable<Snapshot> collect_snapshot(Server& server) { co_return co_await server.impl()->collect(); }

uint64_t Server::open_connections() const { return impl_->open.load(); }
void Server::set_max_clients(uint64_t n) { impl_->max_clients.store(n); }
void Server::set_timeout_s(uint64_t s) { impl_->timeout_s.store(s); }
void Server::set_caches(cache::Service* caches) { impl_->caches = caches; }
bool Server::clustered() const { return impl_->dht != nullptr; }
void Server::run(std::vector<std::string> argv, std::function<void(std::string)> done) {
  impl_->execute_forwarded(std::move(argv), 2, std::move(done), false);
}
void Server::set_tracer(observe::Tracer* tracer) { impl_->tracer = tracer; }
void Server::set_dht(dht::Service* dht) {
  impl_->dht = dht;
  if (dht)
    dht->set_executor([im = impl_.get()](std::vector<std::string> argv, int protocol,
                                         std::function<void(std::string)> done) {
      im->execute_forwarded(std::move(argv), protocol, std::move(done));
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
