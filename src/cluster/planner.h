// The rebalance planner and scheduler: pure functions from (partition map, members) to the map
// the cluster should reach and the moves that get it there, and a scheduler that runs those
// moves a few at a time and says when each partition's ownership switches.
//
// Planning (plan()):
//  1. `now`: what can be committed at once, with no data moving: copies on dead nodes are
//     dropped; a partition whose primary died gets its first surviving replica (map order) as
//     primary. The runtime may instead choose the most up-to-date replica (fail_over()).
//     Changed partitions get epoch + 1; the map gets version + 1 if anything changed.
//     A partition with no surviving copy is `lost`: it is left as it is (no source to copy from)
//     and reported; bringing it back empty is an operator's decision.
//  2. `target`: for every other partition, the copy set place() gives for the new members
//     (so the map converges to the placement of its member set whatever the history). Within
//     that set the primary stays where it is when it is in the set; else the first replica (map
//     order) in the set is promoted; else (one copy) the new copy becomes primary once caught up.
//     A new copy takes the place, in the replica order, of the copy it replaces, so the
//     replica prefixes namespaces use move as little as possible. Nodes that left without dying
//     (draining) stay in `now` and serve until their replacements are caught up.
//  3. `moves` = diff(now, target): per changed partition, add-copy (streamed from the current
//     primary), change-primary, remove-copy.
// Because place() is stable (placement.h), from a converged map a join moves only the copies
// the newcomer gets (about copies * P / N) and a leave or failure only the copies the node held.
//
// Scheduling (Rebalancer): the adds are transfers that move data and take a slot on both the
// source (primary) and the receiving node, at most max_transfers_per_node each; repairs of
// under-replicated partitions go first. Nothing in the map changes while a copy catches up (it
// is a learner the runtime streams to). When every new copy of a partition is caught up, the
// partition switches to its target assignment atomically — adds, primary change and removes
// together, epoch + 1 — in the next map version take_switch() returns for the runtime to
// propose. After a crash, or when the map changes under it (a failover), the runtime builds
// a new Rebalancer from the map in metadata and the stored target: the plan is a function of
// the two maps, so it resumes where it was.
//
// How the runtime uses this:
//  - member joins / drains (config change decided in metadata): r = plan(map, members, copies);
//    store r.target in metadata; run a Rebalancer(map, r.target); commit each take_switch()
//    map (re-propose the same map if the commit fails; rebuild the Rebalancer from the
//    committed map and the stored target after a crash or a failover).
//  - failure (the failure detector says dead): for each partition whose primary died, fence
//    its replicas, pick the one holding every acknowledged write and commit
//    with_assignment(map, p, fail_over(a, chosen, dead)) — or commit plan(...).now as it is
//    if the first replica is the choice. Then plan() again from the committed map: its `now`
//    is that map (nothing left to drop) and its target keeps the chosen primaries; run the
//    moves as above to re-create the lost copies.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "cluster/partition_map.h"
#include "cluster/placement.h"

