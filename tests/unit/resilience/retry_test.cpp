#include "keel/resilience/retry.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>

namespace keel::resilience {
namespace {

using namespace std::chrono_literals;
using sdk::GiveUpReason;

Error unavailable() { return Error{ErrorCode::kUnavailable, "down", {}}; }

RetryPolicy make(RetryOptions o) {
  auto p = RetryPolicy::create(std::move(o));
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message);
  return std::move(*p);
}

TEST(Retry, FixedLinearExponentialDelays) {
  sdk::SeededRandom rng(1);
  RetryOptions o;
  o.base = 10ms;
  o.max_delay = 1s;
  o.max_attempts = 10;
  o.backoff = Backoff::kFixed;
  auto fixed = make(o);
  o.backoff = Backoff::kLinear;
  auto linear = make(o);
  o.backoff = Backoff::kExponential;
  o.multiplier = 2;
  auto expo = make(o);
  for (uint32_t a = 1; a <= 8; ++a) {
    EXPECT_EQ(fixed.delay_after(a, 0ns, rng), 10ms);
    EXPECT_EQ(linear.delay_after(a, 0ns, rng), 10ms * a);
    EXPECT_EQ(expo.delay_after(a, 0ns, rng), std::min<sdk::Duration>(10ms * (1 << (a - 1)), 1s));
  }
  EXPECT_EQ(expo.delay_after(30, 0ns, rng), 1s);  // capped, no overflow
}

TEST(Retry, GivesUpAfterMaxAttemptsAndOnlyOnRetryableErrors) {
  sdk::SeededRandom rng(1);
  RetryOptions o;
  o.base = 1ms;
  o.max_attempts = 3;
  auto p = make(o);
  sdk::Instant t{};
  RetryState s = p.begin(t);
  EXPECT_TRUE(p.on_failure(s, unavailable(), t, rng).retry);
  EXPECT_TRUE(p.on_failure(s, unavailable(), t, rng).retry);
  auto d = p.on_failure(s, unavailable(), t, rng);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, GiveUpReason::kMaxAttempts);
  RetryState s2 = p.begin(t);
  auto d2 = p.on_failure(s2, Error{ErrorCode::kFailed, "bad request", {}}, t, rng);
  EXPECT_FALSE(d2.retry);
  EXPECT_EQ(d2.reason, GiveUpReason::kNotRetryable);
}

TEST(Retry, MaxElapsedAndDeadlineStopRetries) {
  sdk::SeededRandom rng(1);
  RetryOptions o;
  o.backoff = Backoff::kFixed;
  o.base = 100ms;
  o.max_attempts = 100;
  o.max_elapsed = 250ms;
  auto p = make(o);
  sdk::Instant t{};
  RetryState s = p.begin(t);
  EXPECT_TRUE(p.on_failure(s, unavailable(), t + 50ms, rng).retry);   // next at 150
  EXPECT_FALSE(p.on_failure(s, unavailable(), t + 160ms, rng).retry); // next at 260 > 250
  RetryState s2 = p.begin(t);
  auto d = p.on_failure(s2, unavailable(), t, rng, t + 50ms);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, GiveUpReason::kMaxElapsed);
}

TEST(Retry, InvalidOptionsAreRefusedWithAReason) {
  RetryOptions o;
  o.max_attempts = 0;
  auto p = RetryPolicy::create(o);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("max_attempts"), std::string::npos);
  o = RetryOptions{};
  o.jitter = 1.5;
  EXPECT_FALSE(RetryPolicy::create(o));
  o = RetryOptions{};
  o.max_delay = 1ms;
  o.base = 2ms;
  EXPECT_FALSE(RetryPolicy::create(o));
  EXPECT_FALSE(RetryBudget::validate({.ratio = -1}));
}

