// Rate limits per user and per client address on every door (docs/security.md, "Rate limits
// per user and per address"): node-wide GCRA limiters (the SDK's KeyedRateLimiter: bounded
// tables, the least recently used key evicted when full), shared by RESP and HTTP, so a user's
// budget is the same whichever door and connection it uses. Off unless configured.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "keel/resilience/rate_limiter.h"

namespace keel::security {

struct ClientLimitsConfig {
  uint64_t user_rate = 0;      // requests per second per user (0: no limit)
  uint64_t user_burst = 0;     // at once (0: as many as the rate)
  uint64_t address_rate = 0;   // requests per second per client address (0: no limit)
  uint64_t address_burst = 0;
  uint64_t address_connections = 0;  // open connections per client address, every door (0: no limit)
};

// Open connections per client address (shared by the doors). A slot is held for as long as its
// connection is open; it gives its place back when destroyed.
class ConnectionCounts;
class ConnectionSlot {
 public:
  ConnectionSlot(std::shared_ptr<ConnectionCounts> counts, std::string address);
  ConnectionSlot(ConnectionSlot&&) noexcept = default;
  ConnectionSlot& operator=(ConnectionSlot&&) noexcept = default;
  ~ConnectionSlot();

 private:
  std::shared_ptr<ConnectionCounts> counts_;
  std::string address_;
};

class ClientLimits {
 public:
  explicit ClientLimits(ClientLimitsConfig c);
  bool enabled() const { return user_ || address_; }

  // nullopt when the request may go; else the refusal's text ("rate limit of user 'app'
  // exceeded: ...; retry in N ms") and how long to wait.
  struct Refusal {
    std::string message;
    int64_t retry_after_ms = 0;
  };
  std::optional<Refusal> check(std::string_view user, std::string_view address, sdk::Instant now);

  uint64_t refused_by_user() const { return by_user_.load(std::memory_order_relaxed); }
  uint64_t refused_by_address() const { return by_address_.load(std::memory_order_relaxed); }

  // A new connection from `address`: its slot (an empty one when there is no limit), or nullopt
  // with `why` set when the address already holds limits.address_connections of them.
  std::optional<ConnectionSlot> open_connection(std::string_view address, std::string& why);
  bool limits_connections() const { return conns_ != nullptr; }
  uint64_t connections_refused() const;

 private:
  ClientLimitsConfig c_;
  std::shared_ptr<ConnectionCounts> conns_;
  std::unique_ptr<resilience::KeyedRateLimiter> user_, address_;
  std::atomic<uint64_t> by_user_{0}, by_address_{0};
};

}  // namespace keel::security
