#include "node/config.h"

#include "observe/log_levels.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <thread>
#include <toml++/toml.h>

#include "gateway/ring.h"
#include "gateway/table.h"

#include "cluster/peer_address.h"
#include "observe/export_core.h"

namespace keel::node {
namespace {

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

bool parse_u64(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

struct Setting {
  const char* key;
  const char* help;
  std::function<std::string(const Config&)> get;
  // Returns "" on success or what is allowed.
  std::function<std::string(Config&, const std::string&)> set;
};

std::string set_port(int& field, const std::string& v) {
  uint64_t n;
  if (!parse_u64(v, n) || n > 65535) return fmt::format("'{}' is not a port; allowed: 0..65535 (0 = pick a free port)", v);
  field = static_cast<int>(n);
  return "";
}

std::string set_u64(uint64_t& field, const std::string& v, uint64_t lo, uint64_t hi) {
  uint64_t n;
  if (!parse_u64(v, n) || n < lo || n > hi)
    return fmt::format("'{}' is not allowed; allowed: an integer from {} to {}", v, lo, hi);
  field = n;
  return "";
}

std::string set_size(uint64_t& field, const std::string& v, uint64_t lo, uint64_t hi) {
  uint64_t n;
  if (!parse_size(v, n) || n < lo || n > hi)
    return fmt::format("'{}' is not allowed; allowed: a size from {} to {} bytes (suffixes k, kb, m, mb, g, gb)", v, lo, hi);
  field = n;
  return "";
}

const std::vector<Setting>& settings() {
  static const std::vector<Setting> s = {
      {"server.bind", "address to listen on",
       [](const Config& c) { return c.bind; },
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty()) return "must not be empty; allowed: an IPv4 or IPv6 address";
         c.bind = v;
         return "";
       }},
      {"server.resp_port", "RESP (Redis protocol) port",
       [](const Config& c) { return std::to_string(c.resp_port); },
       [](Config& c, const std::string& v) { return set_port(c.resp_port, v); }},
      {"server.http_port", "HTTP port",
       [](const Config& c) { return std::to_string(c.http_port); },
       [](Config& c, const std::string& v) { return set_port(c.http_port, v); }},
      {"server.shards", "event loops (0 = one per core)",
       [](const Config& c) { return std::to_string(c.shards); },
       [](Config& c, const std::string& v) {
         uint64_t n = 0;
         auto e = set_u64(n, v, 0, 256);
         if (e.empty()) c.shards = static_cast<unsigned>(n);
         return e;
       }},
      {"server.max_clients", "maximum simultaneous client connections",
       [](const Config& c) { return std::to_string(c.max_clients); },
       [](Config& c, const std::string& v) { return set_u64(c.max_clients, v, 1, 1000000); }},
      {"server.timeout_s", "close clients idle this many seconds (0 = never)",
       [](const Config& c) { return std::to_string(c.timeout_s); },
       [](Config& c, const std::string& v) { return set_u64(c.timeout_s, v, 0, 31536000); }},
      {"server.requirepass", "password for AUTH (empty = no authentication)",
       [](const Config& c) { return c.requirepass; },
       [](Config& c, const std::string& v) {
         c.requirepass = v;
         return std::string();
       }},
      {"storage.engine", "memory or persistent",
       [](const Config& c) {
         return std::string(c.storage.kind == storage::EngineConfig::Kind::kMemory ? "memory" : "persistent");
       },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "memory") c.storage.kind = storage::EngineConfig::Kind::kMemory;
         else if (l == "persistent") c.storage.kind = storage::EngineConfig::Kind::kPersistent;
         else return fmt::format("'{}' is not an engine; allowed: memory, persistent", v);
         return "";
       }},
      {"storage.data_dir", "directory of the persistent engine",
       [](const Config& c) { return c.storage.data_dir; },
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty()) return "must not be empty; allowed: a directory path";
         c.storage.data_dir = v;
         return "";
       }},
      {"storage.fsync", "when the write-ahead log is synced: always, everysec, no",
       [](const Config& c) { return std::string(storage::fsync_policy_name(c.storage.fsync)); },
       [](Config& c, const std::string& v) -> std::string {
         auto p = storage::parse_fsync_policy(lower(v));
         if (!p) return fmt::format("'{}' is not a policy; allowed: always, everysec, no", v);
         c.storage.fsync = *p;
         return "";
       }},
      {"storage.maxmemory", "memory engine limit in bytes (0 = none)",
       [](const Config& c) { return std::to_string(c.storage.max_memory_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.storage.max_memory_bytes, v, 0, 1ull << 50); }},
      {"storage.maxmemory_policy", "eviction policy when maxmemory is reached",
       [](const Config& c) { return std::string(storage::eviction_policy_name(c.storage.eviction)); },
       [](Config& c, const std::string& v) -> std::string {
         auto p = storage::parse_eviction_policy(lower(v));
         if (!p)
           return fmt::format("'{}' is not a policy; allowed: noeviction, allkeys-lru, allkeys-lfu, "
                              "allkeys-random, volatile-lru, volatile-lfu, volatile-ttl", v);
         c.storage.eviction = *p;
         return "";
       }},
      {"storage.maxmemory_samples", "keys sampled per eviction",
       [](const Config& c) { return std::to_string(c.storage.eviction_samples); },
       [](Config& c, const std::string& v) {
         uint64_t n = 0;
         auto e = set_u64(n, v, 1, 64);
         if (e.empty()) c.storage.eviction_samples = static_cast<uint32_t>(n);
         return e;
       }},
      {"storage.block_cache", "persistent engine block cache size",
       [](const Config& c) { return std::to_string(c.storage.block_cache_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.storage.block_cache_bytes, v, 1 << 20, 1ull << 40); }},
      {"storage.keep_in_memory", "persistent engine: keep every key in memory too (yes) or read from disk (no)",
       [](const Config& c) { return std::string(c.storage.keep_in_memory ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "true" || l == "1") c.storage.keep_in_memory = true;
         else if (l == "no" || l == "false" || l == "0") c.storage.keep_in_memory = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"storage.min_free_bytes",
       "persistent engine: refuse writes (MISCONF) while the data directory's filesystem has less free space (0 = only after a failed write)",
       [](const Config& c) { return std::to_string(c.storage.min_free_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.storage.min_free_bytes, v, 0, 1ull << 50); }},
      {"limits.proto_max_bulk_len", "largest bulk string a client may send",
       [](const Config& c) { return std::to_string(c.proto_max_bulk_len); },
       [](Config& c, const std::string& v) { return set_size(c.proto_max_bulk_len, v, 1024 * 1024, 512ull << 20); }},
      {"limits.max_multibulk_len", "most arguments in one request",
       [](const Config& c) { return std::to_string(c.max_multibulk_len); },
       [](Config& c, const std::string& v) { return set_u64(c.max_multibulk_len, v, 16, 1ull << 30); }},
      {"limits.max_inline_len", "longest inline request line",
       [](const Config& c) { return std::to_string(c.max_inline_len); },
       [](Config& c, const std::string& v) { return set_size(c.max_inline_len, v, 1024, 1ull << 26); }},
      {"limits.query_buffer_limit", "largest buffered unprocessed input per client",
       [](const Config& c) { return std::to_string(c.query_buffer_limit); },
       [](Config& c, const std::string& v) { return set_size(c.query_buffer_limit, v, 1024 * 1024, 1ull << 34); }},
      {"limits.pubsub_output_hard", "a subscriber whose unsent output reaches this is disconnected (0 = no limit)",
       [](const Config& c) { return std::to_string(c.pubsub_output_hard); },
       [](Config& c, const std::string& v) { return set_size(c.pubsub_output_hard, v, 0, 1ull << 40); }},
      {"limits.pubsub_output_soft", "a subscriber whose unsent output stays at or above this for pubsub_output_soft_s is disconnected (0 = no limit)",
       [](const Config& c) { return std::to_string(c.pubsub_output_soft); },
       [](Config& c, const std::string& v) { return set_size(c.pubsub_output_soft, v, 0, 1ull << 40); }},
      {"limits.pubsub_output_soft_s", "seconds a subscriber may stay above the soft output limit",
       [](const Config& c) { return std::to_string(c.pubsub_output_soft_s); },
       [](Config& c, const std::string& v) { return set_u64(c.pubsub_output_soft_s, v, 0, 31536000); }},
      {"limits.http_max_body", "largest HTTP request body",
       [](const Config& c) { return std::to_string(c.http_max_body); },
       [](Config& c, const std::string& v) { return set_size(c.http_max_body, v, 1024, 1ull << 30); }},
      {"limits.user_rate", "requests per second each user may make on this node, RESP and HTTP together (0 = no limit)",
       [](const Config& c) { return std::to_string(c.user_rate); },
       [](Config& c, const std::string& v) { return set_u64(c.user_rate, v, 0, 100000000); }},
      {"limits.user_burst", "requests a user may make at once beyond its rate (0 = as many as limits.user_rate)",
       [](const Config& c) { return std::to_string(c.user_burst); },
       [](Config& c, const std::string& v) { return set_u64(c.user_burst, v, 0, 100000000); }},
      {"limits.address_rate", "requests per second each client address may make on this node, RESP and HTTP together (0 = no limit)",
       [](const Config& c) { return std::to_string(c.address_rate); },
       [](Config& c, const std::string& v) { return set_u64(c.address_rate, v, 0, 100000000); }},
      {"limits.address_burst", "requests a client address may make at once beyond its rate (0 = as many as limits.address_rate)",
       [](const Config& c) { return std::to_string(c.address_burst); },
       [](Config& c, const std::string& v) { return set_u64(c.address_burst, v, 0, 100000000); }},
      {"limits.address_connections", "open connections each client address may hold, RESP and HTTP together (0 = no limit)",
       [](const Config& c) { return std::to_string(c.address_connections); },
       [](Config& c, const std::string& v) { return set_u64(c.address_connections, v, 0, 1000000); }},
      {"http.idle_timeout_s", "an HTTP connection waiting for its next request is closed after this long",
       [](const Config& c) { return std::to_string(c.http_idle_timeout_s); },
       [](Config& c, const std::string& v) { return set_u64(c.http_idle_timeout_s, v, 1, 86400); }},
      {"http.header_timeout_ms", "a request's header must arrive whole within this long of its first byte (slow clients)",
       [](const Config& c) { return std::to_string(c.http_header_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.http_header_timeout_ms, v, 100, 600000); }},
      {"http.body_timeout_ms", "a request body read whole (not a streamed upload) must arrive within this long",
       [](const Config& c) { return std::to_string(c.http_body_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.http_body_timeout_ms, v, 100, 3600000); }},
      {"cluster.node_id", "this node's member id, 1..65535 (0 = not in a cluster)",
       [](const Config& c) { return std::to_string(c.cluster_node_id); },
       [](Config& c, const std::string& v) {
         uint64_t n = 0;
         auto e = set_u64(n, v, 0, cluster::kMaxNodeId);
         if (e.empty()) c.cluster_node_id = static_cast<uint32_t>(n);
         return e;
       }},
      {"cluster.peer_port", "port for other cluster members",
       [](const Config& c) { return std::to_string(c.cluster_peer_port); },
       [](Config& c, const std::string& v) { return set_port(c.cluster_peer_port, v); }},
      {"cluster.peers", "members as ID@HOST:PORT, comma-separated (this node may be listed)",
       [](const Config& c) { return c.cluster_peers; },
       [](Config& c, const std::string& v) -> std::string {
         auto l = cluster::parse_peer_list(v);
         if (!l) return l.error().message;
         c.cluster_peers = v;
         return "";
       }},
      {"cluster.cluster_id", "name shared by every member; peers with another id are refused",
       [](const Config& c) { return c.cluster_id; },
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty() || v.size() > 64) return fmt::format("'{}' is not allowed; allowed: 1 to 64 characters", v);
         c.cluster_id = v;
         return "";
       }},
      {"cluster.request_timeout_ms", "how long a metadata write waits for a quorum before failing",
       [](const Config& c) { return std::to_string(c.cluster_request_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_request_timeout_ms, v, 50, 600000); }},
      {"cluster.heartbeat_ms", "interval of heartbeats between members",
       [](const Config& c) { return std::to_string(c.cluster_heartbeat_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_heartbeat_ms, v, 10, 60000); }},
      {"cluster.suspect_after_ms", "silence after which a member is suspected",
       [](const Config& c) { return std::to_string(c.cluster_suspect_after_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_suspect_after_ms, v, 20, 600000); }},
      {"cluster.dead_after_ms", "silence after which a member is reported dead",
       [](const Config& c) { return std::to_string(c.cluster_dead_after_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_dead_after_ms, v, 30, 3600000); }},
      {"cluster.max_batch", "most client requests carried by one consensus proposal",
       [](const Config& c) { return std::to_string(c.cluster_max_batch); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_max_batch, v, 1, 4096); }},
      {"cluster.max_command_bytes", "largest metadata command (a larger one is refused at submission)",
       [](const Config& c) { return std::to_string(c.cluster_max_command_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.cluster_max_command_bytes, v, 1 << 10, (4 << 20) - 1); }},
      {"cluster.max_batch_bytes", "most bytes of commands one consensus proposal or catch-up answer carries",
       [](const Config& c) { return std::to_string(c.cluster_max_batch_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.cluster_max_batch_bytes, v, 64 << 10, (16 << 20) - 128); }},
      {"cluster.snapshot_chunk_bytes", "a metadata snapshot larger than this travels to a lagging member in chunks of this size",
       [](const Config& c) { return std::to_string(c.cluster_snapshot_chunk_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.cluster_snapshot_chunk_bytes, v, 4 << 10, (16 << 20) - 128); }},
      {"cluster.join", "yes: start as a learner outside the configuration and wait for `keel cluster join`",
       [](const Config& c) { return std::string(c.cluster_join ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "true" || l == "1") c.cluster_join = true;
         else if (l == "no" || l == "false" || l == "0") c.cluster_join = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"cluster.start_timeout_ms", "slot s is started by member s mod n; the others wait this long for it (0: anyone starts at once)",
       [](const Config& c) { return std::to_string(c.cluster_start_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_start_timeout_ms, v, 0, 1000); }},
      {"cluster.propose_delay_ms", "start a slot only with requests this old (larger, matching batches)",
       [](const Config& c) { return std::to_string(c.cluster_propose_delay_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_propose_delay_ms, v, 0, 1000); }},
      {"cluster.data_port", "port of the data plane between members (forwarding, replication); 0 = any free port, published in metadata",
       [](const Config& c) { return std::to_string(c.cluster_data_port); },
       [](Config& c, const std::string& v) { return set_port(c.cluster_data_port, v); }},
      {"cluster.role", "storage: holds partitions; gateway: serves clients and holds none",
       [](const Config& c) { return std::string(c.cluster_storage ? "storage" : "gateway"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "storage") c.cluster_storage = true;
         else if (l == "gateway") c.cluster_storage = false;
         else return fmt::format("'{}' is not allowed; allowed: storage, gateway", v);
         return "";
       }},
      {"cluster.weight", "relative share of partition copies this node holds (placement is weighted rendezvous hashing)",
       [](const Config& c) { return std::to_string(c.cluster_weight); },
       [](Config& c, const std::string& v) { return set_u64(c.cluster_weight, v, 1, 1000000); }},
      {"cluster.zone", "failure domain (rack, zone): the copies of a partition go to different zones when there are enough",
       [](const Config& c) { return c.cluster_zone; },
       [](Config& c, const std::string& v) -> std::string {
         if (v.size() > 64) return fmt::format("'{}' is too long; allowed: at most 64 characters", v);
         c.cluster_zone = v;
         return "";
       }},
      {"dht.replicas", "copies of each partition, the primary counted (fixed when the cluster's partition map is created)",
       [](const Config& c) { return std::to_string(c.dht_replicas); },
       [](Config& c, const std::string& v) { return set_u64(c.dht_replicas, v, 1, 7); }},
      {"dht.write_quorum", "copies (the primary counted) that hold a write before it is acknowledged",
       [](const Config& c) { return std::to_string(c.dht_write_quorum); },
       [](Config& c, const std::string& v) { return set_u64(c.dht_write_quorum, v, 1, 7); }},
      {"dht.rebalance", "move partitions onto joining members and off leaving ones in the background (yes/no)",
       [](const Config& c) { return std::string(c.dht_rebalance ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         if (v == "yes" || v == "on" || v == "true") c.dht_rebalance = true;
         else if (v == "no" || v == "off" || v == "false") c.dht_rebalance = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"dht.rebalance_transfers", "partitions a node sends or receives at once while partitions move (rebalancing, lost copies)",
       [](const Config& c) { return std::to_string(c.dht_rebalance_transfers); },
       [](Config& c, const std::string& v) { return set_u64(c.dht_rebalance_transfers, v, 1, 64); }},
      {"dht.rebalance_mb_per_s", "MiB per second the partition snapshots a node sends may take together (0: unlimited)",
       [](const Config& c) { return std::to_string(c.dht_rebalance_mb_per_s); },
       [](Config& c, const std::string& v) { return set_u64(c.dht_rebalance_mb_per_s, v, 0, 100000); }},
      {"dht.log_keep_mb", "MiB of committed replication log a node keeps for replicas to catch up from, shared evenly by the partitions (a replica further behind receives a snapshot of the partition)",
       [](const Config& c) { return std::to_string(c.dht_log_keep_mb); },
       [](Config& c, const std::string& v) { return set_u64(c.dht_log_keep_mb, v, 1, 65536); }},
      {"dht.replica_read_max_lag_ms", "a replica answers reads (a cache with readFrom replica, a READONLY connection) only while it is at most this far behind its primary; else the read goes to the primary",
       [](const Config& c) { return std::to_string(c.dht_replica_read_max_lag_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.dht_replica_read_max_lag_ms, v, 0, 3600000); }},
      {"dht.lease_ms", "a primary serves reads only while its replicas have renewed its lease within this time (0: half of cluster.dead_after_ms)",
       [](const Config& c) { return std::to_string(c.dht_lease_ms); },
       [](Config& c, const std::string& v) {
         auto e = set_u64(c.dht_lease_ms, v, 0, 60000);
         if (e.empty() && c.dht_lease_ms != 0 && c.dht_lease_ms < 20) return fmt::format("{} is not allowed; allowed: 0 (half of cluster.dead_after_ms) or 20..60000", v);
         return e;
       }},
      {"log.level", "trace, debug, info, warn, error, off; then optionally <component>=<level> items "
                    "(components: node, resp, http, dht, cluster, peers, storage, cache, routing, security, trace, audit)",
       [](const Config& c) { return c.log_level; },
       [](Config& c, const std::string& v) -> std::string {
         std::string error;
         auto l = observe::parse_log_levels(v, error);
         if (!l) return error;
         c.log_level = observe::format_log_levels(*l);
         return "";
       }},
      {"signals.file", "TOML file naming which signals go to logs, metrics and span events (reloaded when it changes; \"\" = log and count every signal)",
       [](const Config& c) { return c.signals_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.signals_file = v;
         return "";
       }},
      {"gateway.enabled", "forward requests that match a gateway route (yes/no); keel's own paths come first on the HTTP port",
       [](const Config& c) { return std::string(c.gateway_enabled ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         if (v == "yes" || v == "on" || v == "true") c.gateway_enabled = true;
         else if (v == "no" || v == "off" || v == "false") c.gateway_enabled = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"gateway.port", "a dedicated gateway listener where every request is routed (0 = none; keel's HTTP port routes too)",
       [](const Config& c) { return std::to_string(c.gateway_port); },
       [](Config& c, const std::string& v) { return set_port(c.gateway_port, v); }},
      {"gateway.routes_file", "file of 'METHOD:/path => service' lines: routes served by every instance of the service",
       [](const Config& c) { return c.gateway_routes_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.gateway_routes_file = v;
         return "";
       }},
      {"gateway.balancer", "least_request (power of two choices), round_robin or consistent_hash (ring hash on gateway.hash_key)",
       [](const Config& c) { return c.gateway_balancer; },
       [](Config& c, const std::string& v) -> std::string {
         auto p = gateway::parse_policy(v);
         if (!p) return p.error().message;
         c.gateway_balancer = std::string(gateway::policy_name(*p));
         return "";
       }},
      {"gateway.hash_key", "where consistent_hash takes a request's key: header:NAME, cookie:NAME or param:NAME (a path parameter)",
       [](const Config& c) { return c.gateway_hash_key; },
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty()) {
           c.gateway_hash_key.clear();
           return "";
         }
         auto k = gateway::parse_hash_key(v);
         if (!k) return k.error().message;
         c.gateway_hash_key = k->text();
         return "";
       }},
      {"gateway.access_log", "log one JSON line per request that matched a route (yes/no; component routing, event gateway.access)",
       [](const Config& c) { return std::string(c.gateway_access_log ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         if (v == "yes" || v == "on" || v == "true") c.gateway_access_log = true;
         else if (v == "no" || v == "off" || v == "false") c.gateway_access_log = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"gateway.connect_timeout_ms", "connecting to an upstream instance",
       [](const Config& c) { return std::to_string(c.gateway_connect_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_connect_timeout_ms, v, 10, 60000); }},
      {"gateway.request_timeout_ms", "one upstream attempt, request sent to the last byte of the answer (then 504)",
       [](const Config& c) { return std::to_string(c.gateway_request_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_request_timeout_ms, v, 10, 3600000); }},
      {"gateway.retries", "other instances tried after a connect failure, for idempotent methods only",
       [](const Config& c) { return std::to_string(c.gateway_retries); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_retries, v, 0, 10); }},
      {"gateway.pool_max_idle", "kept-alive connections per upstream instance",
       [](const Config& c) { return std::to_string(c.gateway_pool_max_idle); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_pool_max_idle, v, 0, 10000); }},
      {"gateway.tunnel_idle_timeout_ms", "an upgraded connection (WebSocket) with no byte either way for this long is closed",
       [](const Config& c) { return std::to_string(c.gateway_tunnel_idle_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_tunnel_idle_timeout_ms, v, 100, 86400000); }},
      {"gateway.max_body", "largest request body the gateway forwards (then 413)",
       [](const Config& c) { return std::to_string(c.gateway_max_body); },
       [](Config& c, const std::string& v) { return set_size(c.gateway_max_body, v, 0, 1ull << 30); }},
      {"gateway.max_response", "largest upstream answer the gateway relays (0 = no limit; a larger one: 502, or cut if streamed)",
       [](const Config& c) { return std::to_string(c.gateway_max_response); },
       [](Config& c, const std::string& v) { return set_size(c.gateway_max_response, v, 0, 1ull << 50); }},
      {"gateway.stream_above", "answers larger than this, or of unknown length, are relayed as they arrive instead of read whole first",
       [](const Config& c) { return std::to_string(c.gateway_stream_above); },
       [](Config& c, const std::string& v) { return set_size(c.gateway_stream_above, v, 0, 1ull << 30); }},
      {"gateway.outlier_failures", "consecutive failures (5xx, connect failure, timeout) that eject an instance (0 = never)",
       [](const Config& c) { return std::to_string(c.gateway_outlier_failures); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_outlier_failures, v, 0, 1000); }},
      {"gateway.outlier_ejection_ms", "how long an ejection lasts, times the number of times the instance was ejected",
       [](const Config& c) { return std::to_string(c.gateway_outlier_ejection_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_outlier_ejection_ms, v, 10, 3600000); }},
      {"gateway.outlier_max_ejection_ms", "the longest an ejection lasts",
       [](const Config& c) { return std::to_string(c.gateway_outlier_max_ejection_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_outlier_max_ejection_ms, v, 10, 86400000); }},
      {"gateway.outlier_max_ejected_percent", "the largest share of a service's instances ejected at once (one always stays)",
       [](const Config& c) { return std::to_string(c.gateway_outlier_max_ejected_percent); },
       [](Config& c, const std::string& v) { return set_u64(c.gateway_outlier_max_ejected_percent, v, 0, 100); }},
      {"health.stall_after_ms", "a background task (shard maintenance, health poller) silent this long fails /health/ready",
       [](const Config& c) { return std::to_string(c.health_stall_after_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.health_stall_after_ms, v, 1000, 600000); }},
      {"health.tls_min_days", "a TLS certificate the node serves that expires within this many days fails /health/ready (check certificates)",
       [](const Config& c) { return std::to_string(c.health_tls_min_days); },
       [](Config& c, const std::string& v) { return set_u64(c.health_tls_min_days, v, 0, 3650); }},
      {"trace.endpoint", "OTLP/HTTP traces URL (empty = tracing off)",
       [](const Config& c) { return c.trace_endpoint; },
       [](Config& c, const std::string& v) -> std::string {
         std::string why;
         if (!v.empty() && !observe::parse_http_url(v, why)) return fmt::format("'{}': {}", v, why);
         c.trace_endpoint = v;
         return "";
       }},
      {"trace.sample_ratio", "share of new traces sampled, 0..1",
       [](const Config& c) { return fmt::format("{}", c.trace_sample_ratio); },
       [](Config& c, const std::string& v) -> std::string {
         double d = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
         if (v.empty() || ec != std::errc() || p != v.data() + v.size() || !(d >= 0.0 && d <= 1.0))
           return fmt::format("'{}' is not allowed; allowed: a decimal number from 0 to 1 (0.01 = 1%)", v);
         c.trace_sample_ratio = d;
         return "";
       }},
      {"trace.slow_ms", "keep the span of every request at least this slow (0 = off)",
       [](const Config& c) { return std::to_string(c.trace_slow_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_slow_ms, v, 0, 3600000); }},
      {"slowlog.slower_than_us", "log requests at least this many microseconds long (negative: none, 0: all)",
       [](const Config& c) { return std::to_string(c.slowlog_slower_than_us); },
       [](Config& c, const std::string& v) -> std::string {
         int64_t n = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
         if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < -1 || n > 3600000000LL)
           return fmt::format("'{}' is not allowed; allowed: an integer from -1 (log nothing) to 3600000000 "
                              "microseconds (0 logs every request)", v);
         c.slowlog_slower_than_us = n;
         return "";
       }},
      {"slowlog.max_len", "slow requests kept (the newest)",
       [](const Config& c) { return std::to_string(c.slowlog_max_len); },
       [](Config& c, const std::string& v) { return set_u64(c.slowlog_max_len, v, 0, 100000); }},
      {"trace.keep_errors", "keep the span of every request answered with an error",
       [](const Config& c) { return std::string(c.trace_keep_errors ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "true") c.trace_keep_errors = true;
         else if (l == "no" || l == "false") c.trace_keep_errors = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"trace.queue_size", "spans waiting for export (more are dropped and counted)",
       [](const Config& c) { return std::to_string(c.trace_queue_size); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_queue_size, v, 64, 1000000); }},
      {"trace.batch_size", "spans per export request",
       [](const Config& c) { return std::to_string(c.trace_batch_size); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_batch_size, v, 1, 65536); }},
      {"trace.batch_delay_ms", "a span waits at most this long for its batch",
       [](const Config& c) { return std::to_string(c.trace_batch_delay_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_batch_delay_ms, v, 1, 60000); }},
      {"trace.export_timeout_ms", "one export request, connect to last byte",
       [](const Config& c) { return std::to_string(c.trace_export_timeout_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_export_timeout_ms, v, 100, 600000); }},
      {"trace.max_retries", "retries of a batch answered 429/502/503/504 or not at all",
       [](const Config& c) { return std::to_string(c.trace_max_retries); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_max_retries, v, 0, 100); }},
      {"trace.recent_spans", "spans of recent slow requests kept in memory for the admin page and /v1/traces (0 = none)",
       [](const Config& c) { return std::to_string(c.trace_recent_spans); },
       [](Config& c, const std::string& v) { return set_u64(c.trace_recent_spans, v, 0, 100000); }},
      {"trace.recent_bytes", "bytes those spans may take (estimated)",
       [](const Config& c) { return std::to_string(c.trace_recent_bytes); },
       [](Config& c, const std::string& v) { return set_size(c.trace_recent_bytes, v, 65536, 268435456); }},
      {"trace.service_name", "service.name of the exported spans",
       [](const Config& c) { return c.trace_service_name; },
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty() || v.size() > 128) return "allowed: 1 to 128 characters";
         c.trace_service_name = v;
         return "";
       }},
      {"auth.token_public_key_file", "public key (PEM) that tokens must be signed with, e.g. pki/token.pub of `keel token init`; empty: tokens are refused",
       [](const Config& c) { return c.auth_token_public_key_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.auth_token_public_key_file = v;
         return "";
       }},
      {"auth.cert_users", "yes: a client certificate naming spiffe://<cluster.cluster_id>/client/<name> authenticates as the ACL user <name> (no password); no: certificates name no user",
       [](const Config& c) { return std::string(c.auth_cert_users ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "true") c.auth_cert_users = true;
         else if (l == "no" || l == "false") c.auth_cert_users = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"auth.lockout_threshold", "failed authentications in a row (per user, and per client address) before further attempts are refused for a while; 0 = no lockout",
       [](const Config& c) { return std::to_string(c.auth_lockout_threshold); },
       [](Config& c, const std::string& v) { return set_u64(c.auth_lockout_threshold, v, 0, 1000000); }},
      {"auth.lockout_base_ms", "the first lock after auth.lockout_threshold failures; each further failure doubles it",
       [](const Config& c) { return std::to_string(c.auth_lockout_base_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.auth_lockout_base_ms, v, 1, 86400000); }},
      {"auth.lockout_max_ms", "the longest lock",
       [](const Config& c) { return std::to_string(c.auth_lockout_max_ms); },
       [](Config& c, const std::string& v) { return set_u64(c.auth_lockout_max_ms, v, 1, 604800000); }},
      {"auth.signature_window_s", "signed HTTP requests: the longest created..expires span accepted, and how long their nonces are remembered",
       [](const Config& c) { return std::to_string(c.auth_signature_window_s); },
       [](Config& c, const std::string& v) { return set_u64(c.auth_signature_window_s, v, 1, 3600); }},
      {"auth.nonce_capacity", "signed HTTP requests: nonces remembered within the window; when full, signed requests are refused (503) until old ones expire",
       [](const Config& c) { return std::to_string(c.auth_nonce_capacity); },
       [](Config& c, const std::string& v) { return set_u64(c.auth_nonce_capacity, v, 1, 10000000); }},
      {"audit.stream", "the stream key every audit event is also appended to (XRANGE it on any node); empty: no stream, log lines only",
       [](const Config& c) { return c.audit_stream; },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "no" || l == "on" || l == "off" || l == "true" || l == "false")
           return fmt::format("'{}' is not allowed; allowed: a stream key name (e.g. keel:audit), or an empty string "
                              "to turn the audit stream off", v);
         if (v.size() > 512) return fmt::format("a key of {} bytes is not allowed; allowed: at most 512 bytes", v.size());
         c.audit_stream = v;
         return "";
       }},
      {"audit.stream_max_len", "the audit stream is trimmed to about this many entries (XADD MAXLEN ~)",
       [](const Config& c) { return std::to_string(c.audit_stream_max_len); },
       [](Config& c, const std::string& v) { return set_u64(c.audit_stream_max_len, v, 1, 100000000); }},
      {"audit.stream_queue", "audit events waiting for their append to the stream; more are dropped (and counted in keel_audit_stream_dropped_total)",
       [](const Config& c) { return std::to_string(c.audit_stream_queue); },
       [](Config& c, const std::string& v) { return set_u64(c.audit_stream_queue, v, 1, 1000000); }},
      {"tls.port", "RESP over TLS on this port (0 = off); the plaintext server.resp_port stays open unless tls.plaintext = no",
       [](const Config& c) { return std::to_string(c.tls_port); },
       [](Config& c, const std::string& v) -> std::string {
         uint64_t n;
         if (!parse_u64(v, n) || n > 65535) return fmt::format("'{}' is not a port; allowed: 0..65535 (0 = TLS off)", v);
         c.tls_port = static_cast<int>(n);
         return "";
       }},
      {"tls.cert_file", "this node's certificate, PEM (e.g. from `keel cert issue --node ID`)",
       [](const Config& c) { return c.tls_cert_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.tls_cert_file = v;
         return "";
       }},
      {"tls.key_file", "the certificate's private key, PEM",
       [](const Config& c) { return c.tls_key_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.tls_key_file = v;
         return "";
       }},
      {"tls.ca_cert_file", "CA certificate that client certificates must chain to (e.g. ca.crt of `keel cert init`)",
       [](const Config& c) { return c.tls_ca_cert_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.tls_ca_cert_file = v;
         return "";
       }},
      {"tls.auth_clients", "client certificates: yes (required), optional (checked when presented), no (not asked for)",
       [](const Config& c) { return c.tls_auth_clients; },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l != "yes" && l != "no" && l != "optional")
           return fmt::format("'{}' is not allowed; allowed: yes, no, optional", v);
         c.tls_auth_clients = l;
         return "";
       }},
      {"tls.peer", "mutual TLS on peer links (metadata and data plane): yes or no; uses tls.cert_file, tls.key_file, tls.ca_cert_file",
       [](const Config& c) { return std::string(c.tls_peer ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "true") c.tls_peer = true;
         else if (l == "no" || l == "false") c.tls_peer = false;
         else return fmt::format("'{}' is not allowed; allowed: yes, no", v);
         return "";
       }},
      {"tls.http_port", "HTTPS on this port (0 = off), with tls.cert_file and tls.key_file; the plaintext server.http_port stays open unless tls.plaintext = no",
       [](const Config& c) { return std::to_string(c.tls_http_port); },
       [](Config& c, const std::string& v) -> std::string {
         uint64_t n;
         if (!parse_u64(v, n) || n > 65535) return fmt::format("'{}' is not a port; allowed: 0..65535 (0 = HTTPS off)", v);
         c.tls_http_port = static_cast<int>(n);
         return "";
       }},
      {"tls.plaintext", "whether the plaintext doors (server.resp_port, server.http_port) open: yes, or no to serve "
                        "clients only over TLS (tls.port, tls.http_port)",
       [](const Config& c) { return std::string(c.tls_plaintext ? "yes" : "no"); },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l == "yes" || l == "true") c.tls_plaintext = true;
         else if (l == "no" || l == "false") c.tls_plaintext = false;
         else return fmt::format("'{}' is not allowed; allowed: yes (plaintext ports open beside TLS), no (TLS only)", v);
         return "";
       }},
      {"tls.http_auth_clients", "client certificates on HTTPS: no (not asked for), optional (checked when presented), yes (required)",
       [](const Config& c) { return c.tls_http_auth_clients; },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l != "yes" && l != "no" && l != "optional")
           return fmt::format("'{}' is not allowed; allowed: yes, no, optional", v);
         c.tls_http_auth_clients = l;
         return "";
       }},
      {"tls.reload_interval_ms", "how often the certificate, key and CA files are checked for changes and reloaded (0 = never)",
       [](const Config& c) { return std::to_string(c.tls_reload_interval_ms); },
       [](Config& c, const std::string& v) -> std::string {
         uint64_t n;
         if (!parse_u64(v, n) || (n != 0 && (n < 100 || n > 86400000)))
           return fmt::format("'{}' is not allowed; allowed: 0 (never) or an integer from 100 to 86400000", v);
         c.tls_reload_interval_ms = n;
         return "";
       }},
      {"tls.ca_key_file", "the cluster CA's private key (ca.key of `keel cert init`): with it the node renews its own certificate (empty = it does not)",
       [](const Config& c) { return c.tls_ca_key_file; },
       [](Config& c, const std::string& v) -> std::string {
         c.tls_ca_key_file = v;
         return "";
       }},
      {"tls.renew_fraction", "share of its lifetime after which the node renews its certificate (with tls.ca_key_file), plus up to 5% jitter",
       [](const Config& c) { return fmt::format("{}", c.tls_renew_fraction); },
       [](Config& c, const std::string& v) -> std::string {
         double d = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
         if (v.empty() || ec != std::errc() || p != v.data() + v.size() || !(d >= 0.05 && d <= 0.9))
           return fmt::format("'{}' is not allowed; allowed: a decimal number from 0.05 to 0.9 (0.5 = half-way)", v);
         c.tls_renew_fraction = d;
         return "";
       }},
      {"log.otlp_endpoint", "OTLP/HTTP logs URL: log lines go there as OTLP log records too (empty = off)",
       [](const Config& c) { return c.log_otlp_endpoint; },
       [](Config& c, const std::string& v) -> std::string {
         std::string why;
         if (!v.empty() && !observe::parse_http_url(v, why, "/v1/logs")) return fmt::format("'{}': {}", v, why);
         c.log_otlp_endpoint = v;
         return "";
       }},
      {"log.otlp_level", "trace, debug, info, warn or error: the least severe line exported to log.otlp_endpoint",
       [](const Config& c) { return c.log_otlp_level; },
       [](Config& c, const std::string& v) -> std::string {
         auto l = observe::parse_level(v);
         if (!l || *l == observe::Level::kOff)
           return fmt::format("'{}' is not a level; allowed: trace, debug, info, warn, error", v);
         c.log_otlp_level = lower(v);
         return "";
       }},
      {"security.at_rest.key_file",
       "encryption at rest: file holding the 32-byte master key (64 hex digits or 32 raw bytes, mode 0600); "
       "empty = not from a file",
       [](const Config& c) { return c.at_rest_key_file; },
       [](Config& c, const std::string& v) {
         c.at_rest_key_file = v;
         return std::string();
       }},
      {"security.at_rest.key_env",
       "encryption at rest: name of the environment variable holding the master key (64 hex digits); "
       "empty = not from the environment",
       [](const Config& c) { return c.at_rest_key_env; },
       [](Config& c, const std::string& v) -> std::string {
         for (char ch : v)
           if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'))
             return fmt::format("'{}' is not a variable name; allowed: letters, digits and _", v);
         c.at_rest_key_env = v;
         return "";
       }},
      {"security.at_rest.rewrap_keys_per_s",
       "encryption at rest: keys a second the background rewrap rewrites under the current key (whole node)",
       [](const Config& c) { return std::to_string(c.at_rest_rewrap_keys_per_s); },
       [](Config& c, const std::string& v) { return set_u64(c.at_rest_rewrap_keys_per_s, v, 1, 10000000); }},
      {"log.format", "text or json",
       [](const Config& c) { return c.log_format; },
       [](Config& c, const std::string& v) -> std::string {
         auto l = lower(v);
         if (l != "text" && l != "json") return fmt::format("'{}' is not a format; allowed: text, json", v);
         c.log_format = l;
         return "";
       }},
  };
  return s;
}

}  // namespace

