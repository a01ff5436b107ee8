// guarded_get: a keel read wrapped in a retry policy (with a retry budget) and a circuit
// breaker, as backend code would call any remote dependency.
//   resilience_guarded_get [host] [port]      (default 127.0.0.1 6380)
#include <keel/client/client.h>
#include <keel/resilience/circuit_breaker.h>
#include <keel/resilience/retry.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace keel::resilience;
using namespace std::chrono_literals;

// Transport failures are worth retrying; anything else is final.
Result<std::optional<std::string>> get(keel::Client& c, const std::string& key) {
  auto r = c.get(key);
  if (r) return *r;
  using keel::client::Errc;
  bool transient = r.error().code == Errc::kIoError || r.error().code == Errc::kClosed ||
                   r.error().code == Errc::kUnavailable || r.error().code == Errc::kTimeout;
  return fail(transient ? ErrorCode::kUnavailable : ErrorCode::kFailed, r.error().to_string());
}

int main(int argc, char** argv) {
  std::string host = argc > 1 ? argv[1] : "127.0.0.1";
  auto port = static_cast<uint16_t>(argc > 2 ? std::atoi(argv[2]) : 6380);
  auto client = keel::Client::connect(host, port);
  if (!client) {
    std::fprintf(stderr, "connect: %s\n", client.error().to_string().c_str());
    return 1;
  }
  if (!client->set("guarded", "yes")) return 1;

  RetryBudget budget({.ratio = 0.2, .initial_tokens = 5, .max_tokens = 50});
  RetryOptions ro;
  ro.name = "keel-get";
  ro.backoff = Backoff::kExponential;
  ro.base = 10ms;
  ro.max_attempts = 3;
  ro.budget = &budget;
  auto retry = RetryPolicy::create(ro);
  BreakerOptions bo;
  bo.name = "keel";
  bo.window_size = 20;
  bo.minimum_calls = 10;
  auto breaker = CircuitBreaker::create(bo);
  if (!retry || !breaker) return 1;

  auto& clock = keel::sdk::SteadyClock::instance();
  auto& sleeper = keel::sdk::ThreadSleeper::instance();
  keel::sdk::SeededRandom rng(1);
  auto r = retry_call(*retry, clock, sleeper, rng, [&] {
    return breaker_call(**breaker, clock, [&] { return get(*client, "guarded"); });
  });
  if (!r) {
    std::fprintf(stderr, "get: %s\n", r.error().message.c_str());
    return 1;
  }
  std::printf("guarded=%s breaker=%s\n", r->value_or("(none)").c_str(),
              std::string(keel::sdk::breaker_state_name((*breaker)->state())).c_str());
  return 0;
}
