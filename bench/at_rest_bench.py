#!/usr/bin/env python3
"""Encryption at rest: the cost of sealing values on the persistent engine's SET path.

The same keel binary, persistent engine, run plain and with security.at_rest (a key file), in
alternating rounds of the same redis-benchmark SET load; each round starts a fresh node on an
empty data directory. Reports the median ops/s and the server's CPU time per request
(/proc/PID/stat, the figure a loaded 2-core machine disturbs least) and their ratios.

Usage: bench/at_rest_bench.py KEEL_BINARY
  env: AR_ROUNDS=5 AR_REQUESTS=200000 AR_SIZES=64,1024 AR_PIPELINES=1,16 AR_SHARDS=1
"""
import csv
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from benchlib import cpu_seconds as cpu, free_port

ROUNDS = int(os.environ.get("AR_ROUNDS", "5"))
REQUESTS = int(os.environ.get("AR_REQUESTS", "200000"))
SIZES = [int(x) for x in os.environ.get("AR_SIZES", "64,1024").split(",")]
PIPELINES = [int(x) for x in os.environ.get("AR_PIPELINES", "1,16").split(",")]
SHARDS = os.environ.get("AR_SHARDS", "1")


def run(binary, encrypted, size, pipeline):
    d = tempfile.mkdtemp(prefix="keel-atrest-bench-")
    port = free_port()
    args = [binary, "serve", "--engine", "persistent", "--shards", SHARDS, "--port", str(port),
            "--http-port", "0", "--data-dir", os.path.join(d, "data"), "--log-level", "warn"]
    if encrypted:
        key = os.path.join(d, "master.key")
        with open(key, "w") as f:
            f.write(os.urandom(32).hex())
        os.chmod(key, 0o600)
        args += ["--set", "security.at_rest.key_file=" + key]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.02)
        time.sleep(0.3)
        c0 = cpu(p.pid)
        n = REQUESTS * (4 if pipeline > 1 else 1)
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(n), "-c", "50",
                              "-P", str(pipeline), "-r", "1000000", "-d", str(size), "--csv"],
                             capture_output=True, text=True).stdout
        c1 = cpu(p.pid)
        rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
        return float(rows[-1][1]), (c1 - c0) * 1e6 / n
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    binary = sys.argv[1]
    res = {}
    for rnd in range(ROUNDS):
        for size in SIZES:
            for pl in PIPELINES:
                order = (False, True) if rnd % 2 == 0 else (True, False)
                for enc in order:
                    res.setdefault((size, pl, enc), []).append(run(binary, enc, size, pl))
    print("| SET -d | -P | plain ops/s | encrypted ops/s | ratio | plain CPU µs/req | encrypted CPU µs/req | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for pl in PIPELINES:
            rp = statistics.median(x[0] for x in res[(size, pl, False)])
            re_ = statistics.median(x[0] for x in res[(size, pl, True)])
            cp = statistics.median(x[1] for x in res[(size, pl, False)])
            ce = statistics.median(x[1] for x in res[(size, pl, True)])
            print("| %d | %d | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |" % (size, pl, rp, re_, re_ / rp, cp, ce, ce / cp))


if __name__ == "__main__":
    main()
