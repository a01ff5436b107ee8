// Measures the memory engine's footprint per key: inserts N keys ("key:<i>") with V-byte values
// into one memory engine (1024 partitions) and reports heap bytes per key from mallinfo2()
// and the engine's own accounting.   usage: storage_mem_per_key [N=1000000] [V=64]
#include <fmt/format.h>
#include <malloc.h>

#include <cstdlib>
#include <string>

#include "base/clock.h"
#include "base/slots.h"
#include "storage/engine.h"

int main(int argc, char** argv) {
  const uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const size_t vlen = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 64;
  keel::storage::EngineConfig c;
  c.kind = keel::storage::EngineConfig::Kind::kMemory;
  c.partitions = 1024;
  keel::ManualClock clock;
  auto engines = keel::storage::open_engines(c, 1, clock);
  if (!engines) return 1;
  auto& e = *(*engines)[0];
  malloc_trim(0);
  const size_t before = mallinfo2().uordblks + mallinfo2().hblkhd;
  std::string val(vlen, 'v');
  for (uint64_t i = 0; i < n; ++i) {
    std::string k = fmt::format("key:{}", i);
    uint32_t p = keel::key_partition(k, c.partitions);
    if (!e.set_string(p, k, val, 0, clock.now_ms())) return 2;
  }
  const size_t after = mallinfo2().uordblks + mallinfo2().hblkhd;
  fmt::print("keys={} value_bytes={} heap_bytes_per_key={:.1f} accounted_bytes_per_key={:.1f}\n",
             e.size(), vlen, static_cast<double>(after - before) / static_cast<double>(n),
             static_cast<double>(e.stats().used_memory_bytes) / static_cast<double>(n));
  return 0;
}
