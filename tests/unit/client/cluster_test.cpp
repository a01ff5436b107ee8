// ClusterClient routing against fake nodes: slot routing from CLUSTER SHARDS, MOVED (with a
// topology refresh), ASK (ASKING first, no map change), the redirect limit, and servers
// without cluster support.
#include <gtest/gtest.h>

#include <mutex>

#include "async_fixture.h"
#include "fake_resp_server.h"
#include "keel/client/client.h"
#include "keel/client/slots.h"

using namespace keel::client;
using keel::testing::AsyncFixture;
using keel::testing::FakeRespServer;
namespace asio = boost::asio;
using S = FakeRespServer;

namespace {

std::string hello() { return "%1\r\n+proto\r\n:3\r\n"; }

// CLUSTER SHARDS with one shard per (first, last, port).
std::string shards(std::vector<std::tuple<int, int, int>> v) {
  std::string out = "*" + std::to_string(v.size()) + "\r\n";
  for (auto [a, b, port] : v) {
    out += "%2\r\n+slots\r\n*2\r\n:" + std::to_string(a) + "\r\n:" + std::to_string(b) + "\r\n";
    out += "+nodes\r\n*1\r\n%4\r\n+ip\r\n+127.0.0.1\r\n+port\r\n:" + std::to_string(port) +
           "\r\n+role\r\n+master\r\n+health\r\n+online\r\n";
  }
  return out;
}

// A node that owns slots [first, last] and stores values; for other slots it answers MOVED (or
// ASK, if `ask` is set) to `other_port`.
struct FakeNode {
  std::mutex mu;
  std::map<std::string, std::string> data;
  std::vector<std::string> log;  // commands received, in order
  std::string topology;           // the CLUSTER SHARDS reply
  int first = 0, last = 16383, other_port = 0;
  bool ask = false;
  std::unique_ptr<S> server;

  FakeNode() {
    server = std::make_unique<S>([this](const std::vector<std::string>& a) { return handle(a); });
  }
  std::string handle(const std::vector<std::string>& a) {
    std::lock_guard lock(mu);
    log.push_back(a[0] + (a.size() > 1 ? " " + a[1] : ""));
    if (a[0] == "HELLO") return hello();
    if (a[0] == "PING") return S::simple("PONG");
    if (a[0] == "ASKING") return S::simple("OK");
    if (a[0] == "CLUSTER") return topology;
    if (a[0] == "MGET" || a[0] == "MSET" || a[0] == "DEL") {
      // Multi-key commands: every key must be in one slot this node owns (as Redis Cluster).
      size_t step = a[0] == "MSET" ? 2 : 1;
      for (size_t i = 1; i < a.size(); i += step)
        if (key_slot(a[i]) != key_slot(a[1])) return S::error("CROSSSLOT Keys in request don't hash to the same slot");
      int s0 = static_cast<int>(key_slot(a[1]));
      if (s0 < first || s0 > last) return S::error("MOVED " + std::to_string(s0) + " 127.0.0.1:" + std::to_string(other_port));
      std::string out = a[0] == "MGET" ? "*" + std::to_string(a.size() - 1) + "\r\n" : "";
      int64_t removed = 0;
      for (size_t i = 1; i < a.size(); i += step) {
        if (a[0] == "MSET") data[a[i]] = a[i + 1];
        else if (a[0] == "DEL") removed += data.erase(a[i]);
        else out += data.count(a[i]) ? S::bulk(data[a[i]]) : S::null();
      }
      if (a[0] == "MSET") return S::simple("OK");
      if (a[0] == "DEL") return S::integer(removed);
      return out;
    }
    int slot = static_cast<int>(key_slot(a[1]));
    if (slot < first || slot > last) {
      bool asking = log.size() >= 2 && log[log.size() - 2] == "ASKING";
      if (!asking)
        return S::error(std::string(ask ? "ASK " : "MOVED ") + std::to_string(slot) + " 127.0.0.1:" + std::to_string(other_port));
    }
    if (a[0] == "SET") {
      data[a[1]] = a[2];
      return S::simple("OK");
    }
    if (a[0] == "GET") return data.count(a[1]) ? S::bulk(data[a[1]]) : S::null();
    return S::error("ERR unknown command");
  }
  uint16_t port() const { return server->port(); }
  size_t count(const std::string& entry) {
    std::lock_guard lock(mu);
    return std::count(log.begin(), log.end(), entry);
  }
};

asio::awaitable<Result<Reply>> cmd(std::shared_ptr<ClusterClient> c, std::vector<std::string> args) {
  co_return co_await c->command(std::move(args));
}

}  // namespace

TEST(ClusterClient, RoutesBySlotFromClusterShards) {
  FakeNode a, b;
  // a: slots 0-8191, b: 8192-16383 ("bar" is slot 5061, "foo" is 12182).
  a.last = 8191;
  b.first = 8192;
  a.other_port = b.port();
  b.other_port = a.port();
  a.topology = b.topology = shards({{0, 8191, a.port()}, {8192, 16383, b.port()}});
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", a.port()}};
  auto c = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(f.run(cmd(*c, {"SET", "bar", "1"}))->str, "OK");
  EXPECT_EQ(f.run(cmd(*c, {"SET", "foo", "2"}))->str, "OK");
  EXPECT_EQ(a.count("SET bar"), 1u);
  EXPECT_EQ(b.count("SET foo"), 1u);
  EXPECT_EQ(b.count("SET bar"), 0u);
  EXPECT_EQ((*c)->redirects_followed(), 0u);
  // {tag} keys follow the tag's slot.
  EXPECT_EQ(f.run(cmd(*c, {"SET", "{bar}.x", "3"}))->str, "OK");
  EXPECT_EQ(a.count("SET {bar}.x"), 1u);
}

