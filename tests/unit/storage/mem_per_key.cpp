// Measures the memory engine's footprint per key: inserts N keys ("key:<i>") with V-byte values
// into one memory engine (1024 partitions) and reports heap bytes per key from mallinfo2()
// and the engine's own accounting, plus rough set/get times (a measurement, not a test).
//   usage: storage_mem_per_key [N=1000000] [V=64] [ttl]    ("ttl": every key gets a deadline)
#include <fmt/format.h>
#include <malloc.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/clock.h"
#include "base/slots.h"
#include "storage/engine.h"

int main(int argc, char** argv) {
  const uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const size_t vlen = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 64;
  const bool ttl = argc > 3 && std::strcmp(argv[3], "ttl") == 0;
  keel::storage::EngineConfig c;
  c.kind = keel::storage::EngineConfig::Kind::kMemory;
  c.partitions = 1024;
  keel::ManualClock clock;
  auto engines = keel::storage::open_engines(c, 1, clock);
  if (!engines) return 1;
  auto& e = *(*engines)[0];
  malloc_trim(0);
  auto heap = [] {
    auto mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
  };
  const size_t before = heap();
  std::string val(vlen, 'v');
  const int64_t expire = ttl ? clock.now_ms() + 3'600'000 : 0;
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    std::string k = fmt::format("key:{}", i);
    if (!e.set_string(keel::key_partition(k, c.partitions), k, val, expire, clock.now_ms()))
      return 2;
  }
  auto t1 = Clock::now();
  const size_t after = heap();
  uint64_t found = 0;
  for (uint64_t i = 0; i < n; ++i) {
    std::string k = fmt::format("key:{}", (i * 7919) % n);
    found += e.get(keel::key_partition(k, c.partitions), k, clock.now_ms()).has_value();
  }
  auto t2 = Clock::now();
  auto ns = [&](auto d) {
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()) /
           static_cast<double>(n);
  };
  fmt::print(
      "keys={} value_bytes={} ttl={} heap_bytes_per_key={:.1f} accounted_bytes_per_key={:.1f} "
      "set_ns={:.0f} get_ns={:.0f} found={}\n",
      e.size(), vlen, ttl, static_cast<double>(after - before) / static_cast<double>(n),
      static_cast<double>(e.stats().used_memory_bytes) / static_cast<double>(n), ns(t1 - t0),
      ns(t2 - t1), found);
  return 0;
}
