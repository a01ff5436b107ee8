// The C++ client SDK against a real keel node (memory engine): the blocking facade, RESP3 and
// pipelining on the async client, the pool under 1000 concurrent operations, reconnecting after
// the node is killed and restarted, MOVED through a fake node to the real one. (Typed caches: cache_sdk_test.cpp.)
#include <gtest/gtest.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "async_fixture.h"
#include "fake_resp_server.h"
#include "keel/client/async.h"
#include "keel/client/client.h"
#include "keel_process.h"

using namespace keel::client;
using keel::testing::AsyncFixture;
using keel::testing::FakeRespServer;
using keel::testing::KeelProcess;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<KeelProcess> start_node(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--engine", "memory"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = std::make_unique<KeelProcess>(args);
  EXPECT_TRUE(p->start()) << p->output();
  return p;
}

keel::Client connect(const KeelProcess& node) {
  auto c = keel::Client::connect("127.0.0.1", static_cast<uint16_t>(node.resp_port()));
  EXPECT_TRUE(c) << c.error().to_string();
  return std::move(*c);
}

// GET on the node's HTTP port: (status, body).
std::pair<unsigned, std::string> http_get(int port, const std::string& target) {
  namespace beast = boost::beast;
  namespace bhttp = beast::http;
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  boost::system::error_code ec;
  sock.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
  if (ec) return {0, ec.message()};
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  bhttp::write(sock, req, ec);
  if (ec) return {0, ec.message()};
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(sock, buf, res, ec);
  if (ec) return {0, ec.message()};
  return {res.result_int(), res.body()};
}

}  // namespace

class ClientIt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { node_ = start_node().release(); }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
  }
  static KeelProcess* node_;
};
KeelProcess* ClientIt::node_ = nullptr;

TEST_F(ClientIt, BlockingFacadeCoversTheKvCalls) {
  auto c = connect(*node_);
  ASSERT_TRUE(c.set("it:k1", "v1"));
  EXPECT_EQ(c.get("it:k1").value(), "v1");
  EXPECT_EQ(c.get("it:missing").value(), std::nullopt);
  std::string binary("a\0b\r\nc", 6);
  ASSERT_TRUE(c.set("it:bin", binary));
  EXPECT_EQ(c.get("it:bin").value(), binary);

  ASSERT_TRUE(c.set("it:ttl", "x", 60s));
  auto ttl = c.ttl("it:ttl");
  ASSERT_TRUE(ttl);
  ASSERT_TRUE(ttl->has_value());
  EXPECT_GT((*ttl)->count(), 0);
  EXPECT_LE((*ttl)->count(), 60000);
  EXPECT_EQ(c.ttl("it:k1").value(), std::nullopt);
  EXPECT_EQ(c.ttl("it:missing").error().code, Errc::kNotFound);
  EXPECT_TRUE(c.expire("it:k1", 30s).value());
  EXPECT_FALSE(c.expire("it:missing", 30s).value());
  EXPECT_EQ(c.set("it:k", "v", 0ms).error().code, Errc::kInvalidArgument);

  EXPECT_EQ(c.exists("it:k1").value(), true);
  EXPECT_EQ(c.exists({"it:k1", "it:bin", "it:missing"}).value(), 2);
  EXPECT_EQ(c.incr("it:n").value(), 1);
  EXPECT_EQ(c.incr("it:n", 41).value(), 42);
  EXPECT_EQ(c.incr("it:k1").error().code, Errc::kServerError);  // not an integer

  ASSERT_TRUE(c.mset({{"it:m1", "a"}, {"it:m2", "b"}, {"it:m3", "c"}}));
  auto m = c.mget({"it:m1", "it:nope", "it:m3"});
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)[0], "a");
  EXPECT_EQ((*m)[1], std::nullopt);
  EXPECT_EQ((*m)[2], "c");

  EXPECT_EQ(c.hset("it:h", "f1", "1").value(), 1);
  EXPECT_EQ(c.hset("it:h", "f1", "2").value(), 0);
  EXPECT_EQ(c.hset("it:h", "f2", "3").value(), 1);
  EXPECT_EQ(c.hget("it:h", "f1").value(), "2");
  EXPECT_EQ(c.hget("it:h", "zz").value(), std::nullopt);
  auto all = c.hgetall("it:h");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at("f2"), "3");
  auto wrong = c.hget("it:k1", "f");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("WRONGTYPE"), std::string::npos);

  EXPECT_EQ(c.del({"it:m1", "it:m2", "it:nope"}).value(), 2);

  // SCAN walks every key exactly once.
  for (int i = 0; i < 250; ++i) ASSERT_TRUE(c.set("scan:" + std::to_string(i), "x"));
  std::set<std::string> seen;
  std::string cursor = "0";
  int pages = 0;
  do {
    auto page = c.scan(cursor, "scan:*", 50);
    ASSERT_TRUE(page) << page.error().to_string();
    for (auto& k : page->keys) seen.insert(k);
    cursor = page->cursor;
  } while (cursor != "0" && ++pages < 1000);
  EXPECT_EQ(seen.size(), 250u);

  // Raw commands: server errors are replies from command(), Errors from checked().
  auto raw = c.command({"NOSUCHCOMMAND"});
  ASSERT_TRUE(raw);
  EXPECT_TRUE(raw->is_error());
  auto checked = c.checked({"NOSUCHCOMMAND"});
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().code, Errc::kServerError);
  EXPECT_EQ(c.command({"PING"})->str, "PONG");
}

