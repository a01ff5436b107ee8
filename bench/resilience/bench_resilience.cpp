// Cost of one decision of each resilience core, uncontended (1 thread) and with 2 threads
// sharing the same object. Time is fed by a per-thread counter (cores never read a clock).
//   build/bench/resilience/bench_resilience --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "keel/resilience/bulkhead.h"
#include "keel/resilience/circuit_breaker.h"
#include "keel/resilience/rate_limiter.h"
#include "keel/resilience/retry.h"

namespace {

using namespace keel::resilience;
using namespace std::chrono_literals;
using keel::sdk::Duration;
using keel::sdk::Instant;

RetryBudget& budget() {
  static RetryBudget b({.ratio = 1.0, .initial_tokens = 100, .max_tokens = 1000});
  return b;
}

const RetryPolicy& retry_policy() {
  static RetryPolicy p = [] {
    RetryOptions o;
    o.backoff = Backoff::kExponential;
    o.base = 10ms;
    o.jitter = 0.2;
    o.max_attempts = 5;
    o.budget = &budget();
    return std::move(*RetryPolicy::create(o));
  }();
  return p;
}

CircuitBreaker& breaker() {
  static auto b = [] {
    BreakerOptions o;
    o.window_size = 100;
    o.minimum_calls = 100;
    return std::move(*CircuitBreaker::create(o));
  }();
  return *b;
}

RateLimiter& limiter() {
  static auto l = std::move(*RateLimiter::create({"bench", {.count = 1'000'000'000, .period = 1s, .burst = 1000}, nullptr}));
  return *l;
}

KeyedRateLimiter& keyed() {
  static auto l = std::move(*KeyedRateLimiter::create({"bench", {.count = 1000, .period = 1s, .burst = 10}, 100000, nullptr}));
  return *l;
}

Bulkhead& bulkhead() {
  static auto b = std::move(*Bulkhead::create({"bench", 64, 0, nullptr}));
  return *b;
}

const Error kErr{ErrorCode::kUnavailable, "down", {}};

// One retry decision: a call starts (budget deposit) and its first failure is judged.
void BM_RetryDecision(benchmark::State& state) {
  keel::sdk::SeededRandom rng(static_cast<uint64_t>(state.thread_index()) + 1);
  const RetryPolicy& p = retry_policy();
  int64_t t = 0;
  for (auto _ : state) {
    t += 1000;
    RetryState s = p.begin(Instant(Duration(t)));
    RetryDecision d = p.on_failure(s, kErr, Instant(Duration(t)), rng);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_RetryDecision)->Threads(1)->Threads(2);

// One breaker decision: acquire a permit and record the outcome (1 failure in 10).
void BM_BreakerDecision(benchmark::State& state) {
  CircuitBreaker& b = breaker();
  int64_t t = 0;
  uint32_t i = 0;
  for (auto _ : state) {
    t += 1000;
    Instant now{Duration(t)};
    auto p = b.try_acquire(now);
    if (p) {
      if (++i % 10 == 0) b.on_failure(1ms, now);
      else b.on_success(1ms, now);
    }
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_BreakerDecision)->Threads(1)->Threads(2);

void BM_LimiterDecision(benchmark::State& state) {
  RateLimiter& l = limiter();
  int64_t t = 0;
  for (auto _ : state) {
    t += 1000;
    Decision d = l.try_acquire(Instant(Duration(t)));
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_LimiterDecision)->Threads(1)->Threads(2);

void BM_KeyedLimiterDecision(benchmark::State& state) {
  KeyedRateLimiter& l = keyed();
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; ++i) keys.push_back("tenant-" + std::to_string(i));
  int64_t t = 0;
  size_t i = static_cast<size_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    t += 1000;
    Decision d = l.try_acquire(keys[i++ & 1023], Instant(Duration(t)));
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_KeyedLimiterDecision)->Threads(1)->Threads(2);

// One bulkhead round trip: take a slot and give it back.
void BM_BulkheadEnterLeave(benchmark::State& state) {
  Bulkhead& b = bulkhead();
  for (auto _ : state) {
    bool ok = b.try_enter(Instant{});
    if (ok) b.leave();
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_BulkheadEnterLeave)->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
