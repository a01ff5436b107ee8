#include "keel/resilience/pipeline.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace keel::resilience {
namespace {

using namespace std::chrono_literals;
using sdk::Duration;
using sdk::Instant;

// Everything one pipeline instance needs, built fresh so two pipelines share no state.
struct World {
  sdk::ManualClock clock;
  sdk::ManualSleeper sleeper{clock};
  sdk::SeededRandom rng{99};
  std::vector<uint8_t> script;  // per primary call: bit0 fail, bit1 slow (takes 300ms)
  size_t next = 0;
  int primary_calls = 0, cache_calls = 0;
  std::shared_ptr<RateLimiter> limiter;
  std::shared_ptr<CircuitBreaker> breaker;
  std::shared_ptr<const RetryPolicy> retry;

  explicit World(std::vector<uint8_t> s) : script(std::move(s)) {
    limiter = std::shared_ptr<RateLimiter>(std::move(*RateLimiter::create({"edge", {.count = 20, .period = 1s, .burst = 5}, nullptr})));
    BreakerOptions bo;
    bo.name = "db";
    bo.window_size = 6;
    bo.minimum_calls = 3;
    bo.wait_in_open = 2s;
    bo.permitted_calls_in_half_open = 1;
    breaker = std::shared_ptr<CircuitBreaker>(std::move(*CircuitBreaker::create(bo)));
    RetryOptions ro;
    ro.name = "default";
    ro.backoff = Backoff::kDecorrelatedJitter;
    ro.base = 10ms;
    ro.max_delay = 200ms;
    ro.max_attempts = 3;
    retry = std::make_shared<const RetryPolicy>(std::move(*RetryPolicy::create(ro)));
  }
  Result<std::string> primary(Context&) {
    ++primary_calls;
    uint8_t s = script.empty() ? 0 : script[next++ % script.size()];
    clock.advance((s & 2) ? 300ms : 5ms);
    if (s & 1) return fail(ErrorCode::kUnavailable, "db down");
    return std::string("fresh");
  }
  Result<std::string> cache(Context&) {
    ++cache_calls;
    if (primary_calls % 3 == 0) return fail(ErrorCode::kUnavailable, "cache miss");
    return std::string("cached");
  }
  Context context() {
    Context c;
    c.clock = &clock;
    c.sleeper = &sleeper;
    c.random = &rng;
    return c;
  }
  std::shared_ptr<Registry<std::string>> registry() {
    auto r = std::make_shared<Registry<std::string>>();
    r->add_call("db.get", [this](Context& c) { return primary(c); });
    r->add_call("cache.get", [this](Context& c) { return cache(c); });
    r->add_limiter("edge", limiter);
    r->add_breaker("db", breaker);
    r->add_retry("default", retry);
    return r;
  }
  StagePtr<std::string> in_code() {
    auto primary_stage = call_stage<std::string>("primary", [this](Context& c) { return primary(c); });
    auto cache_stage = call_stage<std::string>("cache", [this](Context& c) { return cache(c); });
    auto lookup = fallback_stage<std::string>("lookup", {primary_stage, cache_stage});
    auto timed = timeout_stage<std::string>("t", *Timeout::create("t", 250ms), lookup);
    auto again = retry_stage<std::string>("again", retry, timed);
    auto guard = breaker_stage<std::string>("guard", breaker, again);
    return limiter_stage<std::string>("edge", limiter, guard);
  }
};

constexpr std::string_view kDescription = R"({
  "root": "edge",
  "stages": [
    {"id": "edge", "type": "limiter", "limiter": "edge", "child": "guard"},
    {"id": "guard", "type": "breaker", "breaker": "db", "child": "again"},
    {"id": "again", "type": "retry", "policy": "default", "child": "t"},
    {"id": "t", "type": "timeout", "timeout_ms": 250, "child": "lookup"},
    {"id": "lookup", "type": "fallback", "children": ["primary", "cache"]},
    {"id": "primary", "type": "call", "call": "db.get"},
    {"id": "cache", "type": "call", "call": "cache.get"}
  ]
})";

std::string outcome(const Result<std::string>& r) {
  return r ? "ok:" + *r : r.error().to_string();
}

