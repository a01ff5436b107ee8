// PeerPool against fake RESP servers: the PeerManager's ranking picks the peer, call outcomes
// and latencies feed it back, a dead peer is marked down and skipped, probes bring it back,
// failover follows the idempotency rule. Latencies are exact: each fake server advances the
// pool's ManualClock while it answers, so no test depends on real time.
#include "keel/client/peer_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <thread>

#include "async_fixture.h"
#include "fake_resp_server.h"

using namespace keel::client;
using keel::sdk::ManualClock;
using keel::sdk::PeerSpec;
using keel::sdk::PeerStatus;
using keel::testing::AsyncFixture;
using keel::testing::FakeRespServer;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// A node named `name` that answers GET with its name after advancing `clock` by `cost`.
FakeRespServer::Handler node(std::string name, ManualClock* clock, std::chrono::nanoseconds cost,
                             std::atomic<bool>* silent = nullptr) {
  return [=](const std::vector<std::string>& a) -> std::string {
    if (a[0] == "HELLO") return "%1\r\n+proto\r\n:3\r\n";
    if (a[0] == "PING") return FakeRespServer::simple("PONG");
    if (silent && *silent) return "";  // never answers
    clock->advance(cost);
    if (a[0] == "GET") return FakeRespServer::bulk(name);
    if (a[0] == "BAD") return FakeRespServer::error("ERR unknown command 'BAD'");
    return FakeRespServer::simple("OK");
  };
}

struct PeerPoolTest : ::testing::Test {
  ManualClock clock;
  AsyncFixture f;

  PeerPoolOptions options() {
    PeerPoolOptions o;
    o.clock = &clock;
    o.probe_interval = 0ms;
    o.pool.max_size = 4;
    o.pool.connection.command_timeout = 2000ms;
    o.peers.down_after = 3;
    o.peers.down_cooldown = std::chrono::hours(1);  // only a probe or a success brings it back
    return o;
  }
  std::shared_ptr<PeerPool> make(std::vector<PeerSpec> peers, PeerPoolOptions o) {
    auto p = PeerPool::create(f.ex(), std::move(peers), std::move(o));
    EXPECT_TRUE(p) << p.error().to_string();
    return p ? *p : nullptr;
  }
  Result<Reply> call(const std::shared_ptr<PeerPool>& p, std::vector<std::string> args, CallOptions c = {}) {
    return f.run([](std::shared_ptr<PeerPool> p, std::vector<std::string> args, CallOptions c)
                     -> asio::awaitable<Result<Reply>> { co_return co_await p->command(std::move(args), std::move(c)); }(
        p, std::move(args), std::move(c)));
  }
  // `n` calls issued together; returns the answers (peer names) and the number of failures.
  std::pair<std::map<std::string, int>, int> burst(const std::shared_ptr<PeerPool>& p, int n) {
    return f.run([](std::shared_ptr<PeerPool> p, int n) -> asio::awaitable<std::pair<std::map<std::string, int>, int>> {
      auto ex = co_await asio::this_coro::executor;
      auto out = std::make_shared<std::pair<std::map<std::string, int>, int>>();
      auto left = std::make_shared<int>(n);
      auto one = [](std::shared_ptr<PeerPool> p, std::shared_ptr<std::pair<std::map<std::string, int>, int>> out,
                    std::shared_ptr<int> left) -> asio::awaitable<void> {
        CallOptions c;
        c.idempotent = true;
        std::vector<std::string> get{"GET", "k"};
        auto r = co_await p->command(std::move(get), std::move(c));
        if (r && r->type == ReplyType::kBulkString) ++out->first[r->str];
        else ++out->second;
        --*left;
      };
      for (int i = 0; i < n; ++i) asio::co_spawn(ex, one(p, out, left), asio::detached);
      asio::steady_timer t(ex);
      while (*left > 0) {
        t.expires_after(1ms);
        co_await t.async_wait(asio::use_awaitable);
      }
      co_return *out;
    }(p, n));
  }
  static const PeerPoolPeer& find(const std::vector<PeerPoolPeer>& v, const std::string& id) {
    auto it = std::find_if(v.begin(), v.end(), [&](const PeerPoolPeer& p) { return p.view.id == id; });
    EXPECT_NE(it, v.end()) << id;
    return *it;
  }
};

}  // namespace

