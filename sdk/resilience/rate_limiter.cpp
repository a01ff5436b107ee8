#include "keel/resilience/rate_limiter.h"

#include <algorithm>
#include <limits>

namespace keel::resilience {

namespace {
constexpr int64_t kNoTat = INT64_MIN / 4;

Denied denied_forever() { return Denied{Duration::max()}; }

// The GCRA step shared by both limiters. `tat` in/out. Returns the decision.
Decision gcra(int64_t& tat, int64_t now, int64_t deadline, uint32_t cost, int64_t interval, int64_t tau) {
  int64_t base = std::max(tat, now);
  int64_t increment = interval * static_cast<int64_t>(cost);
  int64_t new_tat = base + increment;
  // The units may be used once now >= new_tat - (tau + interval).
  int64_t allow_at = new_tat - tau - interval;
  if (allow_at <= now) {
    tat = new_tat;
    return Allowed{Duration(0)};
  }
  if (allow_at <= deadline) {
    tat = new_tat;
    return Allowed{Duration(allow_at - now)};
  }
  return Denied{Duration(allow_at - now)};
}

std::string limit_error(const std::string& who, const RateLimit& l) {
  return "rate limiter '" + who + "': count must be >= 1, period > 0 and burst in [1, 1e9] (got count=" +
         std::to_string(l.count) + ", period=" + std::to_string(l.period.count()) + "ns, burst=" +
         std::to_string(l.burst) + ")";
}
}  // namespace

Status RateLimit::validate(const RateLimit& l) {
  if (l.count < 1 || l.period.count() <= 0 || l.burst < 1 || l.burst > 1'000'000'000)
    return fail(ErrorCode::kInvalidArgument, limit_error("", l));
  if (l.interval().count() > std::numeric_limits<int64_t>::max() / (4LL * l.burst))
    return fail(ErrorCode::kInvalidArgument, "rate limit too slow for its burst: interval * burst overflows");
  return {};
}

Duration RateLimit::interval() const noexcept {
  // Rounded up so that admissions never exceed count per period.
  int64_t p = period.count();
  int64_t c = static_cast<int64_t>(std::min<uint64_t>(count, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())));
  return Duration(std::max<int64_t>(1, p / c + (p % c != 0 ? 1 : 0)));
}

// ---- RateLimiter ----

Result<std::unique_ptr<RateLimiter>> RateLimiter::create(LimiterOptions o) {
  if (auto s = RateLimit::validate(o.limit); !s)
    return fail(ErrorCode::kInvalidArgument, "rate limiter '" + o.name + "': " + s.error().message);
  return std::make_unique<RateLimiter>(std::move(o));
}

RateLimiter::RateLimiter(LimiterOptions o)
    : o_(std::move(o)),
      interval_ns_(o_.limit.interval().count()),
      tau_ns_(interval_ns_ * (static_cast<int64_t>(o_.limit.burst) - 1)) {
  tat_ns_.store(kNoTat, std::memory_order_relaxed);
}

Decision RateLimiter::decide(Instant now_i, Instant deadline_i, uint32_t cost) noexcept {
  const int64_t now = now_i.time_since_epoch().count();
  const int64_t deadline = deadline_i.time_since_epoch().count();
  Decision d = denied_forever();
  if (cost > o_.limit.burst) {
    // Can never pass: more units than the bucket holds.
  } else {
    int64_t cur = tat_ns_.load(std::memory_order_relaxed);
    while (true) {
      int64_t tat = cur;
      d = gcra(tat, now, deadline, cost, interval_ns_, tau_ns_);
      if (!is_allowed(d)) break;
      if (tat_ns_.compare_exchange_weak(cur, tat, std::memory_order_acq_rel, std::memory_order_relaxed)) break;
    }
  }
  if (auto* den = std::get_if<Denied>(&d)) {
    Duration ra = den->retry_after;
    sdk::emit_signal(o_.signals, [&] { return sdk::RequestDenied{o_.name, {}, ra, now_i}; });
  }
  return d;
}

Decision RateLimiter::try_acquire(Instant now, uint32_t cost) noexcept { return decide(now, now, cost); }

Decision RateLimiter::reserve(Instant now, Instant deadline, uint32_t cost) noexcept {
  return decide(now, std::max(now, deadline), cost);
}

// ---- KeyedRateLimiter ----

Result<std::unique_ptr<KeyedRateLimiter>> KeyedRateLimiter::create(KeyedLimiterOptions o) {
  if (auto s = RateLimit::validate(o.limit); !s)
    return fail(ErrorCode::kInvalidArgument, "keyed rate limiter '" + o.name + "': " + s.error().message);
  if (o.max_keys < 1 || o.max_keys > 100'000'000)
    return fail(ErrorCode::kInvalidArgument, "keyed rate limiter '" + o.name + "': max_keys must be in [1, 1e8], got " +
                                                 std::to_string(o.max_keys));
  return std::make_unique<KeyedRateLimiter>(std::move(o));
}

KeyedRateLimiter::KeyedRateLimiter(KeyedLimiterOptions o)
    : o_(std::move(o)),
      interval_ns_(o_.limit.interval().count()),
      tau_ns_(interval_ns_ * (static_cast<int64_t>(o_.limit.burst) - 1)),
      // Small tables go in one shard so that max_keys is exact.
      per_shard_(o_.max_keys < 1024 ? o_.max_keys : o_.max_keys / kShards),
      shards_(new Shard[kShards]) {}

Decision KeyedRateLimiter::decide(std::string_view key, Instant now_i, Instant deadline_i, uint32_t cost) {
  const int64_t now = now_i.time_since_epoch().count();
  const int64_t deadline = deadline_i.time_since_epoch().count();
  Decision d = denied_forever();
  if (cost <= o_.limit.burst) {
    size_t h = Hash{}(key);
    Shard& sh = shards_[o_.max_keys < 1024 ? 0 : h % kShards];
    std::lock_guard lk(sh.mu);
    auto it = sh.map.find(key);
    if (it != sh.map.end()) {
      int64_t tat = it->second->tat_ns;
      d = gcra(tat, now, deadline, cost, interval_ns_, tau_ns_);
      it->second->tat_ns = tat;
      sh.lru.splice(sh.lru.begin(), sh.lru, it->second);
    } else {
      int64_t tat = kNoTat;
      d = gcra(tat, now, deadline, cost, interval_ns_, tau_ns_);
      if (is_allowed(d)) {  // a denied unknown key leaves no state (cannot happen with cost <= burst)
        if (sh.map.size() >= per_shard_) {
          // Prefer a key whose state has expired (lossless); otherwise the least recently used.
          auto victim = std::prev(sh.lru.end());
          if (victim->tat_ns > now) lossy_evictions_.fetch_add(1, std::memory_order_relaxed);
          sh.map.erase(victim->key);
          sh.lru.erase(victim);
        }
        sh.lru.push_front(Entry{std::string(key), tat});
        sh.map.emplace(sh.lru.front().key, sh.lru.begin());
      }
    }
  }
  if (auto* den = std::get_if<Denied>(&d)) {
    Duration ra = den->retry_after;
    sdk::emit_signal(o_.signals, [&] { return sdk::RequestDenied{o_.name, key, ra, now_i}; });
  }
  return d;
}

Decision KeyedRateLimiter::try_acquire(std::string_view key, Instant now, uint32_t cost) {
  return decide(key, now, now, cost);
}

Decision KeyedRateLimiter::reserve(std::string_view key, Instant now, Instant deadline, uint32_t cost) {
  return decide(key, now, std::max(now, deadline), cost);
}

size_t KeyedRateLimiter::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lk(shards_[i].mu);
    n += shards_[i].map.size();
  }
  return n;
}

// ---- waiting helper ----

Status acquire_until(RateLimiter& limiter, const sdk::Clock& clock, sdk::Sleeper& sleeper, Instant deadline,
                     uint32_t cost) {
  Decision d = limiter.reserve(clock.now(), deadline, cost);
  if (auto* den = std::get_if<Denied>(&d)) {
    return fail(ErrorCode::kRateLimited, "rate limiter '" + limiter.options().name +
                                             "': cannot admit before the deadline; retry after " +
                                             std::to_string(den->retry_after.count()) + " ns");
  }
  Duration wait = std::get<Allowed>(d).wait;
  if (wait.count() > 0) sleeper.sleep_for(wait);
  return {};
}

}  // namespace keel::resilience
