// keel's configuration: one TOML file (keel.toml), every key overridable by an environment
// variable KEEL_<SECTION>_<KEY> and by command-line flags. Validation reports every problem
// with its key and what is allowed; nothing is silently clamped.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "storage/engine.h"

namespace keel::node {

struct Config {
  // [server]
  std::string bind = "127.0.0.1";
  int resp_port = 6380;
  int http_port = 8380;
  unsigned shards = 0;  // 0 = one per core
  uint64_t max_clients = 10000;
  uint64_t timeout_s = 0;  // close clients idle this long; 0 = never (Redis's default)
  std::string requirepass;
  // [storage]
  storage::EngineConfig storage;
  // [limits]
  uint64_t proto_max_bulk_len = 512ull << 20;
  uint64_t max_multibulk_len = 1024 * 1024;
  uint64_t max_inline_len = 64 * 1024;
  uint64_t query_buffer_limit = 1ull << 30;
  uint64_t http_max_body = 16ull << 20;
  // Rate limits per user and per client address, node-wide over RESP and HTTP (0 = none).
  uint64_t user_rate = 0, user_burst = 0, address_rate = 0, address_burst = 0;
  uint64_t address_connections = 0;  // open connections per client address, RESP and HTTP (0: no limit)
  // HTTP slow-client bounds: waiting for a request (keep-alive), its header once it began, a
  // body read whole.
  uint64_t http_idle_timeout_s = 60, http_header_timeout_ms = 10000, http_body_timeout_ms = 60000;
  // Redis's `client-output-buffer-limit pubsub 32mb 8mb 60`: a subscriber (RESP or SSE) whose
  // unsent output reaches the hard limit, or stays at or above the soft one for longer than
  // the soft seconds, is disconnected. 0 disables a limit.
  uint64_t pubsub_output_hard = 32ull << 20;
  uint64_t pubsub_output_soft = 8ull << 20;
  uint64_t pubsub_output_soft_s = 60;
  // [cluster] (consensus-replicated metadata; off while node_id is 0)
  uint32_t cluster_node_id = 0;         // 1..65535; 0 = not part of a cluster
  int cluster_peer_port = 9380;
  std::string cluster_peers;            // "ID@HOST:PORT,..." (self may be listed)
  std::string cluster_id = "keel";
  uint64_t cluster_request_timeout_ms = 2000;
  uint64_t cluster_heartbeat_ms = 200;
  uint64_t cluster_suspect_after_ms = 1000;
  uint64_t cluster_dead_after_ms = 3000;
  uint64_t cluster_max_batch = 64;      // client requests per proposal
  uint64_t cluster_max_command_bytes = 2ull << 20;    // one metadata command (larger: refused)
  uint64_t cluster_max_batch_bytes = 8ull << 20;      // one proposal / catch-up answer
  uint64_t cluster_snapshot_chunk_bytes = 1ull << 20;  // larger snapshots travel in chunks
  bool cluster_join = false;            // start as a learner, wait for `keel cluster join`
  uint64_t cluster_start_timeout_ms = 10;  // one starter per slot; the others wait this long for it
  int cluster_data_port = 0;            // the data plane (forwarding, replication); 0 = any free port
  bool cluster_storage = true;          // role: storage (holds partitions) or gateway (holds none)
  uint64_t cluster_weight = 1;          // relative share of partition copies
  std::string cluster_zone;             // failure domain: copies of a partition go to different zones
  uint64_t dht_replicas = 2;            // copies of each partition, the primary counted
  uint64_t dht_write_quorum = 2;        // copies holding a write before it is acknowledged
  bool dht_rebalance = true;             // run partition moves onto new members and off leaving ones
  uint64_t dht_rebalance_transfers = 4;  // partitions a node sends or receives at once while rebalancing
  uint64_t dht_rebalance_mb_per_s = 64;  // bandwidth of the snapshots a node sends (0: unlimited)
  uint64_t dht_log_keep_mb = 64;  // replication log kept for catch-up, all partitions of the node together
  uint64_t dht_replica_read_max_lag_ms = 1000;  // a replica serves reads only this fresh (readFrom replica, READONLY)
  uint64_t dht_lease_ms = 0;            // a primary serves reads only while its replicas renew this (0: half of cluster.dead_after_ms)
  uint64_t cluster_propose_delay_ms = 0;  // let forwards spread before a slot starts (batching)
  // [health]
  uint64_t health_tls_min_days = 3;     // a served TLS certificate expiring sooner fails /health/ready
  uint64_t health_stall_after_ms = 5000;  // a background task silent this long fails /health/ready
  // [trace] (OTLP/HTTP JSON export of request spans; off while endpoint is empty)
  std::string trace_endpoint;            // http://HOST:PORT/v1/traces
  double trace_sample_ratio = 0.01;      // share of new traces sampled (0..1)
  uint64_t trace_slow_ms = 100;          // keep every request at least this slow (0 = off)
  bool trace_keep_errors = true;         // keep every request answered with an error
  // The slow log (SLOWLOG, GET /v1/slowlog, the admin page): requests at least this many
  // microseconds long (negative: none, 0: all), the newest max_len of them.
  int64_t slowlog_slower_than_us = 10000;
  uint64_t slowlog_max_len = 128;
  uint64_t trace_queue_size = 2048;      // spans waiting for export; more are dropped and counted
  uint64_t trace_batch_size = 512;       // spans per export request
  uint64_t trace_batch_delay_ms = 1000;  // a span waits at most this long for its batch
  uint64_t trace_export_timeout_ms = 10000;
  uint64_t trace_max_retries = 5;        // retries of a batch on 429/502/503/504 or no answer
  std::string trace_service_name = "keel";
  // The spans of recent slow requests kept in memory for the admin page and GET /v1/traces
  // (observe/trace_ring.h): at most this many spans and bytes; 0 spans: none kept.
  uint64_t trace_recent_spans = 2000;
  uint64_t trace_recent_bytes = 1u << 20;
  // [gateway] (HTTP routing gateway: docs/gateway.md)
  bool gateway_enabled = true;              // forward requests that match a route (HTTP door, gateway.port)
  int gateway_port = 0;                     // a dedicated listener where every request is routed; 0 = none
  std::string gateway_routes_file;          // "METHOD:/path => service" lines; "" = none
  std::string gateway_balancer = "least_request";  // least_request (p2c), round_robin or consistent_hash
  bool gateway_access_log = false;          // a JSON line per routed request (event gateway.access)
  std::string gateway_hash_key;             // consistent_hash's key: header:NAME, cookie:NAME, param:NAME
  uint64_t gateway_connect_timeout_ms = 2000;
  uint64_t gateway_request_timeout_ms = 30000;  // one attempt, request sent to last byte of the answer
  uint64_t gateway_retries = 2;             // other instances tried after a connect failure (idempotent methods)
  uint64_t gateway_pool_max_idle = 32;      // kept-alive connections per upstream instance
  uint64_t gateway_tunnel_idle_timeout_ms = 3600000;  // an upgraded (WebSocket) connection idle this long is closed
  uint64_t gateway_max_body = 16ull << 20;  // request body
  uint64_t gateway_max_response = 0;  // largest answer relayed (0 = no limit)
  uint64_t gateway_stream_above = 256u << 10;  // larger answers, and those of unknown length, relayed as they arrive
  uint64_t gateway_outlier_failures = 5;          // consecutive 5xx/connect failures/timeouts to eject; 0 = off
  uint64_t gateway_outlier_ejection_ms = 30000;   // x times ejected
  uint64_t gateway_outlier_max_ejection_ms = 300000;
  uint64_t gateway_outlier_max_ejected_percent = 50;  // of a service's instances; one always stays
  // [tls] (RESP over TLS on a second port, Redis's model: docs/security.md)
  int tls_port = 0;                  // 0 = off
  std::string tls_cert_file;         // this node's certificate (PEM)
  std::string tls_key_file;          // its private key (PEM)
  std::string tls_ca_cert_file;      // CA that client certificates must chain to
  std::string tls_auth_clients = "yes";  // yes | no | optional (client certificates)
  bool tls_peer = false;             // mutual TLS on peer links (metadata peers and data plane)
  int tls_http_port = 0;             // HTTPS on this port (0 = off)
  bool tls_plaintext = true;         // no: server.resp_port and server.http_port are not opened (TLS only)
  std::string tls_http_auth_clients = "no";  // client certificates on HTTPS: yes | no | optional
  uint64_t tls_reload_interval_ms = 5000;    // check the files for changes this often (0 = never)
  std::string tls_ca_key_file;               // the CA's key: with it, the node renews its own certificate
  double tls_renew_fraction = 0.5;           // renew after this share of the certificate's lifetime
  // [auth] (tokens, certificate users, lockout: docs/security.md)
  std::string auth_token_public_key_file;  // public key tokens are signed with (keel token init); "" = tokens off
  bool auth_cert_users = false;             // a client certificate spiffe://<cluster>/client/<name> logs in as user <name>
  uint64_t auth_lockout_threshold = 10;     // failed authentications in a row before a lock; 0 = off
  uint64_t auth_lockout_base_ms = 1000;     // the first lock, doubling with each further failure
  uint64_t auth_lockout_max_ms = 600000;    // the longest lock
  uint64_t auth_signature_window_s = 300;   // signed HTTP requests: created..expires at most this long, and nonces kept this long
  uint64_t auth_nonce_capacity = 100000;    // signed HTTP requests: nonces remembered; when full, signed requests are refused
  // [audit] (the audit stream: docs/security.md, "Audit stream")
  std::string audit_stream = "keel:audit";  // the stream key every audit event is appended to; "" = off
  uint64_t audit_stream_max_len = 100000;   // XADD ... MAXLEN ~ this
  uint64_t audit_stream_queue = 10000;      // events waiting for their append; more are dropped and counted
  // [security.at_rest] (encryption at rest: docs/security.md)
  std::string at_rest_key_file;  // the master key from this file
  std::string at_rest_key_env;   // or from this environment variable
  uint64_t at_rest_rewrap_keys_per_s = 2000;
  bool at_rest_enabled() const { return !at_rest_key_file.empty() || !at_rest_key_env.empty(); }
  // [log]
  std::string log_level = "info";
  std::string log_format = "text";
  std::string log_otlp_endpoint;      // http://HOST:PORT/v1/logs: log lines as OTLP log records (empty = off)
  std::string log_otlp_level = "info";  // lines below it are not exported
  // [signals]
  std::string signals_file;  // routes of the node's signals (observe/signals.h); "" = defaults

