// The asynchronous keel client on Asio with C++20 coroutines: a pipelined RESP3 Connection, a
// per-endpoint connection Pool, and a slot-routing ClusterClient. This is the one public header
// that includes Asio; the blocking keel::Client (client.h) does not.
//
// Threading: a Connection, Pool or ClusterClient belongs to the executor it was created on and
// must be used from that executor's thread (run the io_context on one thread, or use a strand).
// Pool handles may be destroyed anywhere: they return their connection through the executor.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keel/client/error.h"
#include "keel/client/options.h"
#include "keel/client/reply.h"
#include "keel/client/topology.h"

namespace keel::client {

namespace asio = boost::asio;

using ReplyHandler = asio::any_completion_handler<void(Result<Reply>)>;

// One TCP connection speaking RESP3 (or RESP2 if the server refuses HELLO 3). Any number of
// commands may be in flight: each is written as soon as it is issued (writes are coalesced) and
// replies are matched to commands in order. A reply that is a server error is a successful
// Result holding a Reply of type kError; I/O failures, timeouts and protocol errors are Errors
// and close the connection, failing every command in flight.
class Connection {
 public:
  struct Impl;

  static asio::awaitable<Result<std::shared_ptr<Connection>>> connect(asio::any_io_executor ex,
                                                                      Endpoint ep,
                                                                      ConnectionOptions opts);
  // With default options. An overload, not a default argument: GCC 12 destroys a coroutine's
  // default argument twice when the call is inside a co_await expression.
  static asio::awaitable<Result<std::shared_ptr<Connection>>> connect(asio::any_io_executor ex, Endpoint ep);
  ~Connection();  // closes the socket; commands in flight fail with kClosed
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Issues one command. The command is encoded (and queued for writing) before this returns,
  // so `args` need not outlive the call. Works with any Asio completion token; by default it
  // returns an awaitable of Result<Reply>.
  template <class Token = asio::use_awaitable_t<>>
  auto async_command(std::span<const std::string_view> args, Token&& token = {}) {
    auto ticket = enqueue(args);
    return asio::async_initiate<Token, void(Result<Reply>)>(
        [impl = impl_, ticket](auto handler) { complete_on(impl, ticket, ReplyHandler(std::move(handler))); },
        token);
  }
  asio::awaitable<Result<Reply>> command(std::vector<std::string> args);
  // Sends all commands in one write and returns their replies in order.
  asio::awaitable<std::vector<Result<Reply>>> pipeline(std::vector<std::vector<std::string>> cmds);

  // Out-of-band RESP3 push messages (invalidations, pub/sub) go here; dropped if unset.
  void on_push(std::function<void(Reply)> fn);

  void close();
  bool is_open() const;
  const Endpoint& endpoint() const;
  int protocol() const;           // 3 or 2, as negotiated
  const Reply& hello() const;     // the server's HELLO reply (null for RESP2)
  size_t in_flight() const;       // commands written or queued whose reply has not arrived
  asio::any_io_executor get_executor() const;

  explicit Connection(std::shared_ptr<Impl> impl);

 private:
  // Encodes and queues the command; returns its sequence number (or a failure ticket).
  uint64_t enqueue(std::span<const std::string_view> args);
  static void complete_on(const std::shared_ptr<Impl>& impl, uint64_t ticket, ReplyHandler h);
  std::shared_ptr<Impl> impl_;
};

class Pool;

// An exclusive lease of a pooled connection. Returns the connection to its pool when destroyed
// (or discards it if it broke, or if discard() was called). Move-only.
class PooledConnection {
 public:
  PooledConnection() = default;
  PooledConnection(std::shared_ptr<Pool> pool, std::shared_ptr<Connection> conn);
  ~PooledConnection();
  PooledConnection(PooledConnection&& o) noexcept;
  PooledConnection& operator=(PooledConnection&& o) noexcept;
  PooledConnection(const PooledConnection&) = delete;
  PooledConnection& operator=(const PooledConnection&) = delete;

  Connection& operator*() const { return *conn_; }
  Connection* operator->() const { return conn_.get(); }
  explicit operator bool() const { return conn_ != nullptr; }
  // The connection must not be reused (e.g. its state was changed); it is closed on release.
  void discard() { discard_ = true; }
  void release();  // returns the connection now

 private:
  std::shared_ptr<Pool> pool_;
  std::shared_ptr<Connection> conn_;
  bool discard_ = false;
};


// Connections to one endpoint: at most max_size open; acquire() reuses an idle one (PINGing it
// first if it has been idle longer than health_check_after), opens a new one below max_size, or
// waits for a release until its deadline.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  struct Impl;
  using Clock = std::chrono::steady_clock;

  static std::shared_ptr<Pool> create(asio::any_io_executor ex, Endpoint ep, PoolOptions opts = {});
  ~Pool();

  asio::awaitable<Result<PooledConnection>> acquire();  // deadline = now + acquire_timeout
  asio::awaitable<Result<PooledConnection>> acquire(Clock::time_point deadline);
  // Closes idle connections last used before now - idle_timeout; returns how many. Runs every
  // maintenance_interval by itself; callable directly with any `now` (tests).
  size_t evict_idle(Clock::time_point now);
  // Closes every connection; waiters and later acquire() calls fail with kClosed.
  void close();
  PoolStats stats() const;
  const Endpoint& endpoint() const;
  const PoolOptions& options() const;
  asio::any_io_executor get_executor() const;

  explicit Pool(std::unique_ptr<Impl> impl);

 private:
  friend class PooledConnection;
  void give_back(std::shared_ptr<Connection> conn, bool discard);
  std::unique_ptr<Impl> impl_;
};

// Routes each command to the node serving its key's slot (one Pool per node), follows MOVED
// (updating the slot map and refreshing the topology) and ASK (ASKING + the command, once).
class ClusterClient : public std::enable_shared_from_this<ClusterClient> {
 public:
  struct Impl;

  static asio::awaitable<Result<std::shared_ptr<ClusterClient>>> connect(asio::any_io_executor ex,
                                                                         ClusterOptions opts);
  ~ClusterClient();

  asio::awaitable<Result<Reply>> command(std::vector<std::string> args);
  // The same under a W3C trace context (trace.h): `traceparent` ("00-...-01") is set on the
  // connection for this command only (CLIENT TRACEPARENT before it, CLEAR after it, back to
  // back); empty: as command(args).
  asio::awaitable<Result<Reply>> command(std::vector<std::string> args, std::string traceparent);
  // Re-reads CLUSTER SHARDS from a known node (or a seed).
  asio::awaitable<Status> refresh_topology();
  Topology topology() const;
  // The pool for an endpoint (created on first use).
  std::shared_ptr<Pool> pool_for(const Endpoint& ep);
  std::map<Endpoint, PoolStats> pool_stats() const;
  uint64_t redirects_followed() const;
  uint64_t topology_refreshes() const;
  // Nodes in the slot map; safe to read from any thread.
  size_t node_count() const;
  void close();

  explicit ClusterClient(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::client
