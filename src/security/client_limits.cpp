#include "security/client_limits.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <unordered_map>

namespace keel::security {

namespace {

std::unique_ptr<resilience::KeyedRateLimiter> make(const char* name, uint64_t rate, uint64_t burst) {
  if (rate == 0) return nullptr;
  resilience::KeyedLimiterOptions o;
  o.name = name;
  o.limit.count = rate;
  o.limit.period = std::chrono::seconds(1);
  o.limit.burst = static_cast<uint32_t>(std::min<uint64_t>(burst ? burst : rate, UINT32_MAX));
  o.max_keys = 100000;
  return std::make_unique<resilience::KeyedRateLimiter>(o);
}

int64_t ms_of(sdk::Duration d) {
  return std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(d).count() + 1);
}

}  // namespace

class ConnectionCounts {
 public:
  explicit ConnectionCounts(uint64_t limit) : limit(limit) {}
  const uint64_t limit;
  std::mutex mu;
  std::unordered_map<std::string, uint64_t> open;  // under mu; an address leaves at 0
  std::atomic<uint64_t> refused{0};
};

ConnectionSlot::ConnectionSlot(std::shared_ptr<ConnectionCounts> counts, std::string address)
    : counts_(std::move(counts)), address_(std::move(address)) {}

ConnectionSlot::~ConnectionSlot() {
  if (!counts_) return;
  std::lock_guard lock(counts_->mu);
  auto it = counts_->open.find(address_);
  if (it != counts_->open.end() && --it->second == 0) counts_->open.erase(it);
}

ClientLimits::ClientLimits(ClientLimitsConfig c)
    : c_(c),
      conns_(c.address_connections ? std::make_shared<ConnectionCounts>(c.address_connections) : nullptr),
      user_(make("user-rate", c.user_rate, c.user_burst)),
      address_(make("address-rate", c.address_rate, c.address_burst)) {}

std::optional<ConnectionSlot> ClientLimits::open_connection(std::string_view address, std::string& why) {
  if (!conns_) return ConnectionSlot(nullptr, {});
  std::lock_guard lock(conns_->mu);
  auto& n = conns_->open[std::string(address)];
  if (n >= conns_->limit) {
    if (n == 0) conns_->open.erase(std::string(address));
    conns_->refused.fetch_add(1, std::memory_order_relaxed);
    why = fmt::format("max number of connections from address {} reached ({} open; limits.address_connections = {})",
                      address, n, conns_->limit);
    return std::nullopt;
  }
  ++n;
  return ConnectionSlot(conns_, std::string(address));
}

uint64_t ClientLimits::connections_refused() const {
  return conns_ ? conns_->refused.load(std::memory_order_relaxed) : 0;
}

std::optional<ClientLimits::Refusal> ClientLimits::check(std::string_view user, std::string_view address,
                                                         sdk::Instant now) {
  // One budget: nullopt when it admits the request, else the refusal naming it.
  auto against = [&](resilience::KeyedRateLimiter* limiter, std::string_view key, std::atomic<uint64_t>& refused,
                     bool is_user, std::string_view setting, uint64_t rate,
                     uint64_t burst) -> std::optional<Refusal> {
    if (!limiter) return std::nullopt;
    auto d = limiter->try_acquire(key, now);
    auto* no = std::get_if<resilience::Denied>(&d);
    if (!no) return std::nullopt;
    refused.fetch_add(1, std::memory_order_relaxed);
    const int64_t ms = ms_of(no->retry_after);
    return Refusal{fmt::format("rate limit of {} exceeded: {} allows {} requests per second ({} at once), on every "
                               "door of this node; retry in {} ms",
                               is_user ? fmt::format("user '{}'", key) : fmt::format("client address {}", key), setting,
                               rate, burst ? burst : rate, ms),
                   ms};
  };
  if (auto no = against(address_.get(), address, by_address_, false, "limits.address_rate", c_.address_rate,
                        c_.address_burst))
    return no;
  return against(user_.get(), user, by_user_, true, "limits.user_rate", c_.user_rate, c_.user_burst);
}

}  // namespace keel::security
