#include "observe/log_levels.h"

#include <fmt/format.h>

namespace keel::observe {
namespace {
constexpr std::array<std::string_view, 6> kLevelNames = {"trace", "debug", "info",
                                                         "warn",  "error", "off"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string components_list() {
  std::string out;
  for (auto n : kComponentNames) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}
}  // namespace

std::string_view level_name(Level l) { return kLevelNames[static_cast<size_t>(l)]; }

std::optional<Level> parse_level(std::string_view s) {
  auto l = lower(s);
  if (l == "warning") return Level::kWarn;  // Redis's spelling
  if (l == "notice" || l == "verbose") return l == "notice" ? Level::kInfo : Level::kDebug;
  for (size_t i = 0; i < kLevelNames.size(); ++i)
    if (l == kLevelNames[i]) return static_cast<Level>(i);
  return std::nullopt;
}

std::optional<LogLevels> parse_log_levels(std::string_view spec, std::string& error) {
  LogLevels out;
  size_t items = 0;
  constexpr size_t kMaxItems = 64;
  for (size_t i = 0; i < spec.size();) {
    if (spec[i] == ' ' || spec[i] == ',' || spec[i] == '\t') {
      ++i;
      continue;
    }
    size_t j = spec.find_first_of(" ,\t", i);
    if (j == std::string_view::npos) j = spec.size();
    std::string_view item = spec.substr(i, j - i);
    i = j;
    if (++items > kMaxItems) {
      error =
          fmt::format("more than {} items in the log level '{}'", kMaxItems, spec.substr(0, 256));
      return std::nullopt;
    }
    auto eq = item.find('=');
    std::string_view lv = eq == std::string_view::npos ? item : item.substr(eq + 1);
    auto level = parse_level(lv);
    if (!level) {
      error = fmt::format(
          "'{}' is not a log level; allowed: trace, debug, info, warn, error, off "
          "(as the default, or per component: <component>=<level>)",
          lv.substr(0, 64));
      return std::nullopt;
    }
    if (eq == std::string_view::npos) {
      out.base = *level;
      out.per.fill(std::nullopt);  // a later default wins over earlier overrides
      continue;
    }
    auto name = lower(item.substr(0, eq));
    size_t c = 0;
    while (c < kComponentNames.size() && kComponentNames[c] != name) ++c;
    if (c == kComponentNames.size()) {
      error = fmt::format("unknown log component '{}'; components: {}",
                          item.substr(0, std::min(eq, size_t{64})), components_list());
      return std::nullopt;
    }
    out.per[c] = *level;
  }
  if (items == 0) {
    error =
        "the log level is empty; allowed: trace, debug, info, warn, error, off, then "
        "optionally <component>=<level> items (components: " +
        components_list() + ")";
    return std::nullopt;
  }
  return out;
}

std::string format_log_levels(const LogLevels& l) {
  std::string out(level_name(l.base));
  for (size_t c = 0; c < kComponentCount; ++c)
    if (l.per[c]) out += fmt::format(" {}={}", kComponentNames[c], level_name(*l.per[c]));
  return out;
}

}  // namespace keel::observe
