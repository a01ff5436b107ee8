// The HTTP/1.1 + JSON front end (Boost.Beast): /v1/kv, /v1/streams, /v1/pubsub, /v1/caches,
// /v1/meta, /v1/cluster/status, /metrics, /health/live, /health/ready (?verbose,
// /health/ready/<check>).
// Errors are {"error": {"code": "...", "message": "..."}} with a fitting status.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"

namespace keel::runtime {
class ShardSet;
}
namespace keel::resp {
class Server;
}
namespace keel::cluster {
class MetaService;
}
namespace keel::cache {
class Service;
}
namespace keel::dht {
class Service;
}
namespace keel::http {
class Gateway;
}
namespace keel::security {
class AclService;
class TransitService;
class SecretsService;
class ClientLimits;
class TlsContextSlot;
}
namespace keel::observe {
class HealthBoard;
class Tracer;
class SlowLog;
class LogExporter;
}

namespace keel::http {

struct ServerOptions {
  uint32_t node_id = 1;  // this node's id (cluster.node_id; 1 outside a cluster): GET /v1/traces names it
  std::string bind = "127.0.0.1";
  int port = 8380;
  uint64_t max_body_bytes = 16ull << 20;
  uint32_t max_header_bytes = 16 * 1024;
  uint32_t idle_timeout_s = 60;       // waiting for the next request (http.idle_timeout_s)
  uint32_t header_timeout_ms = 10000;  // a request's header, from its first byte (slow clients)
  uint32_t body_timeout_ms = 60000;    // a body read whole
  uint32_t max_list_limit = 1000;
  // A dedicated gateway listener (gateway.port): every request goes to the gateway's routes.
  bool gateway_only = false;
  // The node's data directory: /metrics reports the free space of its filesystem.
  std::string data_dir;
  // HTTPS: a second listener on tls_port (0 = any free port) while `tls` is set, serving the
  // same routes over TLS. A reload replaces the slot's context for new connections.
  int tls_port = 0;
  std::shared_ptr<security::TlsContextSlot> tls;
  // false (tls.plaintext = no): no plaintext listener on `port`; start() returns 0.
  bool plaintext = true;
  // Signed requests (security/http_signature.h): the longest created..expires span, and the
  // nonces remembered within it; when full, signed requests are refused (503), never accepted
  // unchecked.
  int64_t signature_window_s = 300;
  size_t nonce_capacity = 100000;
  // More Prometheus text appended to /metrics (the node's TLS figures); empty = none.
  std::function<std::string()> extra_metrics;
  // Encryption at rest, /v1/keys: GET (the versions and the rewrap's progress),
  // POST /v1/keys/rotate, POST /v1/keys/{version}/retire. Given the method ("GET", "POST") and
  // the path after /v1/keys, answers (HTTP status, JSON body). Empty: encryption at rest is off.
  std::function<std::pair<int, std::string>(std::string_view method, std::string_view rest, std::string_view body)>
      keys_admin;
};

class Server {
 public:
  Server(runtime::ShardSet& shards, resp::Server& resp, ServerOptions options);
  ~Server();
  // Serves /v1/meta and /v1/cluster from `meta` (a cluster member). Call before start().
  void set_meta(cluster::MetaService* meta);
  // Serves /v1/caches (frontends/http/caches.h). Call before start().
  void set_caches(cache::Service* caches);
  // Users and access rules govern /v1/* (Authorization: Basic); /health/*, /metrics and the
  // UI page stay open. Null: everything open. Call before start().
  void set_acl(security::AclService* acl);
  // /v1/transit: transit keys (the node's TransitService). Call before start().
  void set_transit(security::TransitService* transit);
  // /v1/secrets: the node's SecretsService. Call before start().
  void set_secrets(security::SecretsService* secrets);
  // Rate limits per user and per client address (shared with the RESP door). Before start().
  void set_client_limits(std::shared_ptr<security::ClientLimits> limits);
  // Adds the partition figures to /v1/cluster/status and /metrics.
  void set_dht(dht::Service* dht);
  // Answers /health/ready from `board` (observe/health_board.h). Call before start().
  void set_health(observe::HealthBoard* board);
  // Records a span per request as the tracer's sampler decides, reading and answering W3C
  // traceparent/tracestate; adds the tracer's figures to /metrics. Call before start().
  void set_tracer(observe::Tracer* tracer);
  // Logs requests at least the slow log's threshold long there and serves it as /v1/slowlog
  // (observe/slowlog.h). Call before start().
  void set_slowlog(observe::SlowLog* slow);
  // Adds the OTLP log exporter's figures to /metrics. Call before start().
  void set_log_exporter(observe::LogExporter* logs);
  // Serves /v1/routes and forwards requests that match a gateway route (frontends/http/gateway.h).
  // On the HTTP door keel's own paths (/v1/..., /health/..., /metrics) come first. Call before start().
  void set_gateway(Gateway* gateway);
  Result<int> start();  // returns the bound port
  int tls_port() const;  // the bound HTTPS port (0: off)
  void shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Percent-decodes a URL component. Returns false on a malformed escape.
bool url_decode(std::string_view in, std::string& out, bool plus_is_space);

}  // namespace keel::http
