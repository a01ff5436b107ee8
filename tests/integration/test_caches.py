"""The caching service end to end: a real keel (a one-member cluster, so cache definitions live
in Rabia-replicated metadata), driven through RESP with the Python redis package and through
HTTP with urllib.

Creates caches through one door and reads through the other, checks the default TTL, maxEntries
eviction (lru and none), that bad definitions are refused with the field named and leave nothing
behind, and that CACHE.DROP and CACHE.CLEAR remove the entries from the keyspace.
"""
import json
import time
import unittest

import redis

from harness import Keel, free_port, http


def wait_data_ready(port, limit=30):
    """A fresh or restarted member answers CLUSTERDOWN or TRYAGAIN (nothing applied) until it
    knows the partition map and holds its primaries."""
    r = redis.Redis(port=port, decode_responses=True)
    deadline = time.time() + limit
    while True:
        try:
            r.set("cache-it-ready", "1")
            r.delete("cache-it-ready")
            r.close()
            return
        except redis.ResponseError as e:
            time.sleep(0.02)
            if not str(e).startswith(("CLUSTERDOWN", "TRYAGAIN")) or time.time() > deadline:
                raise


class CachesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        peer = free_port()
        cls.keel = Keel("--engine", "memory", "--shards", "2", "--node-id", "1", "--peer-port", str(peer),
                        "--peers", "1@127.0.0.1:%d" % peer).start()
        cls.h = cls.keel.http_port
        deadline = time.time() + 30
        while time.time() < deadline:
            st, body = http("GET", cls.h, "/v1/cluster/status")
            if st == 200 and body.get("quorum"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the one-member cluster did not reach quorum")
        wait_data_ready(cls.keel.port)
        cls.r = redis.Redis(port=cls.keel.port, decode_responses=True)

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def info(self, name):
        return self.r.execute_command("CACHE.INFO", name)

    def assert_refused(self, args, *words):
        with self.assertRaises(redis.ResponseError) as cm:
            self.r.execute_command(*args)
        for w in words:
            self.assertIn(w, str(cm.exception))
        return str(cm.exception)

    def test_resp_and_http_see_the_same_entries(self):
        self.assertEqual(self.r.execute_command("CACHE.CREATE", "users", "REPLICAS", "3", "QUORUM", "2",
                                                "EVICTION", "lru", "MAXMEMORY", "256mb", "READFROM", "primary",
                                                "ENGINE", "memory"), "OK")
        self.assertIn("users", self.r.execute_command("CACHE.LIST"))
        self.assertEqual(self.r.execute_command("CACHE.PUT", "users", "alice", "A"), "OK")
        st, body = http("GET", self.h, "/v1/caches/users/entries/alice")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["value"], "A")
        self.assertEqual(body["ttl_ms"], -1)
        st, body = http("PUT", self.h, "/v1/caches/users/entries/bob", "B")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.r.execute_command("CACHE.GET", "users", "bob"), "B")
        # The entries are not plain keys: the plain keyspace is the default cache.
        self.assertIsNone(self.r.get("alice"))
        self.r.set("alice", "plain")
        self.assertEqual(self.r.execute_command("CACHE.GET", "users", "alice"), "A")
        self.assertEqual(self.r.execute_command("CACHE.GET", "default", "alice"), "plain")
        st, body = http("GET", self.h, "/v1/caches/default/entries/alice")
        self.assertEqual((st, body["value"]), (200, "plain"))
        # Removal through either door.
        self.assertEqual(self.r.execute_command("CACHE.DEL", "users", "bob"), 1)
        st, body = http("GET", self.h, "/v1/caches/users/entries/bob")
        self.assertEqual((st, body["error"]["code"]), (404, "NOT_FOUND"))
        st, body = http("DELETE", self.h, "/v1/caches/users/entries/alice")
        self.assertEqual((st, body["deleted"]), (200, True))
        self.assertIsNone(self.r.execute_command("CACHE.GET", "users", "alice"))
        # The definition as stored, through both doors.
        info = self.info("users")
        self.assertEqual(info[info.index("writeQuorum") + 1], 2)
        self.assertEqual(info[info.index("maxMemory") + 1], "256mb")
        st, body = http("GET", self.h, "/v1/caches/users")
        self.assertEqual(st, 200)
        self.assertEqual((body["replicas"], body["writeQuorum"], body["eviction"], body["engine"]), (3, 2, "lru", "memory"))
        st, body = http("GET", self.h, "/v1/caches")
        self.assertIn("users", [c["name"] for c in body["caches"]])
        # Cluster clients hash the user's key: it is the command's key.
        raw = redis.Redis(port=self.keel.port, decode_responses=True)
        raw.response_callbacks.pop("COMMAND", None)  # redis-py parses COMMAND's reply as COMMAND INFO
        self.assertEqual(raw.execute_command("COMMAND", "GETKEYS", "CACHE.GET", "users", "foo"), ["foo"])
        self.assertEqual(raw.execute_command("COMMAND", "GETKEYS", "CACHE.PUT", "users", "foo", "v"), ["foo"])
        raw.close()

    def test_http_create_and_resp_use(self):
        st, body = http("PUT", self.h, "/v1/caches/web", json.dumps({"defaultTtl": "90s", "maxEntries": 100000}))
        self.assertEqual(st, 200, body)
        self.assertEqual(body["defaultTtl"], "90s")
        # Creating the same definition again is fine; a different one is refused.
        st, body = http("PUT", self.h, "/v1/caches/web", json.dumps({"defaultTtl": "90s", "maxEntries": 100000}))
        self.assertEqual(st, 200, body)
        st, body = http("PUT", self.h, "/v1/caches/web", json.dumps({"defaultTtl": "10s"}))
        self.assertEqual((st, body["error"]["code"]), (409, "ALREADY_EXISTS"))
        self.assertEqual(self.r.execute_command("CACHE.PUT", "web", "page", "<html>"), "OK")
        st, body = http("GET", self.h, "/v1/caches/web/entries/page")
        self.assertEqual(body["value"], "<html>")

    def test_default_ttl_applies_when_a_put_gives_none(self):
        self.r.execute_command("CACHE.CREATE", "sessions", "TTL", "60s")
        self.r.execute_command("CACHE.PUT", "sessions", "s1", "x")
        self.r.execute_command("CACHE.PUT", "sessions", "s2", "x", "TTL", "1h")
        self.r.execute_command("CACHE.PUT", "sessions", "s3", "x", "EX", "5")
        http("PUT", self.h, "/v1/caches/sessions/entries/s4", "x")
        http("PUT", self.h, "/v1/caches/sessions/entries/s5?ttl=2h", "x")
        ttl = {k: http("GET", self.h, "/v1/caches/sessions/entries/" + k)[1]["ttl_ms"] for k in ["s1", "s2", "s3", "s4", "s5"]}
        self.assertTrue(0 < ttl["s1"] <= 60000, ttl)
        self.assertTrue(0 < ttl["s4"] <= 60000, ttl)
        self.assertTrue(60000 < ttl["s2"] <= 3600000, ttl)
        self.assertTrue(0 < ttl["s3"] <= 5000, ttl)
        self.assertTrue(3600000 < ttl["s5"] <= 7200000, ttl)
        # A short TTL really expires (waits at most 10 s for it; no timing is asserted).
        self.r.execute_command("CACHE.PUT", "sessions", "brief", "x", "PX", "50")
        deadline = time.time() + 10
        while self.r.execute_command("CACHE.GET", "sessions", "brief") is not None and time.time() < deadline:
            time.sleep(0.02)
        self.assertIsNone(self.r.execute_command("CACHE.GET", "sessions", "brief"))

    def test_max_entries_evicts_by_policy(self):
        # 2048 entries over 1024 partitions: each partition holds at most 2 of this cache's
        # entries. Keys with the same {tag} share a partition.
        self.r.execute_command("CACHE.CREATE", "small", "MAXENTRIES", "2048", "EVICTION", "lru")
        info = self.info("small")
        self.assertEqual(info[info.index("partitionMaxEntries") + 1], 2)
        self.r.execute_command("CACHE.PUT", "small", "{t}a", "1")
        self.r.execute_command("CACHE.PUT", "small", "{t}b", "2")
        self.assertEqual(self.r.execute_command("CACHE.GET", "small", "{t}a"), "1")  # b is now the LRU
        self.r.execute_command("CACHE.PUT", "small", "{t}c", "3")
        self.assertEqual(self.r.execute_command("CACHE.GET", "small", "{t}a"), "1")
        self.assertIsNone(self.r.execute_command("CACHE.GET", "small", "{t}b"))
        st, body = http("GET", self.h, "/v1/caches/small/entries/%7Bt%7Dc")
        self.assertEqual((st, body["value"]), (200, "3"))
        for i in range(50):
            self.r.execute_command("CACHE.PUT", "small", "{u}%d" % i, str(i))
        kept = [i for i in range(50) if self.r.execute_command("CACHE.GET", "small", "{u}%d" % i) is not None]
        self.assertEqual(kept, [48, 49])
        info = self.info("small")
        self.assertEqual(info[info.index("entries") + 1], 4)
        # eviction none: a full partition refuses new entries and keeps the old ones.
        self.r.execute_command("CACHE.CREATE", "strict", "MAXENTRIES", "1024", "EVICTION", "none")
        self.r.execute_command("CACHE.PUT", "strict", "{t}a", "1")
        self.assert_refused(("CACHE.PUT", "strict", "{t}b", "2"), "OOM", "is full", "eviction is none")
        self.assertEqual(self.r.execute_command("CACHE.GET", "strict", "{t}a"), "1")
        st, body = http("PUT", self.h, "/v1/caches/strict/entries/%7Bt%7Db", "2")
        self.assertEqual((st, body["error"]["code"]), (507, "OUT_OF_MEMORY"))

    def test_bad_definitions_name_the_field_and_leave_nothing(self):
        before = self.r.execute_command("CACHE.LIST")
        cases = [
            (("CACHE.CREATE", "bad1", "REPLICAS", "2", "QUORUM", "3"), ["writeQuorum", "from 1 to replicas (2)"]),
            (("CACHE.CREATE", "bad2", "EVICTION", "random"), ["eviction", "lru, lfu, none"]),
            (("CACHE.CREATE", "bad3", "MAXMEMORY", "256"), ["maxMemory", "no unit", "mb"]),
            (("CACHE.CREATE", "bad4", "TTL", "60"), ["defaultTtl", "no unit", "ms, s, m, h, d"]),
            (("CACHE.CREATE", "bad name!", "TTL", "60s"), ["name 'bad name!'", "letters, digits, '_', '-', '.'"]),
            (("CACHE.CREATE", "bad5", "ENGINE", "persistent"), ["engine 'persistent' is not available", "allowed: memory"]),
            (("CACHE.CREATE", "bad6", "SIZE", "1"), ["unknown option 'SIZE'", "MAXENTRIES"]),
            (("CACHE.CREATE", "default"), ["'default' is reserved"]),
        ]
        for args, words in cases:
            self.assert_refused(args, *words)
        st, body = http("PUT", self.h, "/v1/caches/bad7", json.dumps({"maxMemory": "256"}))
        self.assertEqual((st, body["error"]["code"]), (400, "INVALID_ARGUMENT"))
        self.assertIn("maxMemory", body["error"]["message"])
        st, body = http("PUT", self.h, "/v1/caches/bad8", json.dumps({"replicas": 1, "writeQuorum": 2}))
        self.assertEqual(st, 400)
        self.assertIn("writeQuorum", body["error"]["message"])
        # Nothing was created: not listed, not readable, not usable.
        self.assertEqual(sorted(self.r.execute_command("CACHE.LIST")), sorted(before))
        for name in ["bad1", "bad2", "bad3", "bad4", "bad5", "bad6", "bad7", "bad8"]:
            st, body = http("GET", self.h, "/v1/caches/" + name)
            self.assertEqual((st, body["error"]["code"]), (404, "NOT_FOUND"), name)
            self.assert_refused(("CACHE.PUT", name, "k", "v"), "no cache named '%s'" % name)
        st, body = http("GET", self.h, "/v1/meta?domain=caches&prefix=bad")
        self.assertEqual((st, body["items"]), (200, []))

    def test_drop_and_clear_remove_the_entries(self):
        base = self.r.dbsize()
        self.r.execute_command("CACHE.CREATE", "tmp")
        for i in range(20):
            self.r.execute_command("CACHE.PUT", "tmp", "k%d" % i, "v")
        self.assertEqual(self.r.dbsize(), base + 20)
        self.assertEqual(self.r.execute_command("CACHE.CLEAR", "tmp"), 20)
        self.assertEqual(self.r.dbsize(), base)
        self.assertIsNone(self.r.execute_command("CACHE.GET", "tmp", "k1"))
        for i in range(5):
            self.r.execute_command("CACHE.PUT", "tmp", "k%d" % i, "v")
        self.assertEqual(self.r.execute_command("CACHE.DROP", "tmp"), 5)
        self.assertEqual(self.r.dbsize(), base)
        self.assertNotIn("tmp", self.r.execute_command("CACHE.LIST"))
        self.assert_refused(("CACHE.GET", "tmp", "k1"), "no cache named 'tmp'")
        self.assert_refused(("CACHE.INFO", "tmp"), "no cache named 'tmp'")
        # A new cache of the same name starts empty.
        self.r.execute_command("CACHE.CREATE", "tmp")
        self.assertIsNone(self.r.execute_command("CACHE.GET", "tmp", "k1"))
        # Over HTTP.
        http("PUT", self.h, "/v1/caches/tmp/entries/x", "1")
        st, body = http("DELETE", self.h, "/v1/caches/tmp")
        self.assertEqual((st, body["entriesRemoved"]), (200, 1))
        st, body = http("GET", self.h, "/v1/caches/tmp/entries/x")
        self.assertEqual((st, body["error"]["code"]), (404, "NOT_FOUND"))
        self.assertIn("no cache named 'tmp'", body["error"]["message"])
        self.assertEqual(self.r.dbsize(), base)


