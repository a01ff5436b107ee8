"""Three real keel processes on loopback forming a metadata cluster (Rabia over TCP).

A write through any node is readable on all; kill -9 of one node under load leaves writes
working; the node restarts and catches up; with two of three down writes fail fast with
"no quorum" and work again once a node returns; no acknowledged write is ever lost.
"""
import os
import signal
import random
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import KEEL_BIN, Keel, free_port, http


class Cluster:
    def __init__(self, n=3):
        self.root = tempfile.mkdtemp(prefix="keel-cluster-it-")
        self.peer_ports = [free_port() for _ in range(n)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.peer_ports))
        self.nodes = []
        for i in range(n):
            d = os.path.join(self.root, "n%d" % (i + 1))
            os.makedirs(d)
            self.nodes.append(Keel("--engine", "memory", "--shards", "1", "--node-id", str(i + 1),
                                   "--peer-port", str(self.peer_ports[i]), "--peers", peers,
                                   "--set", "cluster.request_timeout_ms=3000",
                                   "--set", "cluster.heartbeat_ms=50",
                                   "--set", "cluster.suspect_after_ms=300",
                                   "--set", "cluster.dead_after_ms=1000", data_dir=d))

    def start(self):
        for k in self.nodes:
            k.start()
        self.wait_quorum(range(len(self.nodes)))
        return self

    def wait_quorum(self, idx, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            ok = True
            for i in idx:
                st, body = http("GET", self.nodes[i].http_port, "/v1/cluster/status")
                ok = ok and st == 200 and body.get("quorum")
            if ok:
                return
            time.sleep(0.05)
        raise AssertionError("cluster did not reach quorum")

    def port(self, i):
        return self.nodes[i].http_port

    def cleanup(self):
        for k in self.nodes:
            try:
                k.cleanup()
            except Exception:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def put_retry(port, key, value, limit=30):
    """PUT, retrying while the answer is 503 (no quorum yet) or 504 (outcome unknown: the same
    PUT again is harmless); bounded."""
    deadline = time.time() + limit
    while True:
        st, body = http("PUT", port, "/v1/meta/" + key, value.encode())
        if st not in (503, 504) or time.time() > deadline:
            return st, body
        time.sleep(0.05)


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster().start()

    def tearDown(self):
        self.c.cleanup()

    def test_write_through_any_node_is_readable_on_all(self):
        for i in range(3):
            st, body = http("PUT", self.c.port(i), "/v1/meta/svc/n%d" % i, b"written-by-%d" % i)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["version"], 1)
        for j in range(3):
            for i in range(3):
                st, body = http("GET", self.c.port(j), "/v1/meta/svc/n%d" % i)
                self.assertEqual(st, 200, body)
                self.assertEqual(body["value"], "written-by-%d" % i)
            st, body = http("GET", self.c.port(j), "/v1/meta?prefix=svc/")
            self.assertEqual([x["key"] for x in body["items"]], ["svc/n0", "svc/n1", "svc/n2"])
        # Compare-and-set through another node: stale version refused, current accepted.
        st, body = http("PUT", self.c.port(1), "/v1/meta/svc/n0?prev_version=7", b"x")
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "CONFLICT")
        st, body = http("PUT", self.c.port(2), "/v1/meta/svc/n0?prev_version=1", b"v2")
        self.assertEqual((st, body["version"]), (200, 2), body)
        # Watch from a revision sees the put, on a third node.
        st, w = http("GET", self.c.port(0), "/v1/meta/watch?prefix=svc/n0&from_revision=%d&timeout_ms=100" % body["revision"])
        self.assertEqual(st, 200, w)
        self.assertEqual([e["kv"]["value"] for e in w["events"]], ["v2"])
        st, s = http("GET", self.c.port(0), "/v1/cluster/status")
        self.assertEqual(s["health"], "ok")
        self.assertEqual(sorted(m["id"] for m in s["members"]), [1, 2, 3])
        self.assertGreater(s["next_slot"], 0)

    def test_kill9_under_load_restart_catch_up_and_no_lost_write(self):
        acked = {}
        lock = threading.Lock()
        stop = threading.Event()
        alive = [0, 1, 2]
        errors = []

        def writer(w):
            n = 0
            while not stop.is_set():
                key = "load/w%d-%d" % (w, n)
                target = random.choice(alive)
                try:
                    st, body = http("PUT", self.c.port(target), "/v1/meta/" + key, key.encode(), timeout=5)
                except OSError:
                    continue  # the node died under us: outcome unknown, not acknowledged
                if st == 200:
                    with lock:
                        acked[key] = time.time()
                    n += 1
                elif st == 504:
                    # Submitted but not decided in time (a member died mid-slot): outcome
                    # unknown, never acknowledged, and never the definite 503.
                    if body["error"]["code"] != "DEADLINE_EXCEEDED" or "outcome unknown" not in body["error"]["message"]:
                        errors.append((st, body))
                elif st != 503 or body["error"]["code"] != "UNAVAILABLE":
                    errors.append((st, body))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        alive.remove(2)
        self.c.nodes[2].kill9()
        killed_at = time.time()
        time.sleep(1.5)
        with lock:
            after_kill = sum(1 for t in acked.values() if t > killed_at + 0.2)
        self.assertGreater(after_kill, 0, "no write succeeded with one node down")
        # Node 3 comes back from its record log and catches up while the load goes on.
        self.c.nodes[2].start()
        alive.append(2)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreater(len(acked), 10)
        # Every acknowledged write is present on every node, including the restarted one.
        for i in range(3):
            st, body = http("GET", self.c.port(i), "/v1/meta?prefix=load/&limit=10000")
            self.assertEqual(st, 200, body)
            have = {x["key"]: x["value"] for x in body["items"]}
            missing = [k for k in acked if have.get(k) != k]
            self.assertEqual(missing, [], "node %d lost acknowledged writes" % (i + 1))

    def test_two_down_fail_fast_with_no_quorum_then_recover(self):
        st, body = http("PUT", self.c.port(0), "/v1/meta/before", b"1")
        self.assertEqual(st, 200, body)
        self.c.nodes[1].kill9()
        self.c.nodes[2].kill9()
        # The links close at once; the write is refused with a clear error, not left hanging.
        st, body, key = None, None, None
        for k in range(100):
            key = "during-%d" % k
            st, body = http("PUT", self.c.port(0), "/v1/meta/" + key, b"2")
            if st not in (200, 504):  # 504: submitted before the links were seen closed
                break
            time.sleep(0.05)
        self.assertEqual(st, 503, body)
        self.assertEqual(body["error"]["code"], "UNAVAILABLE")
        self.assertIn("no quorum", body["error"]["message"])
        self.assertIn("not applied", body["error"]["message"])
        # A definite refusal: the write never appears, also once a majority is back.
        st, s = http("GET", self.c.port(0), "/v1/cluster/status")
        self.assertEqual(s["health"], "no_quorum")
        # One node returns: a majority again, writes succeed, the earlier write is still there.
        self.c.nodes[1].start()
        st, body = put_retry(self.c.port(0), "after", "3")
        self.assertEqual(st, 200, body)
        for i in (0, 1):
            st, body = http("GET", self.c.port(i), "/v1/meta/before")
            self.assertEqual((st, body.get("value")), (200, "1"), body)
            st, body = http("GET", self.c.port(i), "/v1/meta/" + key)
            self.assertEqual(st, 404, body)


