// The resilience toolkit around the keel client against a real keel node: the breaker opens
// when the node is killed and closes after it returns; retries against a dead node stay within
// the retry budget. Breaker and retry time is a ManualClock (the cores never read real time);
// only waiting for the restarted node to accept connections uses real time.
#include <gtest/gtest.h>

#include <thread>

#include "keel/client/client.h"
#include "keel/resilience/circuit_breaker.h"
#include "keel/resilience/retry.h"
#include "keel_process.h"

namespace {

using namespace keel::resilience;
using namespace std::chrono_literals;
using keel::testing::KeelProcess;

std::unique_ptr<KeelProcess> start_node(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--engine", "memory"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = std::make_unique<KeelProcess>(args);
  EXPECT_TRUE(p->start()) << p->output();
  return p;
}

// The adapter between the client's errors and the toolkit's: transport failures are transient.
Result<std::optional<std::string>> get(keel::Client& c, std::string_view key, int& calls) {
  ++calls;
  auto r = c.get(key);
  if (r) return *r;
  using keel::client::Errc;
  switch (r.error().code) {
    case Errc::kIoError:
    case Errc::kClosed:
    case Errc::kUnavailable: return fail(ErrorCode::kUnavailable, r.error().to_string());
    case Errc::kTimeout: return fail(ErrorCode::kTimeout, r.error().to_string());
    default: return fail(ErrorCode::kFailed, r.error().to_string());
  }
}

TEST(ResilienceAgainstNode, BreakerOpensWhenTheNodeIsKilledAndClosesAfterItReturns) {
  auto node = start_node();
  const int port = node->resp_port();
  auto client = keel::Client::connect("127.0.0.1", static_cast<uint16_t>(port));
  ASSERT_TRUE(client) << client.error().to_string();
  ASSERT_TRUE(client->set("b:k", "v"));

  keel::sdk::SignalBus bus;
  auto rec = std::make_shared<keel::sdk::SignalRecorder>();
  bus.subscribe(rec);
  BreakerOptions o;
  o.name = "node";
  o.window_size = 4;
  o.minimum_calls = 4;
  o.failure_rate_threshold = 50;
  o.wait_in_open = 1s;
  o.permitted_calls_in_half_open = 1;
  o.signals = &bus;
  auto breaker = std::move(*CircuitBreaker::create(o));
  keel::sdk::ManualClock clock;
  int calls = 0;
  auto call = [&] { return breaker_call(*breaker, clock, [&] { return get(*client, "b:k", calls); }); };

  for (int i = 0; i < 8; ++i) ASSERT_TRUE(call());
  EXPECT_EQ(breaker->state(), keel::sdk::BreakerState::kClosed);

  node->kill9();
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(call());
  EXPECT_EQ(breaker->state(), keel::sdk::BreakerState::kOpen);
  // Open: calls are refused without touching the network.
  const int before = calls;
  for (int i = 0; i < 100; ++i) {
    auto r = call();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kCircuitOpen);
  }
  EXPECT_EQ(calls, before);

  auto again = start_node({"--set", "server.resp_port=" + std::to_string(port)});
  ASSERT_EQ(again->resp_port(), port);
  // Each round lets one half-open trial through; a trial can fail while the client drops its
  // dead connection, then the breaker opens again and the next round retries.
  bool closed = false;
  for (int round = 0; round < 50 && !closed; ++round) {
    clock.advance(1s);
    auto r = call();
    closed = r.has_value() && breaker->state() == keel::sdk::BreakerState::kClosed;
    if (!closed) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_GE(rec->count("breaker_transition"), 3u);  // CLOSED->OPEN, OPEN->HALF_OPEN, HALF_OPEN->CLOSED
  auto lines = rec->lines();
  EXPECT_NE(std::find_if(lines.begin(), lines.end(),
                         [](const std::string& l) { return l.find("HALF_OPEN->CLOSED") != std::string::npos; }),
            lines.end());
}

TEST(ResilienceAgainstNode, RetriesAgainstADeadNodeStayWithinTheBudget) {
  auto node = start_node();
  auto client = keel::Client::connect("127.0.0.1", static_cast<uint16_t>(node->resp_port()));
  ASSERT_TRUE(client) << client.error().to_string();
  node->kill9();

  RetryBudget budget({.ratio = 0.1, .initial_tokens = 2, .max_tokens = 10});
  RetryOptions o;
  o.name = "node";
  o.backoff = Backoff::kExponential;
  o.base = 10ms;
  o.jitter = 0.5;
  o.max_attempts = 5;  // without a budget: 5x the load on a dead node
  o.budget = &budget;
  auto policy = std::move(*RetryPolicy::create(o));
  keel::sdk::ManualClock clock;
  keel::sdk::ManualSleeper sleeper(clock);
  keel::sdk::SeededRandom rng(5);
  int calls = 0;
  const int requests = 100;
  for (int i = 0; i < requests; ++i) {
    auto r = retry_call(policy, clock, sleeper, rng, [&] { return get(*client, "r:k", calls); });
    EXPECT_FALSE(r);
  }
  const int retries = calls - requests;
  EXPECT_LE(retries, 2 + requests / 10);  // initial_tokens + ratio * requests
  EXPECT_GE(retries, requests / 10);      // and the budget is actually used
}

}  // namespace
