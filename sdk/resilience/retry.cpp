#include "keel/resilience/retry.h"

#include <algorithm>
#include <cmath>

namespace keel::resilience {

std::string_view backoff_name(Backoff b) noexcept {
  switch (b) {
    case Backoff::kFixed: return "fixed";
    case Backoff::kLinear: return "linear";
    case Backoff::kExponential: return "exponential";
    case Backoff::kDecorrelatedJitter: return "decorrelated_jitter";
  }
  return "unknown";
}

// ---- RetryBudget ----

Status RetryBudget::validate(const Options& o) {
  if (!(o.ratio >= 0 && o.ratio <= 1000))
    return fail(ErrorCode::kInvalidArgument, "retry budget ratio must be in [0, 1000], got " + std::to_string(o.ratio));
  if (!(o.max_tokens >= 1 && o.max_tokens <= 1e9))
    return fail(ErrorCode::kInvalidArgument, "retry budget max_tokens must be in [1, 1e9], got " + std::to_string(o.max_tokens));
  if (!(o.initial_tokens >= 0 && o.initial_tokens <= o.max_tokens))
    return fail(ErrorCode::kInvalidArgument, "retry budget initial_tokens must be in [0, max_tokens], got " +
                                                 std::to_string(o.initial_tokens));
  return {};
}

RetryBudget::RetryBudget(Options o)
    : o_(o),
      // Rounded down: the budget may grant slightly fewer retries than ratio allows, never more.
      deposit_(static_cast<int64_t>(std::floor(o.ratio * kScale))),
      cap_(static_cast<int64_t>(std::floor(o.max_tokens * kScale))),
      micro_tokens_(static_cast<int64_t>(std::floor(o.initial_tokens * kScale))) {}

void RetryBudget::on_request() noexcept {
  if (deposit_ == 0) return;
  int64_t cur = micro_tokens_.load(std::memory_order_relaxed);
  while (true) {
    if (cur >= cap_) return;
    int64_t next = std::min(cap_, cur + deposit_);
    if (micro_tokens_.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
  }
}

bool RetryBudget::try_withdraw() noexcept {
  int64_t cur = micro_tokens_.load(std::memory_order_relaxed);
  while (true) {
    if (cur < kScale) return false;
    if (micro_tokens_.compare_exchange_weak(cur, cur - kScale, std::memory_order_acq_rel, std::memory_order_relaxed))
      return true;
  }
}

double RetryBudget::tokens() const noexcept {
  return static_cast<double>(micro_tokens_.load(std::memory_order_relaxed)) / kScale;
}

// ---- RetryPolicy ----

Result<RetryPolicy> RetryPolicy::create(RetryOptions o) {
  auto bad = [&](std::string what) {
    return fail(ErrorCode::kInvalidArgument, "retry policy '" + o.name + "': " + what);
  };
  if (o.max_attempts < 1 || o.max_attempts > 1000)
    return bad("max_attempts must be in [1, 1000], got " + std::to_string(o.max_attempts));
  if (o.base.count() < 0) return bad("base delay must be >= 0");
  if (o.max_delay < o.base) return bad("max_delay must be >= base delay");
  if (!(o.multiplier >= 1 && o.multiplier <= 1000))
    return bad("multiplier must be in [1, 1000], got " + std::to_string(o.multiplier));
  if (!(o.jitter >= 0 && o.jitter <= 1)) return bad("jitter must be in [0, 1], got " + std::to_string(o.jitter));
  if (o.max_elapsed.count() < 0) return bad("max_elapsed must be >= 0 (0 = no limit)");
  if (o.backoff == Backoff::kDecorrelatedJitter && o.base.count() == 0)
    return bad("decorrelated jitter needs a base delay > 0");
  if (o.budget) {
    if (auto s = RetryBudget::validate(o.budget->options()); !s) return std::unexpected(s.error());
  }
  if (!o.retry_on) o.retry_on = is_transient;
  return RetryPolicy(std::move(o));
}

RetryState RetryPolicy::begin(Instant now) const noexcept {
  if (o_.budget) o_.budget->on_request();
  return RetryState{1, now, Duration(0)};
}

namespace {
// d * f in nanoseconds, saturating at cap.
int64_t scaled(int64_t d, double f, int64_t cap) {
  double v = static_cast<double>(d) * f;
  if (!(v < static_cast<double>(cap))) return cap;
  return static_cast<int64_t>(v);
}
}  // namespace

Duration RetryPolicy::delay_after(uint32_t failed_attempt, Duration previous_delay, sdk::Random& rng) const {
  const int64_t base = o_.base.count();
  const int64_t cap = o_.max_delay.count();
  int64_t d = 0;
  switch (o_.backoff) {
    case Backoff::kFixed: d = base; break;
    case Backoff::kLinear: d = scaled(base, static_cast<double>(failed_attempt), cap); break;
    case Backoff::kExponential:
      d = scaled(base, std::pow(o_.multiplier, static_cast<double>(failed_attempt - 1)), cap);
      break;
    case Backoff::kDecorrelatedJitter: {
      // sleep = min(cap, uniform(base, prev * 3)); prev starts at base.
      int64_t prev = std::max(previous_delay.count(), base);
      int64_t hi = prev > cap / 3 ? cap : prev * 3;
      hi = std::max(hi, base);
      return Duration(std::min(cap, rng.range(base, hi)));
    }
  }
  d = std::min(d, cap);
  if (o_.jitter > 0 && d > 0) {
    int64_t spread = static_cast<int64_t>(static_cast<double>(d) * o_.jitter);
    int64_t lo = d - spread;
    int64_t hi = d > INT64_MAX - spread ? INT64_MAX : d + spread;
    d = std::min(cap, rng.range(lo, hi));
  }
  return Duration(d);
}

RetryDecision RetryPolicy::on_failure(RetryState& s, const Error& e, Instant now, sdk::Random& rng,
                                      Instant deadline) const {
  auto give_up = [&](sdk::GiveUpReason why) {
    sdk::emit_signal(o_.signals, [&] { return sdk::RetryGaveUp{o_.name, s.attempt, why, now}; });
    return RetryDecision{false, Duration(0), why};
  };
  if (!o_.retry_on(e)) return give_up(sdk::GiveUpReason::kNotRetryable);
  if (s.attempt >= o_.max_attempts) return give_up(sdk::GiveUpReason::kMaxAttempts);
  Duration delay = delay_after(s.attempt, s.previous_delay, rng);
  Instant next = now + delay;
  if (o_.max_elapsed.count() > 0 && next - s.started > o_.max_elapsed) return give_up(sdk::GiveUpReason::kMaxElapsed);
  if (next >= deadline) return give_up(sdk::GiveUpReason::kMaxElapsed);
  // The budget is asked last, so a token is only spent on a retry that will happen.
  if (o_.budget && !o_.budget->try_withdraw()) return give_up(sdk::GiveUpReason::kBudget);
  sdk::emit_signal(o_.signals, [&] { return sdk::RetryScheduled{o_.name, s.attempt, delay, now}; });
  s.attempt++;
  s.previous_delay = delay;
  return RetryDecision{true, delay, sdk::GiveUpReason::kNotRetryable};
}

}  // namespace keel::resilience
