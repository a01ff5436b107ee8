#!/usr/bin/env python3
"""Two keel binaries side by side (A/B): the same redis-benchmark load against each, in
alternating rounds, with the server's CPU time per request (/proc/PID/stat) — the figure that
a loaded 2-core machine disturbs least. Used to check that a change costs nothing on the
single node (e.g. the distributed hash map's routing and replication hook, docs/benchmarks.md).

Usage: bench/ab.py OLD_KEEL NEW_KEEL   (env: AB_ROUNDS=3 AB_REQUESTS=200000)
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

ROUNDS = int(os.environ.get("AB_ROUNDS", "3"))
REQUESTS = int(os.environ.get("AB_REQUESTS", "200000"))


def run(binary, test, pipeline):
    d = tempfile.mkdtemp(prefix="keel-ab-")
    port = free_port()
    p = subprocess.Popen([binary, "serve", "--engine", "memory", "--shards", "1", "--port", str(port),
                          "--http-port", "0", "--data-dir", d, "--log-level", "warn"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", test, "-n", str(n), "-c", "50",
                              "-P", str(pipeline), "-r", "1000000", "-d", "64", "--csv"],
                             capture_output=True, text=True).stdout
        c1 = cpu(p.pid)
        rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
        return float(rows[-1][1]), (c1 - c0) * 1e6 / n
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    a, b = sys.argv[1], sys.argv[2]
    res = {}
    for rnd in range(ROUNDS):
        for test in ("set", "get"):
            for pl in (1, 16):
                for name, binary in (("A", a), ("B", b)) if rnd % 2 == 0 else (("B", b), ("A", a)):
                    res.setdefault((test, pl, name), []).append(run(binary, test, pl))
    print("| test | -P | A ops/s | B ops/s | B/A | A CPU µs/req | B CPU µs/req | B/A |")
    print("|---|---|---|---|---|---|---|---|")
    for test in ("set", "get"):
        for pl in (1, 16):
            ra = statistics.median(x[0] for x in res[(test, pl, "A")])
            rb = statistics.median(x[0] for x in res[(test, pl, "B")])
            ca = statistics.median(x[1] for x in res[(test, pl, "A")])
            cb = statistics.median(x[1] for x in res[(test, pl, "B")])
            print("| %s | %d | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |" % (test.upper(), pl, ra, rb, rb / ra, ca, cb, cb / ca))


if __name__ == "__main__":
    main()
