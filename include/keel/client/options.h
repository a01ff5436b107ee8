// Where to connect and the bounds every connection, pool and cluster client works within.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "keel/client/trace.h"
#include "keel/client/error.h"
#include "keel/client/reply.h"

namespace keel::client {

struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 6380;
  std::string to_string() const { return host + ":" + std::to_string(port); }
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
};

// Parses "host:port" (the form MOVED/ASK replies use); "[v6]:port" is accepted too.
Result<Endpoint> parse_endpoint(std::string_view text);

struct ConnectionOptions {
  std::chrono::milliseconds connect_timeout{2000};
  // A command whose reply has not arrived after this long fails with kTimeout, and so does
  // every command behind it on that connection (the connection is closed: with ordered replies
  // a late answer could otherwise be matched to the wrong request). 0 = no timeout.
  std::chrono::milliseconds command_timeout{5000};
  int protocol = 3;  // HELLO 3; falls back to RESP2 when the server refuses HELLO
  std::string username;  // with password: sent in HELLO ... AUTH (or AUTH for RESP2)
  std::string password;
  std::string client_name;  // HELLO ... SETNAME
  ParserLimits limits;
  size_t max_pending = 1u << 20;  // commands in flight on one connection before kUnavailable
};

struct PoolOptions {
  size_t max_size = 8;                          // connections open at once (idle + in use)
  std::chrono::milliseconds acquire_timeout{2000};  // how long acquire() waits for a connection
  std::chrono::milliseconds idle_timeout{60000};    // idle longer than this: closed by evict_idle
  // An idle connection unused for longer than this is PINGed before it is handed out; one that
  // fails the PING is discarded and replaced. 0 = always check.
  std::chrono::milliseconds health_check_after{5000};
  std::chrono::milliseconds maintenance_interval{10000};  // how often idle eviction runs; 0 = never
  size_t max_waiters = 100000;  // acquire() calls waiting at once before kUnavailable
  ConnectionOptions connection;
};

struct PoolStats {
  size_t open = 0;     // idle + in use
  size_t idle = 0;
  size_t in_use = 0;
  size_t waiters = 0;  // acquire() calls waiting for a connection
  uint64_t created = 0;
  uint64_t evicted_idle = 0;
  uint64_t health_check_failures = 0;
  uint64_t discarded_broken = 0;
  uint64_t acquire_timeouts = 0;
};

struct ClusterOptions {
  std::vector<Endpoint> seeds{Endpoint{}};
  PoolOptions pool;
  int max_redirects = 5;  // MOVED/ASK hops for one command before kRedirectLimit
  // Reads CLUSTER SHARDS from a seed on connect and after a MOVED. A server that does not know
  // CLUSTER (plain Redis, cluster mode off) is used as the single owner of every slot.
  bool cluster_aware = true;
  // keel::Client: a span for each call made under a sampled TraceScope (trace.h), handed here;
  // unset: the trace context still travels to keel, no client span is made.
  SpanSink on_span;
};

}  // namespace keel::client
