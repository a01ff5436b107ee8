"""Network partitions between real keel processes (3 nodes on loopback, a blackholing proxy on
every peer link; see faultproxy.py).

- Heal -> rejoin: one node is cut off for N seconds (KEEL_FAULT_PARTITIONS, default "5"; `make
  fault` runs "5,20"), then the partition heals. The isolated node refuses writes definitely
  while cut off (503 UNAVAILABLE), the majority keeps writing, and after the heal the isolated
  node is back in quorum and writes through it succeed. The time from heal to rejoin is printed
  (it is measured, never asserted: see docs/benchmarks.md).
- Unknown outcome: a write submitted just before its node is cut off is answered 504
  DEADLINE_EXCEEDED ("outcome unknown"), never the definite 503; after the heal every node
  agrees on whether it was applied.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Keel, free_port, http  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

PARTITIONS = [float(x) for x in os.environ.get("KEEL_FAULT_PARTITIONS", "5").split(",") if x.strip()]


class ProxiedCluster:
    """n nodes with default failure-detector and request-timeout settings; every peer link
    goes through the proxy."""

    def __init__(self, n=3):
        self.n = n
        self.root = tempfile.mkdtemp(prefix="keel-fault-")
        self.proxy = FaultProxy()
        self.peer_ports = [free_port() for _ in range(n)]
        self.nodes = []
        for i in range(n):
            peers = []
            for j in range(n):
                port = self.peer_ports[j] if i == j else self.proxy.add_link(i + 1, j + 1, self.peer_ports[j])
                peers.append("%d@127.0.0.1:%d" % (j + 1, port))
            d = os.path.join(self.root, "n%d" % (i + 1))
            os.makedirs(d)
            self.nodes.append(Keel("--engine", "memory", "--shards", "1", "--node-id", str(i + 1),
                                   "--peer-port", str(self.peer_ports[i]), "--peers", ",".join(peers), data_dir=d))

    def start(self):
        for k in self.nodes:
            k.start()
        for i in range(self.n):
            self.wait_quorum(i, 30)
        return self

    def port(self, i):
        return self.nodes[i].http_port

    def status(self, i):
        st, body = http("GET", self.port(i), "/v1/cluster/status")
        return body if st == 200 else {}

    def wait_quorum(self, i, limit):
        """Seconds until node i reports quorum with every member connected and alive, or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            s = self.status(i)
            if s.get("quorum") and all(m["connected"] and m["status"] == "alive" for m in s["members"]):
                return time.monotonic() - t0
            time.sleep(0.02)
        return None

    def partition(self, i):
        self.proxy.partition(i + 1, [j + 1 for j in range(self.n) if j != i])

    def heal(self):
        self.proxy.heal()

    def cleanup(self):
        for k in self.nodes:
            try:
                k.cleanup()
            except Exception:
                pass
        self.proxy.close()
        shutil.rmtree(self.root, ignore_errors=True)


