#include "observe/health_board.h"

#include <fmt/format.h>

namespace keel::observe {

HealthBoard::HealthBoard(unsigned shards, bool persistent, int64_t stall_after_ms)
    : persistent_(persistent), stall_after_ms_(stall_after_ms), shards_(shards), shard_seen_ms_(shards, -1) {
  meta_.error = "not asked yet";
}

void HealthBoard::shard_report(unsigned shard, int64_t now_ms, const ShardReport& r) {
  std::lock_guard lk(mu_);
  shards_.at(shard) = r;
  shard_seen_ms_.at(shard) = now_ms;
}

void HealthBoard::poller_report(int64_t now_ms, std::string storage_error, const MetadataFacts& meta,
                                uint64_t map_version) {
  std::lock_guard lk(mu_);
  poller_seen_ms_ = now_ms;
  storage_error_ = std::move(storage_error);
  meta_ = meta;
  map_version_ = map_version;
}

void HealthBoard::set_certificates(std::vector<CertificateFacts> certs, int64_t min_days) {
  std::lock_guard lk(mu_);
  certs_ = std::move(certs);
  cert_min_days_ = min_days;
}

std::vector<CheckResult> HealthBoard::readiness(int64_t now_ms, int64_t now_unix_s) const {
  std::lock_guard lk(mu_);
  std::vector<CheckResult> out;
  bool poller_fresh = poller_seen_ms_ >= 0 && now_ms - poller_seen_ms_ <= stall_after_ms_;
  StorageFacts sf{persistent_, storage_error_};
  if (persistent_ && poller_seen_ms_ < 0) sf.probe_error = "not probed yet";
  out.push_back(check_storage(sf));
  MetadataFacts mf = meta_;
  if (!poller_fresh && poller_seen_ms_ >= 0) {
    mf.answered = false;
    mf.error = fmt::format("no status for {} ms", now_ms - poller_seen_ms_);
  }
  out.push_back(check_metadata(mf));
  PartitionFacts pf;
  pf.shards = static_cast<uint32_t>(shards_.size());
  pf.map_version = map_version_;
  for (auto& s : shards_) {
    pf.shards_with_map += s.has_map ? 1 : 0;
    pf.primaries += s.primaries;
    pf.fenced += s.fenced;
    pf.lease_lapsed += s.lease_lapsed;
    pf.replicas += s.replicas;
  }
  out.push_back(check_partitions(pf));
  std::vector<TaskFacts> tasks;
  for (size_t i = 0; i < shards_.size(); ++i)
    tasks.push_back({fmt::format("shard {} maintenance", i), shard_seen_ms_[i] < 0 ? -1 : now_ms - shard_seen_ms_[i]});
  tasks.push_back({"health poller", poller_seen_ms_ < 0 ? -1 : now_ms - poller_seen_ms_});
  out.push_back(check_tasks(tasks, stall_after_ms_));
  if (!certs_.empty()) out.push_back(check_certificates(certs_, now_unix_s, cert_min_days_));
  return out;
}

}  // namespace keel::observe
