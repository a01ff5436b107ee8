// A named cache's operations on the storage Engine of the shard that owns the key's partition.
// Synchronous: called on that shard's thread (the RESP command handlers, the HTTP routes and the
// service's purge all go through here). Every change is an Engine write (set, update,
// write_batch, erase), so it is replicated, moved and snapshotted with the partition; nothing is
// kept beside the engine.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "services/cache/definition.h"
#include "storage/engine.h"

namespace keel::cache {

// A definition as the data path sees it: the definition and the generation its entries use.
struct Active {
  Definition def;
  uint64_t generation = 0;  // the metadata revision of the create (or last clear)
};

// What a shard knows of the caches: name → active definition.
using Catalog = std::map<std::string, Active, std::less<>>;

struct Got {
  std::string value;
  int64_t expire_at_ms = 0;  // 0 = no expiry
};

struct PutOutcome {
  uint64_t evicted = 0;
};

// Access stamps order evictions: milliseconds × 1000 plus a per-thread sequence, so accesses
// within the same millisecond on one shard keep their order.
int64_t next_access_stamp(int64_t now_ms);

// nullopt if absent or expired. On a bounded lru/lfu cache the access is recorded (an Engine
// update of the entry's header) unless `note_access` is false (a replica answering).
Result<std::optional<Got>> get(storage::Engine& e, uint32_t partition, const Active& c,
                               std::string_view user_key, int64_t now_ms, bool note_access = true);

// Stores the entry; `ttl_ms` nullopt means the cache's defaultTtl (0 there = no expiry).
// On a bounded cache, first evicts what the policy chooses among this partition's entries, so
// the partition stays within its share (per_partition()) of maxEntries and maxMemory; the
// evictions and the write are one atomic Engine batch. Errors: kOutOfMemory when the cache is
// full and its eviction is none; kLimitExceeded when the entry alone exceeds the partition's
// share of maxMemory.
Result<PutOutcome> put(storage::Engine& e, uint32_t partition, uint32_t partitions, const Active& c,
                       std::string_view user_key, std::string_view value,
                       std::optional<int64_t> ttl_ms, int64_t now_ms);

// True if a live entry was removed.
Result<bool> remove(storage::Engine& e, uint32_t partition, const Active& c,
                    std::string_view user_key, int64_t now_ms);

// Erases the entries of `name` in one partition: every generation, or every generation but
// `keep_generation`. Returns how many were erased.
Result<uint64_t> purge_partition(storage::Engine& e, uint32_t partition, std::string_view name,
                                 std::optional<uint64_t> keep_generation, int64_t now_ms);

// Erases, in one partition, the cache entries whose cache is not in `catalog` or whose
// generation is not the catalog's. Returns how many were erased.
Result<uint64_t> purge_stale(storage::Engine& e, uint32_t partition, const Catalog& catalog,
                             int64_t now_ms);

struct Usage {
  uint64_t entries = 0;
  uint64_t bytes = 0;
};
// The live entries of one generation in one partition.
Usage usage_in_partition(storage::Engine& e, uint32_t partition, const Active& c, int64_t now_ms);

}  // namespace keel::cache
