#!/usr/bin/env python3
"""The distributed hash map vs Redis Cluster, side by side, with `redis-benchmark --cluster`.

Starts a 3-master Redis Cluster (Debian's redis-server, cluster-enabled) without replicas and
with one asynchronous replica per master (6 processes: two copies of every key, as keel's), and
3-node keel clusters (replicas 2 with write quorum 2, and replicas 2 with write quorum 1), all
on loopback, and runs SET and GET with 50 clients,
-P 1 and -P 16, -r 1000000, ROUNDS times each in alternation; prints medians and keel/Redis
ratios. Then measures keel's failover time: kill -9 of a node under a write load, to the first
successful write of a key whose primary was on it (median of FAILOVERS runs).

With CLUSTER_BENCH_PEER_TLS=1 it compares instead keel W2/R2 with plaintext peer links and
with mutual TLS on them (tls.peer = yes, certificates from `keel cert`), alternating in each
round: the cost of TLS on the data plane (forwarding and replication) and the metadata peers.

Usage: bench/cluster/cluster_bench.py BUILD_DIR
Environment: CLUSTER_BENCH_ROUNDS=3 CLUSTER_BENCH_REQUESTS=200000 CLUSTER_BENCH_FAILOVERS=3
             CLUSTER_BENCH_PEER_TLS=1 CLUSTER_BENCH_ENGINE=memory CLUSTER_BENCH_SET="k=v ..."
"""
import csv
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
KEEL = os.path.join(BUILD, "tools/keel/keel")
ROUNDS = int(os.environ.get("CLUSTER_BENCH_ROUNDS", "3"))
REQUESTS = int(os.environ.get("CLUSTER_BENCH_REQUESTS", "200000"))
FAILOVERS = int(os.environ.get("CLUSTER_BENCH_FAILOVERS", "3"))
# keel's engine and any further settings (space-separated key=value), e.g.
# CLUSTER_BENCH_ENGINE=persistent CLUSTER_BENCH_SET="storage.fsync=always"
ENGINE = os.environ.get("CLUSTER_BENCH_ENGINE", "memory")
EXTRA_SETTINGS = os.environ.get("CLUSTER_BENCH_SET", "").split()


def free_bus_port():
    """A free port p whose cluster bus port p + 10000 is free too (Redis Cluster needs both)."""
    import random
    while True:
        p = random.randint(20000, 29999)
        try:
            for q in (p, p + 10000):
                s = socket.socket()
                s.bind(("127.0.0.1", q))
                s.close()
            return p
        except OSError:
            continue


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                          text=True, timeout=30).stdout


