// Log levels per component: what `log.level` (keel.toml, CONFIG SET loglevel, HTTP) holds.
// Pure: parsing and formatting only; the loggers that obey it are in log.h.
//
//   spec  = item *( ("," / " ") item )
//   item  = level / component "=" level
//   level = trace / debug / info / warn / error / off      (warning = warn, notice = info, as
//   Redis)
// A bare level sets the default of every component; `component=level` overrides one. Later
// items win. Example: "info dht=debug resp=warn".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel::observe {

enum class Component : uint8_t {
  kNode,
  kResp,
  kHttp,
  kDht,
  kCluster,
  kPeers,
  kStorage,
  kCache,
  kRouting,
  kSecurity,
  kTrace,
  kAudit
};
inline constexpr size_t kComponentCount = 12;
// The names components go by in `log.level` and in the JSON lines' "component" field.
inline constexpr std::array<std::string_view, kComponentCount> kComponentNames = {
    "node",    "resp",  "http",    "dht",      "cluster", "peers",
    "storage", "cache", "routing", "security", "trace", "audit"};

enum class Level : uint8_t { kTrace, kDebug, kInfo, kWarn, kError, kOff };  // spdlog's order
std::string_view level_name(Level l);
std::optional<Level> parse_level(std::string_view s);  // case-insensitive

struct LogLevels {
  Level base = Level::kInfo;
  std::array<std::optional<Level>, kComponentCount> per{};
  Level of(Component c) const { return per[static_cast<size_t>(c)].value_or(base); }
  bool operator==(const LogLevels&) const = default;
};

// The parsed spec, or nullopt with `error` saying which item was wrong and what is allowed.
std::optional<LogLevels> parse_log_levels(std::string_view spec, std::string& error);
// Canonical text: the default, then the overrides in component order ("info dht=debug").
std::string format_log_levels(const LogLevels& l);

}  // namespace keel::observe
