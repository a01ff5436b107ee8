#include "cluster/partition_map.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/codec.h"

namespace keel::cluster {

std::vector<NodeId> PartitionAssignment::copies() const {
  std::vector<NodeId> out;
  out.reserve(1 + replicas.size());
  out.push_back(primary);
  out.insert(out.end(), replicas.begin(), replicas.end());
  return out;
}

bool PartitionAssignment::holds(NodeId node) const {
  return primary == node || std::find(replicas.begin(), replicas.end(), node) != replicas.end();
}

SlotRange partition_slots(uint32_t partition, uint32_t partitions) {
  uint32_t width = kSlotCount / partitions;
  return {partition * width, partition * width + width - 1};
}

uint32_t PartitionMap::copies_on(NodeId node) const {
  uint32_t n = 0;
  for (const auto& a : partitions) n += a.holds(node) ? 1 : 0;
  return n;
}

uint32_t PartitionMap::primaries_on(NodeId node) const {
  uint32_t n = 0;
  for (const auto& a : partitions) n += a.primary == node ? 1 : 0;
  return n;
}

std::vector<NodeId> PartitionMap::nodes() const {
  std::vector<NodeId> out;
  for (const auto& a : partitions) {
    out.push_back(a.primary);
    out.insert(out.end(), a.replicas.begin(), a.replicas.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status validate(const PartitionMap& map) {
  if (!valid_partition_count(map.partition_count()))
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("partition map has {} partitions; allowed: a divisor of {} (1, 2, 4, ... {})",
                    map.partition_count(), kSlotCount, kSlotCount));
  for (uint32_t p = 0; p < map.partition_count(); ++p) {
    const auto& a = map.partitions[p];
    if (a.copy_count() > kMaxCopies)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("partition {} has {} copies; at most {} are allowed", p,
                                    a.copy_count(), kMaxCopies));
    auto c = a.copies();
    std::sort(c.begin(), c.end());
    if (auto dup = std::adjacent_find(c.begin(), c.end()); dup != c.end())
      return make_error(
          Errc::kInvalidArgument,
          fmt::format("partition {} names node {} twice; each node holds at most one copy", p,
                      *dup));
  }
  return {};
}

namespace {

constexpr uint8_t kFormat = 1;

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

std::unexpected<Error> corrupt(std::string what) {
  return make_error(Errc::kCorruption, "partition map: " + std::move(what));
}

// A varint that must be in its minimal form (so that the encoding is canonical).
Result<uint64_t> read_varint(Reader& r, std::string_view what) {
  size_t before = r.remaining();
  auto v = r.varint();
  if (!v) return corrupt(fmt::format("{}: {}", what, v.error().message));
  if (before - r.remaining() != varint_size(*v))
    return corrupt(fmt::format("{}: varint {} is not in its shortest form", what, *v));
  return *v;
}

}  // namespace

std::string encode(const PartitionMap& map) {
  std::vector<NodeId> table = map.nodes();
  std::string out;
  out.reserve(16 + table.size() * 3 + map.partitions.size() * 6);
  Writer w(out);
  w.u8(kFormat);
  w.varint(map.version);
  w.varint(map.partition_count());
  w.varint(table.size());
  for (size_t i = 0; i < table.size(); ++i) w.varint(i == 0 ? table[0] : table[i] - table[i - 1]);
  auto index = [&](NodeId n) {
    return static_cast<uint64_t>(std::lower_bound(table.begin(), table.end(), n) - table.begin());
  };
  for (const auto& a : map.partitions) {
    w.varint(a.epoch);
    w.varint(a.copy_count());
    w.varint(index(a.primary));
    for (NodeId r : a.replicas) w.varint(index(r));
  }
  return out;
}

Result<PartitionMap> decode_partition_map(std::string_view bytes) {
  if (bytes.size() > kMaxEncodedMapBytes)
    return corrupt(
        fmt::format("{} bytes; at most {} are allowed", bytes.size(), kMaxEncodedMapBytes));
  Reader r(bytes);
  auto format = r.u8();
  if (!format) return corrupt("empty input: expected the format byte");
  if (*format != kFormat)
    return corrupt(fmt::format("unknown format {}; this build reads format {}", *format, kFormat));
  PartitionMap map;
  auto version = read_varint(r, "version");
  if (!version) return std::unexpected(version.error());
  map.version = *version;
  auto p = read_varint(r, "partition count");
  if (!p) return std::unexpected(p.error());
  if (*p > kSlotCount || !valid_partition_count(static_cast<uint32_t>(*p)))
    return corrupt(fmt::format("partition count {} is not a divisor of {}", *p, kSlotCount));
  auto k = read_varint(r, "node count");
  if (!k) return std::unexpected(k.error());
  // Each node id takes at least one byte, and every node must hold a copy.
  if (*k == 0 || *k > r.remaining() || *k > *p * kMaxCopies)
    return corrupt(
        fmt::format("node count {} is impossible for {} partitions in {} remaining bytes", *k, *p,
                    r.remaining()));
  std::vector<NodeId> table;
  table.reserve(*k);
  for (uint64_t i = 0; i < *k; ++i) {
    auto d = read_varint(r, fmt::format("node {}", i));
    if (!d) return std::unexpected(d.error());
    if (i > 0 && *d == 0)
      return corrupt(fmt::format("node {} repeats node id {}; ids must ascend", i, table.back()));
    // Checked before adding, so that a huge delta cannot wrap around to a small id.
    if (*d > UINT32_MAX || (i == 0 ? 0 : uint64_t{table.back()}) + *d > UINT32_MAX)
      return corrupt(fmt::format("node {} id delta {} takes it beyond 32 bits", i, *d));
    uint64_t id = (i == 0 ? 0 : uint64_t{table.back()}) + *d;
    table.push_back(static_cast<NodeId>(id));
  }
  std::vector<bool> used(table.size(), false);
  map.partitions.resize(*p);
  for (uint32_t part = 0; part < *p; ++part) {
    auto& a = map.partitions[part];
    auto epoch = read_varint(r, fmt::format("partition {} epoch", part));
    if (!epoch) return std::unexpected(epoch.error());
    a.epoch = *epoch;
    auto c = read_varint(r, fmt::format("partition {} copy count", part));
    if (!c) return std::unexpected(c.error());
    if (*c < 1 || *c > kMaxCopies)
      return corrupt(
          fmt::format("partition {} has {} copies; allowed 1..{}", part, *c, kMaxCopies));
    for (uint64_t j = 0; j < *c; ++j) {
      auto idx = read_varint(r, fmt::format("partition {} copy {}", part, j));
      if (!idx) return std::unexpected(idx.error());
      if (*idx >= table.size())
        return corrupt(
            fmt::format("partition {} copy {} refers to node #{}; the table has {} nodes", part, j,
                        *idx, table.size()));
      NodeId n = table[*idx];
      if (j > 0 && a.holds(n))
        return corrupt(fmt::format("partition {} names node {} twice", part, n));
      used[*idx] = true;
      if (j == 0)
        a.primary = n;
      else
        a.replicas.push_back(n);
    }
  }
  if (!r.done())
    return corrupt(fmt::format("{} trailing bytes after the last partition", r.remaining()));
  for (size_t i = 0; i < used.size(); ++i)
    if (!used[i])
      return corrupt(fmt::format("node {} is in the table but holds no copy", table[i]));
  return map;
}

}  // namespace keel::cluster
