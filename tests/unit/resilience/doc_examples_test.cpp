// Every example of docs/sdk.md (a ```cpp block preceded by `<!-- example: NAME -->`) is the
// text between `// doc:begin NAME` and `// doc:end` below, compiled and run here. The last test
// checks that the two copies are the same, so the docs cannot drift from code that builds.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include "keel/client/hedged.h"
#include "keel/resilience/bulkhead.h"
#include "keel/resilience/circuit_breaker.h"
#include "keel/resilience/fallback.h"
#include "keel/resilience/hedge.h"
#include "keel/resilience/pipeline.h"
#include "keel/resilience/rate_limiter.h"
#include "keel/resilience/retry.h"
#include "keel/resilience/timeout.h"
#include "keel/signals.h"

namespace {

using namespace keel;
using namespace keel::resilience;
using namespace std::chrono_literals;

TEST(DocExamples, Signals) {
  // doc:begin signals
  sdk::SignalBus bus;
  bus.subscribe([](const sdk::Signal& s) {
    if (auto* t = std::get_if<sdk::BreakerTransition>(&s))
      std::printf("breaker %s -> %s\n", std::string(t->breaker).c_str(),
                  std::string(sdk::breaker_state_name(t->to)).c_str());
  });
  auto recorder = std::make_shared<sdk::SignalRecorder>();  // keeps one line per signal
  bus.subscribe(recorder);
  // Hand &bus to any part: BreakerOptions::signals, RetryOptions::signals, ...
  // doc:end
  emit_signal(&bus, [] { return sdk::ConfigApplied{"x", 1, sdk::Instant{}}; });
  EXPECT_EQ(recorder->lines(), std::vector<std::string>{"config_applied x version=1"});
}

TEST(DocExamples, Retry) {
  // doc:begin retry
  RetryBudget budget({.ratio = 0.1, .initial_tokens = 10, .max_tokens = 100});
  RetryOptions o;
  o.name = "orders-db";
  o.backoff = Backoff::kDecorrelatedJitter;
  o.base = 20ms;
  o.max_delay = 2s;
  o.max_attempts = 4;
  o.budget = &budget;  // retries stay under 10% of requests
  RetryPolicy policy = *RetryPolicy::create(o);

  sdk::ManualClock clock;             // sdk::SteadyClock::instance() in production
  sdk::ManualSleeper sleeper(clock);  // sdk::ThreadSleeper::instance() in production
  sdk::SeededRandom rng(42);
  int calls = 0;
  Result<std::string> r = retry_call(policy, clock, sleeper, rng, [&]() -> Result<std::string> {
    if (++calls < 3) return fail(ErrorCode::kUnavailable, "connection refused");
    return std::string("order #7");
  });
  // r == "order #7" after 3 calls and two jittered waits
  // doc:end
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "order #7");
  EXPECT_EQ(calls, 3);
  EXPECT_GE(sleeper.total_slept(), 40ms);
}

TEST(DocExamples, Breaker) {
  // doc:begin breaker
  BreakerOptions o;
  o.name = "payments";
  o.window_type = WindowType::kCountBased;
  o.window_size = 20;
  o.minimum_calls = 10;
  o.failure_rate_threshold = 50;     // percent
  o.slow_call_duration = 2s;
  o.slow_call_rate_threshold = 80;   // percent
  o.wait_in_open = 30s;
  o.permitted_calls_in_half_open = 3;
  auto breaker = std::move(*CircuitBreaker::create(o));

  sdk::ManualClock clock;
  for (int i = 0; i < 10; ++i) {
    auto r = breaker_call(*breaker, clock, []() -> Result<int> {
      return fail(ErrorCode::kUnavailable, "payment gateway down");
    });
  }
  // 10 failures out of 10 calls: OPEN; calls are refused with kCircuitOpen for 30 s
  bool open = breaker->state() == sdk::BreakerState::kOpen;
  // doc:end
  EXPECT_TRUE(open);
  EXPECT_EQ(breaker->try_acquire(clock.now()).error().code, ErrorCode::kCircuitOpen);
}

