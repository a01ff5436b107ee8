#include "dht/partition_map_codec.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/codec.h"
#include "cluster/peer_address.h"

namespace keel::dht {

namespace {
constexpr uint8_t kVersion = 2;
constexpr uint64_t kMaxCopies = cluster::kMaxCopies;
}  // namespace

cluster::PartitionMap to_cluster_map(const PartitionMapData& m) {
  cluster::PartitionMap cm;
  cm.version = 1;  // the metadata revision versions the map
  cm.partitions.reserve(m.parts.size());
  for (auto& p : m.parts) cm.partitions.push_back({p.primary, p.replicas, p.epoch});
  return cm;
}

std::string encode_partition_map(const PartitionMapData& m) {
  std::string out;
  Writer w(out);
  w.u8(kVersion);
  w.varint(m.copies);
  w.varint(m.write_quorum);
  w.varint(m.incarnations.size());
  for (auto& [id, inc] : m.incarnations) {
    w.varint(id);
    w.varint(inc);
  }
  w.bytes(cluster::encode(to_cluster_map(m)));
  return out;
}

Result<PartitionMapData> decode_partition_map(std::string_view bytes) {
  Reader r(bytes);
  auto bad = [](std::string_view what) {
    return make_error(Errc::kCorruption, fmt::format("partition map: {}", what));
  };
  auto v = r.u8();
  if (!v || *v != kVersion) return bad(fmt::format("unknown version (allowed: {})", kVersion));
  auto copies = r.varint();
  auto wq = r.varint();
  if (!copies || !wq || *copies < 1 || *copies > kMaxCopies || *wq < 1 || *wq > *copies)
    return bad("bad copies or write quorum");
  PartitionMapData m;
  m.copies = static_cast<uint32_t>(*copies);
  m.write_quorum = static_cast<uint32_t>(*wq);
  auto ni = r.varint();
  if (!ni || *ni > cluster::kMaxNodeId) return bad("bad incarnation count");
  for (uint64_t i = 0; i < *ni; ++i) {
    auto id = r.varint();
    auto inc = r.varint();
    if (!id || !inc) return bad("truncated incarnations");
    m.incarnations[static_cast<uint32_t>(*id)] = *inc;
  }
  auto body = r.bytes(cluster::kMaxEncodedMapBytes);
  if (!body || !r.done()) return bad("truncated or trailing bytes");
  auto cm = cluster::decode_partition_map(*body);
  if (!cm) return std::unexpected(cm.error());
  for (auto& a : cm->partitions) m.parts.push_back({a.epoch, a.primary, a.replicas});
  return m;
}

Result<PartitionMapData> initial_partition_map(const std::vector<cluster::Member>& members,
                                               uint32_t partitions, uint32_t copies,
                                               uint32_t write_quorum) {
  auto cm = cluster::initial_map(members, partitions, copies);
  if (!cm) return std::unexpected(cm.error());
  PartitionMapData m;
  m.copies = copies;
  m.write_quorum = std::min(write_quorum, copies);
  for (auto& a : cm->partitions) m.parts.push_back({a.epoch, a.primary, a.replicas});
  return m;
}

}  // namespace keel::dht
