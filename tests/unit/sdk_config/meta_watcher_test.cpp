// ConfigMetaWatcher's pure part (parsing the node's answers, building request targets) and its
// shell against a scripted HTTP server: 410 leads to a fresh read, oversized and malformed
// answers are reported by name and keep the Capacitor's last good value.
// GCC 12 with -fsanitize=address reports a false "maybe uninitialized" inside Beast's parser.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <mutex>
#include <thread>

#include "keel/capacitor.h"
#include "keel/config_meta_watcher.h"

namespace {

using namespace keel::sdk;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

TEST(MetaParsing, ValueAnswers) {
  auto v = parse_meta_value(R"({"create_revision":2,"key":"k","mod_revision":7,"value":"a = 1","version":3})", "k");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->value, "a = 1");
  EXPECT_EQ(v->mod_revision, 7u);
  auto b64 = parse_meta_value(R"({"key":"k","mod_revision":1,"value_base64":"eD0x"})", "k");
  ASSERT_TRUE(b64);
  EXPECT_EQ(b64->value, "x=1");
  for (const char* bad : {"", "[]", "{", R"({"value":"x"})", R"({"mod_revision":1})",
                          R"({"mod_revision":1,"value_base64":"*!"})", R"({"mod_revision":-1,"value":"x"})"}) {
    auto r = parse_meta_value(bad, "k");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ConfigErrc::kRead);
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(MetaParsing, WatchAnswersKeepOnlyTheKeyAndItsNewestEvent) {
  auto w = parse_meta_watch(R"({"events":[
      {"kv":{"key":"cfg","mod_revision":4,"value":"one"},"revision":4,"type":"put"},
      {"kv":{"key":"cfg.bak","mod_revision":5,"value":"other"},"revision":5,"type":"put"},
      {"kv":{"key":"cfg","mod_revision":6,"value":"two"},"revision":6,"type":"put"}],"revision":6})", "cfg");
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->revision, 6u);
  EXPECT_EQ(w->events, 2u);
  ASSERT_TRUE(w->latest && *w->latest);
  EXPECT_EQ(**w->latest, "two");

  auto del = parse_meta_watch(R"({"events":[{"kv":{"key":"cfg","value":""},"revision":9,"type":"delete"}],"revision":9})", "cfg");
  ASSERT_TRUE(del);
  ASSERT_TRUE(del->latest);
  EXPECT_FALSE(*del->latest);

  auto none = parse_meta_watch(R"({"events":[],"revision":3})", "cfg");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->latest);
  EXPECT_EQ(none->revision, 3u);

  for (const char* bad : {R"({"events":[]})", R"({"revision":1})", R"({"events":[1],"revision":1})",
                          R"({"events":[{"kv":{"key":"cfg"},"type":"put","revision":2}],"revision":2})",
                          R"({"events":[{"kv":{"key":"cfg","value":"x"},"type":"zap","revision":2}],"revision":2})"}) {
    EXPECT_FALSE(parse_meta_watch(bad, "cfg")) << bad;
  }
}

TEST(MetaParsing, TargetsEncodeTheKeyAndCheckOptions) {
  MetaWatchOptions o;
  o.key = "svc/a b&c";
  o.domain = "team-1";
  EXPECT_EQ(*meta_value_target(o), "/v1/meta/svc/a%20b%26c?domain=team-1");
  EXPECT_EQ(*meta_watch_target(o, 12, 500ms),
            "/v1/meta/watch?domain=team-1&prefix=svc%2Fa%20b%26c&from_revision=12&timeout_ms=500");
  EXPECT_EQ(*meta_watch_target(o, std::nullopt, 0ms), "/v1/meta/watch?domain=team-1&prefix=svc%2Fa%20b%26c&timeout_ms=0");
  o.domain = "UPPER";
  auto bad = meta_value_target(o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ConfigErrc::kInvalid);
  EXPECT_NE(bad.error().message.find("domain 'UPPER'"), std::string::npos);
}

// An HTTP/1.1 server on its own thread answering each request with the script's (status, body).
class ScriptedHttp {
 public:
  using Script = std::function<std::pair<unsigned, std::string>(const std::string& target)>;
  explicit ScriptedHttp(Script s) : script_(std::move(s)), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ScriptedHttp() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  asio::awaitable<void> accept() {
    for (;;) {
      auto sock = co_await acceptor_.async_accept(asio::use_awaitable);
      asio::co_spawn(io_, session(std::move(sock)), asio::detached);
    }
  }
  asio::awaitable<void> session(asio::ip::tcp::socket sock) {
    beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      co_await http::async_read(sock, buf, req, asio::use_awaitable);
      const std::string target(req.target());
      {
        std::lock_guard lock(mu_);
        targets_.push_back(target);
      }
      auto [status, body] = script_(target);
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type, "application/json");
      res.body() = std::move(body);
      res.prepare_payload();
      res.keep_alive(true);
      co_await http::async_write(sock, res, asio::use_awaitable);
    }
  }

  Script script_;
  asio::io_context io_{1};
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> targets_;
};

