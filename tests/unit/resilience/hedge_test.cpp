// Hedged requests: HedgeRun (the pure decisions, driven by hand with explicit times) and the
// pipeline's hedge stage (threads, driven by a manual clock the calls themselves advance; the
// tests wait for events, never for time, and assert no durations).
#include <gtest/gtest.h>

#include <thread>

#include "keel/resilience/hedge.h"
#include "keel/resilience/pipeline.h"

namespace keel::resilience {
namespace {

using namespace std::chrono_literals;
using sdk::Instant;
using Kind = HedgeRun::StepKind;

std::unique_ptr<HedgePolicy> policy(HedgeOptions o) {
  auto p = HedgePolicy::create(std::move(o));
  EXPECT_TRUE(p) << p.error().message;
  return std::move(*p);
}

const Instant t0{};

// ---- HedgeRun: the pure part ----

TEST(HedgeRun, CopiesStartAtTheirDueTimesAndNeverBeyondMaxHedges) {
  auto p = policy({.name = "h", .max_hedges = 2, .delay = 10ms});
  HedgeRun run(*p, t0);
  auto s = run.next(t0);
  ASSERT_EQ(s.kind, Kind::kLaunch);
  EXPECT_EQ(s.copy, 0u);
  s = run.next(t0);
  EXPECT_EQ(s.kind, Kind::kWait);
  EXPECT_EQ(s.until, t0 + 10ms);
  EXPECT_EQ(run.next(t0 + 9ms).kind, Kind::kWait);
  s = run.next(t0 + 10ms);
  ASSERT_EQ(s.kind, Kind::kLaunch);
  EXPECT_EQ(s.copy, 1u);
  s = run.next(t0 + 10ms);
  EXPECT_EQ(s.until, t0 + 20ms);
  s = run.next(t0 + 20ms);
  ASSERT_EQ(s.kind, Kind::kLaunch);
  EXPECT_EQ(s.copy, 2u);
  // max_hedges = 2: however late it gets, no fourth copy.
  for (auto at : {t0 + 30ms, t0 + 1s, t0 + 1h}) {
    s = run.next(at);
    EXPECT_EQ(s.kind, Kind::kWait);
    EXPECT_EQ(s.until, sdk::kInstantMax);
  }
  EXPECT_EQ(run.launched(), 3u);
  EXPECT_EQ(run.launched_at(1), t0 + 10ms);
  EXPECT_EQ(run.launched_at(2), t0 + 20ms);
  run.finished(2, true, t0 + 25ms);
  EXPECT_EQ(run.next(t0 + 25ms).kind, Kind::kFinish);
  EXPECT_EQ(run.winner(), 2u);
}

TEST(HedgeRun, NoCopyAfterASuccess) {
  auto p = policy({.name = "h", .max_hedges = 3, .delay = 10ms});
  HedgeRun run(*p, t0);
  ASSERT_EQ(run.next(t0).kind, Kind::kLaunch);
  run.finished(0, true, t0 + 4ms);
  EXPECT_EQ(run.next(t0 + 1s).kind, Kind::kFinish);
  EXPECT_EQ(run.launched(), 1u);
  EXPECT_EQ(run.winner(), 0u);
  run.finished(0, true, t0 + 5ms);  // a repeated report changes nothing
  EXPECT_EQ(run.ended(), 1u);
}

TEST(HedgeRun, AFailedOriginalIsNotHedgedButARunningOneStillIs) {
  auto p = policy({.name = "h", .max_hedges = 2, .delay = 10ms});
  {
    HedgeRun run(*p, t0);
    ASSERT_EQ(run.next(t0).kind, Kind::kLaunch);
    run.finished(0, false, t0 + 3ms);
    EXPECT_EQ(run.next(t0 + 30ms).kind, Kind::kFinish);  // hedging is not retrying
    EXPECT_FALSE(run.winner());
  }
  {
    HedgeRun run(*p, t0);
    ASSERT_EQ(run.next(t0).kind, Kind::kLaunch);
    ASSERT_EQ(run.next(t0 + 10ms).kind, Kind::kLaunch);
    run.finished(1, false, t0 + 12ms);  // the hedge failed; the original still runs
    auto s = run.next(t0 + 12ms);
    EXPECT_EQ(s.kind, Kind::kWait);
    EXPECT_EQ(s.until, t0 + 20ms);
    EXPECT_EQ(run.next(t0 + 20ms).kind, Kind::kLaunch);  // and is hedged again
    run.finished(0, true, t0 + 21ms);
    EXPECT_EQ(run.next(t0 + 21ms).kind, Kind::kFinish);
    EXPECT_EQ(run.winner(), 0u);
  }
}

TEST(HedgeRun, TheBudgetIsRespected) {
  RetryBudget budget({.ratio = 0, .initial_tokens = 1, .max_tokens = 1});
  auto p = policy({.name = "h", .max_hedges = 1, .delay = 10ms, .budget = &budget});
  HedgeRun first(*p, t0);
  ASSERT_EQ(first.next(t0).kind, Kind::kLaunch);
  ASSERT_EQ(first.next(t0 + 10ms).kind, Kind::kLaunch);  // the one token
  EXPECT_EQ(budget.tokens(), 0);
  HedgeRun second(*p, t0 + 1s);
  ASSERT_EQ(second.next(t0 + 1s).kind, Kind::kLaunch);
  auto s = second.next(t0 + 1s + 10ms);
  EXPECT_EQ(s.kind, Kind::kWait);  // due, but the budget is empty
  EXPECT_EQ(s.until, sdk::kInstantMax);
  EXPECT_EQ(second.next(t0 + 2s).kind, Kind::kWait);
  EXPECT_EQ(second.launched(), 1u);
}

TEST(HedgeRun, TheDeadlineAndStopEndLaunching) {
  auto p = policy({.name = "h", .max_hedges = 3, .delay = 10ms});
  HedgeRun run(*p, t0, /*deadline=*/t0 + 15ms);
  ASSERT_EQ(run.next(t0).kind, Kind::kLaunch);
  ASSERT_EQ(run.next(t0 + 10ms).kind, Kind::kLaunch);
  auto s = run.next(t0 + 12ms);
  EXPECT_EQ(s.until, t0 + 15ms);  // wakes at the deadline, not at the next due time
  EXPECT_EQ(run.next(t0 + 20ms).kind, Kind::kWait);
  EXPECT_EQ(run.launched(), 2u);
  run.finished(0, false, t0 + 21ms);
  run.finished(1, false, t0 + 22ms);
  EXPECT_EQ(run.next(t0 + 22ms).kind, Kind::kFinish);

  HedgeRun stopped(*p, t0);
  ASSERT_EQ(stopped.next(t0).kind, Kind::kLaunch);
  stopped.stop();
  EXPECT_EQ(stopped.next(t0 + 1s).kind, Kind::kWait);
  stopped.finished(0, false, t0 + 1s);
  EXPECT_EQ(stopped.next(t0 + 1s).kind, Kind::kFinish);
  EXPECT_EQ(stopped.launched(), 1u);
}

TEST(HedgeRun, TheWinnersOwnLatencyFeedsTheAdaptiveDelay) {
  auto p = policy({.name = "h", .max_hedges = 1, .delay = 50ms, .percentile = 50, .window = 8});
  for (int i = 0; i < 4; ++i) {
    Instant sent = t0 + std::chrono::seconds(i);
    HedgeRun run(*p, sent);
    ASSERT_EQ(run.next(sent).kind, Kind::kLaunch);
    ASSERT_EQ(run.next(sent + 50ms).kind, Kind::kLaunch);
    run.finished(1, true, sent + 50ms + 7ms);  // the hedge won, 7 ms after it started
  }
  EXPECT_EQ(p->current_delay(), 7ms);
}

// ---- the hedge stage: threads around HedgeRun ----

// A manual clock that counts the reads made by the thread running the stage: a call can wait
// until the stage took another decision (each decision reads the clock once), without time.
class ProbeClock final : public sdk::Clock {
 public:
  Instant now() const noexcept override {
    if (std::this_thread::get_id() == owner_) reads_.fetch_add(1, std::memory_order_acq_rel);
    return manual.now();
  }
  void own() { owner_ = std::this_thread::get_id(); }  // before run(), from the running thread
  uint64_t reads() const { return reads_.load(std::memory_order_acquire); }
  sdk::ManualClock manual;

