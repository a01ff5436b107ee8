// Readiness and liveness checks, Kubernetes-style (/health/live, /health/ready,
// /health/ready?verbose). The node gathers facts (frontends/http/server.cpp); this pure core
// turns them into one verdict per check with the reason it failed. No clock, file or socket
// here: ages and probe results come in as values.
//
// What "ready" means (docs/observability.md has the operator's view):
//  - storage     the data directory (the persistent engine's files and, for every engine, the
//                cluster metadata log) accepts a synced write (a probe file). A board made
//                with persistent = false skips the probe (passes).
//  - metadata    the metadata service answered and sees a quorum of the configured members.
//  - partitions  every shard routes by a partition map, and every partition this node is the
//                primary of can serve: writes (not fenced for a newer epoch) and, when it has
//                replicas, reads (its read lease is held). A node that is primary of nothing
//                (a gateway, or all copies elsewhere) passes once it routes by a map.
//  - tasks       every shard's event loop and maintenance timer ran recently (within
//                stall_after_ms), and the metadata service answered within its deadline.
//  - certificates (only when a TLS listener is on) every certificate the node serves is valid
//                for at least min_days more days.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::observe {

struct CheckResult {
  std::string name;
  bool ok = false;
  std::string detail;  // why it failed, or a short summary when it passed
};

struct StorageFacts {
  bool persistent = false;
  std::string probe_error;  // empty: the probe write succeeded (or the engine is in memory)
};

struct MetadataFacts {
  bool answered = false;     // the status request came back before its deadline
  std::string error;         // why it did not
  bool quorum = false;
  uint32_t reachable = 0;    // members this node counts as reachable, itself included
  uint32_t members = 0;      // configured members
};

struct PartitionFacts {
  uint32_t shards = 0;
  uint32_t shards_with_map = 0;  // shards that route by a partition map
  uint64_t map_version = 0;
  uint32_t primaries = 0;        // partitions this node is primary of
  uint32_t fenced = 0;           // ... that cannot take writes (fenced for a newer epoch)
  uint32_t lease_lapsed = 0;     // ... with replicas, whose read lease has lapsed
  uint32_t replicas = 0;         // partitions this node holds as a replica (reported only)
};

struct TaskFacts {
  std::string name;      // "shard 0 loop", "shard 1 maintenance", ...
  int64_t silent_ms = 0; // since it last reported; < 0: it never did
};

struct CertificateFacts {
  std::string listener;    // "resp", ...
  int64_t not_after_s = 0; // unix seconds
};

CheckResult check_storage(const StorageFacts& f);
CheckResult check_certificates(const std::vector<CertificateFacts>& certs, int64_t now_unix_s, int64_t min_days);
CheckResult check_metadata(const MetadataFacts& f);
CheckResult check_partitions(const PartitionFacts& f);
CheckResult check_tasks(const std::vector<TaskFacts>& tasks, int64_t stall_after_ms);

bool all_ok(const std::vector<CheckResult>& checks);

// Kubernetes' verbose format: "[+]name ok" / "[-]name failed: reason" per line, then
// "<what> check passed" or "<what> check failed".
std::string render_verbose(const std::vector<CheckResult>& checks, const std::string& what);

}  // namespace keel::observe