TEST(Pipeline, ErrorsRecordThePathOfStages) {
  World w({1});  // primary always fails
  auto reg = w.registry();
  reg->add_call("cache.get", [](Context&) -> Result<std::string> { return fail(ErrorCode::kUnavailable, "cache down"); });
  auto p = reg->build(kDescription);
  ASSERT_TRUE(p) << p.error().message;
  Context c = w.context();
  auto r = p->run(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().path, (std::vector<std::string>{"edge", "guard", "again", "t", "lookup", "cache"}));
  EXPECT_EQ(r.error().to_string(), "unavailable: cache down (via edge > guard > again > t > lookup > cache)");
  EXPECT_EQ(w.primary_calls, 3);  // three attempts
}

RC_GTEST_PROP(PipelineProperty, DescriptionBehavesLikeTheSamePipelineInCode, ()) {
  const auto script = *rc::gen::container<std::vector<uint8_t>>(rc::gen::inRange<uint8_t>(0, 4));
  const auto gaps = *rc::gen::container<std::vector<uint16_t>>(rc::gen::inRange<uint16_t>(0, 1500));
  World a(script), b(script);
  auto code = a.in_code();
  auto desc = b.registry()->build(kDescription);
  RC_ASSERT(desc.has_value());
  for (uint16_t gap : gaps) {
    a.clock.advance(std::chrono::milliseconds(gap));
    b.clock.advance(std::chrono::milliseconds(gap));
    Context ca = a.context(), cb = b.context();
    auto ra = code->run(ca);
    auto rb = desc->run(cb);
    RC_ASSERT(outcome(ra) == outcome(rb));
    RC_ASSERT(a.clock.now() == b.clock.now());
    RC_ASSERT(a.primary_calls == b.primary_calls);
    RC_ASSERT(a.cache_calls == b.cache_calls);
    RC_ASSERT(a.breaker->state() == b.breaker->state());
  }
}

TEST(Pipeline, SwitchFilterSequenceAndRace) {
  World w({0});
  auto reg = w.registry();
  reg->add_selector("tier", [](const Context& c) { return c.key; });
  reg->add_predicate("has_tenant", [](const Context& c) { return c.attributes.count("tenant") > 0; });
  reg->add_call("bad", [](Context&) -> Result<std::string> { return fail(ErrorCode::kUnavailable, "bad"); });
  auto p = reg->build(R"({"root": "gate", "stages": [
    {"id": "gate", "type": "filter", "predicate": "has_tenant", "child": "route"},
    {"id": "route", "type": "switch", "selector": "tier", "routes": {"gold": "both", "free": "cache"}, "default": "seq"},
    {"id": "both", "type": "race", "children": ["broken", "primary"]},
    {"id": "seq", "type": "sequence", "children": ["cache", "primary"]},
    {"id": "broken", "type": "call", "call": "bad"},
    {"id": "primary", "type": "call", "call": "db.get"},
    {"id": "cache", "type": "call", "call": "cache.get"}]})");
  ASSERT_TRUE(p) << p.error().message;
  Context c = w.context();
  auto r = p->run(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kFiltered);
  EXPECT_EQ(r.error().path, std::vector<std::string>{"gate"});
  c.attributes["tenant"] = "t1";
  c.key = "gold";
  EXPECT_EQ(outcome(p->run(c)), "ok:fresh");  // race: the failing branch loses
  c.key = "free";
  EXPECT_EQ(outcome(p->run(c)), "ok:cached");
  c.key = "other";
  int before = w.primary_calls;
  EXPECT_EQ(outcome(p->run(c)), "ok:fresh");  // sequence: cache then primary, result of the last
  EXPECT_EQ(w.primary_calls, before + 1);
}

TEST(Pipeline, RaceReturnsFirstErrorWhenAllBranchesFail) {
  World w({1});
  auto a = call_stage<int>("a", [](Context&) -> Result<int> { return fail(ErrorCode::kUnavailable, "a"); });
  auto b = call_stage<int>("b", [](Context&) -> Result<int> { return fail(ErrorCode::kTimeout, "b"); });
  auto race = race_stage<int>("race", {a, b});
  Context c = w.context();
  auto r = race->run(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "a");
  EXPECT_EQ(r.error().path, (std::vector<std::string>{"race", "a"}));
}

void expect_rejected(std::string_view json, std::vector<std::string> fragments) {
  World w({0});
  auto reg = w.registry();
  auto p = reg->build(json);
  ASSERT_FALSE(p) << "accepted: " << json;
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  for (const auto& f : fragments)
    EXPECT_NE(p.error().message.find(f), std::string::npos) << "missing '" << f << "' in:\n" << p.error().message;
}

