// PeerManager: which peers to talk to, best first.
//
// Peers come from a static list or from a topology update (the cluster client turns
// CLUSTER SHARDS into a TopologyUpdate). For each peer the manager keeps a status
// (up / suspect / down), a latency EWMA, a failure score that decays with time, and a set of
// capabilities. select(k, required, now) returns the best k peers that have every required
// capability: healthy before suspect, then lowest expected cost (latency inflated by recent
// failures), then a deterministic tie-break. Down peers are only returned when there are not
// enough other peers (and Options::fill_with_down is set), after every non-down peer.
//
// This is a pure core: it reads no clock; every call that depends on time takes `now`
// (keel::sdk::Instant, see clock.h). It is not thread-safe: the owner
// serialises calls (one event loop, or a mutex around it).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "keel/clock.h"
#include "keel/signals.h"

namespace keel::sdk {

enum class PeerStatus : uint8_t { kUp, kSuspect, kDown };
std::string_view peer_status_name(PeerStatus s);

// What a static list or a topology source says about one peer.
struct PeerSpec {
  std::string id;    // unique, non-empty (a node id from CLUSTER SHARDS, or "host:port")
  std::string host;  // non-empty
  uint16_t port = 0;  // 1..65535
  // e.g. "primary", "replica", "read", "write"; at most kMaxCapabilities distinct names over
  // the whole peer set (they are kept as a bit mask so select() stays cheap).
  std::vector<std::string> capabilities;
  // Health as reported by the source. kDown ("failed" in CLUSTER SHARDS) keeps the peer down
  // whatever its call results say until a later update reports it otherwise; kSuspect
  // ("loading") ranks it after healthy peers.
  PeerStatus reported = PeerStatus::kUp;
};

// One topology snapshot. A higher version replaces the peer set; an update whose version is
// not newer than the last applied one is ignored (late delivery of an old snapshot).
struct TopologyUpdate {
  uint64_t version = 0;
  std::vector<PeerSpec> peers;
};

// One node as a CLUSTER SHARDS reply describes it (the cluster client parses the reply).
struct ClusterNode {
  std::string id;
  std::string endpoint;  // the "endpoint" field (or "ip" when the endpoint is "?")
  uint16_t port = 0;
  std::string role;    // "master" or "replica"
  std::string health;  // "online", "failed" or "loading"
};

// A topology snapshot from CLUSTER SHARDS nodes. A master gets the capabilities "primary",
// "read" and "write"; a replica "replica" and "read". Health "failed" reports the peer down,
// "loading" (or anything unknown) suspect. A node listed more than once (in several shards)
// becomes one peer with the union of its capabilities and the worst reported health.
TopologyUpdate topology_from_cluster_nodes(uint64_t version,
                                           const std::vector<ClusterNode>& nodes);

enum class PeerErrc : uint8_t {
  kInvalidPeer,
  kDuplicatePeer,
  kUnknownPeer,
  kTooManyPeers,
  kTooManyCapabilities,
};

struct PeerError {
  PeerErrc code;
  std::string message;  // names the peer and what is allowed
};

// What select() and peer() report about a peer.
struct PeerView {
  std::string id;
  std::string host;
  uint16_t port = 0;
  PeerStatus status = PeerStatus::kUp;
  Duration latency_ewma{0};  // Options::initial_latency until the first sample
  double failure_score = 0;  // decayed count of recent failures, as of the `now` asked for
  std::vector<std::string> capabilities;  // sorted, unique
};

class PeerManager {
 public:
  static constexpr size_t kMaxCapabilities = 64;

  struct Options {
    // Weight of a new latency sample in the EWMA (0 < alpha <= 1).
    double latency_alpha = 0.2;
    // Latency assumed for a peer that has no sample yet.
    Duration initial_latency = std::chrono::milliseconds(1);
    // The failure score halves every failure_half_life.
    Duration failure_half_life = std::chrono::seconds(10);
    // Consecutive failures that make a peer suspect, and down.
    uint32_t suspect_after = 1;
    uint32_t down_after = 3;
    // A down peer (by call results, not by report) becomes suspect again after this long, so
    // it gets probed; one success brings it up.
    Duration down_cooldown = std::chrono::seconds(5);
    // Each unit of failure score multiplies a peer's expected cost by (1 + failure_penalty).
    double failure_penalty = 1.0;
    // When fewer than k non-down peers qualify, append down ones (last resort, best first).
    bool fill_with_down = false;
    // Mixed into the tie-break so different clients spread over equal peers differently;
    // the same seed always gives the same order.
    uint64_t tie_break_seed = 0;
    // Upper bound on the peer set (bad topology input must not grow memory without bound).
    size_t max_peers = 4096;
    // Receives PeerStatusChanged when a call result or a topology update changes a peer's
    // status (a cooldown running out is reported at the next call that sees it). May be null.
    SignalBus* signals = nullptr;
  };

  PeerManager();
  explicit PeerManager(Options options);

  // Replace the peer set with a static list. Peers that stay keep their statistics.
  std::expected<void, PeerError> set_static(std::span<const PeerSpec> peers,
                                            Instant now = Instant{});
  // Apply a topology snapshot (see TopologyUpdate). Returns false when it was ignored as old.
  std::expected<bool, PeerError> apply(const TopologyUpdate& update, Instant now = Instant{});

  // Call results. Unknown ids give kUnknownPeer (the peer may have just left the topology).
  std::expected<void, PeerError> record_success(std::string_view id,
                                                Duration latency,
                                                Instant now);
  std::expected<void, PeerError> record_failure(std::string_view id,
                                                Instant now);

  // The best k peers having every capability in `required`, best first (see the header
  // comment). Returns fewer than k when not enough peers qualify.
  std::vector<PeerView> select(size_t k, std::span<const std::string> required,
                               Instant now) const;
  std::vector<PeerView> select(size_t k, Instant now) const {
    return select(k, {}, now);
  }

  std::optional<PeerView> peer(std::string_view id, Instant now) const;
  PeerStatus status(std::string_view id, Instant now) const;  // kDown if unknown
  size_t size() const { return peers_.size(); }
  uint64_t topology_version() const { return version_; }
  const Options& options() const { return options_; }

 private:
  struct Peer {
    PeerSpec spec;  // capabilities sorted and unique
    uint64_t caps = 0;  // bit i set: has capability_names_[i]
    uint64_t tie = 0;
    bool has_latency = false;
    double latency_ewma_ns = 0;
    double failure_score = 0;  // as of failure_at
    Instant failure_at{};
    uint32_t consecutive_failures = 0;
    Instant down_until{};  // meaningful when consecutive >= down_after
  };

  std::expected<void, PeerError> replace(std::span<const PeerSpec> peers, Instant now);
  void report(const Peer& p, PeerStatus before, Instant now) const;
  PeerStatus status_of(const Peer& p, Instant now) const;
  double score_at(const Peer& p, Instant now) const;
  PeerView view(const Peer& p, Instant now) const;

  Options options_;
  std::vector<Peer> peers_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::string> capability_names_;  // bit index -> name, sorted
  uint64_t version_ = 0;
  bool has_version_ = false;
};

// Spreading calls over the best peers: given the calls in flight on the peers select()
// returned (best first), the index of the least busy among the first `spread` (at least the
// first); ties go to the better ranked. Returns 0 for an empty span. Pure: PeerPool uses it.
size_t pick_least_loaded(std::span<const size_t> in_flight, size_t spread);

}  // namespace keel::sdk
