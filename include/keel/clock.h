// Time and randomness for the keel SDK. Cores never read a clock: they take `Instant now`
// as an argument. The shell (helpers that wait, pipelines) holds a Clock so tests can drive
// everything with ManualClock and no sleeps.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ratio>

namespace keel::sdk {

using Duration = std::chrono::nanoseconds;

// The time line of Instant: monotonic nanoseconds from an arbitrary origin. It is only a tag
// (it has no now()); read time through a Clock.
struct Timeline {
  using rep = int64_t;
  using period = std::nano;
  using duration = Duration;
  using time_point = std::chrono::time_point<Timeline, Duration>;
  static constexpr bool is_steady = true;
};
using Instant = Timeline::time_point;

inline constexpr Instant kInstantMax = Instant(Duration::max());

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic. Thread-safe.
  virtual Instant now() const noexcept = 0;
};

// Moves only when told to. Thread-safe (the time is an atomic).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Instant start = Instant(Duration(0))) : ns_(start.time_since_epoch().count()) {}
  Instant now() const noexcept override { return Instant(Duration(ns_.load(std::memory_order_acquire))); }
  void advance(Duration d) noexcept { ns_.fetch_add(d.count(), std::memory_order_acq_rel); }
  void set(Instant t) noexcept { ns_.store(t.time_since_epoch().count(), std::memory_order_release); }

 private:
  std::atomic<int64_t> ns_;
};

// std::chrono::steady_clock. Lives in the shell (sdk/resilience/clock.cpp), never in a core.
class SteadyClock final : public Clock {
 public:
  Instant now() const noexcept override;
  static SteadyClock& instance() noexcept;
};

// Randomness arrives through this interface (jitter, hedging). Not thread-safe: each thread or
// each call owns its generator.
class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next_u64() noexcept = 0;
  // Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  int64_t range(int64_t lo, int64_t hi) noexcept;
};

// xoshiro256** seeded by splitmix64: same seed, same sequence.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) noexcept;
  uint64_t next_u64() noexcept override;

 private:
  uint64_t s_[4];
};

// Waits for a duration. The real one sleeps the thread; tests pass one that advances a
// ManualClock, so code that waits runs without sleeping.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  virtual void sleep_for(Duration d) = 0;
};

class ThreadSleeper final : public Sleeper {
 public:
  void sleep_for(Duration d) override;
  static ThreadSleeper& instance() noexcept;
};

// Advances a ManualClock instead of sleeping.
class ManualSleeper final : public Sleeper {
 public:
  explicit ManualSleeper(ManualClock& clock) : clock_(clock) {}
  void sleep_for(Duration d) override {
    if (d.count() > 0) clock_.advance(d);
    slept_ns_.fetch_add(d.count(), std::memory_order_relaxed);
  }
  Duration total_slept() const { return Duration(slept_ns_.load(std::memory_order_relaxed)); }

 private:
  ManualClock& clock_;
  std::atomic<int64_t> slept_ns_{0};
};

}  // namespace keel::sdk
