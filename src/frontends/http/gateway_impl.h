// Gateway::Impl: the proxy on Beast. Includes Asio and Beast: include only from .cpp files of
// frontends/http.
#pragma once

#include <atomic>
#include <chrono>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <map>
#include <unordered_map>
#include <vector>

#include "base/random.h"
#include "frontends/http/gateway.h"
#include "gateway/stats.h"
#include "keel/resilience/rate_limiter.h"

namespace keel::routing {
struct Snapshot;
}

namespace keel::http {

using GwRequest = boost::beast::http::request<boost::beast::http::string_body>;
using GwResponse = boost::beast::http::response<boost::beast::http::string_body>;

struct Gateway::Impl {
  Impl(routing::Service& r, GatewayOptions o);

  struct Conn {
    explicit Conn(const boost::asio::any_io_executor& ex) : stream(ex) {}
    boost::beast::tcp_stream stream;
    boost::beast::flat_buffer buf;
    std::chrono::steady_clock::time_point idle_since;  // when it went back to the pool
  };
  // An answer whose body is relayed as it arrives (larger than gateway.stream_above, or of
  // unknown length): the upstream connection with the parser past the answer's header.
  struct Streamed {
    Streamed(boost::beast::http::response_parser<boost::beast::http::empty_body>&& head, std::unique_ptr<Conn> c,
             std::string addr)
        : conn(std::move(c)), parser(std::move(head)), address(std::move(addr)) {}
    std::unique_ptr<Conn> conn;
    boost::beast::http::response_parser<boost::beast::http::buffer_body> parser;
    std::string address;  // the instance's, to give the connection back to its pool
  };
  // What the caller of proxy() finishes after the answer's header: an upgrade's relay, or a
  // streamed body.
  struct Handoff {
    std::unique_ptr<Conn> tunnel;        // an accepted upgrade's upstream connection
    std::unique_ptr<Streamed> streamed;  // the rest of a streamed answer
  };
  // The body of an upload too large to hold (above gateway.stream_above, or chunked), handed
  // over piece by piece as it arrives: a piece, an empty view at the end, or nullopt when the
  // client's side broke off (each view is valid until the next call).
  using BodyReader = std::function<boost::asio::awaitable<std::optional<std::string_view>>()>;
  // Whether a request would be routed (some route matches it): the HTTP door asks before it
  // decides how to read a large body.
  bool routes_request(const GwRequest& req) const;
  // A request that matches a route: forwarded (the answer, or a gateway error). nullopt when no
  // route matches (the caller answers for itself). `req` gains X-Forwarded-* headers.
  // `answer_unmatched`: answer 404 when nothing matches (the dedicated listener).
  // An upgrade (WebSocket) that the upstream accepted comes back as its 101 answer with the
  // upstream connection in `handoff->tunnel` (with any bytes the upstream sent after its 101
  // in its buffer): the caller writes the 101 and then relays bytes both ways. A streamed
  // answer comes back as its header (hop-by-hop fields gone) with the rest in
  // `handoff->streamed`: the caller writes the header and relays the body (then give_back()).
  // With `body`, `req` holds the header only and its body is streamed from `body` to the
  // instance (Content-Length kept, or chunked); such a request is not retried once its body
  // started (only a failed connect is).
  boost::asio::awaitable<std::optional<GwResponse>> proxy(GwRequest& req, const std::string& client_ip,
                                                          bool answer_unmatched, Handoff* handoff = nullptr,
                                                          BodyReader* body = nullptr);
  // A streamed answer's connection, once its body was relayed whole: back to the pool.
  void give_back(Streamed& s);
  // What proxy_route did, for the access log.
  struct Outcome {
    std::string upstream;     // "service/id" of the last instance tried; "" when none was
    uint32_t attempts = 0;    // instances tried
    std::string traceparent;  // the one sent upstream (only with gateway.access_log)
    Handoff handoff;
  };
  // proxy() once a route matched: the rate limit, the choice of an instance, the attempts.
  // `snap`, `path_segs`, `host` and `outcome` live in proxy()'s frame.
  boost::asio::awaitable<GwResponse> proxy_route(GwRequest& req, const std::string& client_ip,
                                                 const std::shared_ptr<const routing::Snapshot>& snap,
                                                 uint32_t entry_index, const std::vector<std::string_view>& path_segs,
                                                 const std::string& host, Outcome& outcome, BodyReader* body);
  // /v1/routes and below.
  boost::asio::awaitable<GwResponse> handle_api(const GwRequest& req, std::string_view path, std::string_view query);

