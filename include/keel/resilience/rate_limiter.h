// Rate limiting with GCRA (the generic cell rate algorithm: a token bucket kept as one
// timestamp, the theoretical arrival time TAT). With emission interval T = period / count and
// tolerance tau = (burst - 1) * T, a request of cost n at `now` is allowed iff
// max(TAT, now) + n*T - now <= tau + T, and then TAT advances by n*T. In any window of length
// w at most count * w / period + burst units are admitted (T is rounded up to whole
// nanoseconds so the bound holds exactly).
//
// RateLimiter is global (one TAT, lock-free). KeyedRateLimiter keeps one TAT per key (peer,
// tenant) in a bounded table: when full, the least recently used key is evicted; a key whose
// TAT is already in the past carries no state, so such evictions lose nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/signals.h"

namespace keel::resilience {

using sdk::Duration;
using sdk::Instant;

struct RateLimit {
  uint64_t count = 100;                        // units admitted per period (sustained); >= 1
  Duration period = std::chrono::seconds(1);   // > 0
  uint32_t burst = 1;                          // units admissible at once; >= 1

  static Status validate(const RateLimit& l);
  // Emission interval T, rounded up.
  Duration interval() const noexcept;
};

struct Allowed {
  Duration wait{0};  // 0 for try_acquire; for reserve(): how long to wait before proceeding
};
struct Denied {
  Duration retry_after{0};  // the earliest time from now at which the same request could pass
};
using Decision = std::variant<Allowed, Denied>;

inline bool is_allowed(const Decision& d) noexcept { return std::holds_alternative<Allowed>(d); }

struct LimiterOptions {
  std::string name = "limiter";
  RateLimit limit;
  const sdk::SignalBus* signals = nullptr;
};

class RateLimiter {
 public:
  static Result<std::unique_ptr<RateLimiter>> create(LimiterOptions o);
  explicit RateLimiter(LimiterOptions o);  // REQUIRES valid options

  // Admit `cost` units now, or say when they could be admitted. cost > burst is always
  // Denied with retry_after = Duration::max().
  Decision try_acquire(Instant now, uint32_t cost = 1) noexcept;

  // Waiting acquire: if the units can be admitted by `deadline`, they are reserved now and
  // Allowed{wait} says how long the caller must wait before using them; otherwise nothing is
  // reserved and Denied{retry_after} is returned. See acquire_until() for the helper that waits.
  Decision reserve(Instant now, Instant deadline, uint32_t cost = 1) noexcept;

  const LimiterOptions& options() const noexcept { return o_; }

 private:
  Decision decide(Instant now, Instant deadline, uint32_t cost) noexcept;
  LimiterOptions o_;
  int64_t interval_ns_;
  int64_t tau_ns_;
  std::atomic<int64_t> tat_ns_{INT64_MIN / 2};
};

struct KeyedLimiterOptions {
  std::string name = "keyed-limiter";
  RateLimit limit;            // per key
  uint32_t max_keys = 10000;  // bound on the table; >= 1
  const sdk::SignalBus* signals = nullptr;
};

class KeyedRateLimiter {
 public:
  static Result<std::unique_ptr<KeyedRateLimiter>> create(KeyedLimiterOptions o);
  explicit KeyedRateLimiter(KeyedLimiterOptions o);  // REQUIRES valid options

  Decision try_acquire(std::string_view key, Instant now, uint32_t cost = 1);
  Decision reserve(std::string_view key, Instant now, Instant deadline, uint32_t cost = 1);

  size_t size() const;
  // Evictions of keys that still carried state (their TAT was in the future): each one could
  // let that key exceed its limit once. Zero when max_keys is large enough.
  uint64_t lossy_evictions() const noexcept { return lossy_evictions_.load(std::memory_order_relaxed); }
  const KeyedLimiterOptions& options() const noexcept { return o_; }

 private:
  static constexpr size_t kShards = 16;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Entry;
  using Lru = std::list<Entry>;
  struct Entry {
    std::string key;
    int64_t tat_ns;
  };
  struct Shard {
    std::mutex mu;
    Lru lru;  // front = most recently used
    std::unordered_map<std::string, Lru::iterator, Hash, std::equal_to<>> map;
  };
  Decision decide(std::string_view key, Instant now, Instant deadline, uint32_t cost);

  KeyedLimiterOptions o_;
  int64_t interval_ns_;
  int64_t tau_ns_;
  size_t per_shard_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> lossy_evictions_{0};
};

// Waits (through `sleeper`) for a reservation made before `deadline`. Returns kRateLimited
// with the retry_after in the message when the deadline cannot be met.
Status acquire_until(RateLimiter& limiter, const sdk::Clock& clock, sdk::Sleeper& sleeper,
                     Instant deadline, uint32_t cost = 1);

}  // namespace keel::resilience
