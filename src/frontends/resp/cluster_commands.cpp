// CLUSTER INFO|MYID|SLOTS|SHARDS|NODES|KEYSLOT: the topology as Redis Cluster clients read it,
// so they can route by slot themselves. In a keel cluster the answer comes from the partition
// map (slot ranges of consecutive partitions with the same primary and replicas); a node
// outside a cluster serves all 16384 slots itself.
//
// keel's model differs from Redis Cluster's in one way clients can see: every storage node is
// the primary of some partitions and a replica of others, so every node is reported as a
// master, and CLUSTER SLOTS lists each range's replicas (those nodes also appear as masters of
// their own ranges). Any node accepts any key and forwards it, so a client with a stale view
// still gets its answer.
#include <set>

#include <fmt/format.h>

#include "base/slots.h"
#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

struct Range {
  uint32_t first_slot, last_slot;
  const dht::PartitionView* part;
};

// Consecutive partitions with the same owners, as slot ranges.
std::vector<Range> ranges(const dht::Topology& t) {
  std::vector<Range> out;
  uint32_t n = static_cast<uint32_t>(t.parts.size());
  if (n == 0) return out;
  uint32_t per = kSlotCount / n;
  for (uint32_t p = 0; p < n; ++p) {
    auto& pv = t.parts[p];
    if (!out.empty() && out.back().part->primary == pv.primary && out.back().part->replicas == pv.replicas &&
        out.back().last_slot + 1 == p * per) {
      out.back().last_slot = (p + 1) * per - 1;
      continue;
    }
    out.push_back({p * per, (p + 1) * per - 1, &pv});
  }
  return out;
}

std::pair<std::string, int> host_port(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return {addr, 0};
  return {addr.substr(0, colon), std::atoi(addr.c_str() + colon + 1)};
}

void node_entry(Reply& r, const dht::Topology& t, uint32_t id) {
  auto* n = t.node(id);
  auto [host, port] = n ? host_port(n->resp) : std::pair<std::string, int>{"", 0};
  r.array(4);
  r.bulk(host);
  r.integer(port);
  r.bulk(n ? n->name : std::string(40, '0'));
  r.map(0);
}

std::string slot_list(const dht::Topology& t, uint32_t id) {
  std::string s;
  for (auto& rg : ranges(t))
    if (rg.part->primary == id)
      s += rg.first_slot == rg.last_slot ? fmt::format(" {}", rg.first_slot)
                                         : fmt::format(" {}-{}", rg.first_slot, rg.last_slot);
  return s;
}

bool alive(const dht::Topology& t, uint32_t id) {
  auto it = t.alive.find(id);
  return it == t.alive.end() || it->second;
}

void cluster_from_topology(const dht::Topology& t, std::string_view sub, Reply& r) {
  if (iequals(sub, "myid")) {
    auto* n = t.node(t.self);
    return r.bulk(n ? n->name : std::string(40, '0'));
  }
  if (iequals(sub, "info")) {
    uint32_t assigned = 0, masters = 0;
    uint32_t per = t.parts.empty() ? 0 : kSlotCount / static_cast<uint32_t>(t.parts.size());
    std::set<uint32_t> primaries;
    for (auto& pv : t.parts)
      if (pv.primary) {
        assigned += per;
        primaries.insert(pv.primary);
      }
    masters = static_cast<uint32_t>(primaries.size());
    uint64_t epoch = 0;
    for (auto& pv : t.parts) epoch = std::max(epoch, pv.epoch);
    return r.verbatim(fmt::format(
        "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{}\r\ncluster_slots_ok:{}\r\n"
        "cluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\n"
        "cluster_current_epoch:{}\r\ncluster_my_epoch:{}\r\nkeel_partitions:{}\r\nkeel_map_version:{}\r\n",
        assigned == kSlotCount ? "ok" : "fail", assigned, assigned, kSlotCount - assigned, t.nodes.size(),
        masters, epoch, epoch, t.parts.size(), t.version));
  }
  if (iequals(sub, "slots")) {
    auto rs = ranges(t);
    size_t n = 0;
    for (auto& rg : rs) n += rg.part->primary != 0;
    r.array(n);
    for (auto& rg : rs) {
      if (!rg.part->primary) continue;
      r.array(3 + rg.part->replicas.size());
      r.integer(rg.first_slot);
      r.integer(rg.last_slot);
      node_entry(r, t, rg.part->primary);
      for (auto rep : rg.part->replicas) node_entry(r, t, rep);
    }
    return;
  }
  if (iequals(sub, "shards")) {
    // One shard per node: the slots it is the primary of.
    auto rs = ranges(t);
    r.array(t.nodes.size());
    for (auto& [id, node] : t.nodes) {
      std::vector<std::pair<uint32_t, uint32_t>> mine;
      for (auto& rg : rs)
        if (rg.part->primary == id) mine.emplace_back(rg.first_slot, rg.last_slot);
      r.map(2);
      r.bulk("slots");
      r.array(mine.size() * 2);
      for (auto& [a, b] : mine) {
        r.integer(a);
        r.integer(b);
      }
      r.bulk("nodes");
      r.array(1);
      auto [host, port] = host_port(node.resp);
      r.map(7);
      r.bulk("id");
      r.bulk(node.name);
      r.bulk("port");
      r.integer(port);
      r.bulk("ip");
      r.bulk(host);
      r.bulk("endpoint");
      r.bulk(host);
      r.bulk("role");
      r.bulk("master");
      r.bulk("replication-offset");
      r.integer(0);
      r.bulk("health");
      r.bulk(alive(t, id) ? "online" : "failed");
    }
    return;
  }
  if (iequals(sub, "nodes")) {
    std::string out;
    uint64_t epoch = 0;
    for (auto& pv : t.parts) epoch = std::max(epoch, pv.epoch);
    for (auto& [id, node] : t.nodes) {
      auto [host, port] = host_port(node.resp);
      std::string flags = id == t.self ? "myself,master" : "master";
      if (!alive(t, id)) flags += ",fail";
      out += fmt::format("{} {}:{}@{} {} - 0 0 {} {}{}\n", node.name, host, port, port + 10000, flags,
                         epoch, alive(t, id) ? "connected" : "disconnected", slot_list(t, id));
    }
    return r.verbatim(out);
  }
  r.error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
          "'. Try CLUSTER HELP.");
}

