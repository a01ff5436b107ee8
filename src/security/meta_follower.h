// Follows the keys of one cluster-metadata domain (under a key prefix) into memory, for the
// services whose state lives in metadata (transit keys, secrets): what this node holds of each
// entry and at which metadata version, the revision it has seen, and writes by compare-and-set
// that answer once this node sees them.
//
// Includes Asio: include only from .cpp files.
#pragma once

#include <fmt/format.h>

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "runtime/cluster/meta_await.h"
#include "runtime/cluster/meta_service.h"

namespace keel::security {

template <class T>
class MetaFollower {
 public:
  using Decode = std::function<Result<T>(std::string_view)>;
  struct Held {
    std::shared_ptr<const T> value;  // null: no such entry
    uint64_t version = 0;            // its metadata version (0: absent)
    uint64_t mod_revision = 0;       // the metadata revision that last changed it
  };

  // `what` names the entries in errors and logs ("transit keys", "secrets"); `log(msg)` reports
  // an entry that cannot be decoded (it is left out).
  MetaFollower(std::string domain, std::string prefix, Decode decode, std::string what,
               std::function<void(const std::string&)> log)
      : st_(std::make_shared<State>()) {
    st_->domain = std::move(domain);
    st_->prefix = std::move(prefix);
    st_->decode = std::move(decode);
    st_->what = std::move(what);
    st_->log = std::move(log);
  }
  ~MetaFollower() { stop(); }

  void set_meta(cluster::MetaService* meta) { st_->meta = meta; }

  // Subscribes, then waits (up to 5 s) for the first update: what this node's metadata holds.
  void start() {
    if (!st_->meta) return;
    std::weak_ptr<State> weak = st_;
    auto sub = st_->meta->subscribe(st_->domain, st_->prefix, [weak](const cluster::MetaUpdate& u) {
      if (auto self = weak.lock()) self->on_update(u);
    });
    if (!sub) {
      st_->log(fmt::format("cannot follow the {} in metadata: {}", st_->what, sub.error().message));
      return;
    }
    st_->sub = std::move(*sub);
    std::unique_lock lock(st_->mu);
    if (!st_->first_cv.wait_for(lock, std::chrono::seconds(5), [&] { return st_->first; }))
      st_->log(fmt::format("the {} in metadata did not arrive within 5 s; they are served once they do", st_->what));
  }
  void stop() { st_->sub.cancel(); }

  Held held(const std::string& name) const {
    std::lock_guard lock(st_->mu);
    auto it = st_->entries.find(name);
    return it == st_->entries.end() ? Held{} : it->second;
  }
  // Names (without the prefix) starting with `starting`, in order.
  std::vector<std::string> names(std::string_view starting = {}) const {
    std::lock_guard lock(st_->mu);
    std::vector<std::string> out;
    for (auto it = st_->entries.lower_bound(std::string(starting)); it != st_->entries.end(); ++it) {
      if (!it->first.starts_with(starting)) break;
      out.push_back(it->first);
    }
    return out;
  }

  Status need_meta() const {
    if (st_->meta) return {};
    return make_error(Errc::kUnavailable, fmt::format("{} live in cluster metadata, which is off on this node", st_->what));
  }

  // Writes `value` for `name` if its metadata version is still `prev_version` (0: must not
  // exist; kConflict otherwise), then waits until this node holds it. The new version.
  boost::asio::awaitable<Result<uint64_t>> put(const std::string& name, const std::string& value, uint64_t prev_version) {
    return put(name, value, prev_version, std::nullopt);
  }
  // The same for a traced request (its Rabia decision is a span: cluster/driver.h, "Tracing").
  boost::asio::awaitable<Result<uint64_t>> put(const std::string& name, const std::string& value, uint64_t prev_version,
                                               std::optional<observe::TraceParent> trace) {
    auto st = st_;
    if (auto s = need_meta(); !s) co_return std::unexpected(s.error());
    std::string key = st->prefix + name;
    auto start = [&](auto cb) { st->meta->put(st->domain, key, value, prev_version, cb, trace); };
    auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
    if (!w) co_return std::unexpected(w.error());
    co_await wait_revision(w->revision);
    co_return w->version;
  }
  // Deletes `name` if its version is still `prev_version`; waits until this node sees it.
  boost::asio::awaitable<Status> del(const std::string& name, uint64_t prev_version) {
    auto st = st_;
    if (auto s = need_meta(); !s) co_return std::unexpected(s.error());
    std::string key = st->prefix + name;
    auto start = [&](auto cb) { st->meta->del(st->domain, key, prev_version, cb); };
    auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
    if (!w) co_return std::unexpected(w.error());
    co_await wait_revision(w->revision);
    co_return Status{};
  }
  // Until this node has seen one more revision than now (after losing a compare-and-set).
  boost::asio::awaitable<void> catch_up() { co_await wait_revision(seen_revision() + 1); }

