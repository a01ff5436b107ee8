#include "keel/resilience/rate_limiter.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <thread>

namespace keel::resilience {
namespace {

using namespace std::chrono_literals;
using sdk::Duration;
using sdk::Instant;

std::unique_ptr<RateLimiter> make(RateLimit l, std::string name = "api", const sdk::SignalBus* bus = nullptr) {
  auto r = RateLimiter::create({std::move(name), l, bus});
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return std::move(*r);
}

TEST(Limiter, BurstThenSustainedRate) {
  auto l = make({.count = 10, .period = 1s, .burst = 3});
  Instant t{};
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(is_allowed(l->try_acquire(t)));
  auto d = l->try_acquire(t);
  ASSERT_FALSE(is_allowed(d));
  EXPECT_EQ(std::get<Denied>(d).retry_after, 100ms);
  EXPECT_FALSE(is_allowed(l->try_acquire(t + 99ms)));
  EXPECT_TRUE(is_allowed(l->try_acquire(t + 100ms)));
  EXPECT_FALSE(is_allowed(l->try_acquire(t + 100ms)));
}

TEST(Limiter, CostAboveBurstIsNeverAllowed) {
  auto l = make({.count = 10, .period = 1s, .burst = 3});
  auto d = l->try_acquire({}, 4);
  ASSERT_FALSE(is_allowed(d));
  EXPECT_EQ(std::get<Denied>(d).retry_after, Duration::max());
}

TEST(Limiter, ReserveReturnsTheWaitAndWaitingHelperUsesTheSleeper) {
  auto l = make({.count = 10, .period = 1s, .burst = 1});
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  Instant t = clock.now();
  EXPECT_TRUE(is_allowed(l->try_acquire(t)));
  auto d = l->reserve(t, t + 1s);
  ASSERT_TRUE(is_allowed(d));
  EXPECT_EQ(std::get<Allowed>(d).wait, 100ms);
  // The next one would need 200ms: refused with a 50ms deadline, nothing reserved.
  auto d2 = l->reserve(t, t + 50ms);
  ASSERT_FALSE(is_allowed(d2));
  EXPECT_EQ(std::get<Denied>(d2).retry_after, 200ms);
  ASSERT_TRUE(acquire_until(*l, clock, sleeper, t + 1s));
  EXPECT_EQ(sleeper.total_slept(), 200ms);
  auto st = acquire_until(*l, clock, sleeper, clock.now());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kRateLimited);
}

TEST(Limiter, BadLimitsAreRefused) {
  auto r = RateLimiter::create({"x", {.count = 0}, nullptr});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("count must be >= 1"), std::string::npos);
  EXPECT_FALSE(RateLimiter::create({"x", {.count = 1, .period = 0s}, nullptr}));
  EXPECT_FALSE(RateLimiter::create({"x", {.count = 1, .period = 1s, .burst = 0}, nullptr}));
  EXPECT_FALSE(KeyedRateLimiter::create({"x", {}, 0, nullptr}));
}

TEST(Limiter, DenialsEmitSignals) {
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  auto l = make({.count = 1, .period = 1s, .burst = 1}, "api", &bus);
  l->try_acquire({});
  l->try_acquire({});
  ASSERT_EQ(rec->lines().size(), 1u);
  EXPECT_EQ(rec->lines()[0], "request_denied api retry_after=1000000000ns");
}

