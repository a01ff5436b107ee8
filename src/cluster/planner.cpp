#include "cluster/planner.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace keel::cluster {

std::string_view move_kind_name(MoveKind k) {
  switch (k) {
    case MoveKind::kAddCopy:
      return "add-copy";
    case MoveKind::kChangePrimary:
      return "change-primary";
    case MoveKind::kRemoveCopy:
      return "remove-copy";
  }
  return "unknown";
}

namespace {

bool contains(std::span<const NodeId> v, NodeId n) {
  return std::find(v.begin(), v.end(), n) != v.end();
}

// The assignment with `dead` nodes dropped; the first surviving replica becomes primary if the
// primary died. nullopt if no copy survives.
std::optional<PartitionAssignment> without_dead(const PartitionAssignment& a,
                                                std::span<const NodeId> dead) {
  std::vector<NodeId> alive;
  for (NodeId n : a.copies())
    if (!contains(dead, n)) alive.push_back(n);
  if (alive.empty()) return std::nullopt;
  PartitionAssignment out{
      .primary = alive[0], .replicas = {alive.begin() + 1, alive.end()}, .epoch = a.epoch};
  if (out != a) ++out.epoch;
  return out;
}

// The target assignment of a partition currently assigned `a` whose ideal copy set is `ideal`
// (place() order): keep what is in the ideal set where it is, put new copies in the places of
// the copies they replace.
PartitionAssignment converge(const PartitionAssignment& a, const std::vector<NodeId>& ideal) {
  std::vector<NodeId> adds;
  for (NodeId n : ideal)
    if (!a.holds(n)) adds.push_back(n);
  size_t next_add = 0;
  PartitionAssignment out;
  out.epoch = a.epoch;
  if (contains(ideal, a.primary)) {
    out.primary = a.primary;
  } else {
    auto r = std::find_if(a.replicas.begin(), a.replicas.end(),
                          [&](NodeId n) { return contains(ideal, n); });
    out.primary = r != a.replicas.end() ? *r : adds[next_add++];
  }
  for (NodeId r : a.replicas) {
    if (r == out.primary) continue;
    if (contains(ideal, r))
      out.replicas.push_back(r);
    else if (next_add < adds.size())
      out.replicas.push_back(adds[next_add++]);
  }
  while (next_add < adds.size()) out.replicas.push_back(adds[next_add++]);
  if (out.primary != a.primary || out.replicas != a.replicas) ++out.epoch;
  return out;
}

}  // namespace

Result<Plan> plan(const PartitionMap& current, std::span<const Member> members, uint32_t copies,
                  std::span<const NodeId> dead) {
  if (auto ok = validate(current); !ok) return std::unexpected(ok.error());
  if (auto ok = validate_members(members); !ok) return std::unexpected(ok.error());
  if (copies < 1 || copies > kMaxCopies)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("copies = {}; allowed 1..{}", copies, kMaxCopies));
  for (const auto& m : members)
    if (contains(dead, m.id))
      return make_error(
          Errc::kInvalidArgument,
          fmt::format("node {} is listed both as a member and as dead; a dead node is not a member",
                      m.id));
  Placer placer(members);
  if (placer.storage_count() == 0)
    return make_error(
        Errc::kInvalidArgument,
        "no member has role storage; at least one storage member is needed to hold partitions");
  Plan out;
  out.copies = static_cast<uint32_t>(std::min<size_t>(copies, placer.storage_count()));
  out.now = current;
  bool now_changed = false;
  for (uint32_t p = 0; p < current.partition_count(); ++p) {
    auto a = without_dead(current.partitions[p], dead);
    if (!a) {
      out.lost.push_back(p);
      continue;
    }
    if (*a != current.partitions[p]) {
      out.now.partitions[p] = std::move(*a);
      now_changed = true;
    }
  }
  if (now_changed) ++out.now.version;
  out.target = out.now;
  for (uint32_t p = 0; p < current.partition_count(); ++p) {
    if (std::binary_search(out.lost.begin(), out.lost.end(), p)) continue;
    auto t = converge(out.now.partitions[p], placer.place(p, out.copies));
    if (t != out.now.partitions[p]) {
      out.target.partitions[p] = std::move(t);
      out.changed.push_back(p);
    }
  }
  if (!out.changed.empty()) ++out.target.version;
  out.moves = diff(out.now, out.target);
  return out;
}

