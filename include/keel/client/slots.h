// Key -> slot, exactly as Redis Cluster (and keel) map keys to 16384 slots: CRC16-XMODEM of the
// key, or of the content of its first non-empty {hash tag}.
#pragma once

#include <cstdint>
#include <string_view>

namespace keel::client {

inline constexpr uint32_t kSlotCount = 16384;

uint16_t crc16_xmodem(std::string_view data);
std::string_view hash_tag(std::string_view key);
// A key that starts with 0xFF and holds a 0x00 is a server-side service key (a named cache's
// entry: 0xFF, namespace, 0x00, user key); it hashes as its user key, as on the server.
inline std::string_view user_key_of(std::string_view key) {
  if (key.empty() || key[0] != '\xff') return key;
  auto sep = key.find('\0', 1);
  return sep == std::string_view::npos ? key : key.substr(sep + 1);
}
inline uint32_t key_slot(std::string_view key) {
  return crc16_xmodem(hash_tag(user_key_of(key))) & (kSlotCount - 1);
}

}  // namespace keel::client
