#!/usr/bin/env bash
# make bench: every benchmark, each comparing keel with its peer side by side in one run.
# Figures go to stdout; resp_bench.py also rewrites its section of docs/benchmarks.md.
# BENCH_ONLY=resp|types|tls|big|pubsub|cluster|meta|gateway|client|resilience|sdkx runs one of them.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
only=${BENCH_ONLY:-}
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

if want resp; then
  echo "== keel vs redis-server (redis-benchmark)"
  /usr/bin/python3 "$here/bench/resp_bench.py" "$build"
fi
if want types; then
  echo "== lists, sets, sorted sets, streams: keel vs redis-server (redis-benchmark; memory per element)"
  /usr/bin/python3 "$here/bench/types_bench.py" "$build"
fi
if want tls; then
  echo "== RESP over TLS: keel vs redis-server with TLS (redis-benchmark --tls)"
  /usr/bin/python3 "$here/bench/tls_bench.py" "$build"
fi
if want big; then
  echo "== one element of a 1M-element collection: keel persistent vs redis-server AOF (redis-benchmark)"
  /usr/bin/python3 "$here/bench/big_collections_bench.py" "$build"
fi
if want pubsub; then
  echo "== pub/sub: PUBLISH with 1, 10, 100 subscribers, keel vs redis-server (redis-benchmark)"
  /usr/bin/python3 "$here/bench/pubsub/pubsub_bench.py" "$build"
fi
if want cluster; then
  echo "== distributed hash map: 3-node keel vs 3-master Redis Cluster (redis-benchmark --cluster)"
  /usr/bin/python3 "$here/bench/cluster/cluster_bench.py" "$build"
  echo "== a 100k-element list as a queue on a replicated cluster: keel vs Redis Cluster with replicas"
  /usr/bin/python3 "$here/bench/cluster/big_list_bench.py" "$build"
fi
if want meta; then
  echo "== cluster metadata: 3-node keel (Rabia) vs 3-node etcd"
  /usr/bin/python3 "$here/bench/meta/meta_bench.py" "$build"
fi
if want gateway; then
  echo "== HTTP gateway: keel vs nginx reverse proxy (wrk, same upstream)"
  /usr/bin/python3 "$here/bench/gateway/gateway_bench.py" "$build"
fi
if want client; then
  echo "== keel C++ client vs hiredis async"
  "$build/bench/sdk/bench_client"
fi
if want resilience; then
  echo "== SDK resilience decisions"
  "$build/bench/resilience/bench_resilience" --benchmark_min_time=0.2
fi
if want sdkx; then
  echo "== SDK peer selection and epoch cache"
  "$build/bench/sdkx/bench_sdkx" --benchmark_min_time=0.2
fi