namespace keel::cluster {

enum class MoveKind : uint8_t { kAddCopy, kChangePrimary, kRemoveCopy };
std::string_view move_kind_name(MoveKind k);

struct Move {
  uint32_t partition = 0;
  MoveKind kind = MoveKind::kAddCopy;
  NodeId node = 0;    // gets the copy / becomes primary / drops its copy
  NodeId source = 0;  // kAddCopy: the primary the data is streamed from; else = node
  friend bool operator==(const Move&, const Move&) = default;
};

struct Plan {
  PartitionMap now;               // commit at once (== current, same version, if no node died)
  PartitionMap target;            // where the moves lead (version = now.version + 1 if it differs)
  std::vector<Move> moves;        // diff(now, target)
  std::vector<uint32_t> lost;     // partitions with no surviving copy (unchanged in now and target)
  std::vector<uint32_t> changed;  // partitions whose assignment differs between now and target
  uint32_t copies = 0;  // copies per partition in target: min(copies asked, storage members)
};

// `members`: the member set to place over (storage members hold copies). `dead`: nodes the
// failure detector declared dead (their copies are gone). A node in the map that is neither a
// storage member nor dead is draining: it keeps its copies until they are moved.
// Errors (kInvalidArgument): invalid map or members, copies outside 1..kMaxCopies, no storage
// member, a dead node listed as a member.
Result<Plan> plan(const PartitionMap& current, std::span<const Member> members, uint32_t copies,
                  std::span<const NodeId> dead = {});

// plan() keeps every primary that stays a copy, so a newcomer receives replicas only and
// serves no primaries. The runtime balances primaries too: in `target` (a plan's target over
// `members`), the primary of each partition becomes the copy placement ranks first (the top
// of place()), when that node holds a copy in the target; the old primary takes its place in
// the replica order. On a join with a converged map this moves the primaries of the
// partitions the newcomer ranks first in, about P/N — the fewest that balance primaries.
// Changed partitions get epoch + 1 relative to `current` (once). REQUIRES: `target` came from
// plan(current, members, copies).
PartitionMap prefer_placed_primaries(const PartitionMap& current, PartitionMap target,
                                     std::span<const Member> members, uint32_t copies);

// The moves from one map to another: per partition (ascending), adds (target order), the
// primary change, removes (map order). REQUIRES: same partition count.
std::vector<Move> diff(const PartitionMap& from, const PartitionMap& to);

// Failover: `new_primary` (a replica of `a` the runtime chose, e.g. the one with the highest
// log position) becomes primary; the other replicas keep their order; the old primary and
// every node in `dead` are dropped; epoch + 1. kInvalidArgument if new_primary is not a
// replica of `a` or is itself in `dead`.
Result<PartitionAssignment> fail_over(const PartitionAssignment& a, NodeId new_primary,
                                      std::span<const NodeId> dead = {});

// `map` with partition `partition` replaced by `a`, version + 1. kInvalidArgument if the
// partition does not exist, the epoch does not rise, or the result is not a valid map.
Result<PartitionMap> with_assignment(const PartitionMap& map, uint32_t partition,
                                     PartitionAssignment a);

// Partitions of `map` with fewer than `copies` copies, ascending (after a failure, until the
// lost copies are re-created).
std::vector<uint32_t> under_replicated(const PartitionMap& map, uint32_t copies);

struct RebalanceOptions {
  uint32_t max_transfers_per_node = 2;  // concurrent transfers a node sends or receives; >= 1
};

struct Transfer {
  uint32_t partition = 0;
  NodeId source = 0;  // the partition's primary in the current map
  NodeId target = 0;  // the node receiving the new copy
  friend bool operator==(const Transfer&, const Transfer&) = default;
  friend auto operator<=>(const Transfer&, const Transfer&) = default;
};

class Rebalancer {
 public:
  // kInvalidArgument if the maps differ in partition count or are invalid, or the options are.
  static Result<Rebalancer> create(PartitionMap current, PartitionMap target,
                                   RebalanceOptions opt = {});

  // Transfers to begin now, within the per-node limits; they are in flight from then on.
  // Under-replicated partitions first, then by partition id. Deterministic.
  std::vector<Transfer> start();
  // The new copy of `partition` on `node` holds everything the primary has (it is caught up).
  // kNotFound if no such transfer is in flight.
  Status caught_up(uint32_t partition, NodeId node);
  // The transfer failed or was cut off; it is pending again (start() will offer it again).
  Status abandon(uint32_t partition, NodeId node);
  // Switches every partition that is ready (all its new copies caught up, or it needed none)
  // to its target assignment with epoch + 1, in one new map version, and returns that map for
  // the runtime to commit; nullopt when no partition is ready.
  std::optional<PartitionMap> take_switch();

  const PartitionMap& current() const { return current_; }
  const PartitionMap& target() const { return target_; }
  bool done() const { return work_.empty(); }
  size_t pending_transfers() const;
  size_t in_flight_transfers() const;
  // Partitions still to switch.
  size_t remaining_partitions() const { return work_.size(); }
  // The transfers in flight, by partition then target (for `keel cluster status`).
  std::vector<Transfer> in_flight() const;

 private:
  struct Work {
    std::vector<NodeId> pending;  // adds not started, target order
    std::set<NodeId> in_flight;
    std::set<NodeId> caught_up;
  };
  Rebalancer(PartitionMap current, PartitionMap target, RebalanceOptions opt);
  uint32_t load(NodeId node) const;

  PartitionMap current_;
  PartitionMap target_;
  RebalanceOptions opt_;
  std::map<uint32_t, Work> work_;    // partitions whose assignment must change
  std::map<NodeId, uint32_t> load_;  // in-flight transfers per node (as source or target)
};

}  // namespace keel::cluster
