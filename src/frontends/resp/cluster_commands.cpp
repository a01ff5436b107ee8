// CLUSTER INFO|MYID|SLOTS|SHARDS|NODES|KEYSLOT: the topology as Redis Cluster clients read it,
// so they can route by slot themselves. Until keel runs as a cluster, one node serves all
// 16384 slots.
#include "base/slots.h"
#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

void cmd_cluster(CmdCtx& c, Args a, Reply& r) {
  auto sub = a[1];
  auto& n = *c.node;
  if (iequals(sub, "keyslot") && a.size() == 3) return r.integer(key_slot(a[2]));
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

// READONLY/READWRITE: accepted so cluster clients that send them on connect work.
void cmd_readonly(CmdCtx&, Args, Reply& r) { r.ok(); }

}  // namespace

void register_cluster_commands(std::vector<CommandSpec>& t) {
  t.push_back({"cluster", -2, kStale, 0, 0, 0, Routing::kLocal, cmd_cluster, "cluster", "A container for Redis Cluster commands.", "3.0.0"});
  t.push_back({"readonly", 1, kFast | kStale, 0, 0, 0, Routing::kLocal, cmd_readonly, "cluster", "Enables read-only queries for a connection to a Redis Cluster replica node.", "3.0.0"});
  t.push_back({"asking", 1, kFast | kStale, 0, 0, 0, Routing::kLocal, cmd_readonly, "cluster", "Signals that a cluster client is following an -ASK redirect.", "3.0.0"});
  t.push_back({"readwrite", 1, kFast | kStale, 0, 0, 0, Routing::kLocal, cmd_readonly, "cluster", "Enables read-write queries for a connection to a Redis Cluster replica node.", "3.0.0"});
}

}  // namespace keel::resp
