"""Rate limits per user and per client address (limits.user_rate, limits.address_rate;
docs/security.md): a user past its budget is refused with an error that names the limit and
when to retry, other users are not, the budget comes back with time, and the HTTP door shares
the same budgets (429 with Retry-After). Connections per client address (limits.address_connections,
RESP and HTTP together) and the HTTP door's slow-client bounds (idle, header, body)."""
import json
import socket
import time
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel


def refused(fn, n):
    """How many of n calls were refused by a rate limit, and the last refusal's text."""
    count, last = 0, ""
    for _ in range(n):
        try:
            fn()
        except redis.ResponseError as e:
            if "rate limit" not in str(e):
                raise
            count, last = count + 1, str(e)
    return count, last


class UserRateTest(unittest.TestCase):
    def test_a_user_past_its_budget_is_refused_and_others_are_not(self):
        with Keel("--engine", "memory", "--set", "limits.user_rate=20", "--set", "limits.user_burst=20") as k:
            admin = redis.Redis(port=k.port, socket_timeout=10)
            admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all")
            app = redis.Redis(port=k.port, username="app", password="pw", socket_timeout=10)
            n, last = refused(lambda: app.set("k", "v"), 60)
            self.assertGreaterEqual(n, 30)  # 20 at once, then about 20 per second
            self.assertLessEqual(n, 45)
            self.assertIn("rate limit of user 'app' exceeded: limits.user_rate allows 20 requests per second", last)
            self.assertRegex(last, r"retry in \d+ ms")
            self.assertEqual(refused(lambda: admin.get("k"), 10)[0], 0)  # another user's budget
            time.sleep(1.1)
            self.assertEqual(refused(lambda: app.get("k"), 10)[0], 0)  # it came back
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10).read().decode()
            self.assertRegex(body, r'keel_rate_limited_total\{by="user"\} [1-9]')


class AddressRateTest(unittest.TestCase):
    def test_the_http_door_shares_the_address_budget_and_answers_429(self):
        with Keel("--engine", "memory", "--set", "limits.address_rate=30", "--set", "limits.address_burst=30") as k:
            r = redis.Redis(port=k.port, socket_timeout=10)
            n, last = refused(lambda: r.set("k", "v"), 25)
            self.assertEqual(n, 0)
            codes, retry_after, body = {}, None, None
            for _ in range(30):
                try:
                    urllib.request.urlopen("http://127.0.0.1:%d/v1/kv/k" % k.http_port, timeout=5).read()
                    codes[200] = codes.get(200, 0) + 1
                except urllib.error.HTTPError as e:
                    codes[e.code] = codes.get(e.code, 0) + 1
                    retry_after, body = e.headers.get("Retry-After"), json.loads(e.read())
            # 25 went over RESP: only a few of these fit in the same address's budget.
            self.assertGreaterEqual(codes.get(429, 0), 20)
            # The node's own health and metrics stay reachable for probes and scrapes.
            for path in ("/health/live", "/metrics"):
                self.assertEqual(urllib.request.urlopen("http://127.0.0.1:%d%s" % (k.http_port, path), timeout=5).status,
                                 200, path)
            self.assertEqual(retry_after, "1")
            self.assertEqual(body["error"]["code"], "RATE_LIMITED")
            self.assertIn("rate limit of client address 127.0.0.1 exceeded", body["error"]["message"])

    def test_bad_settings_are_refused_naming_them(self):
        import subprocess
        from harness import KEEL_BIN
        out = subprocess.run([KEEL_BIN, "config", "check", "/dev/null", "--set", "limits.user_rate=fast"],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("limits.user_rate", out.stdout + out.stderr)



def metric(port, line_start):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return None


class ConnectionLimitTest(unittest.TestCase):
    def test_an_address_gets_so_many_connections_over_both_doors(self):
        with Keel("--set", "limits.address_connections=3") as k:
            held = []
            for _ in range(2):
                s = socket.create_connection(("127.0.0.1", k.port), timeout=10)
                s.sendall(b"PING\r\n")
                self.assertEqual(s.recv(100), b"+PONG\r\n")
                held.append(s)
            h = socket.create_connection(("127.0.0.1", k.http_port), timeout=10)  # the third, on HTTP
            h.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200", h.recv(4096))
            held.append(h)
            # A fourth, through either door: refused, saying why.
            s = socket.create_connection(("127.0.0.1", k.port), timeout=10)
            self.assertEqual(s.recv(300), b"-ERR max number of connections from address 127.0.0.1 reached "
                                           b"(3 open; limits.address_connections = 3)\r\n")
            self.assertEqual(s.recv(10), b"")
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen("http://127.0.0.1:%d/health/live" % k.http_port, timeout=10)
            self.assertEqual(e.exception.code, 503)
            self.assertEqual(json.loads(e.exception.read())["error"]["code"], "CONNECTION_LIMIT")
            # One closes: its place is free again (the node notices within moments).
            held.pop(0).close()
            deadline = time.time() + 10
            while True:
                s = socket.create_connection(("127.0.0.1", k.port), timeout=10)
                s.sendall(b"PING\r\n")
                got = s.recv(300)
                if got == b"+PONG\r\n":
                    break
                self.assertLess(time.time(), deadline, got)
                time.sleep(0.05)
            held.append(s)
            for x in held:
                x.close()
            self.assertGreaterEqual(metric(k.http_port, 'keel_connections_refused_total{reason="address_limit"}') or 0, 2)


class SlowClientTest(unittest.TestCase):
    def closed(self, sock):
        """Whether the node closed the connection (within 10 s) without answering."""
        sock.settimeout(10)
        try:
            return sock.recv(100) == b""
        except (socket.timeout, ConnectionResetError):
            return False

    def test_slow_headers_bodies_and_idle_connections_are_closed(self):
        with Keel("--set", "http.header_timeout_ms=300", "--set", "http.body_timeout_ms=300",
                  "--set", "http.idle_timeout_s=1") as k:
            trickle = socket.create_connection(("127.0.0.1", k.http_port))
            trickle.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # the header never ends
            self.assertTrue(self.closed(trickle))
            body = socket.create_connection(("127.0.0.1", k.http_port))
            body.sendall(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            self.assertTrue(self.closed(body))
            idle = socket.create_connection(("127.0.0.1", k.http_port))
            self.assertTrue(self.closed(idle))
            # A request that takes its time between requests but not within one is served.
            ok = socket.create_connection(("127.0.0.1", k.http_port), timeout=10)
            time.sleep(0.5)
            ok.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200 OK", ok.recv(4096))
            ok.close()
            for phase in ("idle", "header", "body"):
                self.assertGreaterEqual(metric(k.http_port, 'keel_http_timeouts_total{phase="%s"}' % phase), 1, phase)


if __name__ == "__main__":
    unittest.main()
