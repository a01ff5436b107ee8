// The partition map: which nodes hold each of the P partitions of the keyspace, kept in the
// Rabia-replicated metadata and changed only by decided commands (see placement.h for how it
// is computed, planner.h for how it changes).
//
// A partition is a contiguous range of Redis Cluster slots (16384 / P of them). For each
// partition the map gives its primary, an ordered list of replicas (the primary excluded; a
// namespace with `replicas = r` uses the primary and the first r - 1 replicas) and an epoch that
// rises every time the partition's assignment changes: requests and replication messages
// carrying an older epoch are refused. The map has its own version, +1 per committed change.
//
// Pure: values and a codec, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/slots.h"

namespace keel::cluster {

using NodeId = uint32_t;

// At most this many copies (primary + replicas) of one partition.
inline constexpr uint32_t kMaxCopies = 16;
// The encoded map is refused past this size (it travels in one metadata command).
inline constexpr size_t kMaxEncodedMapBytes = 4u << 20;

struct PartitionAssignment {
  NodeId primary = 0;
  std::vector<NodeId> replicas;  // ordered, distinct, never the primary
  uint64_t epoch = 0;

  // Primary first, then the replicas in order.
  std::vector<NodeId> copies() const;
  bool holds(NodeId node) const;
  size_t copy_count() const { return 1 + replicas.size(); }
  friend bool operator==(const PartitionAssignment&, const PartitionAssignment&) = default;
};

// Inclusive slot range [first, last], as CLUSTER SLOTS reports it.
struct SlotRange {
  uint32_t first = 0;
  uint32_t last = 0;
  friend bool operator==(const SlotRange&, const SlotRange&) = default;
};

// REQUIRES: valid_partition_count(partitions) and partition < partitions.
SlotRange partition_slots(uint32_t partition, uint32_t partitions);
// REQUIRES: valid_partition_count(partitions) and slot < kSlotCount.
inline uint32_t partition_of_slot(uint32_t slot, uint32_t partitions) {
  return slot_partition(slot, partitions);
}

struct PartitionMap {
  uint64_t version = 0;
  std::vector<PartitionAssignment> partitions;  // index = partition id; size = P

  uint32_t partition_count() const { return static_cast<uint32_t>(partitions.size()); }
  const PartitionAssignment& at(uint32_t partition) const { return partitions.at(partition); }
  SlotRange slots(uint32_t partition) const {
    return partition_slots(partition, partition_count());
  }
  const PartitionAssignment& for_slot(uint32_t slot) const {
    return partitions.at(partition_of_slot(slot, partition_count()));
  }
  // Copies held by `node` (as primary or replica), and primaries of `node`.
  uint32_t copies_on(NodeId node) const;
  uint32_t primaries_on(NodeId node) const;
  // Every node named in the map, ascending.
  std::vector<NodeId> nodes() const;
  friend bool operator==(const PartitionMap&, const PartitionMap&) = default;
};

// kInvalidArgument naming the first problem: P does not divide 16384, a partition with more
// than kMaxCopies copies, a replica equal to the primary or named twice.
Status validate(const PartitionMap& map);

// Canonical binary form (one map <-> one byte string), format 1:
//   u8 format=1 | varint version | varint P | varint K, K node ids (first, then ascending
//   deltas > 0) | per partition: varint epoch, varint copies c, c varint indexes into the node
//   table (primary first).
// Every varint is minimal and every node of the table is used, so decode(b) succeeding implies
// encode(decode(b)) == b. 1024 partitions x 3 copies with < 128 nodes encode in ~5 KiB.
// REQUIRES: validate(map).
std::string encode(const PartitionMap& map);
// kCorruption naming what is wrong and where (truncation, unknown format, bad P, duplicate
// copy, node index out of range, unused node, non-minimal varint, trailing bytes).
Result<PartitionMap> decode_partition_map(std::string_view bytes);

}  // namespace keel::cluster
