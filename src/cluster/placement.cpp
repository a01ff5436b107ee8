#include "cluster/placement.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>
#include <unordered_set>

namespace keel::cluster {

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kStorage:
      return "storage";
    case Role::kGateway:
      return "gateway";
  }
  return "unknown";
}

Status validate_members(std::span<const Member> members) {
  if (members.size() > kMaxMembers)
    return make_error(Errc::kInvalidArgument, fmt::format("{} members; at most {} are allowed",
                                                          members.size(), kMaxMembers));
  std::unordered_set<NodeId> seen;
  for (const auto& m : members) {
    if (!seen.insert(m.id).second)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("member {} is listed twice; ids must be unique", m.id));
    if (m.weight == 0 || m.weight > kMaxWeight)
      return make_error(
          Errc::kInvalidArgument,
          fmt::format("member {} has weight {}; allowed 1..{}", m.id, m.weight, kMaxWeight));
    if (m.zone.size() > kMaxZoneLength)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("member {} has a zone label of {} bytes; at most {}", m.id,
                                    m.zone.size(), kMaxZoneLength));
  }
  return {};
}

namespace {

uint64_t mix64(uint64_t z) {  // splitmix64's finalizer: a bijection with good avalanche
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t placement_hash(uint32_t partition, NodeId node) {
  // (partition, node) -> 64 bits injectively, then two rounds so that neighbouring inputs
  // (partition p and p + 1 for the same node) are unrelated.
  uint64_t key = (uint64_t{partition} << 32) | node;
  return mix64(mix64(key) ^ 0x6b65656c2d687277ULL);  // "keel-hrw"
}

double placement_score(uint32_t partition, NodeId node, uint32_t weight) {
  // u in (0, 1): the top 53 bits, centred in their interval so neither 0 nor 1 occurs.
  double u = (static_cast<double>(placement_hash(partition, node) >> 11) + 0.5) * 0x1.0p-53;
  return -static_cast<double>(weight) / std::log(u);
}

Placer::Placer(std::span<const Member> members) {
  std::vector<std::string_view> zones;
  for (const auto& m : members) {
    if (m.role != Role::kStorage) continue;
    auto it = std::find(zones.begin(), zones.end(), std::string_view(m.zone));
    if (it == zones.end()) it = zones.insert(zones.end(), std::string_view(m.zone));
    storage_.push_back({m.id, m.weight, static_cast<uint32_t>(it - zones.begin())});
  }
  std::sort(storage_.begin(), storage_.end(),
            [](const Node& a, const Node& b) { return a.id < b.id; });
}

bool Placer::is_storage(NodeId id) const {
  return std::binary_search(storage_.begin(), storage_.end(), Node{id, 0, 0},
                            [](const Node& a, const Node& b) { return a.id < b.id; });
}

namespace {

struct Scored {
  double score;
  NodeId id;
  uint32_t zone;
};

template <class Nodes>
std::vector<Scored> ranked(uint32_t partition, const Nodes& storage) {
  std::vector<Scored> s;
  s.reserve(storage.size());
  for (const auto& n : storage)
    s.push_back({placement_score(partition, n.id, n.weight), n.id, n.zone});
  std::sort(s.begin(), s.end(), [](const Scored& a, const Scored& b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  });
  return s;
}

}  // namespace

std::vector<NodeId> Placer::preference(uint32_t partition) const {
  std::vector<NodeId> out;
  out.reserve(storage_.size());
  for (const auto& s : ranked(partition, storage_)) out.push_back(s.id);
  return out;
}

std::vector<NodeId> Placer::place(uint32_t partition, uint32_t copies) const {
  auto pref = ranked(partition, storage_);
  size_t want = std::min<size_t>(copies, pref.size());
  std::vector<NodeId> out;
  out.reserve(want);
  std::vector<bool> taken(pref.size(), false);
  std::vector<uint32_t> zones_used;
  // Pass 1: the best node of each zone, in preference order (so the primary is pref[0]).
  for (size_t i = 0; i < pref.size() && out.size() < want; ++i) {
    if (std::find(zones_used.begin(), zones_used.end(), pref[i].zone) != zones_used.end()) continue;
    zones_used.push_back(pref[i].zone);
    taken[i] = true;
    out.push_back(pref[i].id);
  }
  // Pass 2: fewer zones than copies; fill in preference order.
  for (size_t i = 0; i < pref.size() && out.size() < want; ++i) {
    if (taken[i]) continue;
    taken[i] = true;
    out.push_back(pref[i].id);
  }
  return out;
}

std::vector<NodeId> preference(uint32_t partition, std::span<const Member> members) {
  return Placer(members).preference(partition);
}

std::vector<NodeId> place(uint32_t partition, std::span<const Member> members, uint32_t copies) {
  return Placer(members).place(partition, copies);
}

Result<PartitionMap> initial_map(std::span<const Member> members, uint32_t partitions,
                                 uint32_t copies) {
  if (auto ok = validate_members(members); !ok) return std::unexpected(ok.error());
  if (!valid_partition_count(partitions))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("partitions = {}; allowed: a divisor of {} (1, 2, 4, ... {})",
                                  partitions, kSlotCount, kSlotCount));
  if (copies < 1 || copies > kMaxCopies)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("copies = {}; allowed 1..{}", copies, kMaxCopies));
  if (std::none_of(members.begin(), members.end(),
                   [](const Member& m) { return m.role == Role::kStorage; }))
    return make_error(
        Errc::kInvalidArgument,
        "no member has role storage; at least one storage member is needed to hold partitions");
  PartitionMap map;
  map.version = 1;
  map.partitions.resize(partitions);
  Placer placer(members);
  for (uint32_t p = 0; p < partitions; ++p) {
    auto c = placer.place(p, copies);
    auto& a = map.partitions[p];
    a.primary = c[0];
    a.replicas.assign(c.begin() + 1, c.end());
    a.epoch = 1;
  }
  return map;
}

}  // namespace keel::cluster
