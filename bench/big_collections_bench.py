#!/usr/bin/env python3
"""Writing one element of a large collection: keel's persistent engine vs Redis with an
append-only file, side by side.

For each type, a key is first filled with about SIZE elements (redis-benchmark with -P 100 and
__rand_int__; a stream gets SIZE entries); then `redis-benchmark -c 50 -P 16` writes single
elements to it (HSET of one field, SADD, ZADD, XADD, RPUSH) and, for comparison, to a key that
starts empty. Prints the rates, the big/empty ratio for each server (1.0: the size of the
collection costs nothing) and keel/Redis on the big key. Both servers journal every write
(`--appendonly yes --appendfsync everysec` / `--engine persistent --fsync everysec`).

Usage: bench/big_collections_bench.py BUILD_DIR
Environment: BIG_BENCH_SIZE=1000000  BIG_BENCH_REQUESTS=300000  BIG_BENCH_TYPES=hash,set,zset,stream,list
"""
import os
import shutil
import subprocess
import sys
import tempfile
from benchlib import free_port, wait_port

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
KEEL = os.path.join(BUILD, "tools/keel/keel")
SIZE = int(os.environ.get("BIG_BENCH_SIZE", "1000000"))
REQUESTS = int(os.environ.get("BIG_BENCH_REQUESTS", "300000"))
TYPES = os.environ.get("BIG_BENCH_TYPES", "hash,set,zset,stream,list").split(",")

# type -> (fill command, fill count, measured command); KEY is replaced by the key.
COMMANDS = {
    "hash": (["HSET", "KEY", "f:__rand_int__", "v"], 3, ["HSET", "KEY", "f:__rand_int__", "new"]),
    "set": (["SADD", "KEY", "m:__rand_int__"], 3, ["SADD", "KEY", "n:__rand_int__"]),
    "zset": (["ZADD", "KEY", "__rand_int__", "m:__rand_int__"], 3, ["ZADD", "KEY", "__rand_int__", "n:__rand_int__"]),
    "stream": (["XADD", "KEY", "*", "f", "v"], 1, ["XADD", "KEY", "*", "f", "v"]),
    "list": (["RPUSH", "KEY", "e:__rand_int__"], 1, ["RPUSH", "KEY", "e:__rand_int__"]),
}


def start(kind):
    d = tempfile.mkdtemp(prefix="big-bench-")
    port = free_port()
    if kind == "redis":
        cmd = ["redis-server", "--port", str(port), "--appendonly", "yes", "--appendfsync", "everysec",
               "--save", "", "--dir", d]
    else:
        cmd = [KEEL, "serve", "--engine", "persistent", "--fsync", "everysec", "--shards", "1", "--port", str(port),
               "--http-port", "0", "--data-dir", d, "--log-level", "warn"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port, d


def bench(port, command, key, n, pipeline, rand):
    args = ["redis-benchmark", "-p", str(port), "-c", "50", "-P", str(pipeline), "-r", str(rand), "-n", str(n),
            "--csv"] + [key if a == "KEY" else a for a in command]
    out = subprocess.run(args, capture_output=True, text=True, timeout=3600).stdout
    rows = [r for r in out.splitlines() if r.startswith('"') and not r.startswith('"test"')]
    return float(rows[-1].split(",")[1].strip('"'))


def measure(kind, typ):
    fill, times, cmd = COMMANDS[typ]
    p, port, d = start(kind)
    try:
        bench(port, fill, "big", SIZE * times, 100, SIZE)
        big = bench(port, cmd, "big", REQUESTS, 16, 1000000000)
        empty = bench(port, cmd, "small", REQUESTS, 16, 1000000000)
        return big, empty
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    print("| type | Redis AOF big / empty ops/s | ratio | keel persistent big / empty ops/s | ratio | keel/Redis (big) |")
    print("|---|---|---|---|---|---|")
    for typ in TYPES:
        rb, re = measure("redis", typ)
        kb, ke = measure("keel", typ)
        print("| %s | %.0f / %.0f | %.2f | %.0f / %.0f | %.2f | %.2fx |" %
              (typ, rb, re, rb / re, kb, ke, kb / ke, kb / rb), flush=True)


if __name__ == "__main__":
    main()