TEST(Retry, RetryCallRunsWithManualClockAndNoSleep) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(3);
  RetryOptions o;
  o.backoff = Backoff::kExponential;
  o.base = 10ms;
  o.max_attempts = 4;
  auto p = make(o);
  int calls = 0;
  auto r = retry_call(p, clock, sleeper, rng, [&]() -> Result<int> {
    if (++calls < 3) return fail(ErrorCode::kUnavailable, "not yet");
    return 42;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(sleeper.total_slept(), 30ms);  // 10 + 20
}

// Property: every delay lies within its jitter bounds and never above max_delay.
RC_GTEST_PROP(RetryProperty, DelaysStayWithinJitterBoundsAndCaps, ()) {
  const auto backoff = *rc::gen::element(Backoff::kFixed, Backoff::kLinear, Backoff::kExponential,
                                         Backoff::kDecorrelatedJitter);
  const int64_t base_ms = *rc::gen::inRange<int64_t>(1, 1000);
  const int64_t cap_ms = base_ms + *rc::gen::inRange<int64_t>(0, 100000);
  const double mult = 1.0 + *rc::gen::inRange(0, 400) / 100.0;
  const double jitter = *rc::gen::inRange(0, 101) / 100.0;
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  RetryOptions o;
  o.backoff = backoff;
  o.base = std::chrono::milliseconds(base_ms);
  o.max_delay = std::chrono::milliseconds(cap_ms);
  o.multiplier = mult;
  o.jitter = jitter;
  o.max_attempts = 1000;
  auto p = RetryPolicy::create(o);
  RC_ASSERT(p.has_value());
  sdk::SeededRandom rng(seed);
  const double base = static_cast<double>(o.base.count()), cap = static_cast<double>(o.max_delay.count());
  sdk::Duration prev{0};
  for (uint32_t a = 1; a <= 40; ++a) {
    sdk::Duration d = p->delay_after(a, prev, rng);
    const double v = static_cast<double>(d.count());
    RC_ASSERT(d.count() >= 0);
    RC_ASSERT(v <= cap);
    double nominal = 0;
    switch (backoff) {
      case Backoff::kFixed: nominal = base; break;
      case Backoff::kLinear: nominal = base * a; break;
      case Backoff::kExponential: nominal = base * std::pow(mult, a - 1); break;
      case Backoff::kDecorrelatedJitter: {
        const double lo = base, hi = std::max(base, std::min(cap, 3.0 * std::max<double>(prev.count(), base)));
        RC_ASSERT(v >= lo - 1);
        RC_ASSERT(v <= hi + 1);
        prev = d;
        continue;
      }
    }
    nominal = std::min(nominal, cap);
    const double lo = nominal * (1 - jitter) - 2, hi = std::min(cap, nominal * (1 + jitter) + 2);
    RC_ASSERT(v >= lo);
    RC_ASSERT(v <= hi);
    prev = d;
  }
}

// Property: whatever the mix of requests and failures, retries granted never exceed
// initial_tokens + ratio * requests.
RC_GTEST_PROP(RetryProperty, BudgetIsNeverExceeded, ()) {
  const double ratio = *rc::gen::inRange(0, 101) / 100.0;
  const double initial = *rc::gen::inRange(0, 20);
  RetryBudget budget({.ratio = ratio, .initial_tokens = initial, .max_tokens = 20 + initial});
  RetryOptions o;
  o.base = 1ms;
  o.max_attempts = *rc::gen::inRange<uint32_t>(1, 10);
  o.budget = &budget;
  auto p = RetryPolicy::create(o);
  RC_ASSERT(p.has_value());
  sdk::SeededRandom rng(7);
  const auto fail_pattern = *rc::gen::container<std::vector<bool>>(rc::gen::arbitrary<bool>());
  uint64_t requests = 0, retries = 0;
  size_t k = 0;
  sdk::Instant t{};
  for (int call = 0; call < 200; ++call) {
    RetryState s = p->begin(t);
    requests++;
    while (true) {
      bool failed = fail_pattern.empty() ? true : fail_pattern[k++ % fail_pattern.size()];
      if (!failed) break;
      auto d = p->on_failure(s, unavailable(), t, rng);
      if (!d.retry) break;
      retries++;
      RC_ASSERT(static_cast<double>(retries) <= initial + ratio * static_cast<double>(requests) + 1e-9);
    }
  }
  RC_ASSERT(static_cast<double>(retries) <= initial + ratio * static_cast<double>(requests) + 1e-9);
}

TEST(Retry, BudgetRefusalIsReportedAsBudget) {
  RetryBudget budget({.ratio = 0, .initial_tokens = 1, .max_tokens = 1});
  RetryOptions o;
  o.base = 1ms;
  o.max_attempts = 5;
  o.budget = &budget;
  auto p = make(o);
  sdk::SeededRandom rng(1);
  RetryState s = p.begin({});
  EXPECT_TRUE(p.on_failure(s, unavailable(), {}, rng).retry);
  auto d = p.on_failure(s, unavailable(), {}, rng);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, GiveUpReason::kBudget);
}

TEST(Retry, EmitsScheduledAndGaveUpSignals) {
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  RetryOptions o;
  o.name = "db";
  o.base = 1ms;
  o.backoff = Backoff::kFixed;
  o.max_attempts = 2;
  o.signals = &bus;
  auto p = make(o);
  sdk::SeededRandom rng(1);
  RetryState s = p.begin({});
  p.on_failure(s, unavailable(), {}, rng);
  p.on_failure(s, unavailable(), {}, rng);
  EXPECT_EQ(rec->count("retry_scheduled"), 1u);
  EXPECT_EQ(rec->count("retry_gave_up"), 1u);
  EXPECT_EQ(rec->lines().at(0), "retry_scheduled db attempt=1 delay=1000000ns");
  EXPECT_EQ(rec->lines().at(1), "retry_gave_up db attempts=2 reason=max_attempts");
}

}  // namespace
}  // namespace keel::resilience