class PartitionTest(unittest.TestCase):
    def setUp(self):
        self.c = ProxiedCluster().start()

    def tearDown(self):
        self.c.cleanup()

    def wait_write(self, i, key, limit):
        """Seconds until a PUT through node i succeeds (retrying refusals), and the last answer."""
        t0 = time.monotonic()
        st, body = None, None
        while time.monotonic() - t0 < limit:
            st, body = http("PUT", self.c.port(i), "/v1/meta/" + key, b"v")
            if st == 200:
                return time.monotonic() - t0, (st, body)
            self.assertIn(st, (503, 504), body)  # refused or unknown while rejoining, nothing else
            time.sleep(0.02)
        return None, (st, body)

    def test_isolated_node_rejoins_after_heal(self):
        iso = 2
        figures = []
        for n, seconds in enumerate(PARTITIONS):
            st, body = http("PUT", self.c.port(iso), "/v1/meta/before-%d" % n, b"1")
            self.assertEqual(st, 200, body)
            self.c.partition(iso)
            cut_at = time.monotonic()
            # Once its failure detector suspects the others, the isolated node refuses writes
            # definitely: 503 UNAVAILABLE, "no quorum", nothing applied.
            refused, tries = None, 0
            while time.monotonic() - cut_at < seconds - 0.5:
                tries += 1
                refused_key = "refused-%d-%d" % (n, tries)
                st, body = http("PUT", self.c.port(iso), "/v1/meta/" + refused_key, b"x")
                self.assertNotEqual(st, 200, body)
                if st == 503:
                    refused = body
                    break
                self.assertEqual(st, 504, body)  # submitted before the others were suspected
            self.assertIsNotNone(refused, "the isolated node never refused a write during the partition")
            self.assertEqual(refused["error"]["code"], "UNAVAILABLE")
            self.assertIn("no quorum", refused["error"]["message"])
            self.assertIn("not applied", refused["error"]["message"])
            # The majority keeps serving.
            st, body = http("PUT", self.c.port(0), "/v1/meta/during-%d" % n, b"majority")
            self.assertEqual(st, 200, body)
            time.sleep(max(0.0, seconds - (time.monotonic() - cut_at)))
            self.c.heal()
            healed_at = time.monotonic()
            rejoin = self.c.wait_quorum(iso, 120)
            self.assertIsNotNone(rejoin, "node %d did not rejoin within 120 s of the heal: %s" % (iso + 1, self.c.status(iso)))
            w, last = self.wait_write(iso, "after-%d" % n, 120)
            self.assertIsNotNone(w, "no write through node %d succeeded within 120 s of the heal: %s" % (iso + 1, last))
            write_after_heal = time.monotonic() - healed_at
            st, body = http("GET", self.c.port(iso), "/v1/meta/during-%d" % n)
            self.assertEqual((st, body.get("value")), (200, "majority"), body)
            st, body = http("GET", self.c.port(iso), "/v1/meta/" + refused_key)
            self.assertEqual(st, 404, body)  # a definite refusal was never applied
            figures.append((seconds, rejoin, write_after_heal))
            for i in range(3):
                self.assertIsNotNone(self.c.wait_quorum(i, 30))
        for seconds, rejoin, write in figures:
            print("\nfault: %.0f s partition of node %d: heal -> quorum %.2f s, heal -> first write through it %.2f s"
                  % (seconds, iso + 1, rejoin, write), flush=True)
        s = self.c.status(iso)
        print("fault: node %d links after the heals: %s" % (iso + 1, json.dumps(
            [{k: m.get(k) for k in ("id", "connected", "status")} for m in s["members"]])), flush=True)

    def test_write_submitted_before_the_cut_has_unknown_outcome(self):
        iso = 0
        answers = []
        for attempt in range(3):
            key = "unknown-%d" % attempt
            self.c.partition(iso)
            # Sent at once: the node still counts its peers (nothing missed yet), so it submits
            # the write, which then cannot be decided: the outcome is unknown.
            st, body = http("PUT", self.c.port(iso), "/v1/meta/" + key, b"maybe")
            answers.append((st, body))
            self.c.heal()
            self.assertIsNotNone(self.c.wait_quorum(iso, 120))
            if st == 504:
                break
            self.assertEqual(st, 503, body)  # lost the race with the failure detector: refused
        st, body = answers[-1]
        self.assertEqual(st, 504, answers)
        self.assertEqual(body["error"]["code"], "DEADLINE_EXCEEDED")
        self.assertIn("outcome unknown", body["error"]["message"])
        self.assertIn("may still be applied", body["error"]["message"])
        # After the heal every node gives the same linearizable answer about that write.
        st, probe = http("PUT", self.c.port(1), "/v1/meta/after-unknown", b"1")
        self.assertEqual(st, 200, probe)
        seen = set()
        for i in range(3):
            st, got = http("GET", self.c.port(i), "/v1/meta/" + key)
            self.assertIn(st, (200, 404), got)
            seen.add((st, got.get("value")))
        self.assertEqual(len(seen), 1, seen)
        print("\nfault: write answered 504 %s after the heal" % ("was applied" if (200, "maybe") in seen else "was not applied"),
              flush=True)


if __name__ == "__main__":
    unittest.main()
