#!/usr/bin/env python3
"""A long list used as a queue on a replicated cluster: keel vs Redis Cluster, side by side.

Each system gets one list of SIZE elements (32 bytes each) and one empty list, in one slot
served by one primary; then redis-benchmark pushes and pops on each (50 clients, -P 16): RPUSH
then LPOP, the pops taking back what the pushes added. A change to a list must cost the same
whatever the list's length: Redis replicates the command, keel the elements the change touched
(a patch guarded by the list's change number, docs/dht.md). Prints ops/s, the long/empty ratio
per system (1.0 = the length costs nothing) and keel / Redis, and the bytes keel's replicas
received per change (keel_dht_replicated_bytes_total).

Systems: keel 3 nodes, replicas 2, write quorum 2 (memory engine); Redis Cluster 3 masters
with one asynchronous replica each.

Usage: bench/cluster/big_list_bench.py BUILD_DIR
Environment: BIG_LIST_SIZE=100000 BIG_LIST_REQUESTS=200000 BIG_LIST_ROUNDS=1
"""
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster_bench import KeelCluster, RedisCluster, cli  # noqa: E402

SIZE = int(os.environ.get("BIG_LIST_SIZE", "100000"))
REQUESTS = int(os.environ.get("BIG_LIST_REQUESTS", "200000"))
ROUNDS = int(os.environ.get("BIG_LIST_ROUNDS", "1"))
BIG, EMPTY = "{q}big", "{q}empty"  # one slot, so one primary serves both


def primary_port(ports):
    """The port of the node that serves the lists' slot (asked of the first node)."""
    slot = int(cli(ports[0], "cluster", "keyslot", BIG).strip())
    out = subprocess.run(["redis-cli", "-p", str(ports[0]), "--csv", "cluster", "slots"],
                         capture_output=True, text=True, timeout=30).stdout
    # redis-cli --csv flattens CLUSTER SLOTS: lo,hi,"host",port,"id",...
    for line in out.splitlines():
        f = next(csv.reader(io.StringIO(line)))
        i = 0
        while i + 3 < len(f):
            if f[i].isdigit() and f[i + 1].isdigit() and int(f[i]) <= slot <= int(f[i + 1]):
                return int(f[i + 3])
            i += 1
    raise RuntimeError("no node serves slot %d:\n%s" % (slot, out))


def fill(port):
    """SIZE elements into BIG through one pipelined redis-cli session."""
    element = "x" * 32
    script = "".join("RPUSH %s %s\n" % (BIG, " ".join([element] * 1000)) for _ in range(SIZE // 1000))
    subprocess.run(["redis-cli", "-p", str(port)], input=script, capture_output=True, text=True,
                   timeout=600, check=True)
    n = int(cli(port, "llen", BIG).strip())
    if n != SIZE:
        raise RuntimeError("the list holds %d elements, expected %d" % (n, SIZE))


def bench(port, *command):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(REQUESTS), "-c", "50", "-P", "16",
                          "--csv"] + list(command), capture_output=True, text=True, timeout=1200).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if not rows:
        raise RuntimeError("redis-benchmark gave no result:\n" + out)
    return float(rows[-1][1])


def replicated_bytes(cluster):
    """keel: the sum of keel_dht_replicated_bytes_total over the nodes (None for Redis)."""
    if not hasattr(cluster, "http_ports"):
        return None
    total = 0.0
    for p in cluster.http_ports:
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % p, timeout=10).read().decode()
        for line in body.splitlines():
            if line.startswith("keel_dht_replicated_bytes_total "):
                total += float(line.split()[1])
    return total


def main():
    for b in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(b):
            sys.exit("%s not found: run scripts/deps.sh bench" % b)
    names = ["redis-cluster R1", "keel W2/R2"]
    makers = [lambda: RedisCluster(1), lambda: KeelCluster(2)]
    results = {}
    per_change = []
    for rnd in range(ROUNDS):
        for name, make in zip(names, makers):
            with make() as s:
                port = primary_port(s.ports)
                fill(port)
                for key in (BIG, EMPTY):
                    for cmd in (("RPUSH", key, "y" * 32), ("LPOP", key)):
                        b0 = replicated_bytes(s)
                        rps = bench(port, *cmd)
                        b1 = replicated_bytes(s)
                        results.setdefault((name, key, cmd[0]), []).append(rps)
                        extra = ""
                        if b0 is not None:
                            # Replication is asynchronous to the counter: let the replicas finish.
                            time.sleep(1)
                            b1 = replicated_bytes(s)
                            per_change.append((key, cmd[0], (b1 - b0) / REQUESTS))
                            extra = "  replicas received %.0f bytes per change" % ((b1 - b0) / REQUESTS)
                        print("round %d %-17s %-6s %-10s %10.0f ops/s%s" % (rnd + 1, name, cmd[0], key, rps, extra),
                              flush=True)
                if int(cli(port, "llen", BIG).strip()) != SIZE:
                    raise RuntimeError("%s: the long list did not come back to %d elements" % (name, SIZE))
    print()
    print("A list of %d elements (32 bytes each) vs an empty one, redis-benchmark -c 50 -P 16 -n %d on the"
          % (SIZE, REQUESTS))
    print("primary of their slot. long/empty: what the length costs (1.00 = nothing); keel/Redis on the long list.")
    print()
    print("| command | Redis R1 empty | Redis R1 long | long/empty | keel W2 empty | keel W2 long | long/empty "
          "| keel/Redis (long) |")
    print("|---|---|---|---|---|---|---|---|")
    for cmd in ("RPUSH", "LPOP"):
        m = {(n, k): statistics.median(results[(n, k, cmd)]) for n in names for k in (BIG, EMPTY)}
        r_e, r_l = m[(names[0], EMPTY)], m[(names[0], BIG)]
        k_e, k_l = m[(names[1], EMPTY)], m[(names[1], BIG)]
        print("| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f | %.2fx |" %
              (cmd, r_e, r_l, r_l / r_e, k_e, k_l, k_l / k_e, k_l / r_l))
    for key, cmd, b in per_change:
        print("keel: %s on %s: the replicas received %.0f bytes per change" % (cmd, key, b))


if __name__ == "__main__":
    main()
