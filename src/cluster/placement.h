// Where partitions live: weighted rendezvous (highest-random-weight) hashing over the storage
// members, with copies spread over zones.
//
// For partition p, every storage member n gets a score from a stable 64-bit hash of (p, n):
// u = hash mapped into (0, 1), score = -weight / ln(u). Sorting by score (highest first, ties by
// lower id) gives p's preference list. With this form the probability that n ranks first is
// exactly weight(n) / sum of weights, and adding or removing a node never reorders the others.
//
// place(p, copies) walks the preference list twice: first it takes the best node of each zone
// not yet used (so copies land in distinct zones while zones remain), then it fills the rest in
// preference order. The primary is always the top of the list. An empty zone label is one zone
// (the unnamed one), so a cluster without labels places by plain HRW. Gateways hold nothing.
//
// Stability (what makes joins and leaves cheap; checked by tests/unit/cluster/placement_test):
// adding a node changes the chosen set of a partition by at most one swap (the newcomer in, one
// node out), and only where the newcomer is chosen; removing a node changes it only where that
// node was chosen, by one swap.
//
// Pure: the hash is integer arithmetic (splitmix64 finalizer) and identical everywhere; the
// score uses std::log. The map is computed by one proposer and stored in metadata, so no
// two nodes need to agree on a float; determinism here means same input -> same map.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "cluster/partition_map.h"

namespace keel::cluster {

enum class Role : uint8_t { kStorage, kGateway };
std::string_view role_name(Role r);

inline constexpr uint32_t kMaxWeight = 1'000'000;
inline constexpr size_t kMaxZoneLength = 64;
inline constexpr size_t kMaxMembers = 4096;

struct Member {
  NodeId id = 0;
  uint32_t weight = 1;  // relative share of copies; 1..kMaxWeight
  std::string zone;     // failure domain; empty = the unnamed zone
  Role role = Role::kStorage;
  friend bool operator==(const Member&, const Member&) = default;
};

// kInvalidArgument naming the member and the field: duplicate id, weight 0 or above
// kMaxWeight, zone longer than kMaxZoneLength, more than kMaxMembers members.
Status validate_members(std::span<const Member> members);

// The stable hash of (partition, node) and its weighted score.
uint64_t placement_hash(uint32_t partition, NodeId node);
double placement_score(uint32_t partition, NodeId node, uint32_t weight);

// Placement over one member set, with the zone lookups done once (use it to place many
// partitions; the free functions below build one per call).
class Placer {
 public:
  // REQUIRES: validate_members(members).
  explicit Placer(std::span<const Member> members);
  // The storage members ordered by score for `partition`, best first. Input order is irrelevant.
  std::vector<NodeId> preference(uint32_t partition) const;
  // The copies of `partition`: min(copies, storage members) nodes, primary first (the top of
  // the preference list), then the replicas in the order they were chosen: first one per unused
  // zone, then the rest, so any prefix of the list is as zone-spread as it can be.
  std::vector<NodeId> place(uint32_t partition, uint32_t copies) const;
  size_t storage_count() const { return storage_.size(); }
  bool is_storage(NodeId id) const;

 private:
  struct Node {
    NodeId id;
    uint32_t weight;
    uint32_t zone;  // index into the distinct zone labels
  };
  std::vector<Node> storage_;  // ascending id
};

// One-off forms of Placer::preference / Placer::place. REQUIRES: validate_members(members).
std::vector<NodeId> preference(uint32_t partition, std::span<const Member> members);
std::vector<NodeId> place(uint32_t partition, std::span<const Member> members, uint32_t copies);

// A fresh map (version 1, every epoch 1) placing every partition with place().
// Errors: invalid members, no storage member, partitions not a divisor of 16384, copies
// outside 1..kMaxCopies.
Result<PartitionMap> initial_map(std::span<const Member> members,
                                 uint32_t partitions = kDefaultPartitions, uint32_t copies = 3);

}  // namespace keel::cluster
