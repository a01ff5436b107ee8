#include "keel/resilience/bulkhead.h"
#include "keel/resilience/fallback.h"
#include "keel/resilience/hedge.h"
#include "keel/resilience/timeout.h"
#include "keel/resilience/waiting_bulkhead.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <thread>

namespace keel::resilience {
namespace {

using namespace std::chrono_literals;
using sdk::Duration;
using sdk::Instant;

std::unique_ptr<Bulkhead> make(uint32_t conc, uint32_t queue, const sdk::SignalBus* bus = nullptr) {
  auto b = Bulkhead::create({"pool", conc, queue, bus});
  EXPECT_TRUE(b.has_value());
  return std::move(*b);
}

TEST(Bulkhead, LimitsConcurrencyAndQueuesFifo) {
  auto b = make(2, 2);
  Instant t{};
  EXPECT_TRUE(std::holds_alternative<Bulkhead::Entered>(b->enter(t, 1s)));
  EXPECT_TRUE(b->try_enter(t));
  EXPECT_FALSE(b->try_enter(t));
  auto q1 = b->enter(t, 1s);
  auto q2 = b->enter(t, 1s);
  ASSERT_TRUE(std::holds_alternative<Bulkhead::Queued>(q1));
  ASSERT_TRUE(std::holds_alternative<Bulkhead::Queued>(q2));
  EXPECT_TRUE(std::holds_alternative<Bulkhead::Rejected>(b->enter(t, 1s)));  // queue full
  EXPECT_TRUE(std::holds_alternative<Bulkhead::Rejected>(b->enter(t, 0s)));  // no waiting
  auto t1 = std::get<Bulkhead::Queued>(q1).ticket, t2 = std::get<Bulkhead::Queued>(q2).ticket;
  auto woken = b->leave();
  ASSERT_TRUE(woken.has_value());
  EXPECT_EQ(*woken, t1);  // oldest first
  EXPECT_TRUE(b->granted(t1));
  EXPECT_FALSE(b->granted(t2));
  EXPECT_EQ(b->in_flight(), 2u);
  EXPECT_EQ(b->expire(t + 1s), std::vector<Bulkhead::Ticket>{t2});
  EXPECT_EQ(b->queued(), 0u);
  EXPECT_FALSE(b->abandon(t1, t));  // already granted: the caller owns the slot
  b->leave();
  b->leave();
  EXPECT_EQ(b->in_flight(), 0u);
  EXPECT_FALSE(b->leave().has_value());  // unbalanced leave is harmless
  EXPECT_EQ(b->in_flight(), 0u);
}

RC_GTEST_PROP(BulkheadProperty, NeverMoreThanMaxConcurrentInFlight, ()) {
  const uint32_t conc = *rc::gen::inRange<uint32_t>(1, 6), queue = *rc::gen::inRange<uint32_t>(0, 6);
  auto b = Bulkhead::create({"p", conc, queue, nullptr});
  RC_ASSERT(b.has_value());
  uint32_t holders = 0;
  std::vector<Bulkhead::Ticket> waiting;
  Instant now{};
  for (uint32_t x : *rc::gen::container<std::vector<uint32_t>>(rc::gen::arbitrary<uint32_t>())) {
    switch (x % 4) {
      case 0: {
        auto a = (*b)->enter(now, std::chrono::milliseconds(x % 3 * 100));
        if (std::holds_alternative<Bulkhead::Entered>(a)) holders++;
        if (auto* q = std::get_if<Bulkhead::Queued>(&a)) waiting.push_back(q->ticket);
        break;
      }
      case 1:
        if (holders > 0) {
          holders--;
          (*b)->leave();
        }
        break;
      case 2: now += 60ms; break;
      case 3:
        for (auto t : (*b)->expire(now)) std::erase(waiting, t);
        break;
    }
    // Granted waiters hold a slot.
    for (auto it = waiting.begin(); it != waiting.end();) {
      if ((*b)->granted(*it)) {
        RC_ASSERT(!(*b)->abandon(*it, now));
        holders++;
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
    RC_ASSERT((*b)->in_flight() == holders);
    RC_ASSERT(holders <= conc);
    RC_ASSERT((*b)->queued() <= queue);
  }
}

TEST(Bulkhead, WaitingHelperHandsTheSlotToABlockedThread) {
  auto b = make(1, 1);
  sdk::ManualClock clock;
  WaitingBulkhead w(*b, clock);
  ASSERT_TRUE(w.enter(0s));
  std::atomic<bool> entered{false};
  std::thread other([&] {
    ASSERT_TRUE(w.enter(1h));  // blocks until the slot is handed over
    entered = true;
    w.leave();
  });
  while (b->queued() == 0) std::this_thread::yield();
  EXPECT_FALSE(entered.load());
  w.leave();
  other.join();
  EXPECT_TRUE(entered.load());
  EXPECT_EQ(b->in_flight(), 0u);
}

TEST(Bulkhead, RejectionsEmitSignals) {
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  auto b = make(1, 0, &bus);
  b->enter({}, 0s);
  b->enter({}, 0s);
  ASSERT_EQ(rec->lines().size(), 1u);
  EXPECT_EQ(rec->lines()[0], "bulkhead_rejected pool in_flight=1 queued=0 full");
}

TEST(Timeout, LateResultsBecomeTimeoutsAndDeadlineIsPassedDown) {
  sdk::ManualClock clock;
  auto t = Timeout::create("db", 100ms);
  ASSERT_TRUE(t);
  Instant seen{};
  auto fast = timeout_call(*t, clock, [&](Instant dl) -> Result<int> {
    seen = dl;
    clock.advance(50ms);
    return 1;
  });
  EXPECT_TRUE(fast);
  EXPECT_EQ(seen, Instant(Duration(0)) + 100ms);
  auto slow = timeout_call(*t, clock, [&](Instant) -> Result<int> {
    clock.advance(150ms);
    return 1;
  });
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code, ErrorCode::kTimeout);
  // An enclosing deadline that is sooner wins.
  EXPECT_EQ(t->deadline(Instant{}, Instant{} + 10ms), Instant{} + 10ms);
  EXPECT_FALSE(Timeout::create("x", 0ms));
}

TEST(Fallback, TriesAdaptersInOrderAndSaysWhichServed) {
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  int primary_calls = 0;
  auto f = Fallback<std::string>::create(
      "profile",
      {{"db", "fresh data", [&]() -> Result<std::string> {
          ++primary_calls;
          return fail(ErrorCode::kUnavailable, "db down");
        }},
       {"cache", "up to 5 minutes stale", []() -> Result<std::string> { return fail(ErrorCode::kTimeout, "slow"); }},
       {"default", "static anonymous profile", []() -> Result<std::string> { return std::string("anon"); }}},
      {}, &bus);
  ASSERT_TRUE(f);
  auto r = f->run();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, "anon");
  EXPECT_EQ(r->adapter_index, 2u);
  EXPECT_EQ(f->chain()[r->adapter_index].capability, "static anonymous profile");
  EXPECT_EQ(primary_calls, 1);
  EXPECT_EQ(rec->count("fallback_used"), 2u);
}

TEST(Fallback, NonEligibleErrorsStopTheChainAndBadChainsAreRefused) {
  auto f = Fallback<int>::create(
      "x",
      {{"a", "", []() -> Result<int> { return fail(ErrorCode::kInvalidArgument, "bad request"); }},
       {"b", "", []() -> Result<int> { return 2; }}},
      [](const Error& e) { return is_transient(e); });
  ASSERT_TRUE(f);
  auto r = f->run();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(Fallback<int>::create("x", {}));
  auto dup = Fallback<int>::create("x", {{"a", "", [] { return Result<int>(1); }}, {"a", "", [] { return Result<int>(1); }}});
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("used twice"), std::string::npos);
}

TEST(Hedge, FiresAfterTheDelayUpToMaxHedges) {
  auto h = HedgePolicy::create({.name = "h", .max_hedges = 2, .delay = 10ms});
  ASSERT_TRUE(h);
  Instant sent{};
  auto d0 = (*h)->decide(sent, sent + 5ms, 0, false);
  EXPECT_FALSE(d0.fire);
  EXPECT_EQ(d0.next_check, sent + 10ms);
  auto d1 = (*h)->decide(sent, sent + 10ms, 0, false);
  EXPECT_TRUE(d1.fire);
  EXPECT_EQ(d1.next_check, sent + 20ms);
  EXPECT_FALSE((*h)->decide(sent, sent + 15ms, 1, false).fire);
  EXPECT_TRUE((*h)->decide(sent, sent + 20ms, 1, false).fire);
  auto d3 = (*h)->decide(sent, sent + 99ms, 2, false);
  EXPECT_FALSE(d3.fire);
  EXPECT_EQ(d3.next_check, sdk::kInstantMax);
  EXPECT_FALSE((*h)->decide(sent, sent + 99ms, 0, true).fire);  // already answered
}

TEST(Hedge, AdaptiveDelayFollowsThePercentileAndBudgetLimitsHedges) {
  RetryBudget budget({.ratio = 0, .initial_tokens = 1, .max_tokens = 1});
  auto h = HedgePolicy::create(
      {.name = "h", .max_hedges = 1, .delay = 50ms, .percentile = 90, .window = 10, .budget = &budget});
  ASSERT_TRUE(h);
  EXPECT_EQ((*h)->current_delay(), 50ms);  // not enough samples yet
  for (int i = 1; i <= 10; ++i) (*h)->record_latency(std::chrono::milliseconds(i * 10));
  EXPECT_EQ((*h)->current_delay(), 90ms);
  Instant s{};
  EXPECT_TRUE((*h)->decide(s, s + 90ms, 0, false).fire);
  EXPECT_FALSE((*h)->decide(s + 1s, s + 2s, 0, false).fire);  // budget spent
  EXPECT_FALSE(HedgePolicy::create({.max_hedges = 0}));
}

}  // namespace
}  // namespace keel::resilience