 private:
  std::thread::id owner_;
  mutable std::atomic<uint64_t> reads_{0};
};

template <class Pred>
void until(Pred p) {
  while (!p()) std::this_thread::yield();
}

struct Calls {
  std::mutex mu;
  std::vector<Instant> started;
  std::vector<bool> saw_cancel;
  size_t begin(Instant at) {
    std::lock_guard lk(mu);
    started.push_back(at);
    saw_cancel.push_back(false);
    return started.size() - 1;
  }
};

// The original stalls until cancelled after moving the clock past the delay; the hedge answers.
Result<std::string> stall_then_answer(Calls& calls, sdk::ManualClock& clock, Context& c) {
  size_t n = calls.begin(c.now());
  if (n == 0) {
    clock.advance(30ms);
    until([&] { return c.cancelled(); });
    std::lock_guard lk(calls.mu);
    calls.saw_cancel[0] = true;
    return fail(ErrorCode::kTimeout, "cancelled");
  }
  return std::string("copy " + std::to_string(n));
}

TEST(HedgeStage, TheHedgeWinsWhenTheOriginalStallsAndTheLoserSeesCancelled) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(7);
  Calls calls;
  auto p = std::shared_ptr<HedgePolicy>(policy({.name = "h", .max_hedges = 1, .delay = 30ms}));
  auto root = hedge_stage<std::string>(
      "hedged", p, call_stage<std::string>("get", [&](Context& c) { return stall_then_answer(calls, clock, c); }));
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  Result<std::string> r = root->run(ctx);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, "copy 1");
  ASSERT_EQ(calls.started.size(), 2u);
  EXPECT_EQ(calls.started[0], Instant{});
  EXPECT_EQ(calls.started[1], Instant{} + 30ms);  // exactly when the policy said
  EXPECT_TRUE(calls.saw_cancel[0]);
  EXPECT_FALSE(ctx.cancelled());  // the caller's own context is untouched
}

