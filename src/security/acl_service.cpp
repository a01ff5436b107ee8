#include "security/acl_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "runtime/cluster/meta_await.h"
#include "runtime/cluster/meta_service.h"
#include "observe/log.h"
#include "security/token.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kSecurity); }
}  // namespace

namespace keel::security {

namespace asio = boost::asio;

namespace {
constexpr std::string_view kPrefix = "users/";
constexpr std::string_view kRevokedPrefix = "revoked/";

// Runs work() on `pool` and resumes the awaiting coroutine on its own executor with the result.
// `work` is held by reference (it lives in the suspended coroutine's frame).
template <class T, class Work>
asio::awaitable<T> on_pool(asio::thread_pool& pool, Work& work) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [&pool, &work](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        asio::post(pool, [h, &work] {
          T r = work();
          auto ex = asio::get_associated_executor(*h);
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      asio::use_awaitable);
}
}  // namespace

struct AclService::Impl : std::enable_shared_from_this<Impl> {
  Acl& acl;
  cluster::MetaService* meta = nullptr;
  cluster::Subscription sub, revoked_sub;
  mutable std::mutex mu;
  std::map<std::string, uint64_t> versions;  // metadata version of each stored user (under mu)
  std::map<std::string, uint64_t> revoked_versions;  // metadata version of each revocation (under mu)
  uint64_t revoked_revision = 0;                      // (under mu)
  // The pruning thread (prune_revocations every kRevocationPruneIntervalS).
  std::thread pruner;
  std::mutex prune_mu;
  std::condition_variable prune_cv;
  bool stopping = false;  // under prune_mu
  uint64_t revision = 0;
  bool first = false;  // the first update arrived (under mu)
  std::condition_variable first_cv;
  // Password hashing and checking (Argon2id: tens of ms and 19 MiB each): one at a time, off
  // the event loops.
  asio::thread_pool hashing{1};

  explicit Impl(Acl& a) : acl(a) {}
  ~Impl() {
    hashing.stop();
    hashing.join();
  }

  std::optional<User> decode(const cluster::KeyValue& kv) {
    std::string name = kv.key.substr(kPrefix.size());
    auto u = parse_user(name, kv.value, acl.catalog());
    if (!u) {
      klog().warn("acl: user '{}' in metadata cannot be read ({}); ignored", name, u.error().message);
      return std::nullopt;
    }
    return std::move(*u);
  }

  void on_update(const cluster::MetaUpdate& u) {
    std::lock_guard lock(mu);
    if (u.reset) {
      versions.clear();
      std::vector<User> all;
      for (auto& kv : u.contents) {
        if (auto user = decode(kv)) {
          versions[user->name] = kv.version;
          all.push_back(std::move(*user));
        }
      }
      acl.replace_all(std::move(all));
    }
    for (auto& ev : u.events) {
      std::string name = ev.kv.key.substr(kPrefix.size());
      if (ev.deleted) {
        versions.erase(name);
        acl.erase(name);
      } else if (auto user = decode(ev.kv)) {
        versions[name] = ev.kv.version;
        acl.put(std::move(*user));
      }
    }
    revision = u.revision;
    if (!first) {
      first = true;
      first_cv.notify_all();
    }
  }

  uint64_t seen_revision() const {
    std::lock_guard lock(mu);
    return revision;
  }
  uint64_t seen_revoked_revision() const {
    std::lock_guard lock(mu);
    return revoked_revision;
  }

  std::optional<Acl::Revocation> decode_revocation_kv(const cluster::KeyValue& kv) {
    auto r = decode_revocation(std::string_view(kv.key).substr(kRevokedPrefix.size()), kv.value);
    if (!r) {
      klog().warn("acl: revocation '{}' in metadata cannot be read ({}); ignored", kv.key, r.error().message);
      return std::nullopt;
    }
    return std::move(*r);
  }

  void on_revoked_update(const cluster::MetaUpdate& u) {
    std::lock_guard lock(mu);
    if (u.reset) {
      revoked_versions.clear();
      std::vector<Acl::Revocation> all;
      for (auto& kv : u.contents) {
        if (auto r = decode_revocation_kv(kv)) {
          revoked_versions[r->id] = kv.version;
          all.push_back(std::move(*r));
        }
      }
      acl.replace_revocations(std::move(all));
    }
    for (auto& ev : u.events) {
      std::string id = ev.kv.key.substr(kRevokedPrefix.size());
      if (ev.deleted) {
        revoked_versions.erase(id);
        acl.erase_revocation(id);
      } else if (auto r = decode_revocation_kv(ev.kv)) {
        revoked_versions[id] = ev.kv.version;
        acl.put_revocation(std::move(*r));
      }
    }
    revoked_revision = u.revision;
  }

