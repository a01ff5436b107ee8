"""MULTI/EXEC/WATCH and blocking pops (BLPOP & co.) against a keel node with two shards: Redis's
semantics (errors, EXECABORT, WATCH on change, expiry and FLUSHALL), redis-py's pipeline() with
optimistic WATCH retry loops from many clients at once, transactions and multi-key commands
that never interleave with other clients across shards, and blocked clients served in the
order they blocked, by pushes from any connection, with timeouts and hangups leaving nothing
behind."""
import socket
import threading
import time
import unittest

import redis

from harness import Keel, Raw


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def shard_of(key, shards=2, partitions=1024):
    k = key.encode()
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    slot = crc16(k) % 16384
    return (slot // (16384 // partitions)) % shards


def keys_on(shard, prefix, n):
    out, i = [], 0
    while len(out) < n:
        k = "%s%d" % (prefix, i)
        if shard_of(k) == shard:
            out.append(k)
        i += 1
    return out


class Node(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "2").start()

    @classmethod
    def tearDownClass(cls):
        cls.keel.stop()

    def client(self, **kw):
        return redis.Redis(port=self.keel.port, decode_responses=True, **kw)

    def setUp(self):
        self.r = self.client()
        self.r.flushall()


class Transactions(Node):
    def test_queued_commands_run_at_exec_and_runtime_errors_do_not_abort(self):
        k = Raw(self.keel.port)
        self.assertEqual(k.cmd("MULTI"), b"+OK\r\n")
        self.assertEqual(k.cmd("SET", "a", "1"), b"+QUEUED\r\n")
        self.assertEqual(k.cmd("LPUSH", "a", "x"), b"+QUEUED\r\n")
        self.assertEqual(k.cmd("INCR", "a"), b"+QUEUED\r\n")
        self.assertEqual(self.r.get("a"), None)  # nothing ran yet
        self.assertEqual(k.cmd("EXEC"), b"*3\r\n+OK\r\n-WRONGTYPE Operation against a key holding the wrong kind"
                                        b" of value\r\n:2\r\n")
        self.assertEqual(self.r.get("a"), "2")

    def test_queueing_errors_abort_exec(self):
        k = Raw(self.keel.port)
        k.cmd("MULTI")
        self.assertTrue(k.cmd("NOSUCHCOMMAND", "x").startswith(b"-ERR unknown command"))
        k.cmd("SET", "a", "1")
        self.assertEqual(k.cmd("EXEC"), b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        k.cmd("MULTI")
        self.assertEqual(k.cmd("GET"), b"-ERR wrong number of arguments for 'get' command\r\n")
        self.assertEqual(k.cmd("EXEC"), b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        self.assertIsNone(self.r.get("a"))
        # The connection is out of MULTI afterwards.
        self.assertEqual(k.cmd("EXEC"), b"-ERR EXEC without MULTI\r\n")

    def test_misplaced_commands_get_redis_errors(self):
        k = Raw(self.keel.port)
        self.assertEqual(k.cmd("EXEC"), b"-ERR EXEC without MULTI\r\n")
        self.assertEqual(k.cmd("DISCARD"), b"-ERR DISCARD without MULTI\r\n")
        k.cmd("MULTI")
        self.assertEqual(k.cmd("MULTI"), b"-ERR MULTI calls can not be nested\r\n")
        self.assertEqual(k.cmd("WATCH", "a"), b"-ERR WATCH inside MULTI is not allowed\r\n")
        k.cmd("SET", "a", "1")
        self.assertEqual(k.cmd("EXEC"), b"*1\r\n+OK\r\n")  # neither error aborted it
        k.cmd("MULTI")
        k.cmd("SET", "a", "2")
        self.assertEqual(k.cmd("DISCARD"), b"+OK\r\n")
        self.assertEqual(self.r.get("a"), "1")

    def test_watch_aborts_on_change_delete_and_expiry(self):
        other = self.client()
        for change in [lambda: other.set("w", "same"), lambda: other.delete("w"),
                       lambda: other.expire("w", 100), lambda: other.append("w", "x")]:
            self.r.set("w", "same")
            with self.r.pipeline() as p:
                p.watch("w")
                change()
                p.multi()
                p.set("w", "mine")
                with self.assertRaises(redis.WatchError):
                    p.execute()
        # A watched key whose TTL passes aborts EXEC even if nothing removed it yet.
        self.r.set("t", "v", px=150)
        k = Raw(self.keel.port)
        k.cmd("WATCH", "t")
        time.sleep(0.3)
        k.cmd("MULTI")
        k.cmd("PING")
        self.assertEqual(k.cmd("EXEC"), b"*-1\r\n")
        # A key already expired when watched, removed later, is no change (Redis 7).
        self.r.set("s", "v", px=50)
        time.sleep(0.15)
        k.cmd("WATCH", "s")
        self.r.get("s")
        k.cmd("MULTI")
        k.cmd("PING")
        self.assertEqual(k.cmd("EXEC"), b"*1\r\n+PONG\r\n")

    def test_flushall_touches_only_watched_keys_that_existed(self):
        k = Raw(self.keel.port)
        self.r.set("x", "1")
        k.cmd("WATCH", "x")
        self.r.flushall()
        k.cmd("MULTI")
        k.cmd("PING")
        self.assertEqual(k.cmd("EXEC"), b"*-1\r\n")
        k.cmd("WATCH", "absent")
        self.r.flushall()
        k.cmd("MULTI")
        k.cmd("PING")
        self.assertEqual(k.cmd("EXEC"), b"*1\r\n+PONG\r\n")

    def test_unwatch_discard_and_exec_end_the_watch(self):
        k = Raw(self.keel.port)
        for end in [("UNWATCH",), ("MULTI", "DISCARD"), ("MULTI", "EXEC")]:
            k.cmd("WATCH", "u")
            for c in end:
                k.cmd(c)
            self.r.set("u", "changed")
            k.cmd("MULTI")
            k.cmd("GET", "u")
            self.assertEqual(k.cmd("EXEC"), b"*1\r\n$7\r\nchanged\r\n", end)

    def test_concurrent_watch_retry_loops_count_exactly(self):
        clients, rounds = 8, 40
        counters = keys_on(0, "c", 1) + keys_on(1, "c", 1)  # one transaction spans both shards
        retries = [0]
        lock = threading.Lock()

        def worker():
            r = self.client()
            for _ in range(rounds):
                with r.pipeline() as p:
                    while True:
                        try:
                            p.watch(*counters)
                            vals = [int(v or 0) for v in p.mget(*counters)]
                            p.multi()
                            p.set(counters[0], vals[0] + 1)
                            p.set(counters[1], vals[1] + 2)
                            p.execute()
                            break
                        except redis.WatchError:
                            with lock:
                                retries[0] += 1

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([int(v) for v in self.r.mget(*counters)], [clients * rounds, 2 * clients * rounds])
        self.assertGreater(retries[0], 0, "the clients should have raced")

    def test_transactions_do_not_interleave_with_other_clients(self):
        a, b = keys_on(0, "acct", 1)[0], keys_on(1, "acct", 1)[0]
        self.r.mset({a: 1000, b: 0})
        stop = threading.Event()
        seen = []

        def mover():
            r = self.client()
            while not stop.is_set():
                p = r.pipeline()  # MULTI ... EXEC
                p.decrby(a, 7)
                p.incrby(b, 7)
                p.execute()

        def reader():
            r = self.client()
            while not stop.is_set():
                x, y = r.mget(a, b)  # across shards: atomic too
                seen.append(int(x) + int(y))
                p = r.pipeline()
                p.get(a)
                p.get(b)
                x, y = p.execute()
                seen.append(int(x) + int(y))

        threads = [threading.Thread(target=mover), threading.Thread(target=mover), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        self.assertGreater(len(seen), 20)
        self.assertEqual(set(seen), {1000})

    def test_a_transaction_on_one_key_is_not_split(self):
        stop = threading.Event()
        seen = set()

        def incr():
            r = self.client()
            while not stop.is_set():
                p = r.pipeline()
                for _ in range(50):
                    p.incr("n")
                p.execute()

        def read():
            r = self.client()
            while not stop.is_set():
                seen.add(int(r.get("n") or 0) % 50)

        threads = [threading.Thread(target=incr), threading.Thread(target=read)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(seen, {0})

    def test_msetnx_across_shards_is_all_or_nothing_under_races(self):
        keys = keys_on(0, "m", 2) + keys_on(1, "m", 2)
        wins = []

        def attempt(i):
            r = self.client()
            # Each tries two keys of each shard; the pairs overlap, so at most ... win.
            mine = {keys[(i + j) % 4]: str(i) for j in range(2)}
            wins.append((i, r.msetnx(mine), mine))

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        vals = self.r.mget(keys)
        for i, won, mine in wins:
            if won:
                self.assertEqual([self.r.get(k) for k in mine], [str(i)] * 2)
        # No key was written by a loser: every value belongs to a winner's pair.
        winners = {str(i) for i, won, _ in wins if won}
        self.assertTrue(set(v for v in vals if v is not None) <= winners)
        self.assertGreaterEqual(len(winners), 1)

    def test_blocking_commands_inside_multi_do_not_block(self):
        k = Raw(self.keel.port)
        k.cmd("MULTI")
        k.cmd("BLPOP", "empty", "0")
        k.cmd("BLMOVE", "empty", "x", "LEFT", "LEFT", "0")
        k.cmd("BZPOPMIN", "empty", "0")
        self.assertEqual(k.cmd("EXEC"), b"*3\r\n*-1\r\n$-1\r\n*-1\r\n")


class Blocking(Node):
    def blocked_call(self, fn, *args):
        out = {}

        def run():
            try:
                out["reply"] = fn(*args)
            except Exception as e:  # noqa: BLE001 (reported by the test)
                out["error"] = e

        t = threading.Thread(target=run)
        t.start()
        return t, out

    def wait_blocked(self, n):
        deadline = time.time() + 5
        while time.time() < deadline:
            time.sleep(0.05)
            clients = self.r.client_list()
            if sum(1 for c in clients if c.get("cmd") in ("blpop", "brpop", "blmove", "blmpop", "bzpopmin",
                                                          "bzpopmax", "bzmpop", "brpoplpush")) >= n:
                time.sleep(0.05)
                return
        self.fail("clients did not block")

    def test_blpop_is_woken_by_a_push_from_another_connection_on_either_shard(self):
        for shard in (0, 1):
            key = keys_on(shard, "q", 1)[0]
            t, out = self.blocked_call(self.client().blpop, [key], 0)
            self.wait_blocked(1)
            self.assertTrue(t.is_alive())
            self.r.rpush(key, "hello")
            t.join(5)
            self.assertEqual(out.get("reply"), (key, "hello"))
            self.assertEqual(self.r.exists(key), 0)

    def test_blocked_clients_are_served_in_the_order_they_blocked(self):
        key = "fifo"
        threads = []
        for i in range(3):
            threads.append(self.blocked_call(self.client().brpop, [key], 0))
            self.wait_blocked(i + 1)
        self.r.lpush(key, "one")
        threads[0][0].join(5)
        self.assertEqual(threads[0][1].get("reply"), (key, "one"))
        time.sleep(0.2)
        self.assertTrue(threads[1][0].is_alive() and threads[2][0].is_alive())
        self.r.lpush(key, "two", "three")  # one push, two elements: the next two in line
        for (t, out), want in zip(threads[1:], ["two", "three"]):
            t.join(5)
            self.assertEqual(out.get("reply"), (key, want))

    def test_timeouts(self):
        c = self.client()
        t0 = time.time()
        self.assertIsNone(c.blpop(["none"], 0.3))
        self.assertGreaterEqual(time.time() - t0, 0.28)
        self.assertIsNone(c.bzpopmax(["none"], 0.1))
        self.assertIsNone(c.blmove("none", "dst", 0.1))
        with self.assertRaisesRegex(redis.ResponseError, "timeout is negative"):
            c.blpop(["none"], -1)
        with self.assertRaisesRegex(redis.ResponseError, "timeout is not a float or out of range"):
            c.execute_command("BLPOP", "none", "soon")

    def test_a_push_inside_exec_wakes_after_the_transaction(self):
        key = keys_on(1, "tx", 1)[0]
        t, out = self.blocked_call(self.client().blpop, [key], 0)
        self.wait_blocked(1)
        p = self.r.pipeline()
        p.lpush(key, "a")
        p.lpop(key)  # consumed inside the transaction: nothing for the blocked client
        p.execute()
        time.sleep(0.2)
        self.assertTrue(t.is_alive())
        p = self.r.pipeline()
        p.lpush(key, "b")
        p.llen(key)
        self.assertEqual(p.execute(), [1, 1])  # the client was not served mid-transaction
        t.join(5)
        self.assertEqual(out.get("reply"), (key, "b"))

    def test_a_client_that_hangs_up_while_blocked_leaves_nothing_behind(self):
        s = socket.create_connection(("127.0.0.1", self.keel.port))
        s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$4\r\ngone\r\n$1\r\n0\r\n")
        self.wait_blocked(1)
        s.close()
        deadline = time.time() + 5
        while time.time() < deadline and any(c.get("cmd") == "blpop" for c in self.r.client_list()):
            time.sleep(0.05)
        self.r.rpush("gone", "kept")
        time.sleep(0.1)
        self.assertEqual(self.r.lrange("gone", 0, -1), ["kept"])

    def test_blmove_across_shards_and_multiple_keys(self):
        src, dst = keys_on(0, "src", 1)[0], keys_on(1, "dst", 1)[0]
        t, out = self.blocked_call(self.client().blmove, src, dst, 0, "RIGHT", "LEFT")
        self.wait_blocked(1)
        self.r.rpush(src, "x", "y")
        t.join(5)
        self.assertEqual(out.get("reply"), "y")
        self.assertEqual(self.r.lrange(dst, 0, -1), ["y"])
        self.assertEqual(self.r.lrange(src, 0, -1), ["x"])
        # BLPOP over keys on both shards, woken by the second key.
        k0, k1 = keys_on(0, "mk", 1)[0], keys_on(1, "mk", 1)[0]
        t, out = self.blocked_call(self.client().blpop, [k0, k1], 0)
        self.wait_blocked(1)
        self.r.rpush(k1, "v")
        t.join(5)
        self.assertEqual(out.get("reply"), (k1, "v"))

    def test_sorted_set_and_mpop_forms(self):
        t, out = self.blocked_call(self.client().bzpopmin, ["z"], 0)
        self.wait_blocked(1)
        self.r.zadd("z", {"a": 2, "b": 1})
        t.join(5)
        self.assertEqual(out.get("reply"), ("z", "b", 1.0))
        t, out = self.blocked_call(self.client().execute_command, "BZMPOP", "0", "2", "nz", "z2", "MAX", "COUNT", "5")
        self.wait_blocked(1)
        self.r.zadd("z2", {"x": 1, "y": 3})
        t.join(5)
        self.assertEqual(out.get("reply"), ["z2", [["y", "3"], ["x", "1"]]])
        t, out = self.blocked_call(self.client().execute_command, "BLMPOP", "0", "1", "l", "RIGHT", "COUNT", "2")
        self.wait_blocked(1)
        self.r.rpush("l", "1", "2", "3")
        t.join(5)
        self.assertEqual(out.get("reply"), ["l", ["3", "2"]])

    def test_a_blocked_client_does_not_hold_its_shard(self):
        ts = [self.blocked_call(self.client().blpop, [k], 0) for k in keys_on(0, "idle", 2) + keys_on(1, "idle", 2)]
        self.wait_blocked(4)
        for k in keys_on(0, "free", 5) + keys_on(1, "free", 5):
            self.r.set(k, "v")
            self.assertEqual(self.r.get(k), "v")
        for k in keys_on(0, "idle", 2) + keys_on(1, "idle", 2):
            self.r.rpush(k, "done")
        for t, out in ts:
            t.join(5)
            self.assertEqual(out.get("reply")[1], "done")


if __name__ == "__main__":
    unittest.main()