TEST_F(PeerPoolTest, CallsFollowTheRankingAndLatenciesFeedIt) {
  FakeRespServer a(node("a", &clock, 3ms)), b(node("b", &clock, 1ms));
  auto o = options();
  o.spread = 1;  // always the best peer
  auto pool = make({{"a", "127.0.0.1", a.port(), {"read"}}, {"b", "127.0.0.1", b.port(), {"read"}}}, o);
  std::map<std::string, int> served;
  for (int i = 0; i < 20; ++i) {
    auto r = call(pool, {"GET", "k"});
    ASSERT_TRUE(r) << r.error().to_string();
    ++served[r->str];
  }
  // Equal at first (no sample); once each has answered, b (1 ms) beats a (3 ms) every time.
  EXPECT_LE(served["a"], 1);
  EXPECT_GE(served["b"], 19);
  auto peers = pool->peers();
  EXPECT_EQ(find(peers, "b").view.latency_ewma, 1ms);
  EXPECT_EQ(find(peers, "b").calls, static_cast<uint64_t>(served["b"]));
  if (served["a"] == 1) {
    EXPECT_EQ(find(peers, "a").view.latency_ewma, 3ms);
  }
  EXPECT_EQ(pool->select(1).at(0).id, "b");
}

TEST_F(PeerPoolTest, ConcurrentCallsSpreadOverTheBestPeersByLoad) {
  FakeRespServer a(node("a", &clock, 0ms)), b(node("b", &clock, 0ms));
  auto pool = make({{"a", "127.0.0.1", a.port(), {}}, {"b", "127.0.0.1", b.port(), {}}}, options());
  auto [served, failed] = burst(pool, 40);
  EXPECT_EQ(failed, 0);
  // The second call issued while the first is in flight goes to the other peer.
  EXPECT_GT(served["a"], 0);
  EXPECT_GT(served["b"], 0);
  EXPECT_EQ(served["a"] + served["b"], 40);
}

