#include "security/transit_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "observe/log.h"
#include "observe/signal_hub.h"
#include "security/meta_follower.h"

namespace {
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kSecurity); }
}  // namespace

namespace keel::security {

namespace asio = boost::asio;
using KeyPtr = std::shared_ptr<const transit::Key>;

struct TransitService::Impl {
  MetaFollower<transit::Key> keys{kTransitDomain, "keys/", [](std::string_view v) { return transit::decode(v); },
                                  "transit keys", [](const std::string& m) { klog().error("transit: {}", m); }};

  // Reads the key, applies `change`, writes it back with compare-and-set; again when another
  // node changed it meanwhile.
  template <class Change>
  asio::awaitable<Result<KeyPtr>> modify(const std::string& name, Change& change) {
    transit::Key k;
    auto step = [&](const transit::Key* held) -> Result<std::optional<std::string>> {
      if (!held) return make_error(Errc::kNotFound, fmt::format("no transit key named '{}'", name));
      k = *held;
      if (auto st = change(k); !st) return std::unexpected(st.error());
      return transit::encode(k);
    };
    auto w = co_await keys.update(name, step);
    if (!w) co_return std::unexpected(w.error());
    observe::signal(observe::Signal::kTransitKeyChanged,
                    fmt::format("transit: key '{}' changed (latest version {}, min_decryption_version {}, "
                                "deletion {})",
                                name, k.latest(), k.min_decryption_version,
                                k.deletion_allowed ? "allowed" : "not allowed"));
    co_return std::make_shared<const transit::Key>(std::move(k));
  }
};

TransitService::TransitService() : impl_(std::make_shared<Impl>()) {}
TransitService::~TransitService() { stop(); }
void TransitService::set_meta(cluster::MetaService* meta) { impl_->keys.set_meta(meta); }
void TransitService::start() { impl_->keys.start(); }
void TransitService::stop() { impl_->keys.stop(); }

KeyPtr TransitService::find(const std::string& name) const { return impl_->keys.held(name).value; }
std::vector<std::string> TransitService::names() const { return impl_->keys.names(); }

asio::awaitable<KeyPtr> TransitService::find_fresh(std::string name, uint32_t need_version) {
  auto self = impl_;
  auto h = self->keys.held(name);
  if (h.value && h.value->latest() >= need_version) co_return h.value;
  co_return (co_await self->keys.fresh(name)).value;
}

asio::awaitable<Result<KeyPtr>> TransitService::create(std::string name, transit::KeyType type) {
  return create(std::move(name), type, std::nullopt);
}

asio::awaitable<Result<KeyPtr>> TransitService::create(std::string name, transit::KeyType type,
                                                       std::optional<observe::TraceParent> trace) {
  auto self = impl_;
  auto k = transit::create(name, type, SystemClock::instance().now_ms());
  if (!k) co_return std::unexpected(k.error());
  auto w = co_await self->keys.put(name, transit::encode(*k), 0, std::move(trace));
  if (!w) {
    if (w.error().code == Errc::kConflict)
      co_return make_error(Errc::kAlreadyExists,
                           fmt::format("a transit key named '{}' exists; rotate it, or pick another name", name));
    co_return std::unexpected(w.error());
  }
  observe::signal(observe::Signal::kTransitKeyChanged,
                  fmt::format("transit: key '{}' created ({})", name, transit::type_name(type)));
  co_return std::make_shared<const transit::Key>(std::move(*k));
}

asio::awaitable<Result<KeyPtr>> TransitService::rotate(std::string name) {
  auto self = impl_;
  auto change = [](transit::Key& k) { return transit::rotate(k); };
  co_return co_await self->modify(name, change);
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
  co_return co_await self->modify(name, change);
}

asio::awaitable<Status> TransitService::remove(std::string name) {
  auto self = impl_;
  if (auto st = self->keys.need_meta(); !st) co_return st;
  auto h = self->keys.held(name);
  // This node's copy may be behind a change made through another node: before refusing, read
  // the cluster's.
  if (!h.value || !h.value->deletion_allowed) h = co_await self->keys.fresh(name);
  if (!h.value) co_return make_error(Errc::kNotFound, fmt::format("no transit key named '{}'", name));
  if (!h.value->deletion_allowed)
    co_return make_error(Errc::kInvalidArgument,
                         fmt::format("transit key '{}' does not allow deletion (every ciphertext under it would be lost); "
                                     "set deletion_allowed first (TRANSIT.CONFIG {} DELETION_ALLOWED yes)",
                                     name, name));
  auto st = co_await self->keys.del(name, h.version);
  if (st) observe::signal(observe::Signal::kTransitKeyChanged, fmt::format("transit: key '{}' deleted", name));
  co_return st;
}

}  // namespace keel::security
