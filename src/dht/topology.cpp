#include "dht/topology.h"

#include <algorithm>

#include <fmt/format.h>

namespace keel::dht {

bool Topology::holds(uint32_t partition, uint32_t node) const {
  if (partition >= parts.size()) return false;
  auto& p = parts[partition];
  return p.primary == node || std::find(p.replicas.begin(), p.replicas.end(), node) != p.replicas.end();
}

// "resp=H:P data=H:P name=HEX role=storage|gateway"
std::string encode_node(const NodeRecord& n) {
  return fmt::format("resp={} data={} name={} role={} incarnation={}", n.resp, n.data, n.name,
                     n.storage ? "storage" : "gateway", n.incarnation);
}

Result<NodeRecord> decode_node(std::string_view text) {
  NodeRecord n;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t sp = text.find(' ', pos);
    if (sp == std::string_view::npos) sp = text.size();
    auto field = text.substr(pos, sp - pos);
    pos = sp + 1;
    auto eq = field.find('=');
    if (eq == std::string_view::npos)
      return make_error(Errc::kCorruption, fmt::format("node record: field '{}' is not name=value", field));
    auto k = field.substr(0, eq), v = field.substr(eq + 1);
    if (k == "resp") n.resp = v;
    else if (k == "data") n.data = v;
    else if (k == "name") n.name = v;
    else if (k == "role") n.storage = v != "gateway";
    else if (k == "incarnation") n.incarnation = std::strtoull(std::string(v).c_str(), nullptr, 10);
  }
  if (n.data.empty()) return make_error(Errc::kCorruption, "node record: no data address");
  return n;
}

}  // namespace keel::dht
