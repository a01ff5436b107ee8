#include "dht/partition_map_codec.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/codec.h"

namespace keel::dht {

namespace {
constexpr uint8_t kVersion = 1;
constexpr uint64_t kMaxPartitions = 16384;
constexpr uint64_t kMaxCopies = 16;

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

std::string encode_partition_map(const PartitionMapData& m) {
  std::string out;
  Writer w(out);
  w.u8(kVersion);
  w.varint(m.copies);
  w.varint(m.write_quorum);
  w.varint(m.parts.size());
  for (auto& p : m.parts) {
    w.varint(p.epoch);
    w.varint(p.primary);
    w.varint(p.replicas.size());
    for (auto r : p.replicas) w.varint(r);
  }
  w.varint(m.incarnations.size());
  for (auto& [id, inc] : m.incarnations) {
    w.varint(id);
    w.varint(inc);
  }
  return out;
}

Result<PartitionMapData> decode_partition_map(std::string_view bytes) {
  Reader r(bytes);
  auto bad = [](std::string_view what) {
    return make_error(Errc::kCorruption, fmt::format("partition map: {}", what));
  };
  auto v = r.u8();
  if (!v || *v != kVersion) return bad("unknown version");
  auto copies = r.varint();
  auto wq = r.varint();
  auto n = r.varint();
  if (!copies || !wq || !n || *copies < 1 || *copies > kMaxCopies || *wq < 1 || *wq > *copies ||
      *n > kMaxPartitions)
    return bad("bad header");
  PartitionMapData m;
  m.copies = static_cast<uint32_t>(*copies);
  m.write_quorum = static_cast<uint32_t>(*wq);
  m.parts.resize(*n);
  for (auto& p : m.parts) {
    auto e = r.varint();
    auto pr = r.varint();
    auto nr = r.varint();
    if (!e || !pr || !nr || *nr > kMaxCopies) return bad("truncated partition");
    p.epoch = *e;
    p.primary = static_cast<uint32_t>(*pr);
    for (uint64_t i = 0; i < *nr; ++i) {
      auto id = r.varint();
      if (!id) return bad("truncated replica list");
      p.replicas.push_back(static_cast<uint32_t>(*id));
    }
  }
  auto ni = r.varint();
  if (!ni || *ni > 65536) return bad("bad incarnation count");
  for (uint64_t i = 0; i < *ni; ++i) {
    auto id = r.varint();
    auto inc = r.varint();
    if (!id || !inc) return bad("truncated incarnations");
    m.incarnations[static_cast<uint32_t>(*id)] = *inc;
  }
  if (!r.done()) return bad("trailing bytes");
  return m;
}

PartitionMapData initial_partition_map(const std::vector<uint32_t>& storage, uint32_t partitions,
                                       uint32_t copies, uint32_t write_quorum) {
  PartitionMapData m;
  m.copies = copies;
  m.write_quorum = std::min(write_quorum, copies);
  uint32_t placed = std::min<uint32_t>(copies, static_cast<uint32_t>(storage.size()));
  m.parts.resize(partitions);
  for (uint32_t p = 0; p < partitions; ++p) {
    std::vector<std::pair<uint64_t, uint32_t>> ranked;
    for (auto id : storage) ranked.emplace_back(mix((uint64_t{p} << 32) ^ id), id);
    std::sort(ranked.rbegin(), ranked.rend());
    auto& pv = m.parts[p];
    pv.epoch = 1;
    pv.primary = ranked[0].second;
    for (uint32_t i = 1; i < placed; ++i) pv.replicas.push_back(ranked[i].second);
  }
  return m;
}

}  // namespace keel::dht
