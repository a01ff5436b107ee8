#!/usr/bin/env bash
# make bench: every benchmark, each comparing keel with its peer side by side in one run.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
/usr/bin/python3 "$here/bench/resp_bench.py" "$build"
if [ -x "$build/bench/resilience/bench_resilience" ]; then
  "$build/bench/resilience/bench_resilience" --benchmark_min_time=0.2
fi
if [ -x "$build/bench/sdkx/bench_sdkx" ]; then
  "$build/bench/sdkx/bench_sdkx" --benchmark_min_time=0.2
fi
