#include "services/cache/definition.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>

namespace keel::cache {
namespace {

using json = nlohmann::json;

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

std::unexpected<Error> invalid(std::string message) {
  return make_error(Errc::kInvalidArgument, std::move(message));
}

// Splits "256mb" into 256 and "mb". False if there are no leading digits.
bool split_number(std::string_view text, uint64_t& number, std::string& unit) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0 || i > 19) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || p != text.data() + i) return false;
  unit = lower(text.substr(i));
  return true;
}

constexpr const char* kSizeUnits = "b, k, kb, m, mb, g, gb, t, tb (e.g. 256mb)";
constexpr const char* kDurationUnits = "ms, s, m, h, d (e.g. 60s)";

Result<uint32_t> parse_count(std::string_view field, std::string_view text, uint64_t lo,
                             uint64_t hi) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || n < lo || n > hi)
    return invalid(
        fmt::format("{} must be an integer from {} to {}, got '{}'", field, lo, hi, text));
  return static_cast<uint32_t>(n);
}

Result<uint64_t> parse_entries(std::string_view field, std::string_view text) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || n < 1 ||
      n > (uint64_t{1} << 48))
    return invalid(fmt::format(
        "{} must be an integer from 1 to 2^48 (the number of entries), got '{}'", field, text));
  return n;
}

Result<Eviction> parse_eviction(std::string_view field, std::string_view text) {
  auto t = lower(text);
  if (t == "lru") return Eviction::kLru;
  if (t == "lfu") return Eviction::kLfu;
  if (t == "none") return Eviction::kNone;
  return invalid(fmt::format("{} must be one of lru, lfu, none, got '{}'", field, text));
}

Result<ReadFrom> parse_read_from(std::string_view field, std::string_view text) {
  auto t = lower(text);
  if (t == "primary") return ReadFrom::kPrimary;
  if (t == "replica") return ReadFrom::kReplica;
  return invalid(fmt::format("{} must be one of primary, replica, got '{}'", field, text));
}

Result<EngineKind> parse_engine(std::string_view field, std::string_view text) {
  auto t = lower(text);
  if (t == "memory") return EngineKind::kMemory;
  if (t == "persistent") return EngineKind::kPersistent;
  return invalid(fmt::format("{} must be one of memory, persistent, got '{}'", field, text));
}

}  // namespace

std::string_view eviction_name(Eviction e) {
  switch (e) {
    case Eviction::kLru:
      return "lru";
    case Eviction::kLfu:
      return "lfu";
    case Eviction::kNone:
      return "none";
  }
  return "?";
}
std::string_view read_from_name(ReadFrom r) {
  return r == ReadFrom::kPrimary ? "primary" : "replica";
}
std::string_view engine_name(EngineKind e) {
  return e == EngineKind::kMemory ? "memory" : "persistent";
}

Status check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes)
    return invalid(
        fmt::format("name must be 1 to {} characters of [A-Za-z0-9_.-], got {} characters",
                    kMaxNameBytes, name.size()));
  for (char c : name) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    if (!ok) {
      auto shown = std::isprint(static_cast<unsigned char>(c))
                       ? fmt::format("'{}'", c)
                       : fmt::format("byte 0x{:02x}", static_cast<unsigned char>(c));
      return invalid(
          fmt::format("name '{}' has {}; allowed: letters, digits, '_', '-', '.'", name, shown));
    }
  }
  if (name == kDefaultCache)
    return invalid(
        "name 'default' is reserved: it is the plain keyspace that plain Redis commands use; "
        "choose another name");
  return {};
}

Result<uint64_t> parse_size(std::string_view field, std::string_view text) {
  uint64_t n = 0;
  std::string unit;
  if (!split_number(text, n, unit))
    return invalid(
        fmt::format("{} must be a size with a unit ({}), got '{}'", field, kSizeUnits, text));
  uint64_t mult = 0;
  if (unit == "b")
    mult = 1;
  else if (unit == "k")
    mult = 1000;
  else if (unit == "kb")
    mult = 1024;
  else if (unit == "m")
    mult = 1000 * 1000;
  else if (unit == "mb")
    mult = 1024 * 1024;
  else if (unit == "g")
    mult = 1000ull * 1000 * 1000;
  else if (unit == "gb")
    mult = 1024ull * 1024 * 1024;
  else if (unit == "t")
    mult = 1000ull * 1000 * 1000 * 1000;
  else if (unit == "tb")
    mult = 1024ull * 1024 * 1024 * 1024;
  if (mult == 0) {
    if (unit.empty())
      return invalid(
          fmt::format("{} '{}' has no unit; allowed units: {}", field, text, kSizeUnits));
    return invalid(fmt::format("{} '{}' has unknown unit '{}'; allowed units: {}", field, text,
                               unit, kSizeUnits));
  }
  if (n == 0 || n > (uint64_t{1} << 60) / mult)
    return invalid(fmt::format("{} must be from 1b to 1024pb, got '{}'", field, text));
  return n * mult;
}