TEST_F(ClientIt, Resp3RepliesAndPipeliningOnTheAsyncClient) {
  AsyncFixture f;
  Endpoint ep{"127.0.0.1", static_cast<uint16_t>(node_->resp_port())};
  auto conn = f.run(Connection::connect(f.ex(), ep));
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto c = *conn;
  EXPECT_EQ(c->protocol(), 3);
  ASSERT_NE(c->hello().find("proto"), nullptr);
  EXPECT_EQ(c->hello().find("proto")->integer, 3);

  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 10000; ++i) cmds.push_back({"SET", "pipe:" + std::to_string(i), std::to_string(i)});
  for (int i = 0; i < 10000; ++i) cmds.push_back({"GET", "pipe:" + std::to_string(i)});
  auto replies = f.run(c->pipeline(cmds));
  ASSERT_EQ(replies.size(), 20000u);
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(replies[i]);
    ASSERT_EQ(replies[i]->str, "OK");
    ASSERT_TRUE(replies[10000 + i]);
    ASSERT_EQ(replies[10000 + i]->str, std::to_string(i));
  }
  // RESP3 shapes from the node: a map for HGETALL, null for a missing key, verbatim for INFO.
  auto shapes = f.run(c->pipeline({{"HSET", "r3:h", "a", "1"}, {"HGETALL", "r3:h"}, {"GET", "r3:none"}, {"CLUSTER", "INFO"}}));
  ASSERT_TRUE(shapes[1]);
  EXPECT_EQ(shapes[1]->type, ReplyType::kMap);
  EXPECT_EQ(shapes[1]->find("a")->str, "1");
  EXPECT_EQ(shapes[2]->type, ReplyType::kNull);
  EXPECT_EQ(shapes[3]->type, ReplyType::kVerbatim);
  EXPECT_NE(shapes[3]->str.find("cluster_state:ok"), std::string::npos);
}

