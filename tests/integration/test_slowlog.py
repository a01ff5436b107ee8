"""The slow log (SLOWLOG and GET /v1/slowlog): Redis's replies and rules (threshold, order,
bound, argument shaping, redaction), HTTP requests logged beside RESP commands, the trace an
entry names, and the access rules that govern it. Thresholds are 0 (log everything) or far
above anything a test command takes, so nothing here depends on timing."""
import base64
import json
import re
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel, RedisServer, http
from test_tracing import Collector

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def http_raw(method, port, path, headers=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class SlowLogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Keel().start()
        cls.r = redis.Redis(port=cls.node.port, decode_responses=True)

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def setUp(self):
        self.r.config_set("slowlog-log-slower-than", 0)
        self.r.config_set("slowlog-max-len", 128)
        self.r.slowlog_reset()

    def test_every_command_is_logged_at_zero_and_none_above_what_it_takes(self):
        self.r.set("sl:a", "1")
        entries = self.r.execute_command("SLOWLOG", "GET", "10")
        sets = [e for e in entries if e[3] == ["SET", "sl:a", "1"]]
        self.assertEqual(len(sets), 1, entries)
        e = sets[0]
        self.assertEqual(len(e), 6)  # id, time, duration, arguments, client, client name
        self.assertGreaterEqual(e[2], 0)
        self.assertRegex(e[4], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(e[5], "")
        # redis-py reads it as it reads Redis's.
        parsed = self.r.slowlog_get(10)
        self.assertIn(b"SET sl:a 1", [p["command"] for p in parsed])
        # 10 s: no command of this test takes that long.
        self.r.config_set("slowlog-log-slower-than", 10000000)
        self.r.slowlog_reset()
        for i in range(20):
            self.r.set("sl:b%d" % i, "x")
        self.assertEqual(self.r.slowlog_len(), 0)
        self.r.config_set("slowlog-log-slower-than", -1)
        self.r.get("sl:a")
        self.assertEqual(self.r.slowlog_len(), 0)

    def test_newest_first_bounded_ids_and_reset(self):
        for i in range(12):
            self.r.set("sl:k%d" % i, i)
        raw = self.r.execute_command("SLOWLOG", "GET", "-1")
        keys = [e[3][1] for e in raw if e[3][0] == "SET"]
        self.assertEqual(keys, ["sl:k%d" % i for i in range(11, -1, -1)])
        ids = [e[0] for e in raw]
        self.assertEqual(ids, sorted(ids, reverse=True))
        self.assertEqual(len(self.r.execute_command("SLOWLOG", "GET")), 10)  # default count
        self.assertEqual(len(self.r.execute_command("SLOWLOG", "GET", "2")), 2)
        self.r.config_set("slowlog-max-len", 3)
        self.assertLessEqual(self.r.slowlog_len(), 3)
        for i in range(10):
            self.r.get("sl:k0")
        self.assertEqual(self.r.slowlog_len(), 3)
        top = self.r.execute_command("SLOWLOG", "GET", "1")[0][0]
        self.assertEqual(self.r.slowlog_reset(), True)
        self.r.get("sl:k0")
        self.assertGreater(self.r.execute_command("SLOWLOG", "GET", "1")[0][0], top)  # ids do not restart

    def test_arguments_are_shaped_and_secrets_redacted(self):
        self.r.rpush("sl:list", *range(40))
        self.r.set("sl:big", "x" * 300)
        try:
            self.r.execute_command("AUTH", "nobody", "hunter2")
        except redis.ResponseError:
            pass
        raw = self.r.execute_command("SLOWLOG", "GET", "-1")
        by_cmd = {tuple(e[3][:2]): e[3] for e in raw}
        push = by_cmd[("RPUSH", "sl:list")]
        self.assertEqual(len(push), 32)
        self.assertEqual(push[-1], "... (11 more arguments)")
        big = by_cmd[("SET", "sl:big")]
        self.assertEqual(big[2], "x" * 128 + "... (172 more bytes)")
        auth = [e[3] for e in raw if e[3][0] == "AUTH"]
        self.assertEqual(auth, [["AUTH", "(redacted)", "(redacted)"]])
        self.assertNotIn("hunter2", json.dumps(raw))

    def test_errors_as_redis_gives_them(self):
        with RedisServer() as rs:
            want = redis.Redis(port=rs.port, decode_responses=True)
            for args in (("SLOWLOG", "GET", "-2"), ("SLOWLOG", "GET", "x"), ("SLOWLOG", "FOO"),
                         ("SLOWLOG", "LEN", "extra"), ("SLOWLOG", "RESET", "1")):
                errs = []
                for c in (want, self.r):
                    try:
                        c.execute_command(*args)
                        errs.append(None)
                    except redis.ResponseError as e:
                        errs.append(str(e))
                self.assertIsNotNone(errs[0], args)
                self.assertEqual(errs[0], errs[1], args)
        with self.assertRaises(redis.ResponseError) as e:
            self.r.config_set("slowlog-log-slower-than", -5)
        self.assertIn("allowed: an integer from -1", str(e.exception))
        self.assertEqual(self.r.config_get("slowlog-max-len"), {"slowlog-max-len": "128"})

    def test_http_requests_are_logged_and_served_as_json(self):
        self.r.set("sl:h", "v")
        self.r.slowlog_reset()
        st, _, _ = http_raw("GET", self.node.http_port, "/v1/kv/sl:h?token=shhh")
        self.assertEqual(st, 200)
        st, body = http("GET", self.node.http_port, "/v1/slowlog")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["slower_than_us"], 0)
        self.assertEqual(body["max_len"], 128)
        reqs = [e for e in body["entries"] if e["door"] == "http" and e["args"][:2] == ["GET", "/v1/kv/sl:h"]]
        self.assertEqual(len(reqs), 1, body)
        e = reqs[0]
        self.assertEqual(e["args"][2], "200")
        self.assertEqual(e["client"], "127.0.0.1")
        self.assertIsNone(e["trace_id"])
        self.assertNotIn("shhh", json.dumps(body))  # no query string
        # The commands the HTTP door ran for it are not logged again as RESP commands.
        self.assertFalse([x for x in body["entries"] if x["door"] == "resp" and "sl:h" in x["args"]], body)
        st, body = http("GET", self.node.http_port, "/v1/slowlog?count=1")
        self.assertEqual(len(body["entries"]), 1)
        st, body = http("GET", self.node.http_port, "/v1/slowlog?count=-1")
        self.assertEqual(st, 400)
        self.assertIn("allowed: an integer of 0 or more", body["error"]["message"])
        st, body = http("DELETE", self.node.http_port, "/v1/slowlog")
        self.assertEqual((st, body), (200, {"len": 0}))

    def test_access_rules_govern_it(self):
        self.r.execute_command("ACL", "SETUSER", "sl-app", "on", ">pw", "~*", "+@all", "-@admin")
        self.r.execute_command("ACL", "SETUSER", "sl-ops", "on", ">pw", "~*", "+@all")
        try:
            app = redis.Redis(port=self.node.port, username="sl-app", password="pw", decode_responses=True)
            with self.assertRaises(redis.exceptions.NoPermissionError) as e:
                app.slowlog_get()
            self.assertIn("slowlog|get", str(e.exception))
            auth = lambda u: {"Authorization": "Basic " + base64.b64encode(("%s:pw" % u).encode()).decode()}
            st, _, _ = http_raw("GET", self.node.http_port, "/v1/slowlog", auth("sl-app"))
            self.assertEqual(st, 403)
            st, _, body = http_raw("GET", self.node.http_port, "/v1/slowlog", auth("sl-ops"))
            self.assertEqual(st, 200, body)
            # The entry names the user an HTTP request authenticated as.
            names = [e["client_name"] for e in json.loads(body)["entries"] if e["door"] == "http"]
            self.assertIn("sl-app", names)
            # The spans of slow requests (GET /v1/traces) are governed by the same rule.
            for path in ("/v1/traces", "/v1/traces/" + "4" * 32):
                st, _, _ = http_raw("GET", self.node.http_port, path, auth("sl-app"))
                self.assertEqual(st, 403, path)
            st, _, body = http_raw("GET", self.node.http_port, "/v1/traces", auth("sl-ops"))
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["enabled"], False)  # tracing is off on this node
            self.assertEqual(json.loads(body)["traces"], [])
            st, _, body = http_raw("GET", self.node.http_port, "/v1/traces/" + "4" * 32, auth("sl-ops"))
            self.assertEqual(st, 404, body)
            self.assertIn("tracing is off on this node", json.loads(body)["error"]["message"])
        finally:
            self.r.execute_command("ACL", "DELUSER", "sl-app", "sl-ops")