def wait_state_ok(ports, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if all("cluster_state:ok" in cli(p, "cluster", "info") for p in ports):
            return
        time.sleep(0.1)
    raise RuntimeError("cluster on %s never reached cluster_state:ok" % ports)


class KeelCluster:
    def __init__(self, quorum, replicas=2, n=3, pki=None):
        self.quorum, self.replicas, self.n, self.pki = quorum, replicas, n, pki
        self.name = "keel W%d/R%d%s" % (quorum, replicas, " mTLS" if pki else "")

    def tls_args(self, i):
        if not self.pki:
            return []
        return ["--set", "tls.peer=yes",
                "--set", "tls.cert_file=%s/node-%d.crt" % (self.pki, i + 1),
                "--set", "tls.key_file=%s/node-%d.key" % (self.pki, i + 1),
                "--set", "tls.ca_cert_file=%s/ca.crt" % self.pki]

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="keel-cbench-")
        peer = [free_port() for _ in range(self.n)]
        self.ports = [free_port() for _ in range(self.n)]
        self.http_ports = [free_port() for _ in range(self.n)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(peer))
        self.procs = []
        for i in range(self.n):
            d = os.path.join(self.root, "n%d" % i)
            os.makedirs(d)
            self.procs.append(subprocess.Popen(
                [KEEL, "serve", "--engine", ENGINE, "--shards", "1", "--port", str(self.ports[i]),
                 "--http-port", str(self.http_ports[i]), "--data-dir", d, "--node-id", str(i + 1), "--peer-port", str(peer[i]),
                 "--peers", peers, "--log-level", "warn",
                 "--set", "cluster.heartbeat_ms=50", "--set", "cluster.suspect_after_ms=300",
                 "--set", "cluster.dead_after_ms=1000",
                 "--set", "dht.replicas=%d" % self.replicas, "--set", "dht.write_quorum=%d" % self.quorum]
                + [a for kv in EXTRA_SETTINGS for a in ("--set", kv)] + self.tls_args(i),
                stdout=open(os.path.join(d, "log"), "wb"), stderr=subprocess.STDOUT))
        wait_state_ok(self.ports)
        return self

    def __exit__(self, *a):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisCluster:
    """3 masters; with replicas=1 each has one replica (6 processes), asynchronous as Redis
    replicates: the same two copies of every key as keel's replicas = 2."""

    def __init__(self, replicas=0):
        self.replicas = replicas
        self.name = "redis-cluster" + (" R%d" % replicas if replicas else "")

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="redis-cbench-")
        self.ports = [free_bus_port() for _ in range(3 * (1 + self.replicas))]
        self.procs = []
        for p in self.ports:
            d = os.path.join(self.root, str(p))
            os.makedirs(d)
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--cluster-enabled", "yes", "--cluster-config-file",
                 os.path.join(d, "nodes.conf"), "--dir", d, "--save", "", "--appendonly", "no",
                 "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in self.ports:
            for _ in range(100):
                if cli(p, "ping").strip() == "PONG":
                    break
                time.sleep(0.05)
        subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in self.ports] +
                       ["--cluster-replicas", str(self.replicas), "--cluster-yes"], capture_output=True, timeout=60)
        wait_state_ok(self.ports)
        if self.replicas:
            # Every replica linked to its master and synced before the load starts.
            deadline = time.time() + 60
            while not all("master_link_status:up" in cli(p, "info", "replication") or
                          "role:master" in cli(p, "info", "replication") for p in self.ports):
                if time.time() > deadline:
                    raise RuntimeError("Redis Cluster replicas never linked to their masters")
                time.sleep(0.1)
            self.ports = [p for p in self.ports if "role:master" in cli(p, "info", "replication")]
        return self

    def __exit__(self, *a):
        for p in self.procs:
            p.kill()
            p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def bench(port, test, pipeline):
    # Pipelined runs send 4x the requests: at -P 16 a run of REQUESTS ends within half a second,
    # below redis-benchmark's timing resolution.
    n = REQUESTS * (4 if pipeline > 1 else 1)
    out = subprocess.run(["redis-benchmark", "--cluster", "-p", str(port), "-t", test, "-n", str(n),
                          "-c", "50", "-P", str(pipeline), "-r", "1000000", "-d", "64", "--csv"],
                         capture_output=True, text=True, timeout=600).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] not in ("test",)]
    if not rows:
        raise RuntimeError("redis-benchmark gave no result:\n" + out)
    return float(rows[-1][1]), float(rows[-1][4]), float(rows[-1][6])  # rps, p50, p99


def failover_time():
    """kill -9 of node 3 under writes: seconds to the first successful write of a key that
    node 3 was the primary of."""
    import redis
    with KeelCluster(quorum=2) as c:
        r = redis.Redis(port=c.ports[0], socket_timeout=5)
        slots = r.execute_command("CLUSTER", "SLOTS")
        victim = c.ports[2]
        key = next("fk%d" % i for i in range(100000)
                   if any(s[0] <= r.execute_command("CLUSTER", "KEYSLOT", "fk%d" % i) <= s[1] and s[2][1] == victim
                          for s in slots))
        for i in range(200):
            r.set(key, i)
        c.procs[2].send_signal(signal.SIGKILL)
        t0 = time.time()
        while True:
            try:
                r.set(key, "after")
                return time.time() - t0
            except redis.RedisError:
                time.sleep(0.005)
            if time.time() - t0 > 30:
                raise RuntimeError("no successful write 30 s after the kill")


