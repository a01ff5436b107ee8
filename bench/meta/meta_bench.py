#!/usr/bin/env python3
"""Metadata writes: a 3-node keel cluster (Rabia) against a 3-node etcd cluster (Raft), side by
side on loopback, with the same load generator (wrk), the same value size and concurrency.

Both sync to disk before acknowledging: keel fdatasyncs its Rabia record log before any message
of a Ready leaves (every member, every decision); etcd fsyncs its WAL (its default). The data
directories are on the same disk (bench/out/meta-tmp, not tmpfs).

Load: one wrk per node, CONNS/3 connections each, every request a put of a new key with a
VALUE-byte value: keel `PUT /v1/meta/{key}`, etcd `POST /v3/kv/put` (JSON gateway, base64).
Throughput is the sum over the three wrk; p50 is their mean, p99 their maximum (wrk reports
percentiles per process; merging them exactly is not possible from its output).

keel with its default settings and etcd run in alternating rounds (META_BENCH_ROUNDS, default
3): the ratio is given per round and as the median. Then keel runs once in other configurations
to show what batching and the slot starter do (cluster.max_batch = 1; cluster.start_timeout_ms =
0: every member starts slots; cluster.propose_delay_ms). Rabia's counters come from
/v1/cluster/status after each run.

Usage: bench/meta/meta_bench.py [BUILD_DIR]
  env: META_BENCH_SECONDS=10 META_BENCH_CONNS=48 META_BENCH_VALUE=100 META_BENCH_ROUNDS=3
       META_BENCH_QUICK=1 (one round, default settings only)
Prints a table and writes bench/out/meta_bench.json.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
KEEL = os.path.join(BUILD, "tools/keel/keel")
SECONDS = int(os.environ.get("META_BENCH_SECONDS", "10"))
CONNS = int(os.environ.get("META_BENCH_CONNS", "48"))
VALUE = int(os.environ.get("META_BENCH_VALUE", "100"))
QUICK = os.environ.get("META_BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("META_BENCH_ROUNDS", "1" if QUICK else "3"))
OUT = os.path.join(ROOT, "bench/out")

LUA_COMMON = r"""
local b='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
function b64(data)
  return ((data:gsub('.', function(x)
    local r,b='',x:byte()
    for i=8,1,-1 do r=r..(b%2^i-b%2^(i-1)>0 and '1' or '0') end
    return r;
  end)..'0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c=0
    for i=1,6 do c=c+(x:sub(i,i)=='1' and 2^(6-i) or 0) end
    return b:sub(c+1,c+1)
  end)..({ '', '==', '=' })[#data%3+1])
end
local counter = 0
local tid = 0
local threads = {}
function setup(thread)
  tid = tid + 1
  thread:set("id", tid)
  table.insert(threads, thread)
end
function init(args)
  -- keys are "bench/<prefix>" plus a 9-digit counter; the prefix is padded to a multiple of 3
  -- bytes so that etcd's base64 key is b64(prefix) .. b64(counter), and the per-request work
  -- in the load generator is the same small amount for both systems
  prefix = "bench/" .. args[1] .. "-" .. id .. "-"
  while #prefix % 3 ~= 0 do prefix = prefix .. "-" end
  prefix64 = b64(prefix)
  value = string.rep("v", tonumber(args[2]))
  value64 = b64(value)
end
"""

LUA_KEEL = LUA_COMMON + r"""
function request()
  counter = counter + 1
  return wrk.format("PUT", "/v1/meta/" .. prefix .. string.format("%09d", counter), nil, value)
end
"""

LUA_ETCD = LUA_COMMON + r"""
function request()
  counter = counter + 1
  local body = '{"key":"' .. prefix64 .. b64(string.format("%09d", counter)) .. '","value":"' .. value64 .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end
"""


def get_json(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return json.loads(r.read())


def wait(cond, what, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


def parse_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


def run_wrk(ports, script, tag):
    fd, path = tempfile.mkstemp(suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(script)
    per = max(1, CONNS // len(ports))
    procs = []
    for i, p in enumerate(ports):
        procs.append(subprocess.Popen(
            ["wrk", "-t1", "-c%d" % per, "-d%ds" % SECONDS, "--latency", "--timeout", "10s", "-s", path,
             "http://127.0.0.1:%d" % p, "--", "%s%d" % (tag, i), str(VALUE)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate()[0] for p in procs]
    os.unlink(path)
    rps, p50, p99, non2xx, errors = 0.0, [], [], 0, 0
    for o in outs:
        m = re.search(r"Requests/sec:\s+([\d.]+)", o)
        if not m:
            raise RuntimeError("wrk failed:\n" + o)
        rps += float(m.group(1))
        p50.append(parse_ms(re.search(r"\s50%\s+(\S+)", o).group(1)))
        p99.append(parse_ms(re.search(r"\s99%\s+(\S+)", o).group(1)))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
        non2xx += int(m.group(1)) if m else 0
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", o)
        errors += sum(int(x) for x in m.groups()) if m else 0
    return {"rps": rps, "p50_ms": sum(p50) / len(p50), "p99_ms": max(p99), "non2xx": non2xx, "socket_errors": errors}


class KeelCluster:
    def __init__(self, root, settings):
        self.root = os.path.join(root, "keel")
        self.procs = []
        self.http = [free_port() for _ in range(3)]
        peer = [free_port() for _ in range(3)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(peer))
        for i in range(3):
            d = os.path.join(self.root, "n%d" % (i + 1))
            os.makedirs(d)
            cmd = [KEEL, "serve", "--engine", "memory", "--port", "0", "--http-port", str(self.http[i]),
                   "--data-dir", d, "--node-id", str(i + 1), "--peer-port", str(peer[i]), "--peers", peers,
                   "--log-level", "warn", "--shards", "1"]
            for k, v in settings.items():
                cmd += ["--set", "%s=%s" % (k, v)]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w")))
        wait(lambda: all(get_json(p, "/v1/cluster/status").get("quorum") for p in self.http), "keel quorum")

    def status(self):
        return [get_json(p, "/v1/cluster/status") for p in self.http]

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)


class EtcdCluster:
    def __init__(self, root):
        self.procs = []
        self.client = [free_port() for _ in range(3)]
        peer = [free_port() for _ in range(3)]
        initial = ",".join("e%d=http://127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(peer))
        for i in range(3):
            d = os.path.join(root, "etcd", "e%d" % (i + 1))
            os.makedirs(d)
            cmd = ["etcd", "--name", "e%d" % (i + 1), "--data-dir", d,
                   "--listen-client-urls", "http://127.0.0.1:%d" % self.client[i],
                   "--advertise-client-urls", "http://127.0.0.1:%d" % self.client[i],
                   "--listen-peer-urls", "http://127.0.0.1:%d" % peer[i],
                   "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer[i],
                   "--initial-cluster", initial, "--initial-cluster-state", "new",
                   "--initial-cluster-token", "keel-bench", "--log-level", "warn"]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(d + ".log", "w")))
        wait(lambda: all(get_json(p, "/health").get("health") == "true" for p in self.client), "etcd health")

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)


def rabia_counters(statuses):
    s = max(statuses, key=lambda x: x["rabia"]["decided_by_vote"])
    r = s["rabia"]
    applied = s["applied_commands"]
    return {"slots": r["slots_decided"], "fast_path_share": r["fast_path_share"], "null_slots": r["null_decisions"],
            "phases_per_decision": r["phases_per_decision"], "coin_flips": r["coin_flips"],
            "commands_per_slot": applied / max(1, r["slots_decided"] - r["null_decisions"]),
            "commands_per_sync": s["log"]["commands_per_sync"]}


def run_keel(work, name, settings):
    shutil.rmtree(work, ignore_errors=True)
    c = KeelCluster(work, settings)
    try:
        r = run_wrk(c.http, LUA_KEEL, "k")
        r["rabia"] = rabia_counters(c.status())
    finally:
        c.stop()
    r["name"] = name
    print("%-40s %9.0f puts/s  p50 %6.2f ms  p99 %7.2f ms  non2xx %d  %s" % (
        name, r["rps"], r["p50_ms"], r["p99_ms"], r["non2xx"], json.dumps(r["rabia"])), flush=True)
    return r


def run_etcd(work):
    shutil.rmtree(work, ignore_errors=True)
    e = EtcdCluster(work)
    try:
        r = run_wrk(e.client, LUA_ETCD, "e")
    finally:
        e.stop()
    r["name"] = "etcd %s" % subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split()[2]
    print("%-40s %9.0f puts/s  p50 %6.2f ms  p99 %7.2f ms  non2xx %d" % (r["name"], r["rps"], r["p50_ms"], r["p99_ms"], r["non2xx"]),
          flush=True)
    return r


def main():
    if not os.path.exists(KEEL):
        sys.exit("build keel first: %s is missing" % KEEL)
    for tool in ("etcd", "wrk"):
        if not shutil.which(tool):
            sys.exit("%s is missing: run scripts/deps.sh bench" % tool)
    os.makedirs(OUT, exist_ok=True)
    default = ("keel max_batch=64 (default)", {"cluster.max_batch": 64})
    extra = [
        ("keel max_batch=1", {"cluster.max_batch": 1}),
        ("keel max_batch=64 start_timeout=0", {"cluster.max_batch": 64, "cluster.start_timeout_ms": 0}),
        ("keel max_batch=64 propose_delay=2ms", {"cluster.max_batch": 64, "cluster.propose_delay_ms": 2}),
    ]
    if QUICK:
        extra = []
    work = os.path.join(OUT, "meta-tmp")
    results, pairs = [], []
    # Rounds alternate keel (default settings) and etcd, so that both see the same machine
    # conditions; the ratio is reported per round and as the median of the rounds.
    for rnd in range(ROUNDS):
        k = run_keel(work, default[0], default[1])
        e = run_etcd(work)
        pairs.append((k, e))
        results += [k, e]
    for name, settings in extra:
        results.append(run_keel(work, name, settings))
    shutil.rmtree(work, ignore_errors=True)
    etcd_rps = sorted(e["rps"] for _, e in pairs)[len(pairs) // 2]
    print("\n| system | puts/s | p50 ms | p99 ms | vs etcd | fast path | NULL slots | phases/decision | commands/slot |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (k, e) in enumerate(pairs):
        for r in (k, e):
            ra = r.get("rabia")
            extra_cols = ("%.0f%% | %d of %d | %.2f | %.1f" % (100 * ra["fast_path_share"], ra["null_slots"], ra["slots"],
                                                               ra["phases_per_decision"], ra["commands_per_slot"])) if ra else "– | – | – | –"
            print("| round %d: %s | %.0f | %.2f | %.2f | %.2fx | %s |" % (i + 1, r["name"], r["rps"], r["p50_ms"], r["p99_ms"],
                                                                         r["rps"] / e["rps"], extra_cols))
    for r in results[2 * len(pairs):]:
        ra = r["rabia"]
        print("| %s | %.0f | %.2f | %.2f | %.2fx (median etcd) | %.0f%% | %d of %d | %.2f | %.1f |" % (
            r["name"], r["rps"], r["p50_ms"], r["p99_ms"], r["rps"] / etcd_rps, 100 * ra["fast_path_share"], ra["null_slots"],
            ra["slots"], ra["phases_per_decision"], ra["commands_per_slot"]))
    ratios = sorted(k["rps"] / e["rps"] for k, e in pairs)
    p99_better = sum(1 for k, e in pairs if k["p99_ms"] <= e["p99_ms"])
    print("\nkeel / etcd throughput per round: %s; median %.2fx; keel's p99 at or below etcd's in %d of %d rounds" % (
        ", ".join("%.2fx" % x for x in ratios), ratios[len(ratios) // 2], p99_better, len(pairs)))
    print("%d connections, %d-byte values, %d s per run, %d cores" % (CONNS, VALUE, SECONDS, os.cpu_count()))
    with open(os.path.join(OUT, "meta_bench.json"), "w") as f:
        json.dump({"connections": CONNS, "value_bytes": VALUE, "seconds": SECONDS, "rounds": ROUNDS, "results": results}, f,
                  indent=2)


if __name__ == "__main__":
    main()