class SlowLogTraceTest(unittest.TestCase):
    """With tracing on, an entry names the trace its request's span went to."""

    def test_entries_name_their_traces(self):
        col = Collector()
        node = Keel("--set", "trace.endpoint=" + col.url(), "--set", "trace.sample_ratio=1",
                    "--set", "slowlog.slower_than_us=0").start()
        try:
            r = redis.Redis(port=node.port, decode_responses=True)
            trace = "4bf92f3577b34da6a3ce929d0e0e4736"
            r.execute_command("CLIENT", "TRACEPARENT", "00-%s-00f067aa0ba902b7-01" % trace)
            r.set("slt:k", "v")
            st, headers, _ = http_raw("GET", node.http_port, "/v1/kv/slt:k")
            self.assertEqual(st, 200)
            http_trace = headers["traceresponse"].split("-")[1]
            st, body = http("GET", node.http_port, "/v1/slowlog")
            by = {(e["door"], tuple(e["args"][:2])): e for e in body["entries"]}
            self.assertEqual(by[("resp", ("SET", "slt:k"))]["trace_id"], trace)
            self.assertEqual(by[("http", ("GET", "/v1/kv/slt:k"))]["trace_id"], http_trace)
            self.assertRegex(http_trace, HEX32)
            # The node keeps the spans of those slow requests: the HTTP request's span and the
            # command it ran, its child.
            st, got = http("GET", node.http_port, "/v1/traces/" + http_trace)
            self.assertEqual(st, 200, got)
            names = {s["name"]: s for s in got["spans"]}
            self.assertLessEqual({"GET /v1/kv/{key}", "GET"}, set(names), got)
            root = names["GET /v1/kv/{key}"]
            self.assertIsNone(root["parent_span_id"])
            # The commands it ran (GET, and TYPE/PTTL for the answer's fields) are its children.
            for s in got["spans"]:
                if s is not root:
                    self.assertEqual(s["parent_span_id"], root["span_id"], s)
            self.assertEqual(names["GET /v1/kv/{key}"]["attributes"]["http.response.status_code"], 200)
            st, got = http("GET", node.http_port, "/v1/traces/" + trace)
            self.assertEqual(st, 200, got)
            self.assertIn("SET", [s["name"] for s in got["spans"]])
            st, listed = http("GET", node.http_port, "/v1/traces?count=1")
            self.assertEqual(st, 200, listed)
            self.assertEqual(len(listed["traces"]), 1)
        finally:
            node.cleanup()
            col.server.shutdown()


