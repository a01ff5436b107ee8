#!/usr/bin/env python3
"""The cost of tracing on forwarded commands: a 3-node keel cluster (replicas 2, write quorum
2), redis-benchmark (not in cluster mode) against node 1, so about two thirds of the keys are
forwarded to their primary on another node, with the trace context on the peer frame when the
command has one.

Configurations, interleaved ROUNDS times: tracing off (no trace.endpoint), and on with
trace.sample_ratio 0, 0.01 and 1 (the collector is a Python http.server answering 200 on the
same machine). SET and GET, 50 clients, -P 16, -r 1000000; prints every run and the medians.

Usage: bench/cluster/trace_forward_bench.py BUILD_DIR
Environment: TRACE_BENCH_ROUNDS=3 TRACE_BENCH_REQUESTS=400000
"""
import csv
import http.server
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_bench  # noqa: E402  (free_port, wait_state_ok)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
KEEL = os.path.join(BUILD, "tools/keel/keel")
ROUNDS = int(os.environ.get("TRACE_BENCH_ROUNDS", "3"))
REQUESTS = int(os.environ.get("TRACE_BENCH_REQUESTS", "400000"))


class Collector:
    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/v1/traces" % self.server.server_address[1]


class Cluster:
    def __init__(self, extra):
        self.extra = extra

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="keel-tbench-")
        peer = [cluster_bench.free_port() for _ in range(3)]
        self.ports = [cluster_bench.free_port() for _ in range(3)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(peer))
        self.procs = []
        for i in range(3):
            d = os.path.join(self.root, "n%d" % i)
            os.makedirs(d)
            self.procs.append(subprocess.Popen(
                [KEEL, "serve", "--engine", "memory", "--shards", "1", "--port", str(self.ports[i]),
                 "--http-port", "0", "--data-dir", d, "--node-id", str(i + 1), "--peer-port", str(peer[i]),
                 "--peers", peers, "--log-level", "warn",
                 "--set", "dht.replicas=2", "--set", "dht.write_quorum=2"] + self.extra,
                stdout=open(os.path.join(d, "log"), "wb"), stderr=subprocess.STDOUT))
        cluster_bench.wait_state_ok(self.ports)
        return self

    def __exit__(self, *a):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def bench(port, test):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", test, "-n", str(REQUESTS), "-c", "50",
                          "-P", "16", "-r", "1000000", "-d", "64", "--csv"],
                         capture_output=True, text=True, timeout=600).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if not rows:
        raise RuntimeError("redis-benchmark gave no result:\n" + out)
    return float(rows[-1][1])


def main():
    col = Collector()
    configs = [("off", []),
               ("ratio 0", ["--set", "trace.endpoint=" + col.url, "--set", "trace.sample_ratio=0"]),
               ("ratio 0.01", ["--set", "trace.endpoint=" + col.url, "--set", "trace.sample_ratio=0.01"]),
               ("ratio 1", ["--set", "trace.endpoint=" + col.url, "--set", "trace.sample_ratio=1"])]
    results = {name: {"set": [], "get": []} for name, _ in configs}
    for r in range(ROUNDS):
        for name, extra in configs:
            with Cluster(extra) as c:
                for t in ("set", "get"):
                    rps = bench(c.ports[0], t)
                    results[name][t].append(rps)
                    print("round %d %-10s %s %8.0f req/s" % (r + 1, name, t.upper(), rps), flush=True)
    print("\n| configuration | SET req/s (runs) | GET req/s (runs) | SET median | GET median |")
    print("|---|---|---|---|---|")
    for name, _ in configs:
        s, g = results[name]["set"], results[name]["get"]
        print("| %s | %s | %s | %.0f k | %.0f k |" % (
            name, ", ".join("%.0f k" % (x / 1000) for x in s), ", ".join("%.0f k" % (x / 1000) for x in g),
            statistics.median(s) / 1000, statistics.median(g) / 1000))


if __name__ == "__main__":
    main()
