#include "keel/resilience/circuit_breaker.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <deque>

namespace keel::resilience {
namespace {

using namespace std::chrono_literals;
using sdk::BreakerState;
using sdk::Instant;

std::unique_ptr<CircuitBreaker> make(BreakerOptions o) {
  auto b = CircuitBreaker::create(std::move(o));
  EXPECT_TRUE(b.has_value()) << (b ? "" : b.error().message);
  return std::move(*b);
}

BreakerOptions small() {
  BreakerOptions o;
  o.name = "db";
  o.window_size = 10;
  o.minimum_calls = 4;
  o.failure_rate_threshold = 50;
  o.slow_call_rate_threshold = 100;
  o.slow_call_duration = 1s;
  o.wait_in_open = 10s;
  o.permitted_calls_in_half_open = 2;
  return o;
}

TEST(Breaker, OpensAtThresholdAfterMinimumCallsThenHalfOpensAndCloses) {
  auto b = make(small());
  Instant t{};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_failure(1ms, t);
  }
  EXPECT_EQ(b->state(), BreakerState::kClosed);  // 3 < minimum_calls
  ASSERT_TRUE(b->try_acquire(t));
  b->on_success(1ms, t);  // 3/4 = 75% >= 50%
  EXPECT_EQ(b->state(), BreakerState::kOpen);
  auto refused = b->try_acquire(t + 5s);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kCircuitOpen);
  ASSERT_TRUE(b->try_acquire(t + 10s));  // wait elapsed: half-open, permit 1 of 2
  EXPECT_EQ(b->state(), BreakerState::kHalfOpen);
  ASSERT_TRUE(b->try_acquire(t + 10s));
  EXPECT_FALSE(b->try_acquire(t + 10s));  // no permits left
  b->on_success(1ms, t + 10s);
  EXPECT_EQ(b->state(), BreakerState::kHalfOpen);
  b->on_success(1ms, t + 10s);
  EXPECT_EQ(b->state(), BreakerState::kClosed);
  EXPECT_EQ(b->metrics(t + 10s).calls, 0u);  // fresh window
}

TEST(Breaker, HalfOpenFailureReopens) {
  auto b = make(small());
  Instant t{};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_failure(1ms, t);
  }
  ASSERT_EQ(b->state(), BreakerState::kOpen);
  ASSERT_TRUE(b->try_acquire(t + 10s));
  b->on_failure(1ms, t + 10s);
  ASSERT_TRUE(b->try_acquire(t + 10s));
  b->on_success(1ms, t + 10s);  // 1/2 = 50% >= 50%
  EXPECT_EQ(b->state(), BreakerState::kOpen);
}

TEST(Breaker, SlowCallsOpenTheCircuit) {
  auto o = small();
  o.slow_call_rate_threshold = 50;
  auto b = make(o);
  Instant t{};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_success(i < 2 ? 2s : 1ms, t);
  }
  EXPECT_EQ(b->state(), BreakerState::kOpen);
}

TEST(Breaker, TimeBasedWindowForgetsOldCalls) {
  auto o = small();
  o.window_type = WindowType::kTimeBased;
  o.window_size = 5;  // seconds
  auto b = make(o);
  Instant t{};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_failure(1ms, t);
  }
  // Six seconds later the three failures have left the window.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(b->try_acquire(t + 6s));
    b->on_success(1ms, t + 6s);
  }
  EXPECT_EQ(b->state(), BreakerState::kClosed);
  EXPECT_EQ(b->metrics(t + 6s).calls, 4u);
  EXPECT_EQ(b->metrics(t + 20s).calls, 0u);
}

TEST(Breaker, ForcedOpenAndDisabledAndReset) {
  auto b = make(small());
  Instant t{};
  b->force_open(t);
  EXPECT_FALSE(b->try_acquire(t + 1h));
  b->disable(t);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_failure(1ms, t);
  }
  EXPECT_EQ(b->state(), BreakerState::kDisabled);
  b->reset(t);
  EXPECT_EQ(b->state(), BreakerState::kClosed);
}

TEST(Breaker, MaxWaitInHalfOpenReopens) {
  auto o = small();
  o.max_wait_in_half_open = 3s;
  auto b = make(o);
  Instant t{};
  b->force_open(t);
  b->reset(t);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_failure(1ms, t);
  }
  ASSERT_TRUE(b->try_acquire(t + 10s));  // half-open, one permit used and never recorded
  EXPECT_EQ(b->state(), BreakerState::kHalfOpen);
  EXPECT_FALSE(b->try_acquire(t + 13s));  // max wait passed: open again, refused
  EXPECT_EQ(b->state(), BreakerState::kOpen);
}

