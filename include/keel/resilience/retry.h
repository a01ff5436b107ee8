// RetryPolicy: when to try a failed call again, and after how long. A pure core: the caller
// passes `now` and a Random; the policy never sleeps (see retry_call() for the thin helper that
// does). A RetryBudget shared by many calls caps retries at a fraction of requests so that
// retries cannot multiply the load on a struggling callee.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/signals.h"

namespace keel::resilience {

using sdk::Duration;
using sdk::Instant;

enum class Backoff : uint8_t {
  kFixed,               // base
  kLinear,              // base * attempt
  kExponential,         // base * multiplier^(attempt-1)
  kDecorrelatedJitter,  // uniform(base, previous * 3), capped (AWS "decorrelated jitter")
};
std::string_view backoff_name(Backoff b) noexcept;

// Token bucket of retries, in the manner of Finagle's RetryBudget and gRPC's retry throttling:
// every request deposits `ratio` tokens (capped at `max_tokens`); every retry withdraws one
// whole token and is refused when there is none. Starting with `initial_tokens`, the number of
// retries granted never exceeds initial_tokens + ratio * requests. Thread-safe, lock-free.
class RetryBudget {
 public:
  struct Options {
    double ratio = 0.1;           // retries allowed per request (0.1 = 10% extra load)
    double initial_tokens = 10;   // reserve for a cold start (few requests yet)
    double max_tokens = 100;      // cap, so a quiet period does not bank a retry storm
  };
  // REQUIRES: options valid (see validate()).
  explicit RetryBudget(Options o);
  static Status validate(const Options& o);

  // Every first attempt (not retries) deposits.
  void on_request() noexcept;
  // True and one token withdrawn, or false and nothing changed.
  bool try_withdraw() noexcept;
  double tokens() const noexcept;
  const Options& options() const noexcept { return o_; }

 private:
  static constexpr int64_t kScale = 1'000'000;  // fixed point: micro-tokens
  Options o_;
  int64_t deposit_;
  int64_t cap_;
  std::atomic<int64_t> micro_tokens_;
};

struct RetryOptions {
  std::string name = "retry";
  Backoff backoff = Backoff::kExponential;
  Duration base = std::chrono::milliseconds(100);
  Duration max_delay = std::chrono::seconds(10);  // cap on every delay
  double multiplier = 2.0;                         // exponential only; >= 1
  // Fixed, linear and exponential: the delay d becomes uniform(d*(1-jitter), d*(1+jitter)),
  // then capped. In [0, 1]. Decorrelated jitter is random by construction and ignores it.
  double jitter = 0.0;
  uint32_t max_attempts = 3;  // total attempts including the first; >= 1
  // The next attempt must start within max_elapsed of the first; 0 = no limit.
  Duration max_elapsed = Duration(0);
  // Which errors to retry; default is_transient (kUnavailable, kTimeout).
  std::function<bool(const Error&)> retry_on;
  RetryBudget* budget = nullptr;         // shared; must outlive the policy
  const sdk::SignalBus* signals = nullptr;  // must outlive the policy
};

// Per-call state. Cheap to copy; one per logical call.
struct RetryState {
  uint32_t attempt = 1;            // the attempt in progress, 1-based
  Instant started{};               // when attempt 1 started
  Duration previous_delay{0};      // decorrelated jitter feeds on it
};

struct RetryDecision {
  bool retry = false;
  Duration delay{0};                                   // valid when retry
  sdk::GiveUpReason reason = sdk::GiveUpReason::kNotRetryable;  // valid when !retry
};

class RetryPolicy {
 public:
  // Validates: max_attempts >= 1, base >= 0, max_delay >= base, multiplier >= 1,
  // jitter in [0, 1], max_elapsed >= 0, budget options.
  static Result<RetryPolicy> create(RetryOptions o);

  // Starts a call: deposits into the budget.
  RetryState begin(Instant now) const noexcept;

  // After attempt `s.attempt` failed with `e` at `now`: retry (and after how long) or give up.
  // On retry the state moves to the next attempt. `deadline` is the caller's own limit
  // (kInstantMax for none): a retry that could not start before it is not scheduled.
  RetryDecision on_failure(RetryState& s, const Error& e, Instant now, sdk::Random& rng,
                           Instant deadline = sdk::kInstantMax) const;

  // The delay before attempt `failed_attempt + 1`, before the cap on elapsed time. Pure.
  Duration delay_after(uint32_t failed_attempt, Duration previous_delay, sdk::Random& rng) const;

  const RetryOptions& options() const noexcept { return o_; }

 private:
  explicit RetryPolicy(RetryOptions o) : o_(std::move(o)) {}
  RetryOptions o_;
};

// Runs `call` (a callable returning Result<T>) under `policy`, waiting through `sleeper`.
// The thin effectful helper around the pure policy.
template <class F>
auto retry_call(const RetryPolicy& policy, const sdk::Clock& clock, sdk::Sleeper& sleeper,
                sdk::Random& rng, F&& call, Instant deadline = sdk::kInstantMax)
    -> decltype(call()) {
  RetryState s = policy.begin(clock.now());
  while (true) {
    auto r = call();
    if (r.has_value()) return r;
    RetryDecision d = policy.on_failure(s, r.error(), clock.now(), rng, deadline);
    if (!d.retry) return r;
    sleeper.sleep_for(d.delay);
  }
}

}  // namespace keel::resilience
