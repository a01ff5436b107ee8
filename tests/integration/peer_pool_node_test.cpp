// PeerPool against two real keel nodes under load: one is killed with SIGKILL, calls keep
// succeeding through the other, the dead one is marked down and no longer chosen; restarted
// on its port, a probe brings it back and it is chosen again. Waits are for progress (a number
// of calls, a status) with generous bounds; nothing asserts how long anything took.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "async_fixture.h"
#include "keel/client/peer_pool.h"
#include "keel_process.h"

namespace {

using namespace keel::client;
using keel::sdk::PeerStatus;
using keel::testing::AsyncFixture;
using keel::testing::KeelProcess;
using namespace std::chrono_literals;
namespace asio = boost::asio;

std::unique_ptr<KeelProcess> start_node(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--engine", "memory"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = std::make_unique<KeelProcess>(args);
  EXPECT_TRUE(p->start()) << p->output();
  return p;
}

struct Load {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, failed{0};
  std::atomic<int> running{0};
  std::mutex mu;
  std::string first_error;
};

// One worker: SET then GET its own key until told to stop. Both are idempotent, so a call cut
// off by the kill is re-sent to the other node.
asio::awaitable<void> worker(std::shared_ptr<PeerPool> pool, std::shared_ptr<Load> load, int id) {
  const std::string key = "pp:" + std::to_string(id);
  for (uint64_t i = 0; !load->stop; ++i) {
    std::vector<std::string> cmd = (i % 2 == 0) ? std::vector<std::string>{"SET", key, std::to_string(i)}
                                                : std::vector<std::string>{"GET", key};
    CallOptions call;
    call.idempotent = true;
    auto r = co_await pool->command(std::move(cmd), std::move(call));
    if (r && !r->is_error()) {
      ++load->ok;
    } else {
      ++load->failed;
      std::lock_guard lock(load->mu);
      if (load->first_error.empty()) load->first_error = r ? r->str : r.error().to_string();
    }
  }
  --load->running;
}

uint64_t calls_of(const std::shared_ptr<PeerPool>& pool, const std::string& id) {
  for (const auto& p : pool->peers())
    if (p.view.id == id) return p.calls;
  ADD_FAILURE() << "no peer " << id;
  return 0;
}

// Waits until `pred` holds; false after ~60 s (only reached when something is broken).
template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 6000 && !pred(); ++i) std::this_thread::sleep_for(10ms);
  return pred();
}

TEST(PeerPoolAgainstNodes, ADeadNodeIsSkippedUnderLoadAndChosenAgainAfterItReturns) {
  auto a = start_node();
  auto b = start_node();
  const int a_port = a->resp_port();
  AsyncFixture f;
  PeerPoolOptions o;
  o.pool.max_size = 4;
  o.peers.down_after = 3;
  o.peers.down_cooldown = 1h;  // only a probe (or a real success) brings a node back
  o.probe_interval = 20ms;
  auto created = PeerPool::create(
      f.ex(),
      {{"a", "127.0.0.1", static_cast<uint16_t>(a_port), {"read", "write"}},
       {"b", "127.0.0.1", static_cast<uint16_t>(b->resp_port()), {"read", "write"}}},
      o);
  ASSERT_TRUE(created) << created.error().to_string();
  auto pool = *created;

  auto load = std::make_shared<Load>();
  constexpr int kWorkers = 16;
  load->running = kWorkers;
  for (int i = 0; i < kWorkers; ++i) asio::co_spawn(f.ex(), worker(pool, load, i), asio::detached);
  ASSERT_TRUE(eventually([&] { return load->ok >= 2000; }));
  EXPECT_GT(calls_of(pool, "a"), 0u) << "load is spread over both nodes";
  EXPECT_GT(calls_of(pool, "b"), 0u);

  a->kill9();
  ASSERT_TRUE(eventually([&] { return pool->status("a") == PeerStatus::kDown; }));
  const uint64_t ok_at_down = load->ok;
  ASSERT_TRUE(eventually([&] { return load->ok >= ok_at_down + 3000; }));
  // a stays down (its probes are refused) and gets no calls.
  const uint64_t a_calls = calls_of(pool, "a");
  const uint64_t ok_mark = load->ok;
  ASSERT_TRUE(eventually([&] { return load->ok >= ok_mark + 3000; }));
  EXPECT_EQ(calls_of(pool, "a"), a_calls) << "a dead node is not chosen";
  EXPECT_EQ(pool->status("a"), PeerStatus::kDown);
  auto ranked = pool->select(2);
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_EQ(ranked[0].id, "b");
  {
    std::lock_guard lock(load->mu);
    EXPECT_EQ(load->failed.load(), 0u) << "first failure: " << load->first_error;
  }

  auto again = start_node({"--set", "server.resp_port=" + std::to_string(a_port)});
  ASSERT_EQ(again->resp_port(), a_port);
  ASSERT_TRUE(eventually([&] { return pool->status("a") == PeerStatus::kUp; }));
  ASSERT_TRUE(eventually([&] { return calls_of(pool, "a") > a_calls + 100; }))
      << "a recovered node is chosen again";
  EXPECT_EQ(pool->select(2).size(), 2u);

  load->stop = true;
  ASSERT_TRUE(eventually([&] { return load->running == 0; }));
  EXPECT_EQ(load->failed.load(), 0u);
  EXPECT_GT(load->ok.load(), 8000u);
  pool->close();
  // The last reference goes on the pool's own thread.
  f.run([](std::shared_ptr<PeerPool> p) -> asio::awaitable<void> {
    p.reset();
    co_return;
  }(std::move(pool)));
}

TEST(PeerPoolAgainstNodes, PeersComeFromTheNodesClusterShards) {
  auto node = start_node();
  AsyncFixture f;
  auto created = PeerPool::create(f.ex(), {{"seed", "127.0.0.1", static_cast<uint16_t>(node->resp_port()), {}}});
  ASSERT_TRUE(created) << created.error().to_string();
  auto pool = *created;
  auto n = f.run([](std::shared_ptr<PeerPool> p) -> asio::awaitable<Result<size_t>> {
    co_return co_await p->refresh_topology();
  }(pool));
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 1u);
  auto peers = pool->peers();
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_NE(peers[0].view.id, "seed");  // the node's own id now
  EXPECT_EQ(peers[0].view.port, node->resp_port());
  EXPECT_EQ(peers[0].view.capabilities, (std::vector<std::string>{"primary", "read", "write"}));
  auto r = f.run([](std::shared_ptr<PeerPool> p) -> asio::awaitable<Result<Reply>> {
    CallOptions call;
    call.required = {"write"};
    std::vector<std::string> cmd{"SET", "topo:k", "v"};
    co_return co_await p->command(std::move(cmd), std::move(call));
  }(pool));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->str, "OK");
  pool->close();
  f.run([](std::shared_ptr<PeerPool> p) -> asio::awaitable<void> {
    p.reset();
    co_return;
  }(std::move(pool)));
}

}  // namespace
