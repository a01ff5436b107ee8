"""Durability of the persistent engine with the real binary: clean restart, and kill -9 with
fsync = always losing no acknowledged write."""
import random
import shutil
import signal
import tempfile
import threading
import time
import unittest

import redis

from harness import Keel


class Persistence(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-persist-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_data_survives_a_clean_restart(self):
        k = Keel("--engine", "persistent", data_dir=self.dir).start()
        r = redis.Redis(port=k.port)
        r.set("plain", "v1")
        r.set("ttl", "v2", ex=1000)
        r.set("short", "v3", px=100)
        r.hset("h", mapping={"a": "1", "b": "2"})
        self.assertEqual(k.stop(signal.SIGTERM), 0, k.output())
        time.sleep(0.2)
        k2 = Keel("--engine", "persistent", data_dir=self.dir).start()
        try:
            r = redis.Redis(port=k2.port)
            self.assertEqual(r.get("plain"), b"v1")
            self.assertEqual(r.get("ttl"), b"v2")
            self.assertGreater(r.ttl("ttl"), 990)
            self.assertIsNone(r.get("short"))  # expired while the node was down
            self.assertEqual(r.hgetall("h"), {b"a": b"1", b"b": b"2"})
            # DBSIZE, like Redis's, counts an expired key until it is reclaimed; active expiry
            # reclaims it without anyone reading it.
            deadline = time.time() + 15
            while r.dbsize() != 3 and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(r.dbsize(), 3)
        finally:
            k2.cleanup()

    def test_kill9_with_fsync_always_loses_no_acknowledged_write(self):
        # Two shards and eight writers: replies wait for group commits shared by several
        # connections, on the connection's own shard and on the other one (a key's shard).
        k = Keel("--engine", "persistent", "--fsync", "always", "--shards", "2", data_dir=self.dir).start()
        acked = {}
        stop = threading.Event()

        def writer(wid):
            r = redis.Redis(port=k.port, socket_timeout=5)
            i = 0
            while not stop.is_set():
                key = "w%d:%d" % (wid, i)
                try:
                    r.set(key, "value-%d" % i)
                except (redis.ConnectionError, redis.TimeoutError):
                    return
                acked[key] = "value-%d" % i  # recorded only after the server acknowledged
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0 + random.random())
        k.kill9()
        stop.set()
        for t in threads:
            t.join()
        self.assertGreater(len(acked), 100, "the writers should have made progress")
        k2 = Keel("--engine", "persistent", data_dir=self.dir).start()
        try:
            r = redis.Redis(port=k2.port)
            keys = list(acked)
            missing = []
            for i in range(0, len(keys), 500):
                batch = keys[i:i + 500]
                for key, got in zip(batch, r.mget(batch)):
                    if got is None or got.decode() != acked[key]:
                        missing.append(key)
            self.assertEqual(missing, [], "%d of %d acknowledged writes lost" % (len(missing), len(keys)))
        finally:
            k2.cleanup()


if __name__ == "__main__":
    unittest.main()