if __name__ == "__main__":
    unittest.main()


def wait_quorum(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        st, body = http("GET", port, "/v1/cluster/status")
        if st == 200 and body.get("quorum"):
            return
        time.sleep(0.05)
    raise AssertionError("no quorum on the node with HTTP port %d" % port)


def eventually(pred, limit=20):
    """Polls `pred` until it is true (at most `limit` seconds); no timing is asserted."""
    deadline = time.time() + limit
    while not pred() and time.time() < deadline:
        time.sleep(0.02)
    return pred()


class PersistentCacheTest(unittest.TestCase):
    """With the persistent engine (keel's default), definitions (in the metadata's log) and
    entries (in the engine) survive a restart."""

    def test_definitions_and_entries_survive_a_restart(self):
        import tempfile, shutil
        d = tempfile.mkdtemp(prefix="keel-cache-it-")
        peer = free_port()
        args = ("--node-id", "1", "--peer-port", str(peer), "--peers", "1@127.0.0.1:%d" % peer)
        try:
            k = Keel(*args, data_dir=d).start()
            wait_quorum(k.http_port)
            wait_data_ready(k.port)
            r = redis.Redis(port=k.port, decode_responses=True)
            r.execute_command("CACHE.CREATE", "durable", "MAXENTRIES", "2048", "ENGINE", "persistent")
            r.execute_command("CACHE.PUT", "durable", "{t}a", "1")
            r.execute_command("CACHE.PUT", "durable", "{t}b", "2")
            r.execute_command("CACHE.PUT", "durable", "{t}c", "3")  # evicts {t}a
            r.close()
            k.stop()
            k = Keel(*args, data_dir=d).start()
            wait_quorum(k.http_port)
            wait_data_ready(k.port)
            r = redis.Redis(port=k.port, decode_responses=True)
            self.assertTrue(eventually(lambda: "durable" in r.execute_command("CACHE.LIST")))
            self.assertTrue(eventually(lambda: self._get(r, "durable", "{t}b") == "2"))
            self.assertIsNone(r.execute_command("CACHE.GET", "durable", "{t}a"))
            self.assertEqual(r.execute_command("CACHE.GET", "durable", "{t}c"), "3")
            r.close()
            k.cleanup()
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def _get(r, name, key):
        try:
            return r.execute_command("CACHE.GET", name, key)
        except redis.ResponseError:
            return None  # the definition may not be installed yet right after the restart


class ThreeNodeCacheTest(unittest.TestCase):
    """Definitions are cluster metadata: a cache created through one node is known to all, and a
    drop through one node removes the entries every node holds."""

    def test_every_node_knows_every_cache(self):
        n = 3
        peers_ports = [free_port() for _ in range(n)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(peers_ports))
        nodes = [Keel("--engine", "memory", "--shards", "1", "--node-id", str(i + 1), "--peer-port",
                      str(peers_ports[i]), "--peers", peers, "--set", "cluster.heartbeat_ms=50") for i in range(n)]
        try:
            for k in nodes:
                k.start()
            for k in nodes:
                wait_quorum(k.http_port)
            for k in nodes:
                wait_data_ready(k.port)
            rs = [redis.Redis(port=k.port, decode_responses=True) for k in nodes]
            self.assertEqual(rs[0].execute_command("CACHE.CREATE", "shared", "TTL", "1h"), "OK")
            # HTTP on another node, once its watch has delivered the definition.
            self.assertTrue(eventually(lambda: http("PUT", nodes[2].http_port, "/v1/caches/shared/entries/k3", "v3")[0] == 200))
            self.assertEqual(rs[0].execute_command("CACHE.GET", "shared", "k3"), "v3")
            self.assertEqual(rs[0].execute_command("CACHE.TTL", "shared", "k3") > 3500000, True)
            # RESP on another node knows it once the watch has delivered it.
            def put_on_1():
                try:
                    return rs[1].execute_command("CACHE.PUT", "shared", "k1", "v1") == "OK"
                except redis.ResponseError:
                    return False
            self.assertTrue(eventually(put_on_1))
            self.assertEqual(rs[1].execute_command("CACHE.GET", "shared", "k1"), "v1")
            for r in rs:
                self.assertIn("shared", r.execute_command("CACHE.LIST"))
            # A conflicting definition through another node is refused; nothing changes.
            with self.assertRaises(redis.ResponseError) as cm:
                rs[2].execute_command("CACHE.CREATE", "shared", "TTL", "2h")
            self.assertIn("already exists with a different definition", str(cm.exception))
            # Drop through node 1: every node's entries go (each node erases its own).
            self.assertGreaterEqual(rs[0].execute_command("CACHE.DROP", "shared"), 0)
            self.assertTrue(eventually(lambda: sum(r.dbsize() for r in rs) == 0),
                            "entries left: %s" % [r.dbsize() for r in rs])
            for r in rs:
                self.assertNotIn("shared", r.execute_command("CACHE.LIST"))
        finally:
            for k in nodes:
                k.cleanup()
