"""A network partition through the distributed hash map, checked for linearizability.

Three keel nodes, each in its own network namespace, joined by veth pairs to a bridge (the
test creates and removes them; it needs root and `ip netns`, and is skipped with the reason
otherwise). A partition is a pair of blackhole routes inside the namespaces: every link
between the two sides — Rabia's and the data plane's — is cut, while the test's clients (in
the root namespace, on the bridge) still reach every node.

Clients on every node read and write a few keys (every write a unique value) before, during
and after the minority node (node 3) is cut off for KEEL_FAULT_PARTITIONS[0] seconds (default
5). The recorded history — including reads, so a deposed primary serving a stale read is
caught — goes through keel_lincheck (the simulator's Wing–Gong checker). Also asserted: the
majority keeps acknowledging writes during the partition, and nothing written through the
isolated node is acknowledged while it is cut off. Figures are printed, never asserted.
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import KEEL_BIN, Keel, wait_cluster_ok  # noqa: E402

PARTITIONS = [float(x) for x in os.environ.get("KEEL_FAULT_PARTITIONS", "5").split(",") if x.strip()]
LINCHECK = os.environ.get("KEEL_LINCHECK") or os.path.join(
    os.path.dirname(os.path.abspath(KEEL_BIN)), "..", "..", "tests", "sim", "keel_lincheck")
PEER_PORT = 7100


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def netns_unavailable():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("ip"):
        return "needs iproute2's ip"
    name = "keelprobe%d" % os.getpid()
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "del", name)
    except Exception as e:  # noqa: BLE001
        return "ip netns does not work here: %s" % e
    return None


class NetnsCluster:
    def __init__(self, n=3):
        self.n = n
        tag = os.getpid() % 100000
        self.subnet = "10.77.%d" % (20 + tag % 200)
        self.bridge = "kbr%d" % tag
        self.ns = ["keel%d-%d" % (tag, i + 1) for i in range(n)]
        self.ips = ["%s.%d" % (self.subnet, i + 1) for i in range(n)]
        self.root = tempfile.mkdtemp(prefix="keel-netsplit-")
        self.routes = []
        self.nodes = []
        self.made = []

    def start(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", self.subnet + ".254/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        peers = ",".join("%d@%s:%d" % (i + 1, ip, PEER_PORT) for i, ip in enumerate(self.ips))
        for i, ns in enumerate(self.ns):
            host_end, ns_end = "%sh%d" % (self.bridge, i + 1), "%sn%d" % (self.bridge, i + 1)
            sh("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            self.made.append(("link", host_end))
            sh("ip", "link", "set", ns_end, "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            sh("ip", "-n", ns, "addr", "add", self.ips[i] + "/24", "dev", ns_end)
            sh("ip", "-n", ns, "link", "set", ns_end, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            d = os.path.join(self.root, "n%d" % (i + 1))
            os.makedirs(d)
            self.nodes.append(Keel(
                "--engine", "memory", "--shards", "2", "--bind", self.ips[i], "--node-id", str(i + 1),
                "--peer-port", str(PEER_PORT), "--peers", peers,
                "--set", "cluster.request_timeout_ms=1000", "--set", "cluster.heartbeat_ms=50",
                "--set", "cluster.suspect_after_ms=300", "--set", "cluster.dead_after_ms=1000",
                "--set", "dht.replicas=2", "--set", "dht.write_quorum=2",
                data_dir=d, prefix=("ip", "netns", "exec", ns)))
        for k in self.nodes:
            k.start()
        for i in range(self.n):
            self.wait_ok(i, 30)
        return self

    def client(self, i, timeout=3):
        return redis.Redis(host=self.ips[i], port=self.nodes[i].port, socket_timeout=timeout,
                           socket_connect_timeout=timeout)

    def wait_ok(self, i, limit):
        wait_cluster_ok(lambda: self.client(i), "node %d" % (i + 1), self.nodes[i].output, limit)

    def cut(self, side_a, side_b):
        for a in side_a:
            for b in side_b:
                for x, y in ((a, b), (b, a)):
                    sh("ip", "-n", self.ns[x], "route", "add", "blackhole", self.ips[y] + "/32")
                    self.routes.append((x, y))

    def heal(self):
        for x, y in self.routes:
            sh("ip", "-n", self.ns[x], "route", "del", "blackhole", self.ips[y] + "/32")
        self.routes = []

    def cleanup(self):
        for k in self.nodes:
            try:
                k.cleanup()
            except Exception:  # noqa: BLE001
                pass
        for kind, name in reversed(self.made):
            subprocess.run(["ip", kind, "del", name] if kind == "link" else ["ip", "netns", "del", name],
                           capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class History:
    """Operations as keel_lincheck reads them; definite refusals are left out."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []  # (key, client, kind, value, invoke, complete or None, node)
        self.errors = {}

    def add(self, *op):
        with self.lock:
            self.ops.append(op)

    def error(self, text):
        with self.lock:
            self.errors[text] = self.errors.get(text, 0) + 1


