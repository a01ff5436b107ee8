"""Brute-force lockout across a cluster (docs/security.md, "Lockout after failed
authentications"): failures are counted in the keyspace, so guesses spread over the nodes lock
the user on every node; ACL UNLOCK (or DELETE /v1/auth/lockouts) through one node unlocks on
all; a success clears the count everywhere; a password a node verified before is no way around
a lock.
"""
import json
import os
import re
import signal
import time
import unittest
import urllib.error
import urllib.request

import redis

from test_acl import basic
from test_dht import DhtCluster, primary_finder

THRESHOLD = 3


def http_req(method, port, path, auth=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


class LockoutCluster(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = DhtCluster(extra=("--set", "auth.lockout_threshold=%d" % THRESHOLD,
                                  "--set", "auth.lockout_base_ms=600000")).start()

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def setUp(self):
        self.admin(0).execute_command("ACL", "UNLOCK", "*")

    def admin(self, i):
        return self.c.client(i)

    def make_user(self, name, password):
        self.admin(0).execute_command("ACL", "SETUSER", name, "on", ">" + password, "~*", "+@all")
        deadline = time.time() + 10
        while time.time() < deadline:
            if all(name.encode() in self.admin(i).execute_command("ACL", "USERS") for i in range(3)):
                return
            time.sleep(0.05)
        self.fail("user %s not on every node" % name)

    def auth(self, i, user, password):
        """The reply of AUTH user password on node i: 'OK' or the error text."""
        r = redis.Redis(port=self.c.nodes[i].port, socket_timeout=10)
        try:
            return "OK" if r.execute_command("AUTH", user, password) else "?"
        except redis.exceptions.ResponseError as e:
            return str(e)
        finally:
            r.close()

    def lockouts(self, i):
        return {dict(zip(e[::2], e[1::2]))[b"subject"].decode(): dict(zip(e[::2], e[1::2]))
                for e in self.admin(i).execute_command("ACL", "LOCKOUTS")}

    def test_guesses_spread_over_the_nodes_lock_everywhere_and_unlock_through_one(self):
        self.make_user("spread", "right-pw")
        for i in range(THRESHOLD):  # one wrong guess on each node
            self.assertIn("WRONGPASS", self.auth(i, "spread", "guess-%d" % i))
        # Locked on every node, the right password refused unchecked, over RESP and HTTP.
        for i in range(3):
            self.assertIn("LOCKED too many failed authentications for", self.auth(i, "spread", "right-pw"))
            lk = self.lockouts(i)
            self.assertEqual(lk["user:spread"][b"failures"], THRESHOLD, lk)
            self.assertGreater(lk["user:spread"][b"locked-for-ms"], 500000, lk)
        st, body = http_req("GET", self.c.nodes[1].http_port, "/v1/kv/x", auth=basic("spread", "right-pw"))
        self.assertEqual(st, 429, body)
        self.assertEqual(body["error"]["code"], "LOCKED")
        st, body = http_req("GET", self.c.nodes[2].http_port, "/v1/auth/lockouts")
        self.assertEqual(st, 200, body)
        self.assertIn("user:spread", [e["subject"] for e in body["lockouts"]])
        # Unlocked through node 1: nodes 2 and 3, which saw the lock, let the user in.
        self.assertEqual(self.admin(0).execute_command("ACL", "UNLOCK", "user:spread"), 1)
        self.assertEqual(self.admin(0).execute_command("ACL", "UNLOCK", "addr:127.0.0.1"), 1)
        self.assertEqual(self.auth(1, "spread", "right-pw"), "OK")
        self.assertEqual(self.auth(2, "spread", "right-pw"), "OK")
        st, body = http_req("GET", self.c.nodes[1].http_port, "/v1/kv/x", auth=basic("spread", "right-pw"))
        self.assertEqual(st, 404, body)
        for i in range(3):
            self.assertNotIn("user:spread", self.lockouts(i))

    def test_http_delete_on_one_node_unlocks_on_another(self):
        self.make_user("viahttp", "right-pw")
        for i in range(THRESHOLD):
            st, _ = http_req("GET", self.c.nodes[i].http_port, "/v1/kv/x", auth=basic("viahttp", "wrong"))
            self.assertEqual(st, 401)
        self.assertIn("LOCKED", self.auth(0, "viahttp", "right-pw"))
        st, body = http_req("DELETE", self.c.nodes[2].http_port, "/v1/auth/lockouts/*")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["cleared"], 2)  # the user and the address
        self.assertEqual(self.auth(0, "viahttp", "right-pw"), "OK")

    def test_a_success_clears_the_count_on_every_node(self):
        self.make_user("clears", "right-pw")
        for i in range(THRESHOLD - 1):
            self.assertIn("WRONGPASS", self.auth(i, "clears", "wrong"))
        self.assertEqual(self.lockouts(2)["user:clears"][b"failures"], THRESHOLD - 1)
        self.assertEqual(self.auth(2, "clears", "right-pw"), "OK")
        self.assertNotIn("user:clears", self.lockouts(0))
        for i in range(THRESHOLD - 1):
            self.assertIn("WRONGPASS", self.auth(i, "clears", "wrong"))
        self.assertEqual(self.auth(0, "clears", "right-pw"), "OK")  # not locked: counting started again

    def test_a_password_a_node_verified_before_is_no_way_around_a_lock(self):
        self.make_user("cached", "right-pw")
        self.assertEqual(self.auth(1, "cached", "right-pw"), "OK")  # node 2 remembers it
        for _ in range(THRESHOLD):
            self.assertIn("WRONGPASS", self.auth(0, "cached", "wrong"))
        # A guess on node 2 asks the cluster: locked, and node 2 now knows; the right password
        # (which node 2 could answer from memory) is refused too.
        self.assertIn("LOCKED", self.auth(1, "cached", "another-guess"))
        self.assertIn("LOCKED", self.auth(1, "cached", "right-pw"))
        self.assertEqual(self.lockouts(1)["user:cached"][b"failures"], THRESHOLD)  # refusals are not counted



def metric(port, name):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


class LockoutStoreUnreachable(unittest.TestCase):
    """The table's primary stopped (SIGSTOP): each node decides by its own table, still bounded,
    and counts it in a metric; an attempt waits at most the request timeout per read or write."""

    def test_an_unreachable_table_falls_back_to_the_nodes_own(self):
        c = DhtCluster(extra=("--set", "auth.lockout_threshold=%d" % THRESHOLD, "--set", "auth.lockout_base_ms=600000",
                              "--set", "cluster.request_timeout_ms=1000", "--set", "cluster.suspect_after_ms=20000",
                              "--set", "cluster.dead_after_ms=60000")).start()
        self.addCleanup(c.cleanup)
        c.client(0).execute_command("ACL", "SETUSER", "fallback", "on", ">right-pw", "~*", "+@all")
        deadline = time.time() + 10
        while time.time() < deadline and not all(
                b"fallback" in c.client(i).execute_command("ACL", "USERS") for i in range(3)):
            time.sleep(0.05)
        primary_port = primary_finder(c.client(0))("keel:lockouts")
        stopped = next(n for n in c.nodes if n.port == primary_port)
        entry = next(n for n in c.nodes if n.port != primary_port)

        def auth(password):
            r = redis.Redis(port=entry.port, socket_timeout=30)
            try:
                return "OK" if r.execute_command("AUTH", "fallback", password) else "?"
            except redis.exceptions.ResponseError as e:
                return str(e)
            finally:
                r.close()
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(THRESHOLD):
                self.assertIn("WRONGPASS", auth("wrong"))
            self.assertIn("LOCKED too many failed authentications for", auth("right-pw"))
            self.assertGreaterEqual(metric(entry.http_port, "keel_auth_lockout_store_errors_total"), 2 * THRESHOLD)
            r = redis.Redis(port=entry.port, socket_timeout=30)
            with self.assertRaises(redis.exceptions.ResponseError) as e:
                r.execute_command("ACL", "LOCKOUTS")
            self.assertIn("the cluster-wide lockout table (key 'keel:lockouts') could not be read", str(e.exception))
        finally:
            os.kill(stopped.proc.pid, signal.SIGCONT)
        self.assertIn("could not be read", entry.output())
        # Reachable again: the cluster's table decides (it missed those failures, so the node's
        # fallback lock is dropped at the next attempt that asks it).
        self.assertEqual(auth("right-pw"), "OK")


if __name__ == "__main__":
    unittest.main()
