"""Lists and sets beyond the fixed parity cases: random command sequences sent to keel and to
Debian's redis-server must get the same replies (Redis is the model), keys spread over shards;
random choices (SPOP, SRANDMEMBER) and SSCAN checked by their properties; and lists and sets
surviving a kill -9 of a persistent node with fsync = always."""
import random
import shutil
import tempfile
import unittest

import redis

from harness import Keel, RedisServer

LIST_KEYS = ["l0", "l1", "l2", "{t}l3", "{t}l4"]
SET_KEYS = ["s0", "s1", "s2", "{t}s3", "{t}s4"]
VALUES = ["a", "b", "c", "d", "e", "1", "2", "10"]


def random_list_command(rng):
    k, k2 = rng.choice(LIST_KEYS), rng.choice(LIST_KEYS)
    v, v2 = rng.choice(VALUES), rng.choice(VALUES)
    i, j = rng.randint(-8, 8), rng.randint(-8, 8)
    side = lambda: rng.choice(["LEFT", "RIGHT"])
    return rng.choice([
        ["LPUSH", k, v, v2], ["RPUSH", k, v], ["LPUSHX", k, v], ["RPUSHX", k, v, v2],
        ["LPOP", k], ["RPOP", k], ["LPOP", k, str(rng.randint(0, 4))], ["RPOP", k, str(rng.randint(0, 4))],
        ["LLEN", k], ["LRANGE", k, str(i), str(j)], ["LINDEX", k, str(i)], ["LSET", k, str(i), v],
        ["LINSERT", k, rng.choice(["BEFORE", "AFTER"]), v, v2], ["LREM", k, str(i), v],
        ["LTRIM", k, str(i), str(j)], ["LPOS", k, v], ["LPOS", k, v, "RANK", str(i or 1), "COUNT", "0"],
        ["LPOS", k, v, "COUNT", str(abs(j)), "MAXLEN", str(abs(i))], ["LMOVE", k, k2, side(), side()],
        ["RPOPLPUSH", k, k2], ["LMPOP", "2", k, k2, side(), "COUNT", str(rng.randint(1, 3))],
        ["EXISTS", k], ["TYPE", k],
    ])


def random_set_command(rng):
    k, k2, k3 = rng.choice(SET_KEYS), rng.choice(SET_KEYS), rng.choice(SET_KEYS)
    v, v2 = rng.choice(VALUES), rng.choice(VALUES)
    return rng.choice([
        ["SADD", k, v, v2], ["SADD", k, v], ["SREM", k, v, v2], ["SISMEMBER", k, v],
        ["SMISMEMBER", k, v, v2], ["SCARD", k], ["SMEMBERS", k], ["SMOVE", k, k2, v],
        ["SINTER", k, k2], ["SUNION", k, k2, k3], ["SDIFF", k, k2], ["SINTERCARD", "2", k, k2],
        ["SINTERCARD", "3", k, k2, k3, "LIMIT", "1"], ["SINTERSTORE", k, k2, k3],
        ["SUNIONSTORE", k, k2, k3], ["SDIFFSTORE", k, k2, k3], ["EXISTS", k], ["TYPE", k],
    ])


def canonical(cmd, reply):
    """Set-valued replies compare as sorted lists; everything else as is."""
    if cmd[0] in ("SMEMBERS", "SINTER", "SUNION", "SDIFF") and isinstance(reply, (list, set)):
        return sorted(reply)
    return reply


class RandomSequencesMatchRedis(unittest.TestCase):
    def run_sequence(self, make, seed, steps):
        rng = random.Random(seed)
        with RedisServer() as rs, Keel("--engine", "memory", "--shards", "2") as ks:
            r = redis.Redis(port=rs.port)
            k = redis.Redis(port=ks.port)
            for step in range(steps):
                cmd = make(rng)
                outs = []
                for cl in (r, k):
                    try:
                        outs.append(("ok", canonical(cmd, cl.execute_command(*cmd))))
                    except redis.ResponseError as e:
                        outs.append(("err", str(e)))
                self.assertEqual(outs[0], outs[1], "seed %d step %d: %s" % (seed, step, cmd))

    def test_lists(self):
        for seed in range(1, 6):
            self.run_sequence(random_list_command, seed, 400)

    def test_sets(self):
        for seed in range(1, 6):
            self.run_sequence(random_set_command, seed, 400)


