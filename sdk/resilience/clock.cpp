// The shell side of time and randomness: the only file of the toolkit that reads a real clock
// or sleeps.
#include <chrono>
#include <thread>

#include "keel/clock.h"

namespace keel::sdk {

Instant SteadyClock::now() const noexcept {
  auto d = std::chrono::steady_clock::now().time_since_epoch();
  return Instant(std::chrono::duration_cast<Duration>(d));
}

SteadyClock& SteadyClock::instance() noexcept {
  static SteadyClock c;
  return c;
}

void ThreadSleeper::sleep_for(Duration d) {
  if (d.count() > 0) std::this_thread::sleep_for(d);
}

ThreadSleeper& ThreadSleeper::instance() noexcept {
  static ThreadSleeper s;
  return s;
}

static inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

SeededRandom::SeededRandom(uint64_t seed) noexcept {
  uint64_t x = seed;
  for (auto& s : s_) {
    x = splitmix64(x);
    s = x;
  }
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t SeededRandom::next_u64() noexcept {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

int64_t Random::range(int64_t lo, int64_t hi) noexcept {
  if (lo >= hi) return lo;
  uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
  if (span == 0) return static_cast<int64_t>(next_u64());  // the whole int64 range
  // Lemire's multiply-shift with rejection: unbiased.
  unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * span;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < span) {
    uint64_t threshold = -span % span;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next_u64()) * span;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + static_cast<uint64_t>(m >> 64));
}

}  // namespace keel::sdk