template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 1000 && !pred(); ++i) std::this_thread::sleep_for(10ms);
  return pred();
}

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

TEST(MetaWatcherShell, OutOfRangeLeadsToAFreshReadNotAFailure) {
  std::atomic<int> reads{0}, gone{0};
  ScriptedHttp server([&](const std::string& t) -> std::pair<unsigned, std::string> {
    if (starts_with(t, "/v1/meta/watch") && t.find("from_revision") == std::string::npos)
      return {200, R"({"events":[],"revision":100})"};
    if (starts_with(t, "/v1/meta/cfg")) {
      const int n = ++reads;
      return {200, n == 1 ? R"({"key":"cfg","mod_revision":50,"value":"{\"n\": 1}"})"
                          : R"({"key":"cfg","mod_revision":120,"value":"{\"n\": 2}"})"};
    }
    if (t.find("from_revision=51") != std::string::npos) {  // trimmed history: only once
      ++gone;
      return {410, R"({"error":{"code":"OUT_OF_RANGE","message":"revision 51 is compacted"}})"};
    }
    return {200, R"({"events":[],"revision":120})"};  // nothing new
  });
  Capacitor<nlohmann::json> config({.source = "meta", .format = ConfigFormat::kJson, .debounce = 1ms});
  auto w = ConfigMetaWatcher::start(config, {.port = server.port(), .key = "cfg", .watch_timeout = 50ms,
                                             .retry_initial = 5ms, .retry_max = 20ms});
  ASSERT_TRUE(w) << w.error().message;
  ASSERT_TRUE(eventually([&] { return config.version() == 2; }));
  EXPECT_EQ((*config.get())["n"], 2);
  EXPECT_EQ(config.state(), ConfigState::kHealthy);
  EXPECT_EQ(gone.load(), 1);
  EXPECT_EQ((*w)->failures(), 0u);
  EXPECT_GE((*w)->reads(), 2u);
  ASSERT_TRUE(eventually([&] {
    for (const auto& t : server.targets())
      if (t.find("from_revision=121") != std::string::npos) return true;
    return false;
  })) << "after the re-read it watches from the new mod_revision + 1";
}

TEST(MetaWatcherShell, OversizedAndMalformedAnswersAreReportedAndTheLastGoodValueStays) {
  std::atomic<int> mode{0};  // 0 good, 1 oversized, 2 not JSON
  ScriptedHttp server([&](const std::string& t) -> std::pair<unsigned, std::string> {
    if (mode == 1) return {200, std::string(5000, ' ')};  // every answer, so the state holds still
    if (mode == 2) return {200, "<html>proxy error</html>"};
    if (starts_with(t, "/v1/meta/watch") && t.find("from_revision") == std::string::npos)
      return {200, R"({"events":[],"revision":1})"};
    if (starts_with(t, "/v1/meta/cfg")) return {200, R"({"key":"cfg","mod_revision":1,"value":"{\"n\": 1}"})"};
    return {200, R"({"events":[],"revision":1})"};
  });
  Capacitor<nlohmann::json> config({.source = "meta", .format = ConfigFormat::kJson});
  auto w = ConfigMetaWatcher::start(config, {.port = server.port(), .key = "cfg", .watch_timeout = 20ms,
                                             .retry_initial = 5ms, .retry_max = 20ms,
                                             .max_response_bytes = 1024});
  ASSERT_TRUE(w) << w.error().message;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy; }));
  mode = 1;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kDegraded; }));
  EXPECT_EQ(config.last_error()->code, ConfigErrc::kTooLarge);
  EXPECT_NE(config.last_error()->message.find("larger than 1024 bytes"), std::string::npos) << config.last_error()->message;
  EXPECT_EQ((*config.get())["n"], 1);
  mode = 0;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kHealthy; })) << "recovers with a re-read";
  mode = 2;
  ASSERT_TRUE(eventually([&] { return config.state() == ConfigState::kDegraded; }));
  EXPECT_NE(config.last_error()->message.find("not a JSON object"), std::string::npos) << config.last_error()->message;
  EXPECT_EQ((*config.get())["n"], 1);
  EXPECT_EQ(config.version(), 1u);
}

}  // namespace
