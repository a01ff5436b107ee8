// The memory engine: one instance per shard, single-threaded, no locks.
//
// Layout (see README.md): per partition a chained hash table (power-of-two bucket array of
// pointers); every key is ONE allocation holding the chain link, a packed header, an optional
// expiry block, the key bytes and the value bytes (hash values hold a pointer to a heap Value).
// Scan cursors use Redis's reverse-binary bucket order, so a key present for a whole scan is
// returned at least once even if tables grow or shrink in between.
#pragma once

#include <cstdint>
#include <memory>

#include "storage/engine.h"

namespace keel::storage {

// REQUIRES: config.kind == kMemory, config.partitions >= 1, 1 <= config.eviction_samples <= 64.
// `seed` drives eviction/expiry sampling and the LFU counter; engines are deterministic given it.
std::unique_ptr<Engine> make_memory_engine(const EngineConfig& config, uint64_t seed);

// The exact message Redis gives under maxmemory + noeviction.
inline constexpr std::string_view kOomMessage =
    "command not allowed when used memory > 'maxmemory'.";

}  // namespace keel::storage
