// The examples of docs/sdk-config.md, compiled and run. Each region between a begin marker
// ("//", space, "[doc:" NAME "]") and its end marker ("[/doc:" NAME "]") must equal the doc's
// ```cpp block that follows "<!-- example: NAME -->" (DocMatchesExamples checks it), so the
// doc cannot drift from code that builds.
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cassert>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "keel/capacitor.h"
#include "keel/config_file_watcher.h"
#include "keel/config_meta_watcher.h"
#include "keel/epoch_cache.h"
#include "keel/peers.h"
#include "keel/signal_metrics.h"
#include "keel/signals.h"

using namespace std::chrono_literals;
using namespace keel::sdk;

namespace {

TEST(DocExamples, PeerSelection) {
  ManualClock clock;
  // [doc:peers]
  PeerManager peers;
  std::vector<PeerSpec> nodes{
      {"n1", "10.0.0.1", 6380, {"primary", "read", "write"}},
      {"n2", "10.0.0.2", 6380, {"replica", "read"}},
      {"n3", "10.0.0.3", 6380, {"replica", "read"}},
  };
  if (auto ok = peers.set_static(nodes); !ok) {
    throw std::runtime_error(ok.error().message);
  }
  // Feed call results back: latency on success, a failure otherwise.
  peers.record_success("n2", 800us, clock.now());
  peers.record_success("n3", 2ms, clock.now());
  peers.record_failure("n1", clock.now());

  // The two best peers that can serve reads: n2 (fastest), then n3 (n1 just failed).
  std::vector<std::string> need{"read"};
  for (const PeerView& p : peers.select(2, need, clock.now())) {
    std::printf("%s %s:%u\n", p.id.c_str(), p.host.c_str(), unsigned{p.port});
  }
  // [/doc:peers]
  auto best = peers.select(2, need, clock.now());
  ASSERT_EQ(best.size(), 2u);
  EXPECT_EQ(best[0].id, "n2");
  EXPECT_EQ(best[1].id, "n3");
}

}  // namespace

// [doc:capacitor-type]
struct AppConfig {
  std::string upstream;
  int pool_size = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AppConfig, upstream, pool_size)

std::vector<std::string> check(const AppConfig& c) {
  std::vector<std::string> problems;
  if (c.pool_size < 1 || c.pool_size > 1024) {
    problems.push_back("pool_size: " + std::to_string(c.pool_size) + " is not in 1..1024");
  }
  return problems;
}
// [/doc:capacitor-type]

