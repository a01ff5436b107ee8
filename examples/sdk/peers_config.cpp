// peers_config: the peer list of a service comes from a TOML file that a Capacitor watches;
// a PeerManager ranks the peers by the call results fed back to it; SignalMetrics counts what
// happened. Shows the installed keel::peers, keel::config, keel::epoch_cache and
// keel::signal_metrics working together.
//   sdk_peers_config DIR      (writes DIR/peers.toml and edits it while it runs)
#include <keel/capacitor.h>
#include <keel/clock.h>
#include <keel/config_file_watcher.h>
#include <keel/epoch_cache.h>
#include <keel/peers.h>
#include <keel/signal_metrics.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace keel::sdk;
using namespace std::chrono_literals;

struct Peer {
  std::string id, host;
  int port = 0;
  std::vector<std::string> capabilities;
};
struct ServiceConfig {
  std::vector<Peer> peers;
  int replicas = 1;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Peer, id, host, port, capabilities)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ServiceConfig, peers, replicas)

std::vector<std::string> check(const ServiceConfig& c) {
  std::vector<std::string> problems;
  if (c.peers.empty()) problems.push_back("peers: at least one peer is needed");
  if (c.replicas < 1 || c.replicas > static_cast<int>(c.peers.size()))
    problems.push_back("replicas: " + std::to_string(c.replicas) + " is not in 1..peers");
  return problems;
}

void write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text;
  std::rename(tmp.c_str(), path.c_str());  // atomic replace, as editors and deploy tools do
}

// Waits (bounded) until the capacitor's version or state changes to what the caller expects.
template <class Pred>
bool wait_for(Pred pred) {
  for (int i = 0; i < 500 && !pred(); ++i) std::this_thread::sleep_for(10ms);
  return pred();
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string path = std::string(argv[1]) + "/peers.toml";
  write_file(path, R"(replicas = 2
[[peers]]
id = "n1"
host = "10.0.0.1"
port = 6380
capabilities = ["primary", "read", "write"]
[[peers]]
id = "n2"
host = "10.0.0.2"
port = 6380
capabilities = ["replica", "read"]
)");

  SignalBus bus;
  auto registry = std::make_shared<prometheus::Registry>();
  bus.subscribe(std::make_shared<SignalMetrics>(registry, SignalMetrics::Options{.log = false}));

  Capacitor<ServiceConfig> config({.source = "peers", .format = ConfigFormat::kToml,
                                   .debounce = 20ms, .signals = &bus},
                                  check);
  // PeerManager is not thread-safe: the watcher thread (on_change) and main share it under a
  // mutex.
  std::mutex mu;
  PeerManager peers({.signals = &bus});
  std::atomic<int> applied{0};
  const Clock& clock = SteadyClock::instance();
  // Each accepted version replaces the peer set; peers that stay keep their statistics.
  config.on_change([&](const auto&, const auto& next) {
    std::vector<PeerSpec> specs;
    for (const Peer& p : next->peers)
      specs.push_back({p.id, p.host, static_cast<uint16_t>(p.port), p.capabilities});
    std::lock_guard lock(mu);
    applied.fetch_add(1);
    if (auto ok = peers.set_static(specs, clock.now()); !ok)
      std::fprintf(stderr, "peers: %s\n", ok.error().message.c_str());
  });
  auto watcher = ConfigFileWatcher::start(config, path);
  if (!watcher) {
    std::fprintf(stderr, "watch: %s\n", watcher.error().message.c_str());
    return 1;
  }
  if (!wait_for([&] { return applied.load() == 1; })) {
    std::fprintf(stderr, "config never loaded: %s\n",
                 config.last_error() ? config.last_error()->message.c_str() : "?");
    return 1;
  }
  std::lock_guard lock(mu);
  std::printf("config v%llu peers=%zu\n", static_cast<unsigned long long>(config.version()),
              peers.size());

  // Call results: n1 failed three times (down), n2 answered in 2 ms.
  for (int i = 0; i < 3; ++i) (void)peers.record_failure("n1", clock.now());
  (void)peers.record_success("n2", 2ms, clock.now());
  std::vector<std::string> read{"read"};
  std::string best;
  for (const PeerView& p : peers.select(1, read, clock.now())) best = p.id;
  std::printf("best reader=%s n1=%s\n", best.c_str(),
              std::string(peer_status_name(peers.status("n1", clock.now()))).c_str());

  // An invalid edit is refused; the last good value stays live.
  write_file(path, "replicas = 5\n[[peers]]\nid = \"n1\"\nhost = \"10.0.0.1\"\nport = 6380\n"
                   "capabilities = [\"read\"]\n");
  if (!wait_for([&] { return config.state() == ConfigState::kDegraded; })) return 1;
  std::printf("degraded kept=%zu error=%s\n", config.get()->peers.size(),
              config.last_error()->message.c_str());

  // Values read at an epoch; a newer epoch invalidates them.
  EpochCache<std::string, std::string> cache;
  cache.put("route:/users", "n2", config.version());
  cache.invalidate_all(config.version() + 1);
  std::printf("cache fresh=%s\n", cache.is_fresh("route:/users", 0) ? "yes" : "no");

  std::string text = prometheus::TextSerializer().Serialize(registry->Collect());
  bool counted = text.find("keel_sdk_config_rejected_total{source=\"peers\"} 1") != std::string::npos &&
                 text.find("keel_sdk_peer_status_changes_total{peer=\"n1\",to=\"down\"} 1") != std::string::npos;
  std::printf("metrics %s\n", counted ? "ok" : "missing");
  (*watcher)->stop();
  return counted ? 0 : 1;
}
