#include "keel/capacitor.h"
#include "keel/config_file_watcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "keel/signals.h"

namespace keel::sdk {
namespace {

using namespace std::chrono_literals;

struct ServerConfig {
  std::string host;
  int port = 0;
  std::vector<std::string> tags;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ServerConfig, host, port, tags)

std::vector<std::string> validate(const ServerConfig& c) {
  std::vector<std::string> problems;
  if (c.host.empty()) problems.push_back("host: must not be empty");
  if (c.port < 1 || c.port > 65535) {
    problems.push_back("port: " + std::to_string(c.port) + " is not in 1..65535");
  }
  return problems;
}

std::string toml(std::string host, int port) {
  return "host = \"" + host + "\"\nport = " + std::to_string(port) + "\ntags = [\"a\"]\n";
}

Instant at(Duration d) { return Instant(d); }

struct Fixture : ::testing::Test {
  SignalBus bus;
  std::shared_ptr<SignalRecorder> recorder = std::make_shared<SignalRecorder>();
  Fixture() { bus.subscribe(recorder); }
  CapacitorCore::Options options() {
    CapacitorCore::Options o;
    o.source = "server.toml";
    o.debounce = 100ms;
    o.max_delay = 2s;
    o.signals = &bus;
    return o;
  }
};

using CapacitorTest = Fixture;

TEST_F(CapacitorTest, DebounceWaitsForQuietAndCapsTheDelay) {
  Capacitor<ServerConfig> c(options(), validate);
  EXPECT_FALSE(c.reload_due(at(0ms)));
  EXPECT_EQ(c.next_deadline(), std::nullopt);
  c.notify_changed(at(0ms));
  EXPECT_EQ(c.next_deadline(), at(100ms));
  EXPECT_FALSE(c.reload_due(at(50ms)));
  c.notify_changed(at(80ms));  // another change: wait for quiet again
  EXPECT_FALSE(c.reload_due(at(179ms)));
  EXPECT_TRUE(c.reload_due(at(180ms)));
  EXPECT_FALSE(c.reload_due(at(181ms)));  // once per burst
  // A source that never goes quiet still reloads after max_delay.
  Duration t = 1s;
  c.notify_changed(at(t));
  int due = 0;
  for (int i = 0; i < 50; ++i) {
    t += 50ms;
    c.notify_changed(at(t));
    if (c.reload_due(at(t))) {
      ++due;
      EXPECT_EQ(t, 3s);  // first change at 1s + max_delay 2s
    }
  }
  EXPECT_EQ(due, 1);
}

TEST_F(CapacitorTest, KeepsLastGoodValueAndReportsState) {
  Capacitor<ServerConfig> c(options(), validate);
  std::vector<std::pair<std::string, std::string>> changes;
  c.on_change([&](const auto& prev, const auto& next) {
    changes.emplace_back(prev ? prev->host : "-", next ? next->host : "-");
  });
  EXPECT_EQ(c.state(), ConfigState::kLoading);
  EXPECT_EQ(c.get(), nullptr);

  auto r = c.load(toml("a", 1), at(0ms));
  EXPECT_EQ(r.outcome, CapacitorCore::Outcome::kApplied);
  EXPECT_EQ(r.version, 1u);
  EXPECT_EQ(c.state(), ConfigState::kHealthy);
  auto first = c.get();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->host, "a");

  // Broken syntax: refused, the last good value stays, the error says where.
  r = c.load(std::string("host = \"b\"\nport = = 2\n"), at(1ms));
  EXPECT_EQ(r.outcome, CapacitorCore::Outcome::kRejected);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->code, ConfigErrc::kParse);
  EXPECT_NE(r.error->message.find("line 2"), std::string::npos) << r.error->message;
  EXPECT_EQ(c.state(), ConfigState::kDegraded);
  EXPECT_EQ(c.get(), first);
  EXPECT_EQ(c.version(), 1u);