TEST(ClusterClient, FollowsMovedAndRefreshesTheTopology) {
  FakeNode a, b;
  // The map says a owns everything, but slots 8192+ have moved to b.
  a.last = 8191;
  a.other_port = b.port();
  a.topology = shards({{0, 16383, a.port()}});
  b.topology = shards({{0, 8191, a.port()}, {8192, 16383, b.port()}});
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", a.port()}};
  auto c = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_TRUE(c);
  // After the MOVED, a's map is updated too (as a real node would have learned).
  {
    std::lock_guard lock(a.mu);
    a.topology = b.topology;
  }
  auto r = f.run(cmd(*c, {"SET", "foo", "v"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->str, "OK");
  EXPECT_EQ(a.count("SET foo"), 1u);  // tried at a, redirected
  EXPECT_EQ(b.count("SET foo"), 1u);
  EXPECT_EQ((*c)->redirects_followed(), 1u);
  EXPECT_GE((*c)->topology_refreshes(), 2u);  // connect + after MOVED
  // Another key in b's range now goes straight to b: the refresh learned the whole range.
  uint32_t other_slot = key_slot("zzz");
  ASSERT_GE(other_slot, 8192u);
  EXPECT_EQ(f.run(cmd(*c, {"SET", "zzz", "w"}))->str, "OK");
  EXPECT_EQ(a.count("SET zzz"), 0u);
  EXPECT_EQ((*c)->redirects_followed(), 1u);
  EXPECT_EQ((*c)->topology().endpoint_for_slot(other_slot)->port, b.port());
}

TEST(ClusterClient, FollowsAskWithAskingAndKeepsTheMap) {
  FakeNode a, b;
  a.last = 8191;
  a.ask = true;
  a.other_port = b.port();
  a.topology = shards({{0, 16383, a.port()}});
  b.first = 8192;
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", a.port()}};
  auto c = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_TRUE(c);
  auto r = f.run(cmd(*c, {"SET", "foo", "v"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->str, "OK") << r->debug_string();
  EXPECT_EQ(b.count("ASKING"), 1u);
  EXPECT_EQ(b.count("SET foo"), 1u);
  // ASK is one-off: the slot still belongs to a in the client's map.
  EXPECT_EQ((*c)->topology().endpoint_for_slot(key_slot("foo"))->port, a.port());
  EXPECT_EQ((*c)->topology_refreshes(), 1u);
}

TEST(ClusterClient, StopsAfterMaxRedirects) {
  FakeNode a, b;
  // Each says the other owns slot 12182: a redirect loop.
  a.last = 0;
  b.last = 0;
  a.other_port = b.port();
  b.other_port = a.port();
  a.topology = b.topology = shards({{0, 16383, a.port()}});
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", a.port()}};
  o.max_redirects = 3;
  auto c = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_TRUE(c);
  auto r = f.run(cmd(*c, {"GET", "foo"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kRedirectLimit);
  EXPECT_NE(r.error().message.find("max_redirects"), std::string::npos);
}

TEST(ClusterClient, ServerWithoutClusterSupportOwnsEverySlot) {
  S plain([](const std::vector<std::string>& a) {
    if (a[0] == "HELLO") return hello();
    if (a[0] == "CLUSTER") return S::error("ERR This instance has cluster support disabled");
    return S::simple("OK");
  });
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", plain.port()}};
  auto c = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->topology().covered_slots(), 16384u);
  EXPECT_EQ(f.run(cmd(*c, {"SET", "k", "v"}))->str, "OK");
}

TEST(ClusterClient, UnreachableSeedIsAnError) {
  uint16_t port;
  {
    S gone([](const std::vector<std::string>&) { return std::string(); });
    port = gone.port();
  }
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", port}};
  auto c = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kIoError);
}

TEST(ClusterClient, BlockingMultiKeyCallsSplitPerSlotAcrossNodes) {
  FakeNode a, b;
  a.last = 8191;
  b.first = 8192;
  a.other_port = b.port();
  b.other_port = a.port();
  a.topology = b.topology = shards({{0, 8191, a.port()}, {8192, 16383, b.port()}});
  keel::ClientOptions o;
  o.seeds = {Endpoint{"127.0.0.1", a.port()}};
  auto c = keel::Client::connect(o);
  ASSERT_TRUE(c) << c.error().to_string();
  std::vector<std::string> keys = {"foo", "bar", "zzz", "{bar}.2", "hello", "somekey"};
  std::vector<std::pair<std::string, std::string>> pairs;
  for (auto& k : keys) pairs.emplace_back(k, "v-" + k);
  ASSERT_TRUE(c->mset(pairs));
  auto got = c->mget({"somekey", "nope", "foo", "bar", "{bar}.2"});
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ((*got)[0], "v-somekey");
  EXPECT_EQ((*got)[1], std::nullopt);
  EXPECT_EQ((*got)[2], "v-foo");
  EXPECT_EQ((*got)[3], "v-bar");
  EXPECT_EQ((*got)[4], "v-{bar}.2");
  EXPECT_EQ(c->del({"foo", "bar", "nope"}).value(), 2);
  // No redirect was needed: each key went to the node serving its slot.
  EXPECT_EQ(c->redirects_followed(), 0u);
  std::lock_guard lock(a.mu);
  for (auto& [k, v] : a.data) EXPECT_LT(key_slot(k), 8192u) << k;
}
