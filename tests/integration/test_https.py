"""HTTPS on the HTTP door (tls.http_port, docs/security.md) with curl and Python, client
certificates (tls.http_auth_clients), and certificates reloaded from their files without a
restart (tls.reload_interval_ms): new connections get the new certificate, a bad file is
reported and the previous certificate stays in use."""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.request

import redis

from harness import KEEL_BIN, Keel, free_port, keel_cli as keel, wait_for


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args), capture_output=True, text=True, timeout=60)


class HttpsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="keel-pki-https-")
        keel("cert", "init", "--dir", cls.pki, "--cluster", "it")
        keel("cert", "issue", "--node", "1", "--dir", cls.pki, "--host", "localhost", "--host", "127.0.0.1")
        keel("cert", "issue", "--client", "alice", "--dir", cls.pki)
        cls.other = tempfile.mkdtemp(prefix="keel-pki-https-other-")
        keel("cert", "init", "--dir", cls.other, "--cluster", "it")
        keel("cert", "issue", "--client", "mallory", "--dir", cls.other)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)
        shutil.rmtree(cls.other, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.pki, name)

    def start(self, *extra, cert="node-1"):
        port = free_port()
        k = Keel("--set", "tls.http_port=%d" % port,
                 "--set", "tls.cert_file=" + self.path(cert + ".crt"),
                 "--set", "tls.key_file=" + self.path(cert + ".key"),
                 "--set", "tls.ca_cert_file=" + self.path("ca.crt"), *extra).start()
        self.addCleanup(k.cleanup)
        self.assertIn("HTTPS on 127.0.0.1:%d" % port, k.output())
        return k, port

    def metric(self, k, name):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as r:
            m = re.search(r"^%s (\S+)$" % re.escape(name), r.read().decode(), re.M)
        return float(m.group(1)) if m else None

    def test_https_with_curl_and_python(self):
        k, port = self.start()
        ca = self.path("ca.crt")
        base = "https://127.0.0.1:%d" % port
        r = curl("--cacert", ca, "-X", "PUT", "--data", "over https", base + "/v1/kv/greeting")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = curl("--cacert", ca, base + "/v1/kv/greeting")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["value"], "over https")
        # By host name too (the certificate was issued with --host localhost).
        r = curl("--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:%d/health/live" % port)
        self.assertEqual(r.stdout, "200", r.stderr)
        # Python's urllib, with the CA; the plaintext door serves the same data.
        ctx = ssl.create_default_context(cafile=ca)
        with urllib.request.urlopen(base + "/v1/kv/greeting", context=ctx, timeout=10) as resp:
            self.assertEqual(json.loads(resp.read())["value"], "over https")
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/kv/greeting" % k.http_port, timeout=10) as resp:
            self.assertEqual(json.loads(resp.read())["value"], "over https")
        # Keep-alive: several requests on one TLS connection, and a body larger than a record.
        big = "x" * (200 * 1024)
        body = os.path.join(self.pki, "big.txt")
        with open(body, "w") as f:
            f.write(big)
        r = curl("--cacert", ca, "-X", "PUT", "--data-binary", "@" + body, base + "/v1/kv/big",
                 "-o", "/dev/null", "-w", "%{http_code}\n", "--next", "--cacert", ca, base + "/v1/kv/big")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("200\n"), r.stdout[:100])
        self.assertEqual(json.loads(r.stdout[4:])["value"], big)
        # A client trusting another CA refuses keel's certificate.
        r = curl("--cacert", os.path.join(self.other, "ca.crt"), base + "/health/live")
        self.assertNotEqual(r.returncode, 0)
        # Plaintext to the HTTPS port: no answer; the server goes on serving.
        r = curl("http://127.0.0.1:%d/health/live" % port)
        self.assertNotEqual(r.returncode, 0)
        # Server-Sent Events over HTTPS: a message published over RESP arrives.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                t.sendall(b"GET /v1/pubsub/news HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while b"event: subscribe" not in got:
                    got += t.recv(4096)
                redis.Redis(port=k.port, socket_timeout=5).publish("news", "hello over tls")
                while b"hello over tls" not in got:
                    chunk = t.recv(4096)
                    self.assertTrue(chunk, got)
                    got += chunk
        wait_for("the failed handshake to be counted", lambda: self.metric(k, "keel_https_handshake_failures_total") >= 1)
        self.assertEqual(redis.Redis(port=k.port, socket_timeout=5).info("server")["https_port"], port)

    def test_gateway_streams_answers_and_relays_websockets_over_https(self):
        """The gateway behind the HTTPS door: a large answer streamed and a WebSocket relayed,
        both through TLS on the client's side."""
        from test_gateway import BodyUpstream, WsUpstream, expected_body, read_head, register, ws_frame, ws_read
        k, port = self.start()
        files, chat = BodyUpstream(), WsUpstream()
        self.addCleanup(files.stop)
        self.addCleanup(chat.stop)
        self.assertEqual(register(k.http_port, "files", "f-1", files.address, ["GET /big/{n}", "GET /chunked/{n}"])[0], 200)
        self.assertEqual(register(k.http_port, "chat", "c-1", chat.address, ["GET /ws/{room}"])[0], 200)
        ctx = ssl.create_default_context(cafile=self.path("ca.crt"))
        import http.client as hclient
        for path, n in (("/big/%d", 3000017), ("/chunked/%d", 1000003)):
            c = hclient.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            c.request("GET", path % n)
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, expected_body(n)), path)
            c.close()
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"GET /ws/tls HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head, rest = read_head(s)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        greeting, rest = ws_read(s, rest)
        self.assertEqual(greeting, b"hello")
        for i in range(5):
            s.sendall(ws_frame(b"over tls %d" % i))
            got, rest = ws_read(s, rest)
            self.assertEqual(got, b"echo: over tls %d" % i)
        s.close()

    def test_client_certificates_required(self):
        k, port = self.start("--set", "tls.http_auth_clients=yes")
        ca = self.path("ca.crt")
        url = "https://127.0.0.1:%d/health/live" % port
        r = curl("--cacert", ca, url)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        r = curl("--cacert", ca, "--cert", os.path.join(self.other, "mallory.crt"),
                 "--key", os.path.join(self.other, "mallory.key"), url)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        r = curl("--cacert", ca, "--cert", self.path("alice.crt"), "--key", self.path("alice.key"),
                 "-o", "/dev/null", "-w", "%{http_code}", url)
        self.assertEqual((r.returncode, r.stdout), (0, "200"), r.stderr)
        wait_for("the refusals to be counted", lambda: self.metric(k, "keel_https_handshake_failures_total") >= 2)

    def test_bad_settings_are_named(self):
        r = subprocess.run([KEEL_BIN, "serve", "--set", "tls.http_port=%d" % free_port()],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("tls.cert_file: must be set when tls.http_port is set", r.stderr)
        r = subprocess.run([KEEL_BIN, "serve", "--set", "tls.http_auth_clients=sometimes"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("'sometimes' is not allowed; allowed: yes, no, optional", r.stderr)
        r = subprocess.run([KEEL_BIN, "serve", "--set", "tls.reload_interval_ms=5"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("allowed: 0 (never) or an integer from 100 to 86400000", r.stderr)


def served_certificate(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.pki = tempfile.mkdtemp(prefix="keel-pki-reload-")
        self.addCleanup(shutil.rmtree, self.pki, True)
        keel("cert", "init", "--dir", self.pki, "--cluster", "it")
        keel("cert", "issue", "--node", "1", "--dir", self.pki, "--host", "127.0.0.1")

    def test_a_renewed_certificate_is_served_to_new_connections(self):
        p = lambda n: os.path.join(self.pki, n)
        https, resp_tls = free_port(), free_port()
        k = Keel("--set", "tls.http_port=%d" % https, "--set", "tls.port=%d" % resp_tls,
                 "--set", "tls.auth_clients=no", "--set", "tls.reload_interval_ms=200",
                 "--set", "tls.cert_file=" + p("node-1.crt"), "--set", "tls.key_file=" + p("node-1.key"),
                 "--set", "tls.ca_cert_file=" + p("ca.crt")).start()
        self.addCleanup(k.cleanup)
        first = der(p("node-1.crt"))
        self.assertEqual(served_certificate(https, p("ca.crt")), first)
        self.assertEqual(served_certificate(resp_tls, p("ca.crt")), first)
        # A connection opened before the renewal, kept open across it.
        ctx = ssl.create_default_context(cafile=p("ca.crt"))
        ctx.check_hostname = False
        old = redis.Redis(port=resp_tls, ssl=True, ssl_ca_certs=p("ca.crt"), ssl_check_hostname=False, socket_timeout=5)
        self.assertTrue(old.set("before", "1"))
        # Renew: a new certificate and key for the same node, moved over the old files.
        keel("cert", "issue", "--node", "1", "--dir", self.pki, "--host", "127.0.0.1", "--out", "renewed")
        second = der(p("renewed.crt"))
        self.assertNotEqual(first, second)
        os.replace(p("renewed.key"), p("node-1.key"))
        os.replace(p("renewed.crt"), p("node-1.crt"))
        wait_for("HTTPS to serve the renewed certificate", lambda: served_certificate(https, p("ca.crt")) == second)
        self.assertEqual(served_certificate(resp_tls, p("ca.crt")), second)
        self.assertIn("TLS: reloaded " + p("node-1.crt"), k.output())
        self.assertEqual(old.get("before"), b"1")  # the old connection goes on
        # A bad file: reported, counted, and the renewed certificate stays in use.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as r:
            failures_before = float(re.search(r"^keel_tls_reload_failures_total (\S+)$", r.read().decode(), re.M).group(1))
        with open(p("node-1.crt"), "w") as f:
            f.write("not a certificate\n")

        def failures():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as r:
                return float(re.search(r"^keel_tls_reload_failures_total (\S+)$", r.read().decode(), re.M).group(1))
        wait_for("the bad file to be reported", lambda: failures() > failures_before)
        self.assertRegex(k.output(), r"TLS: the changed certificate files were not loaded, the previous ones stay in "
                                     r"use: tls.cert_file: .*node-1.crt: not a PEM certificate")
        self.assertEqual(served_certificate(https, p("ca.crt")), second)
        self.assertEqual(served_certificate(resp_tls, p("ca.crt")), second)
        self.assertGreaterEqual(redis.Redis(port=k.port, socket_timeout=5).info("stats")["tls_reloads"], 1)


    def test_a_node_renews_its_own_certificate_from_the_ca(self):
        """With tls.ca_key_file, a node renews its certificate after tls.renew_fraction of its
        lifetime (a 60 s certificate, renewed after 5%: within seconds), keeps its identity and
        names, and serves the new one to new connections."""
        p = lambda n: os.path.join(self.pki, n)
        keel("cert", "issue", "--node", "1", "--dir", self.pki, "--host", "127.0.0.1", "--ttl", "60s", "--out", "short")
        https = free_port()
        k = Keel("--set", "tls.http_port=%d" % https, "--set", "tls.reload_interval_ms=200",
                 "--set", "tls.cert_file=" + p("short.crt"), "--set", "tls.key_file=" + p("short.key"),
                 "--set", "tls.ca_cert_file=" + p("ca.crt"), "--set", "tls.ca_key_file=" + p("ca.key"),
                 "--set", "tls.renew_fraction=0.05").start()
        self.addCleanup(k.cleanup)
        first = der(p("short.crt"))
        self.assertEqual(served_certificate(https, p("ca.crt")), first)
        wait_for("the node to renew and serve its certificate", lambda: served_certificate(https, p("ca.crt")) != first,
                 limit=30)
        renewed = der(p("short.crt"))
        self.assertNotEqual(renewed, first)
        self.assertEqual(served_certificate(https, p("ca.crt")), renewed)
        self.assertIn("TLS: renewed " + p("short.crt"), k.output())
        inspect = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", p("short.crt")],
                                 capture_output=True, text=True).stdout
        self.assertIn("URI:spiffe://it/node/1", inspect)
        self.assertIn("IP Address:127.0.0.1", inspect)
        self.assertEqual(oct(os.stat(p("short.key")).st_mode & 0o777), "0o600")
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as r:
            self.assertRegex(r.read().decode(), r"(?m)^keel_tls_renewals_total [1-9]")
        # Without the files it needs, the setting is refused at start, naming them.
        bad = subprocess.run([KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", self.pki + "/d",
                              "--set", "tls.ca_key_file=" + p("ca.key")], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("tls.ca_key_file", bad.stdout + bad.stderr)


if __name__ == "__main__":
    unittest.main()