class RandomChoicesAndScans(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory").start()
        cls.k = redis.Redis(port=cls.keel.port)

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def test_spop_and_srandmember_keep_their_promises(self):
        k = self.k
        members = {b"m%d" % i for i in range(1000)}
        k.sadd("big", *members)
        picked = k.srandmember("big", 50)
        self.assertEqual(len(picked), 50)
        self.assertEqual(len(set(picked)), 50)
        self.assertTrue(set(picked) <= members)
        self.assertEqual(len(k.srandmember("big", -2000)), 2000)
        self.assertEqual(set(k.srandmember("big", 5000)), members)
        popped = k.spop("big", 300)
        self.assertEqual(len(set(popped)), 300)
        self.assertTrue(set(popped) <= members)
        rest = k.smembers("big")
        self.assertEqual(rest, members - set(popped))
        one = k.spop("big")
        self.assertIn(one, rest)
        self.assertEqual(k.scard("big"), 699)
        # Popping everything, one at a time, removes the key.
        while k.spop("big") is not None:
            pass
        self.assertEqual(k.exists("big"), 0)
        # A repeat count past the bound is refused, not answered with 20 million members.
        k.sadd("small", "a")
        with self.assertRaises(redis.ResponseError) as e:
            k.srandmember("small", -20000000)
        self.assertIn("out of range", str(e.exception))

    def test_sscan_visits_every_member_exactly_once(self):
        k = self.k
        members = {b"x%d" % i for i in range(3000)}
        k.sadd("scanme", *members)
        seen = []
        cursor = 0
        for _ in range(10000):
            cursor, page = k.sscan("scanme", cursor, count=100)
            seen.extend(page)
            if cursor == 0:
                break
        self.assertEqual(cursor, 0)
        self.assertEqual(len(seen), len(members))
        self.assertEqual(set(seen), members)
        cursor, page = k.sscan("scanme", 0, match="x1??", count=5000)
        self.assertTrue(all(len(m) == 4 and m.startswith(b"x1") for m in page))

    def test_type_scan_type_and_object_encoding(self):
        k = self.k
        k.rpush("tl", "a")
        k.sadd("ts", "a")
        k.set("tstr", "a")
        self.assertEqual(k.type("tl"), b"list")
        self.assertEqual(k.type("ts"), b"set")
        lists = set(k.scan_iter(match="t*", _type="list"))
        sets = set(k.scan_iter(match="t*", _type="set"))
        self.assertEqual(lists, {b"tl"})
        self.assertEqual(sets, {b"ts"})
        self.assertEqual(k.object("encoding", "tl"), b"ringbuffer")
        self.assertEqual(k.object("encoding", "ts"), b"hashtable")
        self.assertEqual(k.object("encoding", "tstr"), b"raw")
        self.assertIsNone(k.object("encoding", "nothing"))

    def test_long_list_ends_and_middle(self):
        k = self.k
        n = 20000
        k.rpush("long", *range(n))
        k.lpush("long", *range(-1, -n - 1, -1))  # -1 .. -n pushed at the head: -n first
        self.assertEqual(k.llen("long"), 2 * n)
        self.assertEqual(k.lindex("long", 0), b"%d" % -n)
        self.assertEqual(k.lindex("long", -1), b"%d" % (n - 1))
        self.assertEqual(k.lrange("long", n - 1, n), [b"-1", b"0"])
        self.assertEqual(k.linsert("long", "BEFORE", "0", "mid"), 2 * n + 1)
        self.assertEqual(k.lpos("long", "mid"), n)
        self.assertEqual(k.lrem("long", 0, "mid"), 1)
        self.assertEqual(len(k.lpop("long", 15000)), 15000)
        self.assertEqual(k.ltrim("long", 0, 99), True)
        self.assertEqual(k.llen("long"), 100)
        self.assertEqual(k.lindex("long", 0), b"%d" % -(n - 15000))


class Persistence(unittest.TestCase):
    def test_lists_and_sets_survive_kill9_with_fsync_always(self):
        d = tempfile.mkdtemp(prefix="keel-it-types-")
        keel = None
        try:
            keel = Keel("--engine", "persistent", "--fsync", "always", data_dir=d).start()
            k = redis.Redis(port=keel.port)
            k.rpush("q", *["j%d" % i for i in range(100)])
            k.lpop("q", 10)
            k.lmove("q", "done", "LEFT", "RIGHT")
            k.sadd("tags", *["t%d" % i for i in range(50)])
            popped = k.spop("tags", 5)
            k.sinterstore("tags-copy", "tags")
            keel.kill9()
            keel = Keel("--engine", "persistent", "--fsync", "always", data_dir=d).start()
            k = redis.Redis(port=keel.port)
            self.assertEqual(k.lrange("q", 0, -1), [b"j%d" % i for i in range(11, 100)])
            self.assertEqual(k.lrange("done", 0, -1), [b"j10"])
            want = {b"t%d" % i for i in range(50)} - set(popped)
            self.assertEqual(k.smembers("tags"), want)
            self.assertEqual(k.smembers("tags-copy"), want)
        finally:
            if keel is not None and keel.proc is not None and keel.proc.poll() is None:
                keel.cleanup()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