unsigned Config::effective_shards() const {
  if (shards) return shards;
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

bool parse_size(const std::string& in, uint64_t& out) {
  std::string s = lower(in);
  uint64_t mul = 1;
  auto ends = [&](const char* suf) {
    size_t n = std::char_traits<char>::length(suf);
    return s.size() > n && s.compare(s.size() - n, n, suf) == 0;
  };
  size_t cut = 0;
  if (ends("gb")) { mul = 1ull << 30; cut = 2; }
  else if (ends("mb")) { mul = 1ull << 20; cut = 2; }
  else if (ends("kb")) { mul = 1ull << 10; cut = 2; }
  else if (ends("g")) { mul = 1000ull * 1000 * 1000; cut = 1; }
  else if (ends("m")) { mul = 1000ull * 1000; cut = 1; }
  else if (ends("k")) { mul = 1000; cut = 1; }
  else if (ends("b")) { cut = 1; }
  uint64_t n;
  if (!parse_u64(s.substr(0, s.size() - cut), n)) return false;
  if (n > UINT64_MAX / mul) return false;
  out = n * mul;
  return true;
}

std::vector<std::pair<std::string, std::string>> describe(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& s : settings()) out.emplace_back(s.key, s.get(c));
  return out;
}

void apply(Config& c, const std::string& key, const std::string& value, std::vector<Problem>& problems) {
  for (auto& s : settings()) {
    if (key == s.key) {
      auto err = s.set(c, value);
      if (!err.empty()) problems.push_back({key, err});
      return;
    }
  }
  std::string known;
  for (auto& s : settings()) known += (known.empty() ? "" : ", ") + std::string(s.key);
  problems.push_back({key, "unknown setting; known settings: " + known});
}