TEST_F(ClientIt, ReadsTheNodesTopologyAndAgreesOnKeyslots) {
  auto c = connect(*node_);
  auto t = c.topology();
  EXPECT_EQ(t.covered_slots(), 16384u);
  ASSERT_EQ(t.endpoints().size(), 1u);
  EXPECT_EQ(t.endpoints()[0].port, node_->resp_port());
  for (std::string key : {"foo", "bar", "{user1000}.following", "a{b}c", "", "somekey", "\xff\x00x"}) {
    auto r = c.command({"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->integer, key_slot(key)) << key;
  }
}

TEST_F(ClientIt, PoolServesAThousandConcurrentOperations) {
  AsyncFixture f;
  ClusterOptions o;
  o.seeds = {Endpoint{"127.0.0.1", static_cast<uint16_t>(node_->resp_port())}};
  o.pool.max_size = 8;
  o.pool.acquire_timeout = 30s;
  auto cc = f.run(ClusterClient::connect(f.ex(), o));
  ASSERT_TRUE(cc);
  auto c = *cc;
  auto run_all = [](std::shared_ptr<ClusterClient> c) -> asio::awaitable<int> {
    auto ex = co_await asio::this_coro::executor;
    int ok = 0, done = 0;
    auto one = [](std::shared_ptr<ClusterClient> c, int i, int* ok, int* done) -> asio::awaitable<void> {
      std::string key = "conc:" + std::to_string(i);
      std::vector<std::string> set = {"SET", key, std::to_string(i)};
      auto a = co_await c->command(std::move(set));
      std::vector<std::string> incr = {"INCR", "conc:counter"};
      auto b = co_await c->command(std::move(incr));
      std::vector<std::string> get = {"GET", key};
      auto g = co_await c->command(std::move(get));
      if (a && a->str == "OK" && b && b->type == ReplyType::kInteger && g && g->str == std::to_string(i)) ++*ok;
      ++*done;
    };
    for (int i = 0; i < 1000; ++i) asio::co_spawn(ex, one(c, i, &ok, &done), asio::detached);
    asio::steady_timer t(ex);
    while (done < 1000) {
      t.expires_after(2ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return ok;
  };
  EXPECT_EQ(f.run(run_all(c)), 1000);
  auto check = [](std::shared_ptr<ClusterClient> c) -> asio::awaitable<std::pair<std::string, PoolStats>> {
    std::vector<std::string> get = {"GET", "conc:counter"};
    auto r = co_await c->command(std::move(get));
    co_return std::pair{r ? r->str : "", c->pool_stats().begin()->second};
  };
  auto [counter, stats] = f.run(check(c));
  EXPECT_EQ(counter, "1000");
  EXPECT_LE(stats.created, 8u);  // never more than max_size connections
  EXPECT_GE(stats.created, 2u);  // and the concurrency really used several
  EXPECT_EQ(stats.acquire_timeouts, 0u);
  EXPECT_EQ(stats.in_use, 0u);

  // The blocking facade from many threads shares its pools the same way.
  auto bc = connect(*node_);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto key = "thr:" + std::to_string(t) + ":" + std::to_string(i);
        if (bc.set(key, key) && bc.get(key).value_or(std::nullopt) == key) ++good;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 400);
}

TEST(ClientRestart, ReconnectsAfterTheNodeIsKilledAndRestarted) {
  auto node = start_node();
  int port = node->resp_port();
  auto c = connect(*node);
  ASSERT_TRUE(c.set("r:k", "before"));
  node->kill9();
  auto down = c.get("r:k");
  ASSERT_FALSE(down);
  EXPECT_TRUE(down.error().code == Errc::kIoError || down.error().code == Errc::kClosed) << down.error().to_string();

  auto again = std::make_unique<KeelProcess>(
      std::vector<std::string>{"--engine", "memory", "--set", "server.resp_port=" + std::to_string(port)});
  ASSERT_TRUE(again->start()) << again->output();
  ASSERT_EQ(again->resp_port(), port);
  // The same Client recovers: the pool drops the dead connection and dials the new process.
  Result<std::optional<std::string>> after = make_error(Errc::kIoError, "not tried");
  for (int i = 0; i < 50 && !after; ++i) {
    after = c.get("r:k");
    if (!after) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(*after, std::nullopt);  // memory engine: the old value died with the process
  ASSERT_TRUE(c.set("r:k", "after"));
  EXPECT_EQ(c.get("r:k").value(), "after");
  auto stats = c.pool_stats().begin()->second;
  EXPECT_GE(stats.created, 2u);
}

TEST(ClientCluster, FollowsMovedFromAFakeNodeToARealKeelNode) {
  auto node = start_node();
  uint16_t real = static_cast<uint16_t>(node->resp_port());
  std::atomic<int> moved{0};
  std::atomic<bool> migrated{false};
  std::atomic<int> fake_port_placeholder{0};
  // The fake node claims every slot until it has redirected once; then it reports the real
  // node as the owner (as a node that finished a migration would).
  FakeRespServer fake([&](const std::vector<std::string>& a) -> std::string {
    if (a[0] == "HELLO") return "%1\r\n+proto\r\n:3\r\n";
    if (a[0] == "PING") return FakeRespServer::simple("PONG");
    if (a[0] == "CLUSTER") {
      int owner = migrated ? int(real) : fake_port_placeholder.load();
      return "*1\r\n%2\r\n+slots\r\n*2\r\n:0\r\n:16383\r\n+nodes\r\n*1\r\n%4\r\n+ip\r\n+127.0.0.1\r\n+port\r\n:" +
             std::to_string(owner) + "\r\n+role\r\n+master\r\n+health\r\n+online\r\n";
    }
    ++moved;
    migrated = true;
    return FakeRespServer::error("MOVED " + std::to_string(key_slot(a[1])) + " 127.0.0.1:" + std::to_string(real));
  });
  fake_port_placeholder = fake.port();
  keel::ClientOptions o;
  o.seeds = {Endpoint{"127.0.0.1", fake.port()}};
  auto c = keel::Client::connect(o);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->topology().endpoint_for_slot(0)->port, fake.port());
  ASSERT_TRUE(c->set("moved:key", "v"));
  EXPECT_EQ(moved.load(), 1);
  EXPECT_EQ(c->redirects_followed(), 1u);
  // The write landed on the real node, and the refreshed map sends later commands straight there.
  auto direct = connect(*node);
  EXPECT_EQ(direct.get("moved:key").value(), "v");
  EXPECT_EQ(c->get("moved:key").value(), "v");
  EXPECT_TRUE(c->set("other:key", "w"));
  EXPECT_EQ(moved.load(), 1);
  EXPECT_EQ(c->topology().endpoint_for_slot(key_slot("other:key"))->port, real);
}


// Tracing calls (keel/client/trace.h): under a sampled TraceScope a call is a ClientSpan, child of
// the scope, and keel's span for the command is its child (the node's slow log names the trace
// and shows the CLIENT TRACEPARENT the SDK sent); without a sampled scope nothing more is sent.
TEST(ClientTracing, SampledScopesTravelToKeelAndBecomeClientSpans) {
  auto node = start_node({"--set", "trace.endpoint=http://127.0.0.1:9/v1/traces", "--set", "trace.sample_ratio=0",
                          "--set", "trace.export_timeout_ms=200", "--set", "trace.max_retries=0",
                          "--set", "slowlog.slower_than_us=0", "--set", "slowlog.max_len=1000"});
  std::vector<ClientSpan> spans;
  keel::ClientOptions o;
  o.seeds = {Endpoint{"127.0.0.1", static_cast<uint16_t>(node->resp_port())}};
  o.on_span = [&spans](const ClientSpan& s) { spans.push_back(s); };
  auto c = keel::Client::connect(o);
  ASSERT_TRUE(c) << c.error().to_string();
  ASSERT_TRUE(c->set("tr:plain", "1"));  // no scope: no span, nothing more sent
  EXPECT_TRUE(spans.empty());

  auto ctx = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  {
    TraceScope scope(*ctx);
    ASSERT_TRUE(c->set("tr:traced", "2"));
    auto bad = c->incr("tr:traced-not-a-number-", 1);  // fine: a missing key counts from 0
    ASSERT_TRUE(bad);
    ASSERT_TRUE(c->set("tr:str", "abc"));
    EXPECT_FALSE(c->incr("tr:str", 1));  // an error reply: the span says so
  }
  ASSERT_TRUE(c->set("tr:after", "3"));  // the scope is gone: untraced again
  ASSERT_EQ(spans.size(), 4u);
  const auto& set = spans[0];
  EXPECT_EQ(set.name, "SET");
  EXPECT_EQ(set.context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(set.parent_span_id, ctx->span_id);
  EXPECT_NE(set.context.span_id, ctx->span_id);
  EXPECT_TRUE(set.context.sampled);
  EXPECT_GE(set.end_unix_ns, set.start_unix_ns);
  EXPECT_FALSE(set.error);
  EXPECT_EQ(spans[3].name, "INCR");
  EXPECT_TRUE(spans[3].error);
  EXPECT_NE(spans[3].error_message.find("not an integer"), std::string::npos) << spans[3].error_message;

  // What keel saw: the SDK span as the parent of the traced SET, nothing around the others.
  auto r = c->command({"SLOWLOG", "GET", "-1"});
  ASSERT_TRUE(r && r->type == ReplyType::kArray);
  std::vector<std::string> lines;
  for (auto& e : r->elements) {
    std::string args;
    for (auto& a : e.elements[3].elements) args += (args.empty() ? "" : " ") + a.str;
    lines.push_back(args);
  }
  auto has = [&](const std::string& line) { return std::find(lines.begin(), lines.end(), line) != lines.end(); };
  EXPECT_TRUE(has("CLIENT TRACEPARENT 00-4bf92f3577b34da6a3ce929d0e0e4736-" + set.context.span_id_hex() + "-01"));
  EXPECT_TRUE(has("SET tr:traced 2"));
  EXPECT_TRUE(has("CLIENT TRACEPARENT CLEAR"));
  size_t traceparents = 0;
  for (auto& l : lines) traceparents += l.starts_with("CLIENT TRACEPARENT 00-");
  EXPECT_EQ(traceparents, 4u);  // one per traced call, none for tr:plain or tr:after
}

// The trace id keel recorded for the traced command is the scope's (HTTP shows the slow log's
// trace ids); an unsampled scope sends nothing.
TEST(ClientTracing, KeelRecordsTheCallInTheScopesTraceAndUnsampledScopesStayLocal) {
  auto node = start_node({"--set", "trace.endpoint=http://127.0.0.1:9/v1/traces", "--set", "trace.sample_ratio=0",
                          "--set", "trace.export_timeout_ms=200", "--set", "trace.max_retries=0",
                          "--set", "slowlog.slower_than_us=0"});
  size_t spans = 0;
  keel::ClientOptions o;
  o.seeds = {Endpoint{"127.0.0.1", static_cast<uint16_t>(node->resp_port())}};
  o.on_span = [&spans](const ClientSpan&) { ++spans; };
  auto c = keel::Client::connect(o);
  ASSERT_TRUE(c) << c.error().to_string();
  auto unsampled = TraceContext::parse("00-11111111111111111111111111111111-2222222222222222-00");
  ASSERT_TRUE(unsampled);
  EXPECT_FALSE(unsampled->sampled);
  {
    TraceScope scope(*unsampled);
    ASSERT_TRUE(c->set("tr2:unsampled", "1"));
  }
  EXPECT_EQ(spans, 0u);
  auto sampled = TraceContext::parse("00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01");
  {
    TraceScope outer(*unsampled);
    TraceScope inner(*sampled);  // the innermost wins
    ASSERT_TRUE(c->set("tr2:sampled", "2"));
  }
  EXPECT_EQ(spans, 1u);
  auto [status, body] = http_get(node->http_port(), "/v1/slowlog");
  ASSERT_EQ(status, 200u) << body;
  auto doc = nlohmann::json::parse(body);
  std::map<std::string, nlohmann::json> by_key;
  for (auto& e : doc["entries"])
    if (e["door"] == "resp" && e["args"].size() == 3 && e["args"][0] == "SET") by_key[e["args"][1]] = e["trace_id"];
  ASSERT_TRUE(by_key.count("tr2:sampled") && by_key.count("tr2:unsampled")) << body;
  EXPECT_EQ(by_key["tr2:sampled"], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  EXPECT_TRUE(by_key["tr2:unsampled"].is_null());
  EXPECT_FALSE(TraceContext::parse("00-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-bbbbbbbbbbbbbbbb-01"));  // upper case
  EXPECT_FALSE(TraceContext::parse("00-00000000000000000000000000000000-bbbbbbbbbbbbbbbb-01"));  // zero id
  EXPECT_FALSE(TraceContext::parse("01-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"));
}
