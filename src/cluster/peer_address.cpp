#include "cluster/peer_address.h"

#include <fmt/format.h>

#include <charconv>
#include <set>

namespace keel::cluster {

std::string PeerAddress::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return v6 ? fmt::format("{}@[{}]:{}", id, host, port) : fmt::format("{}@{}:{}", id, host, port);
}

Result<PeerAddress> parse_peer(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(Errc::kInvalidArgument,
                      fmt::format("peer '{}' {}; expected ID@HOST:PORT, e.g. 2@127.0.0.1:9381", text, why));
  };
  auto at = text.find('@');
  if (at == std::string_view::npos) return bad("has no '@'");
  PeerAddress p;
  auto id = text.substr(0, at);
  uint64_t n = 0;
  auto [pe, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
  if (id.empty() || ec != std::errc() || pe != id.data() + id.size() || n == 0 || n > kMaxNodeId)
    return bad(fmt::format("has id '{}', not an integer from 1 to {}", id, kMaxNodeId));
  p.id = static_cast<uint32_t>(n);
  auto rest = text.substr(at + 1);
  std::string_view host, port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return bad("has a malformed [IPv6]:PORT part");
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("has no ':PORT'");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return bad("has an empty host");
  uint64_t pn = 0;
  auto [pp, pec] = std::from_chars(port.data(), port.data() + port.size(), pn);
  if (port.empty() || pec != std::errc() || pp != port.data() + port.size() || pn == 0 || pn > 65535)
    return bad(fmt::format("has port '{}', not an integer from 1 to 65535", port));
  p.host = std::string(host);
  p.port = static_cast<uint16_t>(pn);
  return p;
}

Result<std::vector<PeerAddress>> parse_peer_list(std::string_view text) {
  std::vector<PeerAddress> out;
  std::set<uint32_t> ids;
  std::set<std::pair<std::string, uint16_t>> addrs;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    auto p = parse_peer(item);
    if (!p) return std::unexpected(p.error());
    if (!ids.insert(p->id).second)
      return make_error(Errc::kInvalidArgument, fmt::format("peer id {} appears twice; every member needs its own id", p->id));
    if (!addrs.insert({p->host, p->port}).second)
      return make_error(Errc::kInvalidArgument, fmt::format("address {}:{} appears twice", p->host, p->port));
    out.push_back(std::move(*p));
  }
  return out;
}

}  // namespace keel::cluster