  // Runs on the pruning thread (blocking there, never on an event loop).
  size_t prune(int64_t now_s) {
    if (!meta) return 0;
    size_t n = 0;
    for (auto& id : prunable_revocations(acl.revocations(), now_s, 256)) {
      uint64_t version = 0;
      {
        std::lock_guard lock(mu);
        auto it = revoked_versions.find(id);
        if (it == revoked_versions.end()) continue;
        version = it->second;
      }
      auto done = std::make_shared<std::promise<bool>>();
      auto fut = done->get_future();
      meta->del(kAclDomain, std::string(kRevokedPrefix) + id, version,
                [done](Result<cluster::WriteResult> r) { done->set_value(r && r->existed); });
      // Conflicts (revoked again meanwhile) and "already gone" (another node pruned it) are
      // fine; a metadata that does not answer ends this round.
      if (fut.wait_for(std::chrono::seconds(10)) != std::future_status::ready) break;
      if (fut.get()) ++n;
    }
    return n;
  }

  asio::awaitable<void> wait_revoked_revision(uint64_t rev) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    for (int i = 0; i < 1000 && seen_revoked_revision() < rev; ++i) {
      timer.expires_after(std::chrono::milliseconds(2));
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
  uint64_t version_of(const std::string& name) const {
    std::lock_guard lock(mu);
    auto it = versions.find(name);
    return it == versions.end() ? 0 : it->second;
  }

  asio::awaitable<void> wait_revision(uint64_t rev) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    for (int i = 0; i < 1000 && seen_revision() < rev; ++i) {
      timer.expires_after(std::chrono::milliseconds(2));
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
};

AclService::AclService(Acl& acl) : impl_(std::make_shared<Impl>(acl)) {}
AclService::~AclService() { stop(); }
void AclService::set_meta(cluster::MetaService* meta) { impl_->meta = meta; }
Acl& AclService::acl() { return impl_->acl; }

void AclService::start() {
  auto& im = *impl_;
  if (!im.meta) return;
  std::weak_ptr<Impl> weak = impl_;
  auto sub = im.meta->subscribe(kAclDomain, std::string(kPrefix), [weak](const cluster::MetaUpdate& u) {
    if (auto self = weak.lock()) self->on_update(u);
  });
  if (!sub) {
    klog().error("acl: cannot follow the users in metadata: {}", sub.error().message);
    return;
  }
  im.sub = std::move(*sub);
  auto rsub = im.meta->subscribe(kAclDomain, std::string(kRevokedPrefix), [weak](const cluster::MetaUpdate& u) {
    if (auto self = weak.lock()) self->on_revoked_update(u);
  });
  if (!rsub) klog().error("acl: cannot follow the revoked tokens in metadata: {}", rsub.error().message);
  else im.revoked_sub = std::move(*rsub);
  im.pruner = std::thread([weak] {
    for (;;) {
      auto self = weak.lock();
      if (!self) return;
      {
        std::unique_lock lock(self->prune_mu);
        if (self->prune_cv.wait_for(lock, std::chrono::seconds(kRevocationPruneIntervalS), [&] { return self->stopping; }))
          return;
      }
      size_t n = self->prune(SystemClock::instance().now_ms() / 1000);
      if (n) klog().info("acl: pruned {} revocation(s) of tokens that have expired", n);
    }
  });
  // Serve with the stored users from the start: wait (bounded) for the subscription's first
  // update, which carries what this node's metadata holds.
  std::unique_lock lock(im.mu);
  if (!im.first_cv.wait_for(lock, std::chrono::seconds(5), [&] { return im.first; }))
    klog().warn("acl: the users in metadata did not arrive within 5 s; serving with the built-in default user until they do");
}

void AclService::stop() {
  auto& im = *impl_;
  {
    std::lock_guard lock(im.prune_mu);
    im.stopping = true;
  }
  im.prune_cv.notify_all();
  if (im.pruner.joinable()) im.pruner.join();
  im.sub.cancel();
  im.revoked_sub.cancel();
}

size_t AclService::prune_revocations(int64_t now_s) { return impl_->prune(now_s); }

asio::awaitable<Status> AclService::revoke(Acl::Revocation r) {
  auto self = impl_;
  auto& im = *impl_;
  if (!is_revocation_id(r.id))
    co_return make_error(Errc::kInvalidArgument,
                         fmt::format("'{}' is not a revocation id; allowed: 32 hex digits (`keel token inspect` shows a "
                                     "token's), or the token itself",
                                     r.id.substr(0, 64)));
  if (r.expires_s <= 0)
    co_return make_error(Errc::kInvalidArgument,
                         "a revocation needs the token's expiry (unix seconds) to know when the entry may go");
  if (!im.meta)
    co_return make_error(Errc::kUnavailable, "revoked tokens live in cluster metadata, which is off on this node");
  std::string key = std::string(kRevokedPrefix) + r.id;
  std::string value = encode_revocation(r);
  auto start = [&](auto cb) { im.meta->put(kAclDomain, key, value, std::nullopt, cb); };
  auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!w) co_return std::unexpected(w.error());
  co_await im.wait_revoked_revision(w->revision);
  co_return Status{};
}

asio::awaitable<Status> AclService::setuser(const std::string& name, const std::vector<std::string>& rules) {
  return setuser(name, rules, std::nullopt);
}

asio::awaitable<Status> AclService::setuser(const std::string& name, const std::vector<std::string>& rules,
                                           std::optional<observe::TraceParent> trace) {
  auto self = impl_;
  auto& im = *impl_;
  if (auto st = check_user_name(name); !st) co_return std::unexpected(st.error());
  if (!im.meta)
    co_return make_error(Errc::kUnavailable, "users live in cluster metadata, which is off on this node");
  for (int attempt = 0;; ++attempt) {
    uint64_t version = im.version_of(name);
    auto current = im.acl.find(name);
    User u = version && current ? *current : (name == "default" && current ? *current : new_user(name));
    std::string bad;
    auto apply = [&]() -> Status { return apply_rules(u, rules, im.acl.catalog(), &bad); };
    Status applied = co_await on_pool<Status>(im.hashing, apply);  // >password hashes
    if (!applied)
      co_return make_error(Errc::kInvalidArgument,
                           fmt::format("Error in ACL SETUSER modifier '{}': {}", bad, applied.error().message));
    std::string key = std::string(kPrefix) + name;
    std::string value = u.describe();
    auto start = [&](auto cb) { im.meta->put(kAclDomain, key, value, version, cb, trace); };
    auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
    if (!w) {
      if (w.error().code == Errc::kConflict && attempt < 8) {
        // Changed elsewhere meanwhile: read it again (this node's copy catches up) and retry.
        co_await im.wait_revision(im.seen_revision() + 1);
        continue;
      }
      co_return std::unexpected(w.error());
    }
    co_await im.wait_revision(w->revision);
    co_return Status{};
  }
}

asio::awaitable<std::shared_ptr<const User>> AclService::authenticate(const std::string& name,
                                                                      const std::string& password) {
  auto self = impl_;
  if (auto quick = impl_->acl.authenticate_cached(name, password)) co_return *quick;
  auto check = [&]() { return impl_->acl.authenticate(name, password); };
  co_return co_await on_pool<std::shared_ptr<const User>>(impl_->hashing, check);
}

asio::awaitable<Result<int64_t>> AclService::deluser(const std::vector<std::string>& names) {
  auto self = impl_;
  auto& im = *impl_;
  for (auto& n : names)
    if (n == "default") co_return make_error(Errc::kInvalidArgument, "The 'default' user cannot be removed");
  if (!im.meta)
    co_return make_error(Errc::kUnavailable, "users live in cluster metadata, which is off on this node");
  int64_t removed = 0;
  uint64_t last = 0;
  for (auto& n : names) {
    std::string key = std::string(kPrefix) + n;
    auto start = [&](auto cb) { im.meta->del(kAclDomain, key, std::nullopt, cb); };
    auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
    if (!w) {
      if (w.error().code == Errc::kNotFound) continue;
      co_return std::unexpected(w.error());
    }
    if (w->existed) ++removed;
    last = w->revision;
  }
  if (last) co_await im.wait_revision(last);
  co_return removed;
}

}  // namespace keel::security
