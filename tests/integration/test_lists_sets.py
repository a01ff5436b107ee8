"""Lists, sets and sorted sets beyond the fixed parity cases: random command sequences sent to keel and to
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


ZSET_KEYS = ["z0", "z1", "z2"]
SCORES = ["0", "1", "2", "-1", "0.5", "2.5", "-inf", "+inf"]
BOUNDS = ["-inf", "+inf", "0", "(0", "1", "(1", "2.5", "(-1"]
LEX = ["-", "+", "[a", "(a", "[c", "(d", "[1"]


def random_zset_command(rng):
    k = rng.choice(ZSET_KEYS)
    s, s2 = rng.choice(SCORES), rng.choice(SCORES)
    v, v2 = rng.choice(VALUES), rng.choice(VALUES)
    lo, hi = rng.choice(BOUNDS), rng.choice(BOUNDS)
    i, j = str(rng.randint(-6, 6)), str(rng.randint(-6, 6))
    opts = rng.sample(["NX", "XX", "GT", "LT", "CH"], rng.randint(0, 2))
    return rng.choice([
        ["ZADD", k, *opts, s, v, s2, v2], ["ZADD", k, s, v], ["ZADD", k, "INCR", s, v],
        ["ZINCRBY", k, rng.choice(["1", "-0.5", "3"]), v], ["ZREM", k, v, v2], ["ZCARD", k],
        ["ZSCORE", k, v], ["ZMSCORE", k, v, v2], ["ZRANK", k, v], ["ZREVRANK", k, v],
        ["ZCOUNT", k, lo, hi], ["ZRANGE", k, i, j], ["ZRANGE", k, i, j, "REV", "WITHSCORES"],
        ["ZRANGE", k, lo, hi, "BYSCORE", "LIMIT", str(rng.randint(0, 3)), str(rng.randint(-1, 3))],
        ["ZRANGEBYSCORE", k, lo, hi, "WITHSCORES"], ["ZREVRANGEBYSCORE", k, hi, lo],
        ["ZREVRANGE", k, i, j, "WITHSCORES"], ["ZREMRANGEBYRANK", k, i, j],
        ["ZREMRANGEBYSCORE", k, lo, hi], ["ZPOPMIN", k], ["ZPOPMAX", k, str(rng.randint(0, 3))],
        ["ZADD", "zlex", "0", v, "0", v2], ["ZRANGEBYLEX", "zlex", rng.choice(LEX), rng.choice(LEX)],
        ["ZLEXCOUNT", "zlex", rng.choice(LEX), rng.choice(LEX)],
        ["ZREMRANGEBYLEX", "zlex", rng.choice(LEX), rng.choice(LEX)],
        ["EXISTS", k], ["TYPE", k],
        # several keys (on different shards: copied, run, written back)
        ["ZUNIONSTORE", k, "2", rng.choice(ZSET_KEYS), rng.choice(ZSET_KEYS), "WEIGHTS", "2", "0.5"],
        ["ZINTERSTORE", k, "2", rng.choice(ZSET_KEYS), rng.choice(ZSET_KEYS), "AGGREGATE", rng.choice(["MIN", "MAX", "SUM"])],
        ["ZDIFFSTORE", k, "2", rng.choice(ZSET_KEYS), rng.choice(ZSET_KEYS)],
        ["ZUNION", "3", *ZSET_KEYS, "WITHSCORES"], ["ZINTER", "2", k, rng.choice(ZSET_KEYS), "WITHSCORES"],
        ["ZDIFF", "2", k, rng.choice(ZSET_KEYS)], ["ZINTERCARD", "2", k, rng.choice(ZSET_KEYS)],
        ["ZRANGESTORE", k, rng.choice(ZSET_KEYS), i, j], ["ZMPOP", "2", k, rng.choice(ZSET_KEYS), rng.choice(["MIN", "MAX"])],
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
            for cl in (r, k):  # compare what the servers sent, not redis-py's parse of it
                cl.response_callbacks.clear()
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

    def test_sorted_sets(self):
        for seed in range(1, 6):
            self.run_sequence(random_zset_command, seed, 500)


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

    def test_zscan_visits_every_member_exactly_once_with_its_score(self):
        k = self.k
        want = {b"y%d" % i: i / 4 for i in range(2000)}
        k.zadd("zscanme", want)
        got = {}
        cursor = 0
        for _ in range(10000):
            cursor, page = k.zscan("zscanme", cursor, count=100)
            for m, sc in page:
                self.assertNotIn(m, got)
                got[m] = sc
            if cursor == 0:
                break
        self.assertEqual(got, want)

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
        k.zadd("tz", {"a": 1})
        self.assertEqual(k.type("tz"), b"zset")
        self.assertEqual(set(k.scan_iter(match="t*", _type="zset")), {b"tz"})
        self.assertEqual(k.object("encoding", "tz"), b"rbtree")
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
            k.zadd("board", {"p%d" % i: i * 1.5 for i in range(30)})
            k.zincrby("board", 100, "p3")
            k.zpopmin("board", 2)
            keel.kill9()
            keel = Keel("--engine", "persistent", "--fsync", "always", data_dir=d).start()
            k = redis.Redis(port=keel.port)
            self.assertEqual(k.lrange("q", 0, -1), [b"j%d" % i for i in range(11, 100)])
            self.assertEqual(k.lrange("done", 0, -1), [b"j10"])
            want = {b"t%d" % i for i in range(50)} - set(popped)
            self.assertEqual(k.smembers("tags"), want)
            self.assertEqual(k.smembers("tags-copy"), want)
            self.assertEqual(k.zrange("board", 0, 2, withscores=True),
                             [(b"p2", 3.0), (b"p4", 6.0), (b"p5", 7.5)])
            self.assertEqual(k.zrevrank("board", "p3"), 0)
            self.assertEqual(k.zscore("board", "p3"), 104.5)
            self.assertEqual(k.zcard("board"), 28)
        finally:
            if keel is not None and keel.proc is not None and keel.proc.poll() is None:
                keel.cleanup()
            shutil.rmtree(d, ignore_errors=True)


HASH_KEYS = ["h0", "h1"]
STREAM_KEYS = ["x0", "x1"]


def random_hash_command(rng):
    k, f, f2, v = rng.choice(HASH_KEYS), rng.choice(VALUES), rng.choice(VALUES), rng.choice(VALUES)
    return rng.choice([
        ["HSET", k, f, v, f2, v], ["HSET", k, f, v], ["HSETNX", k, f, v], ["HDEL", k, f, f2],
        ["HINCRBY", k, "n" + f, str(rng.randint(-3, 3))], ["HINCRBYFLOAT", k, "x" + f, "0.25"],
        ["HMSET", k, f, v], ["HLEN", k], ["HGET", k, f],
    ])


def random_stream_command(rng):
    k = rng.choice(STREAM_KEYS)
    f, v = rng.choice(VALUES), rng.choice(VALUES)
    return rng.choice([
        ["XADD", k, "*", f, v], ["XADD", k, "*", f, v, "f2", v], ["XADD", k, "MAXLEN", "5", "*", f, v],
        ["XADD", k, "MAXLEN", "~", "3", "*", f, v], ["XTRIM", k, "MAXLEN", str(rng.randint(0, 6))],
        ["XDEL", k, "ids"], ["XLEN", k],
    ])


def state(client, keys):
    """Everything a key holds, in a comparable form (streams: entries and their counters)."""
    out = {}
    for key in keys:
        t = client.type(key).decode()
        if t == "list":
            out[key] = (t, client.lrange(key, 0, -1))
        elif t == "set":
            out[key] = (t, sorted(client.smembers(key)))
        elif t == "zset":
            out[key] = (t, client.zrange(key, 0, -1, withscores=True))
        elif t == "hash":
            out[key] = (t, sorted(client.hgetall(key).items()))
        elif t == "stream":
            info = client.xinfo_stream(key)
            out[key] = (t, client.xrange(key), info["length"], info["last-generated-id"],
                        info["max-deleted-entry-id"], info["entries-added"])
        else:
            out[key] = (t,)
    return out


class ByElementPersistence(unittest.TestCase):
    """The persistent engine journals a change to a collection as what changed (delta ops folded in
    by RocksDB), and every delta is checked against the value it produced (KEEL_VERIFY_DELTAS=1,
    set by the harness: a wrong one stops the node). Random sequences over every collection type,
    replies compared with Redis; then a kill -9 and the whole state compared again."""

    def test_random_changes_survive_kill9(self):
        d = tempfile.mkdtemp(prefix="keel-it-delta-")
        keel = None
        keys = LIST_KEYS + SET_KEYS + ZSET_KEYS + ["zlex"] + HASH_KEYS + STREAM_KEYS
        makers = [random_list_command, random_set_command, random_zset_command, random_hash_command,
                  random_stream_command]
        args = ("--engine", "persistent", "--fsync", "always", "--shards", "2")
        try:
            with RedisServer() as rs:
                r = redis.Redis(port=rs.port)
                keel = Keel(*args, data_dir=d).start()
                k = redis.Redis(port=keel.port)
                raw = [redis.Redis(port=rs.port), redis.Redis(port=keel.port)]
                for cl in raw:  # compare what the servers sent, not redis-py's parse of it
                    cl.response_callbacks.clear()
                # Start the collections large enough to be journaled by element (the persistent
                # engine writes small ones whole).
                for cl in raw:
                    pipe = cl.pipeline(transaction=False)
                    for key in LIST_KEYS:
                        pipe.rpush(key, *["base%d" % i for i in range(100)])
                    for key in SET_KEYS:
                        pipe.sadd(key, *["base%d" % i for i in range(100)])
                    for key in ZSET_KEYS:
                        pipe.zadd(key, {"base%d" % i: i for i in range(100)})
                    for key in HASH_KEYS:
                        pipe.hset(key, mapping={"base%d" % i: i for i in range(100)})
                    for key in STREAM_KEYS:
                        for i in range(1, 101):
                            pipe.xadd(key, {"f": i}, id="0-%d" % i)
                    pipe.execute()
                rng = random.Random(7)
                for step in range(1500):
                    cmd = rng.choice(makers)(rng)
                    if cmd[0] == "XADD" and "*" in cmd:  # the same ids on both servers
                        cmd[cmd.index("*")] = "%d-1" % (step + 1)
                    if cmd[0] == "XDEL":
                        cmd[2:] = ["%d-1" % rng.randint(1, step + 1) for _ in range(2)]
                    outs = []
                    for cl in raw:
                        try:
                            outs.append(("ok", canonical(cmd, cl.execute_command(*cmd))))
                        except redis.ResponseError as e:
                            outs.append(("err", str(e)))
                    self.assertEqual(outs[0], outs[1], "step %d: %s" % (step, cmd))
                want = state(r, keys)
                self.assertEqual(state(k, keys), want)
                self.assertGreater(sum(1 for v in want.values() if len(v) > 1), 5)
                keel.kill9()
                keel = Keel(*args, data_dir=d).start()
                k = redis.Redis(port=keel.port)
                self.assertEqual(state(k, keys), want)
        finally:
            if keel is not None and keel.proc is not None and keel.proc.poll() is None:
                keel.cleanup()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
