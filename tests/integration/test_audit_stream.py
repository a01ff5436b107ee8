"""The audit stream (docs/security.md, "Audit stream"): every audit event is also appended, as the
node itself, to a stream in the keyspace (audit.stream, default keel:audit), read with XRANGE on
any node or over HTTP; never a password in it; an append that fails is counted and the log line
is still written; a flood while the stream cannot be written is dropped and counted, and the
requests that caused it are answered meanwhile.
"""
import json
import os
import re
import signal
import socket
import time
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel, Raw
from test_acl import basic
from test_dht import DhtCluster, primary_finder
from test_tracing import PARENT, TRACE, Collector, keel as traced_keel


def http_get(port, path, auth=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def metric(port, name):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


def entries(client, key="keel:audit"):
    """XRANGE key - + as a list of dicts of str."""
    out = []
    for eid, fields in client.xrange(key, "-", "+"):
        d = {k.decode(): v.decode() for k, v in fields.items()}
        d["_id"] = eid.decode()
        out.append(d)
    return out


def wait_for(what, pred, limit=15):
    deadline = time.time() + limit
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class AuditStreamNode(unittest.TestCase):
    """One node: the events land in keel:audit, with their fields and no secret."""

    def test_events_are_in_the_stream_without_secrets(self):
        k = Keel("--engine", "memory", "--set", "log.format=json", "--set", "auth.lockout_threshold=2",
                 "--set", "auth.lockout_base_ms=60000").start()
        self.addCleanup(k.cleanup)
        a = redis.Redis(port=k.port, socket_timeout=10)
        a.execute_command("ACL", "SETUSER", "auditee", "on", ">Sup3r-Secret-pw", "~a:*", "+get", "+xrange")
        stored = a.acl_getuser("auditee")["passwords"][0]
        # The user may not touch keel:audit, yet its own events are appended (as the node).
        u = redis.Redis(port=k.port, username="auditee", password="Sup3r-Secret-pw", socket_timeout=10)
        self.assertIsNone(u.get("a:1"))
        with self.assertRaises(redis.exceptions.NoPermissionError):
            u.xrange("keel:audit")
        for _ in range(2):
            with self.assertRaises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
                redis.Redis(port=k.port, username="auditee", password="Wr0ng-Guess-pw").ping()
        with self.assertRaises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)) as e:
            redis.Redis(port=k.port, username="auditee", password="Sup3r-Secret-pw").ping()
        self.assertIn("LOCKED", str(e.exception))
        self.assertEqual(a.execute_command("ACL", "UNLOCK", "*"), 2)
        st, body = http_get(k.http_port, "/v1/kv/a:1", auth=basic("auditee", "Wr0ng-Guess-pw"))
        self.assertEqual(st, 401, body)

        want = {"acl.setuser", "auth.success", "auth.failure", "auth.lockout", "auth.locked", "auth.unlock"}
        got = wait_for("every event in the stream",
                       lambda: (lambda es: es if want <= {e["event"] for e in es} else None)(entries(a)))
        node_id = a.execute_command("CLUSTER", "MYID").decode()
        now_ms = int(time.time() * 1000)
        for e in got:
            self.assertEqual(e["node"], node_id, e)
            self.assertLessEqual(abs(int(e["ts_ms"]) - now_ms), 600000, e)
            self.assertNotIn("trace_id", e)
        by = {}
        for e in got:
            by.setdefault(e["event"], []).append({k: v for k, v in e.items() if k not in ("_id", "event", "node", "ts_ms")})
        self.assertIn({"user": "auditee", "rules": "on ><redacted> ~a:* +get +xrange", "by": "default", "door": "resp",
                       "addr": "127.0.0.1"}, by["acl.setuser"])
        self.assertIn({"door": "resp", "method": "password", "user": "auditee", "addr": "127.0.0.1",
                       "reason": "wrong password, or no such user, or the user is off"}, by["auth.failure"])
        self.assertIn({"door": "http", "method": "password", "user": "auditee", "addr": "127.0.0.1",
                       "reason": "wrong password, or no such user, or the user is off"}, by["auth.failure"])
        self.assertEqual(sorted(f["subject"] for f in by["auth.lockout"]), ["addr:127.0.0.1", "user:auditee"])
        self.assertIn({"subject": "*", "cleared": "2", "by": "default", "door": "resp", "addr": "127.0.0.1"},
                      by["auth.unlock"])
        # Entries keep the order of the events.
        order = [e["event"] for e in got]
        self.assertLess(order.index("acl.setuser"), order.index("auth.lockout"))
        self.assertLess(order.index("auth.lockout"), order.index("auth.unlock"))
        # No secret anywhere in the stream: passwords (right or wrong), the hash, its digest.
        dump = json.dumps(got)
        for secret in ("Sup3r-Secret-pw", "Wr0ng-Guess-pw", stored, stored.split("$")[-1]):
            self.assertNotIn(secret, dump)
        # The same entries over HTTP; appending produced no event of its own (no recursion),
        # and no denial in ACL LOG for the user whose events were appended.
        st, body = http_get(k.http_port, "/v1/streams/keel:audit?count=1000")
        self.assertEqual(st, 200, body)
        self.assertEqual([e["id"] for e in body["entries"]], [e["_id"] for e in entries(a)])
        self.assertEqual([(l["username"], l["reason"]) for l in a.acl_log() if l["object"] == "keel:audit"],
                         [("auditee", "key")])
        self.assertEqual(metric(k.http_port, "keel_audit_stream_failed_total"), 0)
        self.assertEqual(metric(k.http_port, "keel_audit_stream_dropped_total"), 0)
        self.assertEqual(metric(k.http_port, "keel_audit_stream_appended_total"), a.xlen("keel:audit"))
        # The log lines are written as before.
        self.assertIn('"event":"auth.lockout"', k.output())

    def test_a_refused_append_is_counted_and_the_log_line_still_written(self):
        k = Keel("--engine", "memory", "--set", "log.format=json", "--set", "audit.stream=ops:audit",
                 "--set", "audit.stream_max_len=50", "--set", "auth.lockout_threshold=0").start()
        self.addCleanup(k.cleanup)
        a = redis.Redis(port=k.port, socket_timeout=10)
        self.assertTrue(a.set("ops:audit", "not a stream"))
        a.execute_command("ACL", "SETUSER", "w1", "on", ">pw1")
        wait_for("the failure counted", lambda: metric(k.http_port, "keel_audit_stream_failed_total") == 1)
        self.assertIn("audit stream: appending to 'ops:audit' failed (WRONGTYPE", k.output())
        self.assertIn('"event":"acl.setuser"', k.output())
        self.assertEqual(a.get("ops:audit"), b"not a stream")
        # Once the key is a stream again, appends work, trimmed to about audit.stream_max_len.
        a.delete("ops:audit")
        r = Raw(k.port)
        for i in range(300):  # no such user: one auth.failure each, no password hash
            self.assertTrue(r.cmd("AUTH", "nobody-%d" % i, "pw").startswith(b"-WRONGPASS"))
        r.close()
        wait_for("300 appends", lambda: metric(k.http_port, "keel_audit_stream_appended_total") == 300)
        self.assertGreaterEqual(a.xlen("ops:audit"), 50)
        self.assertLess(a.xlen("ops:audit"), 300)
        self.assertIn("audit stream: appending to 'ops:audit' works again (1 event(s) could not be appended meanwhile)",
                      k.output())
        self.assertEqual(a.xrevrange("ops:audit", count=1)[0][1][b"user"], b"nobody-299")

    def test_an_event_of_a_traced_request_carries_its_trace_id(self):
        col = Collector()
        self.addCleanup(col.close)
        with traced_keel(col, "--set", "trace.sample_ratio=0") as k:
            r = Raw(k.port)
            r.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (TRACE, PARENT))
            self.assertEqual(r.cmd("ACL", "SETUSER", "traced-user", "on"), b"+OK\r\n")
            r.cmd("CLIENT", "TRACEPARENT", "CLEAR")
            self.assertEqual(r.cmd("ACL", "SETUSER", "plain-user", "on"), b"+OK\r\n")
            r.close()
            a = redis.Redis(port=k.port, socket_timeout=10)
            es = wait_for("both events", lambda: (lambda es: es if len(es) == 2 else None)(
                [e for e in entries(a) if e["event"] == "acl.setuser"]))
            by = {e["user"]: e for e in es}
            self.assertEqual(by["traced-user"]["trace_id"], TRACE)
            self.assertNotIn("trace_id", by["plain-user"])

    def test_off_and_bad_settings(self):
        k = Keel("--engine", "memory", "--set", "audit.stream=").start()
        self.addCleanup(k.cleanup)
        a = redis.Redis(port=k.port, socket_timeout=10)
        a.execute_command("ACL", "SETUSER", "w2", "on")
        self.assertEqual(a.keys("*"), [])
        self.assertIsNone(metric(k.http_port, "keel_audit_stream_appended_total"))
        bad = Keel("--engine", "memory", "--set", "audit.stream=no")
        with self.assertRaises(RuntimeError) as e:
            bad.start()
        bad.cleanup()
        self.assertIn("allowed: a stream key name (e.g. keel:audit), or an empty string to turn the audit stream off",
                      str(e.exception))


