// Passive outlier ejection and the active health-check state machine of the gateway's
// upstream instances. Pure: time comes in as `now_ms`; nothing here reads a clock, a socket or
// randomness, so every rule is unit-testable with a manual clock.
//
// Outlier ejection (Envoy's "consecutive 5xx"): each answer an instance gives is a success or
// a failure (a 5xx status, a connect failure, a broken connection, a timeout). After
// `consecutive_failures` failures in a row the instance is ejected for
// base_ejection_ms x (times it was ejected), at most max_ejection_ms, unless that would leave
// more than `max_ejected_percent` of its service's instances ejected, or none eligible: at
// least one instance of a service always stays. An ejected instance comes back by itself when
// its time is up; a success resets its count. Its ejection count is forgotten once it has
// stayed in for max_ejection_ms.
//
// Health (active checks): consecutive failed probes -> unhealthy after `unhealthy_after`,
// consecutive good probes -> healthy after `healthy_after`. An instance starts healthy.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace keel::gateway {

struct OutlierOptions {
  uint32_t consecutive_failures = 5;  // 0 = ejection off
  int64_t base_ejection_ms = 30000;
  int64_t max_ejection_ms = 300000;
  uint32_t max_ejected_percent = 50;  // of a service's instances; at least one always stays
};

class OutlierDetector {
 public:
  explicit OutlierDetector(OutlierOptions o = {}) : opt_(o) {}
  const OutlierOptions& options() const { return opt_; }

  // One answer of instance `id` of `service`, which has `service_size` live instances now.
  // Returns true when this answer ejected the instance.
  bool record(const std::string& service, const std::string& id, bool failure, size_t service_size, int64_t now_ms);

  bool ejected(std::string_view service, std::string_view id, int64_t now_ms) const;
  // When the current ejection ends (0 when not ejected at now_ms).
  int64_t ejected_until_ms(std::string_view service, std::string_view id, int64_t now_ms) const;
  size_t ejected_count(std::string_view service, int64_t now_ms) const;
  uint32_t times_ejected(std::string_view service, std::string_view id) const;
  // Ejections of the service's instances since the start (for the _total metric).
  uint64_t ejections_total(std::string_view service) const;
  // Every service that ever had an ejection (metric labels: bounded by the services known).
  std::vector<std::string> services() const;

  // Keeps only the instances `live` names ((service, id) pairs, sorted or not): the state of a
  // deregistered instance goes with it, and so does a service with neither instances nor
  // ejections, so memory is bounded by the table plus the services that had an ejection.
  void retain(const std::vector<std::pair<std::string, std::string>>& live);

 private:
  struct State {
    uint32_t failures = 0;        // consecutive
    uint32_t times_ejected = 0;
    int64_t ejected_until_ms = 0;  // 0: never ejected
  };
  struct Service {
    std::map<std::string, State, std::less<>> instances;
    uint64_t ejections_total = 0;
  };
  const State* find(std::string_view service, std::string_view id) const;

  OutlierOptions opt_;
  std::map<std::string, Service, std::less<>> services_;
};

struct HealthCheckOptions {
  std::string path;          // "/healthz"; empty: no active checks
  int64_t interval_ms = 2000;
  int64_t timeout_ms = 1000;
  uint32_t unhealthy_after = 2;
  uint32_t healthy_after = 1;
  friend bool operator==(const HealthCheckOptions&, const HealthCheckOptions&) = default;
};

class HealthState {
 public:
  bool healthy() const { return healthy_; }
  // One probe's outcome (a 2xx answer within the timeout is good). Returns true when the
  // state changed.
  bool record(bool good, const HealthCheckOptions& opt);

 private:
  bool healthy_ = true;
  uint32_t fails_ = 0, oks_ = 0;
};

}  // namespace keel::gateway