TEST_F(PeerPoolTest, ADeadPeerIsMarkedDownSkippedAndProbedBackUp) {
  auto b = std::make_unique<FakeRespServer>(node("b", &clock, 0ms));
  auto a = std::make_unique<FakeRespServer>(node("a", &clock, 0ms));
  const uint16_t a_port = a->port();
  auto o = options();
  o.probe_interval = 5ms;
  o.probe_timeout = 500ms;
  auto pool = make({{"a", "127.0.0.1", a_port, {}}, {"b", "127.0.0.1", b->port(), {}}}, o);
  auto [before, failed_before] = burst(pool, 20);
  EXPECT_EQ(failed_before, 0);
  EXPECT_GT(before["a"], 0);

  a.reset();  // a dies: its connections close and its port refuses
  int failed = 0;
  for (int i = 0; i < 10; ++i) failed += burst(pool, 10).second;
  EXPECT_EQ(failed, 0) << "idempotent calls fail over to b";
  EXPECT_EQ(pool->status("a"), PeerStatus::kDown);
  const auto a_calls = find(pool->peers(), "a").calls;
  auto [during, failed_during] = burst(pool, 30);
  EXPECT_EQ(failed_during, 0);
  EXPECT_EQ(during["b"], 30);
  EXPECT_EQ(find(pool->peers(), "a").calls, a_calls) << "a down peer is not chosen";
  auto ranked = pool->select(2);
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_EQ(ranked[0].id, "b");
  EXPECT_GT(find(pool->peers(), "a").failures, 0u);

  a = std::make_unique<FakeRespServer>(node("a", &clock, 0ms), a_port);  // back on its port
  for (int i = 0; i < 2000 && pool->status("a") != PeerStatus::kUp; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(pool->status("a"), PeerStatus::kUp) << "a probe brings it back";
  EXPECT_GT(find(pool->peers(), "a").probes, 0u);
  auto [after, failed_after] = burst(pool, 20);
  EXPECT_EQ(failed_after, 0);
  EXPECT_GT(after["a"], 0) << "a recovered peer is chosen again";
}

TEST_F(PeerPoolTest, OnlyIdempotentCallsAreResentAfterTheyMayHaveBeenSent) {
  std::atomic<bool> a_silent{true};
  FakeRespServer a(node("a", &clock, 0ms, &a_silent)), b(node("b", &clock, 0ms));
  auto o = options();
  o.spread = 1;
  o.pool.connection.command_timeout = 50ms;
  // b is reported suspect and a's failures neither change its status nor its cost, so a ranks
  // first for both calls.
  o.peers.suspect_after = 100;
  o.peers.down_after = 100;
  o.peers.failure_penalty = 0;
  PeerSpec sb{"b", "127.0.0.1", b.port(), {}};
  sb.reported = PeerStatus::kSuspect;
  auto pool = make({{"a", "127.0.0.1", a.port(), {}}, sb}, o);

  auto r = call(pool, {"SET", "k", "v"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout);
  EXPECT_EQ(r.error().message.rfind("a: ", 0), 0u) << r.error().message;
  EXPECT_EQ(b.connections_accepted(), 0u) << "the SET was not re-sent to b";

  CallOptions idem;
  idem.idempotent = true;
  auto g = call(pool, {"GET", "k"}, idem);
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->str, "b");
  EXPECT_EQ(find(pool->peers(), "a").failures, 2u);
}

TEST_F(PeerPoolTest, ServerErrorsAreAnswersAndBadInputIsRefused) {
  FakeRespServer a(node("a", &clock, 0ms));
  auto pool = make({{"a", "127.0.0.1", a.port(), {"read"}}}, options());
  auto r = call(pool, {"BAD"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_error());
  EXPECT_EQ(pool->status("a"), PeerStatus::kUp);
  EXPECT_EQ(find(pool->peers(), "a").calls, 1u);

  CallOptions w;
  w.required = {"write"};
  auto nw = call(pool, {"SET", "k", "v"}, w);
  ASSERT_FALSE(nw);
  EXPECT_EQ(nw.error().code, Errc::kUnavailable);
  EXPECT_NE(nw.error().message.find("[write]"), std::string::npos) << nw.error().message;

  auto empty = call(pool, {});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Errc::kInvalidArgument);

  auto o = options();
  o.spread = 0;
  auto bad = PeerPool::create(f.ex(), {}, o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("spread"), std::string::npos);
  auto dup = PeerPool::create(f.ex(), {{"x", "h", 1, {}}, {"x", "h", 2, {}}}, options());
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::kInvalidArgument);
  EXPECT_NE(dup.error().message.find("x"), std::string::npos);
}

TEST_F(PeerPoolTest, APeerThatCannotServeNowIsAFailureAndTheCallMovesOn) {
  // "a" is loading its data: it refuses every command. "b" serves. Untried peers tie and the
  // tie goes by id, so "a" is tried first.
  auto loading = [&](const std::vector<std::string>& a) -> std::string {
    if (a[0] == "HELLO") return "%1\r\n+proto\r\n:3\r\n";
    return FakeRespServer::error("LOADING keel is loading the dataset in memory");
  };
  FakeRespServer a(loading), b(node("b", &clock, 5ms));
  auto pool = make({{"a", "127.0.0.1", a.port(), {}}, {"b", "127.0.0.1", b.port(), {}}}, options());
  // Not idempotent, yet it moves on: "a" did not run it.
  auto r = call(pool, {"SET", "k", "v"});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_FALSE(r->is_error()) << r->str;
  EXPECT_EQ(find(pool->peers(), "a").failures, 1u);
  EXPECT_EQ(find(pool->peers(), "b").calls, 1u);
  // Only the loading peer left: its refusal is the answer, and it goes down after down_after.
  auto only = make({{"a", "127.0.0.1", a.port(), {}}}, options());
  for (int i = 0; i < 3; ++i) {
    auto x = call(only, {"GET", "k"});
    ASSERT_TRUE(x);
    ASSERT_TRUE(x->is_error());
    EXPECT_TRUE(x->str.starts_with("LOADING")) << x->str;
  }
  EXPECT_EQ(only->status("a"), PeerStatus::kDown);
}