class ReconfigurationTest(unittest.TestCase):
    """keel cluster join/leave: decided reconfigurations, effective from the next slot."""

    def setUp(self):
        self.c = Cluster().start()
        self.extra = None

    def tearDown(self):
        if self.extra:
            self.extra.cleanup()
        self.c.cleanup()

    def wait_config(self, i_port, members, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            st, s = http("GET", i_port, "/v1/cluster/status")
            if st == 200 and s["config_members"] == members:
                return s
            time.sleep(0.05)
        self.fail("configuration %s not reached on port %d: %s" % (members, i_port, s))

    def start_fourth(self):
        p4 = free_port()
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.c.peer_ports))
        d = os.path.join(self.c.root, "n4")
        os.makedirs(d)
        self.extra = Keel("--engine", "memory", "--shards", "1", "--node-id", "4", "--peer-port", str(p4),
                          "--peers", peers + ",4@127.0.0.1:%d" % p4, "--join", "yes", data_dir=d).start()
        return p4

    def cluster_cmd(self, *args):
        return subprocess.run([KEEL_BIN, "cluster"] + list(args), capture_output=True, text=True, timeout=60)

    def test_a_leaver_that_missed_its_removal_still_learns_it(self):
        # Node 4 is frozen while the others remove it: it takes no part in the decision and its
        # links look dead. Once it runs again it must still learn that it left (the members keep
        # answering it for a grace period) instead of believing itself a member forever.
        p4 = self.start_fourth()
        j = self.cluster_cmd("join", "--http", "127.0.0.1:%d" % self.c.port(0), "--id", "4",
                             "--address", "127.0.0.1:%d" % p4)
        self.assertEqual(j.returncode, 0, j.stdout + j.stderr)
        self.wait_config(self.extra.http_port, [1, 2, 3, 4])
        os.kill(self.extra.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(3.5)  # past cluster.dead_after_ms: the members give up on its links
            lv = self.cluster_cmd("leave", "--http", "127.0.0.1:%d" % self.c.port(1), "--id", "4")
            self.assertEqual(lv.returncode, 0, lv.stdout + lv.stderr)
            self.wait_config(self.c.port(0), [1, 2, 3])
            st, body = http("PUT", self.c.port(2), "/v1/meta/while-4-frozen", b"1")
            self.assertEqual(st, 200, body)
        finally:
            os.kill(self.extra.proc.pid, signal.SIGCONT)
        s = self.wait_config(self.extra.http_port, [1, 2, 3])
        self.assertEqual(s["config_epoch"], 2)
        st, body = http("PUT", self.extra.http_port, "/v1/meta/y", b"1")
        self.assertEqual(st, 503, body)
        self.assertIn("not a member", body["error"]["message"])

    def test_join_then_leave(self):
        st, body = http("PUT", self.c.port(0), "/v1/meta/before-join", b"old")
        self.assertEqual(st, 200, body)
        p4 = free_port()
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.c.peer_ports))
        d = os.path.join(self.c.root, "n4")
        os.makedirs(d)
        self.extra = Keel("--engine", "memory", "--shards", "1", "--node-id", "4", "--peer-port", str(p4),
                          "--peers", peers + ",4@127.0.0.1:%d" % p4, "--join", "yes", data_dir=d).start()
        st, s = http("GET", self.extra.http_port, "/v1/cluster/status")
        self.assertEqual(s["config_members"], [1, 2, 3])  # a learner until it is added
        st, body = http("PUT", self.extra.http_port, "/v1/meta/x", b"1")
        self.assertEqual(st, 503, body)
        self.assertIn("not a member", body["error"]["message"])

        j = subprocess.run([KEEL_BIN, "cluster", "join", "--http", "127.0.0.1:%d" % self.c.port(1), "--id", "4",
                            "--address", "127.0.0.1:%d" % p4], capture_output=True, text=True, timeout=60)
        self.assertEqual(j.returncode, 0, j.stdout + j.stderr)
        self.assertIn("node 4 joined; configuration epoch 1, members [1,2,3,4]", j.stdout)
        s = self.wait_config(self.extra.http_port, [1, 2, 3, 4])
        self.assertEqual(s["config_epoch"], 1)
        st, body = put_retry(self.extra.http_port, "written-by-4", "new")
        self.assertEqual(st, 200, body)
        st, body = http("GET", self.c.port(0), "/v1/meta/written-by-4")
        self.assertEqual((st, body.get("value")), (200, "new"), body)
        st, body = http("GET", self.extra.http_port, "/v1/meta/before-join")
        self.assertEqual((st, body.get("value")), (200, "old"), body)
        again = subprocess.run([KEEL_BIN, "cluster", "join", "--http", "127.0.0.1:%d" % self.c.port(0), "--id", "4",
                                "--address", "127.0.0.1:%d" % p4], capture_output=True, text=True, timeout=60)
        self.assertEqual(again.returncode, 1)
        self.assertIn("already a member", again.stderr)

        lv = subprocess.run([KEEL_BIN, "cluster", "leave", "--http", "127.0.0.1:%d" % self.c.port(2), "--id", "4"],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(lv.returncode, 0, lv.stdout + lv.stderr)
        self.assertIn("node 4 left; configuration epoch 2, members [1,2,3]", lv.stdout)
        self.wait_config(self.extra.http_port, [1, 2, 3])
        st, body = http("PUT", self.extra.http_port, "/v1/meta/y", b"1")
        self.assertEqual(st, 503, body)
        st, body = http("PUT", self.c.port(0), "/v1/meta/after-leave", b"1")
        self.assertEqual(st, 200, body)


class ClusterConfigTest(unittest.TestCase):
    def run_keel(self, *args):
        return subprocess.run([KEEL_BIN, "serve", "--engine", "memory", "--port", "0", "--http-port", "0"] + list(args),
                              capture_output=True, text=True, timeout=20)

    def test_bad_cluster_settings_are_named(self):
        r = self.run_keel("--peers", "1@127.0.0.1:1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cluster.node_id: must be set", r.stderr)
        r = self.run_keel("--node-id", "1", "--peers", "1@127.0.0.1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("expected ID@HOST:PORT", r.stderr)
        r = self.run_keel("--node-id", "1", "--peers", "1@127.0.0.1:5,1@127.0.0.1:6")
        self.assertIn("peer id 1 appears twice", r.stderr)
        r = self.run_keel("--node-id", "1", "--peers", "1@127.0.0.1:5", "--set", "cluster.start_timeout_ms=5000")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cluster.start_timeout_ms", r.stderr)
        self.assertIn("1000", r.stderr)

    def test_members_started_with_different_peer_lists_refuse_each_other(self):
        root = tempfile.mkdtemp(prefix="keel-cluster-mismatch-")
        ports = [free_port() for _ in range(3)]
        lists = ["1@127.0.0.1:%d,2@127.0.0.1:%d,3@127.0.0.1:%d" % tuple(ports),
                 "1@127.0.0.1:%d,2@127.0.0.1:%d,4@127.0.0.1:%d" % tuple(ports)]
        nodes = [Keel("--engine", "memory", "--shards", "1", "--node-id", str(i + 1), "--peer-port", str(ports[i]),
                      "--peers", lists[i], data_dir=os.path.join(root, "n%d" % (i + 1))) for i in range(2)]
        try:
            for k in nodes:
                k.start()
            deadline = time.time() + 20
            err = ""
            while time.time() < deadline and "started with members" not in err:
                st, body = http("GET", nodes[0].http_port, "/v1/cluster/status")
                err = next((m.get("link_error", "") for m in body["members"] if m["id"] == 2), "")
                time.sleep(0.05)
            self.assertIn("node 1 was started with members 1,2,3 but this node (node 2) with members 1,2,4", err)
            self.assertFalse(body["quorum"])
            st, body = http("PUT", nodes[0].http_port, "/v1/meta/x", b"v")
            self.assertEqual(st, 503)
        finally:
            for k in nodes:
                k.cleanup()
            shutil.rmtree(root, ignore_errors=True)

    def test_embedded_node_is_a_one_member_cluster(self):
        # Without cluster settings a node is the embedded default: a one-member cluster with
        # its own metadata and partition map, on the same code path as a larger cluster.
        with Keel("--engine", "memory") as k:
            st, body = http("GET", k.http_port, "/v1/meta/x")
            self.assertEqual(st, 404)
            st, body = http("PUT", k.http_port, "/v1/meta/x", b"v")
            self.assertEqual(st, 200)
            st, body = http("GET", k.http_port, "/v1/meta/x")
            self.assertEqual((st, body["value"]), (200, "v"))
            st, body = http("GET", k.http_port, "/v1/cluster/status")
            self.assertEqual((st, body["enabled"], body["quorum"]), (200, True, True))
            self.assertEqual(len(body["members"]), 1)

if __name__ == "__main__":
    unittest.main()