void load_toml_file(Config& c, const std::string& path, std::vector<Problem>& problems) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    problems.push_back({path, fmt::format("not valid TOML at line {}, column {}: {}",
                                          e.source().begin.line, e.source().begin.column,
                                          std::string(e.description()))});
    return;
  }
  for (auto& [section, node] : tbl) {
    auto* t = node.as_table();
    if (!t) {
      problems.push_back({std::string(section.str()),
                          "expected a [section] table; allowed sections: server, storage, limits, cluster, dht, gateway, health, trace, tls, auth, audit, security, log"});
      continue;
    }
    // One level of sub-tables: [security.at_rest] holds security.at_rest.key_file.
    std::vector<std::pair<std::string, const toml::node*>> entries;
    for (auto& [key, val] : *t) {
      std::string full = std::string(section.str()) + "." + std::string(key.str());
      if (auto* sub = val.as_table())
        for (auto& [k2, v2] : *sub) entries.emplace_back(full + "." + std::string(k2.str()), &v2);
      else
        entries.emplace_back(full, &val);
    }
    for (auto& [full, valp] : entries) {
      const toml::node& val = *valp;
      std::string text;
      if (auto s = val.value<std::string>()) text = *s;
      else if (auto* arr = val.as_array()) {  // a list of strings, e.g. cluster.peers
        bool ok = true;
        for (auto& item : *arr) {
          auto s2 = item.value<std::string>();
          if (!s2) ok = false;
          else text += (text.empty() ? "" : ",") + *s2;
        }
        if (!ok) {
          problems.push_back({full, "expected an array of strings"});
          continue;
        }
      } else if (auto* b = val.as_boolean()) text = b->get() ? "yes" : "no";  // before integers: toml++ converts true to 1
      else if (auto i = val.value<int64_t>()) text = std::to_string(*i);
      else if (auto d = val.value<double>()) text = fmt::format("{}", *d);  // trace.sample_ratio = 0.01
      else {
        problems.push_back({full, "expected a string, a number or a boolean"});
        continue;
      }
      apply(c, full, text, problems);
    }
  }
}

