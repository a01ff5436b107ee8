#include "storage/engine.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/random.h"
#include "storage/memory/memory_engine.h"
#include "storage/resident/resident_engine.h"
#include "storage/rocksdb/rocksdb_engine.h"

namespace keel::storage {

namespace {
struct EvictionName {
  EvictionPolicy policy;
  std::string_view name;
};
constexpr EvictionName kEvictionNames[] = {
    {EvictionPolicy::kNoEviction, "noeviction"},
    {EvictionPolicy::kAllKeysLru, "allkeys-lru"},
    {EvictionPolicy::kAllKeysLfu, "allkeys-lfu"},
    {EvictionPolicy::kVolatileLru, "volatile-lru"},
    {EvictionPolicy::kVolatileLfu, "volatile-lfu"},
    {EvictionPolicy::kVolatileTtl, "volatile-ttl"},
    {EvictionPolicy::kAllKeysRandom, "allkeys-random"},
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
}  // namespace

std::string_view type_name(ValueType t) {
  switch (t) {
    case ValueType::kString: return "string";
    case ValueType::kHash: return "hash";
    case ValueType::kList: return "list";
    case ValueType::kSet: return "set";
    case ValueType::kZSet: return "zset";
    case ValueType::kStream: return "stream";
  }
  return "none";
}

Value copy_value(const ValueRef& r) {
  Value v;
  v.type = r.type;
  v.expire_at_ms = r.expire_at_ms;
  switch (r.type) {
    case ValueType::kString: v.str.assign(r.str); break;
    case ValueType::kHash: v.hash = *r.hash; break;
    case ValueType::kList: v.list = *r.list; break;
    case ValueType::kSet: v.set = *r.set; break;
    case ValueType::kZSet: v.zset = *r.zset; break;
    case ValueType::kStream: v.stream = *r.stream; break;
  }
  return v;
}

ValueRef ref_to(const Value& v) {
  ValueRef r;
  r.type = v.type;
  r.expire_at_ms = v.expire_at_ms;
  switch (v.type) {
    case ValueType::kString: r.str = v.str; break;
    case ValueType::kHash: r.hash = &v.hash; break;
    case ValueType::kList: r.list = &v.list; break;
    case ValueType::kSet: r.set = &v.set; break;
    case ValueType::kZSet: r.zset = &v.zset; break;
    case ValueType::kStream: r.stream = &v.stream; break;
  }
  return r;
}

bool empty_collection(const Value& v) {
  switch (v.type) {
    case ValueType::kString: return false;
    case ValueType::kHash: return v.hash.empty();
    case ValueType::kList: return v.list.empty();
    case ValueType::kSet: return v.set.empty();
    case ValueType::kZSet: return v.zset.empty();
    case ValueType::kStream: return false;
  }
  return false;
}

std::string_view eviction_policy_name(EvictionPolicy p) {
  for (const auto& e : kEvictionNames)
    if (e.policy == p) return e.name;
  return "unknown";
}

std::optional<EvictionPolicy> parse_eviction_policy(std::string_view name) {
  for (const auto& e : kEvictionNames)
    if (iequals(e.name, name)) return e.policy;
  return std::nullopt;
}

std::string_view fsync_policy_name(FsyncPolicy p) {
  switch (p) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kEverySec:
      return "everysec";
    case FsyncPolicy::kNo:
      return "no";
  }
  return "unknown";
}

std::optional<FsyncPolicy> parse_fsync_policy(std::string_view name) {
  for (auto p : {FsyncPolicy::kAlways, FsyncPolicy::kEverySec, FsyncPolicy::kNo})
    if (iequals(fsync_policy_name(p), name)) return p;
  return std::nullopt;
}

Result<std::vector<std::unique_ptr<Engine>>> open_engines(const EngineConfig& config,
                                                          unsigned shards, const Clock& clock) {
  if (shards == 0) return make_error(Errc::kInvalidArgument, "shards must be at least 1");
  if (config.partitions == 0 || config.partitions > (1u << 24))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("partitions is {}; allowed: 1..{}", config.partitions, 1u << 24));
  if (config.kind == EngineConfig::Kind::kMemory) {
    if (config.eviction_samples == 0 || config.eviction_samples > 64)
      return make_error(
          Errc::kInvalidArgument,
          fmt::format("eviction_samples is {}; allowed: 1..64", config.eviction_samples));
    // maxmemory is for the whole node: each shard's engine gets an equal share (keys spread
    // evenly over partitions, and partitions evenly over shards).
    EngineConfig per_shard = config;
    if (config.max_memory_bytes) per_shard.max_memory_bytes = std::max<uint64_t>(1, config.max_memory_bytes / shards);
    std::vector<std::unique_ptr<Engine>> out;
    out.reserve(shards);
    for (unsigned i = 0; i < shards; ++i)
      out.push_back(make_memory_engine(per_shard, mix64(0x6b65656c00000000ull + i)));
    return out;
  }
  if (!config.keep_in_memory) return open_rocksdb_engines(config, shards, clock);
  EngineConfig journal = config;
  journal.journal_only = true;
  auto logs = open_rocksdb_engines(journal, shards, clock);
  if (!logs) return std::unexpected(logs.error());
  std::vector<std::unique_ptr<Engine>> out;
  out.reserve(shards);
  for (unsigned i = 0; i < shards; ++i) {
    auto e = make_resident_engine(config, std::move((*logs)[i]), i, shards, clock.now_ms());
    if (!e) return std::unexpected(e.error());
    out.push_back(std::move(*e));
  }
  return out;
}

}  // namespace keel::storage