TEST(HedgeStage, AFastOriginalIsNotHedged) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(7);
  std::atomic<int> n{0};
  auto p = std::shared_ptr<HedgePolicy>(policy({.name = "h", .max_hedges = 3, .delay = 30ms}));
  auto root = hedge_stage<int>("hedged", p, call_stage<int>("get", [&](Context&) -> Result<int> {
                                 clock.advance(29ms);
                                 return ++n;
                               }));
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  auto r = root->run(ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1);
  clock.advance(1s);
  EXPECT_EQ(n.load(), 1);
}

TEST(HedgeStage, MaxHedgesIsRespectedLongAfterEveryCopyWasDue) {
  ProbeClock clock;
  sdk::ManualSleeper sleeper(clock.manual);
  sdk::SeededRandom rng(7);
  std::atomic<int> n{0};
  auto p = std::shared_ptr<HedgePolicy>(policy({.name = "h", .max_hedges = 2, .delay = 10ms}));
  auto root = hedge_stage<std::string>("hedged", p, call_stage<std::string>("get", [&](Context& c) -> Result<std::string> {
    int k = ++n;
    if (k <= 2) {  // the original and the first hedge stall, moving time to the next hedge
      clock.manual.advance(10ms);
      until([&] { return c.cancelled(); });
      return fail(ErrorCode::kTimeout, "cancelled");
    }
    if (k == 3) {  // the last hedge moves far past where a 4th and 5th copy would be due,
      uint64_t r = clock.reads();
      clock.manual.advance(1s);
      until([&] { return clock.reads() >= r + 2; });  // and lets the stage decide at that time
      return std::string("third");
    }
    return std::string("too many");
  }));
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  clock.own();
  auto r = root->run(ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "third");
  EXPECT_EQ(n.load(), 3);
}

