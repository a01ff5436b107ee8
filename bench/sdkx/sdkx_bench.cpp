// PeerManager::select and EpochCache costs. Prints figures; asserts nothing about time.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "keel/epoch_cache.h"
#include "keel/peers.h"

namespace {

using namespace keel::sdk;
using namespace std::chrono_literals;

PeerManager make_peers(int n) {
  PeerManager m;
  std::vector<PeerSpec> specs;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> caps{"read"};
    caps.push_back(i % 4 == 0 ? "primary" : "replica");
    if (i % 4 == 0) caps.push_back("write");
    specs.push_back(PeerSpec{"node-" + std::to_string(i), "10.0.0." + std::to_string(i % 250),
                             6380, caps, PeerStatus::kUp});
  }
  if (!m.set_static(specs)) std::abort();
  for (int i = 0; i < n; ++i) {
    const std::string id = "node-" + std::to_string(i);
    (void)m.record_success(id, std::chrono::microseconds(100 + (i * 37) % 900), Instant{});
    if (i % 7 == 0) (void)m.record_failure(id, Instant{});
  }
  return m;
}

// select(k=3) over N peers, any capability.
void BM_PeerSelect(benchmark::State& state) {
  const PeerManager m = make_peers(static_cast<int>(state.range(0)));
  Instant now{1s};
  for (auto _ : state) {
    auto v = m.select(3, now);
    benchmark::DoNotOptimize(v);
  }
  state.SetLabel("k=3");
}
BENCHMARK(BM_PeerSelect)->Arg(8)->Arg(64)->Arg(512);

// select(k=1) over N peers, requiring {"read","replica"}.
void BM_PeerSelectWithCapabilities(benchmark::State& state) {
  const PeerManager m = make_peers(static_cast<int>(state.range(0)));
  const std::vector<std::string> need{"read", "replica"};
  Instant now{1s};
  for (auto _ : state) {
    auto v = m.select(1, need, now);
    benchmark::DoNotOptimize(v);
  }
  state.SetLabel("k=1 caps=2");
}
BENCHMARK(BM_PeerSelectWithCapabilities)->Arg(8)->Arg(64)->Arg(512);

void BM_PeerRecordSuccess(benchmark::State& state) {
  PeerManager m = make_peers(64);
  Instant now{1s};
  for (auto _ : state) {
    now += 1us;
    benchmark::DoNotOptimize(m.record_success("node-17", 250us, now));
  }
}
BENCHMARK(BM_PeerRecordSuccess);

void BM_EpochCacheGetHit(benchmark::State& state) {
  EpochCache<std::string, std::string> c({.max_entries = 100'000, .max_marks = 10'000});
  std::vector<std::string> keys;
  for (int i = 0; i < 10'000; ++i) keys.push_back("user:" + std::to_string(i));
  for (const auto& k : keys) c.put(k, "value", 1);
  size_t i = 0;
  for (auto _ : state) {
    auto v = c.get(keys[i++ % keys.size()], 1);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_EpochCacheGetHit);

void BM_EpochCachePutEvicting(benchmark::State& state) {
  EpochCache<uint64_t, uint64_t> c({.max_entries = 1'000, .max_marks = 1'000});
  uint64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(c.put(i, i, 1));
    ++i;
  }
}
BENCHMARK(BM_EpochCachePutEvicting);

}  // namespace