std::vector<Move> diff(const PartitionMap& from, const PartitionMap& to) {
  std::vector<Move> moves;
  uint32_t n = std::min(from.partition_count(), to.partition_count());
  for (uint32_t p = 0; p < n; ++p) {
    const auto& a = from.partitions[p];
    const auto& b = to.partitions[p];
    for (NodeId x : b.copies())
      if (!a.holds(x)) moves.push_back({p, MoveKind::kAddCopy, x, a.primary});
    if (a.primary != b.primary)
      moves.push_back({p, MoveKind::kChangePrimary, b.primary, b.primary});
    for (NodeId x : a.copies())
      if (!b.holds(x)) moves.push_back({p, MoveKind::kRemoveCopy, x, x});
  }
  return moves;
}

PartitionMap prefer_placed_primaries(const PartitionMap& current, PartitionMap target,
                                     std::span<const Member> members, uint32_t copies) {
  Placer placer(members);
  for (uint32_t p = 0; p < target.partition_count(); ++p) {
    auto& t = target.partitions[p];
    auto placed = placer.place(p, copies);
    if (placed.empty() || placed[0] == t.primary || !t.holds(placed[0])) continue;
    NodeId first = placed[0];
    for (auto& r : t.replicas)
      if (r == first) r = t.primary;  // the old primary takes the new one's replica slot
    t.primary = first;
    const auto& c = current.partitions[p];
    t.epoch = c.epoch + ((t.primary != c.primary || t.replicas != c.replicas) ? 1 : 0);
  }
  return target;
}

Result<PartitionAssignment> fail_over(const PartitionAssignment& a, NodeId new_primary,
                                      std::span<const NodeId> dead) {
  if (!contains(a.replicas, new_primary))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("node {} is not a replica of this partition (replicas: {}); "
                                  "only a replica can take over",
                                  new_primary, fmt::join(a.replicas, ",")));
  if (contains(dead, new_primary))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("node {} is dead; choose a live replica", new_primary));
  PartitionAssignment out{.primary = new_primary, .replicas = {}, .epoch = a.epoch + 1};
  for (NodeId r : a.replicas)
    if (r != new_primary && !contains(dead, r)) out.replicas.push_back(r);
  return out;
}

Result<PartitionMap> with_assignment(const PartitionMap& map, uint32_t partition,
                                     PartitionAssignment a) {
  if (partition >= map.partition_count())
    return make_error(Errc::kInvalidArgument,
                      fmt::format("partition {} does not exist; the map has 0..{}", partition,
                                  map.partition_count() - 1));
  if (a.epoch <= map.partitions[partition].epoch)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("partition {}: new epoch {} must be above the current epoch {}",
                                  partition, a.epoch, map.partitions[partition].epoch));
  PartitionMap out = map;
  out.partitions[partition] = std::move(a);
  ++out.version;
  if (auto ok = validate(out); !ok) return std::unexpected(ok.error());
  return out;
}

std::vector<uint32_t> under_replicated(const PartitionMap& map, uint32_t copies) {
  std::vector<uint32_t> out;
  for (uint32_t p = 0; p < map.partition_count(); ++p)
    if (map.partitions[p].copy_count() < copies) out.push_back(p);
  return out;
}

// ---- Rebalancer ----

Result<Rebalancer> Rebalancer::create(PartitionMap current, PartitionMap target,
                                      RebalanceOptions opt) {
  if (auto ok = validate(current); !ok) return std::unexpected(ok.error());
  if (auto ok = validate(target); !ok) return std::unexpected(ok.error());
  if (current.partition_count() != target.partition_count())
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("current map has {} partitions and target {}; the partition count is fixed",
                    current.partition_count(), target.partition_count()));
  if (opt.max_transfers_per_node < 1)
    return make_error(Errc::kInvalidArgument, "max_transfers_per_node = 0; allowed: at least 1");
  return Rebalancer(std::move(current), std::move(target), opt);
}

