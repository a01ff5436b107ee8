// The partition map as the data path stores it in metadata (domain "dht", key "map").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "dht/topology.h"

namespace keel::dht {

struct PartitionMapData {
  uint32_t copies = 1;
  uint32_t write_quorum = 1;
  std::vector<PartitionView> parts;
  // Each member's incarnation (its start time) as of the last epoch bump of its partitions.
  // A member that restarted forgot which fences it answered, so it serves nothing until the
  // map names its new incarnation (decided after the restart, bumping its partitions' epochs).
  std::map<uint32_t, uint64_t> incarnations;
};

std::string encode_partition_map(const PartitionMapData& m);
Result<PartitionMapData> decode_partition_map(std::string_view bytes);
// Places `partitions` partitions over `storage` nodes.
PartitionMapData initial_partition_map(const std::vector<uint32_t>& storage, uint32_t partitions,
                                       uint32_t copies, uint32_t write_quorum);

}  // namespace keel::dht