class AuditStreamCluster(unittest.TestCase):
    """Three nodes: one stream for the cluster, read through any node; a flood while the stream's
    primary cannot answer is dropped and counted, never waited for."""

    QUEUE = 8

    @classmethod
    def setUpClass(cls):
        # No lockout (a flood of failures only makes events); a failure detector slow enough that
        # a node stopped for a few seconds keeps its partitions; appends wait for it.
        cls.c = DhtCluster(extra=("--set", "auth.lockout_threshold=0", "--set", "audit.stream_queue=%d" % cls.QUEUE,
                                  "--set", "cluster.suspect_after_ms=20000", "--set", "cluster.dead_after_ms=60000",
                                  "--set", "cluster.request_timeout_ms=30000")).start()

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def test_events_of_every_node_read_through_any_node(self):
        for i in range(3):
            self.c.client(i).execute_command("ACL", "SETUSER", "from-node-%d" % (i + 1), "on")
        ids = [self.c.client(i).execute_command("CLUSTER", "MYID").decode() for i in range(3)]

        def seen():
            es = [e for e in entries(self.c.client(0)) if e["event"] == "acl.setuser" and e["user"].startswith("from-node-")]
            return es if len(es) == 3 else None
        es = wait_for("three setusers in the stream", seen)
        self.assertEqual({e["user"]: e["node"] for e in es}, {"from-node-%d" % (i + 1): ids[i] for i in range(3)})
        # The same through the other nodes, and over HTTP.
        for i in (1, 2):
            self.assertEqual(entries(self.c.client(i)), entries(self.c.client(0)))
        st, body = http_get(self.c.nodes[2].http_port, "/v1/streams/keel:audit?count=1000")
        self.assertEqual(st, 200, body)
        self.assertEqual(len(body["entries"]), self.c.client(0).xlen("keel:audit"))

    def test_a_flood_while_the_stream_cannot_be_written_is_dropped_and_counted(self):
        primary_port = primary_finder(self.c.client(0))("keel:audit")
        stopped = next(n for n in self.c.nodes if n.port == primary_port)
        entry = next(n for n in self.c.nodes if n.port != primary_port)
        wait_for("earlier events appended", lambda: metric(entry.http_port, "keel_audit_stream_queued") == 0)
        before = {m: metric(entry.http_port, "keel_audit_stream_%s_total" % m) for m in ("appended", "dropped", "failed")}
        n = 200
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        try:
            # One AUTH per event (no such user: answered without a password hash), all at once.
            r = Raw(entry.port, timeout=10)
            r.send(b"".join(b"*3\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n$1\r\nx\r\n" % (len(u), u)
                            for u in (b"flood-%03d" % i for i in range(n))))
            for _ in range(n):
                self.assertEqual(r.read_reply(), b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            r.close()
            # Every request was answered while the first append still waits for the stopped
            # primary: the queue (that append included) is full, the rest was dropped and counted.
            now = {m: metric(entry.http_port, "keel_audit_stream_%s" % m)
                   for m in ("appended_total", "dropped_total", "failed_total", "queued")}
            self.assertEqual(now["queued"], self.QUEUE, (before, now))
            self.assertEqual(metric(entry.http_port, "keel_audit_stream_failed_total"), before["failed"])
            dropped = metric(entry.http_port, "keel_audit_stream_dropped_total") - before["dropped"]
            self.assertEqual(dropped, n - self.QUEUE)
        finally:
            os.kill(stopped.proc.pid, signal.SIGCONT)
        wait_for("the queue drained", lambda: metric(entry.http_port, "keel_audit_stream_queued") == 0
                 and metric(entry.http_port, "keel_audit_stream_appended_total") == before["appended"] + self.QUEUE,
                 limit=60)
        flood = [e for e in entries(self.c.client(0)) if e["event"] == "auth.failure" and e["user"].startswith("flood-")]
        self.assertEqual(len(flood), self.QUEUE)
        # What was kept is the first events, in order.
        self.assertEqual([e["user"] for e in flood], ["flood-%03d" % i for i in range(self.QUEUE)])


if __name__ == "__main__":
    unittest.main()