void cmd_cluster(CmdCtx& c, Args a, Reply& r) {
  auto sub = a[1];
  auto& n = *c.node;
  if (iequals(sub, "keyslot") && a.size() == 3) return r.integer(key_slot(a[2]));
  if (a.size() == 2 && (iequals(sub, "myid") || iequals(sub, "info") || iequals(sub, "slots") ||
                        iequals(sub, "shards") || iequals(sub, "nodes"))) {
    if (auto t = n.topology()) return cluster_from_topology(*t, sub, r);
    if (n.clustered()) {
      if (iequals(sub, "info"))
        return r.verbatim("cluster_enabled:1\r\ncluster_state:fail\r\ncluster_slots_assigned:0\r\n"
                          "cluster_slots_ok:0\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:16384\r\n"
                          "cluster_known_nodes:1\r\ncluster_size:0\r\n");
      if (!iequals(sub, "myid"))
        return r.error("CLUSTERDOWN The cluster is down (this node does not know the partition map yet; retry)");
    }
  }
  if (iequals(sub, "myid") && a.size() == 2) return r.bulk(n.node_id());
  if (iequals(sub, "info") && a.size() == 2) {
    return r.verbatim(
        "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n"
        "cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n"
        "cluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\n"
        "cluster_my_epoch:1\r\n");
  }
  if (iequals(sub, "slots") && a.size() == 2) {
    r.array(1);
    r.array(3);
    r.integer(0);
    r.integer(kSlotCount - 1);
    r.array(4);
    r.bulk(n.announce_ip());
    r.integer(n.announce_port());
    r.bulk(n.node_id());
    r.map(0);
    return;
  }
  if (iequals(sub, "shards") && a.size() == 2) {
    r.array(1);
    r.map(2);
    r.bulk("slots");
    r.array(2);
    r.integer(0);
    r.integer(kSlotCount - 1);
    r.bulk("nodes");
    r.array(1);
    r.map(7);
    r.bulk("id");
    r.bulk(n.node_id());
    r.bulk("port");
    r.integer(n.announce_port());
    r.bulk("ip");
    r.bulk(n.announce_ip());
    r.bulk("endpoint");
    r.bulk(n.announce_ip());
    r.bulk("role");
    r.bulk("master");
    r.bulk("replication-offset");
    r.integer(0);
    r.bulk("health");
    r.bulk("online");
    return;
  }
  if (iequals(sub, "nodes") && a.size() == 2) {
    return r.verbatim(n.node_id() + " " + n.announce_ip() + ":" + std::to_string(n.announce_port()) + "@" +
                      std::to_string(n.announce_port() + 10000) +
                      " myself,master - 0 0 1 connected 0-16383\n");
  }
  r.error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
          "'. Try CLUSTER HELP.");
}

// READONLY / READWRITE: as in Redis Cluster, READONLY lets this connection's reads be answered
// by a replica copy on the node it is connected to (when in sync and fresh enough); ASKING is
// accepted so cluster clients that send it work (keel never answers -ASK).
void cmd_readonly(CmdCtx& c, Args a, Reply& r) {
  if (iequals(a[0], "readonly")) c.client->readonly = true;
  else if (iequals(a[0], "readwrite")) c.client->readonly = false;
  r.ok();
}

}  // namespace

void register_cluster_commands(std::vector<CommandSpec>& t) {
  t.push_back({"cluster", -2, kStale, 0, 0, 0, Routing::kLocal, cmd_cluster, "cluster", "A container for Redis Cluster commands.", "3.0.0"});
  t.push_back({"readonly", 1, kFast | kStale, 0, 0, 0, Routing::kLocal, cmd_readonly, "cluster", "Enables read-only queries for a connection to a Redis Cluster replica node.", "3.0.0"});
  t.push_back({"asking", 1, kFast | kStale, 0, 0, 0, Routing::kLocal, cmd_readonly, "cluster", "Signals that a cluster client is following an -ASK redirect.", "3.0.0"});
  t.push_back({"readwrite", 1, kFast | kStale, 0, 0, 0, Routing::kLocal, cmd_readonly, "cluster", "Enables read-write queries for a connection to a Redis Cluster replica node.", "3.0.0"});
}

}  // namespace keel::resp