Result<int64_t> parse_duration_ms(std::string_view field, std::string_view text) {
  uint64_t n = 0;
  std::string unit;
  if (!split_number(text, n, unit))
    return invalid(fmt::format("{} must be a duration with a unit ({}), got '{}'", field,
                               kDurationUnits, text));
  int64_t mult = 0;
  if (unit == "ms")
    mult = 1;
  else if (unit == "s")
    mult = 1000;
  else if (unit == "m")
    mult = 60'000;
  else if (unit == "h")
    mult = 3'600'000;
  else if (unit == "d")
    mult = 86'400'000;
  if (mult == 0) {
    if (unit.empty())
      return invalid(
          fmt::format("{} '{}' has no unit; allowed units: {}", field, text, kDurationUnits));
    return invalid(fmt::format("{} '{}' has unknown unit '{}'; allowed units: {}", field, text,
                               unit, kDurationUnits));
  }
  if (n == 0 || n > static_cast<uint64_t>(kMaxTtlMs / mult))
    return invalid(
        fmt::format("{} must be from 1ms to 2^50 ms (about 35000 years), got '{}'", field, text));
  return static_cast<int64_t>(n) * mult;
}

std::string format_size(uint64_t b) {
  constexpr std::pair<uint64_t, const char*> units[] = {
      {1ull << 40, "tb"}, {1ull << 30, "gb"}, {1ull << 20, "mb"}, {1ull << 10, "kb"}};
  for (auto [m, u] : units)
    if (b >= m && b % m == 0) return fmt::format("{}{}", b / m, u);
  return fmt::format("{}b", b);
}

