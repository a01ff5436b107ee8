// Seal and open of one value with the at-rest codec (AES-256-GCM through OpenSSL EVP), as the
// persistent engine calls them: a key-sized and a header-sized piece of associated data.
// Run: build/bench/at_rest/bench_at_rest_seal
#include <benchmark/benchmark.h>

#include <string>

#include "security/at_rest_codec.h"

namespace {

using namespace keel::security::at_rest;

DataKey test_key() {
  DataKey k;
  k.version = 1;
  k.bytes.fill(7);
  return k;
}

const std::string kKey("\0\0\0\1key:000123", 14);
const std::string kHeader("\2\0\0\0\0\0\0\0\0\0", 10);

void BM_Seal(benchmark::State& state) {
  const DataKey k = test_key();
  const std::string plain(static_cast<size_t>(state.range(0)), 'x');
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(seal(k, kKey, kHeader, plain, out));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Seal)->Arg(64)->Arg(1024);

void BM_Open(benchmark::State& state) {
  const DataKey k = test_key();
  const std::string plain(static_cast<size_t>(state.range(0)), 'x');
  std::string sealed, back;
  (void)seal(k, kKey, kHeader, plain, sealed);
  const auto view = *parse_sealed(sealed);
  for (auto _ : state) benchmark::DoNotOptimize(open_sealed(k, view, kKey, kHeader, back));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Open)->Arg(64)->Arg(1024);

}  // namespace

BENCHMARK_MAIN();
