"""keel driven by real clients: Python's redis package, redis-cli, and raw RESP3."""
import subprocess
import time
import unittest

import redis

from harness import Keel, Raw


class Clients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "2").start()

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def client(self):
        return redis.Redis(port=self.keel.port, socket_timeout=10)

    def test_strings_hashes_and_keys(self):
        r = self.client()
        r.flushall()
        self.assertTrue(r.set("greeting", "hello"))
        self.assertEqual(r.get("greeting"), b"hello")
        self.assertEqual(r.incrby("counter", 41), 41)
        self.assertEqual(r.incr("counter"), 42)
        self.assertEqual(r.hset("user:1", mapping={"name": "ada", "lang": "c++"}), 2)
        self.assertEqual(r.hgetall("user:1"), {b"name": b"ada", b"lang": b"c++"})
        self.assertEqual(r.type("user:1"), b"hash")
        with self.assertRaises(redis.ResponseError) as e:
            r.incr("user:1")
        self.assertIn("WRONGTYPE", str(e.exception))
        self.assertEqual(sorted(r.keys("*")), [b"counter", b"greeting", b"user:1"])
        self.assertEqual(r.dbsize(), 3)

    def test_binary_keys_and_large_values(self):
        r = self.client()
        key = b"\x00bin\xffkey\r\n"
        value = bytes(range(256)) * 4096  # 1 MiB
        r.set(key, value)
        self.assertEqual(r.get(key), value)
        self.assertEqual(r.strlen(key), len(value))

    def test_pipelining_keeps_order_across_shards(self):
        r = self.client()
        p = r.pipeline(transaction=False)
        n = 10000
        for i in range(n):
            p.set("pk:%d" % i, i)
        for i in range(n):
            p.get("pk:%d" % i)
        out = p.execute()
        self.assertTrue(all(x is True for x in out[:n]))
        self.assertEqual(out[n:], [str(i).encode() for i in range(n)])

    def test_multi_key_commands_span_shards(self):
        r = self.client()
        keys = ["mk:%d" % i for i in range(50)]  # spread over partitions of both shards
        r.mset({k: k.upper() for k in keys})
        self.assertEqual(r.mget(keys + ["mk:none"]), [k.upper().encode() for k in keys] + [None])
        self.assertEqual(r.exists(*keys), 50)
        self.assertEqual(r.delete(*keys[:25]), 25)
        self.assertEqual(r.exists(*keys), 25)
        self.assertTrue(r.rename("mk:30", "mk:renamed"))
        self.assertEqual(r.get("mk:renamed"), b"MK:30")
        self.assertIsNone(r.get("mk:30"))
        found, cursor = set(), 0
        while True:
            cursor, batch = r.scan(cursor, match="mk:*", count=7)
            found.update(batch)
            if cursor == 0:
                break
        self.assertEqual(len(found), 25)

    def test_expiry(self):
        r = self.client()
        r.set("short", "v", px=150)
        r.set("long", "v", ex=100)
        self.assertGreater(r.pttl("short"), 0)
        time.sleep(0.4)
        self.assertIsNone(r.get("short"))
        self.assertEqual(r.exists("short"), 0)
        self.assertIn(r.ttl("long"), (99, 100))  # rounded: 100 unless the sleep overran by 100 ms
        # Active expiry removes keys nobody reads again.
        for i in range(200):
            r.set("gone:%d" % i, "v", px=50)
        deadline = time.time() + 10
        while time.time() < deadline and int(r.info("stats")["expired_keys"]) < 200:
            time.sleep(0.1)
        self.assertGreaterEqual(int(r.info("stats")["expired_keys"]), 200)

    def test_info_and_client_commands(self):
        r = self.client()
        info = r.info()
        self.assertEqual(info["redis_version"], "7.0.0")
        self.assertIn("connected_clients", info)
        r.client_setname("tester")
        self.assertEqual(r.client_getname(), "tester")
        self.assertTrue(any(c.get("name") == "tester" for c in r.client_list()))
        self.assertGreater(len(r.command()), 50)

    def test_resp3(self):
        k = Raw(self.keel.port)
        hello = k.cmd("HELLO", "3")
        self.assertTrue(hello.startswith(b"%7\r\n"), hello)
        self.assertEqual(k.cmd("GET", "definitely-missing"), b"_\r\n")
        k.cmd("HSET", "r3", "f", "v")
        self.assertEqual(k.cmd("HGETALL", "r3"), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
        self.assertEqual(k.cmd("HELLO", "4"), b"-NOPROTO unsupported protocol version\r\n")
        k.close()

    def test_redis_cluster_client(self):
        from redis.cluster import RedisCluster
        rc = RedisCluster(host="127.0.0.1", port=self.keel.port)
        for i in range(100):
            rc.set("rc:%d" % i, i)
        self.assertEqual(rc.get("rc:42"), b"42")
        self.assertEqual(rc.keyslot("foo"), 12182)
        self.assertEqual(rc.cluster_keyslot("foo"), 12182)
        nodes = rc.get_nodes()
        self.assertEqual([n.port for n in nodes], [self.keel.port])
        # redis-cli in cluster mode follows the same topology.
        out = subprocess.run(["redis-cli", "-c", "-p", str(self.keel.port), "GET", "rc:7"],
                             capture_output=True, text=True, timeout=30).stdout
        self.assertEqual(out, "7\n")
        # What a cluster client sends while following redirects or reading from replicas.
        plain = redis.Redis(port=self.keel.port)
        for cmd in ("ASKING", "READONLY", "READWRITE"):
            self.assertTrue(plain.execute_command(cmd), cmd)
        with self.assertRaises(redis.ResponseError) as e:
            plain.execute_command("ASKING", "extra")
        self.assertIn("wrong number of arguments for 'asking' command", str(e.exception))
        rc.close()

    def test_redis_cli(self):
        run = lambda *a: subprocess.run(["redis-cli", "-p", str(self.keel.port)] + list(a),
                                        capture_output=True, text=True, timeout=30).stdout
        self.assertEqual(run("SET", "cli", "works"), "OK\n")
        self.assertEqual(run("GET", "cli"), "works\n")
        self.assertTrue(run("INCR", "cli").startswith("ERR value is not an integer or out of range"))
        # Piped commands, as in `cat cmds | redis-cli`.
        out = subprocess.run(["redis-cli", "-p", str(self.keel.port)], input="SET p1 a\nGET p1\n",
                             capture_output=True, text=True, timeout=30).stdout
        self.assertEqual(out, "OK\na\n")


if __name__ == "__main__":
    unittest.main()
