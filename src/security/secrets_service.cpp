#include "security/secrets_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "observe/log.h"
#include "security/meta_follower.h"
#include "security/transit_service.h"

namespace {
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kSecurity); }
}  // namespace

namespace keel::security {

namespace asio = boost::asio;

struct SecretsService::Impl {
  explicit Impl(TransitService& t) : transit(t) {}
  TransitService& transit;
  MetaFollower<secrets::Secret> store{kSecretsDomain, "data/", [](std::string_view v) { return secrets::decode(v); },
                                      "secrets", [](const std::string& m) { klog().error("secrets: {}", m); }};

  // The sealing key, created on first use (another node creating it at the same time is fine).
  asio::awaitable<Result<std::shared_ptr<const transit::Key>>> seal_key() {
    const std::string name(secrets::kSealKey);
    if (auto k = transit.find(name)) co_return k;
    auto k = co_await transit.create(name, transit::KeyType::kAes256Gcm);
    if (!k && k.error().code == Errc::kAlreadyExists)
      if (auto found = transit.find(name)) co_return found;
    co_return k;
  }
};

SecretsService::SecretsService(TransitService& transit) : impl_(std::make_shared<Impl>(transit)) {}
SecretsService::~SecretsService() { stop(); }
void SecretsService::set_meta(cluster::MetaService* meta) { impl_->store.set_meta(meta); }
void SecretsService::start() { impl_->store.start(); }
void SecretsService::stop() { impl_->store.stop(); }

asio::awaitable<Result<uint32_t>> SecretsService::put(std::string path, std::string value, std::optional<uint32_t> cas) {
  auto self = impl_;
  if (auto st = secrets::check_path(path); !st) co_return std::unexpected(st.error());
  if (value.size() > secrets::kMaxValueBytes)
    co_return make_error(Errc::kInvalidArgument, fmt::format("a secret's value is at most {} bytes, got {}",
                                                             secrets::kMaxValueBytes, value.size()));
  if (auto st = self->store.need_meta(); !st) co_return std::unexpected(st.error());
  auto key = co_await self->seal_key();
  if (!key) co_return std::unexpected(key.error());
  auto sealed = transit::encrypt(**key, value, path);
  if (!sealed) co_return std::unexpected(sealed.error());
  uint32_t written = 0;
  bool refused = false;  // by the CAS itself (not by losing every metadata compare-and-set)
  auto step = [&](const secrets::Secret* held) -> Result<std::optional<std::string>> {
    secrets::Secret s = held ? *held : secrets::Secret{path, {}, 0, secrets::kDefaultMaxVersions};
    auto st = secrets::add_version(s, *sealed, SystemClock::instance().now_ms(), cas);
    refused = !st;
    if (!st) return std::unexpected(st.error());
    written = s.current;
    return secrets::encode(s);
  };
  // Without CAS a PUT written elsewhere meanwhile is added on top (a later PUT wins); with CAS a
  // version that moved is refused naming it.
  auto w = co_await self->store.update(path, step);
  if (!w) {
    if (w.error().code == Errc::kConflict && cas && !refused)
      co_return make_error(Errc::kConflict,
                           fmt::format("secret '{}' changed meanwhile, no longer at version {} (CAS): read it again",
                                       path, *cas));
    co_return std::unexpected(w.error());
  }
  co_return written;
}

std::shared_ptr<const secrets::Secret> SecretsService::find(const std::string& path) const {
  return impl_->store.held(path).value;
}

asio::awaitable<Result<SecretsService::Read>> SecretsService::get(std::string path, std::optional<uint32_t> version) {
  auto self = impl_;
  if (auto st = secrets::check_path(path); !st) co_return std::unexpected(st.error());
  auto held = self->store.held(path);
  if (!held.value || (version && held.value->current < *version)) held = co_await self->store.fresh(path);
  auto s = held.value;
  if (!s) co_return make_error(Errc::kNotFound, fmt::format("no secret at '{}'", path));
  const uint32_t v = version.value_or(s->current);
  if (auto st = secrets::readable(*s, v); !st) co_return std::unexpected(st.error());
  auto it = s->versions.find(v);
  auto sealed_version = transit::output_version(it->second.sealed);
  auto key = co_await self->transit.find_fresh(std::string(secrets::kSealKey), sealed_version ? *sealed_version : 0);
  if (!key)
    co_return make_error(Errc::kUnavailable, fmt::format("the transit key '{}' that seals secrets is missing on this node",
                                                      secrets::kSealKey));
  auto plain = transit::decrypt(*key, it->second.sealed, path);
  if (!plain)
    co_return make_error(Errc::kCorruption, fmt::format("secret '{}' version {} cannot be unsealed: {}", path, v,
                                                     plain.error().message));
  co_return Read{std::move(*plain), v, it->second.created_ms, held.mod_revision};
}

asio::awaitable<std::shared_ptr<const secrets::Secret>> SecretsService::find_fresh(std::string path) {
  auto self = impl_;
  if (auto s = self->store.held(path).value) co_return s;
  co_return (co_await self->store.fresh(path)).value;
}

std::vector<std::string> SecretsService::list(std::string_view prefix) const { return impl_->store.names(prefix); }

asio::awaitable<Result<uint32_t>> SecretsService::change_versions(std::string path, secrets::VersionOp op,
                                                                  std::vector<uint32_t> versions) {
  auto self = impl_;
  if (auto st = secrets::check_path(path); !st) co_return std::unexpected(st.error());
  uint32_t changed = 0;
  auto step = [&](const secrets::Secret* held) -> Result<std::optional<std::string>> {
    if (!held) return make_error(Errc::kNotFound, fmt::format("no secret at '{}'", path));
    secrets::Secret s = *held;
    auto n = secrets::change_versions(s, op, versions, SystemClock::instance().now_ms());
    if (!n) return std::unexpected(n.error());
    changed = *n;
    if (changed == 0) return std::optional<std::string>();
    return secrets::encode(s);
  };
  auto w = co_await self->store.update(path, step);
  if (!w) co_return std::unexpected(w.error());
  co_return changed;
}

asio::awaitable<Result<bool>> SecretsService::remove(std::string path) {
  auto self = impl_;
  if (auto st = secrets::check_path(path); !st) co_return std::unexpected(st.error());
  for (int attempt = 0;; ++attempt) {
    auto h = self->store.held(path);
    if (!h.value) co_return false;
    auto st = co_await self->store.del(path, h.version);
    if (!st) {
      if (st.error().code == Errc::kConflict && attempt < 8) {
        co_await self->store.catch_up();
        continue;
      }
      co_return std::unexpected(st.error());
    }
    co_return true;
  }
}

}  // namespace keel::security
