// The RESP server: one acceptor per shard on the same port (SO_REUSEPORT, the kernel spreads
// connections), one coroutine per connection that reads, parses, executes and writes replies
// in order (pipelining), hopping to the shard that owns each command's keys.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "frontends/resp/command.h"
#include "frontends/resp/parser.h"
#include "frontends/resp/pubsub_registry.h"
#include "observe/stats.h"

namespace keel::security {
class TlsContextSlot;
}
namespace keel::runtime {
class ShardSet;
}
namespace keel::cache {
class Service;
}
namespace keel::routing {
class Service;
}
namespace keel::dht {
class Service;
}
namespace keel::observe {
class Tracer;
}
namespace keel::security {
class AclService;
class TransitService;
class SecretsService;
class ClientLimits;
}

namespace keel::resp {

// Redis's `client-output-buffer-limit pubsub <hard> <soft> <soft seconds>`: a subscriber whose
// unsent output reaches `hard_bytes`, or stays at or above `soft_bytes` for more than
// `soft_s` seconds, is disconnected (0 disables a limit).
struct PubSubLimits {
  uint64_t hard_bytes = 32ull << 20;
  uint64_t soft_bytes = 8ull << 20;
  uint64_t soft_s = 60;
};

// A receiver of pub/sub messages other than a RESP connection (the HTTP door's SSE streams).
// Called on the shard it subscribed on, from that shard's thread.
class PubSubSink {
 public:
  virtual ~PubSubSink() = default;
  virtual void message(PubKind kind, const std::string* pattern, std::string_view channel,
                       std::string_view payload) = 0;
};

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = 6380;
  ParserLimits limits;
  uint64_t max_clients = 10000;
  uint64_t query_buffer_limit = 1ull << 30;
  uint64_t timeout_s = 0;
  // A second listener speaking RESP over TLS (Redis's tls-port), on while `tls` is set: the
  // same connection code runs over the TLS stream. 0 = any free port. A reload replaces the
  // slot's context: new connections use the new one.
  int tls_port = 0;
  std::shared_ptr<security::TlsContextSlot> tls;
  // false (tls.plaintext = no): no plaintext listener on `port`; start() returns 0.
  bool plaintext = true;
  PubSubLimits pubsub_limits;
};

// A point-in-time copy of everything INFO and /metrics report, merged over shards.
struct Snapshot {
  observe::ShardStats stats;
  storage::EngineStats engine;
  unsigned shards = 0;
  std::optional<storage::DiskState> disk;  // persistent engine: whether it takes writes
};

// Formats the INFO reply for `section` ("default", "all", "server", "keyspace", ...).
using InfoFormatter = std::function<std::string(std::string_view section, const Snapshot&)>;

class Server {
 public:
  Server(runtime::ShardSet& shards, NodeView& node, ServerOptions options, InfoFormatter info);
  ~Server();

  // Binds and starts accepting on every shard. Returns the bound plaintext port (0 when
  // ServerOptions::plaintext is false).
  Result<int> start();
  // The bound TLS port after start() (0 while TLS is off).
  int tls_port() const;
  // Stops accepting and ends every connection after its in-flight replies are written.
  void shutdown();
  // Connections still open (for the shutdown drain).
  uint64_t open_connections() const;
  // Run-time changes (CONFIG SET): safe from any thread.
  void set_max_clients(uint64_t n);
  void set_timeout_s(uint64_t s);
  void set_pubsub_limits(PubSubLimits limits);
  // The caching service behind the CACHE.* commands. Call before start().
  void set_caches(cache::Service* caches);
  // ROUTE.REGISTER / ROUTE.DEREGISTER go to it (the gateway's registration service).
  void set_routes(routing::Service* routes);
  // TRANSIT.* go to it (transit keys in cluster metadata). Call before start().
  void set_transit(security::TransitService* transit);
  // SECRET.* go to it (secrets in cluster metadata). Call before start().
  void set_secrets(security::SecretsService* secrets);
  // Rate limits per user and per client address (shared with the HTTP door). Before start().
  void set_client_limits(std::shared_ptr<security::ClientLimits> limits);
  // Users and access rules: AUTH, HELLO AUTH, ACL, and the check before every command. Null
  // (the default): no users, `requirepass` through NodeView only. Call before start().
  void set_acl(security::AclService* acl);
  // Cluster mode: key commands are routed by the distributed hash map (set before start()).
  void set_dht(dht::Service* dht);
  // Records a span per command, as the tracer's sampler decides (null: no tracing, the
  // default; one branch per command). Call before start().
  void set_tracer(observe::Tracer* tracer);
  bool clustered() const;
  // Runs one command as a client would (routing, forwarding, write quorum) on some shard and
  // hands its RESP2 reply to `done` on that shard's thread. For the other doors (HTTP).
  // `parent`: the calling request's span (its trace context), so the command's span is its
  // child and its log lines carry the trace; nullopt when that request is not traced.
  void run(std::vector<std::string> argv, std::function<void(std::string)> done,
           std::optional<observe::TraceParent> parent = std::nullopt);

  // Pub/sub for the other doors. On shard `shard`'s thread only: subscribes `sink` to a
  // channel (or a glob pattern) and returns its subscriber id; `sink` must stay alive until
  // unsubscribe_sink(shard, id), called on the same thread. Messages published through any
  // door on any node reach it, as they reach a RESP subscriber.
  uint64_t subscribe_sink(unsigned shard, PubKind kind, std::string_view name, PubSubSink* sink);
  void unsubscribe_sink(unsigned shard, uint64_t id);
  // The limits in force now (an SSE stream applies the same cut-off).
  PubSubLimits pubsub_limits() const;
  // Counts a subscriber of another door cut off by the limit (INFO, /metrics), on `shard`'s
  // thread.
  void count_output_limit_disconnection(unsigned shard);

  // Collects statistics from every shard. From a non-shard thread only (it blocks); shard
  // coroutines use collect_snapshot() in server_async.h.
  Snapshot collect_blocking();

  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::resp
