#!/usr/bin/env python3
"""PUBLISH throughput with 1, 10 and 100 subscribers: keel vs redis-server, side by side.

For each server, opens N subscriber connections to one channel (raw sockets drained by one
reader thread with select, discarding the bytes: the subscribers never fall behind, so the
output-buffer limit never cuts them off), then runs

    redis-benchmark -c 50 -n REQUESTS -P P --csv PUBLISH bench-channel mmm...m (64 bytes)

at -P 1 and -P 16 (REQUESTS x4 at -P 16), median of ROUNDS.
Checks afterwards that every subscriber received every message (the publish counts say how
many deliveries to expect). Prints a table with keel/Redis ratios.

Usage: bench/pubsub/pubsub_bench.py BUILD_DIR   (env: BENCH_ROUNDS=3 BENCH_REQUESTS=200000)
"""
import csv
import io
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import resp_bench  # noqa: E402  (Server, free ports, CPU accounting)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200000"))
SUBSCRIBERS = [1, 10, 100]
PAYLOAD = "m" * 64
PIPELINES = [1, 16]
CONFIGS = [
    ("redis", "redis", ["--appendonly", "no"], None),
    ("keel-memory-2shards", "keel", ["--engine", "memory", "--shards", "2"], "redis"),
]


class Subscribers:
    """N connections subscribed to `channel`, drained by one thread; counts message bytes."""

    def __init__(self, port, n, channel=b"bench-channel"):
        self.socks = []
        cmd = b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel)
        confirm = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(cmd)
            got = b""
            while len(got) < len(confirm):
                got += s.recv(len(confirm) - len(got))
            assert got == confirm, got
            s.setblocking(False)
            self.socks.append(s)
        self.received = 0
        self.stop = False
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self):
        while not self.stop:
            ready, _, _ = select.select(self.socks, [], [], 0.1)
            for s in ready:
                try:
                    while True:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            raise RuntimeError("a subscriber was disconnected")
                        self.received += len(chunk)
                except BlockingIOError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def bench_once(server, pipeline, subs):
    n = REQUESTS * (4 if pipeline > 1 else 1)
    before_bytes = subs.received
    cmd = ["redis-benchmark", "-p", str(server.port), "-c", "50", "-P", str(pipeline), "-n", str(n),
           "--csv", "PUBLISH", "bench-channel", PAYLOAD]
    before = resp_bench.cpu_seconds(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    after = resp_bench.cpu_seconds(server.proc.pid)
    rows = list(csv.reader(io.StringIO(out)))
    rec = dict(zip(rows[0], rows[-1]))
    # Every subscriber gets every message: a message frame is 45 bytes + the 64-byte payload.
    want = before_bytes + n * len(subs.socks) * (len(b"*3\r\n$7\r\nmessage\r\n$13\r\nbench-channel\r\n$64\r\n\r\n") + 64)
    deadline = time.time() + 60
    while subs.received < want and time.time() < deadline:
        time.sleep(0.05)
    if subs.received != want:
        raise RuntimeError("subscribers received %d bytes, expected %d" % (subs.received, want))
    return {"rps": float(rec["rps"]), "p50": float(rec["p50_latency_ms"]), "p99": float(rec["p99_latency_ms"]),
            "cpu_us_per_req": (after - before) * 1e6 / n}


def main():
    results = {}
    for label, kind, args, _ in CONFIGS:
        with resp_bench.Server(label, kind, args) as srv:
            for nsub in SUBSCRIBERS:
                subs = Subscribers(srv.port, nsub)
                try:
                    for p in PIPELINES:
                        runs = [bench_once(srv, p, subs) for _ in range(ROUNDS)]
                        r = results[(label, nsub, p)] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
                        print("%-22s %3d subscribers P%-2d %10.0f publishes/s  p50 %.3f ms  p99 %.3f ms  cpu %.2f us/publish" %
                              (label, nsub, p, r["rps"], r["p50"], r["p99"], r["cpu_us_per_req"]), flush=True)
                finally:
                    subs.close()
    print()
    print("| server | subscribers | -P | publishes/s | p50 ms | p99 ms | CPU µs/publish | vs redis |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _, _, peer in CONFIGS:
        for nsub in SUBSCRIBERS:
            for p in PIPELINES:
                r = results[(label, nsub, p)]
                ratio = "%.2f×" % (r["rps"] / results[(peer, nsub, p)]["rps"]) if peer else ""
                print("| %s | %d | %d | %.0f | %.3f | %.3f | %.2f | %s |" %
                      (label, nsub, p, r["rps"], r["p50"], r["p99"], r["cpu_us_per_req"], ratio))


if __name__ == "__main__":
    main()