std::string format_duration(int64_t ms) {
  constexpr std::pair<int64_t, const char*> units[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  for (auto [m, u] : units)
    if (ms >= m && ms % m == 0) return fmt::format("{}{}", ms / m, u);
  return fmt::format("{}ms", ms);
}

Status validate(const Definition& d) {
  if (auto st = check_name(d.name); !st) return st;
  if (d.replicas < 1 || d.replicas > kMaxReplicas)
    return invalid(fmt::format("replicas must be from 1 to {}, got {}", kMaxReplicas, d.replicas));
  if (d.write_quorum < 1 || d.write_quorum > d.replicas)
    return invalid(fmt::format("writeQuorum (QUORUM) must be from 1 to replicas ({}), got {}",
                               d.replicas, d.write_quorum));
  if (d.default_ttl_ms < 0 || d.default_ttl_ms > kMaxTtlMs)
    return invalid(
        fmt::format("defaultTtl (TTL) must be from 1ms to 2^50 ms, got {} ms", d.default_ttl_ms));
  return {};
}

Result<Definition> parse_options(std::string_view name, std::span<const std::string_view> a) {
  Definition d;
  d.name = std::string(name);
  if (auto st = check_name(name); !st) return std::unexpected(st.error());
  bool seen[8] = {};
  constexpr std::string_view kOptions =
      "REPLICAS n, QUORUM n, TTL duration, EVICTION lru|lfu|none, MAXMEMORY size, MAXENTRIES n, "
      "READFROM primary|replica, ENGINE memory|persistent";
  for (size_t i = 0; i < a.size(); i += 2) {
    auto opt = lower(a[i]);
    if (i + 1 >= a.size())
      return invalid(fmt::format("option '{}' needs a value; options: {}", a[i], kOptions));
    std::string_view v = a[i + 1];
    int idx = -1;
    if (opt == "replicas") {
      idx = 0;
      auto r = parse_count("replicas (REPLICAS)", v, 1, kMaxReplicas);
      if (!r) return std::unexpected(r.error());
      d.replicas = *r;
    } else if (opt == "quorum" || opt == "writequorum") {
      idx = 1;
      auto r = parse_count("writeQuorum (QUORUM)", v, 1, kMaxReplicas);
      if (!r) return std::unexpected(r.error());
      d.write_quorum = *r;
    } else if (opt == "ttl") {
      idx = 2;
      auto r = parse_duration_ms("defaultTtl (TTL)", v);
      if (!r) return std::unexpected(r.error());
      d.default_ttl_ms = *r;
    } else if (opt == "eviction") {
      idx = 3;
      auto r = parse_eviction("eviction (EVICTION)", v);
      if (!r) return std::unexpected(r.error());
      d.eviction = *r;
    } else if (opt == "maxmemory") {
      idx = 4;
      auto r = parse_size("maxMemory (MAXMEMORY)", v);
      if (!r) return std::unexpected(r.error());
      d.max_memory_bytes = *r;
    } else if (opt == "maxentries") {
      idx = 5;
      auto r = parse_entries("maxEntries (MAXENTRIES)", v);
      if (!r) return std::unexpected(r.error());
      d.max_entries = *r;
    } else if (opt == "readfrom") {
      idx = 6;
      auto r = parse_read_from("readFrom (READFROM)", v);
      if (!r) return std::unexpected(r.error());
      d.read_from = *r;
    } else if (opt == "engine") {
      idx = 7;
      auto r = parse_engine("engine (ENGINE)", v);
      if (!r) return std::unexpected(r.error());
      d.engine = *r;
    } else {
      return invalid(fmt::format("unknown option '{}'; options: {}", a[i], kOptions));
    }
    if (seen[idx])
      return invalid(
          fmt::format("option '{}' is given twice; give each option at most once", a[i]));
    seen[idx] = true;
  }
  if (auto st = validate(d); !st) return std::unexpected(st.error());
  return d;
}

Result<Definition> from_json(std::string_view name, const json& body) {
  Definition d;
  d.name = std::string(name);
  if (auto st = check_name(name); !st) return std::unexpected(st.error());
  constexpr std::string_view kFields =
      "replicas, writeQuorum, defaultTtl, eviction, maxMemory, maxEntries, readFrom, engine";
  if (!body.is_object())
    return invalid(fmt::format(
        "the definition must be a JSON object with the fields {} (all optional)", kFields));
  auto text = [&](const std::string& f) -> Result<std::string> {
    if (!body[f].is_string())
      return invalid(fmt::format("{} must be a string, got {}", f, body[f].dump()));
    return body[f].get<std::string>();
  };
  for (auto& [field, value] : body.items()) {
    if (field == "replicas" || field == "writeQuorum") {
      if (!value.is_number_unsigned() || value.get<uint64_t>() < 1 ||
          value.get<uint64_t>() > kMaxReplicas)
        return invalid(fmt::format("{} must be an integer from 1 to {}, got {}", field,
                                   kMaxReplicas, value.dump()));
      (field == "replicas" ? d.replicas : d.write_quorum) = value.get<uint32_t>();
    } else if (field == "defaultTtl") {
      if (value.is_null()) continue;
      auto t = text(field);
      if (!t) return std::unexpected(t.error());
      auto r = parse_duration_ms(field, *t);
      if (!r) return std::unexpected(r.error());
      d.default_ttl_ms = *r;
    } else if (field == "maxMemory") {
      if (value.is_null()) continue;
      if (value.is_number())
        return invalid(fmt::format("maxMemory {} has no unit; give a string with a unit ({})",
                                   value.dump(), kSizeUnits));
      auto t = text(field);
      if (!t) return std::unexpected(t.error());
      auto r = parse_size(field, *t);
      if (!r) return std::unexpected(r.error());
      d.max_memory_bytes = *r;
    } else if (field == "maxEntries") {
      if (value.is_null()) continue;
      if (!value.is_number_unsigned() || value.get<uint64_t>() < 1 ||
          value.get<uint64_t>() > (uint64_t{1} << 48))
        return invalid(
            fmt::format("maxEntries must be an integer from 1 to 2^48, got {}", value.dump()));
      d.max_entries = value.get<uint64_t>();
    } else if (field == "eviction" || field == "readFrom" || field == "engine") {
      auto t = text(field);
      if (!t) return std::unexpected(t.error());
      if (field == "eviction") {
        auto r = parse_eviction(field, *t);
        if (!r) return std::unexpected(r.error());
        d.eviction = *r;
      } else if (field == "readFrom") {
        auto r = parse_read_from(field, *t);
        if (!r) return std::unexpected(r.error());
        d.read_from = *r;
      } else {
        auto r = parse_engine(field, *t);
        if (!r) return std::unexpected(r.error());
        d.engine = *r;
      }
    } else if (field == "name") {
      if (!value.is_string() || value.get<std::string>() != name)
        return invalid(
            fmt::format("name in the body ({}) differs from the name in the path ('{}'); omit it "
                        "or make them equal",
                        value.dump(), name));
    } else {
      return invalid(fmt::format("unknown field '{}'; fields: {}", field, kFields));
    }
  }
  if (auto st = validate(d); !st) return std::unexpected(st.error());
  return d;
}

Result<Definition> from_json_text(std::string_view name, std::string_view text) {
  json body = json::parse(text, nullptr, false);
  if (body.is_discarded())
    return invalid(
        "the definition is not valid JSON; send an object such as {\"maxEntries\": 1000}");
  return from_json(name, body);
}

json to_json(const Definition& d) {
  json j{{"name", d.name},
         {"replicas", d.replicas},
         {"writeQuorum", d.write_quorum},
         {"eviction", eviction_name(d.eviction)},
         {"readFrom", read_from_name(d.read_from)}};
  j["defaultTtl"] = d.default_ttl_ms ? json(format_duration(d.default_ttl_ms)) : json(nullptr);
  j["maxMemory"] = d.max_memory_bytes ? json(format_size(d.max_memory_bytes)) : json(nullptr);
  j["maxEntries"] = d.max_entries ? json(d.max_entries) : json(nullptr);
  if (d.engine) j["engine"] = engine_name(*d.engine);
  return j;
}

std::string no_such_cache_message(std::string_view name) {
  return fmt::format(
      "no cache named '{}'; create it with CACHE.CREATE {} (or PUT /v1/caches/{}); "
      "CACHE.LIST shows the caches",
      name, name, name);
}

uint64_t per_partition(uint64_t limit, uint32_t partitions) {
  if (limit == 0 || partitions == 0) return limit;
  return (limit + partitions - 1) / partitions;
}

}  // namespace keel::cache
