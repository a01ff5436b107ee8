"""The HTTP routing gateway against real upstreams (Python http.server instances).

Instances register themselves with PUT /v1/routes/services/{service}/instances/{id}; requests
through keel's HTTP port are routed by path and method, balanced across instances, retried on
another instance when one refuses connections (idempotent methods), answered 503 when a route's
service has no instance, 502 when the upstream fails, 504 when it is too slow. Leases end and
take the instance out. In a 3-node cluster a route registered on node 1 serves on node 3.
An instance answering 500s is ejected and comes back; one whose health path fails is taken out
by the active checks and put back when it answers again.
"""
import http.client as hclient
import http.server as hserver
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

from harness import Keel, Raw, free_port, http


def serve_http(handler):
    """A threaded HTTP server for `handler` on a free loopback port: (server, "host:port")."""
    server = hserver.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.handle_error = lambda *a: None  # a pooled connection closed by keel at the end
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "127.0.0.1:%d" % server.server_address[1]


def stop_http(server):
    server.shutdown()
    server.server_close()


class Upstream:
    """A tiny HTTP/1.1 server answering JSON that says who answered and what it received."""

    def __init__(self, name):
        self.name = name
        self.hits = 0
        outer = self

        class Handler(hserver.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self):
                outer.hits += 1
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                if self.path.startswith("/slow"):
                    time.sleep(2.5)
                out = json.dumps({"name": outer.name, "method": self.command, "path": self.path, "body": body,
                                  "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(out)
                    except BrokenPipeError:  # the gateway gave up on a slow answer
                        pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

        self.server = hserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def request(port, method, path, body=None, headers=None, timeout=10):
    """(status, headers, decoded JSON body) of one request to keel."""
    c = hclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), (json.loads(data) if data else None)
    finally:
        c.close()


def register(port, service, iid, address, routes, lease_ms=30000, **meta):
    body = {"address": address, "routes": routes, "lease_ms": lease_ms}
    if meta:
        body["metadata"] = meta
    return http("PUT", port, "/v1/routes/services/%s/instances/%s" % (service, iid), json.dumps(body))


def eventually(pred, limit=15, step=0.05):
    deadline = time.time() + limit
    while True:
        v = pred()
        if v or time.time() > deadline:
            return v
        time.sleep(step)


class GatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="keel-gw-it-")
        cls.routes_file = os.path.join(cls.dir, "routes.txt")
        with open(cls.routes_file, "w") as f:
            f.write("# routes whose service registers without routes\nGET:/reports/** => reports\n")
        cls.gw_port = free_port()
        # Outlier ejection off: these tests count what reaches a failing instance (ejection
        # is GatewayHealthTest's).
        cls.keel = Keel("--engine", "memory", "--shards", "1",
                        "--set", "gateway.outlier_failures=0",
                        "--set", "gateway.request_timeout_ms=1000",
                        "--set", "gateway.routes_file=" + cls.routes_file,
                        "--set", "gateway.port=%d" % cls.gw_port).start()
        cls.port = cls.keel.http_port
        cls.a, cls.b = Upstream("a"), Upstream("b")
        for name, up in (("a-1", cls.a), ("b-1", cls.b)):
            st, body = register(cls.port, "items", name, up.address,
                                ["GET /api/items/{id}", "POST /api/items", "PUT /api/items/{id}", "GET /slow"])
            assert st == 200, body
        st, body = register(cls.port, "items", "a-1", cls.a.address,
                            ["GET /api/items/{id}", "POST /api/items", "PUT /api/items/{id}", "GET /slow", "GET /only-a"])
        assert st == 200, body

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()
        cls.keel.cleanup()

    def test_routes_by_path_and_method_and_balances_across_both(self):
        names = []
        for i in range(40):
            st, _, body = request(self.port, "GET", "/api/items/%d?x=1" % i)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["path"], "/api/items/%d?x=1" % i)
            names.append(body["name"])
        self.assertGreaterEqual(names.count("a"), 5, names)
        self.assertGreaterEqual(names.count("b"), 5, names)
        for _ in range(5):
            st, _, body = request(self.port, "GET", "/only-a")
            self.assertEqual((st, body["name"]), (200, "a"))
        st, _, body = request(self.port, "POST", "/api/items", body=b'{"n": 1}',
                              headers={"Content-Type": "application/json"})
        self.assertEqual(st, 200)
        self.assertEqual((body["method"], body["body"]), ("POST", '{"n": 1}'))
        # No route: keel's own 404; a method no route takes: 404 too.
        st, _, body = request(self.port, "GET", "/nowhere")
        self.assertEqual(st, 404)
        self.assertEqual(body["error"]["code"], "NOT_FOUND")
        st, _, body = request(self.port, "DELETE", "/api/items/1")
        self.assertEqual(st, 404)
        # keel's own paths come first on the HTTP door.
        st, _, body = request(self.port, "GET", "/v1/routes")
        self.assertEqual(st, 200)
        self.assertIn("GET /api/items/{id}", [r["route"] for r in body["routes"]])

    def test_header_match_sends_canary_requests_to_their_own_service(self):
        canary = Upstream("canary")
        try:
            st, body = register(self.port, "items-canary", "c-1", canary.address,
                                ["GET /api/items/{id} header=X-Canary:1", "GET /api/items/{id} header=x-probe"])
            self.assertEqual(st, 200, body)
            self.assertIn("GET /api/items/{id} header=x-canary:1", body["routes"])
            for i in range(10):
                st, _, b = request(self.port, "GET", "/api/items/%d" % i, headers={"x-canary": "1"})
                self.assertEqual((st, b["name"]), (200, "canary"))
                st, _, b = request(self.port, "GET", "/api/items/%d" % i, headers={"X-Canary": "2"})
                self.assertEqual(st, 200)
                self.assertIn(b["name"], ("a", "b"))
                st, _, b = request(self.port, "GET", "/api/items/%d" % i)
                self.assertIn(b["name"], ("a", "b"))
                st, _, b = request(self.port, "GET", "/api/items/%d" % i, headers={"X-Probe": "anything"})
                self.assertEqual((st, b["name"]), (200, "canary"))
            st, _, b = request(self.port, "GET", "/v1/routes/match?path=/api/items/3&header=X-Canary:1")
            self.assertEqual((st, b["service"]), (200, "items-canary"))
            st, _, b = request(self.port, "GET", "/v1/routes/match?path=/api/items/3")
            self.assertEqual((st, b["service"]), (200, "items"))
            st, body = register(self.port, "items-canary", "c-2", canary.address, ["GET /x header=x:a b"])
            self.assertEqual(st, 400)
            self.assertIn("allowed: host=HOST, header=NAME:VALUE", body["error"]["message"])
        finally:
            http("DELETE", self.port, "/v1/routes/services/items-canary/instances/c-1")
            canary.stop()

    def test_rate_limit_per_route_answers_429_with_retry_after(self):
        try:
            st, body = register(self.port, "limited", "l-1", self.a.address,
                                ["GET /limited/{x} rate=2/m", "GET /keyed rate=1/m rate_key=header:X-Api-Key"])
            self.assertEqual(st, 200, body)
            for _ in range(2):
                st, _, b = request(self.port, "GET", "/limited/1")
                self.assertEqual((st, b["name"]), (200, "a"))
            st, h, b = request(self.port, "GET", "/limited/2")  # the same route, another path
            self.assertEqual(st, 429, b)
            self.assertEqual(b["error"]["code"], "RATE_LIMITED")
            self.assertEqual((b["error"]["limit"], b["error"]["burst"], b["error"]["key"]), ("2/m", 2, "client"))
            self.assertIn("allows 2/m per client address", b["error"]["message"])
            self.assertGreaterEqual(int(h["retry-after"]), 1)
            self.assertLessEqual(int(h["retry-after"]), 30)
            # Per header value: each key has its own allowance; no header counts by address.
            st, _, _ = request(self.port, "GET", "/keyed", headers={"X-Api-Key": "k1"})
            self.assertEqual(st, 200)
            st, _, b = request(self.port, "GET", "/keyed", headers={"X-Api-Key": "k1"})
            self.assertEqual((st, b["error"]["key"]), (429, "header:x-api-key"))
            st, _, _ = request(self.port, "GET", "/keyed", headers={"X-Api-Key": "k2"})
            self.assertEqual(st, 200)
            st, _, _ = request(self.port, "GET", "/keyed")
            self.assertEqual(st, 200)
            st, _, _ = request(self.port, "GET", "/keyed")
            self.assertEqual(st, 429)
            st, body = http("GET", self.port, "/v1/routes")
            self.assertGreaterEqual(body["stats"]["rate_limited"], 3)
            st, body = register(self.port, "limited", "l-2", self.a.address, ["GET /x rate=100"])
            self.assertEqual(st, 400)
            self.assertIn("rate '100' has no unit; allowed: N/s, N/m, N/h", body["error"]["message"])
        finally:
            http("DELETE", self.port, "/v1/routes/services/limited/instances/l-1")

    def test_metrics_per_route_and_upstream_pass_promtool(self):
        for i in range(5):
            st, _, _ = request(self.port, "GET", "/api/items/metrics-%d" % i)
            self.assertEqual(st, 200)
        st, _, _ = request(self.port, "GET", "/reports/x")  # a routes-file route with no instance: 503
        self.assertEqual(st, 503)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=10) as r:
            data = r.read()
        text = data.decode()

        def value(pattern):
            m = re.search(r"^" + pattern + r" (\S+)$", text, re.M)
            self.assertIsNotNone(m, pattern + "\n" + text[-3000:])
            return float(m.group(1))

        ok = r'keel_gateway_requests_total\{route="GET /api/items/\{id\}",service="items",status_class="2xx"\}'
        self.assertGreaterEqual(value(ok), 5)
        self.assertGreaterEqual(value(r'keel_gateway_requests_total\{route="GET /reports/\*\*",service="reports",'
                                      r'status_class="5xx"\}'), 1)
        self.assertGreaterEqual(value(r'keel_gateway_request_duration_seconds_count\{route="GET /api/items/\{id\}",'
                                      r'service="items"\}'), 5)
        self.assertGreaterEqual(value(r'keel_gateway_request_duration_seconds_bucket\{route="GET /api/items/\{id\}",'
                                      r'service="items",le="\+Inf"\}'), 5)
        self.assertGreaterEqual(value(r'keel_gateway_upstream_responses_total\{service="items",status_class="2xx"\}'), 5)
        self.assertIn('keel_gateway_retries_total{service="items"}', text)
        # Labels are bounded: no raw path, no client address.
        self.assertNotIn("metrics-3", text)
        self.assertNotIn('"127.0.0.1"', text)
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is installed by scripts/deps.sh")
        check = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_forwarded_headers_and_trace_context(self):
        st, _, body = request(self.port, "GET", "/api/items/7", headers={"Host": "shop.example:8080"})
        self.assertEqual(st, 200)
        h = body["headers"]
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-host"], "shop.example:8080")
        self.assertRegex(h["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")  # started when absent
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        st, _, body = request(self.port, "GET", "/api/items/8",
                              headers={"traceparent": tp, "X-Forwarded-For": "10.0.0.1", "Connection": "keep-alive, X-Secret",
                                       "X-Secret": "hop"})
        self.assertEqual(body["headers"]["traceparent"], tp)
        self.assertEqual(body["headers"]["x-forwarded-for"], "10.0.0.1, 127.0.0.1")
        self.assertNotIn("x-secret", body["headers"])  # named by Connection: hop-by-hop

    def test_503_when_no_instance_is_registered(self):
        st, _, body = request(self.port, "GET", "/reports/2024/q1")
        self.assertEqual(st, 503, body)
        self.assertEqual(body["error"]["code"], "UNAVAILABLE")
        self.assertIn("service 'reports'", body["error"]["message"])
        self.assertIn("none is registered", body["error"]["message"])
        # An instance of the service registering without routes gets the file's route.
        r = Upstream("r")
        try:
            st, body = register(self.port, "reports", "r-1", r.address, [])
            self.assertEqual(st, 200, body)
            st, _, body = request(self.port, "GET", "/reports/2024/q1")
            self.assertEqual((st, body["name"], body["path"]), (200, "r", "/reports/2024/q1"))
        finally:
            http("DELETE", self.port, "/v1/routes/services/reports/instances/r-1")
            r.stop()
        st, _, body = request(self.port, "GET", "/reports/2024/q1")
        self.assertEqual(st, 503)

    def test_502_and_retry_when_an_instance_dies(self):
        live, dead = Upstream("live"), Upstream("dead")
        routes = ["GET /flaky/{id}", "POST /flaky"]
        try:
            for iid, up in (("live", live), ("dead", dead)):
                st, body = register(self.port, "flaky", iid, up.address, routes)
                self.assertEqual(st, 200, body)
            dead.stop()  # connections to its port are now refused
            before = http("GET", self.port, "/v1/routes")[1]["stats"]["retries"]
            for i in range(20):
                st, _, body = request(self.port, "GET", "/flaky/%d" % i)
                self.assertEqual((st, body["name"]), (200, "live"), body)
            after = http("GET", self.port, "/v1/routes")[1]["stats"]["retries"]
            self.assertGreater(after, before)  # some GETs went to the dead one first
            # POST is not idempotent: it is not retried, so some attempts answer 502.
            statuses = [request(self.port, "POST", "/flaky", body=b"x")[0] for _ in range(20)]
            self.assertIn(502, statuses)
            self.assertIn(200, statuses)
            st, _, body = request(self.port, "POST", "/flaky", body=b"x")
            while st != 502:
                st, _, body = request(self.port, "POST", "/flaky", body=b"x")
            self.assertEqual(body["error"]["code"], "BAD_GATEWAY")
            self.assertIn("flaky/dead (%s)" % dead.address, body["error"]["message"])
            self.assertIn("connect failed", body["error"]["message"])
            self.assertIn("not retried", body["error"]["message"])
            # Only a dead instance: 502 naming it, after trying it.
            http("DELETE", self.port, "/v1/routes/services/flaky/instances/live")
            st, _, body = request(self.port, "GET", "/flaky/1")
            self.assertEqual(st, 502)
            self.assertEqual(body["error"]["upstreams"], ["flaky/dead"])
        finally:
            http("DELETE", self.port, "/v1/routes/services/flaky/instances/live")
            http("DELETE", self.port, "/v1/routes/services/flaky/instances/dead")
            live.stop()

    def test_504_when_the_upstream_is_too_slow(self):
        t0 = time.time()
        st, _, body = request(self.port, "GET", "/slow")
        self.assertEqual(st, 504, body)
        self.assertEqual(body["error"]["code"], "UPSTREAM_TIMEOUT")
        self.assertIn("no answer within 1000 ms", body["error"]["message"])
        self.assertLess(time.time() - t0, 2.4)

    def test_lease_expiry_removes_the_instance_and_renewal_keeps_it(self):
        gone, kept = Upstream("gone"), Upstream("kept")
        try:
            st, body = register(self.port, "leased", "gone", gone.address, ["GET /lease/gone"], lease_ms=800)
            self.assertEqual(st, 200, body)
            st, body = register(self.port, "leased", "kept", kept.address, ["GET /lease/kept"], lease_ms=800)
            self.assertEqual(st, 200, body)
            self.assertEqual(request(self.port, "GET", "/lease/gone")[0], 200)
            t_end = time.time() + 2.0
            while time.time() < t_end:  # renew one of them only
                st, body = register(self.port, "leased", "kept", kept.address, ["GET /lease/kept"], lease_ms=800)
                self.assertEqual(st, 200, body)
                time.sleep(0.2)
            st, _, body = request(self.port, "GET", "/lease/gone")
            self.assertIn(st, (404, 503), body)
            hits = gone.hits
            for _ in range(5):
                self.assertIn(request(self.port, "GET", "/lease/gone")[0], (404, 503))
            self.assertEqual(gone.hits, hits)  # nothing reached the expired instance
            st, _, body = request(self.port, "GET", "/lease/kept")
            self.assertEqual((st, body["name"]), (200, "kept"))
            # The reaper removed it from metadata too: /v1/routes no longer lists it.
            ids = lambda: [i["id"] for i in http("GET", self.port, "/v1/routes")[1]["instances"] if i["service"] == "leased"]
            self.assertTrue(eventually(lambda: ids() == ["kept"]), ids())
            st, body = http("GET", self.port, "/v1/meta/leased/gone?domain=routes")
            self.assertEqual(st, 404, body)
        finally:
            http("DELETE", self.port, "/v1/routes/services/leased/instances/kept")
            gone.stop()
            kept.stop()

    def test_registration_errors_and_deregistration(self):
        st, body = http("PUT", self.port, "/v1/routes/services/x/instances/1",
                        json.dumps({"address": "127.0.0.1:1", "routes": ["FETCH /a"]}))
        self.assertEqual(st, 400)
        self.assertIn('"routes"[0]', body["error"]["message"])
        self.assertIn("not one of GET", body["error"]["message"])
        st, body = http("PUT", self.port, "/v1/routes/services/x/instances/1", json.dumps({"routes": []}))
        self.assertEqual(st, 400)
        self.assertIn('"address" is required', body["error"]["message"])
        st, body = http("PUT", self.port, "/v1/routes/services/x/instances/1", "nope")
        self.assertEqual(st, 400)
        st, body = http("DELETE", self.port, "/v1/routes/services/x/instances/never")
        self.assertEqual((st, body["deregistered"]), (200, False))
        st, body = http("GET", self.port, "/v1/routes/match?method=GET&path=/api/items/42")
        self.assertEqual(st, 200)
        self.assertEqual((body["route"], body["params"]), ("GET /api/items/{id}", {"id": "42"}))

    def test_dedicated_listener_routes_everything(self):
        st, _, body = request(self.gw_port, "GET", "/api/items/3")
        self.assertEqual(st, 200)
        self.assertIn(body["name"], ("a", "b"))
        st, _, body = request(self.gw_port, "GET", "/v1/routes")  # not keel's API here
        self.assertEqual(st, 404)
        self.assertIn("no route matches GET /v1/routes", body["error"]["message"])


class BodyUpstream:
    """Answers GET /big/N with N bytes: with a Content-Length (/big), chunked (/chunked), or
    ended by closing the connection (/close); PUT /echo answers the request body back."""

    def __init__(self):
        class Handler(hserver.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def body(self, n):
                block = bytes(range(256)) * 256  # 64 KB, a pattern that shows reordering
                while n > 0:
                    part = block[:min(n, len(block))]
                    yield part
                    n -= len(part)

            def do_PUT(self):
                """Reads the body (Content-Length or chunked) and answers its size and digest."""
                import hashlib
                h, n = hashlib.sha256(), 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        part = self.rfile.read(size)
                        self.rfile.readline()
                        h.update(part)
                        n += len(part)
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    while left:
                        part = self.rfile.read(min(left, 1 << 16))
                        h.update(part)
                        n += len(part)
                        left -= len(part)
                out = json.dumps({"bytes": n, "sha256": h.hexdigest(),
                                  "te": self.headers.get("Transfer-Encoding", ""),
                                  "expect": self.headers.get("Expect", "")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_POST = do_PUT

            def do_GET(self):
                kind, n = self.path.strip("/").split("/")
                n = int(n)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                try:
                    if kind == "big":
                        self.send_header("Content-Length", str(n))
                        self.end_headers()
                        for part in self.body(n):
                            self.wfile.write(part)
                    elif kind == "chunked":
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for part in self.body(n):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for part in self.body(n):
                            self.wfile.write(part)
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.server, self.address = serve_http(Handler)

    def stop(self):
        stop_http(self.server)


def expected_body(n):
    return ((bytes(range(256)) * 256) * (n // 65536 + 1))[:n]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class GatewayStreamingTest(unittest.TestCase):
    """Answers larger than gateway.stream_above, or of unknown length, are relayed as they
    arrive: whatever their size, the node's memory stays put; what arrives is byte for byte what
    the instance sent, with its length, chunked, or (HTTP/1.0) ended by the close."""

    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "1").start()
        cls.limited = Keel("--engine", "memory", "--shards", "1", "--set", "gateway.max_response=1mb").start()
        cls.up = BodyUpstream()
        for k in (cls.keel, cls.limited):
            st, body = register(k.http_port, "files", "f-1", cls.up.address,
                                ["GET /big/{n}", "GET /chunked/{n}", "GET /close/{n}", "PUT /upload/{name}",
                                 "POST /upload/{name}"])
            assert st == 200, body

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.keel.cleanup()
        cls.limited.cleanup()

    def get(self, port, path, version=11):
        c = hclient.HTTPConnection("127.0.0.1", port, timeout=30)
        if version == 10:
            c._http_vsn, c._http_vsn_str = 10, "HTTP/1.0"
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    def test_large_answers_arrive_whole_in_every_framing(self):
        n = 3 * 1000 * 1000 + 17
        st, h, body = self.get(self.keel.http_port, "/big/%d" % n)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("content-length"), str(n))
        self.assertEqual(body, expected_body(n))
        st, h, body = self.get(self.keel.http_port, "/chunked/%d" % n)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("transfer-encoding"), "chunked")
        self.assertEqual(body, expected_body(n))
        st, h, body = self.get(self.keel.http_port, "/close/%d" % n)
        self.assertEqual(body, expected_body(n))
        st, h, body = self.get(self.keel.http_port, "/chunked/%d" % n, version=10)
        self.assertEqual(body, expected_body(n))  # no chunked to HTTP/1.0: ended by the close
        self.assertNotIn("transfer-encoding", h)
        # A small answer of known length is still read whole and relayed on a kept-alive pool.
        st, h, body = self.get(self.keel.http_port, "/big/100")
        self.assertEqual(body, expected_body(100))
        # Several answers on one kept-alive client connection, streamed ones among them.
        c = hclient.HTTPConnection("127.0.0.1", self.keel.http_port, timeout=30)
        for path, size in (("/chunked/%d", 500000), ("/big/%d", 300), ("/big/%d", 400000), ("/chunked/%d", 10)):
            c.request("GET", path % size)
            r = c.getresponse()
            self.assertEqual(r.read(), expected_body(size), path)
        c.close()

    def test_memory_stays_bounded_whatever_the_answers_size(self):
        pid = self.keel.proc.pid
        st, _, body = self.get(self.keel.http_port, "/big/%d" % (4 << 20))  # warm up
        base = rss_kb(pid)
        n = 200 << 20
        c = hclient.HTTPConnection("127.0.0.1", self.keel.http_port, timeout=60)
        c.request("GET", "/big/%d" % n)  # a known length above gateway.stream_above
        r = c.getresponse()
        got, peak = 0, base
        while True:
            part = r.read(1 << 20)
            if not part:
                break
            got += len(part)
            if got % (16 << 20) < (1 << 20):
                peak = max(peak, rss_kb(pid))
        c.close()
        self.assertEqual(got, n)
        # 200 MB went through; buffered, the node would have held all of it.
        self.assertLess(peak - base, 40 * 1024, "RSS grew from %d KB to %d KB" % (base, peak))

    def test_large_uploads_are_streamed_to_the_instance(self):
        import hashlib
        pid = self.keel.proc.pid
        self.get(self.keel.http_port, "/big/%d" % (4 << 20))  # warm up
        base = rss_kb(pid)
        n = 15 << 20  # under gateway.max_body (16 MB); held whole, it would show in the RSS
        data = expected_body(n)

        peak = [base]

        def chunks():  # sampling the node's memory while the body is on its way
            for i in range(0, n, 1 << 20):
                yield data[i:i + (1 << 20)]
                time.sleep(0.005)
                peak[0] = max(peak[0], rss_kb(pid))
        c = hclient.HTTPConnection("127.0.0.1", self.keel.http_port, timeout=60)
        c.request("PUT", "/upload/a", body=chunks(), headers={"Content-Length": str(n)})  # a known length
        r = c.getresponse()
        got = json.loads(r.read())
        self.assertEqual((r.status, got["bytes"], got["sha256"]), (200, n, hashlib.sha256(data).hexdigest()))
        c.request("POST", "/upload/b", body=chunks(), encode_chunked=True)  # chunked, same connection
        r = c.getresponse()
        got = json.loads(r.read())
        self.assertEqual((r.status, got["bytes"], got["te"]), (200, n, "chunked"))
        self.assertEqual(got["sha256"], hashlib.sha256(data).hexdigest())
        c.close()
        self.assertLess(peak[0] - base, 8 * 1024, "an upload was held in memory")
        # curl asks "Expect: 100-continue" for large bodies: keel answers it (no 1 s wait, and the
        # instance never sees the Expect).
        out = subprocess.run(["curl", "-sS", "--max-time", "20", "-T", "-", "-H", "Expect: 100-continue",
                              "http://127.0.0.1:%d/upload/c" % self.keel.http_port],
                             input=data[:3 << 20], capture_output=True, timeout=60)
        got = json.loads(out.stdout)
        self.assertEqual((got["bytes"], got["expect"]), (3 << 20, ""))
        # Larger than gateway.max_body with a known length: refused before anything is sent.
        c = hclient.HTTPConnection("127.0.0.1", self.keel.http_port, timeout=60)
        c.putrequest("PUT", "/upload/d")
        c.putheader("Content-Length", str(64 << 20))
        c.endheaders()
        r = c.getresponse()
        self.assertEqual(r.status, 413)
        self.assertIn("gateway.max_body", json.loads(r.read())["error"]["message"])
        c.close()
        # A large body to keel's own API (no route) still meets limits.http_max_body.
        st, _, body = request(self.keel.http_port, "PUT", "/v1/kv/big", body=b"x" * (17 << 20))
        self.assertEqual(st, 413)
        self.assertIn("limits.http_max_body", body["error"]["message"])

    def test_max_response_refuses_a_known_length_and_cuts_an_unknown_one(self):
        st, _, body = self.get(self.limited.http_port, "/big/%d" % (2 << 20))
        self.assertEqual(st, 502)
        self.assertIn("larger than gateway.max_response", json.loads(body)["error"]["message"])
        st, _, body = self.get(self.limited.http_port, "/big/%d" % (512 << 10))
        self.assertEqual(len(body), 512 << 10)
        with self.assertRaises((hclient.IncompleteRead, ConnectionError)):
            self.get(self.limited.http_port, "/chunked/%d" % (2 << 20))


class WsUpstream:
    """A WebSocket upstream on raw sockets: answers the handshake (101 with the
    Sec-WebSocket-Accept of RFC 6455), greets at once in the same write as its 101, then answers
    each text frame with "echo: <text>". A path ending in /refuse is answered 400 instead."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.closed_by_peer = threading.Event()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        import base64
        import hashlib
        head, rest = read_head(c)
        if head is None:
            return
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        if lines[0].split()[1].endswith("/refuse"):
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\nConnection: close\r\n\r\nno ws\r\n")
            c.close()
            return
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + self.GUID).encode()).digest()).decode()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\nX-Seen-Upgrade: %s\r\n\r\n" % (accept, headers.get("upgrade", ""))).encode()
                  + ws_frame(b"hello", masked=False))
        buf = rest
        while True:
            frame, buf = ws_read(c, buf)
            if frame is None:
                self.closed_by_peer.set()
                c.close()
                return
            c.sendall(ws_frame(b"echo: " + frame, masked=False))

    def stop(self):
        self.sock.close()


def read_head(sock):
    """(the bytes before the blank line, what came after it) of an HTTP message read from
    `sock`; (None, b"") when the connection closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    return tuple(data.split(b"\r\n\r\n", 1))


def ws_frame(payload, masked=True):
    """One final text frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    if not masked:
        return bytes([0x81, len(payload)]) + payload
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(sock, buf):
    """(payload, rest of buf) of the next frame; (None, b"") when the connection closed."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            buf += chunk
        return True
    if not need(2):
        return None, b""
    n = buf[1] & 0x7f
    masked = buf[1] & 0x80
    start = 2 + (4 if masked else 0)
    if not need(start + n):
        return None, b""
    payload = buf[start:start + n]
    if masked:
        payload = bytes(b ^ buf[2 + i % 4] for i, b in enumerate(payload))
    return payload, buf[start + n:]


class GatewayWebSocketTest(unittest.TestCase):
    """WebSocket upgrades pass through the gateway: the handshake goes to an instance and its 101
    comes back, then bytes flow both ways until one side closes or the tunnel is idle for
    gateway.tunnel_idle_timeout_ms."""

    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "1",
                        "--set", "gateway.tunnel_idle_timeout_ms=1500").start()
        cls.port = cls.keel.http_port
        cls.up = WsUpstream()
        st, body = register(cls.port, "chat", "c-1", cls.up.address, ["GET /ws/{room}"])
        assert st == 200, body

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.keel.cleanup()

    def handshake(self, path):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(("GET %s HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % path).encode())
        head, rest = read_head(s)
        return s, head.decode(), rest

    def metric(self, name):
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=10).read().decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def test_messages_flow_both_ways_through_the_tunnel(self):
        before = self.metric("keel_gateway_tunnels_total")
        s, head, rest = self.handshake("/ws/lobby")
        self.assertTrue(head.startswith("HTTP/1.1 101"), head)
        lower = head.lower()
        # RFC 6455's example key gives this accept value: the upstream's answer, passed through.
        self.assertIn("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=", lower)
        self.assertIn("upgrade: websocket", lower)
        self.assertIn("connection: upgrade", lower)
        self.assertIn("x-seen-upgrade: websocket", lower)  # the upstream was asked to upgrade
        greeting, rest = ws_read(s, rest)
        self.assertEqual(greeting, b"hello")  # sent with the 101, before the client said anything
        for i in range(20):
            s.sendall(ws_frame(b"message %d" % i))
            got, rest = ws_read(s, rest)
            self.assertEqual(got, b"echo: message %d" % i)
        self.assertEqual(self.metric("keel_gateway_tunnels_open"), 1)
        self.up.closed_by_peer.clear()
        s.close()
        self.assertTrue(self.up.closed_by_peer.wait(5), "the upstream never saw the client leave")
        self.assertTrue(eventually(lambda: self.metric("keel_gateway_tunnels_open") == 0, limit=5))
        self.assertEqual(self.metric("keel_gateway_tunnels_total"), before + 1)

    def test_an_idle_tunnel_is_closed(self):
        s, head, rest = self.handshake("/ws/quiet")
        self.assertTrue(head.startswith("HTTP/1.1 101"), head)
        greeting, rest = ws_read(s, rest)
        self.assertEqual(greeting, b"hello")
        t0 = time.time()
        s.settimeout(10)
        self.assertEqual(s.recv(100), b"")  # closed by keel after 1.5 s without a byte
        self.assertGreater(time.time() - t0, 1.2)
        s.close()

    def test_a_refused_upgrade_is_answered_as_the_upstream_answered(self):
        s, head, rest = self.handshake("/ws/refuse")
        self.assertTrue(head.startswith("HTTP/1.1 400"), head)
        s.close()


class Flaky:
    """An upstream whose answer status and health-path status the test sets."""

    def __init__(self, name):
        self.name = name
        self.status = 200
        self.health_status = 200
        self.hits = 0          # requests other than the health path
        self.probes = 0
        outer = self

        class Handler(hserver.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/healthz":
                    outer.probes += 1
                    st = outer.health_status
                else:
                    outer.hits += 1
                    st = outer.status
                out = json.dumps({"name": outer.name, "path": self.path}).encode()
                self.send_response(st)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server, self.address = serve_http(Handler)

    def stop(self):
        stop_http(self.server)


HEALTH = {"path": "/healthz", "interval_ms": 100, "timeout_ms": 1000, "unhealthy_after": 2, "healthy_after": 1}


class GatewayHealthTest(unittest.TestCase):
    """Outlier ejection (3 failures in a row, 1.5 s x times ejected) and active health checks."""

    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "1",
                        "--set", "gateway.outlier_failures=3",
                        "--set", "gateway.outlier_ejection_ms=1500").start()
        cls.port = cls.keel.http_port
        cls.ups = []

    @classmethod
    def tearDownClass(cls):
        for u in cls.ups:
            u.stop()
        cls.keel.cleanup()

    def upstream(self, name):
        u = Flaky(name)
        self.ups.append(u)
        return u

    def register(self, service, iid, up, route, health=None):
        body = {"address": up.address, "routes": [route], "lease_ms": 60000}
        if health:
            body["health"] = health
        st, out = http("PUT", self.port, "/v1/routes/services/%s/instances/%s" % (service, iid), json.dumps(body))
        self.assertEqual(st, 200, out)

    def instance(self, service, iid):
        _, t = http("GET", self.port, "/v1/routes")
        return next(i for i in t["instances"] if i["service"] == service and i["id"] == iid)

    def metric(self, name, service):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=10) as r:
            text = r.read().decode()
        m = re.search(r'^%s\{service="%s"\} (\S+)$' % (name, service), text, re.M)
        return float(m.group(1)) if m else None

    def test_an_instance_answering_500_is_ejected_then_comes_back(self):
        good, bad = self.upstream("good"), self.upstream("bad")
        self.register("flaky", "good", good, "GET /flaky/{x}")
        self.register("flaky", "bad", bad, "GET /flaky/{x}")
        bad.status = 500
        statuses = []
        for i in range(200):
            if bad.hits >= 3:
                break
            st, _, body = request(self.port, "GET", "/flaky/%d" % i)
            statuses.append((st, body["name"]))
        self.assertEqual(bad.hits, 3, statuses)
        self.assertIn((500, "bad"), statuses)  # the 500s themselves are relayed
        inst = self.instance("flaky", "bad")
        self.assertGreater(inst["ejected_until_ms"], 0, inst)
        self.assertEqual(inst["times_ejected"], 1)
        self.assertEqual(self.instance("flaky", "good")["ejected_until_ms"], 0)
        self.assertEqual(self.metric("keel_gateway_ejections_total", "flaky"), 1)
        self.assertEqual(self.metric("keel_gateway_instances_ejected", "flaky"), 1)
        # While ejected, every request goes to the healthy instance; the share cap (50 % of 2)
        # keeps "good" in even though it is the only one left.
        for i in range(20):
            st, _, body = request(self.port, "GET", "/flaky/x%d" % i)
            self.assertEqual((st, body["name"]), (200, "good"))
        self.assertEqual(bad.hits, 3)
        # It recovers; after its ejection time it takes traffic again.
        bad.status = 200
        self.assertTrue(eventually(lambda: self.instance("flaky", "bad")["ejected_until_ms"] == 0, limit=20))
        self.assertTrue(eventually(lambda: request(self.port, "GET", "/flaky/back")[2]["name"] == "bad", limit=20))
        self.assertEqual(self.metric("keel_gateway_instances_ejected", "flaky"), 0)

    def test_an_instance_whose_health_path_fails_is_taken_out_and_put_back(self):
        ok, sick = self.upstream("ok"), self.upstream("sick")
        self.register("checked", "ok", ok, "GET /checked/{x}", HEALTH)
        self.register("checked", "sick", sick, "GET /checked/{x}", HEALTH)
        self.assertTrue(eventually(lambda: sick.probes >= 1 and ok.probes >= 1))
        sick.health_status = 503
        self.assertTrue(eventually(lambda: self.instance("checked", "sick")["healthy"] is False))
        self.assertTrue(self.instance("checked", "ok")["healthy"])
        self.assertEqual(self.instance("checked", "sick")["health"]["path"], "/healthz")
        self.assertEqual(self.metric("keel_gateway_instances_unhealthy", "checked"), 1)
        before = sick.hits
        for i in range(20):
            st, _, body = request(self.port, "GET", "/checked/%d" % i)
            self.assertEqual((st, body["name"]), (200, "ok"))
        self.assertEqual(sick.hits, before)
        sick.health_status = 200
        self.assertTrue(eventually(lambda: self.instance("checked", "sick")["healthy"] is True))
        self.assertTrue(eventually(lambda: request(self.port, "GET", "/checked/back")[2]["name"] == "sick"))
        self.assertEqual(self.metric("keel_gateway_instances_unhealthy", "checked"), 0)

    def test_503_naming_why_when_every_instance_is_out(self):
        u = self.upstream("down")
        u.health_status = 500
        self.register("down", "d-1", u, "GET /down", HEALTH)
        self.assertTrue(eventually(lambda: request(self.port, "GET", "/down")[0] == 503))
        st, _, body = request(self.port, "GET", "/down")
        self.assertEqual(st, 503, body)
        e = body["error"]
        self.assertEqual((e["code"], e["service"], e["live"], e["unhealthy"], e["ejected"]), ("UNAVAILABLE", "down", 1, 1, 0))
        self.assertIn("1 unhealthy (active health check failing)", e["message"])
        hits = u.hits  # requests sent before the checks took it out may have reached it
        for _ in range(5):
            self.assertEqual(request(self.port, "GET", "/down")[0], 503)
        self.assertEqual(u.hits, hits)
        # Health comes back: so does the route.
        u.health_status = 200
        self.assertTrue(eventually(lambda: request(self.port, "GET", "/down")[0] == 200))

    def test_route_register_over_resp_goes_through_the_same_registration(self):
        u = self.upstream("resp")
        raw = Raw(self.keel.port)
        try:
            out = raw.cmd("ROUTE.REGISTER", "viaresp", "r-1", u.address, "LEASE", "30000",
                          "route", "GET /viaresp/{x}", "WEIGHT", "2", "ZONE", "z1")
            self.assertIn(b"viaresp", out)
            self.assertIn(b"GET /viaresp/{x}", out)
            st, _, body = request(self.port, "GET", "/viaresp/7")
            self.assertEqual((st, body["name"], body["path"]), (200, "resp", "/viaresp/7"))
            inst = self.instance("viaresp", "r-1")
            self.assertEqual((inst["lease_ms"], inst["metadata"]["weight"], inst["metadata"]["zone"]), (30000, 2, "z1"))
            # Errors are the HTTP door's, naming what was wrong.
            out = raw.cmd("ROUTE.REGISTER", "viaresp", "r-2", u.address, "WEIGHT", "0")
            self.assertTrue(out.startswith(b"-ERR"), out)
            self.assertIn(b'"metadata.weight" must be an integer from 1 to 1000', out)
            out = raw.cmd("ROUTE.REGISTER", "viaresp", "r-2", u.address, "TTL", "5")
            self.assertIn(b"unknown option 'TTL'", out)
            out = raw.cmd("ROUTE.REGISTER", "viaresp", "r-2", "nohost")
            self.assertIn(b"is not HOST:PORT", out)
            self.assertIn(b"wrong number of arguments", raw.cmd("ROUTE.REGISTER", "viaresp", "r-2"))
            self.assertEqual(raw.cmd("ROUTE.DEREGISTER", "viaresp", "r-1"), b":1\r\n")
            self.assertEqual(raw.cmd("ROUTE.DEREGISTER", "viaresp", "r-1"), b":0\r\n")
            self.assertEqual(request(self.port, "GET", "/viaresp/7")[0], 404)
        finally:
            raw.s.close()

    def test_bad_health_settings_are_refused_naming_the_field(self):
        for health, words in (({"path": "/h", "interval_ms": 5}, '"health.interval_ms" must be an integer from 100'),
                              ({"interval_ms": 500}, '"health.path" is required'),
                              ({"path": "/h", "retries": 1}, 'unknown field "health.retries"')):
            st, body = http("PUT", self.port, "/v1/routes/services/x/instances/x-1",
                            json.dumps({"address": "127.0.0.1:1", "health": health}))
            self.assertEqual(st, 400, body)
            self.assertIn(words, body["error"]["message"])


class GatewayHashTest(unittest.TestCase):
    """gateway.balancer = consistent_hash: affinity by a header, a cookie or a path parameter."""

    def start(self, key):
        k = Keel("--engine", "memory", "--shards", "1", "--set", "gateway.balancer=consistent_hash",
                 "--set", "gateway.hash_key=" + key).start()
        self.addCleanup(k.cleanup)
        ups = [Upstream("u%d" % i) for i in range(3)]
        for u in ups:
            self.addCleanup(u.stop)
            st, body = register(k.http_port, "shard", u.name, u.address, ["GET /users/{user}/cart"])
            self.assertEqual(st, 200, body)
        return k, ups

    def owners(self, port, users, how):
        out = {}
        for u in users:
            st, _, body = request(port, "GET", "/users/%s/cart" % u, headers=how(u))
            self.assertEqual(st, 200, body)
            out[u] = body["name"]
        return out

    def test_same_header_same_instance_and_one_leaving_moves_only_its_keys(self):
        k, ups = self.start("header:X-User")
        users = ["user-%d" % i for i in range(60)]
        by_header = lambda u: {"X-User": u}
        first = self.owners(k.http_port, users, by_header)
        self.assertEqual(self.owners(k.http_port, users, by_header), first)  # same key, same instance
        self.assertEqual(set(first.values()), {"u0", "u1", "u2"})  # 60 keys spread over all three
        st, body = http("GET", k.http_port, "/v1/routes")
        self.assertEqual((body["balancer"], body["hash_key"]), ("consistent_hash", "header:x-user"))
        # u1 leaves: only the users it had move; the others stay where they were.
        st, _ = http("DELETE", k.http_port, "/v1/routes/services/shard/instances/u1")
        self.assertEqual(st, 200)
        after = self.owners(k.http_port, users, by_header)
        for u in users:
            if first[u] == "u1":
                self.assertIn(after[u], ("u0", "u2"))
            else:
                self.assertEqual(after[u], first[u], u)
        # It comes back: its users return to it.
        st, body = register(k.http_port, "shard", "u1", ups[1].address, ["GET /users/{user}/cart"])
        self.assertEqual(st, 200, body)
        self.assertEqual(self.owners(k.http_port, users, by_header), first)
        # Without the header: still served (least request).
        st, _, body = request(k.http_port, "GET", "/users/x/cart")
        self.assertEqual(st, 200)

    def test_path_parameter_and_cookie_keys(self):
        k, ups = self.start("param:user")
        users = ["p%d" % i for i in range(30)]
        first = self.owners(k.http_port, users, lambda u: {})
        self.assertEqual(self.owners(k.http_port, users, lambda u: {"X-User": "ignored"}), first)
        self.assertGreaterEqual(len(set(first.values())), 2)
        k2, _ = self.start("cookie:session")
        by_cookie = lambda u: {"Cookie": "theme=dark; session=%s" % u}
        c1 = self.owners(k2.http_port, users, by_cookie)
        self.assertEqual(self.owners(k2.http_port, users, by_cookie), c1)
        self.assertGreaterEqual(len(set(c1.values())), 2)

    def test_bad_balancer_settings_are_refused_naming_the_field(self):
        for args, words in (((), "gateway.hash_key: must be set when gateway.balancer = consistent_hash"),
                            (("--set", "gateway.hash_key=query:x"), "unknown source 'query'"),
                            (("--set", "gateway.balancer=maglev"), "allowed: least_request (p2c), round_robin")):
            cmd = ["--set", "gateway.balancer=consistent_hash"] if "gateway.balancer=maglev" not in args else []
            k = Keel("--engine", "memory", *cmd, *args)
            with self.assertRaises(RuntimeError) as e:
                k.start()
            k.cleanup()
            self.assertIn(words, str(e.exception))


class GatewayAccessLogTest(unittest.TestCase):
    def test_one_json_line_per_routed_request_with_its_trace(self):
        k = Keel("--engine", "memory", "--shards", "1", "--set", "gateway.access_log=yes",
                 "--set", "log.format=json").start()
        self.addCleanup(k.cleanup)
        up = Upstream("u")
        self.addCleanup(up.stop)
        st, body = register(k.http_port, "logged", "l-1", up.address, ["GET /logged/{id}"])
        self.assertEqual(st, 200, body)
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        st, _, _ = request(k.http_port, "GET", "/logged/42?q=1", headers={"traceparent": tp})
        self.assertEqual(st, 200)
        st, _, _ = request(k.http_port, "GET", "/v1/routes")  # keel's own: not in the access log

        def access_lines():
            out = []
            for line in k.output().splitlines():
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("event") == "gateway.access":
                    out.append(j)
            return out
        lines = eventually(access_lines, limit=5)
        self.assertEqual(len(lines), 1, lines)
        j = lines[0]
        self.assertEqual((j["component"], j["level"]), ("routing", "info"))
        self.assertEqual(j["trace_id"], "0af7651916cd43dd8448eb211c80319c")
        m = json.loads(j["msg"])
        self.assertEqual((m["method"], m["path"], m["route"], m["service"], m["status"]),
                         ("GET", "/logged/42?q=1", "GET /logged/{id}", "logged", 200))
        self.assertEqual((m["upstream"], m["attempts"], m["client"]), ("logged/l-1", 1, "127.0.0.1"))
        self.assertGreaterEqual(m["duration_ms"], 0)


class GatewayClusterTest(unittest.TestCase):
    def test_a_route_registered_on_node_1_serves_on_node_3(self):
        from test_cluster import Cluster
        c = Cluster().start()
        up = Upstream("u")
        try:
            st, body = eventually(lambda: (lambda r: r if r[0] == 200 else None)(
                register(c.port(0), "orders", "o-1", up.address, ["GET /orders/{id}"])), limit=30)
            self.assertEqual(st, 200, body)
            ok = eventually(lambda: request(c.port(2), "GET", "/orders/9")[0] == 200)
            self.assertTrue(ok)
            st, _, body = request(c.port(2), "GET", "/orders/9")
            self.assertEqual((st, body["name"], body["path"]), (200, "u", "/orders/9"))
            # Deregistered on node 2: node 3 stops routing it.
            st, body = http("DELETE", c.port(1), "/v1/routes/services/orders/instances/o-1")
            self.assertEqual((st, body["deregistered"]), (200, True))
            self.assertTrue(eventually(lambda: request(c.port(2), "GET", "/orders/9")[0] == 404))
        finally:
            up.stop()
            c.cleanup()


    def test_a_cluster_scoped_rate_is_split_over_the_members(self):
        """rate=30/m rate_scope=cluster on 3 members: each admits 10 a minute per client."""
        from test_cluster import Cluster
        c = Cluster().start()
        up = Upstream("u")
        try:
            st, body = eventually(lambda: (lambda r: r if r[0] == 200 else None)(
                register(c.port(0), "limited", "l-1", up.address, ["GET /limited/{x} rate=30/m rate_scope=cluster"])),
                limit=30)
            self.assertEqual(st, 200, body)
            self.assertTrue(eventually(lambda: request(c.port(1), "GET", "/v1/routes")[2]["routes"], limit=30))
            time.sleep(1.5)  # every member's health poller has counted the live members
            codes, message = [], None
            for _ in range(20):
                st, _, body = request(c.port(1), "GET", "/limited/1")
                codes.append(st)
                if st == 429:
                    message = body["error"]["message"]
            self.assertEqual(codes.count(200), 10, codes)
            self.assertIn("across the cluster (1/3 of it on each node)", message)
            # Another member has its own share for the same client.
            self.assertEqual(request(c.port(2), "GET", "/limited/1")[0], 200)
        finally:
            up.stop()
            c.cleanup()

if __name__ == "__main__":
    unittest.main()