TEST(DocExamples, Limiter) {
  // doc:begin limiter
  // 100 requests per second sustained, bursts of 20.
  auto global = std::move(*RateLimiter::create({"api", {.count = 100, .period = 1s, .burst = 20}}));
  sdk::Instant now{};
  Decision d = global->try_acquire(now);
  sdk::Duration retry_after{0};
  if (auto* denied = std::get_if<Denied>(&d)) retry_after = denied->retry_after;  // e.g. HTTP 429

  // One bucket per tenant, at most 10000 tenants tracked.
  auto per_tenant = std::move(*KeyedRateLimiter::create(
      {"tenants", {.count = 10, .period = 1s, .burst = 5}, /*max_keys=*/10000}));
  Decision t = per_tenant->try_acquire("tenant-42", now);

  // Waiting acquire: reserve now, wait at most 50 ms.
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  Status s = acquire_until(*global, clock, sleeper, clock.now() + 50ms);
  // doc:end
  EXPECT_TRUE(is_allowed(d));
  EXPECT_EQ(retry_after, 0ns);
  EXPECT_TRUE(is_allowed(t));
  EXPECT_TRUE(s);
}

TEST(DocExamples, Bulkhead) {
  // doc:begin bulkhead
  auto pool = std::move(*Bulkhead::create({"reports", /*max_concurrent=*/4, /*max_queue=*/16}));
  sdk::Instant now{};
  auto admission = pool->enter(now, 100ms);
  if (std::holds_alternative<Bulkhead::Entered>(admission)) {
    // ... run the call ...
    if (auto next = pool->leave()) {
      // the slot went to waiter *next: wake it
    }
  } else if (auto* q = std::get_if<Bulkhead::Queued>(&admission)) {
    // wait until pool->granted(q->ticket) or q->deadline, then pool->abandon(q->ticket, now)
    // if it was not granted (WaitingBulkhead does this for threads)
    pool->abandon(q->ticket, now);
  } else {
    // Rejected: answer kBulkheadFull at once
  }
  // doc:end
  EXPECT_TRUE(std::holds_alternative<Bulkhead::Entered>(admission));
  EXPECT_EQ(pool->in_flight(), 0u);
}

TEST(DocExamples, TimeoutFallback) {
  // doc:begin timeout_fallback
  sdk::ManualClock clock;
  Timeout timeout = *Timeout::create("profile-db", 200ms);
  auto from_db = [&]() -> Result<std::string> {
    return timeout_call(timeout, clock, [&](sdk::Instant deadline) -> Result<std::string> {
      (void)deadline;  // pass it to the client call
      clock.advance(350ms);  // the database is slow today
      return std::string("fresh profile");
    });
  };
  auto profile = *Fallback<std::string>::create(
      "profile",
      {{"db", "fresh data", from_db},
       {"cache", "up to 5 minutes stale", [] { return Result<std::string>("cached profile"); }},
       {"default", "anonymous profile", [] { return Result<std::string>("anonymous"); }}});
  auto served = profile.run();
  // served->value == "cached profile", served->adapter_index == 1:
  // profile.chain()[1].capability tells the caller what it got
  // doc:end
  ASSERT_TRUE(served);
  EXPECT_EQ(served->value, "cached profile");
  EXPECT_EQ(served->adapter_index, 1u);
}

TEST(DocExamples, Hedge) {
  // doc:begin hedge
  auto hedge = std::move(*HedgePolicy::create(
      {.name = "search", .max_hedges = 1, .delay = 30ms, .percentile = 95}));
  sdk::Instant sent{};
  HedgeDecision h = hedge->decide(sent, sent + 30ms, /*fired=*/0, /*done=*/false);
  // h.fire: send a second copy now; h.next_check: when to ask again.
  hedge->record_latency(12ms);  // feed successful latencies: the delay becomes their p95
  // doc:end
  EXPECT_TRUE(h.fire);
}

