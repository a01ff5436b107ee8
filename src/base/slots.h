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

inline uint32_t key_slot(std::string_view key) { return crc16_xmodem(hash_tag(key)) & (kSlotCount - 1); }

// Partitions are contiguous slot ranges of equal size. REQUIRES: partitions divides 16384.
inline uint32_t slot_partition(uint32_t slot, uint32_t partitions) {
  return slot / (kSlotCount / partitions);
}
inline uint32_t key_partition(std::string_view key, uint32_t partitions) {
  return slot_partition(key_slot(key), partitions);
}
bool valid_partition_count(uint32_t partitions);

}  // namespace keel