  struct Upstream {
    std::vector<std::unique_ptr<Conn>> idle;
    uint32_t inflight = 0;
  };
  enum class Fail : uint8_t { kNone, kConnect, kBroken, kTimeout, kTooLarge };
  struct Attempt {
    Fail fail = Fail::kNone;
    std::string why;
    GwResponse res;
    std::unique_ptr<Conn> upgraded;  // the connection, when the answer is a 101 to an upgrade
    std::unique_ptr<Streamed> streamed;  // an answer to relay as it arrives (res holds its header)
  };
  // One attempt at an instance. `upgrade`: the request asks to switch protocols (a connection
  // of its own; a 101 hands it over in Attempt::upgraded).
  boost::asio::awaitable<Attempt> forward(const std::string& address, Upstream& up, GwRequest& out, bool idempotent,
                                          BodyReader* body, bool upgrade);
  std::unique_ptr<Conn> take_idle(Upstream& up);

  // Active health checks: every 100 ms, probes the instances whose interval has passed (one
  // probe per instance at a time, a fresh connection each: GET path, good if 2xx in time).
  boost::asio::awaitable<void> health_loop();
  boost::asio::awaitable<void> probe(std::string service, std::string id, std::string address,
                                     gateway::HealthCheckOptions hc);
  bool healthy(const std::string& service, const std::string& id) const;
  // Forgets the health and ejection state of instances no longer in the table.
  void prune(const gateway::RouteTable& table);
  // Prometheus text: ejections, instances ejected and unhealthy, per service.
  std::string metrics_text() const;
  // The per-route and per-service families of `stats` (prometheus-cpp's text serializer).
  std::string stats_text() const;

  routing::Service& routes;
  GatewayOptions opt;
  gateway::OutlierDetector outliers;  // shard 0 only
  struct Health {
    gateway::HealthState state;
    int64_t next_probe_ms = 0;
    bool probing = false;
  };
  std::map<std::pair<std::string, std::string>, Health> health;  // (service, id); shard 0 only
  std::atomic<bool> stopping{false};  // set by Gateway::stop from outside the shards
  SeededRandom rng;
  uint64_t rr_cursor = 0;
  // Per-route rate limits (route option rate=): one keyed GCRA limiter per (service, route
  // text), kept across table revisions while the route exists. shard 0 only.
  static constexpr uint32_t kRateKeys = 10000;  // keys (clients, header values) per route
  resilience::KeyedRateLimiter& limiter_for(const gateway::RouteSpec& route);
  // How many nodes share a route's rate: the live members for rate_scope=cluster, else 1.
  uint32_t rate_share(const gateway::RouteSpec& route) const;
  std::unordered_map<std::string, std::unique_ptr<resilience::KeyedRateLimiter>> limiters;
  // consistent_hash: one ring per route entry over its instances, for the table of snapshot
  // rings_of (rebuilt when the snapshot changes: a new revision, or a lease that ended; the
  // snapshot is held so that its address is not reused). shard 0 only.
  const gateway::HashRing& ring_for(const std::shared_ptr<const routing::Snapshot>& snap, uint32_t entry);
  std::unordered_map<uint32_t, gateway::HashRing> rings;
  std::shared_ptr<const routing::Snapshot> rings_of;
  std::unordered_map<std::string, Upstream> upstreams;  // by address; shard 0 only
  uint64_t pruned_at_revision = 0;
  gateway::GatewayStats stats;  // per route and per service, for /metrics; shard 0 only
  // Counters (shard 0 only), shown by GET /v1/routes.
  uint64_t proxied = 0, retries = 0, errors_502 = 0, errors_503 = 0, errors_504 = 0, ejections = 0, rate_limited = 0;
  // Upgraded connections (WebSocket) relayed: begun, and open now. Answers streamed.
  uint64_t tunnels_total = 0, tunnels_open = 0, streamed_total = 0;
};

}  // namespace keel::http