namespace keel::resilience {
namespace {

TEST(Signals, TimeoutAndHedgeEmit) {
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  sdk::ManualClock clock;
  auto t = Timeout::create("db", 10ms, &bus);
  ASSERT_TRUE(t);
  auto r = timeout_call(*t, clock, [&](Instant) -> Result<int> {
    clock.advance(20ms);
    return 1;
  });
  EXPECT_FALSE(r);
  auto h = HedgePolicy::create({.name = "search", .delay = 5ms, .signals = &bus});
  ASSERT_TRUE(h);
  EXPECT_TRUE((*h)->decide(Instant{}, Instant{} + 5ms, 0, false).fire);
  EXPECT_EQ(rec->lines(), (std::vector<std::string>{"timeout_expired db timeout=10000000ns",
                                                    "hedge_fired search copy=1 after=5000000ns"}));
}

TEST(RetryBudgetConcurrency, TwoThreadsNeverWithdrawMoreThanDeposited) {
  RetryBudget budget({.ratio = 0.25, .initial_tokens = 3, .max_tokens = 1e6});
  std::atomic<uint64_t> granted{0};
  auto work = [&] {
    for (int i = 0; i < 20000; ++i) {
      budget.on_request();
      if (budget.try_withdraw()) granted++;
      if (budget.try_withdraw()) granted++;
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_LE(static_cast<double>(granted.load()), 3 + 0.25 * 40000);
  EXPECT_GE(static_cast<double>(granted.load()), 0.25 * 40000 - 1);  // and it does grant what it holds
}

}  // namespace
}  // namespace keel::resilience
