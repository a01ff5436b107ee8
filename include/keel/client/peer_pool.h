// PeerPool: one pool of connections over many endpoints, steered by a PeerManager.
//
//   command(args) ──► PeerManager::select(spread, required, now) ──► least busy of those ──►
//   that peer's bounded Pool ──► the command ──► record_success(latency) / record_failure
//
// Each peer gets its own Pool (PoolOptions bound every one of them). The PeerManager (a pure
// core, keel/peers.h) ranks peers by status, latency EWMA and recent failures; PeerPool is the
// shell around it that reads the clock and the network. A peer that fails `down_after` calls in
// a row is down and no longer chosen; peers that are not up are PINGed every `probe_interval`
// and one answered PING brings a peer back up, so a recovered node is chosen again.
//
// What counts as a failure of the peer: connecting failed or timed out, no connection became
// free before acquire_timeout, the connection broke, a command timed out, or the reply was not
// valid RESP, or the server refused the command without running it because it cannot serve now
// (an error reply starting LOADING, BUSY, MASTERDOWN, CLUSTERDOWN or TRYAGAIN: such a call may
// go to the next peer whatever it is; if every peer tried answers so, the last such reply is
// returned). Any other server error reply (e.g. WRONGTYPE) is an answer: it counts as a success.
//
// Failover: a call is tried on up to max_attempts peers. It moves to the next peer whenever it
// could not be sent (no connection was obtained), and after a failure once it may have been
// sent only when CallOptions::idempotent is set (a SET that timed out may have been applied).
//
// Threading: like Pool, a PeerPool belongs to its executor; command(), set_peers(), apply() and
// pool_stats() are called on that executor's thread. select(), peers(), status() and close()
// may be called from any thread. Let the last reference go on the executor's thread (or once
// it has stopped), as for Pool.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keel/client/async.h"
#include "keel/clock.h"
#include "keel/peers.h"

namespace keel::client {

struct PeerPoolOptions {
  PoolOptions pool;                 // bounds of each peer's Pool
  sdk::PeerManager::Options peers;  // ranking and thresholds (down_after, down_cooldown, ...)
  // A call goes to the peer with the fewest calls in flight among the best `spread` peers that
  // qualify (ties: the better ranked). 1 = always the best peer. >= 1.
  size_t spread = 2;
  // Peers tried for one call (see the header comment on failover). >= 1.
  size_t max_attempts = 2;
  // How often peers that are not up get a PING; 0 = never (they then come back only through
  // down_cooldown and real calls).
  std::chrono::milliseconds probe_interval{1000};
  std::chrono::milliseconds probe_timeout{1000};
  // Time for latencies and statuses; null = sdk::SteadyClock::instance(). Must outlive the pool.
  const sdk::Clock* clock = nullptr;
};

struct CallOptions {
  std::vector<std::string> required;  // capabilities the peer must have (e.g. "write")
  bool idempotent = false;            // may be re-sent to another peer after it may have been sent
};

// What peers() reports: the PeerManager's view plus this pool's counters.
struct PeerPoolPeer {
  sdk::PeerView view;
  size_t in_flight = 0;    // calls on this peer now
  uint64_t calls = 0;      // calls answered by this peer (a server error reply included)
  uint64_t failures = 0;   // calls and probes that failed on this peer
  uint64_t probes = 0;     // PINGs sent because the peer was not up
};

class PeerPool : public std::enable_shared_from_this<PeerPool> {
 public:
  struct Impl;

  // Refuses bad options (spread or max_attempts 0) and a bad peer list (kInvalidArgument with
  // the PeerManager's message).
  static Result<std::shared_ptr<PeerPool>> create(asio::any_io_executor ex,
                                                  std::vector<sdk::PeerSpec> peers,
                                                  PeerPoolOptions opts);
  static Result<std::shared_ptr<PeerPool>> create(asio::any_io_executor ex,
                                                  std::vector<sdk::PeerSpec> peers);
  ~PeerPool();
  PeerPool(const PeerPool&) = delete;
  PeerPool& operator=(const PeerPool&) = delete;

  // A command on the chosen peer (see the header comment). Fails with kUnavailable when no peer
  // has the required capabilities (or every one was tried); otherwise with the last peer's
  // error, its message prefixed by the peer id.
  asio::awaitable<Result<Reply>> command(std::vector<std::string> args);
  asio::awaitable<Result<Reply>> command(std::vector<std::string> args, CallOptions call);

  // Replace the peer set (a static list) or apply a topology snapshot. Peers that stay keep
  // their statistics and their Pool; peers that leave have their Pool closed.
  Status set_peers(std::vector<sdk::PeerSpec> peers);
  Result<bool> apply(const sdk::TopologyUpdate& update);
  // Peers from the cluster topology: sends CLUSTER SHARDS to a peer (as an idempotent call)
  // and applies its nodes (sdk::topology_from_cluster_nodes: a master can do "primary",
  // "read", "write", a replica "replica", "read"; health "failed" is down), each refresh a
  // newer version. Peer ids become the nodes' ids. Returns the number of peers now known.
  asio::awaitable<Result<size_t>> refresh_topology();

  // The PeerManager's ranking now (any thread).
  std::vector<sdk::PeerView> select(size_t k, const std::vector<std::string>& required = {}) const;
  std::vector<PeerPoolPeer> peers() const;  // sorted by id (any thread)
  sdk::PeerStatus status(std::string_view id) const;  // kDown if unknown (any thread)
  std::map<std::string, PoolStats> pool_stats() const;  // by peer id (executor thread)
  const PeerPoolOptions& options() const;
  // Closes every pool and stops probing; later calls fail with kClosed (any thread).
  void close();

  explicit PeerPool(std::unique_ptr<Impl> impl);

 private:
  void start_probing();
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::client
