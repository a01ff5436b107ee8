// Key → slot → partition, exactly as Redis Cluster maps keys to its 16384 slots, so that
// cluster-aware Redis clients can route by themselves.
#pragma once

#include <cstdint>
#include <string_view>

namespace keel {

inline constexpr uint32_t kSlotCount = 16384;
inline constexpr uint32_t kDefaultPartitions = 1024;

// CRC16-XMODEM (poly 0x1021, init 0), the checksum Redis Cluster uses.
uint16_t crc16_xmodem(std::string_view data);

// The part of the key that is hashed: the content of the first {...} if it is non-empty,
// else the whole key (Redis Cluster's hash tag rule).
std::string_view hash_tag(std::string_view key);

// Service keys. A key whose first byte is 0xFF belongs to a service (a named cache, later a
// stream or a queue): 0xFF, the service's namespace (bytes other than 0x00), 0x00, then the
// key the user gave. Its slot is the slot of the user's key, so a service's keys spread over
// every partition exactly as the user's keys would, and a Redis Cluster client that hashes the
// user's key (CACHE.GET name key) routes to the right node. 0xFF never occurs in UTF-8 text,
// so no text key is ever mistaken for a service key. A 0xFF key without a 0x00 is an ordinary
// key.
inline constexpr char kServiceKeyMark = '\xff';
inline std::string_view user_key_of(std::string_view key) {
  if (key.empty() || key[0] != kServiceKeyMark) return key;
  auto sep = key.find('\0', 1);
  return sep == std::string_view::npos ? key : key.substr(sep + 1);
}

inline uint32_t key_slot(std::string_view key) {
  return crc16_xmodem(hash_tag(user_key_of(key))) & (kSlotCount - 1);
}

// Partitions are contiguous slot ranges of equal size. REQUIRES: partitions divides 16384.
inline uint32_t slot_partition(uint32_t slot, uint32_t partitions) {
  return slot / (kSlotCount / partitions);
}
inline uint32_t key_partition(std::string_view key, uint32_t partitions) {
  return slot_partition(key_slot(key), partitions);
}
bool valid_partition_count(uint32_t partitions);

}  // namespace keel
