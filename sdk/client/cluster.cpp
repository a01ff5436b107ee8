// ClusterClient: slot -> endpoint -> pool -> connection, following MOVED and ASK.
#include <atomic>
#include <optional>
#include <boost/asio/deferred.hpp>
#include <boost/asio/dispatch.hpp>

#include "keel/client/async.h"

namespace keel::client {

struct ClusterClient::Impl {
  asio::any_io_executor ex;
  ClusterOptions opts;
  Topology topo;
  std::map<Endpoint, std::shared_ptr<Pool>> pools;
  uint64_t redirects = 0, refreshes = 0;
  bool refreshing = false, closed = false;
  std::atomic<size_t> nodes{1};
  void set(Topology t) {
    topo = std::move(t);
    nodes.store(topo.endpoints().size(), std::memory_order_relaxed);
  }
  void move(uint32_t slot, const Endpoint& ep) {
    topo.move_slot(slot, ep);
    nodes.store(topo.endpoints().size(), std::memory_order_relaxed);
  }
};

ClusterClient::ClusterClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClusterClient::~ClusterClient() { close(); }

void ClusterClient::close() {
  impl_->closed = true;
  for (auto& [ep, p] : impl_->pools) p->close();
}

std::shared_ptr<Pool> ClusterClient::pool_for(const Endpoint& ep) {
  auto it = impl_->pools.find(ep);
  if (it != impl_->pools.end()) return it->second;
  auto p = Pool::create(impl_->ex, ep, impl_->opts.pool);
  impl_->pools.emplace(ep, p);
  return p;
}

Topology ClusterClient::topology() const { return impl_->topo; }
uint64_t ClusterClient::redirects_followed() const { return impl_->redirects; }
uint64_t ClusterClient::topology_refreshes() const { return impl_->refreshes; }
size_t ClusterClient::node_count() const { return impl_->nodes.load(std::memory_order_relaxed); }
std::map<Endpoint, PoolStats> ClusterClient::pool_stats() const {
  std::map<Endpoint, PoolStats> out;
  for (auto& [ep, p] : impl_->pools) out.emplace(ep, p->stats());
  return out;
}

namespace {
bool cluster_unsupported(const Reply& r) {
  return r.is_error() && (r.str.find("unknown command") != std::string::npos ||
                          r.str.find("cluster support disabled") != std::string::npos ||
                          r.str.find("unknown subcommand") != std::string::npos);
}
}  // namespace

asio::awaitable<Status> ClusterClient::refresh_topology() {
  auto self = shared_from_this();
  auto& s = *impl_;
  std::vector<Endpoint> candidates = s.topo.endpoints();
  for (auto& seed : s.opts.seeds)
    if (std::find(candidates.begin(), candidates.end(), seed) == candidates.end()) candidates.push_back(seed);
  Error last{Errc::kUnavailable, "no node to read the topology from (no seeds given)"};
  for (auto& ep : candidates) {
    auto pool = pool_for(ep);
    auto lease = co_await pool->acquire();
    if (!lease) {
      last = lease.error();
      continue;
    }
    std::string_view args[] = {"CLUSTER", "SHARDS"};
    auto r = co_await (*lease)->async_command(args);
    if (!r) {
      last = r.error();
      continue;
    }
    ++s.refreshes;
    if (cluster_unsupported(*r)) {
      s.set(Topology::single(ep));
      co_return Status{};
    }
    auto t = Topology::from_cluster_shards(*r);
    if (!t) {
      last = t.error();
      continue;
    }
    if (t->covered_slots() == 0) {
      last = Error{Errc::kUnavailable, "CLUSTER SHARDS from " + ep.to_string() + " assigns no slot"};
      continue;
    }
    s.set(std::move(*t));
    co_return Status{};
  }
  co_return std::unexpected(last);
}

asio::awaitable<Result<std::shared_ptr<ClusterClient>>> ClusterClient::connect(asio::any_io_executor ex,
                                                                               ClusterOptions opts) {
  if (opts.seeds.empty()) co_return make_error(Errc::kInvalidArgument, "no seed endpoint given (ClusterOptions::seeds)");
  if (opts.max_redirects < 0) co_return make_error(Errc::kInvalidArgument, "max_redirects must be >= 0");
  auto impl = std::make_unique<Impl>();
  impl->ex = ex;
  impl->opts = std::move(opts);
  impl->set(Topology::single(impl->opts.seeds.front()));
  auto cc = std::make_shared<ClusterClient>(std::move(impl));
  if (cc->impl_->opts.cluster_aware) {
    auto st = co_await cc->refresh_topology();
    if (!st) co_return std::unexpected(st.error());
  } else {
    // Check the seed answers, so a wrong address fails here rather than on the first command.
    auto pool = cc->pool_for(cc->impl_->opts.seeds.front());
    auto lease = co_await pool->acquire();
    if (!lease) co_return std::unexpected(lease.error());
  }
  co_return cc;
}

// Not a coroutine: returns the traced overload's awaitable (no second frame per call).
asio::awaitable<Result<Reply>> ClusterClient::command(std::vector<std::string> args) {
  return command(std::move(args), std::string());
}

asio::awaitable<Result<Reply>> ClusterClient::command(std::vector<std::string> args, std::string traceparent) {
  auto self = shared_from_this();
  auto& s = *impl_;
  if (args.empty()) co_return make_error(Errc::kInvalidArgument, "empty command: give at least the command name");
  std::vector<std::string_view> views(args.begin(), args.end());
  auto slot = command_slot(args);
  const Endpoint* owner = slot ? s.topo.endpoint_for_slot(*slot) : nullptr;
  if (!owner && !s.topo.endpoints().empty()) owner = &s.topo.endpoints().front();
  if (!owner) co_return make_error(Errc::kUnavailable, "no node serves slot " + std::to_string(slot.value_or(0)));
  Endpoint target = *owner;
  bool asking = false;
  for (int hop = 0; hop <= s.opts.max_redirects; ++hop) {
    if (s.closed) co_return make_error(Errc::kClosed, "cluster client closed");
    auto pool = pool_for(target);
    auto lease = co_await pool->acquire();
    if (!lease) co_return std::unexpected(lease.error());
    Result<Reply> r;
    if (!traceparent.empty()) {
      // CLIENT TRACEPARENT, [ASKING,] the command, CLIENT TRACEPARENT CLEAR: all queued before
      // any reply is awaited, so nothing else on the connection runs under this context.
      std::string_view set_args[] = {"CLIENT", "TRACEPARENT", traceparent};
      std::string_view asking_args[] = {"ASKING"};
      std::string_view clear_args[] = {"CLIENT", "TRACEPARENT", "CLEAR"};
      auto set = (*lease)->async_command(set_args, asio::deferred);
      std::optional<decltype(set)> ask;
      if (asking) ask.emplace((*lease)->async_command(asking_args, asio::deferred));
      auto cmd = (*lease)->async_command(views, asio::deferred);
      auto clear = (*lease)->async_command(clear_args, asio::deferred);
      auto st = co_await std::move(set)(asio::use_awaitable);
      Result<Reply> a;
      if (ask) a = co_await std::move(*ask)(asio::use_awaitable);
      r = co_await std::move(cmd)(asio::use_awaitable);
      (void)co_await std::move(clear)(asio::use_awaitable);
      // A server that does not know CLIENT TRACEPARENT (plain Redis) still ran the command:
      // its reply is the answer, the context just did not travel.
      (void)st;
      if (ask && a && a->is_error()) co_return a;
    } else if (asking) {
      std::string_view asking_args[] = {"ASKING"};
      // Both are queued before either reply is awaited, so they travel back to back.
      auto first = (*lease)->async_command(asking_args, asio::deferred);
      auto second = (*lease)->async_command(views, asio::deferred);
      auto a = co_await std::move(first)(asio::use_awaitable);
      r = co_await std::move(second)(asio::use_awaitable);
      if (a && a->is_error()) co_return a;
    } else {
      r = co_await (*lease)->async_command(views);
    }
    if (!r || !r->is_error()) co_return r;
    auto redirect = parse_redirect(r->str);
    if (!redirect) co_return r;
    ++s.redirects;
    target = redirect->target;
    if (redirect->kind == Redirect::Kind::kAsk) {
      asking = true;
      continue;
    }
    asking = false;
    s.move(redirect->slot, redirect->target);
    if (!s.refreshing) {
      // The node's view of the whole map changed; re-read it now (one refresh at a time), so
      // the next commands for other moved slots go straight to their owner.
      s.refreshing = true;
      lease->release();
      (void)co_await refresh_topology();
      s.refreshing = false;
      // A stale topology answer must not undo what the MOVED just told us.
      s.move(redirect->slot, redirect->target);
    }
  }
  co_return make_error(Errc::kRedirectLimit, "more than " + std::to_string(s.opts.max_redirects) +
                                                 " MOVED/ASK redirections for '" + args[0] + "' (max_redirects)");
}

}  // namespace keel::client