  unsigned effective_shards() const;
};

struct Problem {
  std::string key;      // "server.resp_port"
  std::string message;  // what is wrong and what is allowed
};

// Every setting as (section.key, current value as text) — for CONFIG GET, docs and tests.
std::vector<std::pair<std::string, std::string>> describe(const Config& c);

// Applies one setting given as text; appends a Problem on bad input. `key` is "section.key".
void apply(Config& c, const std::string& key, const std::string& value, std::vector<Problem>& problems);

// Loads a TOML file over `c` (missing keys keep their values). Unknown keys are problems.
void load_toml_file(Config& c, const std::string& path, std::vector<Problem>& problems);
// Applies KEEL_<SECTION>_<KEY> variables from `env` (a copy of the environment).
void load_env(Config& c, const std::map<std::string, std::string>& env, std::vector<Problem>& problems);
// Cross-field checks (after all sources are applied).
void validate(const Config& c, std::vector<Problem>& problems);
// What is allowed but unsafe (`keel config check` prints these as warnings and still
// succeeds): a cluster member whose peer links or client doors run without TLS.
void warnings(const Config& c, std::vector<Problem>& out);

// Parses "512mb", "1gb", "100k", "123" like Redis's memtoll. Returns false on bad input.
bool parse_size(const std::string& s, uint64_t& out);

}  // namespace keel::node