  // Valid syntax but fails validation.
  r = c.load(toml("b", 70000), at(2ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kInvalid);
  EXPECT_NE(r.error->message.find("70000 is not in 1..65535"), std::string::npos);
  // Wrong shape for T.
  r = c.load(std::string("host = \"b\"\n"), at(3ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kDecode);
  EXPECT_EQ(c.last_error()->code, ConfigErrc::kDecode);
  EXPECT_EQ(c.get()->host, "a");

  r = c.load(toml("b", 2), at(4ms));
  EXPECT_EQ(r.outcome, CapacitorCore::Outcome::kApplied);
  EXPECT_EQ(c.state(), ConfigState::kHealthy);
  EXPECT_EQ(c.version(), 2u);
  EXPECT_FALSE(c.last_error().has_value());
  EXPECT_EQ(first->host, "a");  // an old snapshot is never mutated
  EXPECT_EQ(c.get()->host, "b");

  // The same text again changes nothing and calls nobody.
  r = c.load(toml("b", 2), at(5ms));
  EXPECT_EQ(r.outcome, CapacitorCore::Outcome::kUnchanged);
  EXPECT_EQ(changes, (std::vector<std::pair<std::string, std::string>>{{"-", "a"}, {"a", "b"}}));

  EXPECT_EQ(recorder->count("config_rejected"), 3u);
  EXPECT_EQ(recorder->count("config_applied"), 2u);
  // Loading->Healthy, Healthy->Degraded, Degraded->Healthy.
  EXPECT_EQ(recorder->count("config_state_changed"), 3u);
}

TEST_F(CapacitorTest, EmptyUntilSomethingGoodArrivesAndDegradedReturnsToHealthy) {
  Capacitor<ServerConfig> c(options(), validate);
  MemorySource src;
  src.set_error("no such file");
  EXPECT_EQ(c.load(src.read(), at(0ms)).outcome, CapacitorCore::Outcome::kRejected);
  EXPECT_EQ(c.state(), ConfigState::kEmpty);
  EXPECT_EQ(c.get(), nullptr);
  EXPECT_EQ(c.last_error()->code, ConfigErrc::kRead);
  src.set(toml("x", 9));
  c.load(src.read(), at(1ms));
  EXPECT_EQ(c.state(), ConfigState::kHealthy);
  src.set("garbage");
  c.load(src.read(), at(2ms));
  EXPECT_EQ(c.state(), ConfigState::kDegraded);
  src.set(toml("x", 9));  // the source is back to the live content
  EXPECT_EQ(c.load(src.read(), at(3ms)).outcome, CapacitorCore::Outcome::kUnchanged);
  EXPECT_EQ(c.state(), ConfigState::kHealthy);
}

TEST_F(CapacitorTest, PollDrivesDebouncedReloadsFromASource) {
  Capacitor<ServerConfig> c(options(), validate);
  MemorySource src(toml("a", 1));
  c.notify_changed(at(0ms));
  EXPECT_FALSE(c.poll(src, at(99ms)).has_value());
  auto r = c.poll(src, at(100ms));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcome, CapacitorCore::Outcome::kApplied);
  src.set(toml("b", 2));
  EXPECT_FALSE(c.poll(src, at(10s)).has_value());  // nobody said it changed
  c.notify_changed(at(10s));
  EXPECT_EQ(c.poll(src, at(10s + 100ms))->outcome, CapacitorCore::Outcome::kApplied);
  EXPECT_EQ(c.get()->host, "b");
}

TEST_F(CapacitorTest, JsonFormatAndBounds) {
  auto o = options();
  o.format = ConfigFormat::kJson;
  o.max_bytes = 256;
  Capacitor<ServerConfig> c(o, validate);
  EXPECT_EQ(c.load(std::string(R"({"host": "j", "port": 5, "tags": []})"), at(0ms)).outcome,
            CapacitorCore::Outcome::kApplied);
  EXPECT_EQ(c.get()->port, 5);
  auto r = c.load(std::string(300, ' '), at(1ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kTooLarge);
  EXPECT_NE(r.error->message.find("at most 256"), std::string::npos);
  r = c.load(std::string(100, '[') + std::string(100, ']'), at(2ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kParse);
  EXPECT_NE(r.error->message.find("nested deeper"), std::string::npos);
  r = c.load(std::string(R"({"host": "j",)"), at(3ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kParse);
  EXPECT_EQ(c.get()->host, "j");
}

TEST_F(CapacitorTest, ThrowingUserCodeIsAnErrorNotACrash) {
  Capacitor<ServerConfig> c(
      options(),
      [](const nlohmann::json& doc) -> std::expected<ServerConfig, std::string> {
        if (doc.contains("boom")) throw std::runtime_error("decoder exploded");
        return doc.get<ServerConfig>();
      },
      [](const ServerConfig& v) -> std::vector<std::string> {
        if (v.port == 13) throw std::runtime_error("unlucky");
        return {};
      });
  int calls = 0;
  c.on_change([&](const auto&, const auto&) { throw std::runtime_error("callback"); });
  c.on_change([&](const auto&, const auto&) { ++calls; });
  EXPECT_EQ(c.load(toml("a", 1), at(0ms)).outcome, CapacitorCore::Outcome::kApplied);
  EXPECT_EQ(calls, 1);  // the second callback ran although the first threw
  auto r = c.load(std::string("boom = 1\n"), at(1ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kDecode);
  EXPECT_EQ(r.error->message, "decoder exploded");
  r = c.load(toml("a", 13), at(2ms));
  EXPECT_EQ(r.error->code, ConfigErrc::kInvalid);
  EXPECT_EQ(r.error->message, "validator threw: unlucky");
  EXPECT_EQ(c.get()->port, 1);
}

TEST(ConfigText, TomlBecomesJson) {
  auto doc = parse_config_text(
      "a = 1\nb = 2.5\nc = true\nd = 1979-05-27\n[t]\nx = [\"p\", \"q\"]\n", ConfigFormat::kToml,
      1024);
  ASSERT_TRUE(doc.has_value()) << doc.error().message;
  EXPECT_EQ((*doc)["a"], 1);
  EXPECT_EQ((*doc)["b"], 2.5);
  EXPECT_EQ((*doc)["c"], true);
  EXPECT_EQ((*doc)["d"], "1979-05-27");
  EXPECT_EQ((*doc)["t"]["x"][1], "q");
  EXPECT_EQ(config_format_for_path("/etc/app.toml"), ConfigFormat::kToml);
  EXPECT_EQ(config_format_for_path("app.json"), ConfigFormat::kJson);
  EXPECT_EQ(config_format_for_path("app.yaml"), std::nullopt);
}

TEST_F(CapacitorTest, ReadersAlwaysSeeAWholeValueWhileReloading) {
  Capacitor<ServerConfig> c(options(), validate);
  c.load(toml("h1", 1), at(0ms));
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      while (!done.load()) {
        auto s = c.get();
        if (!s || s->host != "h" + std::to_string(s->port)) torn.fetch_add(1);
      }
    });
  }
  for (int i = 2; i < 300; ++i) c.load(toml("h" + std::to_string(i), i), at(Duration(i)));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(c.version(), 299u);
}

// The shell for real: a file on disk, inotify, the steady clock. Waits are bounded by a
// generous deadline and assert nothing about how long things took.
bool wait_until(const std::function<bool()>& cond) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

void write_atomically(const std::filesystem::path& path, const std::string& text) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::filesystem::rename(tmp, path);
}

TEST_F(CapacitorTest, FileWatcherReloadsWhenTheFileChanges) {
  auto dir = std::filesystem::temp_directory_path() /
             ("keel-capacitor-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto path = dir / "server.toml";
  {
    std::ofstream out(path);
    out << toml("first", 1);
  }
  auto o = options();
  o.debounce = 20ms;
  o.max_delay = 200ms;
  Capacitor<ServerConfig> c(o, validate);
  auto watcher = ConfigFileWatcher::start(c, path.string());
  ASSERT_TRUE(watcher.has_value()) << watcher.error().message;
  ASSERT_TRUE(wait_until([&] { return c.version() == 1; }));
  EXPECT_EQ(c.get()->host, "first");

  write_atomically(path, toml("second", 2));  // rename over it, like editors do
  ASSERT_TRUE(wait_until([&] { return c.version() == 2; }));
  EXPECT_EQ(c.get()->host, "second");

  {
    std::ofstream out(path, std::ios::trunc);  // in place, invalid
    out << toml("third", 0);
  }
  ASSERT_TRUE(wait_until([&] { return c.state() == ConfigState::kDegraded; }));
  EXPECT_EQ(c.get()->host, "second");
  EXPECT_EQ(c.last_error()->code, ConfigErrc::kInvalid);

  {
    std::ofstream out(dir / "other.toml");  // a neighbour: not ours
    out << toml("x", 1);
  }
  write_atomically(path, toml("fourth", 4));
  ASSERT_TRUE(wait_until([&] { return c.version() == 3; }));
  EXPECT_EQ(c.get()->host, "fourth");
  EXPECT_EQ(c.state(), ConfigState::kHealthy);
  (*watcher)->stop();
  std::filesystem::remove_all(dir);
}

TEST_F(CapacitorTest, FileWatcherStartsEmptyUntilTheFileAppears) {
  auto dir = std::filesystem::temp_directory_path() /
             ("keel-capacitor-late-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto path = dir / "late.json";
  auto o = options();
  o.format = ConfigFormat::kJson;
  o.debounce = 10ms;
  Capacitor<ServerConfig> c(o, validate);
  auto watcher = ConfigFileWatcher::start(c, path.string());
  ASSERT_TRUE(watcher.has_value());
  ASSERT_TRUE(wait_until([&] { return c.state() == ConfigState::kEmpty; }));
  EXPECT_EQ(c.get(), nullptr);
  EXPECT_EQ(c.last_error()->code, ConfigErrc::kRead);
  write_atomically(path, R"({"host": "late", "port": 3, "tags": []})");
  ASSERT_TRUE(wait_until([&] { return c.state() == ConfigState::kHealthy; }));
  EXPECT_EQ(c.get()->host, "late");
  std::filesystem::remove(path);  // deleted: keep the last good value
  ASSERT_TRUE(wait_until([&] { return c.state() == ConfigState::kDegraded; }));
  EXPECT_EQ(c.get()->host, "late");
  watcher->reset();  // stops and joins
  std::filesystem::remove_all(dir);
}

TEST(ConfigFileWatcher, RefusesAnUnwatchableDirectory) {
  Capacitor<ServerConfig> c(CapacitorCore::Options{}, validate);
  auto w = ConfigFileWatcher::start(c, "/nonexistent-keel-dir/x.toml");
  ASSERT_FALSE(w.has_value());
  EXPECT_NE(w.error().message.find("/nonexistent-keel-dir"), std::string::npos);
}

}  // namespace
}  // namespace keel::sdk
