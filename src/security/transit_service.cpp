#include "security/transit_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "base/clock.h"
#include "observe/log.h"
#include "runtime/cluster/meta_await.h"
#include "runtime/cluster/meta_service.h"

namespace {
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kSecurity); }
}  // namespace

namespace keel::security {

namespace asio = boost::asio;
using KeyPtr = std::shared_ptr<const transit::Key>;

namespace {
constexpr std::string_view kPrefix = "keys/";
}

struct TransitService::Impl {
  cluster::MetaService* meta = nullptr;
  cluster::Subscription sub;
  mutable std::mutex mu;
  struct Held {
    KeyPtr key;
    uint64_t version = 0;  // the metadata version it was read at
  };
  std::map<std::string, Held> keys;  // under mu
  uint64_t revision = 0;             // under mu
  bool first = false;                // under mu
  std::condition_variable first_cv;

  void hold(const cluster::KeyValue& kv) {
    std::string name = kv.key.substr(kPrefix.size());
    auto k = transit::decode(kv.value);
    if (!k) {
      klog().error("transit: key '{}' in metadata cannot be read: {}", name, k.error().message);
      keys.erase(name);
      return;
    }
    keys[name] = Held{std::make_shared<const transit::Key>(std::move(*k)), kv.version};
  }

  void on_update(const cluster::MetaUpdate& u) {
    std::lock_guard lock(mu);
    if (u.reset) {
      keys.clear();
      for (auto& kv : u.contents) hold(kv);
    }
    for (auto& ev : u.events) {
      if (ev.deleted) keys.erase(ev.kv.key.substr(kPrefix.size()));
      else hold(ev.kv);
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
  Held held(const std::string& name) const {
    std::lock_guard lock(mu);
    auto it = keys.find(name);
    return it == keys.end() ? Held{} : it->second;
  }

  // Until this node's copy has caught up with `rev` (bounded: 2 s).
  asio::awaitable<void> wait_revision(uint64_t rev) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    for (int i = 0; i < 1000 && seen_revision() < rev; ++i) {
      timer.expires_after(std::chrono::milliseconds(2));
      co_await timer.async_wait(asio::use_awaitable);
    }
  }

  Status need_meta() const {
    if (meta) return {};
    return make_error(Errc::kUnavailable, "transit keys live in cluster metadata, which is off on this node");
  }

  // Reads the key, applies `change`, writes it back with compare-and-set; again when another
  // node changed it meanwhile.
  template <class Change>
  asio::awaitable<Result<KeyPtr>> modify(const std::string& name, Change& change) {
    if (auto st = need_meta(); !st) co_return std::unexpected(st.error());
    for (int attempt = 0;; ++attempt) {
      Held h = held(name);
      if (!h.key) co_return make_error(Errc::kNotFound, fmt::format("no transit key named '{}'", name));
      transit::Key k = *h.key;
      if (auto st = change(k); !st) co_return std::unexpected(st.error());
      std::string key = std::string(kPrefix) + name;
      std::string value = transit::encode(k);
      auto start = [&](auto cb) { meta->put(kTransitDomain, key, value, h.version, cb); };
      auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
      if (!w) {
        if (w.error().code == Errc::kConflict && attempt < 8) {
          co_await wait_revision(seen_revision() + 1);
          continue;
        }
        co_return std::unexpected(w.error());
      }
      co_await wait_revision(w->revision);
      co_return std::make_shared<const transit::Key>(std::move(k));
    }
  }
};

TransitService::TransitService() : impl_(std::make_shared<Impl>()) {}
TransitService::~TransitService() { stop(); }
void TransitService::set_meta(cluster::MetaService* meta) { impl_->meta = meta; }

void TransitService::start() {
  auto& im = *impl_;
  if (!im.meta) return;
  std::weak_ptr<Impl> weak = impl_;
  auto sub = im.meta->subscribe(kTransitDomain, std::string(kPrefix), [weak](const cluster::MetaUpdate& u) {
    if (auto self = weak.lock()) self->on_update(u);
  });
  if (!sub) {
    klog().error("transit: cannot follow the keys in metadata: {}", sub.error().message);
    return;
  }
  im.sub = std::move(*sub);
  std::unique_lock lock(im.mu);
  if (!im.first_cv.wait_for(lock, std::chrono::seconds(5), [&] { return im.first; }))
    klog().warn("transit: the keys in metadata did not arrive within 5 s; they are served once they do");
}

void TransitService::stop() { impl_->sub.cancel(); }

KeyPtr TransitService::find(const std::string& name) const { return impl_->held(name).key; }

std::vector<std::string> TransitService::names() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> out;
  for (auto& [n, h] : impl_->keys) out.push_back(n);
  return out;
}

asio::awaitable<Result<KeyPtr>> TransitService::create(std::string name, transit::KeyType type) {
  auto self = impl_;
  auto& im = *impl_;
  if (auto st = im.need_meta(); !st) co_return std::unexpected(st.error());
  auto k = transit::create(name, type, SystemClock::instance().now_ms());
  if (!k) co_return std::unexpected(k.error());
  std::string key = std::string(kPrefix) + name;
  std::string value = transit::encode(*k);
  auto start = [&](auto cb) { im.meta->put(kTransitDomain, key, value, uint64_t{0}, cb); };
  auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!w) {
    if (w.error().code == Errc::kConflict)
      co_return make_error(Errc::kAlreadyExists,
                           fmt::format("a transit key named '{}' exists; rotate it, or pick another name", name));
    co_return std::unexpected(w.error());
  }
  co_await im.wait_revision(w->revision);
  co_return std::make_shared<const transit::Key>(std::move(*k));
}

asio::awaitable<Result<KeyPtr>> TransitService::rotate(std::string name) {
  auto self = impl_;
  auto change = [](transit::Key& k) { return transit::rotate(k); };
  co_return co_await impl_->modify(name, change);
}

asio::awaitable<Result<KeyPtr>> TransitService::configure(std::string name, std::optional<uint32_t> min_decryption,
                                                          std::optional<bool> deletion_allowed) {
  auto self = impl_;
  auto change = [&](transit::Key& k) -> Status {
    if (min_decryption)
      if (auto st = transit::set_min_decryption_version(k, *min_decryption); !st) return st;
    if (deletion_allowed) k.deletion_allowed = *deletion_allowed;
    return {};
  };
  co_return co_await impl_->modify(name, change);
}

asio::awaitable<Status> TransitService::remove(std::string name) {
  auto self = impl_;
  auto& im = *impl_;
  if (auto st = im.need_meta(); !st) co_return std::unexpected(st.error());
  auto h = im.held(name);
  if (!h.key) co_return make_error(Errc::kNotFound, fmt::format("no transit key named '{}'", name));
  if (!h.key->deletion_allowed)
    co_return make_error(Errc::kInvalidArgument,
                         fmt::format("transit key '{}' does not allow deletion (every ciphertext under it would be lost); "
                                     "set deletion_allowed first (TRANSIT.CONFIG {} DELETION_ALLOWED yes)",
                                     name, name));
  std::string key = std::string(kPrefix) + name;
  auto start = [&](auto cb) { im.meta->del(kTransitDomain, key, h.version, cb); };
  auto w = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!w) co_return std::unexpected(w.error());
  co_await im.wait_revision(w->revision);
  co_return Status{};
}

}  // namespace keel::security
