// Capacitor fed by keel's cluster metadata (ConfigMetaWatcher) against a real single-member
// cluster node: a put makes it healthy with the value; an invalid put degrades it and keeps
// the last good value; a valid put swaps with (previous, next) reported; killing the node keeps
// the last good value (degraded); after a restart it catches up. Waits are for a state with
// generous bounds; nothing asserts how long anything took.
// GCC 12 with -fsanitize=address reports a false "maybe uninitialized" inside Beast's parser.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <thread>

#include "keel/capacitor.h"
#include "keel/config_meta_watcher.h"
#include "keel_process.h"

namespace {

using namespace keel::sdk;
using keel::testing::KeelProcess;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct AppConfig {
  std::string upstream;
  int pool_size = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AppConfig, upstream, pool_size)

std::vector<std::string> check(const AppConfig& c) {
  if (c.pool_size < 1 || c.pool_size > 1024) return {"pool_size: " + std::to_string(c.pool_size) + " is not in 1..1024"};
  return {};
}

uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

std::pair<unsigned, std::string> request(http::verb verb, int port, const std::string& target, const std::string& body = "",
                                         const std::string& authorization = "") {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
  if (ec) return {0, ec.message()};
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  req.body() = body;
  req.prepare_payload();
  http::write(s, req, ec);
  if (ec) return {0, ec.message()};
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res, ec);
  if (ec) return {0, ec.message()};
  return {res.result_int(), res.body()};
}

// A metadata put; retried while the fresh node has no quorum yet (503).
bool put(int port, const std::string& key, const std::string& value) {
  for (int i = 0; i < 200; ++i) {
    auto [status, body] = request(http::verb::put, port, "/v1/meta/" + key, value);
    if (status == 200) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 3000 && !pred(); ++i) std::this_thread::sleep_for(10ms);
  return pred();
}

std::vector<std::string> node_args(uint16_t peer_port, int http_port) {
  return {"--engine", "memory", "--shards", "1", "--node-id", "1", "--peer-port", std::to_string(peer_port),
          "--peers", "1@127.0.0.1:" + std::to_string(peer_port), "--set", "server.http_port=" + std::to_string(http_port),
          "--set", "cluster.heartbeat_ms=50"};
}

TEST(ConfigFromClusterMetadata, FollowsPutsKeepsTheLastGoodValueAndCatchesUpAfterARestart) {
  const uint16_t peer_port = free_port();
  const uint16_t http_port = free_port();
  auto node = std::make_unique<KeelProcess>(node_args(peer_port, http_port));
  ASSERT_TRUE(node->start()) << node->output();
  ASSERT_EQ(node->http_port(), http_port);

  Capacitor<AppConfig> config({.source = "meta", .format = ConfigFormat::kJson, .debounce = 10ms}, check);
  std::mutex mu;
  std::vector<std::pair<int, int>> changes;  // (previous pool_size or 0, next pool_size)
  config.on_change([&](const auto& previous, const auto& next) {
    std::lock_guard lock(mu);
    changes.emplace_back(previous ? previous->pool_size : 0, next->pool_size);
  });
  auto watcher = ConfigMetaWatcher::start(config, {.port = http_port,
                                                   .key = "svc/app.json",
                                                   .watch_timeout = 1000ms,
                                                   .request_timeout = 2000ms,
                                                   .retry_initial = 20ms,
                                                   .retry_max = 200ms});
  ASSERT_TRUE(watcher) << watcher.error().message;
  auto& w = **watcher;

  // No key yet: nothing good was ever loaded.
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kEmpty; })) << config_state_name(config.state());
  EXPECT_EQ(config.get(), nullptr);
  EXPECT_NE(config.last_error()->message.find("does not exist"), std::string::npos) << config.last_error()->message;

  ASSERT_TRUE(put(http_port, "svc/app.json", R"({"upstream": "a", "pool_size": 4})"));
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy && config.version() == 1; }));
  EXPECT_EQ(config.get()->pool_size, 4);
  EXPECT_EQ(config.get()->upstream, "a");

  // A longer key under the same prefix is not ours.
  ASSERT_TRUE(put(http_port, "svc/app.json.bak", R"({"upstream": "z", "pool_size": 99})"));
  ASSERT_TRUE(put(http_port, "svc/app.json", R"({"upstream": "a", "pool_size": 0})"));  // invalid
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kDegraded; }));
  EXPECT_EQ(config.get()->pool_size, 4) << "the last good value stays live";
  EXPECT_NE(config.last_error()->message.find("pool_size: 0 is not in 1..1024"), std::string::npos);

  ASSERT_TRUE(put(http_port, "svc/app.json", R"({"upstream": "b", "pool_size": 8})"));
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy && config.version() == 2; }));
  EXPECT_EQ(config.get()->pool_size, 8);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(changes, (std::vector<std::pair<int, int>>{{0, 4}, {4, 8}}));
  }

  // The node dies: the value stays, the state says the source is not current.
  const std::string data_dir = node->data_dir();
  node->kill9();
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kDegraded && w.failures() > 0; }));
  EXPECT_EQ(config.get()->pool_size, 8);
  EXPECT_NE(config.last_error()->message.find("metadata watch"), std::string::npos) << config.last_error()->message;
  const uint64_t failures = w.failures();
  ASSERT_TRUE(eventually([&] { return w.failures() >= failures + 2; })) << "it keeps retrying";
  EXPECT_EQ(config.version(), 2u);

  // Back on the same ports and data: the watcher reads again (same value: healthy) and follows.
  auto again = std::make_unique<KeelProcess>(node_args(peer_port, http_port), data_dir);
  ASSERT_TRUE(again->start()) << again->output();
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy; }));
  EXPECT_EQ(config.version(), 2u);
  ASSERT_TRUE(put(http_port, "svc/app.json", R"({"upstream": "c", "pool_size": 16})"));
  ASSERT_TRUE(eventually([&] { return config.version() == 3; }));
  EXPECT_EQ(config.state(), ConfigState::kHealthy);
  EXPECT_EQ(config.get()->pool_size, 16);
  EXPECT_GE(w.reads(), 2u);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(changes, (std::vector<std::pair<int, int>>{{0, 4}, {4, 8}, {8, 16}}));
  }

  // Deleting the key is refused like a missing file: the last good value stays.
  auto [status, body] = request(http::verb::delete_, http_port, "/v1/meta/svc/app.json");
  ASSERT_EQ(status, 200u) << body;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kDegraded; }));
  EXPECT_EQ(config.get()->pool_size, 16);
  EXPECT_NE(config.last_error()->message.find("deleted"), std::string::npos) << config.last_error()->message;
  w.stop();
}