namespace {

TEST(DocExamples, ReactiveConfiguration) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("keel-doc-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "app.toml").string();
  std::ofstream(path) << "upstream = \"db:5432\"\npool_size = 8\n";
  SignalBus bus;
  // [doc:capacitor]
  Capacitor<AppConfig> config({.source = path, .format = ConfigFormat::kToml, .signals = &bus},
                              check);
  config.on_change([](const auto& previous, const auto& next) {
    std::printf("pool %d -> %d\n", previous ? previous->pool_size : 0, next->pool_size);
  });
  auto watcher = ConfigFileWatcher::start(config, path);  // loads now, then on every change
  if (!watcher) throw std::runtime_error(watcher.error().message);

  // Anywhere, any thread: a snapshot that stays valid however many reloads follow.
  std::shared_ptr<const AppConfig> now = config.get();
  // [/doc:capacitor]
  for (int i = 0; i < 2000 && config.version() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(config.version(), 1u);
  now = config.get();
  ASSERT_NE(now, nullptr);
  EXPECT_EQ(now->pool_size, 8);
  EXPECT_EQ(config.state(), ConfigState::kHealthy);
  (*watcher)->stop();
  std::filesystem::remove_all(dir);
}

TEST(DocExamples, ReactiveConfigurationFromClusterMetadata) {
  // Nothing listens on port 1: the example runs, and reports that it cannot reach the node.
  // (tests/integration/config_meta_test.cpp runs the same watcher against a real node.)
  const uint16_t http_port = 1;
  // [doc:capacitor-meta]
  Capacitor<AppConfig> config({.source = "meta:svc/app.json", .format = ConfigFormat::kJson},
                              check);
  auto watcher = ConfigMetaWatcher::start(config, {.host = "127.0.0.1",
                                                   .port = http_port,  // a member's HTTP port
                                                   .key = "svc/app.json"});
  if (!watcher) throw std::runtime_error(watcher.error().message);
  // Publish a version from anywhere:
  //   curl -X PUT --data-binary @app.json http://HOST:PORT/v1/meta/svc/app.json
  // [/doc:capacitor-meta]
  for (int i = 0; i < 2000 && config.state() == ConfigState::kLoading; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(config.state(), ConfigState::kEmpty);
  ASSERT_TRUE(config.last_error());
  EXPECT_NE(config.last_error()->message.find("cannot connect to 127.0.0.1:1"), std::string::npos)
      << config.last_error()->message;
  (*watcher)->stop();
}

TEST(DocExamples, ReactiveConfigurationManualClock) {
  // [doc:capacitor-test]
  ManualClock clock;
  MemorySource source("upstream = \"a\"\npool_size = 4\n");
  Capacitor<AppConfig> config({.source = "memory", .debounce = 100ms}, check);

  config.notify_changed(clock.now());  // what the file watcher does on an inotify event
  clock.advance(100ms);
  config.poll(source, clock.now());  // debounce elapsed: read, parse, validate, swap
  assert(config.state() == ConfigState::kHealthy && config.get()->pool_size == 4);

  source.set("upstream = \"a\"\npool_size = 0\n");  // invalid: refused
  config.notify_changed(clock.now());
  clock.advance(100ms);
  config.poll(source, clock.now());
  assert(config.state() == ConfigState::kDegraded && config.get()->pool_size == 4);
  // config.last_error()->message == "pool_size: 0 is not in 1..1024"
  // [/doc:capacitor-test]
  EXPECT_EQ(config.state(), ConfigState::kDegraded);
  EXPECT_EQ(config.get()->pool_size, 4);
  EXPECT_EQ(config.last_error()->message, "pool_size: 0 is not in 1..1024");
}

TEST(DocExamples, SignalsAndMetrics) {
  // [doc:signals]
  SignalBus bus;
  auto registry = std::make_shared<prometheus::Registry>();
  bus.subscribe(std::make_shared<SignalMetrics>(registry));  // metrics + spdlog lines
  bus.subscribe([](const Signal& s) {                        // or your own listener
    if (std::holds_alternative<ConfigRejected>(s)) std::puts(describe_signal(s).c_str());
  });

  // Give &bus to the parts that emit: PeerManager::Options::signals, Capacitor's options,
  // breakers, retries, limiters. Serve the registry with prometheus-cpp's Exposer, or:
  std::string text = prometheus::TextSerializer().Serialize(registry->Collect());
  // [/doc:signals]
  bus.emit(ConfigRejected{"app.toml", "bad", 1, Instant{}});
  text = prometheus::TextSerializer().Serialize(registry->Collect());
  EXPECT_NE(text.find("keel_sdk_config_rejected_total{source=\"app.toml\"} 1"), std::string::npos);
}

TEST(DocExamples, EpochCache) {
  // [doc:epoch-cache]
  EpochCache<std::string, std::string> cache({.max_entries = 10'000, .max_marks = 10'000});

  cache.put("user:1", "alice", /*epoch=*/7);  // value read from the server at epoch 7
  cache.invalidate({"user:1"}, 9);           // the server says: user:1 changed at epoch 9
  assert(!cache.get("user:1"));              // gone
  assert(cache.put("user:1", "alice", 8) == EpochPut::kStale);  // a late read: refused
  cache.put("user:1", "alicia", 9);
  assert(cache.is_fresh("user:1", 9));

  cache.invalidate_all(12);  // epoch boundary (e.g. the partition moved): older fills go
  assert(!cache.is_fresh("user:1", 0));
  // [/doc:epoch-cache]
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.put("user:1", "x", 11), EpochPut::kStale);
}

// ---- the doc matches the examples ----------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Strips the common leading indentation of the lines.
std::string dedent(const std::string& block) {
  std::vector<std::string> lines;
  std::istringstream in(block);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  size_t indent = std::string::npos;
  for (const auto& l : lines) {
    if (l.find_first_not_of(' ') == std::string::npos) continue;
    indent = std::min(indent, l.find_first_not_of(' '));
  }
  std::string out;
  for (const auto& l : lines) {
    out += l.size() >= indent ? l.substr(indent) : std::string();
    out += '\n';
  }
  return out;
}

// The markers are built at run time so that this function's own text does not contain them.
const std::string kBegin = std::string("// [") + "doc:";
const std::string kEnd = std::string("// [/") + "doc:";

std::map<std::string, std::string> source_regions(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while ((pos = text.find(kBegin, pos)) != std::string::npos) {
    const size_t name_end = text.find(']', pos);
    if (name_end == std::string::npos) break;
    const std::string name = text.substr(pos + kBegin.size(), name_end - pos - kBegin.size());
    const size_t body = text.find('\n', name_end) + 1;
    const size_t end_marker = text.find(kEnd + name + "]", body);
    if (end_marker == std::string::npos) {
      ADD_FAILURE() << "example '" << name << "' has no end marker";
      break;
    }
    const size_t body_end = text.rfind('\n', end_marker) + 1;
    out[name] = dedent(text.substr(body, body_end - body));
    pos = end_marker + 1;
  }
  return out;
}

std::map<std::string, std::string> doc_blocks(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while ((pos = text.find("<!-- example: ", pos)) != std::string::npos) {
    const size_t name_end = text.find(" -->", pos);
    if (name_end == std::string::npos) break;
    const std::string name = text.substr(pos + 14, name_end - pos - 14);
    const size_t fence = text.find("```cpp\n", name_end);
    if (fence == std::string::npos) break;
    const size_t body = fence + 7;
    const size_t close = text.find("\n```", body);
    if (close == std::string::npos) break;
    out[name] = text.substr(body, close + 1 - body);
    pos = close;
  }
  return out;
}

TEST(DocExamples, DocMatchesExamples) {
  const auto src = source_regions(read_file(KEEL_SOURCE_DIR "/tests/unit/sdk_config/doc_examples_test.cpp"));
  const auto doc = doc_blocks(read_file(KEEL_SOURCE_DIR "/docs/sdk-config.md"));
  ASSERT_EQ(src.size(), 7u);
  for (const auto& [name, code] : src) {
    auto it = doc.find(name);
    ASSERT_NE(it, doc.end()) << "docs/sdk-config.md has no '<!-- example: " << name << " -->'";
    EXPECT_EQ(it->second, code) << "docs/sdk-config.md example '" << name
                                << "' differs from tests/unit/sdk_config/doc_examples_test.cpp";
  }
  for (const auto& [name, code] : doc) {
    EXPECT_TRUE(src.count(name)) << "doc example '" << name << "' is not compiled by any test";
  }
}

}  // namespace