TEST(DocExamples, HedgeStage) {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(1);
  // doc:begin hedge_stage
  RetryBudget budget({.ratio = 0.05, .initial_tokens = 10, .max_tokens = 50});  // hedges <= 5% extra
  auto registry = std::make_shared<Registry<std::string>>();
  registry->add_call("search.query", [](Context& ctx) -> Result<std::string> {
    // a copy that lost sees ctx.cancelled(); a long call should check it and give up
    (void)ctx;
    return std::string("3 results");
  });
  registry->add_hedge("search", std::shared_ptr<HedgePolicy>(std::move(*HedgePolicy::create(
      {.name = "search", .max_hedges = 2, .delay = 20ms, .percentile = 95, .budget = &budget}))));

  PipelineSlot<std::string> slot("search", registry);
  Result<uint64_t> v = slot.apply(R"({
    "root": "fast",
    "stages": [
      {"id": "fast",  "type": "hedge", "hedge": "search", "child": "query"},
      {"id": "query", "type": "call",  "call": "search.query"}
    ]})");
  // Inline options instead of a registered policy (no budget then):
  //   {"id": "fast", "type": "hedge", "delay_ms": 20, "max_hedges": 2, "percentile": 95, "child": "query"}
  // In code: hedge_stage<std::string>("fast", policy, call_stage<std::string>("query", fn))
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  Result<std::string> r = slot.run(ctx);  // "3 results"
  // doc:end
  ASSERT_TRUE(v) << v.error().message;
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, "3 results");
}

TEST(DocExamples, HedgedAsync) {
  namespace asio = boost::asio;
  // Replica 0 is slow (it answers only when cancelled); the others answer at once.
  auto replica = [](uint32_t i) -> asio::awaitable<client::Result<std::string>> {
    if (i == 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_return client::make_error(client::Errc::kTimeout, "slow replica");
    }
    co_return "profile from replica " + std::to_string(i);
  };
  // doc:begin hedged_async
  auto hedge = std::move(*HedgePolicy::create({.name = "profile", .max_hedges = 2, .delay = 20ms}));
  // Copy k of the request goes to replica k. Name the callable before co_await (GCC 12).
  auto copy_fn = [replica](client::HedgeCopy copy) { return replica(copy.index()); };
  asio::io_context io;
  std::optional<client::Result<std::string>> answer;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    answer = co_await client::hedged(*hedge, copy_fn);  // on sdk::SteadyClock
  }, asio::detached);
  io.run();
  // **answer == "profile from replica 1": replica 0 did not answer within 20 ms, so a hedge
  // went to replica 1, which won; replica 0 was cancelled (its answer would be dropped).
  // doc:end
  ASSERT_TRUE(answer && *answer);
  EXPECT_EQ(**answer, "profile from replica 1");
}

TEST(DocExamples, Pipeline) {
  // doc:begin pipeline
  auto registry = std::make_shared<Registry<std::string>>();
  registry->add_call("db.get", [](Context&) -> Result<std::string> { return std::string("row"); });
  registry->add_call("cache.get", [](Context&) -> Result<std::string> { return std::string("cached"); });
  registry->add_retry("default", std::make_shared<const RetryPolicy>(*RetryPolicy::create({})));
  registry->add_breaker("db", std::shared_ptr<CircuitBreaker>(std::move(*CircuitBreaker::create({.name = "db"}))));

  PipelineSlot<std::string> slot("profile", registry);
  Result<uint64_t> version = slot.apply(R"({
    "root": "guard",
    "stages": [
      {"id": "guard",   "type": "breaker",  "breaker": "db",      "child": "again"},
      {"id": "again",   "type": "retry",    "policy": "default",  "child": "bounded"},
      {"id": "bounded", "type": "timeout",  "timeout_ms": 250,    "child": "lookup"},
      {"id": "lookup",  "type": "fallback", "children": ["primary", "cache"]},
      {"id": "primary", "type": "call",     "call": "db.get"},
      {"id": "cache",   "type": "call",     "call": "cache.get"}
    ]})");

  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(1);
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  Result<std::string> r = slot.run(ctx);  // "row"
  // A bad description is refused with every problem listed; the live version stays:
  Result<uint64_t> bad = slot.apply(R"({"root": "x", "stages": [{"id": "x", "type": "call", "call": "nope"}]})");
  // bad.error().message: "stages[0] ('x'): no call named 'nope' is registered; registered: cache.get, db.get"
  slot.rollback();  // back to the previous version, if there is one
  // doc:end
  ASSERT_TRUE(version);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "row");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "stages[0] ('x'): no call named 'nope' is registered; registered: cache.get, db.get");
}

