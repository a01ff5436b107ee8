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
#include "security/audit.h"
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

// Runs one command through `run` and resumes the awaiting coroutine on its own executor with
// the RESP2 reply.
asio::awaitable<std::string> run_command(const AclService::CommandRunner& run, const std::vector<std::string>& argv) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::string)>(
      [&run, argv](auto handler) mutable {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        run(std::move(argv), [h, ex](std::string reply) {
          asio::post(ex, [h, reply = std::move(reply)]() mutable { std::move(*h)(std::move(reply)); });
        });
      },
      asio::use_awaitable);
}

// The text of an error reply (or what else came), for log lines and errors.
std::string reply_text(const std::string& reply) {
  std::string t = reply.substr(reply.starts_with("-") ? 1 : 0, 200);
  if (auto e = t.find("\r\n"); e != std::string::npos) t.resize(e);
  return t.empty() ? std::string("no reply") : t;
}
}  // namespace

struct AclService::Impl : std::enable_shared_from_this<Impl> {
  Acl& acl;
  CommandRunner run;  // set: the lockout table is the keyspace's (kLockoutKey)
  std::atomic<uint64_t> store_errors{0};
  std::atomic<int64_t> last_store_error_log_ms{0};
  void store_error(const char* what, const std::string& reply) {
    store_errors.fetch_add(1, std::memory_order_relaxed);
    // At most one line a minute: an unreachable partition fails every attempt.
    const int64_t now = SystemClock::instance().now_ms();
    int64_t last = last_store_error_log_ms.load(std::memory_order_relaxed);
    if (now - last >= 60000 && last_store_error_log_ms.compare_exchange_strong(last, now))
      klog().warn("lockout: the cluster-wide lockout table (key '{}') could not be {} ({}); this node's own table "
                  "decides meanwhile (it still bounds guesses per node); counted in "
                  "keel_auth_lockout_store_errors_total",
                  kLockoutKey, what, reply_text(reply));
  }
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

// ---- Brute-force lockout, cluster-wide ----

void AclService::set_command_runner(CommandRunner run) { impl_->run = std::move(run); }
bool AclService::lockout_cluster_wide() const { return static_cast<bool>(impl_->run); }
uint64_t AclService::lockout_store_errors() const { return impl_->store_errors.load(std::memory_order_relaxed); }

asio::awaitable<AclService::LockCheck> AclService::lockout_check(std::string user, std::string ip, int64_t now_ms) {
  auto self = impl_;
  auto& im = *impl_;
  LockCheck out;
  if (!im.run || im.acl.lockout_policy().threshold == 0) {
    out.locked = im.acl.locked(user, ip, now_ms);
    co_return out;
  }
  const std::string su = "user:" + user, sa = "addr:" + ip;
  const std::vector<std::string> argv{"HMGET", std::string(kLockoutKey), su, lockout_times_field(su), sa,
                                      lockout_times_field(sa)};
  const std::string reply = co_await run_command(im.run, argv);
  auto items = parse_bulk_array(reply);
  if (!items || items->size() != 4) {
    im.store_error("read", reply);
    out.locked = im.acl.locked(user, ip, now_ms);
    co_return out;
  }
  for (size_t i = 0; i < 2; ++i) {
    auto e = lockout_entry(i == 0 ? su : sa, (*items)[2 * i], (*items)[2 * i + 1]);
    if (e.failures > 0) out.recorded = true;
    const int64_t ms = e.locked_until_ms - now_ms;
    if (ms > 0 && (!out.locked || ms > out.locked->remaining_ms)) out.locked = Acl::Locked{e.subject, ms};
    im.acl.mirror_lockout(e);  // the cluster's word: also forgets a lock cleared through another node
  }
  if (out.locked) im.acl.count_lockout_refusal();
  co_return out;
}

asio::awaitable<AclService::LockCheck> AclService::lockout_gate(std::string user, std::string ip, int64_t now_ms,
                                                                bool verified_before) {
  auto self = impl_;
  auto& im = *impl_;
  if (im.run && (!verified_before || im.acl.lock_of(user, ip, now_ms)))
    co_return co_await lockout_check(std::move(user), std::move(ip), now_ms);
  LockCheck out;
  out.locked = im.acl.locked(user, ip, now_ms);
  co_return out;
}

asio::awaitable<void> AclService::lockout_failed(std::string user, std::string ip, int64_t now_ms) {
  auto self = impl_;
  auto& im = *impl_;
  const LockoutPolicy policy = im.acl.lockout_policy();
  if (!im.run || policy.threshold == 0) {
    im.acl.auth_failed(user, ip, now_ms);
    co_return;
  }
  const std::string key(kLockoutKey);
  const std::string subjects[2] = {"user:" + user, "addr:" + ip};
  uint64_t failures[2] = {0, 0};
  for (size_t i = 0; i < 2; ++i) {
    const std::vector<std::string> argv{"HINCRBY", key, subjects[i], "1"};
    const std::string reply = co_await run_command(im.run, argv);
    auto n = parse_integer_reply(reply);
    if (!n || *n <= 0) {
      im.store_error("written", reply);
      im.acl.auth_failed(user, ip, now_ms);  // counted here at least
      co_return;
    }
    failures[i] = static_cast<uint64_t>(*n);
  }
  int64_t lock[2];
  std::vector<std::string> set{"HSET", key};
  for (size_t i = 0; i < 2; ++i) {
    lock[i] = Lockout::lock_ms(policy, failures[i]);
    set.push_back(lockout_times_field(subjects[i]));
    set.push_back(encode_lockout_times(now_ms, lock[i] > 0 ? now_ms + lock[i] : 0));
  }
  const std::string reply = co_await run_command(im.run, set);
  if (!parse_integer_reply(reply)) {
    im.store_error("written", reply);
    im.acl.auth_failed(user, ip, now_ms);
    co_return;
  }
  for (size_t i = 0; i < 2; ++i)
    im.acl.mirror_lockout({subjects[i], failures[i], now_ms, lock[i] > 0 ? now_ms + lock[i] : 0});
  if (lock[0] > 0 || lock[1] > 0) im.acl.count_lockout_started();
  for (size_t i = 0; i < 2; ++i)
    if (lock[i] > 0) audit::emit(audit::kLockout, {{"subject", subjects[i]}, {"locked_ms", std::to_string(lock[i])}});
  // A new subject: keep the table bounded (policy.max_entries subjects; the least recently
  // failed go first), as this node's own table is.
  if (failures[0] == 1 || failures[1] == 1) {
    const std::vector<std::string> hlen{"HLEN", key};
    auto n = parse_integer_reply(co_await run_command(im.run, hlen));
    if (n && static_cast<uint64_t>(*n) > 2 * policy.max_entries + 2 * 1024) {
      const std::vector<std::string> all{"HGETALL", key};
      const std::string r = co_await run_command(im.run, all);
      if (auto flat = parse_bulk_array(r)) {
        auto entries = lockout_entries(*flat);  // most recent first
        std::vector<std::string> del{"HDEL", key};
        for (size_t i = policy.max_entries; i < entries.size(); ++i) {
          del.push_back(entries[i].subject);
          del.push_back(lockout_times_field(entries[i].subject));
        }
        if (del.size() > 2) {
          const std::string d = co_await run_command(im.run, del);
          klog().info("lockout: forgot the {} least recently failed subjects of the cluster-wide table (at most {} "
                      "are kept): {}",
                      (del.size() - 2) / 2, policy.max_entries, reply_text(d));
        }
      }
    }
  }
}

asio::awaitable<void> AclService::lockout_succeeded(std::string user, std::string ip, bool recorded) {
  auto self = impl_;
  auto& im = *impl_;
  const bool here = im.acl.auth_succeeded(user, ip);
  if (!im.run || !(recorded || here)) co_return;
  const std::string su = "user:" + user, sa = "addr:" + ip;
  const std::vector<std::string> argv{"HDEL", std::string(kLockoutKey), su, lockout_times_field(su), sa,
                                      lockout_times_field(sa)};
  const std::string reply = co_await run_command(im.run, argv);
  if (!parse_integer_reply(reply)) im.store_error("written", reply);
}

asio::awaitable<Result<std::vector<Lockout::Entry>>> AclService::lockouts() {
  auto self = impl_;
  auto& im = *impl_;
  if (!im.run) co_return im.acl.lockouts();
  const std::vector<std::string> argv{"HGETALL", std::string(kLockoutKey)};
  const std::string reply = co_await run_command(im.run, argv);
  auto flat = parse_bulk_array(reply);
  if (!flat) {
    im.store_error("read", reply);
    co_return make_error(Errc::kUnavailable,
                         fmt::format("the cluster-wide lockout table (key '{}') could not be read ({}); retry",
                                     kLockoutKey, reply_text(reply)));
  }
  co_return lockout_entries(*flat);
}

asio::awaitable<Result<size_t>> AclService::unlock(std::string subject) {
  auto self = impl_;
  auto& im = *impl_;
  const size_t here = im.acl.unlock(subject);
  if (!im.run) co_return here;
  const std::string key(kLockoutKey);
  size_t cleared = 0;
  if (subject == "*") {
    const std::vector<std::string> all{"HGETALL", key};
    const std::string r = co_await run_command(im.run, all);
    auto flat = parse_bulk_array(r);
    if (!flat) {
      im.store_error("read", r);
      co_return make_error(Errc::kUnavailable,
                           fmt::format("the cluster-wide lockout table (key '{}') could not be read ({}); this node's "
                                       "own records were cleared; retry",
                                       kLockoutKey, reply_text(r)));
    }
    cleared = lockout_entries(*flat).size();
    const std::vector<std::string> del{"DEL", key};
    const std::string d = co_await run_command(im.run, del);
    if (!parse_integer_reply(d)) {
      im.store_error("written", d);
      co_return make_error(Errc::kUnavailable,
                           fmt::format("the cluster-wide lockout table (key '{}') could not be cleared ({}); this "
                                       "node's own records were; retry",
                                       kLockoutKey, reply_text(d)));
    }
  } else {
    const std::vector<std::string> del{"HDEL", key, subject, lockout_times_field(subject)};
    const std::string d = co_await run_command(im.run, del);
    auto n = parse_integer_reply(d);
    if (!n) {
      im.store_error("written", d);
      co_return make_error(Errc::kUnavailable,
                           fmt::format("the cluster-wide lockout table (key '{}') could not be changed ({}); this "
                                       "node's own record was cleared; retry",
                                       kLockoutKey, reply_text(d)));
    }
    cleared = *n > 0 ? 1 : 0;
  }
  co_return std::max(cleared, here);
}

}  // namespace keel::security
