// Hedged requests, decision core: when to send another copy of a request that has not
// answered yet. The delay is fixed, or the p-th percentile of recently observed latencies
// (bounded ring), clamped to [min_delay, max_delay]. Hedges withdraw from a RetryBudget when
// one is given, so hedging cannot multiply load either. Thread-safe (one short mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
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
  const HedgeOptions& options() const noexcept { return o_; }

 private:
  HedgeOptions o_;
  mutable std::mutex mu_;
  std::vector<int64_t> samples_;
  size_t next_ = 0;
  size_t fill_ = 0;
  mutable bool cache_valid_ = false;
  mutable Duration cached_{0};
};

// One hedged request, as a pure state machine over a HedgePolicy: the shells (the pipeline's
// hedge stage on threads, keel::client::hedged on Asio) ask next(now) what to do, do it, and
// report each copy's end with finished(). No clock, thread or timer in here: time arrives as
// arguments, so every decision is testable with a ManualClock and no sleeps.
//
// Rules: copy 0 (the original) is launched at once; copy k (1..max_hedges) when the policy
// says it is due and the retry budget (if any) allows it; nothing is launched after a copy
// succeeded, after stop(), or at/after the deadline. The run is over (kFinish) once a copy
// succeeded, or every launched copy failed and no further copy is due to start — hedging is
// not retrying: a failed original does not trigger a hedge by itself. The first success
// records its own latency (its end minus its launch) into the policy. Not thread-safe: one
// shell drives one run.
class HedgeRun {
 public:
  enum class StepKind : uint8_t { kLaunch, kWait, kFinish };
  struct Step {
    StepKind kind = StepKind::kWait;
    uint32_t copy = 0;                // kLaunch: the copy to start (0 = the original)
    Instant until = sdk::kInstantMax;  // kWait: ask again at this time, or when a copy ends
  };

  HedgeRun(HedgePolicy& policy, Instant sent, Instant deadline = sdk::kInstantMax)
      : policy_(policy), sent_(sent), deadline_(deadline) {}

  Step next(Instant now);
  // Copy `copy` (launched) ended at `now`; `ok`: it succeeded.
  void finished(uint32_t copy, bool ok, Instant now);
  // No more launches (the caller was cancelled); the run finishes when the launched copies end.
  void stop() noexcept { stopped_ = true; }

  std::optional<uint32_t> winner() const noexcept { return winner_; }
  uint32_t launched() const noexcept { return static_cast<uint32_t>(started_.size()); }
  uint32_t ended() const noexcept { return ended_; }
  Instant launched_at(uint32_t copy) const { return started_.at(copy); }

 private:
  HedgePolicy& policy_;
  Instant sent_;
  Instant deadline_;
  std::vector<Instant> started_;
  std::vector<bool> done_;
  uint32_t ended_ = 0;
  std::optional<uint32_t> winner_;
  bool stopped_ = false;
};

}  // namespace keel::resilience
