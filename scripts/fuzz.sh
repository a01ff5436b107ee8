#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into DIR and runs each for SECONDS.
# Usage: scripts/fuzz.sh DIR SECONDS
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$here/build-fuzz}
secs=${2:-60}
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S "$here" -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++-16 -DCMAKE_C_COMPILER=clang-16 \
    -DKEEL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$dir" --target fuzz_all >/dev/null
for t in "$dir"/tests/fuzz/*_fuzz; do
  name=$(basename "$t")
  work=$(mktemp -d)
  cp "$here/tests/fuzz/corpus/$name/"* "$work/" 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  "$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "$work" 2>&1 | tail -4
  rm -rf "$work"
done
