#!/usr/bin/env python3
"""Lists, sets, sorted sets and streams: keel (memory engine) vs redis-server, side by side.

Throughput: redis-benchmark's own LPUSH, LPOP, SADD and ZADD tests and an XADD command line,
50 clients, -P 1 and -P 16, -r 1000000 (SADD and ZADD draw their members from a million; LPUSH,
LPOP and XADD write one key, as redis-benchmark does), against Redis (no persistence) and then
keel (`--engine memory --shards 1`). Each row: requests per second, the server's CPU time per
request (utime + stime from /proc/PID/stat) and keel/Redis.

Memory: one key of each type filled with 1,000,000 elements through `redis-cli --pipe` (RPUSH /
SADD / ZADD 100 elements per command, XADD one entry `f v` per command); the growth of the
server's resident memory, per element.

Usage: bench/types_bench.py BUILD_DIR
Environment: TYPES_BENCH_REQUESTS=200000 (x4 at -P 16)  TYPES_BENCH_ROUNDS=1 (median)
             TYPES_BENCH_TESTS=lpush,lpop,sadd,zadd,xadd  TYPES_BENCH_MEMORY=1 (0: skip)
             TYPES_BENCH_SHARDS=1 (keel's --shards)
"""
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from benchlib import cpu_seconds, free_port, wait_port

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
KEEL = os.path.join(BUILD, "tools/keel/keel")
REQUESTS = int(os.environ.get("TYPES_BENCH_REQUESTS", "200000"))
ROUNDS = int(os.environ.get("TYPES_BENCH_ROUNDS", "1"))
TESTS = os.environ.get("TYPES_BENCH_TESTS", "lpush,lpop,sadd,zadd,xadd").split(",")
MEMORY = os.environ.get("TYPES_BENCH_MEMORY", "1") == "1"
SHARDS = os.environ.get("TYPES_BENCH_SHARDS", "1")
ELEMENTS = 1_000_000


class Server:
    def __init__(self, kind):
        self.kind = kind

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="types-bench-")
        self.port = free_port()
        if self.kind == "keel":
            cmd = [KEEL, "serve", "--engine", "memory", "--shards", SHARDS, "--port", str(self.port),
                   "--http-port", "0", "--data-dir", os.path.join(self.dir, "data"), "--log-level", "warn"]
        else:
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            raise RuntimeError("%s did not listen on %d" % (self.kind, self.port))
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), capture_output=True,
                              text=True, timeout=60).stdout.strip()


def run_bench(server, test, pipeline):
    n = REQUESTS * (4 if pipeline > 1 else 1)
    cmd = ["redis-benchmark", "-p", str(server.port), "-c", "50", "-P", str(pipeline), "-n", str(n),
           "-r", "1000000", "--csv"]
    cmd += ["XADD", "mystream", "*", "field", "value"] if test == "xadd" else ["-t", test]
    before = cpu_seconds(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800).stdout
    used = cpu_seconds(server.proc.pid) - before
    rows = [r for r in out.splitlines() if r.startswith('"') and not r.startswith('"test"')]
    if not rows:
        raise RuntimeError("redis-benchmark printed no result for %s: %s" % (test, out[-500:]))
    return float(rows[-1].split(",")[1].strip('"')), used * 1e6 / n


def throughput(kind):
    """{(test, pipeline): (ops/s, cpu us/req)}; LPOP runs after LPUSH on the same server, so it
    pops what LPUSH pushed (5N pushed, 5N popped)."""
    out = {}
    for _ in range(ROUNDS):
        with Server(kind) as s:
            order = [t for t in ("lpush", "lpop") if t in TESTS] + [t for t in TESTS if t not in ("lpush", "lpop")]
            for test in order:
                for p in (1, 16):
                    out.setdefault((test, p), []).append(run_bench(s, test, p))
    return {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in out.items()}


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def resp(*args):
    return "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)


def fill(typ):
    buf = io.StringIO()
    if typ == "stream":
        line = resp("XADD", "s", "*", "f", "v")
        for _ in range(ELEMENTS):
            buf.write(line)
        return buf.getvalue(), ("XLEN", "s")
    key, cmd, count = {"list": ("l", "RPUSH", "LLEN"), "set": ("st", "SADD", "SCARD"),
                       "zset": ("z", "ZADD", "ZCARD")}[typ]
    for start in range(0, ELEMENTS, 100):
        args = [cmd, key]
        for i in range(start, start + 100):
            if typ == "zset":
                args.append(str(i))
            args.append("element:%07d" % i)
        buf.write(resp(*args))
    return buf.getvalue(), (count, key)


def memory(kind):
    """{type: bytes of resident memory per element for a 1M-element key}."""
    out = {}
    for typ in ("list", "set", "zset", "stream"):
        with Server(kind) as s:
            payload, check = fill(typ)
            time.sleep(0.3)
            base = rss(s.proc.pid)
            subprocess.run(["redis-cli", "-p", str(s.port), "--pipe"], input=payload.encode(),
                           capture_output=True, timeout=900, check=True)
            time.sleep(0.5)
            got = int(s.cli(*check))
            if got != ELEMENTS:
                raise RuntimeError("%s holds %d elements after the load, not %d" % (kind, got, ELEMENTS))
            out[typ] = (rss(s.proc.pid) - base) / ELEMENTS
    return out


def main():
    print("redis-benchmark -c 50 -r 1000000 -n %d (x4 at -P 16); keel: --engine memory --shards %s; "
          "median of %d round(s)" % (REQUESTS, SHARDS, ROUNDS), flush=True)
    redis = throughput("redis")
    keel = throughput("keel")
    print("| command | -P | Redis ops/s | keel ops/s | keel/Redis | server CPU µs/req Redis / keel |")
    print("|---|---|---|---|---|---|")
    for test in TESTS:
        for p in (1, 16):
            r, k = redis[(test, p)], keel[(test, p)]
            print("| %s | %d | %.0f | %.0f | %.2f× | %.2f / %.2f |" % (test.upper(), p, r[0], k[0], k[0] / r[0], r[1], k[1]),
                  flush=True)
    if not MEMORY:
        return
    rm, km = memory("redis"), memory("keel")
    print()
    print("| 1,000,000 elements in one key | Redis bytes/element | keel bytes/element | keel/Redis |")
    print("|---|---|---|---|")
    for typ in ("list", "set", "zset", "stream"):
        print("| %s | %.1f | %.1f | %.2f× |" % (typ, rm[typ], km[typ], km[typ] / rm[typ]), flush=True)


if __name__ == "__main__":
    main()
