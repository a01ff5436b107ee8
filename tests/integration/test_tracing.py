"""Tracing against a fake OTLP/HTTP collector (a Python http.server in this test): the JSON
shapes it receives, W3C traceparent read on HTTP and set per RESP connection with
CLIENT TRACEPARENT, sampling (ratio 0 keeps only errors and sampled parents), and the
exporter's retry rules (a 503 with Retry-After is retried with the same batch, a 400 is not).
"""
import http.server
import json
import os
import re
import tempfile
import shutil
import subprocess
import threading
import time
import unittest
import urllib.request

from harness import KEEL_BIN, Keel, Raw

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


class Collector:
    """Records every export request; answers from `script` (status, headers) in order, then 200."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []  # (path, headers, parsed body, raw body, status answered)
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.cond:
                    status, headers = outer.script.pop(0) if outer.script else (200, {})
                    outer.requests.append((self.path, dict(self.headers), json.loads(raw), raw, status))
                    outer.cond.notify_all()
                body = b"{}" if status == 200 else b'{"code":3,"message":"scripted"}'
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return "http://127.0.0.1:%d/v1/traces" % self.port

    def spans(self):
        with self.cond:
            return [s for _, _, body, _, _ in self.requests
                    for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]

    def wait(self, pred, what, timeout=30):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise AssertionError("the collector never saw %s; it got: %r" % (what, self.requests))

    def wait_span(self, pred, what):
        found = []

        def check():
            found[:] = [s for _, _, body, _, _ in self.requests
                        for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"] if pred(s)]
            return bool(found)
        self.wait(check, what)
        return found[0]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attrs(span):
    out = {}
    for a in span["attributes"]:
        (kind, v), = a["value"].items()
        out[a["key"]] = int(v) if kind == "intValue" else v
    return out


def keel(collector, *extra):
    return Keel("--engine", "memory", "--shards", "2",
                "--set", "trace.endpoint=" + collector.url(),
                "--set", "trace.batch_delay_ms=20",
                "--set", "trace.slow_ms=0", *extra)


def metrics(k):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class TracingTest(unittest.TestCase):
    def test_shapes_parents_and_sampling(self):
        col = Collector()
        try:
            with keel(col, "--set", "trace.sample_ratio=0") as k:
                a = Raw(k.port)
                self.assertEqual(a.cmd("CLIENT", "TRACEPARENT"), b"$-1\r\n")
                self.assertTrue(a.cmd("CLIENT", "TRACEPARENT", "00-nothex-01").startswith(b"-ERR invalid traceparent"))
                tp = "00-%s-%s-01" % (TRACE, PARENT)
                self.assertEqual(a.cmd("CLIENT", "TRACEPARENT", tp, "rojo=1"), b"+OK\r\n")
                self.assertEqual(a.cmd("CLIENT", "TRACEPARENT"), b"$55\r\n" + tp.encode() + b"\r\n")
                self.assertEqual(a.cmd("SET", "k", "v"), b"+OK\r\n")
                s = col.wait_span(lambda s: s["name"] == "SET", "the SET span")
                self.assertEqual(s["traceId"], TRACE)
                self.assertEqual(s["parentSpanId"], PARENT)
                self.assertRegex(s["spanId"], HEX16)
                self.assertNotEqual(s["spanId"], PARENT)
                self.assertEqual(s["traceState"], "rojo=1")
                self.assertEqual(s["kind"], 2)
                self.assertLessEqual(int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"]))
                self.assertEqual(attrs(s)["db.operation.name"], "SET")

                # Ratio 0 and no parent: not kept, unless the command fails. The connection's
                # spans reach the collector in order, so when PING (sampled parent) is there,
                # an unsampled GET before it would be too.
                b = Raw(k.port)
                self.assertEqual(b.cmd("GET", "k"), b"$1\r\nv\r\n")
                self.assertTrue(b.cmd("INCR", "k").startswith(b"-ERR"))
                b.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-00" % (TRACE, "1111111111111111"))  # not sampled
                b.cmd("EXISTS", "k")
                b.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % ("a" * 32, "2222222222222222"))
                self.assertEqual(b.cmd("PING"), b"+PONG\r\n")
                col.wait_span(lambda s: s["name"] == "PING", "the PING span")
                names = [s["name"] for s in col.spans()]
                self.assertNotIn("GET", names)
                self.assertNotIn("EXISTS", names)
                err = col.wait_span(lambda s: s["name"] == "INCR", "the INCR error span")
                self.assertEqual(err["status"]["code"], 2)
                self.assertIn("ERR value is not an integer", err["status"]["message"])
                self.assertRegex(err["traceId"], HEX32)
                self.assertNotIn("parentSpanId", err)
                self.assertEqual(attrs(err)["error.type"], "ERR")
                self.assertEqual(b.cmd("CLIENT", "TRACEPARENT", "CLEAR"), b"+OK\r\n")
                self.assertEqual(b.cmd("CLIENT", "TRACEPARENT"), b"$-1\r\n")
                a.close()
                b.close()

                # HTTP: traceparent read; the answer's traceresponse names the recorded span.
                req = urllib.request.Request("http://127.0.0.1:%d/v1/kv/k" % k.http_port,
                                             headers={"traceparent": "00-%s-%s-01" % ("b" * 32, "3333333333333333"),
                                                      "tracestate": "congo=t61rcWkgMzE"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    self.assertEqual(r.status, 200)
                    tr = r.headers["traceresponse"]
                self.assertRegex(tr, r"^00-b{32}-[0-9a-f]{16}-01$")
                h = col.wait_span(lambda s: s["name"] == "GET /v1/kv/{key}", "the HTTP span")
                self.assertEqual(h["traceId"], "b" * 32)
                self.assertEqual(h["parentSpanId"], "3333333333333333")
                self.assertEqual(h["spanId"], tr.split("-")[2])
                self.assertEqual(h["traceState"], "congo=t61rcWkgMzE")
                self.assertEqual(attrs(h)["http.response.status_code"], 200)
                self.assertEqual(attrs(h)["http.route"], "/v1/kv/{key}")
                # Without a sampled parent at ratio 0, an HTTP request leaves no span and no header.
                with urllib.request.urlopen("http://127.0.0.1:%d/v1/kv/k" % k.http_port, timeout=10) as r:
                    self.assertIsNone(r.headers["traceresponse"])

                # Every request has the OTLP/HTTP JSON shape.
                for path, headers, body, _, _ in col.requests:
                    self.assertEqual(path, "/v1/traces")
                    self.assertEqual(headers["Content-Type"], "application/json")
                    rs = body["resourceSpans"]
                    self.assertEqual(len(rs), 1)
                    res = {a["key"]: a["value"] for a in rs[0]["resource"]["attributes"]}
                    self.assertEqual(res["service.name"], {"stringValue": "keel"})
                    self.assertRegex(res["service.instance.id"]["stringValue"], r"^[0-9a-f]{40}$")
                    self.assertEqual(rs[0]["scopeSpans"][0]["scope"]["name"], "keel")
                    for s in rs[0]["scopeSpans"][0]["spans"]:
                        self.assertRegex(s["traceId"], HEX32)
                        self.assertRegex(s["spanId"], HEX16)
                        self.assertRegex(s["startTimeUnixNano"], r"^\d+$")
                m = metrics(k)
                self.assertGreaterEqual(metric(m, "keel_trace_spans_exported_total"), 4)
                self.assertEqual(metric(m, 'keel_trace_spans_dropped_total{reason="queue_full"}'), 0)
                if shutil.which("promtool"):
                    p = subprocess.run(["promtool", "check", "metrics"], input=m.encode(), capture_output=True)
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            col.close()

    def test_503_with_retry_after_is_retried_400_is_not(self):
        col = Collector(script=[(503, {"Retry-After": "1"})])
        try:
            with keel(col, "--set", "trace.sample_ratio=1") as k:
                r = Raw(k.port)
                r.cmd("SET", "first", "1")
                col.wait(lambda: len(col.requests) >= 2, "a second request")
                (_, _, b1, raw1, st1), (_, _, b2, raw2, st2) = col.requests[:2]
                self.assertEqual((st1, st2), (503, 200))
                self.assertEqual(raw1, raw2)  # the same batch, sent again
                # The exporter counts the retry once the retried request is answered: after
                # the collector has seen it, so wait for the count (a race seen in CI).
                deadline = time.time() + 10
                while metric(metrics(k), "keel_trace_export_retries_total") < 1:
                    self.assertLess(time.time(), deadline, "keel_trace_export_retries_total stayed 0")
                    time.sleep(0.05)
                r.close()
        finally:
            col.close()

        col = Collector(script=[(400, {})])
        try:
            with keel(col, "--set", "trace.sample_ratio=1") as k:
                r = Raw(k.port)
                r.cmd("SET", "refused", "1")
                col.wait(lambda: len(col.requests) >= 1, "the first request")
                # A later span goes out in a later request; a retry of the refused batch would
                # have to come before it (one request in flight, retries first).
                r.cmd("CLIENT", "SETNAME", "sentinel")
                col.wait(lambda: any(s["name"] == "CLIENT" for s in col.spans()), "the sentinel span")
                bodies = [raw for _, _, _, raw, _ in col.requests]
                self.assertEqual(col.requests[0][4], 400)
                self.assertEqual(bodies.count(bodies[0]), 1)
                self.assertEqual(sum(1 for s in col.spans() if s["name"] == "SET"), 1)
                m = metrics(k)
                self.assertGreaterEqual(metric(m, 'keel_trace_spans_dropped_total{reason="export_failed"}'), 1)
                self.assertEqual(metric(m, "keel_trace_export_retries_total"), 0)
                r.close()
        finally:
            col.close()

    def test_json_logs_carry_the_trace_of_the_command(self):
        col = Collector()
        try:
            with keel(col, "--set", "trace.sample_ratio=0", "--set", "log.format=json") as k:
                a = Raw(k.port)
                a.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (TRACE, PARENT))
                self.assertEqual(a.cmd("CONFIG", "SET", "loglevel", "info"), b"+OK\r\n")
                a.cmd("CLIENT", "TRACEPARENT", "CLEAR")
                self.assertEqual(a.cmd("CONFIG", "SET", "maxclients", "100"), b"+OK\r\n")
                a.close()
                span = col.wait_span(lambda s: s["name"] == "CONFIG", "the CONFIG span")
                lines = [json.loads(l) for l in k.output().splitlines() if l.startswith("{")]
                traced = [l for l in lines if l["msg"] == "CONFIG SET loglevel info"]
                self.assertEqual(len(traced), 1, lines)
                self.assertEqual(traced[0]["trace_id"], TRACE)
                self.assertEqual(traced[0]["span_id"], span["spanId"])
                self.assertEqual(span["parentSpanId"], PARENT)
                # CLIENT TRACEPARENT CLEAR ran under the context it ended: the caller's child,
                # not a second root of the caller's trace.
                clear = col.wait_span(lambda s: s["name"] == "CLIENT", "the CLIENT TRACEPARENT CLEAR span")
                self.assertEqual(clear["traceId"], TRACE)
                self.assertEqual(clear.get("parentSpanId"), PARENT)
                plain = [l for l in lines if l["msg"] == "CONFIG SET maxclients 100"]
                self.assertEqual(len(plain), 1, lines)
                self.assertNotIn("trace_id", plain[0])
                ready = [l for l in lines if "ready: RESP on" in l["msg"]]
                self.assertEqual(len(ready), 1)
                self.assertNotIn("trace_id", ready[0])
        finally:
            col.close()

    def test_the_http_doors_own_lines_carry_the_trace_of_the_request(self):
        col = Collector()
        try:
            with keel(col, "--set", "trace.sample_ratio=0", "--set", "log.format=json") as k:
                for tp in ("00-%s-%s-01" % (TRACE, PARENT), None):
                    headers = {"traceparent": tp} if tp else {}
                    path = "/v1/secrets/app/%s" % ("traced" if tp else "plain")
                    req = urllib.request.Request("http://127.0.0.1:%d%s" % (k.http_port, path), data=b"s3cret",
                                                 method="PUT", headers=headers)
                    with urllib.request.urlopen(req, timeout=10) as r:
                        self.assertEqual(r.status, 200)
                span = col.wait_span(lambda s: s["name"].startswith("PUT /v1/secrets"), "the PUT span")
                lines = [json.loads(l) for l in k.output().splitlines() if l.startswith("{")]
                audit = {l["fields"]["path"]: l for l in lines if l.get("event") == "secret.write"}
                self.assertIn("app/traced", audit, lines)
                self.assertEqual(audit["app/traced"]["trace_id"], TRACE)
                self.assertEqual(audit["app/traced"]["span_id"], span["spanId"])
                self.assertNotIn("trace_id", audit["app/plain"])
        finally:
            col.close()

    def test_logs_go_to_the_collector_with_the_trace_of_the_command(self):
        col, logs = Collector(), Collector()
        try:
            with keel(col, "--set", "trace.sample_ratio=0",
                      "--set", "log.otlp_endpoint=http://127.0.0.1:%d/v1/logs" % logs.port) as k:
                a = Raw(k.port)
                a.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (TRACE, PARENT))
                self.assertEqual(a.cmd("CONFIG", "SET", "loglevel", "info"), b"+OK\r\n")
                a.cmd("CLIENT", "TRACEPARENT", "CLEAR")
                self.assertEqual(a.cmd("CONFIG", "SET", "maxclients", "100"), b"+OK\r\n")
                a.close()
                span = col.wait_span(lambda s: s["name"] == "CONFIG", "the CONFIG span")

                def records():
                    return [(rl["resource"], r) for _, _, body, _, _ in logs.requests
                            for rl in body["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]

                def body_is(text):
                    return lambda: any(r["body"]["stringValue"] == text for _, r in records())
                logs.wait(body_is("CONFIG SET maxclients 100"), "the untraced CONFIG SET line")
                with logs.cond:
                    got = records()
                self.assertTrue(all(p == "/v1/logs" for p, _, _, _, _ in logs.requests))
                traced = [r for _, r in got if r["body"]["stringValue"] == "CONFIG SET loglevel info"]
                self.assertEqual(len(traced), 1, got)
                self.assertEqual(traced[0]["traceId"], TRACE)
                self.assertEqual(traced[0]["spanId"], span["spanId"])
                self.assertEqual(traced[0]["severityNumber"], 9)
                self.assertEqual(traced[0]["severityText"], "INFO")
                self.assertEqual(attrs(traced[0])["keel.component"], "node")
                self.assertGreater(int(traced[0]["timeUnixNano"]), 1700000000 * 10**9)
                plain = [r for _, r in got if r["body"]["stringValue"] == "CONFIG SET maxclients 100"]
                self.assertNotIn("traceId", plain[0])
                ready = [r for _, r in got if "ready: RESP on" in r["body"]["stringValue"]]
                self.assertEqual(len(ready), 1, "the start-up line is exported too")
                resource = {a["key"]: a["value"]["stringValue"] for a in got[0][0]["attributes"]}
                self.assertEqual(resource["service.name"], "keel")
                self.assertTrue(resource["service.instance.id"])
                # Counted: everything the collector took.
                text = metrics(k)
                self.assertGreaterEqual(metric(text, "keel_log_records_exported_total"), len(got) - 1)
                self.assertEqual(metric(text, 'keel_log_records_dropped_total{reason="export_failed"}'), 0)
        finally:
            col.close()
            logs.close()

    def test_log_export_level_and_settings_are_checked(self):
        logs = Collector()
        try:
            with Keel("--engine", "memory", "--set", "log.otlp_level=warn",
                      "--set", "log.otlp_endpoint=http://127.0.0.1:%d/v1/logs" % logs.port) as k:
                a = Raw(k.port)
                self.assertEqual(a.cmd("CONFIG", "SET", "maxclients", "100"), b"+OK\r\n")  # info: not exported
                a.close()
            # Stopping the node exports what is queued; the info lines never reached the queue.
            with logs.cond:
                got = [r for _, _, body, _, _ in logs.requests
                       for rl in body["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
            self.assertTrue(all(r["severityNumber"] >= 13 for r in got), got)
            self.assertFalse(any("maxclients" in r["body"]["stringValue"] for r in got))
        finally:
            logs.close()
        bad = subprocess.run([KEEL_BIN, "serve", "--set", "log.otlp_endpoint=https://c:4318", "--set", "log.otlp_level=loud"],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("log.otlp_endpoint: 'https://c:4318': https is not supported yet; allowed: an http:// URL such as "
                      "http://127.0.0.1:4318/v1/logs", bad.stderr)

    def test_trace_settings_are_checked(self):
        def check(text):
            fd, path = tempfile.mkstemp(suffix=".toml")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            try:
                return subprocess.run([KEEL_BIN, "config", "check", path], capture_output=True, text=True, timeout=30)
            finally:
                os.unlink(path)
        ok = check('[trace]\nendpoint = "http://127.0.0.1:4318/v1/traces"\nsample_ratio = 0.01\nkeep_errors = true\n'
                   '[health]\nstall_after_ms = 10000\n')
        self.assertEqual(ok.returncode, 0, ok.stderr)
        bad = check('[trace]\nendpoint = "https://c:4318/v1/traces"\nsample_ratio = 1.5\nkeep_errors = "maybe"\n'
                    'queue_size = 100\nbatch_size = 200\n[health]\nstall_after_ms = 10\n')
        self.assertEqual(bad.returncode, 1)
        self.assertIn("5 problem(s)", bad.stderr)
        self.assertIn("trace.endpoint: 'https://c:4318/v1/traces': https is not supported yet", bad.stderr)
        self.assertIn("trace.sample_ratio: '1.5' is not allowed; allowed: a decimal number from 0 to 1", bad.stderr)
        self.assertIn("trace.keep_errors: 'maybe' is not allowed; allowed: yes, no", bad.stderr)
        self.assertIn("trace.batch_size: 200 is more than trace.queue_size (100)", bad.stderr)
        self.assertIn("health.stall_after_ms: '10' is not allowed; allowed: an integer from 1000 to 600000", bad.stderr)


if __name__ == "__main__":
    unittest.main()
