// Randomness arrives through this interface. SeededRandom is deterministic (xoshiro256**
// seeded by splitmix64) and is what the simulator and property tests use; system_seed()
// is the only place that reads the OS entropy source.
#pragma once

#include <cstdint>

namespace keel {

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next_u64() = 0;
  // Uniform in [0, n). REQUIRES: n > 0.
  uint64_t uniform(uint64_t n);
  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  int64_t range(int64_t lo, int64_t hi);
  // Uniform in [0, 1).
  double unit() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }
};

class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed);
  uint64_t next_u64() override;

 private:
  uint64_t s_[4];
};

// splitmix64: a good 64-bit mixer; also used to derive deterministic values from tuples.
uint64_t mix64(uint64_t x);

// A seed from the operating system's entropy source.
uint64_t system_seed();

}  // namespace keel