Rebalancer::Rebalancer(PartitionMap current, PartitionMap target, RebalanceOptions opt)
    : current_(std::move(current)), target_(std::move(target)), opt_(opt) {
  for (uint32_t p = 0; p < current_.partition_count(); ++p) {
    const auto& a = current_.partitions[p];
    const auto& b = target_.partitions[p];
    if (a.primary == b.primary && a.replicas == b.replicas) continue;
    Work w;
    for (NodeId x : b.copies())
      if (!a.holds(x)) w.pending.push_back(x);
    work_.emplace(p, std::move(w));
  }
}

uint32_t Rebalancer::load(NodeId node) const {
  auto it = load_.find(node);
  return it == load_.end() ? 0 : it->second;
}

std::vector<Transfer> Rebalancer::start() {
  // Repairs first: partitions with fewer copies now than they will have.
  std::vector<uint32_t> order;
  for (const auto& [p, w] : work_)
    if (!w.pending.empty()) order.push_back(p);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    bool ux = current_.partitions[x].copy_count() < target_.partitions[x].copy_count();
    bool uy = current_.partitions[y].copy_count() < target_.partitions[y].copy_count();
    return ux && !uy;
  });
  std::vector<Transfer> started;
  for (uint32_t p : order) {
    auto& w = work_.at(p);
    NodeId source = current_.partitions[p].primary;
    for (auto it = w.pending.begin(); it != w.pending.end();) {
      if (load(source) >= opt_.max_transfers_per_node) break;
      if (load(*it) >= opt_.max_transfers_per_node) {
        ++it;
        continue;
      }
      ++load_[source];
      ++load_[*it];
      started.push_back({p, source, *it});
      w.in_flight.insert(*it);
      it = w.pending.erase(it);
    }
  }
  return started;
}

Status Rebalancer::caught_up(uint32_t partition, NodeId node) {
  auto it = work_.find(partition);
  if (it == work_.end() || it->second.in_flight.erase(node) == 0)
    return make_error(
        Errc::kNotFound,
        fmt::format("no transfer of partition {} to node {} is in flight", partition, node));
  it->second.caught_up.insert(node);
  NodeId source = current_.partitions[partition].primary;
  --load_[source];
  --load_[node];
  return {};
}

Status Rebalancer::abandon(uint32_t partition, NodeId node) {
  auto it = work_.find(partition);
  if (it == work_.end() || it->second.in_flight.erase(node) == 0)
    return make_error(
        Errc::kNotFound,
        fmt::format("no transfer of partition {} to node {} is in flight", partition, node));
  // Back in target order, so the next start() offers it in the same place.
  auto& w = it->second;
  w.pending.push_back(node);
  std::vector<NodeId> order = target_.partitions[partition].copies();
  std::sort(w.pending.begin(), w.pending.end(), [&](NodeId x, NodeId y) {
    return std::find(order.begin(), order.end(), x) < std::find(order.begin(), order.end(), y);
  });
  NodeId source = current_.partitions[partition].primary;
  --load_[source];
  --load_[node];
  return {};
}

std::optional<PartitionMap> Rebalancer::take_switch() {
  bool any = false;
  for (auto it = work_.begin(); it != work_.end();) {
    if (!it->second.pending.empty() || !it->second.in_flight.empty()) {
      ++it;
      continue;
    }
    auto& a = current_.partitions[it->first];
    uint64_t epoch = a.epoch + 1;
    a = target_.partitions[it->first];
    a.epoch = epoch;
    any = true;
    it = work_.erase(it);
  }
  if (!any) return std::nullopt;
  ++current_.version;
  return current_;
}

std::vector<Transfer> Rebalancer::in_flight() const {
  std::vector<Transfer> out;
  for (const auto& [p, w] : work_)
    for (NodeId n : w.in_flight) out.push_back({p, current_.partitions[p].primary, n});
  return out;
}

size_t Rebalancer::pending_transfers() const {
  size_t n = 0;
  for (const auto& [p, w] : work_) n += w.pending.size();
  return n;
}

size_t Rebalancer::in_flight_transfers() const {
  size_t n = 0;
  for (const auto& [p, w] : work_) n += w.in_flight.size();
  return n;
}

}  // namespace keel::cluster