TEST(HedgeStage, EveryCopyFailingGivesTheOriginalsErrorWithItsPath) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(7);
  std::atomic<int> n{0};
  auto p = std::shared_ptr<HedgePolicy>(policy({.name = "h", .max_hedges = 1, .delay = 10ms}));
  std::atomic<bool> hedge_done{false};
  auto root = hedge_stage<int>("hedged", p, call_stage<int>("get", [&](Context&) -> Result<int> {
    if (++n == 1) {
      clock.advance(10ms);
      until([&] { return hedge_done.load(); });  // ends after the hedge, still reported first
      return fail(ErrorCode::kUnavailable, "original down");
    }
    hedge_done = true;
    return fail(ErrorCode::kUnavailable, "hedge down");
  }));
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  auto r = root->run(ctx);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().to_string(), "unavailable: original down (via hedged > get)");
  EXPECT_EQ(n.load(), 2);
}

TEST(HedgeStage, TheBudgetStopsHedgesInTheStage) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(7);
  RetryBudget budget({.ratio = 0, .initial_tokens = 0, .max_tokens = 1});
  std::atomic<int> n{0};
  auto p = std::shared_ptr<HedgePolicy>(policy({.name = "h", .max_hedges = 2, .delay = 10ms, .budget = &budget}));
  auto root = hedge_stage<int>("hedged", p, call_stage<int>("get", [&](Context&) -> Result<int> {
    clock.advance(100ms);  // every hedge is due long before the original answers
    return ++n;
  }));
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  auto r = root->run(ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ(n.load(), 1);
}

TEST(HedgeStage, ACancelledCallerCancelsTheCopiesAndLaunchesNoMore) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(7);
  std::atomic<int> n{0};
  auto outer = std::make_shared<std::atomic<bool>>(false);  // as a race would set it
  auto p = std::shared_ptr<HedgePolicy>(policy({.name = "h", .max_hedges = 2, .delay = 10ms}));
  auto root = hedge_stage<int>("hedged", p, call_stage<int>("get", [&](Context& c) -> Result<int> {
    ++n;
    outer->store(true);                       // another branch of an enclosing race won
    until([&] { return c.cancelled(); });     // the stage passes it on to its copies
    clock.advance(1s);                        // every hedge is due now, but none may start
    return fail(ErrorCode::kTimeout, "gave up");
  }));
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  ctx.cancel = outer;
  auto r = root->run(ctx);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().to_string(), "timeout: gave up (via hedged > get)");
  EXPECT_EQ(n.load(), 1);
}

// The same hedge described in JSON (and YAML) and in code behaves the same.
TEST(HedgeStage, ADescribedHedgeEqualsTheCodeBuiltOne) {
  struct Outcome {
    std::string value;
    std::vector<Instant> started;
    bool loser_cancelled;
    bool operator==(const Outcome&) const = default;
  };
  auto run = [](auto build) {
    sdk::ManualClock clock;
    sdk::ManualSleeper sleeper(clock);
    sdk::SeededRandom rng(7);
    Calls calls;
    Registry<std::string>::Call get = [&](Context& c) { return stall_then_answer(calls, clock, c); };
    StagePtr<std::string> root = build(get);
    Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
    auto r = root->run(ctx);
    EXPECT_TRUE(r);
    return Outcome{r ? *r : r.error().to_string(), calls.started, calls.saw_cancel.at(0)};
  };
  Outcome code = run([](Registry<std::string>::Call get) {
    auto p = std::shared_ptr<HedgePolicy>(std::move(*HedgePolicy::create({.name = "hedged", .max_hedges = 2, .delay = 30ms})));
    return hedge_stage<std::string>("hedged", p, call_stage<std::string>("get", get));
  });
  Outcome described = run([](Registry<std::string>::Call get) {
    Registry<std::string> reg;
    reg.add_call("db.get", get);
    auto p = reg.build(R"({"root": "hedged", "stages": [
      {"id": "hedged", "type": "hedge", "delay_ms": 30, "max_hedges": 2, "child": "get"},
      {"id": "get", "type": "call", "call": "db.get"}]})");
    EXPECT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->root()->kind(), StageKind::kHedge);
    return p->root();
  });
  Outcome named = run([](Registry<std::string>::Call get) {
    Registry<std::string> reg;
    reg.add_call("db.get", get);
    reg.add_hedge("search", std::shared_ptr<HedgePolicy>(std::move(*HedgePolicy::create({.max_hedges = 2, .delay = 30ms}))));
    auto p = reg.build(R"({"root": "hedged", "stages": [
      {"id": "hedged", "type": "hedge", "hedge": "search", "child": "get"},
      {"id": "get", "type": "call", "call": "db.get"}]})");
    EXPECT_TRUE(p) << p.error().message;
    return p->root();
  });
  EXPECT_EQ(code.value, "copy 1");
  EXPECT_EQ(code.started, (std::vector<Instant>{Instant{}, Instant{} + 30ms}));
  EXPECT_TRUE(code.loser_cancelled);
  EXPECT_EQ(described, code);
  EXPECT_EQ(named, code);
  if (yaml_descriptions_supported()) {
    Outcome yaml = run([](Registry<std::string>::Call get) {
      Registry<std::string> reg;
      reg.add_call("db.get", get);
      auto p = reg.build_yaml(R"(
root: hedged
stages:
  - {id: hedged, type: hedge, delay_ms: 30, max_hedges: 2, child: get}
  - {id: get, type: call, call: db.get}
)");
      EXPECT_TRUE(p) << p.error().message;
      return p->root();
    });
    EXPECT_EQ(yaml, code);
  }
}

