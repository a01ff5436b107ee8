"""The HTTP/JSON front end with a plain HTTP client, and /metrics checked by promtool."""
import json
import shutil
import subprocess
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel


class Http(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory").start()
        cls.base = "http://127.0.0.1:%d" % cls.keel.http_port

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def call(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def call_json(self, method, path, body=None):
        status, headers, data = self.call(method, path, body)
        return status, json.loads(data)

    def test_put_get_delete(self):
        self.assertEqual(self.call_json("PUT", "/v1/kv/greeting", b"hello world"),
                         (200, {"key": "greeting", "stored": True, "bytes": 11}))
        status, body = self.call_json("GET", "/v1/kv/greeting")
        self.assertEqual((status, body["value"], body["ttl_ms"], body["type"]), (200, "hello world", -1, "string"))
        # The same data is visible over RESP.
        self.assertEqual(redis.Redis(port=self.keel.port).get("greeting"), b"hello world")
        self.assertEqual(self.call_json("DELETE", "/v1/kv/greeting"), (200, {"key": "greeting", "deleted": True}))
        self.assertEqual(self.call_json("DELETE", "/v1/kv/greeting"), (200, {"key": "greeting", "deleted": False}))
        status, body = self.call_json("GET", "/v1/kv/greeting")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "NOT_FOUND")

    def test_ttl_and_encoded_keys(self):
        self.assertEqual(self.call("PUT", "/v1/kv/a%20b%2Fc?ttl_ms=60000", b"\xff\x00")[0], 200)
        status, body = self.call_json("GET", "/v1/kv/a%20b%2Fc")
        self.assertEqual(status, 200)
        self.assertEqual(body["key"], "a b/c")
        self.assertEqual(body["value_base64"], "/wA=")  # not UTF-8, so base64
        self.assertTrue(0 < body["ttl_ms"] <= 60000)
        for bad in ["abc", "0", "-5", "1.5"]:
            status, body = self.call_json("PUT", "/v1/kv/x?ttl_ms=" + bad, b"v")
            self.assertEqual(status, 400, bad)
            self.assertIn("ttl_ms must be a positive integer", body["error"]["message"])

    def test_hash_values(self):
        redis.Redis(port=self.keel.port).hset("hh", mapping={"f": "v"})
        status, body = self.call_json("GET", "/v1/kv/hh")
        self.assertEqual((status, body["type"], body["fields"]), (200, "hash", {"f": "v"}))

    def test_list_with_prefix_and_cursor(self):
        r = redis.Redis(port=self.keel.port)
        want = {"list:%03d" % i for i in range(57)}
        for k in want:
            r.set(k, "v")
        r.set("other", "v")
        got, cursor, pages = set(), None, 0
        while True:
            path = "/v1/kv?prefix=list%3A&limit=10" + ("&cursor=" + cursor if cursor else "")
            status, body = self.call_json("GET", path)
            self.assertEqual(status, 200)
            self.assertLessEqual(len(body["keys"]), 10)
            got.update(body["keys"])
            pages += 1
            cursor = body["cursor"]
            if cursor is None:
                break
        self.assertEqual(got, want)
        self.assertGreaterEqual(pages, 6)
        self.assertEqual(self.call_json("GET", "/v1/kv?limit=0")[0], 400)
        self.assertEqual(self.call_json("GET", "/v1/kv?cursor=nonsense")[0], 400)

    def test_errors(self):
        status, body = self.call_json("GET", "/nope")
        self.assertEqual((status, body["error"]["code"]), (404, "NOT_FOUND"))
        status, headers, data = self.call("PATCH", "/v1/kv/x", b"v")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET, PUT, DELETE")
        status, body = self.call_json("GET", "/v1/kv/%zz")
        self.assertEqual(status, 400)
        status, headers, data = self.call("PUT", "/v1/kv/big", b"x" * (17 * 1024 * 1024))
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(data)["error"]["code"], "LIMIT_EXCEEDED")

    def test_health(self):
        self.assertEqual(self.call_json("GET", "/health/live"), (200, {"status": "live"}))
        status, body = self.call_json("GET", "/health/ready")
        self.assertEqual((status, body["status"]), (200, "ready"))
        self.assertEqual(sorted(body["checks"]), ["metadata", "partitions", "storage", "tasks"])
        self.assertTrue(all(c["ok"] for c in body["checks"].values()), body)

    def test_metrics(self):
        r = redis.Redis(port=self.keel.port)
        for i in range(10):
            r.set("m%d" % i, i)
        r.get("m1")
        status, headers, data = self.call("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = data.decode()
        self.assertIn('keel_commands_total{cmd="set"}', text)
        self.assertIn('keel_command_duration_seconds_bucket{cmd="get",le="+Inf"}', text)
        self.assertIn("keel_keys ", text)
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is installed by scripts/deps.sh")
        check = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    unittest.main()
