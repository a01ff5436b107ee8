// The distributed hash map on one node: routing a key to its partition's primary, forwarding
// to it, and replicating every write's effect to the partition's replicas (src/replication
// drives the protocol; this is its effectful shell).
//
//  - The partition map lives in cluster metadata (domain "dht", key "map"), each member's
//    addresses under "node/<id>". The service follows them through the metadata service and
//    hands every shard an immutable Topology.
//  - Each shard keeps one replication::Copy per partition it owns (p % shards == shard) that
//    this node holds, configured from the map. A write on the primary is recorded by the
//    shard's EffectRecorder (the one hook), appended to the Copy's log, streamed to the
//    replicas over the data plane, and answered once write_quorum copies hold it.
//  - The data plane is a peer transport (cluster/wire frames, type kData) on its own port
//    (cluster.data_port), separate from the Rabia driver's, run by shard 0's event loop (a
//    message for another shard hops there by message passing).
//
// Threading: the shard-facing calls run on the calling shard's thread and touch only that
// shard's state. Include service_async.h (Asio) only from .cpp files.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "dht/wait.h"
#include "dht/effect.h"
#include "dht/topology.h"
#include "observe/log_context.h"
#include "observe/otlp_json.h"
#include "observe/trace_context.h"

namespace keel::runtime {
class ShardSet;
}
namespace keel::cluster {
class MetaService;
}

namespace keel::security {
class PeerTls;
}

namespace keel::dht {

struct ServiceOptions {
  uint32_t self = 0;
  std::string cluster_id = "keel";
  std::string bind = "127.0.0.1";
  int data_port = 0;          // 0 = any free port (published in metadata)
  std::string resp_address;   // host:port clients use
  std::string name;           // 40 hex (CLUSTER MYID)
  bool storage = true;
  uint32_t weight = 1;        // cluster.weight
  std::string zone;           // cluster.zone
  uint32_t partitions = 1024;
  uint32_t copies = 1;        // primary + replicas, for a new map
  uint32_t write_quorum = 1;  // copies that must hold a write before it is acknowledged
  std::vector<uint32_t> initial_members;  // the members a new map is placed over
  int64_t request_timeout_ms = 2000;      // forwarding and quorum waits
  int64_t lease_ms = 2000;
  // Reads from replicas (readFrom replica, READONLY) only from a replica this fresh.
  int64_t replica_read_max_lag_ms = 1000;
  // Committed replication log kept for catch-up, for all partitions together (each keeps its
  // share, at least 4 KiB): a replica further behind is sent a snapshot of the partition.
  uint64_t log_keep_bytes = 64 << 20;
  // Rebalancing: partitions a node sends or receives at once, and the bandwidth every
  // snapshot this node sends shares (0 = unlimited).
  bool rebalance = false;  // dht.rebalance: run the moves (off by default, see docs/dht.md)
  uint32_t rebalance_transfers = 4;
  uint64_t rebalance_bytes_per_s = 64 << 20;
  // Mutual TLS on the data plane's links (tls.peer = yes); null = plaintext.
  std::shared_ptr<security::PeerTls> tls;
};

struct ServiceStatus {
  struct PerNode {
    uint32_t primaries = 0, replicas = 0;
  };
  std::map<uint32_t, PerNode> nodes;  // copies per member, from the map this node knows
  uint32_t copies = 0, write_quorum = 0;
  uint64_t map_version = 0;
  uint32_t partitions = 0, primaries_here = 0, replicas_here = 0;
  uint32_t under_replicated = 0;  // partitions with fewer copies than the target
  uint64_t forwarded = 0, forward_errors = 0, replicated_entries = 0, failovers = 0;
  uint64_t replicated_bytes = 0;  // bytes of the effects in those entries
  // Rebalancing, as this node sees it: partitions whose copies are not yet where placement
  // puts them over the current members, out of how many when this rebalance began, and an
  // estimate of the time left (-1: unknown). The figures of the moves themselves are kept by
  // the member that runs them (the failover manager): transfers in flight and partitions moved.
  uint32_t rebalance_remaining = 0, rebalance_total = 0;
  int64_t rebalance_eta_s = -1;
  uint32_t transfers_in_flight = 0;
  uint64_t partitions_moved = 0, snapshot_bytes_sent = 0;
  // Copies this node started from the data and log mark its persistent engine kept through a
  // restart (they catch up from the primary's log when it reaches back that far).
  uint64_t recovered_copies = 0;
  uint64_t stale_dropped = 0;      // partitions kept through a restart that the map no longer gives here
  uint64_t snapshots_resumed = 0;  // snapshot transfers this node continued where they stopped
  struct Transfer {
    uint32_t partition = 0, from = 0, to = 0;
    bool caught_up = false;
  };
  std::vector<Transfer> transfers;  // on the member running the moves
  // Reads from replicas: how many this node answered from a replica copy, and how far behind
  // its primary its most lagging in-sync replica copy may be (-1: it holds none in sync).
  uint64_t replica_reads = 0;
  int64_t replica_lag_max_ms = -1;
  // The cluster as this node's failure detector last saw it (refreshed every 200 ms): members
  // by state, and whether a quorum of them is reachable. known = false before the first look.
  bool members_known = false, quorum = false;
  uint32_t members_alive = 0, members_suspect = 0, members_dead = 0;
};

class Service {
 public:
  Service(runtime::ShardSet& shards, std::vector<EffectRecorder*> recorders,
          cluster::MetaService& meta, ServiceOptions opt);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Binds the data port, starts the data-plane thread, publishes this node's record and
  // follows the map (creating it if this node is the first to find it absent). Returns the
  // bound data port.
  Result<int> start();
  void stop();