void load_env(Config& c, const std::map<std::string, std::string>& env, std::vector<Problem>& problems) {
  for (auto& s : settings()) {
    std::string name = "KEEL_";
    for (const char* p = s.key; *p; ++p)
      name.push_back(*p == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(*p))));
    auto it = env.find(name);
    if (it == env.end()) continue;
    std::vector<Problem> local;
    apply(c, s.key, it->second, local);
    for (auto& p : local) problems.push_back({name, p.message});
  }
}

void warnings(const Config& c, std::vector<Problem>& out) {
  if (c.cluster_node_id == 0) return;  // one node on its own: no peer links to protect
  if (!c.tls_peer)
    out.push_back({"tls.peer", "this node is a cluster member whose peer links run without TLS: anyone who reaches "
                               "cluster.peer_port or the data port can take part in the cluster and read or change "
                               "data; set tls.peer = yes with a certificate from `keel cert issue --node ID` "
                               "(docs/security.md)"});
  if (c.tls_port == 0 && c.tls_http_port == 0)
    out.push_back({"tls.port", "clients reach this cluster member only in plaintext (no tls.port, no tls.http_port): "
                               "passwords and data cross the network in the clear"});
  else if (c.tls_plaintext)
    out.push_back({"tls.plaintext", "the plaintext ports (server.resp_port, server.http_port) stay open beside TLS: "
                                    "passwords and data sent there cross the network in the clear; set tls.plaintext = no "
                                    "to serve clients only over TLS"});
}

