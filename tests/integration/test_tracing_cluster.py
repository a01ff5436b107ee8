"""Traces across nodes: a 3-node cluster exporting to a fake OTLP/HTTP collector (test_tracing's).
A command sent to node A for a key whose partition's primary is node B is forwarded there with
its trace context on the peer protocol, so B's span is a child of A's (same trace id, B's parent
span id = A's span id), and the JSON log lines both nodes write for that request carry the trace
id and the id of the span they were logged in. Over HTTP, the request's span is the parent of the
command it runs, and the chain goes on to B the same way.
"""
import json
import unittest
import urllib.request

from harness import Raw, http
from test_dht import DhtCluster, slots_of
from test_tracing import Collector, attrs

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HTTP_TRACE = "0af7651916cd43dd8448eb211c80319c"
HTTP_PARENT = "b7ad6b7169203331"


def json_lines(node):
    out = []
    for line in node.output().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def instance(col, span_id):
    """service.instance.id of the resource that exported span `span_id`."""
    with col.cond:
        for _, _, body, _, _ in col.requests:
            for rs in body["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    if any(s["spanId"] == span_id for s in ss["spans"]):
                        res = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                        return res["service.instance.id"]["stringValue"]
    raise AssertionError("no resource exported span %s" % span_id)


class ForwardedTraceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.col = Collector()
        # Ratio 0: only requests with a sampled parent (and errors) leave spans, so every span
        # this test looks for was kept because the context reached the node that recorded it.
        # Two copies, write quorum 2: a write's reply on its primary waits for the replica.
        cls.c = DhtCluster(replicas=2, quorum=2, extra=(
            "--set", "trace.endpoint=" + cls.col.url(),
            "--set", "trace.sample_ratio=0",
            "--set", "trace.batch_delay_ms=50",
            "--set", "trace.slow_ms=0",
            "--set", "log.format=json",
            "--set", "log.level=debug")).start()
        a = cls.c.client(0)
        maps = slots_of(a.execute_command("CLUSTER", "SLOTS"))
        b_port = cls.c.nodes[1].port

        def on_b(key):
            s = a.execute_command("CLUSTER", "KEYSLOT", key)
            return next(p for (lo, hi), (p, _) in maps.items() if lo <= s <= hi) == b_port
        keys = (k for k in ("tr%d" % i for i in range(10000)) if on_b(k))
        cls.key, cls.http_key = next(keys), next(keys)

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()
        cls.col.close()

    def test_resp_command_forwarded_to_the_primary_continues_the_trace(self):
        a = Raw(self.c.nodes[0].port)
        try:
            self.assertEqual(a.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (TRACE, PARENT)), b"+OK\r\n")
            self.assertEqual(a.cmd("SET", self.key, "v"), b"+OK\r\n")
        finally:
            a.close()
        on_a = self.col.wait_span(lambda s: s["traceId"] == TRACE and s["name"] == "SET" and
                                  s.get("parentSpanId") == PARENT, "node A's SET span")
        on_b = self.col.wait_span(lambda s: s["traceId"] == TRACE and s["name"] == "SET" and
                                  s.get("parentSpanId") == on_a["spanId"], "node B's SET span, child of A's")
        self.assertEqual(attrs(on_a)["keel.forwarded_to"], 2)
        self.assertNotIn("keel.forwarded", attrs(on_a))
        self.assertEqual(attrs(on_b)["keel.forwarded"], True)
        self.assertEqual(attrs(on_b)["keel.forwarded_from"], 1)
        self.assertNotEqual(on_a["spanId"], on_b["spanId"])
        # The primary's span covers the wait for the write quorum, which ends with an event.
        events = [e["name"] for e in on_b.get("events", [])]
        self.assertIn("keel.write_quorum.reached", events, on_b)
        wait = attrs(on_b)["keel.replication.wait_ns"]
        self.assertGreaterEqual(wait, 0)
        self.assertGreaterEqual(int(on_b["endTimeUnixNano"]) - int(on_b["startTimeUnixNano"]), wait)
        self.assertNotIn("keel.write_quorum.reached", [e["name"] for e in on_a.get("events", [])])
        # Exported by two different nodes.
        self.assertNotEqual(instance(self.col, on_a["spanId"]), instance(self.col, on_b["spanId"]))
        # The replica that applied the write (two copies: the partition's other node) records a
        # span of its own in the same trace, a child of the primary's.
        rep = self.col.wait_span(lambda s: s["traceId"] == TRACE and s["name"] == "keel.replication.apply" and
                                 s.get("parentSpanId") == on_b["spanId"], "the replica's apply span, child of B's")
        ra = attrs(rep)
        self.assertEqual(ra["keel.primary"], 2)
        self.assertEqual(ra["keel.durable"], True)
        self.assertGreaterEqual(ra["keel.lsn"], 1)
        self.assertEqual(ra["keel.partition"], self.c.client(0).execute_command("CLUSTER", "KEYSLOT", self.key) * 1024 // 16384)
        self.assertNotIn(instance(self.col, rep["spanId"]), (instance(self.col, on_b["spanId"]),))

        # The log lines of this request, on both nodes, carry the trace and their span.
        la = [l for l in json_lines(self.c.nodes[0]) if l["msg"] == "forwarding SET to node 2, the primary of its partition"
              and l.get("trace_id") == TRACE]
        self.assertEqual(len(la), 1, json_lines(self.c.nodes[0])[-20:])
        self.assertEqual(la[0]["span_id"], on_a["spanId"])
        lb = [l for l in json_lines(self.c.nodes[1]) if l["msg"] == "running SET forwarded by node 1"
              and l.get("trace_id") == TRACE]
        self.assertEqual(len(lb), 1, json_lines(self.c.nodes[1])[-20:])
        self.assertEqual(lb[0]["span_id"], on_b["spanId"])

    def test_http_request_is_the_parent_of_its_command_on_both_nodes(self):
        req = urllib.request.Request("http://127.0.0.1:%d/v1/kv/%s" % (self.c.nodes[0].http_port, self.http_key),
                                     data=b"hello", method="PUT",
                                     headers={"traceparent": "00-%s-%s-01" % (HTTP_TRACE, HTTP_PARENT)})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertIn(r.status, (200, 201, 204))
            tr = r.headers["traceresponse"]
        h = self.col.wait_span(lambda s: s["traceId"] == HTTP_TRACE and s["name"] == "PUT /v1/kv/{key}", "the HTTP span")
        self.assertEqual(h["parentSpanId"], HTTP_PARENT)
        self.assertEqual(tr, "00-%s-%s-01" % (HTTP_TRACE, h["spanId"]))
        cmd_a = self.col.wait_span(lambda s: s["traceId"] == HTTP_TRACE and s.get("parentSpanId") == h["spanId"]
                                   and attrs(s).get("keel.forwarded_to") == 2, "node A's command span under the HTTP span")
        cmd_b = self.col.wait_span(lambda s: s["traceId"] == HTTP_TRACE and s.get("parentSpanId") == cmd_a["spanId"],
                                   "node B's command span under A's")
        self.assertEqual(cmd_a["name"], cmd_b["name"])
        self.assertEqual(attrs(cmd_b)["keel.forwarded_from"], 1)
        # The HTTP request's log lines carry its trace id on both nodes.
        la = [l for l in json_lines(self.c.nodes[0]) if l.get("trace_id") == HTTP_TRACE]
        self.assertTrue(any(l["span_id"] == cmd_a["spanId"] and l["msg"].startswith("forwarding ") for l in la), la)
        lb = [l for l in json_lines(self.c.nodes[1]) if l.get("trace_id") == HTTP_TRACE]
        self.assertTrue(any(l["span_id"] == cmd_b["spanId"] and l["msg"].startswith("running ") for l in lb), lb)
        st, body = http("GET", self.c.nodes[1].http_port, "/v1/kv/%s" % self.http_key)
        self.assertEqual(st, 200)
        self.assertEqual(body["value"], "hello")

    def rabia_spans(self, trace):
        return [s for s in self.col.spans() if s["traceId"] == trace and s["name"] == "keel.rabia.decision"]

    def test_metadata_write_through_node_2_waits_for_a_rabia_decision_span_under_the_command(self):
        trace, parent = "5" * 31 + "a", "6" * 15 + "b"
        b = Raw(self.c.nodes[1].port)
        try:
            self.assertEqual(b.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (trace, parent)), b"+OK\r\n")
            self.assertEqual(b.cmd("CACHE.CREATE", "traced-sessions", "TTL", "60s"), b"+OK\r\n")
        finally:
            b.close()
        cmd = self.col.wait_span(lambda s: s["traceId"] == trace and s["name"] == "CACHE.CREATE", "the CACHE.CREATE span")
        self.assertEqual(cmd["parentSpanId"], parent)
        dec = self.col.wait_span(lambda s: s["traceId"] == trace and s["name"] == "keel.rabia.decision",
                                 "the Rabia decision span of CACHE.CREATE's metadata write")
        self.assertEqual(dec["parentSpanId"], cmd["spanId"])
        self.assertEqual(dec["kind"], 1)  # internal
        a = attrs(dec)
        self.assertEqual(a["keel.rabia.outcome"], "decided")
        self.assertEqual(a["keel.rabia.kind"], "write")
        self.assertEqual(a["keel.node_id"], 2)
        self.assertEqual(a["keel.rabia.members"], 3)
        self.assertGreaterEqual(a["keel.rabia.slot"], a["keel.rabia.first_slot"])
        self.assertEqual([e["name"] for e in dec["events"]], ["keel.rabia.proposed", "keel.rabia.applied"])
        # Inside the command's span, on the node that proposed (node 2, which the client used).
        self.assertGreaterEqual(int(dec["startTimeUnixNano"]), int(cmd["startTimeUnixNano"]))
        self.assertLessEqual(int(dec["endTimeUnixNano"]), int(cmd["endTimeUnixNano"]))
        self.assertEqual(instance(self.col, dec["spanId"]), instance(self.col, cmd["spanId"]))
        self.assertEqual(dec.get("status", {}).get("code", 0), 0)
        # The other members applied it too, but only the proposer records the wait.
        self.assertEqual(len(self.rabia_spans(trace)), 1, self.rabia_spans(trace))

    def test_a_slow_requests_spans_are_kept_on_the_node_and_served_by_v1_traces(self):
        trace, parent = "b" * 31 + "1", "c" * 15 + "2"
        port = self.c.nodes[1].http_port
        admin = Raw(self.c.nodes[1].port)
        try:
            # Every request is "slow" on node 2 for this test: the slow log keeps its trace.
            self.assertEqual(admin.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0"), b"+OK\r\n")
            b = Raw(self.c.nodes[1].port)
            try:
                self.assertEqual(b.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (trace, parent)), b"+OK\r\n")
                self.assertEqual(b.cmd("CACHE.CREATE", "slow-sessions", "TTL", "60s"), b"+OK\r\n")
            finally:
                b.close()
        finally:
            admin.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000")
            admin.close()
        st, slow = http("GET", port, "/v1/slowlog")
        self.assertEqual(st, 200)
        self.assertTrue(any(e["trace_id"] == trace and e["args"][0] == "CACHE.CREATE" for e in slow["entries"]), slow)
        st, listed = http("GET", port, "/v1/traces")
        self.assertEqual(st, 200, listed)
        self.assertEqual(listed["node"], 2)
        self.assertTrue(listed["enabled"])
        mine = [t for t in listed["traces"] if t["trace_id"] == trace]
        self.assertEqual(len(mine), 1, listed)
        self.assertEqual(mine[0]["name"], "CACHE.CREATE")
        self.assertEqual(mine[0]["spans"], 2)
        st, got = http("GET", port, "/v1/traces/" + trace)
        self.assertEqual(st, 200, got)
        by_name = {s["name"]: s for s in got["spans"]}
        self.assertEqual(set(by_name), {"CACHE.CREATE", "keel.rabia.decision"})
        cmd, dec = by_name["CACHE.CREATE"], by_name["keel.rabia.decision"]
        self.assertEqual(cmd["parent_span_id"], parent)
        self.assertEqual(dec["parent_span_id"], cmd["span_id"])
        self.assertEqual(dec["attributes"]["keel.rabia.outcome"], "decided")
        self.assertEqual({s["node"] for s in got["spans"]}, {2})
        self.assertEqual(cmd["kind"], "server")
        self.assertGreaterEqual(cmd["duration_us"], dec["duration_us"])
        # The same spans went to the collector.
        exported = self.col.wait_span(lambda s: s["traceId"] == trace and s["name"] == "keel.rabia.decision", "exported")
        self.assertEqual(exported["spanId"], dec["span_id"])
        # Another node has none of them; bad ids are refused with what is allowed.
        st, other = http("GET", self.c.nodes[0].http_port, "/v1/traces/" + trace)
        self.assertEqual(st, 404, other)
        self.assertIn("holds no spans of trace", other["error"]["message"])
        st, bad = http("GET", port, "/v1/traces/NOTHEX")
        self.assertEqual(st, 400)
        self.assertIn("32 lower-case hex digits", bad["error"]["message"])
        st, bad = http("GET", port, "/v1/traces?count=-1")
        self.assertEqual(st, 400)
        self.assertIn("allowed: an integer of 0 or more", bad["error"]["message"])

    def test_acl_setuser_and_transit_create_carry_their_context_to_the_decision(self):
        for i, cmd in enumerate((("ACL", "SETUSER", "traced-user", "on", ">pw", "~*", "+get"),
                                 ("TRANSIT.CREATE", "traced-key"))):
            trace, parent = "d%031x" % i, "e%015x" % i
            c = Raw(self.c.nodes[2].port)
            try:
                self.assertEqual(c.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (trace, parent)), b"+OK\r\n")
                reply = c.cmd(*cmd)
                self.assertFalse(reply.startswith(b"-"), reply)
            finally:
                c.close()
            top = self.col.wait_span(lambda s: s["traceId"] == trace and s.get("parentSpanId") == parent,
                                     "the %s span" % cmd[0])
            self.assertEqual(top["name"], cmd[0])
            dec = self.col.wait_span(lambda s: s["traceId"] == trace and s["name"] == "keel.rabia.decision",
                                     "the Rabia decision span of " + cmd[0])
            self.assertEqual(dec["parentSpanId"], top["spanId"])
            self.assertEqual(attrs(dec)["keel.node_id"], 3)
            self.assertEqual(attrs(dec)["keel.rabia.outcome"], "decided")

    def test_http_metadata_put_is_the_parent_of_its_rabia_decision_span(self):
        trace, parent = "7" * 31 + "c", "8" * 15 + "d"
        req = urllib.request.Request("http://127.0.0.1:%d/v1/meta/traced-flag" % self.c.nodes[2].http_port,
                                     data=b"on", method="PUT",
                                     headers={"traceparent": "00-%s-%s-01" % (trace, parent)})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)
        h = self.col.wait_span(lambda s: s["traceId"] == trace and s["name"] == "PUT /v1/meta/{key}", "the HTTP span")
        self.assertEqual(h["parentSpanId"], parent)
        dec = self.col.wait_span(lambda s: s["traceId"] == trace and s["name"] == "keel.rabia.decision",
                                 "the Rabia decision span of PUT /v1/meta/{key}")
        self.assertEqual(dec["parentSpanId"], h["spanId"])
        self.assertEqual(attrs(dec)["keel.node_id"], 3)
        self.assertEqual(attrs(dec)["keel.rabia.outcome"], "decided")
        # Not sampled (flag 00): the write is decided, no span for it.
        req = urllib.request.Request("http://127.0.0.1:%d/v1/meta/untraced-flag" % self.c.nodes[2].http_port,
                                     data=b"on", method="PUT",
                                     headers={"traceparent": "00-%s-%s-00" % ("9" * 32, parent)})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)
        # A sampled write after it is exported after it (one exporter queue per node).
        req = urllib.request.Request("http://127.0.0.1:%d/v1/meta/traced-flag" % self.c.nodes[2].http_port,
                                     data=b"off", method="PUT",
                                     headers={"traceparent": "00-%s-%s-01" % ("a" * 32, parent)})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)
        self.col.wait_span(lambda s: s["traceId"] == "a" * 32 and s["name"] == "keel.rabia.decision", "the later write's span")
        self.assertEqual(self.rabia_spans("9" * 32), [])

    def test_unsampled_forward_carries_no_trace_to_the_logs(self):
        # No parent at ratio 0: the forward carries no context, and the debug lines of that
        # request have no trace fields.
        a = Raw(self.c.nodes[0].port)
        try:
            self.assertEqual(a.cmd("SET", self.key, "untraced"), b"+OK\r\n")
        finally:
            a.close()
        # The forwarded command ran on B (its value is there): its debug line was written.
        self.assertEqual(self.c.client(1).get(self.key), b"untraced")
        lb = [l for l in json_lines(self.c.nodes[1]) if l["msg"] == "running SET forwarded by node 1"]
        self.assertTrue(any("trace_id" not in l for l in lb), lb)
        # Nor does its replication: a replica records an apply span only for sampled writes.
        # (A sampled write made after this one is exported after it: once it shows, anything
        # the unsampled one would have caused has been exported too.)
        t = Raw(self.c.nodes[1].port)
        try:
            self.assertEqual(t.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % ("1" * 32, "2" * 16)), b"+OK\r\n")
            self.assertEqual(t.cmd("SET", self.key, "traced-after"), b"+OK\r\n")
        finally:
            t.close()
        self.col.wait_span(lambda s: s["traceId"] == "1" * 32 and s["name"] == "keel.replication.apply",
                           "the apply span of the sampled write made after the unsampled one")
        applies = [s for s in self.col.spans() if s["name"] == "keel.replication.apply"]
        self.assertTrue(all(s["traceId"] in (TRACE, HTTP_TRACE, "1" * 32) for s in applies), applies)


if __name__ == "__main__":
    unittest.main()
