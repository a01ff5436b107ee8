#!/usr/bin/env python3
"""keel vs Redis, side by side, with redis-benchmark.

For every server configuration, starts the server on a free loopback port, runs
redis-benchmark for each (command, pipeline depth, keyspace) ROUNDS times, and records the
median throughput, p50/p99 latency and the server's CPU time per operation (utime+stime from
/proc/PID/stat around each run). Then loads 1M keys with 64-byte values into each memory
configuration and records the resident memory it took. Prints a table with keel/Redis ratios
and rewrites the generated section of docs/benchmarks.md.

Usage: bench/resp_bench.py BUILD_DIR   (env: BENCH_ROUNDS=3 BENCH_REQUESTS=300000 BENCH_QUICK=1)
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
from benchlib import cpu_seconds, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
KEEL = os.path.join(BUILD, "tools/keel/keel")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300000"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
TESTS = ["set", "get", "incr", "mset", "hset"]
CLIENTS = 50
VALUE = 64


def wait_port(port, proc):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited early")
            time.sleep(0.02)
    raise RuntimeError("server did not listen on %d" % port)


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Server:
    def __init__(self, name, kind, args):
        self.name, self.kind, self.args = name, kind, args

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="keel-bench-")
        self.port = free_port()
        if self.kind == "keel":
            cmd = [KEEL, "serve", "--port", str(self.port), "--http-port", "0", "--data-dir",
                   os.path.join(self.dir, "data"), "--log-level", "warn"] + self.args
        else:
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--dir", self.dir, "--daemonize", "no"] + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_once(server, test, pipeline, keyspace):
    n = REQUESTS * (4 if pipeline > 1 else 1)
    cmd = ["redis-benchmark", "-p", str(server.port), "-c", str(CLIENTS), "-d", str(VALUE),
           "-P", str(pipeline), "-n", str(n), "-t", test, "--csv"]
    if keyspace:
        cmd += ["-r", str(keyspace)]
    before = cpu_seconds(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    after = cpu_seconds(server.proc.pid)
    rows = list(csv.reader(io.StringIO(out)))
    header, row = rows[0], rows[-1]
    rec = dict(zip(header, row))
    ops = n * (10 if test == "mset" else 1)  # redis-benchmark's MSET sets 10 keys
    return {
        "rps": float(rec["rps"]),
        "p50": float(rec["p50_latency_ms"]),
        "p99": float(rec["p99_latency_ms"]),
        "cpu_us_per_req": (after - before) * 1e6 / n,
    }


def median_of(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def memory_for_1m_keys(server):
    """Loads 1M keys (key:0000000..) with 64-byte values; returns RSS growth in bytes."""
    base = rss_bytes(server.proc.pid)
    value = "v" * VALUE
    payload = io.StringIO()
    for i in range(1_000_000):
        k = "key:%07d" % i
        payload.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, VALUE, value))
    subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], input=payload.getvalue().encode(),
                   capture_output=True, timeout=600, check=True)
    time.sleep(0.5)
    dbsize = int(subprocess.run(["redis-cli", "-p", str(server.port), "DBSIZE"], capture_output=True,
                                text=True).stdout.strip())
    assert dbsize == 1_000_000, dbsize
    return rss_bytes(server.proc.pid) - base


CONFIGS = [
    # (label, kind, args, compared with)
    ("redis", "redis", ["--appendonly", "no"], None),
    ("keel-memory-1shard", "keel", ["--engine", "memory", "--shards", "1"], "redis"),
    ("keel-memory-2shards", "keel", ["--engine", "memory", "--shards", "2"], "redis"),
    ("redis-aof-everysec", "redis", ["--appendonly", "yes", "--appendfsync", "everysec"], None),
    ("keel-persistent-everysec", "keel", ["--engine", "persistent", "--fsync", "everysec", "--shards", "1"],
     "redis-aof-everysec"),
    # The same engine reading from RocksDB instead of memory (data larger than memory).
    ("keel-persistent-disk-everysec", "keel", ["--engine", "persistent", "--fsync", "everysec", "--shards", "1",
                                               "--set", "storage.keep_in_memory=no"], "redis-aof-everysec"),
]
if QUICK:
    CONFIGS = CONFIGS[:2]


def load_log(path):
    """Results printed by an earlier run (its stdout), so a run cut short can be completed by
    running only the remaining configurations (BENCH_CONFIGS) and merging."""
    results, memory = {}, {}
    for line in open(path):
        f = line.split()
        if len(f) >= 16 and f[4] in ("key", "keys") and f[6] == "ops/s":
            ks = 1_000_000 if f[3] == "1M" else 0
            results[(f[0], f[1], int(f[2][1:]), ks)] = {
                "rps": float(f[5]), "p50": float(f[8]), "p99": float(f[11]), "cpu_us_per_req": float(f[14])}
        elif "memory for 1M keys" in line:
            memory[f[0]] = float(line.split(":")[1].split()[0]) * 2**20
    return results, memory


def main():
    if not os.path.exists(KEEL):
        sys.exit("keel binary not found at %s: run `make build` first" % KEEL)
    results = {}
    memory = {}
    if os.environ.get("BENCH_MERGE_LOG"):
        results, memory = load_log(os.environ["BENCH_MERGE_LOG"])
    only = set(filter(None, os.environ.get("BENCH_CONFIGS", "").split(",")))
    shapes = [(t, p, ks) for ks in (0, 1_000_000) for p in (1, 16) for t in TESTS]
    if QUICK:
        shapes = [(t, p, 1_000_000) for p in (1, 16) for t in ("set", "get")]
    for label, kind, args, _ in CONFIGS:
        if only and label not in only:
            continue
        with Server(label, kind, args) as srv:
            for (t, p, ks) in shapes:
                runs = [bench_once(srv, t, p, ks) for _ in range(ROUNDS)]
                results[(label, t, p, ks)] = median_of(runs)
                r = results[(label, t, p, ks)]
                print("%-26s %-5s P%-2d %-8s %10.0f ops/s  p50 %.3f ms  p99 %.3f ms  cpu %.2f us/req" %
                      (label, t, p, "1M keys" if ks else "1 key", r["rps"], r["p50"], r["p99"], r["cpu_us_per_req"]),
                      flush=True)
        if label in ("redis", "keel-memory-1shard", "keel-memory-2shards"):
            with Server(label, kind, args) as srv:
                memory[label] = memory_for_1m_keys(srv)
                print("%-26s memory for 1M keys x 64 B: %.1f MiB (%.0f B/key)" %
                      (label, memory[label] / 2**20, memory[label] / 1e6), flush=True)
    write_report(results, memory, shapes)


def write_report(results, memory, shapes):
    lines = []
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    rv = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    lines.append("Generated by `make bench` (bench/resp_bench.py) on %s: %d cores (%s), %s, redis-server %s." %
                 (time.strftime("%Y-%m-%d"), os.cpu_count(), cpu, "keel " + subprocess.run(
                     [KEEL, "version"], capture_output=True, text=True).stdout.split()[1], rv))
    lines.append("redis-benchmark -c %d -d %d -n %d (x4 with -P 16), median of %d rounds; "
                 "`-r 1000000` = random keys over a million-key space (the figure that counts). "
                 "CPU = server user+system time per request from /proc/PID/stat." % (CLIENTS, VALUE, REQUESTS, ROUNDS))
    lines.append("")
    lines.append("| server | test | -P | keys | ops/s | p50 ms | p99 ms | CPU µs/req | ops/s vs peer | CPU vs peer |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for label, kind, args, peer in CONFIGS:
        for (t, p, ks) in shapes:
            r = results.get((label, t, p, ks))
            if not r:
                continue
            ratio = cpu_ratio = ""
            if peer and (peer, t, p, ks) in results:
                q = results[(peer, t, p, ks)]
                ratio = "%.2f×" % (r["rps"] / q["rps"])
                cpu_ratio = "%.2f×" % (r["cpu_us_per_req"] / q["cpu_us_per_req"]) if q["cpu_us_per_req"] else ""
            lines.append("| %s | %s | %d | %s | %.0f | %.3f | %.3f | %.2f | %s | %s |" %
                         (label, t.upper(), p, "1M" if ks else "1", r["rps"], r["p50"], r["p99"],
                          r["cpu_us_per_req"], ratio, cpu_ratio))
    if memory:
        lines.append("")
        lines.append("Memory for 1,000,000 keys with 64-byte values (growth of the server's RSS while loading with `redis-cli --pipe`):")
        lines.append("")
        lines.append("| server | MiB | bytes/key | vs redis |")
        lines.append("|---|---|---|---|")
        for label, b in memory.items():
            vs = "%.2f×" % (b / memory["redis"]) if "redis" in memory else ""
            lines.append("| %s | %.1f | %.0f | %s |" % (label, b / 2**20, b / 1e6, vs))
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    path = os.path.join(ROOT, "docs/benchmarks.md")
    begin, end = "<!-- BEGIN resp_bench -->", "<!-- END resp_bench -->"
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text and not QUICK:
        text = text[: text.index(begin) + len(begin)] + "\n" + report + text[text.index(end):]
        open(path, "w").write(text)
        print("updated %s" % path)


if __name__ == "__main__":
    main()
