// A node's view of where data lives: the partition map decided in metadata (epoch, primary,
// replicas per partition) and the members' addresses. Immutable once built; a new one is made
// for every change and handed to the shards, so readers never lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace keel::dht {

struct NodeRecord {
  uint32_t id = 0;
  std::string resp;  // host:port for clients (CLUSTER SLOTS/NODES, MOVED)
  std::string data;  // host:port of the data plane (forwarding, replication)
  std::string name;  // 40 hex characters (CLUSTER MYID)
  bool storage = true;  // false: a gateway (serves clients, holds no partition)
  uint64_t incarnation = 0;  // when this node process started (wall ms): a restart changes it
};
std::string encode_node(const NodeRecord& n);
Result<NodeRecord> decode_node(std::string_view text);

struct PartitionView {
  uint64_t epoch = 0;
  uint32_t primary = 0;             // 0 = none (no storage node)
  std::vector<uint32_t> replicas;   // ordered, primary excluded
};

struct Topology {
  uint32_t self = 0;
  uint64_t version = 0;  // metadata revision of the map
  uint32_t copies = 1;   // target copies per partition (primary included)
  uint32_t write_quorum = 1;
  std::vector<PartitionView> parts;
  std::map<uint32_t, NodeRecord> nodes;
  std::map<uint32_t, bool> alive;  // failure detector's view (from the metadata driver)
  std::map<uint32_t, uint64_t> incarnations;  // as the map last acknowledged them

  const NodeRecord* node(uint32_t id) const {
    auto it = nodes.find(id);
    return it == nodes.end() ? nullptr : &it->second;
  }
  bool holds(uint32_t partition, uint32_t node) const;
};

}  // namespace keel::dht