// A node started without cluster settings is a one-member cluster: its metadata serves the
// watcher, a missing key is reported (not a hang), and a put reaches the configuration.
TEST(ConfigFromClusterMetadata, AnEmbeddedNodeServesItsOwnMetadata) {
  KeelProcess node({"--engine", "memory", "--shards", "1"});
  ASSERT_TRUE(node.start()) << node.output();
  Capacitor<AppConfig> config({.source = "meta", .format = ConfigFormat::kJson}, check);
  auto watcher = ConfigMetaWatcher::start(
      config, {.port = static_cast<uint16_t>(node.http_port()), .key = "k", .retry_initial = 20ms, .retry_max = 100ms});
  ASSERT_TRUE(watcher) << watcher.error().message;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kEmpty; }));
  EXPECT_NE(config.last_error()->message.find("does not exist"), std::string::npos) << config.last_error()->message;
  auto [status, body] = request(http::verb::put, node.http_port(), "/v1/meta/k", R"({"upstream": "a", "pool_size": 4})");
  ASSERT_EQ(status, 200u) << body;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy && config.get()->pool_size == 4; }))
      << config_state_name(config.state());
}

TEST(ConfigFromClusterMetadata, BadOptionsAreRefusedByName) {
  Capacitor<AppConfig> config({.source = "meta", .format = ConfigFormat::kJson}, check);
  auto no_key = ConfigMetaWatcher::start(config, {});
  ASSERT_FALSE(no_key);
  EXPECT_NE(no_key.error().message.find("key"), std::string::npos);
  auto bad_domain = ConfigMetaWatcher::start(config, {.key = "k", .domain = "Bad Domain"});
  ASSERT_FALSE(bad_domain);
  EXPECT_NE(bad_domain.error().message.find("domain 'Bad Domain'"), std::string::npos);
  auto bad_timeout = ConfigMetaWatcher::start(config, {.key = "k", .watch_timeout = 70000ms});
  ASSERT_FALSE(bad_timeout);
  EXPECT_NE(bad_timeout.error().message.find("watch_timeout"), std::string::npos);
}

}  // namespace

