// Pool behaviour against a fake server: max size, waiting with a deadline, hand-over on release,
// idle eviction, health checks, discard, close.
#include <gtest/gtest.h>

#include "async_fixture.h"
#include "fake_resp_server.h"

using namespace keel::client;
using keel::testing::AsyncFixture;
using keel::testing::FakeRespServer;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

std::atomic<bool> g_ping_fails{false};

std::string server(const std::vector<std::string>& a) {
  if (a[0] == "HELLO") return "%1\r\n+proto\r\n:3\r\n";
  if (a[0] == "PING") return g_ping_fails ? FakeRespServer::error("LOADING not ready") : FakeRespServer::simple("PONG");
  return FakeRespServer::simple("OK");
}

struct PoolTest : ::testing::Test {
  FakeRespServer fake{server};
  AsyncFixture f;
  std::shared_ptr<Pool> make(PoolOptions o) {
    g_ping_fails = false;
    return Pool::create(f.ex(), Endpoint{"127.0.0.1", fake.port()}, o);
  }
  PoolStats stats(const std::shared_ptr<Pool>& p) {
    return f.run([](std::shared_ptr<Pool> p) -> asio::awaitable<PoolStats> { co_return p->stats(); }(p));
  }
  template <class F>
  auto on_io(F fn) {
    return f.run([](F fn) -> asio::awaitable<decltype(fn())> { co_return fn(); }(std::move(fn)));
  }
};

}  // namespace

TEST_F(PoolTest, NeverOpensMoreThanMaxSizeAndWaitersTimeOutAtTheirDeadline) {
  PoolOptions o;
  o.max_size = 3;
  o.acquire_timeout = 50ms;
  auto pool = make(o);
  auto body = [](std::shared_ptr<Pool> pool) -> asio::awaitable<std::vector<Error>> {
    std::vector<PooledConnection> held;
    std::vector<Error> errors;
    for (int i = 0; i < 3; ++i) {
      auto c = co_await pool->acquire();
      if (c) held.push_back(std::move(*c));
      else errors.push_back(c.error());
    }
    auto extra = co_await pool->acquire();
    if (!extra) errors.push_back(extra.error());
    co_return errors;
  };
  auto errors = f.run(body(pool));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code, Errc::kTimeout);
  EXPECT_NE(errors[0].message.find("max_size 3"), std::string::npos);
  auto st = stats(pool);
  EXPECT_EQ(st.created, 3u);
  EXPECT_EQ(st.acquire_timeouts, 1u);
  EXPECT_EQ(st.idle, 3u);  // the three leases came back when the coroutine ended
  EXPECT_EQ(st.in_use, 0u);
  EXPECT_EQ(st.waiters, 0u);
}

TEST_F(PoolTest, ReleaseHandsTheConnectionToTheOldestWaiter) {
  PoolOptions o;
  o.max_size = 1;
  o.acquire_timeout = 10s;
  auto pool = make(o);
  auto body = [](std::shared_ptr<Pool> pool) -> asio::awaitable<bool> {
    auto ex = co_await asio::this_coro::executor;
    auto first = co_await pool->acquire();
    if (!first) co_return false;
    Connection* conn = &**first;
    bool got_same = false;
    auto waiter = [](std::shared_ptr<Pool> pool, Connection* expect, bool* same) -> asio::awaitable<void> {
      auto c = co_await pool->acquire();
      *same = c && &**c == expect;
    };
    asio::co_spawn(ex, waiter(pool, conn, &got_same), asio::detached);
    asio::steady_timer t(ex);
    while (pool->stats().waiters == 0) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    first->release();  // RAII handle returns it now; the waiter receives it
    while (!got_same && pool->stats().in_use != 0) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return got_same;
  };
  EXPECT_TRUE(f.run(body(pool)));
  auto st = stats(pool);
  EXPECT_EQ(st.created, 1u);
  EXPECT_EQ(st.idle, 1u);
}