def cpu_seconds(procs):
    """CPU time (user + system) the processes used so far, from /proc/<pid>/stat."""
    total = 0
    for p in procs:
        with open("/proc/%d/stat" % p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def peer_tls_main():
    """keel W2/R2 with plaintext peer links vs with mutual TLS on them: throughput, p99, and
    the CPU time of the three servers per request (less sensitive to other load on the
    machine than the rates)."""
    pki = tempfile.mkdtemp(prefix="keel-cbench-pki-")
    try:
        subprocess.run([KEEL, "cert", "init", "--dir", pki, "--cluster", "keel"], check=True, capture_output=True)
        for i in range(3):
            subprocess.run([KEEL, "cert", "issue", "--node", str(i + 1), "--dir", pki], check=True, capture_output=True)
        names = ["plaintext", "mTLS"]
        systems = [lambda: KeelCluster(2), lambda: KeelCluster(2, pki=pki)]
        results = {}
        for rnd in range(ROUNDS):
            for name, make in zip(names, systems):
                with make() as s:
                    for test in ("set", "get"):
                        for pl in (1, 16):
                            cpu0 = cpu_seconds(s.procs)
                            rps, p50, p99 = bench(s.ports[0], test, pl)
                            us = (cpu_seconds(s.procs) - cpu0) * 1e6 / (REQUESTS * (4 if pl > 1 else 1))
                            results.setdefault((name, test, pl), []).append((rps, p50, p99, us))
                            print("round %d keel W2/R2 %-9s %-3s -P %-2d %10.0f ops/s  p50 %.3f ms  p99 %.3f ms  "
                                  "server CPU %.2f us/op" % (rnd + 1, name, test.upper(), pl, rps, p50, p99, us),
                                  flush=True)
        print()
        print("| command | -P | plaintext peers ops/s | mTLS peers ops/s | ratio | p99 ms plaintext / mTLS "
              "| server CPU us/op plaintext / mTLS |")
        print("|---|---|---|---|---|---|---|")
        for test in ("set", "get"):
            for pl in (1, 16):
                med = {n: statistics.median(x[0] for x in results[(n, test, pl)]) for n in names}
                p99 = {n: statistics.median(x[2] for x in results[(n, test, pl)]) for n in names}
                cpu = {n: statistics.median(x[3] for x in results[(n, test, pl)]) for n in names}
                print("| %s | %d | %.0f | %.0f | %.2fx | %.2f / %.2f | %.2f / %.2f |" %
                      (test.upper(), pl, med["plaintext"], med["mTLS"], med["mTLS"] / med["plaintext"],
                       p99["plaintext"], p99["mTLS"], cpu["plaintext"], cpu["mTLS"]))
    finally:
        shutil.rmtree(pki, ignore_errors=True)


def main():
    for b in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(b):
            sys.exit("%s not found: run scripts/deps.sh bench" % b)
    if os.environ.get("CLUSTER_BENCH_PEER_TLS") == "1":
        peer_tls_main()
        return
    results = {}
    systems = [lambda: RedisCluster(0), lambda: RedisCluster(1), lambda: KeelCluster(2), lambda: KeelCluster(1)]
    names = ["redis-cluster", "redis-cluster R1", "keel W2/R2", "keel W1/R2"]
    for rnd in range(ROUNDS):
        for name, make in zip(names, systems):
            with make() as s:
                for test in ("set", "get"):
                    for pl in (1, 16):
                        cpu0 = cpu_seconds(s.procs)
                        rps, p50, p99 = bench(s.ports[0], test, pl)
                        us = (cpu_seconds(s.procs) - cpu0) * 1e6 / (REQUESTS * (4 if pl > 1 else 1))
                        results.setdefault((name, test, pl), []).append((rps, p50, p99, us))
                        print("round %d %-16s %-3s -P %-2d %10.0f ops/s  p50 %.3f ms  p99 %.3f ms  server CPU %.2f us/op" %
                              (rnd + 1, name, test.upper(), pl, rps, p50, p99, us), flush=True)
    print()
    print("Redis Cluster: 3 masters without replicas (R0), and with one asynchronous replica each (R1: two copies")
    print("of every key, as keel's replicas = 2). Ratios are keel / Redis Cluster R0 and keel / Redis Cluster R1.")
    print()
    print("| command | -P | Redis R0 ops/s | Redis R1 ops/s | keel W2 ops/s | W2/R0 | W2/R1 | keel W1 ops/s | W1/R0 | W1/R1 "
          "| p99 ms R0 / R1 / W2 / W1 | server CPU us/op R0 / R1 / W2 / W1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for test in ("set", "get"):
        for pl in (1, 16):
            med = {n: statistics.median(x[0] for x in results[(n, test, pl)]) for n in names}
            p99 = {n: statistics.median(x[2] for x in results[(n, test, pl)]) for n in names}
            cpu = {n: statistics.median(x[3] for x in results[(n, test, pl)]) for n in names}
            r0, r1 = med["redis-cluster"], med["redis-cluster R1"]
            w2, w1 = med["keel W2/R2"], med["keel W1/R2"]
            print("| %s | %d | %.0f | %.0f | %.0f | %.2fx | %.2fx | %.0f | %.2fx | %.2fx | %s | %s |" %
                  (test.upper(), pl, r0, r1, w2, w2 / r0, w2 / r1, w1, w1 / r0, w1 / r1,
                   " / ".join("%.2f" % p99[n] for n in names), " / ".join("%.2f" % cpu[n] for n in names)))
    times = [failover_time() for _ in range(FAILOVERS)]
    print()
    print("failover (kill -9 to the first successful write on the victim's key), %d runs: median %.2f s (%s)" %
          (len(times), statistics.median(times), ", ".join("%.2f" % t for t in times)))
    print("rebalancing speed: measured by bench/cluster/rebalance_bench.py (a 4th node joining under load)")


if __name__ == "__main__":
    main()
