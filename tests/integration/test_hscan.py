"""HSCAN over a large hash: every field present for the whole iteration comes back exactly
once, even while other fields are added and removed; small hashes come back in one call with
cursor 0, as Redis returns them."""
import unittest

import redis

from harness import Keel


class HScan(unittest.TestCase):
    def test_small_hash_in_one_call(self):
        with Keel("--engine", "memory") as k:
            r = redis.Redis(port=k.port, decode_responses=True)
            r.hset("small", mapping={"f%d" % i: i for i in range(100)})
            cursor, fields = r.hscan("small", 0, count=5)
            self.assertEqual(cursor, 0)
            self.assertEqual(len(fields), 100)

    def test_large_hash_each_stable_field_once_while_it_changes(self):
        with Keel("--engine", "memory") as k:
            r = redis.Redis(port=k.port, decode_responses=True)
            stable = {"s%05d" % i: str(i) for i in range(5000)}
            r.hset("big", mapping=stable)
            r.hset("big", mapping={"gone%04d" % i: "x" for i in range(1000)})
            seen, cursor, calls, added = [], 0, 0, 0
            while True:
                cursor, page = r.hscan("big", cursor, count=50)
                calls += 1
                seen.extend(f for f in page if f.startswith("s"))
                for f in page:
                    if f.startswith("s"):
                        self.assertEqual(page[f], stable[f])
                # Change the hash between calls: remove some fields, add new ones.
                r.hdel("big", *["gone%04d" % i for i in range(calls * 10, calls * 10 + 10)])
                r.hset("big", mapping={"new%05d" % (added + i): "y" for i in range(20)})
                added += 20
                if cursor == 0:
                    break
                self.assertLess(calls, 1000, "HSCAN must finish")
            self.assertEqual(len(seen), len(set(seen)), "no stable field is returned twice")
            self.assertEqual(set(seen), set(stable), "every stable field is returned")
            self.assertGreater(calls, 1, "a large hash is returned in pages")

    def test_match_novalues_and_bad_cursor(self):
        with Keel("--engine", "memory") as k:
            r = redis.Redis(port=k.port, decode_responses=True)
            r.hset("h", mapping={"a%d" % i: i for i in range(300)} | {"b%d" % i: i for i in range(300)})
            r.set_response_callback("HSCAN", lambda resp, **kw: resp)  # raw [cursor, items]
            got, cursor = set(), 0
            while True:
                cursor, page = r.execute_command("HSCAN", "h", cursor, "MATCH", "a*", "COUNT", 100, "NOVALUES")
                got.update(page)
                if int(cursor) == 0:
                    break
            self.assertEqual(got, {"a%d" % i for i in range(300)})
            with self.assertRaises(redis.ResponseError) as e:
                r.execute_command("HSCAN", "h", "abc")
            self.assertIn("invalid cursor", str(e.exception))
            r.set("str", "v")
            with self.assertRaises(redis.ResponseError) as e:
                r.hscan("str", 0)
            self.assertIn("WRONGTYPE", str(e.exception))


if __name__ == "__main__":
    unittest.main()
