// Signals by name: the node's own events (a member suspected, partitions moved, the disk
// refusing writes, …), each with a stable name, and the routes that send each one to the logs,
// to a metric (a counter per name) and to the traces (a span event). Pure: the catalogue, the
// routes and the parsing of the signals file; SignalHub (signal_hub.h) emits them.
//
// The signals file (TOML, `signals.file`; reloaded when it changes):
//
//   logs = ["*"]                                   # every signal
//   metrics = ["dht.partitions_moved", "cluster.member_suspected"]
//   span_events = []
//
// Each key is optional (absent: no signal goes there), a list of names from the catalogue or
// "*". Any other key, any name not in the catalogue, any entry that is not a string is a
// problem: the file is refused as a whole (the routes in force stay) and the problems say what
// was wrong and what is allowed.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <expected>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "observe/log_levels.h"

namespace keel::observe {

enum class Signal : uint8_t {
  kMemberSuspected,   // cluster: a member stopped answering heartbeats
  kMemberDead,        // cluster: a member was declared dead
  kMemberAlive,       // cluster: a member answers again (or joined)
  kMembersChanged,    // cluster: the configuration (set of members) changed
  kPartitionHandoff,  // dht: this node hands a partition over to its new primary
  kPartitionsMoved,   // dht: moved partitions switched to their new copies
  kPrimaryChanged,    // dht: partitions have a new primary in a new epoch (failover, restart)
  kSnapshotSent,      // dht: a copy being built or catching up received a snapshot
  kWritesRefused,     // storage: the disk refuses writes (full, I/O errors)
  kWritesAccepted,    // storage: writes are accepted again
  kConfigChanged,     // node: a setting changed at run time (CONFIG SET)
  kSignalsApplied,    // node: a new signals file is in force
  kSignalsRejected,   // node: the signals file was refused (the previous routes stay)
  kCertificateRenewed,  // security: this node renewed its own certificate from the CA
  kTransitKeyChanged,   // security: a transit key was created, rotated, reconfigured or deleted
};
inline constexpr size_t kSignalCount = 15;

struct SignalInfo {
  std::string_view name;  // stable: "cluster.member_suspected"
  Component component;    // the logger its log line goes to
  Level level;            // the level of its log line
  std::string_view meaning;
};
const std::array<SignalInfo, kSignalCount>& signal_catalogue();
const SignalInfo& signal_info(Signal s);
std::optional<Signal> find_signal(std::string_view name);

struct SignalRoutes {
  std::bitset<kSignalCount> logs, metrics, span_events;
  bool operator==(const SignalRoutes&) const = default;
};
// Without a signals file: every signal is logged (as keel always did) and counted.
SignalRoutes default_signal_routes();

// The routes a parsed signals file gives, or every problem found, one per line.
std::expected<SignalRoutes, std::string> parse_signal_routes(const nlohmann::json& doc);

}  // namespace keel::observe
