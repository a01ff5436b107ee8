// PeerPool: the shell around a PeerManager. It reads the clock, owns one Pool per peer, sends
// each call to the peer the manager ranks best (least busy of the best `spread`), and reports
// the outcome back. `mu` guards the manager and the per-peer counters, so the read-only
// accessors work from any thread; it is never held across a co_await.
#include "keel/client/peer_pool.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mutex>
#include <set>

namespace keel::client {

namespace {

// Errors that say the peer (or the way to it) is not serving. Not these: kUnavailable (a local
// bound such as max_waiters or max_pending), kInvalidArgument and the like (the caller's).
bool is_peer_failure(Errc c) {
  switch (c) {
    case Errc::kIoError:
    case Errc::kTimeout:
    case Errc::kProtocol:
    case Errc::kClosed:
      return true;
    default:
      return false;
  }
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

struct PeerPool::Impl {
  Impl(asio::any_io_executor e, PeerPoolOptions o)
      : ex(e),
        opts(std::move(o)),
        clock(opts.clock ? opts.clock : &sdk::SteadyClock::instance()),
        manager(opts.peers),
        probe_timer(e) {}

  struct Entry {
    std::shared_ptr<Pool> pool;
    size_t in_flight = 0;
    uint64_t calls = 0, failures = 0, probes = 0;
    bool probing = false;
  };

  asio::any_io_executor ex;
  PeerPoolOptions opts;
  const sdk::Clock* clock;
  mutable std::mutex mu;
  sdk::PeerManager manager;            // guarded by mu
  std::map<std::string, Entry> peers;  // guarded by mu
  bool closed = false;                 // guarded by mu
  asio::steady_timer probe_timer;      // executor thread only

  // REQUIRES: mu held. Closes the pools of peers that left the manager's set.
  void drop_departed() {
    for (auto it = peers.begin(); it != peers.end();) {
      if (!manager.peer(it->first, clock->now())) {
        it->second.pool->close();
        it = peers.erase(it);
      } else {
        ++it;
      }
    }
  }

  // REQUIRES: mu held. A Pool for each new peer (or for a peer whose address changed).
  void add_pools(const std::vector<sdk::PeerSpec>& specs) {
    for (const auto& s : specs) {
      auto& e = peers[s.id];
      Endpoint ep{s.host, s.port};
      if (e.pool && e.pool->endpoint() == ep) continue;
      if (e.pool) e.pool->close();  // same id, new address
      e.pool = Pool::create(ex, ep, opts.pool);
    }
  }

  // A call left peer `id` without an outcome that says anything about the peer.
  void release(const std::string& id) {
    std::lock_guard lock(mu);
    if (auto it = peers.find(id); it != peers.end() && it->second.in_flight > 0) --it->second.in_flight;
  }

  void record(const std::string& id, bool ok, sdk::Duration latency) {
    std::lock_guard lock(mu);
    auto it = peers.find(id);
    if (it != peers.end()) {
      if (it->second.in_flight > 0) --it->second.in_flight;
      if (ok) ++it->second.calls;
      else ++it->second.failures;
    }
    // kUnknownPeer: the peer left the set while the call was in flight; nothing to record.
    if (ok) (void)manager.record_success(id, latency, clock->now());
    else (void)manager.record_failure(id, clock->now());
  }
};

PeerPool::PeerPool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::shared_ptr<PeerPool>> PeerPool::create(asio::any_io_executor ex,
                                                   std::vector<sdk::PeerSpec> peers) {
  return create(std::move(ex), std::move(peers), PeerPoolOptions{});
}

Result<std::shared_ptr<PeerPool>> PeerPool::create(asio::any_io_executor ex,
                                                   std::vector<sdk::PeerSpec> peers,
                                                   PeerPoolOptions opts) {
  if (opts.spread == 0) return make_error(Errc::kInvalidArgument, "PeerPoolOptions::spread must be >= 1");
  if (opts.max_attempts == 0)
    return make_error(Errc::kInvalidArgument, "PeerPoolOptions::max_attempts must be >= 1");
  if (opts.probe_interval.count() < 0 || opts.probe_timeout.count() <= 0)
    return make_error(Errc::kInvalidArgument,
                      "PeerPoolOptions: probe_interval must be >= 0 and probe_timeout > 0");
  auto pool = std::make_shared<PeerPool>(std::make_unique<Impl>(ex, std::move(opts)));
  if (auto st = pool->set_peers(std::move(peers)); !st) return std::unexpected(st.error());
  pool->start_probing();
  return pool;
}

PeerPool::~PeerPool() {
  for (auto& [id, e] : impl_->peers) e.pool->close();
  impl_->probe_timer.cancel();
}

Status PeerPool::set_peers(std::vector<sdk::PeerSpec> peers) {
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  if (s.closed) return make_error(Errc::kClosed, "peer pool is closed");
  if (auto ok = s.manager.set_static(peers, s.clock->now()); !ok)
    return make_error(Errc::kInvalidArgument, ok.error().message);
  s.drop_departed();
  s.add_pools(peers);
  return {};
}

Result<bool> PeerPool::apply(const sdk::TopologyUpdate& update) {
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  if (s.closed) return make_error(Errc::kClosed, "peer pool is closed");
  auto ok = s.manager.apply(update, s.clock->now());
  if (!ok) return make_error(Errc::kInvalidArgument, ok.error().message);
  if (!*ok) return false;
  s.drop_departed();
  s.add_pools(update.peers);
  return true;
}

asio::awaitable<Result<size_t>> PeerPool::refresh_topology() {
  auto self = shared_from_this();
  CallOptions call;
  call.idempotent = true;
  std::vector<std::string> cmd{"CLUSTER", "SHARDS"};
  auto reply = co_await command(std::move(cmd), std::move(call));
  if (!reply) co_return std::unexpected(reply.error());
  auto nodes = cluster_nodes_from_shards(*reply);
  if (!nodes) co_return std::unexpected(nodes.error());
  if (nodes->empty()) co_return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS listed no node; the peer set is kept");
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  if (s.closed) co_return make_error(Errc::kClosed, "peer pool is closed");
  // Each refresh is newer than whatever was applied before (apply() ignores older versions).
  auto update = sdk::topology_from_cluster_nodes(s.manager.topology_version() + 1, *nodes);
  auto ok = s.manager.apply(update, s.clock->now());
  if (!ok) co_return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: " + ok.error().message);
  s.drop_departed();
  s.add_pools(update.peers);
  co_return s.manager.size();
}

asio::awaitable<Result<Reply>> PeerPool::command(std::vector<std::string> args) {
  CallOptions call;  // a named local: GCC 12 mishandles temporaries inside co_await expressions
  co_return co_await command(std::move(args), std::move(call));
}

namespace {
// Error replies with which a server refuses a command without running it because it cannot
// serve now (loading its data, busy with a script, its cluster or primary down): they say
// something about the peer, and the command may go to another peer whatever it is.
bool refused_unavailable(const Reply& r) {
  if (!r.is_error()) return false;
  for (std::string_view p : {"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"})
    if (r.str.starts_with(p) && (r.str.size() == p.size() || r.str[p.size()] == ' ')) return true;
  return false;
}
}  // namespace

asio::awaitable<Result<Reply>> PeerPool::command(std::vector<std::string> args, CallOptions call) {
  auto self = shared_from_this();
  auto& s = *impl_;
  if (args.empty()) co_return make_error(Errc::kInvalidArgument, "empty command");
  std::vector<std::string_view> views(args.begin(), args.end());
  std::set<std::string> tried;
  std::optional<Error> last;
  std::optional<Reply> refused;  // the last "cannot serve now" reply, if every peer answered so
  for (size_t attempt = 0; attempt < s.opts.max_attempts; ++attempt) {
    std::string id;
    std::shared_ptr<Pool> pool;
    {
      std::lock_guard lock(s.mu);
      if (s.closed) co_return make_error(Errc::kClosed, "peer pool is closed");
      auto ranked = s.manager.select(s.opts.spread + tried.size(), call.required, s.clock->now());
      std::erase_if(ranked, [&](const sdk::PeerView& v) { return tried.contains(v.id); });
      if (ranked.empty()) break;
      std::vector<size_t> load;
      for (const auto& v : ranked) {
        auto it = s.peers.find(v.id);
        load.push_back(it == s.peers.end() ? 0 : it->second.in_flight);
      }
      const auto& chosen = ranked[sdk::pick_least_loaded(load, s.opts.spread)];
      id = chosen.id;
      auto& e = s.peers[id];
      ++e.in_flight;
      pool = e.pool;
    }
    tried.insert(id);
    auto lease = co_await pool->acquire();
    if (!lease) {
      // Nothing was sent: always safe to try the next peer.
      if (is_peer_failure(lease.error().code) && lease.error().code != Errc::kClosed) {
        s.record(id, false, {});
      } else {
        s.release(id);  // a local bound, or the peer's pool closed as it left the set
      }
      last = Error{lease.error().code, id + ": " + lease.error().message};
      continue;
    }
    const auto t0 = s.clock->now();
    auto r = co_await (*lease)->async_command(views);
    const auto t1 = s.clock->now();
    if (r && refused_unavailable(*r)) {
      s.record(id, false, {});
      refused = std::move(*r);
      last.reset();
      continue;  // not run there: any command may go to the next peer
    }
    if (r) {
      s.record(id, true, t1 - t0);
      co_return r;
    }
    if (!is_peer_failure(r.error().code)) {
      s.release(id);
      co_return r;
    }
    s.record(id, false, {});
    last = Error{r.error().code, id + ": " + r.error().message};
    refused.reset();
    if (!call.idempotent) break;
  }
  if (last) co_return std::unexpected(*last);
  if (refused) co_return std::move(*refused);
  size_t known = 0;
  {
    std::lock_guard lock(s.mu);
    known = s.manager.size();
  }
  co_return make_error(Errc::kUnavailable,
                       (call.required.empty() ? std::string("no peer is available")
                                              : "no available peer has the capabilities [" + join(call.required) + "]") +
                           " (" + std::to_string(known) + " peers known; down peers are not chosen)");
}

namespace {

asio::awaitable<void> probe_one(std::weak_ptr<PeerPool> weak, PeerPool::Impl* impl, std::string id,
                                std::shared_ptr<Pool> pool);

}  // namespace

void PeerPool::start_probing() {
  if (impl_->opts.probe_interval.count() == 0) return;
  struct Tick {
    std::weak_ptr<PeerPool> weak;
    void operator()(boost::system::error_code ec) const {
      if (ec) return;
      auto self = weak.lock();
      if (!self) return;
      auto& s = *self->impl_;
      std::vector<std::pair<std::string, std::shared_ptr<Pool>>> due;
      {
        std::lock_guard lock(s.mu);
        if (s.closed) return;
        const auto now = s.clock->now();
        for (auto& [id, e] : s.peers) {
          if (e.probing || s.manager.status(id, now) == sdk::PeerStatus::kUp) continue;
          e.probing = true;
          ++e.probes;
          due.emplace_back(id, e.pool);
        }
      }
      for (auto& [id, pool] : due)
        asio::co_spawn(s.ex, probe_one(weak, &s, id, pool), asio::detached);
      s.probe_timer.expires_after(s.opts.probe_interval);
      s.probe_timer.async_wait(Tick{weak});
    }
  };
  impl_->probe_timer.expires_after(impl_->opts.probe_interval);
  impl_->probe_timer.async_wait(Tick{weak_from_this()});
}

namespace {

asio::awaitable<void> probe_one(std::weak_ptr<PeerPool> weak, PeerPool::Impl* impl, std::string id,
                                std::shared_ptr<Pool> pool) {
  auto self = weak.lock();  // keeps impl alive for the probe
  if (!self) co_return;
  auto& s = *impl;
  auto deadline = Pool::Clock::now() + s.opts.probe_timeout;
  auto lease = co_await pool->acquire(deadline);
  bool ok = false;
  sdk::Duration latency{};
  if (lease) {
    std::string_view ping[] = {"PING"};
    const auto t0 = s.clock->now();
    auto r = co_await (*lease)->async_command(ping);
    latency = s.clock->now() - t0;
    ok = r && !r->is_error();
  }
  std::lock_guard lock(s.mu);
  auto it = s.peers.find(id);
  if (it == s.peers.end()) co_return;
  it->second.probing = false;
  if (ok) (void)s.manager.record_success(id, latency, s.clock->now());
  else {
    ++it->second.failures;
    (void)s.manager.record_failure(id, s.clock->now());
  }
}

}  // namespace

std::vector<sdk::PeerView> PeerPool::select(size_t k, const std::vector<std::string>& required) const {
  std::lock_guard lock(impl_->mu);
  return impl_->manager.select(k, required, impl_->clock->now());
}

std::vector<PeerPoolPeer> PeerPool::peers() const {
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  std::vector<PeerPoolPeer> out;
  const auto now = s.clock->now();
  for (const auto& [id, e] : s.peers) {
    auto v = s.manager.peer(id, now);
    if (!v) continue;
    out.push_back(PeerPoolPeer{*v, e.in_flight, e.calls, e.failures, e.probes});
  }
  return out;
}

sdk::PeerStatus PeerPool::status(std::string_view id) const {
  std::lock_guard lock(impl_->mu);
  return impl_->manager.status(id, impl_->clock->now());
}

std::map<std::string, PoolStats> PeerPool::pool_stats() const {
  std::map<std::string, std::shared_ptr<Pool>> pools;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& [id, e] : impl_->peers) pools[id] = e.pool;
  }
  std::map<std::string, PoolStats> out;
  for (const auto& [id, p] : pools) out[id] = p->stats();
  return out;
}

const PeerPoolOptions& PeerPool::options() const { return impl_->opts; }

void PeerPool::close() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closed) return;
    impl_->closed = true;
  }
  asio::dispatch(impl_->ex, [weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    std::vector<std::shared_ptr<Pool>> pools;
    {
      std::lock_guard lock(self->impl_->mu);
      for (auto& [id, e] : self->impl_->peers) pools.push_back(e.pool);
    }
    for (auto& p : pools) p->close();
    self->impl_->probe_timer.cancel();
  });
}

}  // namespace keel::client
