#include "observe/health.h"

#include <fmt/format.h>

namespace keel::observe {

CheckResult check_storage(const StorageFacts& f) {
  if (!f.persistent) return {"storage", true, "memory engine"};
  if (!f.probe_error.empty()) return {"storage", false, "the data directory does not take a synced write: " + f.probe_error};
  return {"storage", true, "data directory writable"};
}

CheckResult check_metadata(const MetadataFacts& f) {
  if (!f.answered) return {"metadata", false, "the metadata service did not answer: " + f.error};
  uint32_t needed = f.members / 2 + 1;
  if (!f.quorum)
    return {"metadata", false,
            fmt::format("no quorum: {} of {} members reachable, {} needed", f.reachable, f.members, needed)};
  return {"metadata", true, fmt::format("quorum: {} of {} members reachable", f.reachable, f.members)};
}

CheckResult check_partitions(const PartitionFacts& f) {
  if (f.shards_with_map < f.shards)
    return {"partitions", false,
            fmt::format("{} of {} shards do not route by a partition map yet", f.shards - f.shards_with_map, f.shards)};
  std::string why;
  if (f.fenced) why = fmt::format("{} of {} partitions this node is primary of are fenced (failing over)", f.fenced, f.primaries);
  if (f.lease_lapsed)
    why += fmt::format("{}{} of {} partitions this node is primary of have no read lease (replicas not answering)",
                       why.empty() ? "" : "; ", f.lease_lapsed, f.primaries);
  if (!why.empty()) return {"partitions", false, why};
  return {"partitions", true,
          fmt::format("map version {}: primary of {}, replica of {}", f.map_version, f.primaries, f.replicas)};
}

CheckResult check_tasks(const std::vector<TaskFacts>& tasks, int64_t stall_after_ms) {
  std::string why;
  for (auto& t : tasks) {
    if (t.silent_ms >= 0 && t.silent_ms <= stall_after_ms) continue;
    why += why.empty() ? "" : "; ";
    if (t.silent_ms < 0) why += fmt::format("{} never ran", t.name);
    else why += fmt::format("{} silent for {} ms (limit {} ms)", t.name, t.silent_ms, stall_after_ms);
  }
  if (!why.empty()) return {"tasks", false, why};
  return {"tasks", true, fmt::format("{} tasks running", tasks.size())};
}

CheckResult check_certificates(const std::vector<CertificateFacts>& certs, int64_t now_unix_s, int64_t min_days) {
  std::string why, ok;
  for (auto& c : certs) {
    int64_t left_s = c.not_after_s - now_unix_s;
    std::string left = left_s <= 0 ? "expired" : fmt::format("{:.1f} days left", static_cast<double>(left_s) / 86400);
    if (left_s < min_days * 86400) {
      why += fmt::format("{}the {} certificate: {} (at least {} required; renew it, see docs/operations.md)",
                         why.empty() ? "" : "; ", c.listener, left, min_days);
    } else {
      ok += fmt::format("{}{}: {}", ok.empty() ? "" : ", ", c.listener, left);
    }
  }
  if (!why.empty()) return {"certificates", false, why};
  return {"certificates", true, ok};
}

bool all_ok(const std::vector<CheckResult>& checks) {
  for (auto& c : checks)
    if (!c.ok) return false;
  return true;
}

std::string render_verbose(const std::vector<CheckResult>& checks, const std::string& what) {
  std::string out;
  for (auto& c : checks)
    out += c.ok ? fmt::format("[+]{} ok: {}\n", c.name, c.detail) : fmt::format("[-]{} failed: {}\n", c.name, c.detail);
  out += fmt::format("{} check {}\n", what, all_ok(checks) ? "passed" : "failed");
  return out;
}

}  // namespace keel::observe
