#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into DIR and runs each for SECONDS.
# Usage: scripts/fuzz.sh DIR SECONDS
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:-$here/build-fuzz}")
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
  log="$work.log"
  if ! (cd "$work" && "$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work.crash-" "$work" >"$log" 2>&1); then
    # Show what failed and the input that did it, then stop: a crash is a bug to fix.
    grep -v '^#' "$log" | tail -40
    for c in "$work".crash-*; do [ -f "$c" ] && echo "input $c (base64): $(base64 -w0 "$c")"; done
    echo "fuzz: $name FAILED; replay with: $t $work.crash-*"
    exit 1
  fi
  tail -4 "$log"
  rm -rf "$work" "$log"
done