TEST(Limiter, TwoThreadsNeverAdmitMoreThanTheBurstAtOneInstant) {
  auto l = make({.count = 1, .period = 1h, .burst = 1000});
  std::atomic<int> admitted{0};
  auto work = [&] {
    for (int i = 0; i < 5000; ++i)
      if (is_allowed(l->try_acquire(Instant{}))) admitted++;
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(admitted.load(), 1000);
}

// The dumb model: a token bucket holding "credit" in nanoseconds, refilled by elapsed time and
// capped at burst * T. GCRA must decide exactly as it does.
struct BucketModel {
  int64_t t_ns, cap;
  int64_t credit;
  int64_t last;
  BucketModel(const RateLimit& l) : t_ns(l.interval().count()), cap(t_ns * l.burst), credit(cap), last(INT64_MIN) {}
  Decision acquire(int64_t now, uint32_t cost, int64_t deadline) {
    if (last != INT64_MIN) credit = std::min(cap, credit + (now - last));
    last = now;
    int64_t need = t_ns * cost;
    if (need > cap) return Denied{Duration::max()};
    if (credit >= need) {
      credit -= need;
      return Allowed{};
    }
    if (now + (need - credit) <= deadline) {
      credit -= need;  // goes negative: the reservation is a debt paid by waiting
      return Allowed{Duration(-credit)};
    }
    return Denied{Duration(need - credit)};
  }
};

RC_GTEST_PROP(LimiterProperty, MatchesTokenBucketModelAndNeverExceedsRateTimesTPlusBurst, ()) {
  RateLimit lim;
  lim.count = *rc::gen::inRange<uint64_t>(1, 50);
  lim.period = std::chrono::milliseconds(*rc::gen::inRange(1, 2000));
  lim.burst = *rc::gen::inRange<uint32_t>(1, 8);
  const bool waiting = *rc::gen::arbitrary<bool>();
  auto l = RateLimiter::create({"p", lim, nullptr});
  RC_ASSERT(l.has_value());
  BucketModel model(lim);
  const auto steps = *rc::gen::container<std::vector<std::pair<uint16_t, uint8_t>>>(
      rc::gen::pair(rc::gen::inRange<uint16_t>(0, 300), rc::gen::inRange<uint8_t>(1, 4)));
  int64_t now = 0;
  std::vector<std::pair<int64_t, uint32_t>> admitted;  // (time the units are used, units)
  for (auto [gap_ms, cost] : steps) {
    now += int64_t{gap_ms} * 1'000'000;
    int64_t deadline = waiting ? now + 150'000'000 : now;
    Decision d = (*l)->reserve(Instant(Duration(now)), Instant(Duration(deadline)), cost);
    Decision m = model.acquire(now, cost, deadline);
    RC_ASSERT(d.index() == m.index());
    if (auto* a = std::get_if<Allowed>(&d)) {
      RC_ASSERT(a->wait == std::get<Allowed>(m).wait);
      admitted.emplace_back(now + a->wait.count(), cost);
    } else {
      RC_ASSERT(std::get<Denied>(d).retry_after == std::get<Denied>(m).retry_after);
    }
  }
  // In every window [a, b] of use times: units <= count * (b - a) / period + burst.
  std::sort(admitted.begin(), admitted.end());
  const double per_ns = static_cast<double>(lim.count) / static_cast<double>(lim.period.count());
  for (size_t i = 0; i < admitted.size(); ++i) {
    uint64_t units = 0;
    for (size_t j = i; j < admitted.size(); ++j) {
      units += admitted[j].second;
      double bound = per_ns * static_cast<double>(admitted[j].first - admitted[i].first) + lim.burst;
      RC_ASSERT(static_cast<double>(units) <= bound + 1e-9);
    }
  }
}

TEST(KeyedLimiter, KeysAreIndependent) {
  auto k = KeyedRateLimiter::create({"tenants", {.count = 1, .period = 1s, .burst = 2}, 100, nullptr});
  ASSERT_TRUE(k);
  Instant t{};
  EXPECT_TRUE(is_allowed((*k)->try_acquire("a", t)));
  EXPECT_TRUE(is_allowed((*k)->try_acquire("a", t)));
  EXPECT_FALSE(is_allowed((*k)->try_acquire("a", t)));
  EXPECT_TRUE(is_allowed((*k)->try_acquire("b", t)));
  EXPECT_EQ((*k)->size(), 2u);
}

TEST(KeyedLimiter, TableIsBoundedAndEvictionsOfLiveKeysAreCounted) {
  auto k = KeyedRateLimiter::create({"peers", {.count = 1, .period = 1s, .burst = 1}, 4, nullptr});
  ASSERT_TRUE(k);
  Instant t{};
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(is_allowed((*k)->try_acquire("k" + std::to_string(i), t)));
  EXPECT_EQ((*k)->size(), 4u);
  EXPECT_EQ((*k)->lossy_evictions(), 6u);
  // After their TAT has passed, evicting keys loses nothing.
  for (int i = 10; i < 14; ++i) EXPECT_TRUE(is_allowed((*k)->try_acquire("k" + std::to_string(i), t + 10s)));
  EXPECT_EQ((*k)->lossy_evictions(), 6u);
  EXPECT_EQ((*k)->size(), 4u);
}

RC_GTEST_PROP(KeyedLimiterProperty, EachKeyBehavesLikeItsOwnLimiterWhileTheTableHasRoom, ()) {
  RateLimit lim{.count = *rc::gen::inRange<uint64_t>(1, 20), .period = 1s, .burst = *rc::gen::inRange<uint32_t>(1, 5)};
  auto k = KeyedRateLimiter::create({"k", lim, 64, nullptr});
  RC_ASSERT(k.has_value());
  std::map<int, std::unique_ptr<RateLimiter>> singles;
  const auto steps = *rc::gen::container<std::vector<std::pair<uint8_t, uint16_t>>>(
      rc::gen::pair(rc::gen::inRange<uint8_t>(0, 8), rc::gen::inRange<uint16_t>(0, 400)));
  int64_t now = 0;
  for (auto [key, gap] : steps) {
    now += int64_t{gap} * 1'000'000;
    auto& s = singles[key];
    if (!s) s = std::make_unique<RateLimiter>(LimiterOptions{"s", lim, nullptr});
    Decision a = (*k)->try_acquire("key" + std::to_string(key), Instant(Duration(now)));
    Decision b = s->try_acquire(Instant(Duration(now)));
    RC_ASSERT(a.index() == b.index());
  }
  RC_ASSERT((*k)->lossy_evictions() == 0u);
}

}  // namespace
}  // namespace keel::resilience
