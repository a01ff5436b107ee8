#include "keel/resilience/hedge.h"

#include <algorithm>
#include <cmath>

namespace keel::resilience {

Result<std::unique_ptr<HedgePolicy>> HedgePolicy::create(HedgeOptions o) {
  auto bad = [&](std::string what) { return fail(ErrorCode::kInvalidArgument, "hedge '" + o.name + "': " + what); };
  if (o.max_hedges < 1 || o.max_hedges > 16) return bad("max_hedges must be in [1, 16]");
  if (o.delay.count() <= 0) return bad("delay must be > 0");
  if (!(o.percentile == 0 || (o.percentile > 0 && o.percentile < 100)))
    return bad("percentile must be 0 (fixed delay) or in (0, 100)");
  if (o.window < 8 || o.window > 65536) return bad("window must be in [8, 65536]");
  if (o.min_delay.count() <= 0 || o.max_delay < o.min_delay) return bad("need 0 < min_delay <= max_delay");
  return std::make_unique<HedgePolicy>(std::move(o));
}

HedgePolicy::HedgePolicy(HedgeOptions o) : o_(std::move(o)) { samples_.assign(o_.window, 0); }

void HedgePolicy::record_latency(Duration d) {
  if (o_.percentile == 0) return;
  std::lock_guard lk(mu_);
  samples_[next_] = d.count();
  next_ = (next_ + 1) % samples_.size();
  fill_ = std::min(fill_ + 1, samples_.size());
  cache_valid_ = false;
}

Duration HedgePolicy::current_delay() const {
  std::lock_guard lk(mu_);
  if (o_.percentile == 0 || fill_ < samples_.size() / 2) return std::clamp(o_.delay, o_.min_delay, o_.max_delay);
  if (!cache_valid_) {
    std::vector<int64_t> v(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(fill_));
    size_t k = static_cast<size_t>(std::ceil(o_.percentile / 100.0 * static_cast<double>(v.size()))) - 1;
    k = std::min(k, v.size() - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    cached_ = std::clamp(Duration(v[k]), o_.min_delay, o_.max_delay);
    cache_valid_ = true;
  }
  return cached_;
}

HedgeDecision HedgePolicy::decide(Instant sent, Instant now, uint32_t fired, bool done) {
  if (done || fired >= o_.max_hedges) return HedgeDecision{false, sdk::kInstantMax};
  Duration delay = current_delay();
  Instant due = sent + delay * (fired + 1);
  if (now < due) return HedgeDecision{false, due};
  if (o_.budget && !o_.budget->try_withdraw()) return HedgeDecision{false, sdk::kInstantMax};
  sdk::emit_signal(o_.signals, [&] { return sdk::HedgeFired{o_.name, fired + 1, now - sent, now}; });
  Instant next = fired + 1 >= o_.max_hedges ? sdk::kInstantMax : sent + delay * (fired + 2);
  return HedgeDecision{true, next};
}

HedgeRun::Step HedgeRun::next(Instant now) {
  if (winner_) return Step{StepKind::kFinish};
  if (started_.empty()) {
    if (stopped_) return Step{StepKind::kFinish};
    started_.push_back(now);
    done_.push_back(false);
    return Step{StepKind::kLaunch, 0};
  }
  const bool all_ended = ended_ == started_.size();
  if (stopped_ || now >= deadline_) {
    return all_ended ? Step{StepKind::kFinish} : Step{StepKind::kWait, 0, sdk::kInstantMax};
  }
  // Only copies still running are worth hedging: once every copy failed, the run is over.
  if (all_ended) return Step{StepKind::kFinish};
  HedgeDecision d = policy_.decide(sent_, now, launched() - 1, false);
  if (d.fire) {
    uint32_t copy = launched();
    started_.push_back(now);
    done_.push_back(false);
    return Step{StepKind::kLaunch, copy};
  }
  Instant until = d.next_check;
  if (deadline_ < until) until = deadline_;  // wake at the deadline to stop hedging
  return Step{StepKind::kWait, 0, until};
}

void HedgeRun::finished(uint32_t copy, bool ok, Instant now) {
  if (copy >= started_.size() || done_[copy]) return;  // unknown or reported twice: ignored
  done_[copy] = true;
  ++ended_;
  if (ok && !winner_) {
    winner_ = copy;
    policy_.record_latency(now - started_[copy]);
  }
}

}  // namespace keel::resilience
