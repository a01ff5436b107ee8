// Member addresses as written in keel.toml and on the command line: "ID@HOST:PORT", for
// example "2@127.0.0.1:9381". IDs are small positive integers that name a member for life.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace keel::cluster {

inline constexpr uint32_t kMaxNodeId = 65535;

struct PeerAddress {
  uint32_t id = 0;
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;
  friend bool operator==(const PeerAddress&, const PeerAddress&) = default;
};

Result<PeerAddress> parse_peer(std::string_view text);
// A comma-separated list; ids must be distinct, as must host:port pairs. Empty text = empty list.
Result<std::vector<PeerAddress>> parse_peer_list(std::string_view text);

}  // namespace keel::cluster