TEST(Breaker, EmitsATransitionSignalForEveryChange) {
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  auto o = small();
  o.signals = &bus;
  auto b = make(o);
  Instant t{};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(b->try_acquire(t));
    b->on_failure(1ms, t);
  }
  EXPECT_FALSE(b->try_acquire(t));
  auto lines = rec->lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "breaker_transition db CLOSED->OPEN failure rate 100.0% >= 50.0%");
  EXPECT_EQ(lines[1].rfind("call_not_permitted db OPEN", 0), 0u);
}

TEST(Breaker, OnlyFailuresThatSayTheCalleeIsUnhealthyCount) {
  auto o = small();
  o.is_failure = [](const Error& e) { return e.code != ErrorCode::kFailed; };  // app errors are fine
  auto b = make(o);
  sdk::ManualClock clock;
  for (int i = 0; i < 10; ++i) {
    auto r = breaker_call(*b, clock, []() -> Result<int> { return fail(ErrorCode::kFailed, "no such order"); });
    EXPECT_FALSE(r);
  }
  EXPECT_EQ(b->state(), BreakerState::kClosed);
  EXPECT_EQ(b->metrics(clock.now()).failures, 0u);
  for (int i = 0; i < 10; ++i) {
    auto r = breaker_call(*b, clock, []() -> Result<int> { return fail(ErrorCode::kUnavailable, "down"); });
  }
  EXPECT_EQ(b->state(), BreakerState::kOpen);
  auto d = make(small());  // default: invalid-argument errors do not count
  for (int i = 0; i < 10; ++i)
    breaker_call(*d, clock, []() -> Result<int> { return fail(ErrorCode::kInvalidArgument, "bad key"); });
  EXPECT_EQ(d->state(), BreakerState::kClosed);
}

TEST(Breaker, BadOptionsAreRefused) {
  auto o = small();
  o.failure_rate_threshold = 0;
  auto b = CircuitBreaker::create(o);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("failure_rate_threshold"), std::string::npos);
  o = small();
  o.window_size = 0;
  EXPECT_FALSE(CircuitBreaker::create(o));
  o = small();
  o.permitted_calls_in_half_open = 0;
  EXPECT_FALSE(CircuitBreaker::create(o));
}

// ---- model-based property: the breaker against a naive model of the state chart ----

struct Model {
  BreakerOptions o;
  uint32_t min_calls;
  BreakerState state = BreakerState::kClosed;
  Instant opened_at{}, half_open_at{};
  struct Call {
    Instant at;
    bool fail, slow;
  };
  std::vector<Call> closed;  // every call recorded while closed
  uint32_t permits = 0;
  std::vector<Call> trial;

