// Hedged requests, decision core: when to send another copy of a request that has not
// answered yet. The delay is fixed, or the p-th percentile of recently observed latencies
// (bounded ring), clamped to [min_delay, max_delay]. Hedges withdraw from a RetryBudget when
// one is given, so hedging cannot multiply load either. Thread-safe (one short mutex).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/resilience/retry.h"
#include "keel/signals.h"

namespace keel::resilience {

using sdk::Duration;
using sdk::Instant;

struct HedgeOptions {
  std::string name = "hedge";
  uint32_t max_hedges = 1;  // extra copies beyond the original; 1..16
  Duration delay = std::chrono::milliseconds(50);  // used until enough samples, or always when percentile == 0
  double percentile = 0;    // (0, 100): adaptive delay; 0 = fixed
  uint32_t window = 128;    // latency samples kept; 8..65536
  Duration min_delay = std::chrono::milliseconds(1);
  Duration max_delay = std::chrono::seconds(1);
  RetryBudget* budget = nullptr;
  const sdk::SignalBus* signals = nullptr;
};

struct HedgeDecision {
  bool fire = false;               // send copy number `fired + 1` now
  Instant next_check = sdk::kInstantMax;  // when to ask again (kInstantMax: never)
};

class HedgePolicy {
 public:
  static Result<std::unique_ptr<HedgePolicy>> create(HedgeOptions o);
  explicit HedgePolicy(HedgeOptions o);  // REQUIRES valid options

  // The original was sent at `sent`; `fired` hedges have been sent so far; `done` is true once
  // any copy answered. Copy k (1-based) is due at sent + k * delay().
  HedgeDecision decide(Instant sent, Instant now, uint32_t fired, bool done);
  // Feeds the adaptive delay with the latency of a successful copy.
  void record_latency(Duration d);
  Duration current_delay() const;

 private:
  HedgeOptions o_;
  mutable std::mutex mu_;
  std::vector<int64_t> samples_;
  size_t next_ = 0;
  size_t fill_ = 0;
  mutable bool cache_valid_ = false;
  mutable Duration cached_{0};
};

}  // namespace keel::resilience
