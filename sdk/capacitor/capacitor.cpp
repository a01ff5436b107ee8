#include "keel/capacitor.h"

#include <toml++/toml.h>

#include <sstream>

namespace keel::sdk {

namespace {

constexpr int kMaxJsonDepth = 64;

std::unexpected<ConfigError> fail(ConfigErrc code, std::string message) {
  return std::unexpected(ConfigError{code, std::move(message)});
}

// Nesting depth of JSON text, ignoring brackets inside strings. Checked before parsing so a
// hostile document cannot drive a deep recursion.
int json_depth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

nlohmann::json toml_to_json(const toml::node& node) {
  if (auto* t = node.as_table()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto&& [k, v] : *t) out[std::string(k.str())] = toml_to_json(v);
    return out;
  }
  if (auto* a = node.as_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (auto&& v : *a) out.push_back(toml_to_json(v));
    return out;
  }
  if (auto* s = node.as_string()) return s->get();
  if (auto* i = node.as_integer()) return i->get();
  if (auto* f = node.as_floating_point()) return f->get();
  if (auto* b = node.as_boolean()) return b->get();
  // Dates and times: their TOML text.
  std::ostringstream os;
  node.visit([&](auto&& v) { os << v; });
  return os.str();
}

}  // namespace

std::string_view config_format_name(ConfigFormat f) noexcept {
  return f == ConfigFormat::kToml ? "TOML" : "JSON";
}

std::optional<ConfigFormat> config_format_for_path(std::string_view path) noexcept {
  if (path.ends_with(".toml")) return ConfigFormat::kToml;
  if (path.ends_with(".json")) return ConfigFormat::kJson;
  return std::nullopt;
}

std::string_view config_errc_name(ConfigErrc c) noexcept {
  switch (c) {
    case ConfigErrc::kRead: return "read";
    case ConfigErrc::kTooLarge: return "too_large";
    case ConfigErrc::kParse: return "parse";
    case ConfigErrc::kDecode: return "decode";
    case ConfigErrc::kInvalid: return "invalid";
  }
  return "unknown";
}

std::expected<nlohmann::json, ConfigError> parse_config_text(std::string_view text,
                                                             ConfigFormat format,
                                                             size_t max_bytes) {
  if (text.size() > max_bytes) {
    return fail(ConfigErrc::kTooLarge, "configuration is " + std::to_string(text.size()) +
                                           " bytes; at most " + std::to_string(max_bytes) +
                                           " allowed");
  }
  if (format == ConfigFormat::kJson) {
    if (json_depth(text) > kMaxJsonDepth) {
      return fail(ConfigErrc::kParse,
                  "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    try {
      return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/true,
                                   /*ignore_comments=*/true);
    } catch (const nlohmann::json::parse_error& e) {
      return fail(ConfigErrc::kParse, std::string("invalid JSON: ") + e.what());
    }
  }
  try {
    toml::table table = toml::parse(text);
    return toml_to_json(table);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return fail(ConfigErrc::kParse, "invalid TOML at line " + std::to_string(where.line) +
                                        ", column " + std::to_string(where.column) + ": " +
                                        std::string(e.description()));
  }
}

// ---- sources -------------------------------------------------------------------------------

void MemorySource::set(std::string text) {
  std::lock_guard lock(mu_);
  text_ = std::move(text);
  error_.reset();
}

void MemorySource::set_error(std::string message) {
  std::lock_guard lock(mu_);
  error_ = std::move(message);
}

std::expected<std::string, ConfigError> MemorySource::read() {
  std::lock_guard lock(mu_);
  if (error_) return fail(ConfigErrc::kRead, *error_);
  return text_;
}

// ---- CapacitorCore -------------------------------------------------------------------------

CapacitorCore::CapacitorCore(Options options) : options_(std::move(options)) {
  if (options_.debounce.count() < 0) options_.debounce = Duration(0);
  if (options_.max_delay < options_.debounce) options_.max_delay = options_.debounce;
}

void CapacitorCore::notify_changed(Instant now) {
  if (!first_change_) first_change_ = now;
  last_change_ = now;
}

std::optional<Instant> CapacitorCore::next_deadline() const {
  if (!first_change_) return std::nullopt;
  return std::min(*last_change_ + options_.debounce, *first_change_ + options_.max_delay);
}

bool CapacitorCore::reload_due(Instant now) {
  auto deadline = next_deadline();
  if (!deadline || now < *deadline) return false;
  first_change_.reset();
  last_change_.reset();
  return true;
}

std::optional<CapacitorCore::LoadReport> CapacitorCore::poll(ConfigSource& source, Instant now) {
  if (!reload_due(now)) return std::nullopt;
  return load(source.read(), now);
}

std::optional<ConfigError> CapacitorCore::last_error() const {
  std::lock_guard lock(error_mu_);
  return last_error_;
}

void CapacitorCore::set_state(ConfigState to, Instant now) {
  const ConfigState from = state_.exchange(to, std::memory_order_acq_rel);
  if (from == to) return;
  emit_signal(options_.signals, [&] {
    return ConfigStateChanged{options_.source, from, to, now};
  });
}

CapacitorCore::LoadReport CapacitorCore::load(std::expected<std::string, ConfigError> text,
                                              Instant now) {
  std::expected<void, ConfigError> staged;
  if (!text) {
    staged = std::unexpected(std::move(text.error()));
  } else if (live_text_ && *live_text_ == *text) {
    // Same content as the live value: nothing to swap; a degraded source is healthy again.
    {
      std::lock_guard lock(error_mu_);
      last_error_.reset();
    }
    set_state(ConfigState::kHealthy, now);
    return LoadReport{Outcome::kUnchanged, version(), std::nullopt};
  } else {
    auto doc = parse_config_text(*text, options_.format, options_.max_bytes);
    if (!doc) {
      staged = std::unexpected(std::move(doc.error()));
    } else {
      staged = stage(*doc);
    }
  }

  if (!staged) {
    discard();
    ConfigError error = std::move(staged.error());
    const uint64_t would_be = version() + 1;
    emit_signal(options_.signals, [&] {
      return ConfigRejected{options_.source, error.message, would_be, now};
    });
    {
      std::lock_guard lock(error_mu_);
      last_error_ = error;
    }
    set_state(version() == 0 ? ConfigState::kEmpty : ConfigState::kDegraded, now);
    return LoadReport{Outcome::kRejected, version(), std::move(error)};
  }

  live_text_ = std::move(*text);
  const uint64_t v = version_.fetch_add(1, std::memory_order_acq_rel) + 1;
  {
    std::lock_guard lock(error_mu_);
    last_error_.reset();
  }
  commit();
  set_state(ConfigState::kHealthy, now);
  emit_signal(options_.signals, [&] { return ConfigApplied{options_.source, v, now}; });
  announce();
  return LoadReport{Outcome::kApplied, v, std::nullopt};
}

}  // namespace keel::sdk