// A secret as the configuration: the value follows SECRET.PUT (a new version swaps it in), and
// a deleted secret keeps the last good value, reported.
TEST(ConfigFromClusterMetadata, FollowsASecretThroughItsVersions) {
  KeelProcess node({"--engine", "memory", "--shards", "1"});
  ASSERT_TRUE(node.start()) << node.output();
  const int port = node.http_port();
  Capacitor<AppConfig> config({.source = "secret", .format = ConfigFormat::kJson, .debounce = 10ms}, check);
  auto watcher = ConfigMetaWatcher::start(config, {.port = static_cast<uint16_t>(port),
                                                   .secret = "svc/app-db",
                                                   .watch_timeout = 1000ms,
                                                   .retry_initial = 20ms,
                                                   .retry_max = 100ms});
  ASSERT_TRUE(watcher) << watcher.error().message;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kEmpty; }));
  EXPECT_NE(config.last_error()->message.find("secret 'svc/app-db' does not exist"), std::string::npos)
      << config.last_error()->message;
  auto [s1, b1] = request(http::verb::put, port, "/v1/secrets/svc/app-db", R"({"upstream": "db-1", "pool_size": 4})");
  ASSERT_EQ(s1, 200u) << b1;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy && config.get()->upstream == "db-1"; }))
      << config_state_name(config.state());
  // Rotated: the new version is what the application sees.
  auto [s2, b2] = request(http::verb::put, port, "/v1/secrets/svc/app-db", R"({"upstream": "db-2", "pool_size": 8})");
  ASSERT_EQ(s2, 200u) << b2;
  ASSERT_TRUE(eventually([&] { return config.get() && config.get()->upstream == "db-2"; }));
  EXPECT_EQ(config.get()->pool_size, 8);
  auto [s3, b3] = request(http::verb::delete_, port, "/v1/secrets/svc/app-db");
  ASSERT_EQ(s3, 200u) << b3;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kDegraded; }));
  EXPECT_EQ(config.get()->upstream, "db-2");
  EXPECT_NE(config.last_error()->message.find("deleted"), std::string::npos) << config.last_error()->message;
}

// A node whose HTTP door needs credentials (the default user has a password): without them the
// watcher reports the refusal; with the user and password it follows the secret.
TEST(ConfigFromClusterMetadata, SendsCredentialsToANodeThatRequiresThem) {
  KeelProcess node({"--engine", "memory", "--shards", "1", "--set", "server.requirepass=s3cret"});
  ASSERT_TRUE(node.start()) << node.output();
  const int port = node.http_port();
  const std::string basic = "Basic ZGVmYXVsdDpzM2NyZXQ=";  // default:s3cret
  auto [s1, b1] = request(http::verb::put, port, "/v1/secrets/svc/locked", R"({"upstream": "db-1", "pool_size": 4})", basic);
  ASSERT_EQ(s1, 200u) << b1;
  Capacitor<AppConfig> anonymous({.source = "secret", .format = ConfigFormat::kJson}, check);
  auto refused = ConfigMetaWatcher::start(anonymous, {.port = static_cast<uint16_t>(port), .secret = "svc/locked",
                                                      .retry_initial = 20ms, .retry_max = 100ms});
  ASSERT_TRUE(refused) << refused.error().message;
  ASSERT_TRUE(eventually([&] { return anonymous.state() == ConfigState::kEmpty; }));
  EXPECT_NE(anonymous.last_error()->message.find("HTTP 401"), std::string::npos) << anonymous.last_error()->message;

  Capacitor<AppConfig> config({.source = "secret", .format = ConfigFormat::kJson, .debounce = 10ms}, check);
  auto watcher = ConfigMetaWatcher::start(config, {.port = static_cast<uint16_t>(port), .secret = "svc/locked",
                                                   .username = "default", .password = "s3cret",
                                                   .watch_timeout = 1000ms, .retry_initial = 20ms, .retry_max = 100ms});
  ASSERT_TRUE(watcher) << watcher.error().message;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy && config.get()->upstream == "db-1"; }))
      << config_state_name(config.state()) << " " << (config.last_error() ? config.last_error()->message : "");
  auto [s2, b2] = request(http::verb::put, port, "/v1/secrets/svc/locked", R"({"upstream": "db-2", "pool_size": 8})", basic);
  ASSERT_EQ(s2, 200u) << b2;
  ASSERT_TRUE(eventually([&] { return config.get() && config.get()->upstream == "db-2"; }));

  auto both = ConfigMetaWatcher::start(config, {.key = "k", .username = "a", .bearer_token = "t"});
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().message.find("one kind of credentials"), std::string::npos);
  auto injected = ConfigMetaWatcher::start(config, {.key = "k", .username = "a", .password = "x\r\nX-Evil: 1"});
  ASSERT_FALSE(injected);
  EXPECT_NE(injected.error().message.find("control characters"), std::string::npos);
}