TEST(PipelineDescription, SyntaxErrorsAreClear) {
  expect_rejected("{\"root\": ", {"not valid JSON", "parse error"});
  expect_rejected("[1,2]", {"must be a JSON object"});
  expect_rejected(R"({"root": "a"})", {"\"stages\" must be a non-empty array"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "teleport"}]})",
                  {"stages[0] ('a').type: unknown type \"teleport\"", "allowed: call, sequence"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "retry", "policy": "default"}]})",
                  {"stages[0] ('a').child: a retry stage needs \"child\""});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "call", "call": "db.get", "colour": 1}]})",
                  {"unknown field \"colour\" for a call stage; allowed: call, id, type"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "call", "call": "db.get"}, {"id": "a", "type": "call", "call": "db.get"}]})",
                  {"stages[1] ('a').id: 'a' is used by an earlier stage"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a b", "type": "call", "call": "x"}]})", {"stages[0].id: must be a string"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "timeout", "timeout_ms": 0, "child": "b"}]})",
                  {"timeout_ms", "[1, 86400000]"});
  expect_rejected(std::string(40, '[') + std::string(40, ']'), {"nests 40 levels deep; at most 16"});
  expect_rejected(std::string(kMaxDescriptionBytes + 1, ' '), {"bytes; at most"});
}

TEST(PipelineDescription, ReferenceErrorsAreClear) {
  expect_rejected(R"({"root": "nope", "stages": [{"id": "a", "type": "call", "call": "db.get"}]})",
                  {"root: no stage has id 'nope'"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "retry", "policy": "default", "child": "ghost"}]})",
                  {"stages[0] ('a').child: no stage has id 'ghost'"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "breaker", "breaker": "nope", "child": "b"},
                                              {"id": "b", "type": "call", "call": "db.get"}]})",
                  {"no breaker named 'nope' is registered; registered: db"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "retry", "policy": "default", "child": "b"},
                                              {"id": "b", "type": "fallback", "children": ["c", "a"]},
                                              {"id": "c", "type": "call", "call": "db.get"}]})",
                  {"cycle: a -> b -> a"});
  expect_rejected(R"({"root": "a", "stages": [{"id": "a", "type": "call", "call": "db.get"},
                                              {"id": "lost", "type": "call", "call": "db.get"}]})",
                  {"stages[1] ('lost'): not reachable from root 'a'"});
}

RC_GTEST_PROP(PipelineDescriptionProperty, ArbitraryTextIsAnErrorNeverACrash, (std::string text)) {
  World w({0});
  auto p = w.registry()->build(text);
  RC_ASSERT(!p.has_value());
  RC_ASSERT(!p.error().message.empty());
}

TEST(PipelineSlot, SwapsAtomicallyRejectsBadVersionsAndRollsBack) {
  World w({0});
  sdk::SignalBus bus;
  auto rec = std::make_shared<sdk::SignalRecorder>();
  bus.subscribe(rec);
  PipelineSlot<std::string> slot("orders", w.registry(), &bus);
  Context c = w.context();
  EXPECT_EQ(slot.run(c).error().code, ErrorCode::kNotFound);
  auto v1 = slot.apply(kDescription);
  ASSERT_TRUE(v1);
  EXPECT_EQ(*v1, 1u);
  EXPECT_EQ(outcome(slot.run(c)), "ok:fresh");
  auto v2 = slot.apply(R"({"root": "c", "stages": [{"id": "c", "type": "call", "call": "cache.get"}]})");
  ASSERT_TRUE(v2);
  EXPECT_EQ(outcome(slot.run(c)), "ok:cached");
  auto bad = slot.apply(R"({"root": "c", "stages": [{"id": "c", "type": "call", "call": "missing"}]})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(slot.version(), 2u);  // the live one is unchanged
  auto held = slot.current();     // a run in progress keeps its snapshot
  ASSERT_TRUE(slot.rollback());
  EXPECT_EQ(slot.version(), 1u);
  EXPECT_EQ(held->version(), 2u);
  EXPECT_EQ(outcome(slot.run(c)), "ok:fresh");
  ASSERT_TRUE(slot.rollback().has_value() == false);
  EXPECT_EQ(rec->count("config_applied"), 2u);
  EXPECT_EQ(rec->count("config_rejected"), 1u);
  EXPECT_EQ(rec->count("config_rolled_back"), 1u);
}

TEST(PipelineSlot, ConcurrentRunsDuringSwapsSeeACompleteVersion) {
  auto reg = std::make_shared<Registry<int>>();
  reg->add_call("one", [](Context&) -> Result<int> { return 1; });
  reg->add_call("two", [](Context&) -> Result<int> { return 2; });
  PipelineSlot<int> slot("n", reg);
  ASSERT_TRUE(slot.apply(R"({"root": "a", "stages": [{"id": "a", "type": "call", "call": "one"}]})"));
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    sdk::ManualClock clock;
    sdk::ManualSleeper sl(clock);
    sdk::SeededRandom rng(1);
    Context c;
    c.clock = &clock;
    c.sleeper = &sl;
    c.random = &rng;
    while (!stop) {
      auto r = slot.run(c);
      if (!r || (*r != 1 && *r != 2)) bad++;
    }
  });
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(slot.apply(i % 2 ? R"({"root": "a", "stages": [{"id": "a", "type": "call", "call": "one"}]})"
                                 : R"({"root": "b", "stages": [{"id": "b", "type": "call", "call": "two"}]})"));
    if (i % 3 == 0) {
      ASSERT_TRUE(slot.rollback());
    }
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace keel::resilience