TEST_F(PeerPoolTest, ReplacingThePeerSetClosesDepartedPoolsAndKeepsStatistics) {
  FakeRespServer a(node("a", &clock, 2ms)), b(node("b", &clock, 2ms));
  auto pool = make({{"a", "127.0.0.1", a.port(), {}}, {"b", "127.0.0.1", b.port(), {}}}, options());
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(call(pool, {"GET", "k"}));
  const auto b_calls = find(pool->peers(), "b").calls;
  auto st = f.run([](std::shared_ptr<PeerPool> p) -> asio::awaitable<Status> {
    co_return p->set_peers({{"b", "127.0.0.1", p->peers().back().view.port, {}}});
  }(pool));
  ASSERT_TRUE(st) << st.error().to_string();
  auto peers = pool->peers();
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0].view.id, "b");
  EXPECT_EQ(peers[0].calls, b_calls);
  EXPECT_EQ(peers[0].view.latency_ewma, 2ms);
  auto r = call(pool, {"GET", "k"});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->str, "b");
  pool->close();
  auto closed = call(pool, {"GET", "k"});
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().code, Errc::kClosed);
}

TEST_F(PeerPoolTest, PeersComeFromTheClusterTopology) {
  std::mutex mu;
  std::string shards;  // the CLUSTER SHARDS reply both nodes give, set once their ports are known
  auto handler = [&](std::string name) {
    return [&, name, inner = node(name, &clock, 0ms)](const std::vector<std::string>& a) -> std::string {
      if (a[0] == "CLUSTER") {
        std::lock_guard lock(mu);
        return shards;
      }
      return inner(a);
    };
  };
  FakeRespServer a(handler("a")), b(handler("b"));
  auto node_map = [](std::string id, uint16_t port, std::string role, std::string health) {
    return "%6\r\n+id\r\n+" + id + "\r\n+port\r\n:" + std::to_string(port) +
           "\r\n+ip\r\n+127.0.0.1\r\n+endpoint\r\n+127.0.0.1\r\n+role\r\n+" + role +
           "\r\n+health\r\n+" + health + "\r\n";
  };
  {
    std::lock_guard lock(mu);
    shards = "*1\r\n%2\r\n+slots\r\n*2\r\n:0\r\n:16383\r\n+nodes\r\n*2\r\n" +
             node_map("node-a", a.port(), "master", "online") + node_map("node-b", b.port(), "replica", "failed");
  }
  // Seeded with one static peer; the topology replaces it with the cluster's node ids.
  auto pool = make({{"seed", "127.0.0.1", b.port(), {}}}, options());
  auto n = f.run([](std::shared_ptr<PeerPool> p) -> asio::awaitable<Result<size_t>> {
    co_return co_await p->refresh_topology();
  }(pool));
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 2u);
  auto peers = pool->peers();
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[0].view.id, "node-a");
  EXPECT_EQ(peers[0].view.status, PeerStatus::kUp);
  EXPECT_EQ(peers[1].view.id, "node-b");
  EXPECT_EQ(peers[1].view.status, PeerStatus::kDown);  // reported failed
  CallOptions w;
  w.required = {"write"};
  for (int i = 0; i < 5; ++i) {
    auto r = call(pool, {"GET", "k"}, w);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->str, "a");
  }
}
