// The resilience toolkit around the keel client against a real keel node: the breaker opens
// when the node is killed and closes after it returns; retries against a dead node stay within
// the retry budget. Breaker and retry time is a ManualClock (the cores never read real time);
// only waiting for the restarted node to accept connections uses real time. A hedged GET
// through a proxy that stalls its first connection is answered by the hedge.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <thread>

#include "keel/client/async.h"
#include "keel/client/client.h"
#include "keel/client/hedged.h"
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

// A TCP proxy in front of the node. Its first connection forwards the client's bytes to the node
// but holds the node's replies back until release(); later connections pass straight through.
// So the first copy of a hedged call stalls — deterministically, however slow the machine —
// while a hedge sent through the same proxy is answered by the node.
class StallFirstProxy {
 public:
  using tcp = boost::asio::ip::tcp;
  StallFirstProxy(boost::asio::io_context& io, uint16_t node_port)
      : io_(io), acceptor_(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)), node_port_(node_port),
        hold_(io, std::chrono::steady_clock::time_point::max()) {}
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int connections() const { return accepted_; }
  void start() { boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached); }
  void release() { hold_.cancel(); }
  void close() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto& s : sockets_) s->close(ec);
  }

 private:
  boost::asio::awaitable<void> accept_loop() {
    using boost::asio::as_tuple;
    using boost::asio::use_awaitable;
    while (true) {
      auto [ec, sock] = co_await acceptor_.async_accept(as_tuple(use_awaitable));
      if (ec) co_return;
      auto client = std::make_shared<tcp::socket>(std::move(sock));
      auto node = std::make_shared<tcp::socket>(io_);
      auto [cec] = co_await node->async_connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), node_port_),
                                                 as_tuple(use_awaitable));
      if (cec) co_return;
      sockets_.push_back(client);
      sockets_.push_back(node);
      const bool stall = accepted_++ == 0;
      boost::asio::co_spawn(io_, pump(client, node, false), boost::asio::detached);
      boost::asio::co_spawn(io_, pump(node, client, stall), boost::asio::detached);
    }
  }
  boost::asio::awaitable<void> pump(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to, bool stall) {
    using boost::asio::as_tuple;
    using boost::asio::use_awaitable;
    if (stall) co_await hold_.async_wait(as_tuple(use_awaitable));  // until release()
    std::array<char, 4096> buf;
    while (true) {
      auto [rec, n] = co_await from->async_read_some(boost::asio::buffer(buf), as_tuple(use_awaitable));
      if (rec) break;
      auto [wec, w] = co_await boost::asio::async_write(*to, boost::asio::buffer(buf.data(), n), as_tuple(use_awaitable));
      if (wec) break;
    }
    boost::system::error_code ec;
    to->shutdown(tcp::socket::shutdown_send, ec);
  }

  boost::asio::io_context& io_;
  tcp::acceptor acceptor_;
  uint16_t node_port_;
  boost::asio::steady_timer hold_;
  int accepted_ = 0;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
};

TEST(ResilienceAgainstNode, AHedgedGetIsAnsweredByTheHedgeWhenTheFirstCopyStalls) {
  namespace client = keel::client;
  namespace asio = boost::asio;
  auto node = start_node();
  {
    auto c = keel::Client::connect("127.0.0.1", static_cast<uint16_t>(node->resp_port()));
    ASSERT_TRUE(c) << c.error().to_string();
    ASSERT_TRUE(c->set("hedge:key", "the value"));
  }
  asio::io_context io;
  StallFirstProxy proxy(io, static_cast<uint16_t>(node->resp_port()));
  proxy.start();
  // Real time here (the client's sockets are real); nothing below asserts a duration.
  auto policy = std::move(*HedgePolicy::create({.name = "get", .max_hedges = 1, .delay = 20ms}));
  auto ended = std::make_shared<int>(0);
  struct Won {
    uint32_t copy;
    std::string value;
  };
  auto get = [port = proxy.port(), ended](client::HedgeCopy copy) -> asio::awaitable<client::Result<Won>> {
    struct Count {  // counts every end of a copy, also by an exception
      std::shared_ptr<int> n;
      ~Count() { ++*n; }
    } count{ended};
    auto ex = co_await asio::this_coro::executor;
    client::ConnectionOptions opts;
    opts.connect_timeout = 60s;  // far beyond the hedge delay: the stalled copy never fails first
    opts.command_timeout = 60s;
    client::Endpoint ep{"127.0.0.1", port};
    auto conn = co_await client::Connection::connect(ex, ep, opts);
    if (!conn) co_return std::unexpected(conn.error());
    std::vector<std::string> cmd{"GET", "hedge:key"};
    auto reply = co_await (*conn)->command(std::move(cmd));
    if (!reply) co_return std::unexpected(reply.error());
    co_return Won{copy.index(), reply->str};
  };
  std::optional<client::Result<Won>> out;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    out = co_await client::hedged(*policy, get);
    proxy.release();  // the stalled first copy may finish now; its answer is dropped
    asio::steady_timer poll(io);
    while (*ended < 2) {  // wait for the loser to end (an event, not a duration)
      poll.expires_after(1ms);
      co_await poll.async_wait(asio::use_awaitable);
    }
    proxy.close();
  }, asio::detached);
  io.run();
  ASSERT_TRUE(out);
  ASSERT_TRUE(*out) << (*out).error().to_string();
  EXPECT_EQ((*out)->copy, 1u);  // the hedge won
  EXPECT_EQ((*out)->value, "the value");
  EXPECT_EQ(proxy.connections(), 2);  // the original and one hedge, no more
  EXPECT_EQ(*ended, 2);
}

}  // namespace
