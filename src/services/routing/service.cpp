#include "services/routing/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "base/clock.h"
#include "runtime/cluster/meta_await.h"
#include "runtime/cluster/meta_service.h"
#include "runtime/shards.h"
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kRouting); }
}  // namespace

namespace keel::routing {

namespace asio = boost::asio;

namespace {

Error no_meta() {
  return Error{Errc::kUnavailable, "the route table lives in cluster metadata, which is off on this node"};
}

}  // namespace

struct Service::Impl : std::enable_shared_from_this<Impl> {
  runtime::ShardSet& shards;
  Options opt;
  cluster::MetaService* meta = nullptr;
  std::atomic<bool> stopping{false};
  cluster::Subscription sub;

  // What this node holds of domain "routes" (under mu).
  struct Held {
    gateway::Registration reg;
    uint64_t version = 0;
  };
  mutable std::mutex mu;
  std::map<std::string, Held> held;
  uint64_t revision = 0;
  std::shared_ptr<const Snapshot> current = std::make_shared<const Snapshot>();
  std::set<std::string> reaping;  // keys with a delete in flight (under mu)

  Impl(runtime::ShardSet& s, Options o) : shards(s), opt(std::move(o)) {}

  // REQUIRES: mu held.
  void rebuild_locked(int64_t now) {
    std::vector<gateway::Registration> regs;
    regs.reserve(held.size());
    for (auto& [k, h] : held) regs.push_back(h.reg);
    auto t = gateway::RouteTable::build(std::move(regs), opt.static_routes, now, opt.routes);
    if (!t) {
      klog().warn("routes: the route table cannot be built ({}); keeping the previous one", t.error().message);
      return;
    }
    current = std::make_shared<const Snapshot>(Snapshot{std::move(*t), revision});
  }

  void observe_put(const cluster::KeyValue& kv) {
    auto r = gateway::decode_registration(kv.key, kv.value, opt.routes);
    if (!r) {
      klog().warn("routes: registration '{}' in metadata is not valid ({}); ignored", kv.key, r.error().message);
      held.erase(kv.key);
      return;
    }
    r->revision = kv.create_revision;
    held[kv.key] = Held{std::move(*r), kv.version};
  }

  void on_update(const cluster::MetaUpdate& u) {
    std::lock_guard lock(mu);
    if (u.reset) {
      held.clear();
      for (auto& kv : u.contents) observe_put(kv);
    }
    for (auto& ev : u.events) {
      if (ev.deleted) held.erase(ev.kv.key);
      else observe_put(ev.kv);
    }
    revision = u.revision;
    rebuild_locked(SystemClock::instance().now_ms());
  }

  // Every reap interval: rebuild when a lease in the table has ended; delete expired
  // registrations from metadata (compare-and-set on the version seen).
  void reap() {
    if (stopping || !meta) return;
    int64_t now = SystemClock::instance().now_ms();
    std::vector<std::pair<std::string, uint64_t>> expired;
    {
      std::lock_guard lock(mu);
      if (current->table.next_expiry_ms() <= now) rebuild_locked(now);
      for (auto& [k, h] : held)
        if (h.reg.expires_at_ms <= now && !reaping.count(k)) {
          expired.emplace_back(k, h.version);
          reaping.insert(k);
        }
    }
    auto self = shared_from_this();
    for (auto& [key, version] : expired) {
      klog().info("routes: the lease of instance '{}' ended; removing it", key);
      meta->del(std::string(gateway::kMetaDomain), key, version, [self, key](Result<cluster::WriteResult> r) {
        // kConflict: renewed meanwhile; kNotFound: another node removed it first.
        if (!r && r.error().code != Errc::kConflict && r.error().code != Errc::kNotFound)
          klog().debug("routes: removing expired '{}' failed: {}", key, r.error().message);
        std::lock_guard lock(self->mu);
        self->reaping.erase(key);
      });
    }
  }

  void schedule_reap() {
    if (stopping) return;
    auto self = shared_from_this();
    auto timer = std::make_shared<asio::steady_timer>(shards.shard(0).io, std::chrono::milliseconds(opt.reap_interval_ms));
    timer->async_wait([self, timer](boost::system::error_code ec) {
      if (ec || self->stopping) return;
      self->reap();
      self->schedule_reap();
    });
  }

  uint64_t seen_revision() const {
    std::lock_guard lock(mu);
    return revision;
  }

  // Waits (bounded) until this node's table reflects metadata revision `rev`.
  Task<void> wait_revision(uint64_t rev) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    for (int i = 0; i < 1000 && seen_revision() < rev; ++i) {
      timer.expires_after(std::chrono::milliseconds(2));
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
};

Service::Service(runtime::ShardSet& shards, Options opt) : impl_(std::make_shared<Impl>(shards, std::move(opt))) {
  std::lock_guard lock(impl_->mu);
  impl_->rebuild_locked(SystemClock::instance().now_ms());  // the static routes, before any registration
}
Service::~Service() { stop(); }
void Service::set_meta(cluster::MetaService* meta) { impl_->meta = meta; }
const Options& Service::options() const { return impl_->opt; }

void Service::start() {
  auto& im = *impl_;
  if (!im.meta) return;
  std::weak_ptr<Impl> weak = impl_;
  auto sub = im.meta->subscribe(std::string(gateway::kMetaDomain), "", [weak](const cluster::MetaUpdate& u) {
    if (auto self = weak.lock()) self->on_update(u);
  });
  if (!sub) {
    klog().error("routes: cannot follow the route table: {}", sub.error().message);
    return;
  }
  im.sub = std::move(*sub);
  im.schedule_reap();
}

void Service::stop() {
  impl_->stopping = true;
  impl_->sub.cancel();
}

std::shared_ptr<const Snapshot> Service::snapshot() const {
  std::lock_guard lock(impl_->mu);
  return impl_->current;
}

Task<Result<gateway::Registration>> Service::register_instance(const std::string& service, const std::string& id,
                                                               const std::string& body) {
  auto& im = *impl_;
  auto self = impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  auto r = gateway::parse_registration(service, id, body, SystemClock::instance().now_ms(), im.opt.registration,
                                       im.opt.routes);
  if (!r) co_return std::unexpected(r.error());
  std::string key = gateway::registration_key(service, id);
  std::string value = gateway::encode_registration(*r);
  auto start = [&](auto cb) {
    im.meta->put(std::string(gateway::kMetaDomain), key, value, std::nullopt, cb);
  };
  auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!w) co_return std::unexpected(w.error());
  co_await im.wait_revision(w->revision);
  co_return std::move(*r);
}

Task<Result<bool>> Service::deregister(const std::string& service, const std::string& id) {
  auto& im = *impl_;
  auto self = impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  if (auto st = gateway::check_name("service", service); !st) co_return std::unexpected(st.error());
  if (auto st = gateway::check_name("instance id", id); !st) co_return std::unexpected(st.error());
  std::string key = gateway::registration_key(service, id);
  auto start = [&](auto cb) { im.meta->del(std::string(gateway::kMetaDomain), key, std::nullopt, cb); };
  auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!w) {
    if (w.error().code == Errc::kNotFound) co_return false;
    co_return std::unexpected(w.error());
  }
  co_await im.wait_revision(w->revision);
  co_return w->existed;
}

}  // namespace keel::routing
