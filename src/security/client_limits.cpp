#include "security/client_limits.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

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

ClientLimits::ClientLimits(ClientLimitsConfig c)
    : c_(c), user_(make("user-rate", c.user_rate, c.user_burst)), address_(make("address-rate", c.address_rate, c.address_burst)) {}

std::optional<ClientLimits::Refusal> ClientLimits::check(std::string_view user, std::string_view address,
                                                         sdk::Instant now) {
  if (address_) {
    auto d = address_->try_acquire(address, now);
    if (auto* no = std::get_if<resilience::Denied>(&d)) {
      by_address_.fetch_add(1, std::memory_order_relaxed);
      const int64_t ms = ms_of(no->retry_after);
      return Refusal{fmt::format("rate limit of client address {} exceeded: limits.address_rate allows {} requests per "
                                 "second ({} at once); retry in {} ms",
                                 address, c_.address_rate, c_.address_burst ? c_.address_burst : c_.address_rate, ms),
                     ms};
    }
  }
  if (user_) {
    auto d = user_->try_acquire(user, now);
    if (auto* no = std::get_if<resilience::Denied>(&d)) {
      by_user_.fetch_add(1, std::memory_order_relaxed);
      const int64_t ms = ms_of(no->retry_after);
      return Refusal{fmt::format("rate limit of user '{}' exceeded: limits.user_rate allows {} requests per second ({} "
                                 "at once), on every door of this node; retry in {} ms",
                                 user, c_.user_rate, c_.user_burst ? c_.user_burst : c_.user_rate, ms),
                     ms};
    }
  }
  return std::nullopt;
}

}  // namespace keel::security