# Errors that say the command did not run: left out of the history.
DEFINITE = ("TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK")


def worker(c, node, client_id, keys, hist, stop):
    cl = c.client(node)
    rng = random.Random(client_id)
    seq = 0
    while not stop.is_set():
        key = rng.choice(keys)
        write = rng.random() < 0.5
        seq += 1
        value = client_id * 1000000 + seq
        t0 = time.monotonic_ns()
        try:
            if write:
                cl.set(key, str(value))
                hist.add(key, client_id, "w", value, t0, time.monotonic_ns(), node)
            else:
                got = cl.get(key)
                hist.add(key, client_id, "r", int(got) if got is not None else 0, t0, time.monotonic_ns(), node)
        except redis.ResponseError as e:
            text = str(e)
            hist.error(text.split(" ")[0])
            if write and not text.startswith(DEFINITE):
                hist.add(key, client_id, "w", value, t0, None, node)  # outcome unknown
            if not text.startswith(DEFINITE):
                time.sleep(0.02)
        except redis.RedisError as e:  # connection lost or timed out: outcome unknown
            hist.error(type(e).__name__)
            if write:
                hist.add(key, client_id, "w", value, t0, None, node)
            time.sleep(0.05)
            cl = c.client(node)


NO_NETNS = netns_unavailable()


@unittest.skipIf(NO_NETNS, NO_NETNS)
class NetsplitTest(unittest.TestCase):
    def test_minority_cut_off_history_is_linearizable(self):
        seconds = PARTITIONS[0]
        c = NetnsCluster().start()
        try:
            keys = ["nk%d" % i for i in range(10)]
            hist = History()
            stop = threading.Event()
            threads = [threading.Thread(target=worker, args=(c, node, 1 + node * 2 + j, keys, hist, stop))
                       for node in range(3) for j in range(2)]
            for t in threads:
                t.start()
            time.sleep(2)
            iso = 2
            c.cut([iso], [0, 1])
            cut_at = time.monotonic_ns()
            time.sleep(seconds)
            c.heal()
            heal_at = time.monotonic_ns()
            time.sleep(5)
            stop.set()
            for t in threads:
                t.join()
            path = os.path.join(c.root, "history.txt")
            with open(path, "w") as f:
                for key, client, kind, value, inv, comp, _ in hist.ops:
                    f.write("%s %d %s %d %d %s\n" % (key, client, kind, value, inv, "never" if comp is None else comp))
            check = subprocess.run([LINCHECK, path], capture_output=True, text=True, timeout=600)
            margin = 500 * 1000000
            majority_acked = [o for o in hist.ops if o[2] == "w" and o[5] is not None and o[6] != iso
                              and o[4] > cut_at + 2 * margin and o[5] < heal_at]
            isolated_acked = [o for o in hist.ops if o[2] == "w" and o[5] is not None and o[6] == iso
                              and o[4] > cut_at + margin and o[5] < heal_at]
            after = [o[5] for o in hist.ops if o[2] == "w" and o[5] is not None and o[6] == iso and o[4] > heal_at]
            print("netsplit %.0f s: %d operations recorded (%d writes with unknown outcome); majority acknowledged "
                  "%d writes while node 3 was cut off, node 3 acknowledged %d; heal -> first write through node 3: %s; "
                  "errors %s; %s" % (
                      seconds, len(hist.ops), sum(1 for o in hist.ops if o[5] is None), len(majority_acked),
                      len(isolated_acked),
                      "%.2f s" % ((min(after) - heal_at) / 1e9) if after else "none",
                      hist.errors, check.stdout.strip().splitlines()[-1] if check.stdout else check.stderr))
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
            self.assertGreater(len(majority_acked), 0)
            self.assertEqual(isolated_acked, [])
        finally:
            c.cleanup()


if __name__ == "__main__":
    unittest.main()
