// Signals by name: the catalogue, the parsing of the signals file (unknown names and keys are
// reported, not ignored), the hub's routes and counters, and reloading through a Capacitor as
// the node does (a refused file keeps the routes in force).
#include "observe/signals.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "keel/capacitor.h"
#include "keel/clock.h"
#include "observe/signal_hub.h"

namespace keel::observe {
namespace {

using nlohmann::json;

TEST(Signals, CatalogueNamesAreUniqueStableAndFindable) {
  std::set<std::string_view> names;
  for (size_t i = 0; i < kSignalCount; ++i) {
    const auto& info = signal_catalogue()[i];
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
    EXPECT_NE(info.name.find('.'), std::string_view::npos) << info.name;  // component.event
    EXPECT_EQ(find_signal(info.name), static_cast<Signal>(i));
    EXPECT_FALSE(info.meaning.empty());
  }
  EXPECT_EQ(signal_info(Signal::kMemberSuspected).name, "cluster.member_suspected");
  EXPECT_EQ(signal_info(Signal::kWritesRefused).name, "storage.writes_refused");
  EXPECT_FALSE(find_signal("cluster.member_suspect"));
  EXPECT_FALSE(find_signal(""));
}

TEST(Signals, FileRoutesNamesAndStar) {
  auto r =
      parse_signal_routes(json{{"logs", {"*"}},
                               {"metrics", {"dht.partitions_moved", "cluster.member_suspected"}},
                               {"span_events", json::array()}});
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(r->logs.all());
  EXPECT_EQ(r->metrics.count(), 2u);
  EXPECT_TRUE(r->metrics.test(static_cast<size_t>(Signal::kPartitionsMoved)));
  EXPECT_TRUE(r->metrics.test(static_cast<size_t>(Signal::kMemberSuspected)));
  EXPECT_TRUE(r->span_events.none());
  // Absent keys route nothing there; an empty file routes nothing at all.
  auto empty = parse_signal_routes(json::object());
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->logs.none() && empty->metrics.none() && empty->span_events.none());
  // Without a file: everything logged and counted, no span events.
  auto d = default_signal_routes();
  EXPECT_TRUE(d.logs.all() && d.metrics.all() && d.span_events.none());
}

TEST(Signals, UnknownNamesKeysAndShapesAreReportedTogether) {
  auto r = parse_signal_routes(json{{"logs", {"dht.partitions_moved", "dht.partiton_moved"}},
                                    {"metric", {"*"}},
                                    {"span_events", "node.config_changed"},
                                    {"metrics", {1}}});
  ASSERT_FALSE(r);
  const std::string& e = r.error();
  EXPECT_NE(e.find("logs: unknown signal 'dht.partiton_moved'; signals: cluster.member_suspected"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("unknown key 'metric'; allowed: logs, metrics, span_events"), std::string::npos)
      << e;
  EXPECT_NE(e.find("span_events: expected a list of signal names"), std::string::npos) << e;
  EXPECT_NE(e.find("metrics: 1 is not a signal name"), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 3) << e;  // four problems, one per line
  EXPECT_FALSE(parse_signal_routes(json::array()));
}

TEST(Signals, HubCountsOnlyWhatIsRoutedToMetrics) {
  auto& hub = SignalHub::instance();
  SignalRoutes r;
  r.metrics.set(static_cast<size_t>(Signal::kSnapshotSent));
  hub.set_routes(r);
  EXPECT_EQ(hub.routes(), r);
  uint64_t snap = hub.count(Signal::kSnapshotSent), moved = hub.count(Signal::kPartitionsMoved);
  hub.emit(Signal::kSnapshotSent, "test: snapshot");
  hub.emit(Signal::kSnapshotSent, "test: snapshot");
  hub.emit(Signal::kPartitionsMoved, "test: moved");
  EXPECT_EQ(hub.count(Signal::kSnapshotSent), snap + 2);
  EXPECT_EQ(hub.count(Signal::kPartitionsMoved), moved);

  // Span events go to the sink, only for the signals routed there.
  std::vector<std::string> seen;
  hub.set_span_sink([&seen](Signal s, std::string_view detail) {
    seen.push_back(std::string(signal_info(s).name) + " " + std::string(detail));
  });
  r.span_events.set(static_cast<size_t>(Signal::kPrimaryChanged));
  hub.set_routes(r);
  hub.emit(Signal::kPrimaryChanged, "test: failover");
  hub.emit(Signal::kSnapshotSent, "test: snapshot");
  hub.set_span_sink({});
  hub.emit(Signal::kPrimaryChanged, "test: after the sink was removed");
  EXPECT_EQ(seen, std::vector<std::string>{"dht.primary_changed test: failover"});
  hub.set_routes(default_signal_routes());
}

// The node's wiring: a Capacitor decoding the file with parse_signal_routes, its changes
// handed to the hub.
TEST(Signals, ReloadAppliesGoodFilesAndKeepsTheRoutesWhenAFileIsRefused) {
  auto& hub = SignalHub::instance();
  hub.set_routes(default_signal_routes());
  sdk::CapacitorCore::Options o;
  o.source = "signals.toml";
  o.format = sdk::ConfigFormat::kToml;
  sdk::Capacitor<SignalRoutes> cap(
      o, [](const json& doc) { return parse_signal_routes(doc); },
      sdk::Capacitor<SignalRoutes>::Validator{});
  cap.on_change([](const auto&, const auto& next) {
    if (next) SignalHub::instance().set_routes(*next);
  });
  sdk::ManualClock clock;

  auto r =
      cap.load(std::string("logs = [\"*\"]\nmetrics = [\"node.config_changed\"]\n"), clock.now());
  ASSERT_EQ(r.outcome, sdk::CapacitorCore::Outcome::kApplied);
  EXPECT_TRUE(hub.routes().logs.all());
  EXPECT_EQ(hub.routes().metrics.count(), 1u);
  EXPECT_TRUE(hub.routes().metrics.test(static_cast<size_t>(Signal::kConfigChanged)));

  // An unknown name: refused as a whole, the routes in force stay, the reason is kept.
  clock.advance(std::chrono::seconds(1));
  r = cap.load(std::string("logs = []\nmetrics = [\"node.config_chnaged\"]\n"), clock.now());
  EXPECT_EQ(r.outcome, sdk::CapacitorCore::Outcome::kRejected);
  EXPECT_EQ(cap.state(), sdk::ConfigState::kDegraded);
  ASSERT_TRUE(cap.last_error());
  EXPECT_NE(cap.last_error()->message.find("unknown signal 'node.config_chnaged'"),
            std::string::npos);
  EXPECT_TRUE(hub.routes().logs.all());
  EXPECT_TRUE(hub.routes().metrics.test(static_cast<size_t>(Signal::kConfigChanged)));

  // Fixed: applied, healthy again.
  clock.advance(std::chrono::seconds(1));
  r = cap.load(std::string("logs = []\nspan_events = [\"dht.primary_changed\"]\n"), clock.now());
  ASSERT_EQ(r.outcome, sdk::CapacitorCore::Outcome::kApplied);
  EXPECT_EQ(cap.state(), sdk::ConfigState::kHealthy);
  EXPECT_TRUE(hub.routes().logs.none());
  EXPECT_TRUE(hub.routes().metrics.none());
  EXPECT_TRUE(hub.routes().span_events.test(static_cast<size_t>(Signal::kPrimaryChanged)));
  hub.set_routes(default_signal_routes());
}

}  // namespace
}  // namespace keel::observe