TEST(HedgeStage, BadHedgeDescriptionsAreRefusedWithClearErrors) {
  Registry<int> reg;
  reg.add_call("c", [](Context&) -> Result<int> { return 1; });
  reg.add_hedge("search", std::shared_ptr<HedgePolicy>(std::move(*HedgePolicy::create({}))));
  auto err = [&](std::string stage) {
    auto p = reg.build(R"({"root": "h", "stages": [)" + stage + R"(, {"id": "c", "type": "call", "call": "c"}]})");
    EXPECT_FALSE(p) << stage;
    return p ? std::string() : p.error().message;
  };
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "child": "c"})"),
            "stages[0] ('h').delay_ms: a hedge stage needs \"delay_ms\", an integer in [1, 86400000] "
            "(or \"hedge\", a registered policy)");
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "delay_ms": 0, "max_hedges": 17, "child": "c"})"),
            "stages[0] ('h').delay_ms: must be an integer in [1, 86400000]\n"
            "stages[0] ('h').max_hedges: must be an integer in [1, 16]");
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "delay_ms": 5, "percentile": 100, "window": 4, "child": "c"})"),
            "stages[0] ('h').window: must be an integer in [8, 65536]\n"
            "stages[0] ('h').percentile: must be a number, 0 (fixed delay) or in (0, 100) (adaptive delay)");
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "delay_ms": 5, "min_delay_ms": 50, "max_delay_ms": 10, "child": "c"})"),
            "stages[0] ('h').max_delay_ms: must be >= min_delay_ms (50)");
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "hedge": "search", "delay_ms": 5, "child": "c"})"),
            "stages[0] ('h').delay_ms: a hedge stage naming a registered policy (\"hedge\") takes its options from "
            "that policy; give either \"hedge\" or inline options, not both");
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "hedge": "nope", "child": "c"})"),
            "stages[0] ('h'): no hedge policy named 'nope' is registered; registered: search");
  EXPECT_EQ(err(R"({"id": "h", "type": "hedge", "delay_ms": 5, "children": ["c"]})"),
            "stages[0] ('h').child: a hedge stage needs \"child\", the id of the stage it wraps\n"
            "stages[0] ('h'): unknown field \"children\" for a hedge stage; allowed: child, delay_ms, hedge, id, "
            "max_delay_ms, max_hedges, min_delay_ms, percentile, type, window");
  auto ok = reg.build(R"({"root": "h", "stages": [
      {"id": "h", "type": "hedge", "delay_ms": 5, "percentile": 95, "window": 64, "min_delay_ms": 2,
       "max_delay_ms": 40, "max_hedges": 3, "child": "c"},
      {"id": "c", "type": "call", "call": "c"}]})");
  ASSERT_TRUE(ok) << ok.error().message;
  auto* h = dynamic_cast<const detail::HedgeStage<int>*>(ok->root().get());
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->policy().options().max_hedges, 3u);
  EXPECT_EQ(h->policy().options().percentile, 95);
  EXPECT_EQ(h->policy().options().window, 64u);
  EXPECT_EQ(h->policy().options().min_delay, 2ms);
  EXPECT_EQ(h->policy().options().max_delay, 40ms);
}

}  // namespace
}  // namespace keel::resilience
