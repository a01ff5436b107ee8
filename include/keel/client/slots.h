// Key -> slot, exactly as Redis Cluster (and keel) map keys to 16384 slots: CRC16-XMODEM of the
// key, or of the content of its first non-empty {hash tag}.
#pragma once

#include <cstdint>
#include <string_view>

namespace keel::client {

inline constexpr uint32_t kSlotCount = 16384;

uint16_t crc16_xmodem(std::string_view data);
std::string_view hash_tag(std::string_view key);
inline uint32_t key_slot(std::string_view key) {
  return crc16_xmodem(hash_tag(key)) & (kSlotCount - 1);
}

}  // namespace keel::client
