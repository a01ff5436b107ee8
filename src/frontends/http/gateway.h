// The HTTP routing gateway's proxy and its admin routes (docs/gateway.md):
//   GET              /v1/routes                                        the route table
//   GET              /v1/routes/match?method=GET&path=/x[&host=h]      which route would answer
//   PUT (or POST)    /v1/routes/services/{service}/instances/{id}      register / renew (JSON body)
//   DELETE           /v1/routes/services/{service}/instances/{id}      deregister
// Every other request that matches a route is forwarded to one of the route's instances
// (HTTP/1.1, a bounded keep-alive pool per instance, X-Forwarded-For/Proto/Host, W3C
// traceparent passed on or started), chosen by the configured balancer; connect failures of
// idempotent methods are retried on another instance. Instances that fail in a row are ejected
// for a while (gateway/outlier.h); instances whose health path fails are left out until it
// answers again. Gateway errors are JSON: 502 (which upstream failed and why), 503 (no live,
// healthy, non-ejected instance), 504 (upstream timeout).
//
// The proxy runs on the HTTP server's event loop (shard 0): its pools and counters are touched
// only there. This header has no Asio or Beast; the server includes gateway_impl.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "gateway/ring.h"
#include "gateway/table.h"

namespace keel::routing {
class Service;
}
namespace keel::runtime {
class ShardSet;
}

namespace keel::http {

struct GatewayOptions {
  gateway::Policy policy = gateway::Policy::kLeastRequest;
  gateway::HashKeySpec hash_key;  // where consistent_hash takes a request's key from
  int64_t connect_timeout_ms = 2000;
  int64_t request_timeout_ms = 30000;  // one attempt: sending the request to the last byte of the answer
  uint32_t retries = 2;                // further instances tried after a connect failure (idempotent methods)
  uint32_t pool_max_idle = 32;         // kept-alive upstream connections per instance
  uint64_t max_body_bytes = 16ull << 20;
  uint64_t max_response_bytes = 0;          // largest answer relayed (0 = no limit)
  uint64_t stream_above_bytes = 256u << 10;  // answers larger, or of unknown length, relayed as they arrive
  gateway::OutlierOptions outlier;  // passive ejection: consecutive 5xx / connect failures / timeouts
  bool access_log = false;          // one JSON line per request that matched a route (event gateway.access)
  // The live members of the cluster (rate_scope=cluster routes split their rate over them);
  // unset: 1.
  std::function<uint32_t()> cluster_size;
  // An upgraded connection (WebSocket) with no byte either way for this long is closed.
  int64_t tunnel_idle_timeout_ms = 3600000;
};

class Gateway {
 public:
  Gateway(routing::Service& routes, GatewayOptions opt);
  ~Gateway();
  routing::Service& routes();
  // Starts the active health checker on shard 0 (it probes instances whose registration has a
  // "health" object). stop() ends it; call both from outside the shards.
  void start(runtime::ShardSet& shards);
  void stop();

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::http