  // Read-modify-write of one entry, by compare-and-set on its metadata version. `step(held)`
  // (held: this node's copy, null if none) returns the entry's new stored form, nullopt when
  // there is nothing to write, or an error refusing the change. A refusal or a no-op is decided
  // on this node's copy only after checking it against the cluster's (one linearizable read):
  // the copy may be behind a change made through another node a moment ago. A lost
  // compare-and-set catches up and runs `step` again (8 times at most). True once written.
  template <class Step>
  boost::asio::awaitable<Result<bool>> update(const std::string& name, Step step) {
    if (auto s = need_meta(); !s) co_return std::unexpected(s.error());
    bool refreshed = false;
    for (int attempt = 0;; ++attempt) {
      auto h = held(name);
      Result<std::optional<std::string>> next = step(h.value.get());
      if ((!next || !*next) && !refreshed) {
        refreshed = true;
        co_await fresh(name);
        continue;
      }
      if (!next) co_return std::unexpected(next.error());
      if (!*next) co_return false;
      auto w = co_await put(name, **next, h.version);
      if (!w) {
        if (w.error().code == Errc::kConflict && attempt < 8) {
          co_await catch_up();
          continue;
        }
        co_return std::unexpected(w.error());
      }
      co_return true;
    }
  }

  // The entry as the cluster has it now: a linearizable read (a barrier through the log), then
  // this node's copy once it has applied that far. For a name this node does not hold yet, or
  // holds at a version that may be behind (another node created or changed it a moment ago).
  boost::asio::awaitable<Held> fresh(const std::string& name) {
    auto st = st_;
    if (!st->meta) co_return held(name);
    std::string key = st->prefix + name;
    auto start = [&](auto cb) { st->meta->get(st->domain, key, false, cb); };
    auto kv = co_await cluster::meta_call<cluster::KeyValue>(start);
    if (kv) co_await wait_revision(kv->mod_revision);
    co_return held(name);
  }

 private:
  struct State {
    std::string domain, prefix, what;
    Decode decode;
    std::function<void(const std::string&)> log;
    cluster::MetaService* meta = nullptr;
    cluster::Subscription sub;
    mutable std::mutex mu;
    std::map<std::string, Held> entries;  // under mu
    uint64_t revision = 0;                // under mu
    bool first = false;                   // under mu
    std::condition_variable first_cv;

    void hold(const cluster::KeyValue& kv) {
      std::string name = kv.key.substr(prefix.size());
      auto v = decode(kv.value);
      if (!v) {
        log(fmt::format("{} entry '{}' cannot be read: {}", what, name, v.error().message));
        entries.erase(name);
        return;
      }
      entries[name] = Held{std::make_shared<const T>(std::move(*v)), kv.version, kv.mod_revision};
    }
    void on_update(const cluster::MetaUpdate& u) {
      std::lock_guard lock(mu);
      if (u.reset) {
        entries.clear();
        for (auto& kv : u.contents) hold(kv);
      }
      for (auto& ev : u.events) {
        if (ev.deleted) entries.erase(ev.kv.key.substr(prefix.size()));
        else hold(ev.kv);
      }
      revision = u.revision;
      if (!first) {
        first = true;
        first_cv.notify_all();
      }
    }
  };

  uint64_t seen_revision() const {
    std::lock_guard lock(st_->mu);
    return st_->revision;
  }
  // Until this node's copy has caught up with `rev` (bounded: 2 s).
  boost::asio::awaitable<void> wait_revision(uint64_t rev) {
    auto st = st_;
    auto ex = co_await boost::asio::this_coro::executor;
    boost::asio::steady_timer timer(ex);
    for (int i = 0; i < 1000 && seen_revision() < rev; ++i) {
      timer.expires_after(std::chrono::milliseconds(2));
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
  }

  std::shared_ptr<State> st_;
};

}  // namespace keel::security
