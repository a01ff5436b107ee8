// CircuitBreaker with resilience4j semantics, as a pure core: the caller passes `now`.
//
//   CLOSED --(calls >= minimum_calls and failure rate or slow-call rate >= threshold)--> OPEN
//   OPEN --(first acquire after wait_in_open)--> HALF_OPEN
//   HALF_OPEN --(permitted_calls_in_half_open recorded, rates below thresholds)--> CLOSED
//   HALF_OPEN --(same, a rate at or above its threshold; or max_wait_in_half_open passed)--> OPEN
//   any --force_open()--> FORCED_OPEN (refuses all)    any --disable()--> DISABLED (permits all,
//   records nothing)    any --reset()/close()--> CLOSED (window cleared)
//
// In CLOSED the rates are computed over a sliding window: the last `window_size` calls
// (count-based) or the calls of the last `window_size` seconds (time-based, one bucket per
// second). HALF_OPEN evaluates a fresh window of exactly permitted_calls_in_half_open calls.
// Every transition emits sdk::BreakerTransition. Thread-safe (one short mutex per decision).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/signals.h"

namespace keel::resilience {

using sdk::BreakerState;
using sdk::Duration;
using sdk::Instant;

enum class WindowType : uint8_t { kCountBased, kTimeBased };

struct BreakerOptions {
  std::string name = "breaker";
  WindowType window_type = WindowType::kCountBased;
  uint32_t window_size = 100;           // calls (count-based) or seconds (time-based); 1..100000
  uint32_t minimum_calls = 100;         // before rates are evaluated; count-based: capped at window_size
  double failure_rate_threshold = 50;   // percent, (0, 100]
  double slow_call_rate_threshold = 100;  // percent, (0, 100]
  Duration slow_call_duration = std::chrono::seconds(60);  // a call at least this long is slow
  Duration wait_in_open = std::chrono::seconds(60);
  uint32_t permitted_calls_in_half_open = 10;  // >= 1
  Duration max_wait_in_half_open = Duration(0);  // 0 = stay half-open until the permitted calls end
  // Which errors count as failures in breaker_call and breaker stages; the others count as
  // successes (the callee answered). Default: every error, except kInvalidArgument, kFiltered
  // and kNotFound, which say nothing about the callee's health.
  std::function<bool(const Error&)> is_failure;
  const sdk::SignalBus* signals = nullptr;
};

struct BreakerMetrics {
  BreakerState state;
  uint32_t calls;       // in the current window (half-open: in its trial window)
  uint32_t failures;
  uint32_t slow_calls;
  double failure_rate;    // percent; -1 when calls < minimum
  double slow_call_rate;  // percent; -1 when calls < minimum
  uint32_t half_open_permits_left;
};

class CircuitBreaker {
 public:
  static Result<std::unique_ptr<CircuitBreaker>> create(BreakerOptions o);

  // May a call start now? OPEN turns HALF_OPEN here once wait_in_open has passed. On refusal
  // the error is kCircuitOpen and sdk::CallNotPermitted is emitted. A permitted call must be
  // followed by exactly one on_success / on_failure / on_ignored.
  Status try_acquire(Instant now);

  // Records the outcome of a permitted call that took `elapsed`.
  void on_success(Duration elapsed, Instant now);
  void on_failure(Duration elapsed, Instant now);
  // The call ended with an outcome that should not count (e.g. a cancelled call); releases a
  // half-open permit.
  void on_ignored(Instant now);

  void force_open(Instant now);
  void disable(Instant now);
  void reset(Instant now);  // to CLOSED with an empty window

  // Does this error count as a failure (BreakerOptions::is_failure)?
  bool counts_as_failure(const Error& e) const;

  BreakerState state() const;
  BreakerMetrics metrics(Instant now) const;
  const BreakerOptions& options() const noexcept { return o_; }

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;
  explicit CircuitBreaker(BreakerOptions o);  // use create(); REQUIRES valid options

 private:
  struct Totals {
    uint32_t calls = 0, failures = 0, slow = 0;
  };
  struct Bucket {
    int64_t second = INT64_MIN;
    Totals t;
  };
  void record(bool failure, bool slow, Instant now);
  void window_add(bool failure, bool slow, Instant now);
  Totals window_totals(Instant now);
  void window_advance(int64_t second);
  void clear_window();
  void transition(BreakerState to, Instant now, const char* reason, double fr, double sr);
  // REQUIRES mu_ held. Opens when a rate reaches its threshold (reason prefixed by `prefix`).
  bool open_if_over_threshold(double fr, double sr, const char* prefix, Instant now);
  void check_half_open_timeout(Instant now);

  BreakerOptions o_;
  uint32_t minimum_calls_;
  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;
  Instant opened_at_{};
  Instant half_open_at_{};
  // Count-based: ring of outcomes (bit0 failure, bit1 slow). Time-based: ring of buckets.
  std::vector<uint8_t> ring_;
  uint32_t ring_next_ = 0;
  uint32_t ring_fill_ = 0;
  std::vector<Bucket> buckets_;
  int64_t latest_second_ = INT64_MIN;
  Totals totals_;
  // Half-open trial.
  uint32_t ho_permits_left_ = 0;
  uint32_t ho_in_flight_ = 0;
  Totals ho_;
};

// Runs `call` (returning Result<T>) through `breaker`, measuring elapsed time with `clock`.
// Errors for which breaker.counts_as_failure() is false are recorded as successes.
template <class F>
auto breaker_call(CircuitBreaker& breaker, const sdk::Clock& clock, F&& call)
    -> decltype(call()) {
  Instant start = clock.now();
  if (auto p = breaker.try_acquire(start); !p) return std::unexpected(std::move(p.error()));
  auto r = call();
  Instant end = clock.now();
  if (r.has_value() || !breaker.counts_as_failure(r.error())) {
    breaker.on_success(end - start, end);
  } else {
    breaker.on_failure(end - start, end);
  }
  return r;
}

}  // namespace keel::resilience
