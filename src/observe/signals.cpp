#include "observe/signals.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace keel::observe {
namespace {
constexpr std::array<SignalInfo, kSignalCount> kCatalogue = {{
    {"cluster.member_suspected", Component::kCluster, Level::kInfo,
     "a member stopped answering heartbeats"},
    {"cluster.member_dead", Component::kCluster, Level::kInfo, "a member was declared dead"},
    {"cluster.member_alive", Component::kCluster, Level::kInfo,
     "a member answers again (or joined)"},
    {"cluster.members_changed", Component::kCluster, Level::kInfo,
     "the cluster's configuration (its set of members) changed"},
    {"dht.partition_handoff", Component::kDht, Level::kInfo,
     "this node hands a partition over to its new primary"},
    {"dht.partitions_moved", Component::kDht, Level::kInfo,
     "moved partitions switched to their new copies"},
    {"dht.primary_changed", Component::kDht, Level::kWarn,
     "partitions have a new primary in a new epoch (failover, or its restart)"},
    {"dht.snapshot_sent", Component::kDht, Level::kInfo,
     "a copy being built or catching up was sent a snapshot"},
    {"storage.writes_refused", Component::kStorage, Level::kError,
     "the disk refuses writes (full, or I/O errors)"},
    {"storage.writes_accepted", Component::kStorage, Level::kWarn, "the disk accepts writes again"},
    {"node.config_changed", Component::kNode, Level::kInfo,
     "a setting changed at run time (CONFIG SET)"},
    {"node.signals_applied", Component::kNode, Level::kInfo, "a new signals file is in force"},
    {"node.signals_rejected", Component::kNode, Level::kError,
     "the signals file was refused; the previous routes stay"},
    {"security.certificate_renewed", Component::kSecurity, Level::kInfo,
     "this node renewed its own certificate from the CA (tls.ca_key_file)"},
    {"security.transit_key_changed", Component::kSecurity, Level::kInfo,
     "a transit key was created, rotated, reconfigured or deleted through this node"},
}};

constexpr std::array<std::string_view, 3> kKeys = {"logs", "metrics", "span_events"};

std::string names_list() {
  std::string out;
  for (auto& s : kCatalogue) {
    if (!out.empty()) out += ", ";
    out += s.name;
  }
  return out;
}
}  // namespace

const std::array<SignalInfo, kSignalCount>& signal_catalogue() { return kCatalogue; }
const SignalInfo& signal_info(Signal s) { return kCatalogue[static_cast<size_t>(s)]; }

std::optional<Signal> find_signal(std::string_view name) {
  for (size_t i = 0; i < kCatalogue.size(); ++i)
    if (kCatalogue[i].name == name) return static_cast<Signal>(i);
  return std::nullopt;
}

SignalRoutes default_signal_routes() {
  SignalRoutes r;
  r.logs.set();
  r.metrics.set();
  return r;
}

std::expected<SignalRoutes, std::string> parse_signal_routes(const nlohmann::json& doc) {
  std::string problems;
  auto problem = [&problems](std::string p) {
    if (!problems.empty()) problems += '\n';
    problems += std::move(p);
  };
  SignalRoutes r;
  if (!doc.is_object())
    return std::unexpected(
        "the signals file must be a table with the keys logs, metrics, span_events");
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    size_t k = 0;
    while (k < kKeys.size() && kKeys[k] != key) ++k;
    if (k == kKeys.size()) {
      problem(
          fmt::format("unknown key '{}'; allowed: logs, metrics, span_events", key.substr(0, 64)));
      continue;
    }
    auto& bits = k == 0 ? r.logs : k == 1 ? r.metrics : r.span_events;
    if (!it->is_array()) {
      problem(
          fmt::format("{}: expected a list of signal names (or [\"*\"] for every signal)", key));
      continue;
    }
    for (const auto& v : *it) {
      if (!v.is_string()) {
        problem(fmt::format("{}: {} is not a signal name (a string)", key, v.dump().substr(0, 64)));
        continue;
      }
      const auto& name = v.get_ref<const std::string&>();
      if (name == "*") {
        bits.set();
        continue;
      }
      if (auto s = find_signal(name))
        bits.set(static_cast<size_t>(*s));
      else
        problem(fmt::format("{}: unknown signal '{}'; signals: {}", key, name.substr(0, 64),
                            names_list()));
    }
  }
  if (!problems.empty()) return std::unexpected(problems);
  return r;
}

}  // namespace keel::observe
