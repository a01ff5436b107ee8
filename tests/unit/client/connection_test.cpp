// Connection against a scripted fake server: HELLO negotiation, pipelining with in-order
// matching, pushes, timeouts, protocol errors and dropped connections.
#include <gtest/gtest.h>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "async_fixture.h"
#include "fake_resp_server.h"

using namespace keel::client;
using keel::testing::AsyncFixture;
using keel::testing::FakeRespServer;
namespace asio = boost::asio;

namespace {

std::string echo_server(const std::vector<std::string>& a) {
  if (a[0] == "HELLO") return "%2\r\n+server\r\n+fake\r\n+proto\r\n:3\r\n";
  if (a[0] == "PING") return FakeRespServer::simple("PONG");
  if (a[0] == "ECHO") return FakeRespServer::bulk(a[1]);
  if (a[0] == "NEVER") return "";
  if (a[0] == "GARBAGE") return "?garbage\r\n";
  if (a[0] == "PUSHME") return ">2\r\n+message\r\n$2\r\nhi\r\n+OK\r\n";
  if (a[0] == "MAP") return "%1\r\n+k\r\n,1.5\r\n";
  if (a[0] == "BIG") {  // an array of N bulk strings "e<i>", a few MB on the wire
    int n = std::stoi(a[1]);
    std::string out = "*" + std::to_string(n) + "\r\n";
    for (int i = 0; i < n; ++i) out += FakeRespServer::bulk("e" + std::to_string(i));
    return out;
  }
  return FakeRespServer::error("ERR unknown command '" + a[0] + "'");
}

Endpoint at(const FakeRespServer& s) { return Endpoint{"127.0.0.1", s.port()}; }

asio::awaitable<std::shared_ptr<Connection>> must_connect(Endpoint ep, ConnectionOptions o = {}) {
  auto ex = co_await asio::this_coro::executor;
  auto c = co_await Connection::connect(std::move(ex), std::move(ep), std::move(o));
  EXPECT_TRUE(c) << c.error().to_string();
  co_return c ? *c : nullptr;
}

}  // namespace

TEST(Connection, NegotiatesResp3WithHello) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->protocol(), 3);
  ASSERT_NE(c->hello().find("server"), nullptr);
  EXPECT_EQ(c->hello().find("server")->str, "fake");
  auto r = f.run(c->command({"MAP"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, ReplyType::kMap);
  EXPECT_DOUBLE_EQ(r->find("k")->dbl, 1.5);
}

TEST(Connection, FallsBackToResp2WhenHelloIsUnknown) {
  FakeRespServer server([](const std::vector<std::string>& a) {
    if (a[0] == "HELLO") return FakeRespServer::error("ERR unknown command 'HELLO'");
    return FakeRespServer::simple("PONG");
  });
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->protocol(), 2);
  auto r = f.run(c->command({"PING"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->str, "PONG");
}

TEST(Connection, HelloRefusalOtherThanUnknownIsAnError) {
  FakeRespServer server([](const std::vector<std::string>&) { return FakeRespServer::error("WRONGPASS invalid username-password pair"); });
  AsyncFixture f;
  ConnectionOptions o;
  o.password = "nope";
  auto c = f.run(Connection::connect(f.ex(), at(server), o));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kServerError);
  EXPECT_NE(c.error().message.find("WRONGPASS"), std::string::npos);
}

TEST(Connection, PipelinesManyCommandsAndMatchesRepliesInOrder) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 5000; ++i) cmds.push_back({"ECHO", "v" + std::to_string(i)});
  auto replies = f.run(c->pipeline(cmds));
  ASSERT_EQ(replies.size(), 5000u);
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(replies[i]);
    ASSERT_EQ(replies[i]->str, "v" + std::to_string(i));
  }
  // Many coroutines issuing at once on one connection: each gets its own reply.
  auto many = [](std::shared_ptr<Connection> conn) -> asio::awaitable<int> {
    int ok = 0;
    auto one = [](std::shared_ptr<Connection> conn, int i, int* ok) -> asio::awaitable<void> {
      std::string v = "c" + std::to_string(i);
      std::string_view args[] = {"ECHO", v};
      auto r = co_await conn->async_command(args);
      if (r && r->str == v) ++*ok;
    };
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 300; ++i) asio::co_spawn(ex, one(conn, i, &ok), asio::detached);
    asio::steady_timer t(ex);
    while (ok < 300 && conn->is_open()) {
      t.expires_after(std::chrono::milliseconds(1));
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return ok;
  };
  EXPECT_EQ(f.run(many(c)), 300);
  EXPECT_EQ(c->in_flight(), 0u);
}

