// The persistent engine with every key kept in memory: a MemoryEngine serves every read and
// holds the counts; a RocksDB engine in journal mode makes every write durable (and is loaded
// back into memory at start). The same trade as Redis with an append-only file: memory-speed
// reads and the dataset must fit in memory; unlike an AOF, RocksDB compacts itself.
#pragma once

#include <memory>

#include "storage/engine.h"

namespace keel::storage {

// Wraps one shard's journal (a RocksDB engine opened with journal_only) and loads the
// partitions `shard` owns (p % shards == shard) into a fresh memory engine.
Result<std::unique_ptr<Engine>> make_resident_engine(const EngineConfig& config,
                                                     std::unique_ptr<Engine> journal,
                                                     unsigned shard, unsigned shards,
                                                     int64_t now_ms);

}  // namespace keel::storage