namespace keel::resilience {
namespace {

constexpr std::string_view kYamlDescription = R"(
root: edge
stages:
  - {id: edge, type: limiter, limiter: edge, child: guard}
  - id: guard
    type: breaker
    breaker: db
    child: again
  - {id: again, type: retry, policy: default, child: t}
  - {id: t, type: timeout, timeout_ms: 250, child: lookup}
  - {id: lookup, type: fallback, children: [primary, cache]}
  - {id: primary, type: call, call: db.get}
  - {id: cache, type: call, call: cache.get}
)";

TEST(PipelineYaml, YamlDescriptionBehavesLikeTheJsonOne) {
  if (!yaml_descriptions_supported()) GTEST_SKIP() << "built without yaml-cpp";
  World a({0, 1, 3, 1, 0, 2}), b({0, 1, 3, 1, 0, 2});
  auto pj = a.registry()->build(kDescription);
  auto py = b.registry()->build_yaml(kYamlDescription);
  ASSERT_TRUE(pj);
  ASSERT_TRUE(py) << py.error().message;
  for (int i = 0; i < 50; ++i) {
    a.clock.advance(std::chrono::milliseconds(i * 37 % 900));
    b.clock.advance(std::chrono::milliseconds(i * 37 % 900));
    Context ca = a.context(), cb = b.context();
    EXPECT_EQ(outcome(pj->run(ca)), outcome(py->run(cb)));
  }
}

TEST(PipelineYaml, BadYamlIsAClearErrorAndAliasBombsAreBounded) {
  if (!yaml_descriptions_supported()) GTEST_SKIP() << "built without yaml-cpp";
  World w({0});
  auto reg = w.registry();
  auto bad = reg->build_yaml("root: [unclosed");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("not valid YAML"), std::string::npos) << bad.error().message;
  auto wrong = reg->build_yaml("root: a\nstages:\n  - {id: a, type: timeout, timeout_ms: \"250\", child: a}\n");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("timeout_ms"), std::string::npos);  // quoted: a string, not a number
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c)
    bomb += std::string(1, c) + ": &" + c + " [*" + char(c - 1) + ", *" + char(c - 1) + ", *" + char(c - 1) + ", *" +
            char(c - 1) + ", *" + char(c - 1) + ", *" + char(c - 1) + "]\n";
  auto boom = reg->build_yaml(bomb);
  ASSERT_FALSE(boom);
  EXPECT_NE(boom.error().message.find("more than"), std::string::npos) << boom.error().message;
}

TEST(PipelineYaml, SlotAppliesYaml) {
  if (!yaml_descriptions_supported()) GTEST_SKIP() << "built without yaml-cpp";
  World w({0});
  PipelineSlot<std::string> slot("p", w.registry());
  ASSERT_TRUE(slot.apply_yaml(kYamlDescription));
  Context c = w.context();
  EXPECT_EQ(outcome(slot.run(c)), "ok:fresh");
}

}  // namespace
}  // namespace keel::resilience
