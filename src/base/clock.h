// Time arrives through this interface so the same code runs for real and in the simulator.
// Pure cores do not even hold a Clock: they are handed `now` as an argument.
#pragma once

#include <cstdint>

namespace keel {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch: used for TTL deadlines (EXPIREAT, PXAT).
  virtual int64_t now_ms() const = 0;
  // Monotonic nanoseconds from an arbitrary origin: used for durations and timers.
  virtual int64_t monotonic_ns() const = 0;
};

// A clock that moves only when told to. Tests and the simulator use it.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t now_ms() const override { return now_ms_; }
  int64_t monotonic_ns() const override { return mono_ns_; }
  void advance_ms(int64_t ms) {
    now_ms_ += ms;
    mono_ns_ += ms * 1'000'000;
  }
  void set_ms(int64_t ms) { now_ms_ = ms; }

 private:
  int64_t now_ms_;
  int64_t mono_ns_ = 0;
};

// The real clock (std::chrono). Lives outside the pure cores.
class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
  int64_t monotonic_ns() const override;
  static SystemClock& instance();
};

}  // namespace keel
