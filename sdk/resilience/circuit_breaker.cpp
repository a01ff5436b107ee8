#include "keel/resilience/circuit_breaker.h"

#include <cstdio>

namespace keel::resilience {

namespace {
constexpr uint8_t kFail = 1, kSlow = 2;
constexpr int64_t kSecond = 1'000'000'000;

int64_t second_of(Instant t) {
  int64_t ns = t.time_since_epoch().count();
  return ns >= 0 ? ns / kSecond : (ns - kSecond + 1) / kSecond;
}

size_t bucket_index(int64_t sec, size_t n) {
  int64_t m = sec % static_cast<int64_t>(n);
  return static_cast<size_t>(m < 0 ? m + static_cast<int64_t>(n) : m);
}

double rate(uint32_t part, uint32_t calls) { return calls == 0 ? 0.0 : 100.0 * part / calls; }
}  // namespace

Result<std::unique_ptr<CircuitBreaker>> CircuitBreaker::create(BreakerOptions o) {
  auto bad = [&](std::string what) {
    return fail(ErrorCode::kInvalidArgument, "circuit breaker '" + o.name + "': " + what);
  };
  if (o.window_size < 1 || o.window_size > 100000)
    return bad("window_size must be in [1, 100000], got " + std::to_string(o.window_size));
  if (o.minimum_calls < 1) return bad("minimum_calls must be >= 1");
  if (!(o.failure_rate_threshold > 0 && o.failure_rate_threshold <= 100))
    return bad("failure_rate_threshold must be a percentage in (0, 100], got " + std::to_string(o.failure_rate_threshold));
  if (!(o.slow_call_rate_threshold > 0 && o.slow_call_rate_threshold <= 100))
    return bad("slow_call_rate_threshold must be a percentage in (0, 100], got " +
               std::to_string(o.slow_call_rate_threshold));
  if (o.slow_call_duration.count() <= 0) return bad("slow_call_duration must be > 0");
  if (o.wait_in_open.count() < 0) return bad("wait_in_open must be >= 0");
  if (o.permitted_calls_in_half_open < 1 || o.permitted_calls_in_half_open > 100000)
    return bad("permitted_calls_in_half_open must be in [1, 100000]");
  if (o.max_wait_in_half_open.count() < 0) return bad("max_wait_in_half_open must be >= 0 (0 = no limit)");
  return std::make_unique<CircuitBreaker>(std::move(o));
}

CircuitBreaker::CircuitBreaker(BreakerOptions o) : o_(std::move(o)) {
  minimum_calls_ = o_.minimum_calls;
  if (o_.window_type == WindowType::kCountBased) {
    if (minimum_calls_ > o_.window_size) minimum_calls_ = o_.window_size;  // as resilience4j
    ring_.assign(o_.window_size, 0);
  } else {
    buckets_.assign(o_.window_size, Bucket{});
  }
}

void CircuitBreaker::clear_window() {
  std::fill(ring_.begin(), ring_.end(), 0);
  ring_next_ = ring_fill_ = 0;
  std::fill(buckets_.begin(), buckets_.end(), Bucket{});
  latest_second_ = INT64_MIN;
  totals_ = Totals{};
}

void CircuitBreaker::window_advance(int64_t sec) {
  // Drop buckets that left the window [sec - size + 1, sec]. Bounded by window_size steps.
  if (latest_second_ == INT64_MIN || sec - latest_second_ >= static_cast<int64_t>(buckets_.size())) {
    for (auto& b : buckets_) b = Bucket{};
    totals_ = Totals{};
  } else if (sec > latest_second_) {
    for (int64_t s = latest_second_ + 1; s <= sec; ++s) {
      Bucket& b = buckets_[bucket_index(s, buckets_.size())];
      totals_.calls -= b.t.calls;
      totals_.failures -= b.t.failures;
      totals_.slow -= b.t.slow;
      b = Bucket{};
    }
  }
  if (latest_second_ == INT64_MIN || sec > latest_second_) latest_second_ = sec;
}

void CircuitBreaker::window_add(bool failure, bool slow, Instant now) {
  if (o_.window_type == WindowType::kCountBased) {
    uint8_t& slot = ring_[ring_next_];
    if (ring_fill_ == ring_.size()) {
      totals_.calls--;
      totals_.failures -= (slot & kFail) ? 1 : 0;
      totals_.slow -= (slot & kSlow) ? 1 : 0;
    } else {
      ring_fill_++;
    }
    slot = static_cast<uint8_t>((failure ? kFail : 0) | (slow ? kSlow : 0));
    ring_next_ = (ring_next_ + 1) % static_cast<uint32_t>(ring_.size());
  } else {
    int64_t sec = second_of(now);
    window_advance(sec);
    // A call recorded with a time older than the latest second (clock skew between threads)
    // counts in the latest bucket, so that nothing recorded is lost.
    if (sec < latest_second_) sec = latest_second_;
    Bucket& b = buckets_[bucket_index(sec, buckets_.size())];
    b.second = sec;
    b.t.calls++;
    b.t.failures += failure;
    b.t.slow += slow;
  }
  totals_.calls++;
  totals_.failures += failure;
  totals_.slow += slow;
}

CircuitBreaker::Totals CircuitBreaker::window_totals(Instant now) {
  if (o_.window_type == WindowType::kTimeBased) window_advance(second_of(now));
  return totals_;
}

void CircuitBreaker::transition(BreakerState to, Instant now, const char* reason, double fr, double sr) {
  BreakerState from = state_;
  state_ = to;
  switch (to) {
    case BreakerState::kOpen: opened_at_ = now; break;
    case BreakerState::kHalfOpen:
      half_open_at_ = now;
      ho_permits_left_ = o_.permitted_calls_in_half_open;
      ho_in_flight_ = 0;
      ho_ = Totals{};
      break;
    case BreakerState::kClosed: clear_window(); break;
    default: break;
  }
  if (from == BreakerState::kHalfOpen && to != BreakerState::kHalfOpen) {
    ho_permits_left_ = 0;
  }
  sdk::emit_signal(o_.signals, [&] { return sdk::BreakerTransition{o_.name, from, to, reason, fr, sr, now}; });
}

void CircuitBreaker::check_half_open_timeout(Instant now) {
  if (state_ == BreakerState::kHalfOpen && o_.max_wait_in_half_open.count() > 0 &&
      now - half_open_at_ >= o_.max_wait_in_half_open) {
    transition(BreakerState::kOpen, now, "max wait in half-open elapsed", -1, -1);
  }
}

Status CircuitBreaker::try_acquire(Instant now) {
  std::lock_guard lk(mu_);
  check_half_open_timeout(now);
  switch (state_) {
    case BreakerState::kClosed:
    case BreakerState::kDisabled: return {};
    case BreakerState::kOpen:
      if (now - opened_at_ >= o_.wait_in_open) {
        transition(BreakerState::kHalfOpen, now, "wait in open elapsed", -1, -1);
        ho_permits_left_--;
        ho_in_flight_++;
        return {};
      }
      break;
    case BreakerState::kHalfOpen:
      if (ho_permits_left_ > 0) {
        ho_permits_left_--;
        ho_in_flight_++;
        return {};
      }
      break;
    case BreakerState::kForcedOpen: break;
  }
  Duration retry_after{0};
  if (state_ == BreakerState::kOpen) retry_after = o_.wait_in_open - (now - opened_at_);
  BreakerState st = state_;
  sdk::emit_signal(o_.signals, [&] { return sdk::CallNotPermitted{o_.name, st, retry_after, now}; });
  return fail(ErrorCode::kCircuitOpen, "circuit breaker '" + o_.name + "' is " +
                                           std::string(sdk::breaker_state_name(st)) + "; retry after " +
                                           std::to_string(retry_after.count()) + " ns");
}

bool CircuitBreaker::open_if_over_threshold(double fr, double sr, const char* prefix, Instant now) {
  char reason[96];
  if (fr >= o_.failure_rate_threshold) {
    std::snprintf(reason, sizeof reason, "%sfailure rate %.1f%% >= %.1f%%", prefix, fr, o_.failure_rate_threshold);
  } else if (sr >= o_.slow_call_rate_threshold) {
    std::snprintf(reason, sizeof reason, "%sslow call rate %.1f%% >= %.1f%%", prefix, sr, o_.slow_call_rate_threshold);
  } else {
    return false;
  }
  transition(BreakerState::kOpen, now, reason, fr, sr);
  return true;
}

void CircuitBreaker::record(bool failure, bool slow, Instant now) {
  std::lock_guard lk(mu_);
  char reason[96];
  switch (state_) {
    case BreakerState::kClosed: {
      window_add(failure, slow, now);
      Totals t = window_totals(now);
      if (t.calls < minimum_calls_) return;
      open_if_over_threshold(rate(t.failures, t.calls), rate(t.slow, t.calls), "", now);
      return;
    }
    case BreakerState::kHalfOpen: {
      if (ho_in_flight_ == 0) return;  // a call permitted before the last transition: ignore
      ho_in_flight_--;
      ho_.calls++;
      ho_.failures += failure;
      ho_.slow += slow;
      if (ho_.calls < o_.permitted_calls_in_half_open) return;
      double fr = rate(ho_.failures, ho_.calls), sr = rate(ho_.slow, ho_.calls);
      if (!open_if_over_threshold(fr, sr, "half-open ", now)) {
        std::snprintf(reason, sizeof reason, "half-open failure rate %.1f%% < %.1f%%", fr, o_.failure_rate_threshold);
        transition(BreakerState::kClosed, now, reason, fr, sr);
      }
      return;
    }
    default: return;  // OPEN, FORCED_OPEN, DISABLED record nothing
  }
}

void CircuitBreaker::on_success(Duration elapsed, Instant now) {
  record(false, elapsed >= o_.slow_call_duration, now);
}
void CircuitBreaker::on_failure(Duration elapsed, Instant now) {
  record(true, elapsed >= o_.slow_call_duration, now);
}

void CircuitBreaker::on_ignored(Instant now) {
  std::lock_guard lk(mu_);
  (void)now;
  if (state_ == BreakerState::kHalfOpen && ho_in_flight_ > 0) {
    ho_in_flight_--;
    ho_permits_left_++;
  }
}

void CircuitBreaker::force_open(Instant now) {
  std::lock_guard lk(mu_);
  transition(BreakerState::kForcedOpen, now, "forced open", -1, -1);
}
void CircuitBreaker::disable(Instant now) {
  std::lock_guard lk(mu_);
  transition(BreakerState::kDisabled, now, "disabled", -1, -1);
}
void CircuitBreaker::reset(Instant now) {
  std::lock_guard lk(mu_);
  transition(BreakerState::kClosed, now, "reset", -1, -1);
  clear_window();
}

bool CircuitBreaker::counts_as_failure(const Error& e) const {
  if (o_.is_failure) return o_.is_failure(e);
  return e.code != ErrorCode::kInvalidArgument && e.code != ErrorCode::kFiltered && e.code != ErrorCode::kNotFound;
}

BreakerState CircuitBreaker::state() const {
  std::lock_guard lk(mu_);
  return state_;
}

BreakerMetrics CircuitBreaker::metrics(Instant now) const {
  std::lock_guard lk(mu_);
  auto* self = const_cast<CircuitBreaker*>(this);  // window_totals may drop expired buckets
  Totals t = state_ == BreakerState::kHalfOpen ? ho_ : self->window_totals(now);
  uint32_t min = state_ == BreakerState::kHalfOpen ? o_.permitted_calls_in_half_open : minimum_calls_;
  bool eval = t.calls >= min;
  return BreakerMetrics{state_,
                        t.calls,
                        t.failures,
                        t.slow,
                        eval ? rate(t.failures, t.calls) : -1,
                        eval ? rate(t.slow, t.calls) : -1,
                        state_ == BreakerState::kHalfOpen ? ho_permits_left_ : 0};
}

}  // namespace keel::resilience