void validate(const Config& c, std::vector<Problem>& problems) {
  if (c.gateway_balancer == "consistent_hash" && c.gateway_hash_key.empty())
    problems.push_back({"gateway.hash_key", "must be set when gateway.balancer = consistent_hash; allowed: header:NAME, "
                                            "cookie:NAME, param:NAME (a path parameter of the route)"});
  if (c.gateway_balancer != "consistent_hash" && !c.gateway_hash_key.empty())
    problems.push_back({"gateway.hash_key", fmt::format("is used only by gateway.balancer = consistent_hash (the balancer "
                                                        "is {}); set both, or neither",
                                                        c.gateway_balancer)});
  if (c.auth_lockout_max_ms < c.auth_lockout_base_ms)
    problems.push_back({"auth.lockout_max_ms", fmt::format("must be at least auth.lockout_base_ms ({})", c.auth_lockout_base_ms)});
  if (!c.at_rest_key_file.empty() && !c.at_rest_key_env.empty())
    problems.push_back({"security.at_rest.key_env",
                        "is set together with security.at_rest.key_file; allowed: one source of the master key "
                        "(a file or an environment variable)"});
  if (c.at_rest_enabled() && c.storage.kind == storage::EngineConfig::Kind::kMemory)
    problems.push_back({"security.at_rest.key_file",
                        "encryption at rest needs storage.engine = persistent (the memory engine keeps nothing on disk)"});
  if (!c.tls_plaintext && c.gateway_enabled && c.gateway_port != 0)
    problems.push_back({"gateway.port", fmt::format("{} is a plaintext listener, and tls.plaintext = no allows none: "
                                                    "set gateway.port = 0 (requests matching a route are forwarded on "
                                                    "the HTTPS door too), or keep tls.plaintext = yes", c.gateway_port)});
  if (!c.tls_plaintext && c.tls_port == 0 && c.tls_http_port == 0)
    problems.push_back({"tls.plaintext", "= no would leave this node no door for clients: set tls.port (RESP over TLS) "
                                         "and/or tls.http_port (HTTPS), or keep tls.plaintext = yes"});
  if (c.resp_port != 0 && c.resp_port == c.http_port)
    problems.push_back({"server.http_port", fmt::format("must differ from server.resp_port ({})", c.resp_port)});
  if (c.cluster_node_id == 0 && !c.cluster_peers.empty())
    problems.push_back({"cluster.node_id", "must be set (1..65535) when cluster.peers is set: which of the peers is this node?"});
  if (c.cluster_node_id != 0) {
    if (c.cluster_peer_port != 0 && (c.cluster_peer_port == c.resp_port || c.cluster_peer_port == c.http_port))
      problems.push_back({"cluster.peer_port", fmt::format("{} is already the RESP or HTTP port; give peers their own port", c.cluster_peer_port)});
    if (auto l = cluster::parse_peer_list(c.cluster_peers)) {
      for (auto& p : *l)
        if (p.id == c.cluster_node_id && c.cluster_peer_port != 0 && p.port != c.cluster_peer_port)
          problems.push_back({"cluster.peers", fmt::format("lists this node ({}) on port {}, but cluster.peer_port is {}", p.id, p.port, c.cluster_peer_port)});
    }
    if (c.cluster_join) {
      auto l = cluster::parse_peer_list(c.cluster_peers);
      bool others = l && std::any_of(l->begin(), l->end(), [&](auto& p) { return p.id != c.cluster_node_id; });
      if (!others)
        problems.push_back({"cluster.join", "needs cluster.peers to list the current members to learn from"});
    }
    if (c.cluster_max_command_bytes + 59 > c.cluster_max_batch_bytes)
      problems.push_back({"cluster.max_batch_bytes",
                          fmt::format("must hold one command of cluster.max_command_bytes ({}) plus 59 bytes of headers",
                                      c.cluster_max_command_bytes)});
    if (c.cluster_suspect_after_ms <= c.cluster_heartbeat_ms)
      problems.push_back({"cluster.suspect_after_ms", fmt::format("must exceed cluster.heartbeat_ms ({})", c.cluster_heartbeat_ms)});
    if (c.dht_write_quorum > c.dht_replicas)
      problems.push_back({"dht.write_quorum", fmt::format("{} is more than dht.replicas ({}); allowed: 1..dht.replicas", c.dht_write_quorum, c.dht_replicas)});
    if (c.dht_lease_ms != 0 && c.dht_lease_ms >= c.cluster_dead_after_ms)
      problems.push_back({"dht.lease_ms", fmt::format("must be below cluster.dead_after_ms ({}): a replica answers a failover only once the lease it granted has run out", c.cluster_dead_after_ms)});
    if (c.cluster_dead_after_ms <= c.cluster_suspect_after_ms)
      problems.push_back({"cluster.dead_after_ms", fmt::format("must exceed cluster.suspect_after_ms ({})", c.cluster_suspect_after_ms)});
  }
  if (c.tls_port != 0) {
    if (c.tls_plaintext && (c.tls_port == c.resp_port || c.tls_port == c.http_port))
      problems.push_back({"tls.port", fmt::format("{} is already the RESP or HTTP port; give TLS its own port (or set "
                                                  "tls.plaintext = no, which frees them)", c.tls_port)});
    if (c.tls_cert_file.empty())
      problems.push_back({"tls.cert_file", "must be set when tls.port is set: the node's certificate (PEM)"});
    if (c.tls_key_file.empty())
      problems.push_back({"tls.key_file", "must be set when tls.port is set: the certificate's private key (PEM)"});
    if (c.tls_auth_clients != "no" && c.tls_ca_cert_file.empty())
      problems.push_back({"tls.ca_cert_file",
                          fmt::format("must be set when tls.auth_clients is {}: client certificates are checked against it "
                                      "(or set tls.auth_clients = no)", c.tls_auth_clients)});
  }
  if (c.tls_peer && c.cluster_node_id != 0) {
    if (c.tls_cert_file.empty())
      problems.push_back({"tls.cert_file", "must be set when tls.peer = yes: the node's certificate (`keel cert issue --node ID`)"});
    if (c.tls_key_file.empty())
      problems.push_back({"tls.key_file", "must be set when tls.peer = yes: the certificate's private key"});
    if (c.tls_ca_cert_file.empty())
      problems.push_back({"tls.ca_cert_file", "must be set when tls.peer = yes: peers' certificates are checked against it"});
  }
  if (!c.tls_ca_key_file.empty()) {
    if (c.tls_cert_file.empty() || c.tls_key_file.empty() || c.tls_ca_cert_file.empty())
      problems.push_back({"tls.ca_key_file", "renewing the node's certificate needs tls.cert_file, tls.key_file and "
                                             "tls.ca_cert_file (the CA's certificate) too"});
    if (c.tls_reload_interval_ms == 0)
      problems.push_back({"tls.ca_key_file", "renewing the node's certificate needs tls.reload_interval_ms > 0 (the "
                                             "renewed files are picked up by the reload)"});
  }
  if (c.tls_http_port != 0) {
    if ((c.tls_plaintext && (c.tls_http_port == c.resp_port || c.tls_http_port == c.http_port)) || c.tls_http_port == c.tls_port)
      problems.push_back({"tls.http_port", fmt::format("{} is already the RESP, HTTP or TLS port; give HTTPS its own port", c.tls_http_port)});
    if (c.tls_cert_file.empty())
      problems.push_back({"tls.cert_file", "must be set when tls.http_port is set: the node's certificate (PEM)"});
    if (c.tls_key_file.empty())
      problems.push_back({"tls.key_file", "must be set when tls.http_port is set: the certificate's private key (PEM)"});
    if (c.tls_http_auth_clients != "no" && c.tls_ca_cert_file.empty())
      problems.push_back({"tls.ca_cert_file",
                          fmt::format("must be set when tls.http_auth_clients is {}: client certificates are checked against it "
                                      "(or set tls.http_auth_clients = no)", c.tls_http_auth_clients)});
  }
  if (c.trace_batch_size > c.trace_queue_size)
    problems.push_back({"trace.batch_size", fmt::format("{} is more than trace.queue_size ({}); allowed: 1..trace.queue_size",
                                                        c.trace_batch_size, c.trace_queue_size)});
  if (c.storage.kind == storage::EngineConfig::Kind::kPersistent && c.storage.max_memory_bytes != 0)
    problems.push_back({"storage.maxmemory",
                        "applies only to the memory engine; set storage.engine = \"memory\" or maxmemory = 0"});
}

}  // namespace keel::node