  const ServiceOptions& options() const { return opt_; }
  // Not from a shard thread: waits until every shard routes by a partition map.
  bool wait_installed(int64_t timeout_ms);
  // Shard thread: the topology this shard sees (null until the map is known).
  std::shared_ptr<const Topology> topology(unsigned shard) const;
  // The same without a reference count, valid until this shard's next suspension point.
  const Topology* current(unsigned shard) const;
  // Any thread: the newest topology, with the failure detector's view of each member.
  std::shared_ptr<const Topology> latest() const;

  // Shard thread: whether this node may run a command on `partition` now. "" if it may;
  // else the error reply (without the leading '-'): the primary is elsewhere or unknown, or
  // (reads) this primary's lease has lapsed, or (writes) it was fenced.
  std::string check_local(unsigned shard, uint32_t partition, bool write, int64_t now_ms);
  // Shard thread, for a read on `partition`: the LSN it must wait for before its reply goes out
  // (the partition's last write, when not yet committed: a read never shows a write that a
  // failover could still lose), or 0.
  uint64_t read_fence(unsigned shard, uint32_t partition, int64_t now_ms);
  // Any thread: how far (ms) this node's replica copy of `partition` may be behind its primary
  // — it has applied every write the primary had acknowledged that long ago (plus one
  // message's flight) — or -1 if this node holds no replica copy that is in sync.
  int64_t replica_lag_ms(uint32_t partition) const;
  // Any thread: counts a read answered from a replica copy here (ServiceStatus::replica_reads).
  void note_replica_read();
  // Shard thread, after a write command ran on it: the recorded effects are appended to their
  // partitions' logs and shipped. Appends to `waits` what the reply must wait for (quorum 0).
  // The engine's writes are committed here, or, when its commit does I/O (a journal), by one
  // commit per turn of the shard's loop for every write appended meanwhile (group commit):
  // either way the primary counts a write as held only once committed, and the caller needs
  // no commit of its own for the writes it gets waits for. An append refused (backlog full)
  // is returned as an error; the write is already applied locally, so the caller reports an
  // unknown outcome.
  // `trace`: the write's span when its trace is sampled: the replicas that apply the write
  // record a span of their own in that trace (keel.replication.apply), a child of it.
  Status after_write(unsigned shard, int64_t now_ms, std::vector<Wait>& waits,
                     const observe::LogContext* trace = nullptr);
  // Where the replication spans go (the node's tracer), called on the shard's thread. Set
  // before start(); none: no replication spans.
  using SpanSink = std::function<void(unsigned shard, observe::SpanData span)>;
  void set_span_sink(SpanSink sink);

  // A forwarded request is executed by `exec` (the RESP server): argv and protocol in, the
  // reply bytes out through the callback, on any shard.
  // `parent` is the forwarding node's span when that request was sampled (the peer frame
  // carried its trace context), so the span here continues the same trace; `from` is the
  // forwarding node.
  using Exec = std::function<void(std::vector<std::string> argv, int protocol,
                                  std::optional<observe::TraceParent> parent, uint32_t from,
                                  std::function<void(std::string)> done)>;
  void set_executor(Exec exec);

  // Cluster pub/sub over the data plane: sends a PUBLISH (or, `shard_channel`, an SPUBLISH) to
  // `nodes`. Any thread; never waits: a message a peer's queue cannot take (full, oversized,
  // unknown peer) is dropped and counted (publish_dropped). At most once, like Redis's.
  void publish(const std::vector<uint32_t>& nodes, bool shard_channel, std::string_view channel,
               std::string_view message);
  // Who receives the messages other members publish (the RESP server): called on shard 0's
  // thread. Set before start().
  using PublishHandler = std::function<void(bool shard_channel, std::string channel, std::string message)>;
  void set_publish_handler(PublishHandler handler);
  uint64_t publish_dropped() const;

  ServiceStatus status();

  // Shard thread: the partitions this shard serves as primary, and how many of them cannot
  // serve now (fenced: no writes; lease lapsed: no reads). For /health/ready.
  struct ShardHealth {
    bool has_map = false;
    uint32_t primaries = 0, fenced = 0, lease_lapsed = 0, replicas = 0;
  };
  ShardHealth shard_health(unsigned shard);

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  ServiceOptions opt_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::dht
