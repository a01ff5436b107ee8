// A named cache's definition: what CACHE.CREATE, PUT /v1/caches/{name} and the SDK state, as
// it is kept in cluster metadata (domain "caches", key = the name, value = to_json()).
//
// Pure: parsing, validation and the canonical JSON form; no I/O. Every refusal names the field
// and what is allowed, and a definition is checked whole before anything is written, so a bad
// one leaves nothing behind.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace keel::cache {

enum class Eviction : uint8_t { kLru, kLfu, kNone };
enum class ReadFrom : uint8_t { kPrimary, kReplica };
enum class EngineKind : uint8_t { kMemory, kPersistent };

inline constexpr size_t kMaxNameBytes = 64;
inline constexpr uint32_t kMaxReplicas = 7;
inline constexpr int64_t kMaxTtlMs = int64_t{1} << 50;  // as /v1/kv's ttl_ms
inline constexpr const char* kMetaDomain = "caches";
// The plain keyspace: plain Redis commands act on it; it always exists and is not defined.
inline constexpr std::string_view kDefaultCache = "default";

struct Definition {
  std::string name;
  uint32_t replicas = 1;
  uint32_t write_quorum = 1;
  int64_t default_ttl_ms = 0;  // 0 = entries without a ttl never expire
  Eviction eviction = Eviction::kLru;
  uint64_t max_memory_bytes = 0;  // 0 = unbounded
  uint64_t max_entries = 0;       // 0 = unbounded
  ReadFrom read_from = ReadFrom::kPrimary;
  // nullopt until resolved: a definition that does not name an engine gets the node's.
  std::optional<EngineKind> engine;

  bool bounded() const { return max_memory_bytes != 0 || max_entries != 0; }
  friend bool operator==(const Definition&, const Definition&) = default;
};

std::string_view eviction_name(Eviction e);
std::string_view read_from_name(ReadFrom r);
std::string_view engine_name(EngineKind e);

// A cache name: 1..64 of [A-Za-z0-9_.-], not "default". The error names what is allowed.
Status check_name(std::string_view name);

// "256mb", "1gb", "512kb", "100b", "2k" (Redis's units: k=1000, kb=1024, m=10^6, mb=2^20,
// g=10^9, gb=2^30, t, tb; b = bytes). A number without a unit is refused.
Result<uint64_t> parse_size(std::string_view field, std::string_view text);
// "60s", "500ms", "5m", "2h", "1d". A number without a unit is refused.
Result<int64_t> parse_duration_ms(std::string_view field, std::string_view text);
std::string format_size(uint64_t bytes);  // the largest exact binary unit: "256mb"
std::string format_duration(int64_t ms);  // the largest exact unit: "60s", "1500ms"

// CACHE.CREATE name [REPLICAS n] [QUORUM n] [TTL dur] [EVICTION lru|lfu|none]
//   [MAXMEMORY size] [MAXENTRIES n] [READFROM primary|replica] [ENGINE memory|persistent]
// `options` are the arguments after the name; option names are case-insensitive.
Result<Definition> parse_options(std::string_view name, std::span<const std::string_view> options);

// The HTTP body / metadata form: {"replicas": 3, "writeQuorum": 2, "defaultTtl": "60s",
// "eviction": "lru", "maxMemory": "256mb", "maxEntries": 10000, "readFrom": "primary",
// "engine": "memory"}; every field optional, unknown fields refused.
Result<Definition> from_json(std::string_view name, const nlohmann::json& body);
Result<Definition> from_json_text(std::string_view name, std::string_view text);
nlohmann::json to_json(const Definition& d);  // canonical; from_json(to_json(d)) == d

// "no cache named 'x'; create it with ..." (for every front end).
std::string no_such_cache_message(std::string_view name);

// The whole-definition rules (quorum within replicas, ...), run by both parsers.
Status validate(const Definition& d);

// The share of a cache-wide bound that one partition enforces: ceil(limit / partitions);
// 0 (unbounded) stays 0.
uint64_t per_partition(uint64_t limit, uint32_t partitions);

}  // namespace keel::cache