TEST(Connection, PushMessagesGoToTheHandlerNotToACommand) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  std::vector<Reply> pushes;
  c->on_push([&](Reply r) { pushes.push_back(std::move(r)); });
  auto r = f.run(c->command({"PUSHME"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->str, "OK");
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(pushes[0].elements[1].str, "hi");
}

TEST(Connection, CommandTimeoutFailsEverythingInFlightAndCloses) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  ConnectionOptions o;
  o.command_timeout = std::chrono::milliseconds(100);
  auto c = f.run(must_connect(at(server), o));
  ASSERT_TRUE(c);
  auto replies = f.run(c->pipeline({{"NEVER"}, {"NEVER"}}));
  ASSERT_FALSE(replies[0]);
  EXPECT_EQ(replies[0].error().code, Errc::kTimeout);
  EXPECT_NE(replies[0].error().message.find("command_timeout"), std::string::npos);
  ASSERT_FALSE(replies[1]);  // cannot be matched any more: failed too
  EXPECT_FALSE(c->is_open());
  auto after = f.run(c->command({"PING"}));
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, Errc::kTimeout);
}

TEST(Connection, MalformedReplyIsAProtocolErrorAndCloses) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  auto r = f.run(c->command({"GARBAGE"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kProtocol);
  EXPECT_NE(r.error().message.find("unknown RESP type byte '?'"), std::string::npos);
  EXPECT_FALSE(c->is_open());
}

TEST(Connection, DroppedConnectionFailsInFlightCommands) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  auto wait = [](std::shared_ptr<Connection> conn) -> asio::awaitable<Result<Reply>> {
    std::vector<std::string> never = {"NEVER"};
    co_return co_await conn->command(std::move(never));
  };
  auto fut = asio::co_spawn(f.io(), wait(c), asio::use_future);
  while (server.requests() < 2) std::this_thread::yield();  // HELLO + NEVER arrived
  server.drop_connections();
  auto r = fut.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIoError);
}

TEST(Connection, RefusedConnectIsAnIoError) {
  uint16_t port;
  {
    FakeRespServer s(echo_server);
    port = s.port();
  }
  AsyncFixture f;
  auto c = f.run(Connection::connect(f.ex(), Endpoint{"127.0.0.1", port}));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kIoError);
  EXPECT_NE(c.error().message.find("cannot connect to 127.0.0.1:"), std::string::npos);
}

TEST(Connection, CloseFailsLaterCommandsWithClosed) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  f.run([](std::shared_ptr<Connection> conn) -> asio::awaitable<int> {
    conn->close();
    co_return 0;
  }(c));
  auto r = f.run(c->command({"PING"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kClosed);
}

TEST(Connection, LargeRepliesArriveWholeAndInOrder) {
  FakeRespServer server(echo_server);
  AsyncFixture f;
  auto c = f.run(must_connect(at(server)));
  ASSERT_TRUE(c);
  auto replies = f.run(c->pipeline({{"BIG", "300000"}, {"ECHO", "after"}, {"BIG", "3"}}));
  ASSERT_TRUE(replies[0]) << replies[0].error().to_string();
  ASSERT_EQ(replies[0]->elements.size(), 300000u);
  EXPECT_EQ(replies[0]->elements[0].str, "e0");
  EXPECT_EQ(replies[0]->elements[299999].str, "e299999");
  ASSERT_TRUE(replies[1]);
  EXPECT_EQ(replies[1]->str, "after");
  ASSERT_TRUE(replies[2]);
  EXPECT_EQ(replies[2]->elements.size(), 3u);
}