  explicit Model(BreakerOptions opt) : o(std::move(opt)) {
    min_calls = o.minimum_calls;
    if (o.window_type == WindowType::kCountBased) min_calls = std::min(min_calls, o.window_size);
  }
  static int64_t sec(Instant t) { return t.time_since_epoch().count() / 1'000'000'000; }
  void go(BreakerState s, Instant now) {
    state = s;
    if (s == BreakerState::kOpen) opened_at = now;
    if (s == BreakerState::kHalfOpen) {
      half_open_at = now;
      permits = o.permitted_calls_in_half_open;
      trial.clear();
    }
    if (s == BreakerState::kClosed) closed.clear();
  }
  bool acquire(Instant now) {
    if (state == BreakerState::kHalfOpen && o.max_wait_in_half_open.count() > 0 &&
        now - half_open_at >= o.max_wait_in_half_open)
      go(BreakerState::kOpen, now);
    if (state == BreakerState::kClosed || state == BreakerState::kDisabled) return true;
    if (state == BreakerState::kOpen && now - opened_at >= o.wait_in_open) go(BreakerState::kHalfOpen, now);
    if (state == BreakerState::kHalfOpen && permits > 0) {
      permits--;
      return true;
    }
    return false;
  }
  bool over(const std::vector<Call>& calls) const {
    uint32_t f = 0, s = 0;
    for (const auto& c : calls) {
      f += c.fail;
      s += c.slow;
    }
    double n = static_cast<double>(calls.size());
    return 100.0 * f / n >= o.failure_rate_threshold || 100.0 * s / n >= o.slow_call_rate_threshold;
  }
  void record(bool fail, bool slow, Instant now) {
    if (state == BreakerState::kClosed) {
      closed.push_back({now, fail, slow});
      std::vector<Call> window;
      if (o.window_type == WindowType::kCountBased) {
        size_t from = closed.size() > o.window_size ? closed.size() - o.window_size : 0;
        window.assign(closed.begin() + static_cast<std::ptrdiff_t>(from), closed.end());
      } else {
        for (const auto& c : closed)
          if (sec(c.at) > sec(now) - static_cast<int64_t>(o.window_size)) window.push_back(c);
      }
      if (window.size() >= min_calls && over(window)) go(BreakerState::kOpen, now);
    } else if (state == BreakerState::kHalfOpen) {
      trial.push_back({now, fail, slow});
      if (trial.size() == o.permitted_calls_in_half_open)
        go(over(trial) ? BreakerState::kOpen : BreakerState::kClosed, now);
    }
  }
};

bool allowed_edge(BreakerState from, BreakerState to, std::string_view reason) {
  if (to == BreakerState::kForcedOpen || to == BreakerState::kDisabled) return true;
  if (to == BreakerState::kClosed && reason == "reset") return true;
  switch (from) {
    case BreakerState::kClosed: return to == BreakerState::kOpen;
    case BreakerState::kOpen: return to == BreakerState::kHalfOpen;
    case BreakerState::kHalfOpen: return to == BreakerState::kOpen || to == BreakerState::kClosed;
    default: return false;
  }
}

RC_GTEST_PROP(BreakerProperty, FollowsTheStateChartForRandomOutcomes, ()) {
  BreakerOptions o;
  o.name = "m";
  o.window_type = *rc::gen::element(WindowType::kCountBased, WindowType::kTimeBased);
  o.window_size = *rc::gen::inRange<uint32_t>(1, 12);
  o.minimum_calls = *rc::gen::inRange<uint32_t>(1, 15);
  // Round thresholds make "rate == threshold" common, so >= versus > is exercised.
  auto threshold = rc::gen::oneOf(rc::gen::element(20.0, 25.0, 50.0, 75.0, 100.0),
                                  rc::gen::map(rc::gen::inRange(1, 101), [](int v) { return double(v); }));
  o.failure_rate_threshold = *threshold;
  o.slow_call_rate_threshold = *threshold;
  o.slow_call_duration = 100ms;
  o.wait_in_open = std::chrono::milliseconds(*rc::gen::inRange(0, 5000));
  o.permitted_calls_in_half_open = *rc::gen::inRange<uint32_t>(1, 5);
  o.max_wait_in_half_open = std::chrono::milliseconds(*rc::gen::element(0, 0, 700, 3000));
  sdk::SignalBus bus;
  BreakerState last = BreakerState::kClosed;
  bool chart_ok = true;
  std::string bad;
  bus.subscribe([&](const sdk::Signal& s) {
    if (auto* tr = std::get_if<sdk::BreakerTransition>(&s)) {
      if (tr->from != last || !allowed_edge(tr->from, tr->to, tr->reason)) {
        chart_ok = false;
        bad = sdk::describe_signal(s);
      }
      last = tr->to;
    }
  });
  o.signals = &bus;
  auto b = CircuitBreaker::create(o);
  RC_ASSERT(b.has_value());
  Model m(o);
  Instant now{};
  const auto ops = *rc::gen::container<std::vector<uint32_t>>(rc::gen::arbitrary<uint32_t>());
  for (uint32_t x : ops) {
    uint32_t op = x % 100;
    if (op < 65) {
      bool fail = (x >> 8) & 1, slow = ((x >> 9) & 3) == 0;
      bool got = (*b)->try_acquire(now).has_value();
      RC_ASSERT(got == m.acquire(now));
      if (got) {
        auto elapsed = slow ? 200ms : 1ms;
        if (fail) (*b)->on_failure(elapsed, now);
        else (*b)->on_success(elapsed, now);
        m.record(fail, slow, now);
      }
    } else if (op < 96) {
      now += std::chrono::milliseconds((x >> 8) % 2500);
    } else if (op == 96) {
      (*b)->force_open(now);
      m.go(BreakerState::kForcedOpen, now);
    } else if (op == 97) {
      (*b)->disable(now);
      m.go(BreakerState::kDisabled, now);
    } else {
      (*b)->reset(now);
      m.go(BreakerState::kClosed, now);
    }
    RC_ASSERT((*b)->state() == m.state);
  }
  RC_ASSERT(chart_ok);
}

}  // namespace
}  // namespace keel::resilience