class RecentTracesBoundTest(unittest.TestCase):
    """The spans kept for slow requests are bounded (trace.recent_spans): the oldest traces go."""

    def test_the_oldest_traces_go_past_the_bound_and_zero_keeps_none(self):
        col = Collector()
        node = Keel("--set", "trace.endpoint=" + col.url(), "--set", "trace.sample_ratio=1",
                    "--set", "slowlog.slower_than_us=0", "--set", "trace.recent_spans=4").start()
        try:
            r = redis.Redis(port=node.port, decode_responses=True)
            for i in range(10):
                r.set("b:%d" % i, "v")
            st, listed = http("GET", node.http_port, "/v1/traces?count=100")
            self.assertEqual(st, 200, listed)
            self.assertEqual(listed["recent_spans"], 4)
            self.assertLessEqual(listed["spans"], 4)
            self.assertLessEqual(len(listed["traces"]), 4)
            self.assertGreaterEqual(listed["evicted_traces"], 6)
            # The newest is there, the oldest gone (each SET is a trace of its own).
            newest = listed["traces"][0]["trace_id"]
            st, got = http("GET", node.http_port, "/v1/traces/" + newest)
            self.assertEqual(st, 200, got)
            st, entries = http("GET", node.http_port, "/v1/slowlog")
            oldest = [e for e in entries["entries"] if e["args"][:2] == ["SET", "b:0"]][0]["trace_id"]
            self.assertEqual(http("GET", node.http_port, "/v1/traces/" + oldest)[0], 404)
            # A client's command too fast for the slow log is not held at all (not even among
            # the newest spans recorded): it was exported, and that is all.
            r.config_set("slowlog-log-slower-than", 100000000)
            fast = "f" * 32
            r.execute_command("CLIENT", "TRACEPARENT", "00-%s-00f067aa0ba902b7-01" % fast)
            r.set("b:fast", "v")
            col.wait_span(lambda s: s["traceId"] == fast and s["name"] == "SET", "the fast SET's exported span")
            st, got = http("GET", node.http_port, "/v1/traces/" + fast)
            self.assertEqual(st, 404, got)
        finally:
            node.cleanup()
            col.server.shutdown()
        node = Keel("--set", "trace.endpoint=" + col.url(), "--set", "trace.sample_ratio=1",
                    "--set", "slowlog.slower_than_us=0", "--set", "trace.recent_spans=0").start()
        try:
            redis.Redis(port=node.port).set("z", "v")
            st, listed = http("GET", node.http_port, "/v1/traces")
            self.assertEqual((st, listed["enabled"], listed["traces"]), (200, False, []))
        finally:
            node.cleanup()


if __name__ == "__main__":
    unittest.main()
