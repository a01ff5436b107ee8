// libFuzzer target for the partition map codec and the planner behind it: arbitrary bytes are
// decoded as a map; whatever is accepted must be valid and canonical (re-encodes to the same
// bytes), and planning from it — members taken from the map's own nodes, minus one dead and
// plus one newcomer — must give valid maps whose moves the rebalancer runs to the target.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/assert.h"
#include "cluster/partition_map.h"
#include "cluster/placement.h"
#include "cluster/planner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace keel::cluster;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto map = decode_partition_map(in);
  if (!map) {
    KEEL_ASSERT(map.error().code == keel::Errc::kCorruption);
    return 0;
  }
  KEEL_ASSERT(validate(*map).has_value());
  KEEL_ASSERT(encode(*map) == in);
  if (map->partition_count() > 256) return 0;  // keep each run short
  auto nodes = map->nodes();
  std::vector<Member> members;
  std::vector<NodeId> dead;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i == 0 && nodes.size() > 1) {
      dead.push_back(nodes[i]);
      continue;
    }
    members.push_back(
        {.id = nodes[i], .weight = 1 + static_cast<uint32_t>(i % 3), .zone = i % 2 ? "a" : "b"});
  }
  NodeId newcomer = nodes.back() == UINT32_MAX ? 0 : nodes.back() + 1;
  if (std::find(nodes.begin(), nodes.end(), newcomer) == nodes.end())
    members.push_back({.id = newcomer});
  auto pl = plan(*map, members, 3, dead);
  if (!pl) return 0;
  KEEL_ASSERT(validate(pl->now).has_value() && validate(pl->target).has_value());
  auto r = Rebalancer::create(pl->now, pl->target, {.max_transfers_per_node = 2});
  KEEL_ASSERT(r.has_value());
  for (int round = 0; round < 100000 && !r->done(); ++round) {
    for (const auto& t : r->start()) KEEL_ASSERT(r->caught_up(t.partition, t.target).has_value());
    if (auto m = r->take_switch()) KEEL_ASSERT(validate(*m).has_value());
  }
  KEEL_ASSERT(r->done());
  for (uint32_t p = 0; p < pl->target.partition_count(); ++p)
    KEEL_ASSERT(r->current().partitions[p].copies() == pl->target.partitions[p].copies());
  return 0;
}
