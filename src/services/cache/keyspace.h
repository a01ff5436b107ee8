// Where a named cache's entries live in the keyspace, and what an entry's stored value holds.
// Pure: no I/O.
//
// Entry key:   0xFF "c:" <name> ":" <generation, 16 hex digits> 0x00 <user key>
// The 0xFF ... 0x00 part is a service namespace (base/slots.h): the key's slot, partition and
// shard are those of the user's key alone. The generation is the metadata revision that last
// wrote the definition (create or clear), so a dropped and re-created, or cleared, cache never
// sees the entries of its previous incarnation even before they are purged.
//
// Stored value: 0x01, last access (Unix ms, 8 bytes big-endian), hits (4 bytes big-endian),
// then the user's value. The access stamp and hit count order evictions (lru, lfu); they are
// part of the value, so they are written, replicated and moved with it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/cache/definition.h"

namespace keel::cache {

// The entries of every generation of `name` share this prefix.
std::string name_prefix(std::string_view name);
// The entries of one generation share this prefix (it ends with the 0x00 separator).
std::string generation_prefix(std::string_view name, uint64_t generation);
std::string entry_key(std::string_view name, uint64_t generation, std::string_view user_key);

struct EntryKey {
  std::string_view name;
  uint64_t generation = 0;
  std::string_view user_key;
};
// nullopt if `key` is not a cache entry key.
std::optional<EntryKey> parse_entry_key(std::string_view key);

inline constexpr size_t kEntryHeaderBytes = 13;

struct Entry {
  int64_t access_ms = 0;
  uint32_t hits = 0;
  std::string_view value;
};
std::string encode_entry(std::string_view value, int64_t access_ms, uint32_t hits);
// nullopt if `stored` is not an entry written by the cache service.
std::optional<Entry> decode_entry(std::string_view stored);
// Rewrites the header of an encoded entry in place (an access). False if it is not an entry.
bool touch_entry(std::string& stored, int64_t access_ms);

// Bytes an entry counts against maxMemory: the user's key and value (not the header or the
// engine's own overhead).
inline uint64_t entry_bytes(std::string_view user_key, std::string_view value) {
  return user_key.size() + value.size();
}

// An entry of one partition that eviction may choose.
struct Candidate {
  std::string key;  // the full entry key
  uint64_t bytes = 0;
  int64_t access_ms = 0;
  uint32_t hits = 0;
};

// Which candidates to evict so that, after adding one entry of `incoming_bytes`, the partition
// holds at most `max_entries` entries and `max_bytes` bytes (0 = no bound). lru: the least
// recently accessed first; lfu: the fewest hits first, then the least recently accessed.
// nullopt if entries must go but the policy is none, or if the incoming entry alone exceeds
// max_bytes. Deterministic: ties are broken by key.
std::optional<std::vector<size_t>> choose_victims(const std::vector<Candidate>& candidates,
                                                  Eviction policy, uint64_t max_entries,
                                                  uint64_t max_bytes, uint64_t incoming_bytes);

}  // namespace keel::cache
