// Where the node's background tasks post the facts /health/ready reads (observe/health.h turns
// them into verdicts). Writers: each shard's maintenance timer (its partitions, every 100 ms)
// and the node's health poller thread (storage probe, metadata status). Readers: the HTTP
// front end. A request never waits on a shard or on the metadata service: a stuck one shows as
// a stale report, and the tasks check names it.
//
// Thread-safe (one mutex; nothing on the data path touches it).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "observe/health.h"

namespace keel::observe {

struct ShardReport {
  bool has_map = false;
  uint32_t primaries = 0, fenced = 0, lease_lapsed = 0, replicas = 0;
};

class HealthBoard {
 public:
  HealthBoard(unsigned shards, bool persistent, int64_t stall_after_ms);

  // Shard `shard`'s maintenance timer, at monotonic time now_ms.
  void shard_report(unsigned shard, int64_t now_ms, const ShardReport& r);
  // The health poller: one round done at now_ms (storage probe result, metadata facts, map version).
  void poller_report(int64_t now_ms, std::string storage_error, const MetadataFacts& meta, uint64_t map_version);

  // The readiness checks as of now_ms (monotonic). A node without a metadata service (never
  // the case in keel, where every node runs one) would leave metadata unanswered.
  std::vector<CheckResult> readiness(int64_t now_ms, int64_t now_unix_s = 0) const;
  // The certificates the node serves (TLS listeners): adds the `certificates` check, which
  // fails when one expires within min_days.
  void set_certificates(std::vector<CertificateFacts> certs, int64_t min_days);
  int64_t stall_after_ms() const { return stall_after_ms_; }

 private:
  mutable std::mutex mu_;
  bool persistent_;
  int64_t stall_after_ms_;
  std::vector<ShardReport> shards_;
  std::vector<int64_t> shard_seen_ms_;  // -1: never
  int64_t poller_seen_ms_ = -1;
  std::string storage_error_;
  MetadataFacts meta_;
  uint64_t map_version_ = 0;
  std::vector<CertificateFacts> certs_;
  int64_t cert_min_days_ = 0;
};

}  // namespace keel::observe
