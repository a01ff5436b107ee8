"""maxmemory on the memory engine: noeviction refuses writes with Redis's OOM error, evicting
policies keep the node under its limit. The limit is for the whole node, across shards."""
import unittest

import redis

from harness import Keel

LIMIT = 8 * 1024 * 1024


class MaxMemory(unittest.TestCase):
    def fill(self, r, n, size=1024):
        p = r.pipeline(transaction=False)
        for i in range(n):
            p.set("fill:%06d" % i, "x" * size)
        return p.execute(raise_on_error=False)

    def test_noeviction_refuses_writes_past_the_limit(self):
        with Keel("--engine", "memory", "--shards", "2", "--maxmemory", str(LIMIT),
                  "--maxmemory-policy", "noeviction") as k:
            r = redis.Redis(port=k.port)
            out = self.fill(r, 20000)  # ~20 MB of values against an 8 MB limit
            errors = [o for o in out if isinstance(o, Exception)]
            self.assertTrue(errors, "writes past maxmemory must fail")
            self.assertIn("command not allowed when used memory > 'maxmemory'", str(errors[0]))
            self.assertTrue(str(errors[0]).startswith("OOM") or "OOM" in repr(errors[0]))
            used = int(r.info("memory")["used_memory"])
            self.assertLessEqual(used, LIMIT * 1.1)
            self.assertGreater(used, LIMIT * 0.5)
            # Reads and deletes still work; space freed can be used again.
            self.assertEqual(r.get("fill:000000"), b"x" * 1024)
            r.delete(*["fill:%06d" % i for i in range(1000)])
            self.assertTrue(r.set("after-delete", "ok"))

    def test_allkeys_lru_evicts_and_stays_under_the_limit(self):
        with Keel("--engine", "memory", "--shards", "2", "--maxmemory", str(LIMIT),
                  "--maxmemory-policy", "allkeys-lru") as k:
            r = redis.Redis(port=k.port)
            out = self.fill(r, 20000)
            self.assertFalse([o for o in out if isinstance(o, Exception)], "evicting policies accept writes")
            info = r.info()
            self.assertGreater(int(info["evicted_keys"]), 5000)
            self.assertLessEqual(int(info["used_memory"]), LIMIT * 1.1)
            self.assertLess(r.dbsize(), 20000)
            self.assertEqual(r.get("fill:019999"), b"x" * 1024)  # the newest key survived


if __name__ == "__main__":
    unittest.main()
