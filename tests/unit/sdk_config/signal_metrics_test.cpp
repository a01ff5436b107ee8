#include "keel/signal_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "keel/signals.h"

namespace keel::sdk {
namespace {

using namespace std::chrono_literals;

std::string exposition(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

struct Capture {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
  Capture() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_pattern("%l %v");
    logger = std::make_shared<spdlog::logger>("signals-test", sink);
    logger->set_level(spdlog::level::debug);
  }
};

TEST(SignalMetrics, ExpositionCountsEventsAndLogsThem) {
  auto registry = std::make_shared<prometheus::Registry>();
  Capture cap;
  SignalBus bus;
  bus.subscribe(std::make_shared<SignalMetrics>(registry, SignalMetrics::Options{true, cap.logger}));
  const Instant now{};

  EXPECT_EQ(exposition(*registry).find("keel_sdk_config_rejected_total{"), std::string::npos);

  bus.emit(BreakerTransition{"db", BreakerState::kClosed, BreakerState::kOpen,
                             "failure rate 60.0% >= 50.0%", 60.0, 0.0, now});
  bus.emit(RetryScheduled{"get", 1, 10ms, now});
  bus.emit(RetryScheduled{"get", 2, 20ms, now});
  bus.emit(RequestDenied{"api", "tenant-7", 5ms, now});
  bus.emit(ConfigRejected{"app.toml", "port: 0 is not in 1..65535", 2, now});
  bus.emit(ConfigRejected{"app.toml", "invalid TOML at line 3", 2, now});
  bus.emit(ConfigApplied{"app.toml", 2, now});
  bus.emit(ConfigStateChanged{"app.toml", ConfigState::kHealthy, ConfigState::kDegraded, now});
  bus.emit(PeerStatusChanged{"node-1", "up", "down", now});

  const std::string text = exposition(*registry);
  EXPECT_NE(text.find("keel_sdk_breaker_transitions_total{breaker=\"db\",from=\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("keel_sdk_breaker_state{breaker=\"db\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("keel_sdk_retries_total{policy=\"get\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("keel_sdk_requests_denied_total{limiter=\"api\"} 1"), std::string::npos);
  EXPECT_EQ(text.find("tenant-7"), std::string::npos);  // keys are not labels
  EXPECT_NE(text.find("keel_sdk_config_rejected_total{source=\"app.toml\"} 2"), std::string::npos);
  EXPECT_NE(text.find("keel_sdk_config_applied_total{source=\"app.toml\"} 1"), std::string::npos);
  EXPECT_NE(text.find("keel_sdk_config_version{source=\"app.toml\"} 2"), std::string::npos);
  EXPECT_NE(text.find("keel_sdk_config_state{source=\"app.toml\"} 2"), std::string::npos);
  EXPECT_NE(text.find("keel_sdk_peer_status_changes_total{peer=\"node-1\",to=\"down\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("keel_sdk_signals_total{signal=\"config_rejected\"} 2"), std::string::npos);

  cap.logger->flush();
  const std::string log = cap.out.str();
  EXPECT_NE(log.find("warning"), std::string::npos) << log;
  EXPECT_NE(log.find("port: 0 is not in 1..65535"), std::string::npos) << log;
  EXPECT_NE(log.find("tenant-7"), std::string::npos) << log;  // the log line keeps the key
  size_t lines = 0;
  for (char c : log) lines += c == '\n';
  EXPECT_EQ(lines, 9u);
}

// promtool (Debian package prometheus, installed by scripts/deps.sh test) lints the exposition.
TEST(SignalMetrics, ExpositionPassesPromtool) {
  if (::access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool is not installed";
  auto registry = std::make_shared<prometheus::Registry>();
  SignalBus bus;
  bus.subscribe(std::make_shared<SignalMetrics>(registry, SignalMetrics::Options{false, {}, 100}));
  const Instant now{};
  bus.emit(BreakerTransition{"db", BreakerState::kClosed, BreakerState::kOpen, "r", 60, 0, now});
  bus.emit(CallNotPermitted{"db", BreakerState::kOpen, 1s, now});
  bus.emit(RetryGaveUp{"get", 3, GiveUpReason::kBudget, now});
  bus.emit(BulkheadRejected{"pool", 8, 16, true, now});
  bus.emit(TimeoutExpired{"call", 1s, now});
  bus.emit(FallbackUsed{"read", "primary", "cache", 1, now});
  bus.emit(HedgeFired{"get", 1, 5ms, now});
  bus.emit(ConfigRolledBack{"pipe", 3, 2, now});
  const std::string path =
      (std::filesystem::temp_directory_path() / ("keel-metrics-" + std::to_string(::getpid())))
          .string();
  {
    std::ofstream out(path);
    out << exposition(*registry);
  }
  const std::string cmd = "/usr/bin/promtool check metrics < " + path + " > " + path + ".out 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(path + ".out");
  std::stringstream report;
  report << in.rdbuf();
  EXPECT_EQ(rc, 0) << report.str() << "\n" << exposition(*registry);
  std::filesystem::remove(path);
  std::filesystem::remove(path + ".out");
}

TEST(SignalMetrics, SeriesAreBounded) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = std::make_shared<SignalMetrics>(registry, SignalMetrics::Options{false, {}, 5});
  SignalBus bus;
  bus.subscribe(metrics);
  std::vector<std::string> names;
  for (int i = 0; i < 50; ++i) names.push_back("limiter-" + std::to_string(i));
  for (const auto& n : names) bus.emit(RequestDenied{n, "", 1ms, Instant{}});
  EXPECT_LE(metrics->series(), 6u);  // the bound, plus the "_other" set
  const std::string text = exposition(*registry);
  EXPECT_NE(text.find("limiter=\"_other\""), std::string::npos) << text;
  EXPECT_EQ(text.find("limiter-49"), std::string::npos);
  EXPECT_NE(text.find("keel_sdk_signals_total{signal=\"request_denied\"} 50"), std::string::npos);
}

}  // namespace
}  // namespace keel::sdk
