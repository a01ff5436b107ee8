#!/usr/bin/env python3
"""keel's persistent engine vs Redis with an append-only file, one after the other.

For each command and pipeline depth: starts Redis (`--appendonly yes --appendfsync POLICY`) and
a keel node (`--engine persistent --fsync POLICY --shards SHARDS`) on free loopback ports, warms
each up, runs `redis-benchmark -c 50 -d 64 -r 1000000` against it, and prints the rates, the
server's CPU time per request (utime + stime from /proc) and keel/Redis. Meant for comparing the
journal's cost quickly; bench/resp_bench.py is the full table.

Usage: bench/aof_bench.py BUILD_DIR [everysec|always|no] [SHARDS]
Environment: AOF_BENCH_TESTS=set,incr  AOF_BENCH_REQUESTS=200000 (x3 at -P 16)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from benchlib import cpu_seconds as cpu, free_port, wait_port

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
POLICY = sys.argv[2] if len(sys.argv) > 2 else "everysec"
SHARDS = sys.argv[3] if len(sys.argv) > 3 else "1"
KEEL = os.path.join(BUILD, "tools/keel/keel")
TESTS = os.environ.get("AOF_BENCH_TESTS", "set,incr").split(",")
REQUESTS = int(os.environ.get("AOF_BENCH_REQUESTS", "200000"))


def run(kind, test, pipeline, n):
    d = tempfile.mkdtemp(prefix="aof-bench-")
    port = free_port()
    if kind == "redis":
        cmd = ["redis-server", "--port", str(port), "--appendonly", "yes", "--appendfsync", POLICY,
               "--save", "", "--dir", d]
    else:
        cmd = [KEEL, "serve", "--engine", "persistent", "--fsync", POLICY, "--shards", SHARDS, "--port", str(port),
               "--http-port", "0", "--data-dir", d, "--log-level", "warn"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.5)
        bench = ["redis-benchmark", "-p", str(port), "-t", test, "-c", "50", "-P", str(pipeline),
                 "-r", "1000000", "-d", "64", "--csv"]
        subprocess.run(bench + ["-n", "20000"], capture_output=True, timeout=600)
        c0 = cpu(p.pid)
        out = subprocess.run(bench + ["-n", str(n)], capture_output=True, text=True, timeout=1800).stdout
        used = cpu(p.pid) - c0
        rows = [r for r in out.splitlines() if r.startswith('"') and not r.startswith('"test"')]
        return float(rows[-1].split(",")[1].strip('"')), used * 1e6 / n
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    print("| command | -P | Redis AOF %s ops/s | keel persistent %s ops/s | ratio | server CPU us/req Redis / keel |"
          % (POLICY, POLICY))
    print("|---|---|---|---|---|---|")
    for test in TESTS:
        for pipeline in (1, 16):
            n = REQUESTS * (3 if pipeline > 1 else 1)
            r = run("redis", test, pipeline, n)
            k = run("keel", test, pipeline, n)
            print("| %s | %d | %.0f | %.0f | %.2fx | %.2f / %.2f |" %
                  (test.upper(), pipeline, r[0], k[0], k[0] / r[0], r[1], k[1]), flush=True)


if __name__ == "__main__":
    main()