TEST_F(PoolTest, EvictsConnectionsIdleLongerThanTheIdleTimeout) {
  PoolOptions o;
  o.max_size = 4;
  o.idle_timeout = 30s;
  o.maintenance_interval = 0ms;
  auto pool = make(o);
  auto body = [](std::shared_ptr<Pool> pool) -> asio::awaitable<void> {
    std::vector<PooledConnection> held;
    for (int i = 0; i < 4; ++i) {
      auto c = co_await pool->acquire();
      if (c) held.push_back(std::move(*c));
    }
  };
  f.run(body(pool));
  EXPECT_EQ(stats(pool).idle, 4u);
  auto now = Pool::Clock::now();
  EXPECT_EQ(on_io([&] { return pool->evict_idle(now); }), 0u);
  EXPECT_EQ(on_io([&] { return pool->evict_idle(now + 31s); }), 4u);
  auto st = stats(pool);
  EXPECT_EQ(st.idle, 0u);
  EXPECT_EQ(st.open, 0u);
  EXPECT_EQ(st.evicted_idle, 4u);
}

TEST_F(PoolTest, HealthCheckReplacesADeadIdleConnection) {
  PoolOptions o;
  o.max_size = 2;
  o.health_check_after = 0ms;  // always PING an idle connection before handing it out
  auto pool = make(o);
  auto use = [](std::shared_ptr<Pool> pool) -> asio::awaitable<bool> {
    auto c = co_await pool->acquire();
    if (!c) co_return false;
    std::vector<std::string> set = {"SET", "k", "v"};
    auto r = co_await (*c)->command(std::move(set));
    co_return r && r->str == "OK";
  };
  EXPECT_TRUE(f.run(use(pool)));
  g_ping_fails = true;  // the idle connection now fails its health check
  EXPECT_TRUE(f.run(use(pool)));
  auto st = stats(pool);
  EXPECT_EQ(st.health_check_failures, 1u);
  EXPECT_EQ(st.created, 2u);
  g_ping_fails = false;
  fake.drop_connections();  // the idle connection dies under the pool
  EXPECT_TRUE(f.run(use(pool)));
  st = stats(pool);
  EXPECT_EQ(st.created, 3u);
  EXPECT_EQ(st.open, 1u);
}

TEST_F(PoolTest, DiscardedLeaseIsClosedNotReused) {
  auto pool = make({});
  auto body = [](std::shared_ptr<Pool> pool) -> asio::awaitable<bool> {
    auto a = co_await pool->acquire();
    if (!a) co_return false;
    a->discard();
    a->release();
    auto b = co_await pool->acquire();
    co_return bool(b);
  };
  EXPECT_TRUE(f.run(body(pool)));
  auto st = stats(pool);
  EXPECT_EQ(st.created, 2u);
  EXPECT_EQ(st.open, 1u);
}

TEST_F(PoolTest, CloseFailsWaitersAndLaterAcquires) {
  PoolOptions o;
  o.max_size = 1;
  o.acquire_timeout = 10s;
  auto pool = make(o);
  auto body = [](std::shared_ptr<Pool> pool) -> asio::awaitable<std::pair<Errc, Errc>> {
    auto ex = co_await asio::this_coro::executor;
    auto held = co_await pool->acquire();
    Errc waiter_code = Errc::kIoError;
    bool done = false;
    auto waiter = [](std::shared_ptr<Pool> pool, Errc* code, bool* done) -> asio::awaitable<void> {
      auto c = co_await pool->acquire();
      if (!c) *code = c.error().code;
      *done = true;
    };
    asio::co_spawn(ex, waiter(pool, &waiter_code, &done), asio::detached);
    asio::steady_timer t(ex);
    while (pool->stats().waiters == 0) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    pool->close();
    while (!done) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    auto later = co_await pool->acquire();
    co_return std::pair{waiter_code, later ? Errc::kIoError : later.error().code};
  };
  auto [w, l] = f.run(body(pool));
  EXPECT_EQ(w, Errc::kClosed);
  EXPECT_EQ(l, Errc::kClosed);
}