TEST(DocExamples, PipelineYaml) {
  auto registry = std::make_shared<Registry<std::string>>();
  registry->add_call("db.get", [](Context&) -> Result<std::string> { return std::string("row"); });
  registry->add_limiter("per-second", std::shared_ptr<RateLimiter>(
      std::move(*RateLimiter::create({"per-second", {.count = 100, .period = 1s, .burst = 10}}))));
  PipelineSlot<std::string> slot("profile", registry);
  // doc:begin pipeline_yaml
  Result<uint64_t> v = slot.apply_yaml(R"(
root: edge
stages:
  - {id: edge, type: limiter, limiter: per-second, max_wait_ms: 20, child: primary}
  - {id: primary, type: call, call: db.get}
)");
  // doc:end
  ASSERT_TRUE(v) << v.error().message;
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(1);
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  EXPECT_EQ(*slot.run(ctx), "row");
}

TEST(DocExamples, PipelineInCode) {
  // doc:begin pipeline_code
  auto db = call_stage<int>("db", [](Context&) -> Result<int> { return fail(ErrorCode::kUnavailable, "down"); });
  auto cache = call_stage<int>("cache", [](Context&) -> Result<int> { return fail(ErrorCode::kUnavailable, "miss"); });
  auto root = fallback_stage<int>("lookup", {db, cache});
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper(clock);
  sdk::SeededRandom rng(1);
  Context ctx{.clock = &clock, .sleeper = &sleeper, .random = &rng};
  Result<int> r = root->run(ctx);
  // r.error().to_string() == "unavailable: miss (via lookup > cache)"
  // doc:end
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().to_string(), "unavailable: miss (via lookup > cache)");
}

// ---- the docs show exactly this code ----

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

std::string dedent(const std::vector<std::string>& lines) {
  size_t indent = std::string::npos;
  for (const auto& l : lines)
    if (l.find_first_not_of(' ') != std::string::npos) indent = std::min(indent, l.find_first_not_of(' '));
  std::string out;
  for (const auto& l : lines) out += (l.size() >= indent ? l.substr(indent) : std::string()) + "\n";
  return out;
}

TEST(DocExamples, DocsShowTheCompiledExamples) {
  const std::string doc = read(KEEL_SOURCE_DIR "/docs/sdk.md");
  const std::string src = read(KEEL_SOURCE_DIR "/tests/unit/resilience/doc_examples_test.cpp");
  ASSERT_FALSE(doc.empty());
  std::map<std::string, std::string> in_doc, in_test;
  auto dl = lines_of(doc);
  for (size_t i = 0; i + 1 < dl.size(); ++i) {
    const std::string tag = "<!-- example: ";
    if (dl[i].rfind(tag, 0) != 0) continue;
    std::string name = dl[i].substr(tag.size(), dl[i].find(" -->") - tag.size());
    ASSERT_EQ(dl[i + 1], "```cpp") << "example " << name;
    std::vector<std::string> body;
    size_t j = i + 2;
    for (; j < dl.size() && dl[j] != "```"; ++j) body.push_back(dl[j]);
    in_doc[name] = dedent(body);
  }
  auto sl = lines_of(src);
  for (size_t i = 0; i < sl.size(); ++i) {
    // A marker is a line of its own: "// doc:begin NAME", indented.
    auto p = sl[i].find_first_not_of(' ');
    if (p == std::string::npos || sl[i].compare(p, 13, "// doc:begin ") != 0) continue;
    std::string name = sl[i].substr(p + 13);
    std::vector<std::string> body;
    size_t j = i + 1;
    for (; j < sl.size() && sl[j].find("// doc:end") == std::string::npos; ++j) body.push_back(sl[j]);
    in_test[name] = dedent(body);
  }
  EXPECT_GE(in_test.size(), 11u);
  for (const auto& [name, code] : in_test) {
    ASSERT_TRUE(in_doc.count(name)) << "docs/sdk.md lacks example '" << name << "'";
    EXPECT_EQ(in_doc[name], code) << "docs/sdk.md example '" << name << "' differs from the compiled one";
  }
  for (const auto& [name, code] : in_doc) EXPECT_TRUE(in_test.count(name)) << "example '" << name << "' is not compiled";
}

}  // namespace
