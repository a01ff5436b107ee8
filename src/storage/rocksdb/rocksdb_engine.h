// The persistent engine: one RocksDB database under data_dir shared by all shard instances.
// See README.md for the key and value formats.
#pragma once

#include <memory>
#include <vector>

#include "storage/engine.h"

namespace keel::storage {

// REQUIRES: config.kind == kPersistent. `clock` must outlive the engines (the compaction filter
// reads it on RocksDB's background threads).
Result<std::vector<std::unique_ptr<Engine>>> open_rocksdb_engines(const EngineConfig& config,
                                                                  unsigned shards,
                                                                  const Clock& clock);

// Compacts the whole database now (running the TTL compaction filter). For operators and tests;
// `engine` must be one returned by open_rocksdb_engines, otherwise kInvalidArgument.
Status compact_persistent_engine(Engine& engine);

}  // namespace keel::storage
