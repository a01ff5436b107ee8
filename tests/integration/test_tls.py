"""RESP over TLS (docs/security.md): `keel cert init` + `keel cert issue`, then keel serving
TLS beside plaintext, with real clients (redis-cli --tls, redis-py ssl=True), and client
certificates required (tls.auth_clients = yes)."""
import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import redis

from harness import KEEL_BIN, Keel, free_port, keel_cli as keel


def redis_cli(*args):
    return subprocess.run(["redis-cli"] + list(args), capture_output=True, text=True, timeout=30)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="keel-pki-")
        out = keel("cert", "init", "--dir", cls.pki, "--cluster", "it").stdout
        assert "ca.crt" in out, out
        keel("cert", "issue", "--node", "1", "--dir", cls.pki, "--host", "localhost", "--host", "127.0.0.1")
        keel("cert", "issue", "--client", "alice", "--ttl", "1d", "--dir", cls.pki)
        # A client certificate from another CA (same cluster name): must not be accepted.
        cls.other = tempfile.mkdtemp(prefix="keel-pki-other-")
        keel("cert", "init", "--dir", cls.other, "--cluster", "it")
        keel("cert", "issue", "--client", "mallory", "--dir", cls.other)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)
        shutil.rmtree(cls.other, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.pki, name)

    def start(self, auth_clients, ca=True):
        port = free_port()
        args = ["--set", "tls.port=%d" % port,
                "--set", "tls.cert_file=" + self.path("node-1.crt"),
                "--set", "tls.key_file=" + self.path("node-1.key"),
                "--set", "tls.auth_clients=" + auth_clients]
        if ca:
            args += ["--set", "tls.ca_cert_file=" + self.path("ca.crt")]
        k = Keel(*args).start()
        self.addCleanup(k.cleanup)
        self.assertIn("RESP over TLS on 127.0.0.1:%d" % port, k.output())
        return k, port

    def test_cert_commands_write_the_files_and_refuse_bad_input(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.path("ca.key")).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.path("alice.key")).st_mode), 0o600)
        text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", self.path("node-1.crt")],
                              capture_output=True, text=True, check=True).stdout
        self.assertIn("URI:spiffe://it/node/1", text)
        self.assertIn("ED25519", text.upper())
        v = subprocess.run(["openssl", "verify", "-CAfile", self.path("ca.crt"), self.path("alice.crt")],
                           capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        v = subprocess.run(["openssl", "verify", "-CAfile", self.path("ca.crt"), os.path.join(self.other, "mallory.crt")],
                           capture_output=True, text=True)
        self.assertNotEqual(v.returncode, 0)
        bad = keel("cert", "issue", "--client", "bob", "--ttl", "5x", "--dir", self.pki, check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("allowed: a whole number with a unit s, m, h or d", bad.stderr)
        self.assertFalse(os.path.exists(self.path("bob.crt")))
        again = keel("cert", "init", "--dir", self.pki, check=False)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("already exists", again.stderr)
        fips = tempfile.mkdtemp(prefix="keel-pki-fips-")
        try:
            keel("cert", "init", "--dir", fips, "--fips")
            keel("cert", "issue", "--node", "2", "--dir", fips)
            text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", os.path.join(fips, "node-2.crt")],
                                  capture_output=True, text=True, check=True).stdout
            self.assertIn("prime256v1", text)
            self.assertIn("URI:spiffe://keel/node/2", text)
        finally:
            shutil.rmtree(fips, ignore_errors=True)

    def test_tls_without_client_certificates(self):
        k, port = self.start("no", ca=False)
        r = redis_cli("--tls", "--cacert", self.path("ca.crt"), "-p", str(port), "ping")
        self.assertEqual(r.stdout.strip(), "PONG", r.stderr)
        c = redis.Redis(port=port, ssl=True, ssl_ca_certs=self.path("ca.crt"), socket_timeout=5)
        self.assertTrue(c.set("k", "over tls"))
        # The plaintext port still serves, the same data.
        plain = redis.Redis(port=k.port, socket_timeout=5)
        self.assertEqual(plain.get("k"), b"over tls")
        self.assertEqual(c.config_get("tls-port"), {"tls-port": str(port)})
        self.assertEqual(c.config_get("tls-auth-clients"), {"tls-auth-clients": "no"})
        # A pipeline larger than one TLS record, and a large value.
        p = c.pipeline(transaction=False)
        for i in range(2000):
            p.set("p%d" % i, "v%d" % i)
        self.assertEqual(len(p.execute()), 2000)
        big = b"x" * (1 << 20)
        c.set("big", big)
        self.assertEqual(plain.get("big"), big)
        self.assertEqual(c.get("p1999"), b"v1999")
        # Blocking commands over TLS: a timeout, and a wake-up by a push on the plaintext port.
        self.assertIsNone(c.blpop("q", timeout=0.2))
        t = threading.Timer(0.3, lambda: plain.rpush("q", "item"))
        t.start()
        self.assertEqual(c.blpop("q", timeout=5), (b"q", b"item"))
        t.join()
        # MULTI/EXEC over TLS.
        tx = c.pipeline(transaction=True)
        tx.incr("n").incr("n")
        self.assertEqual(tx.execute(), [1, 2])
        # The server's certificate is checked by the client: a client trusting another CA refuses.
        other = redis.Redis(port=port, ssl=True, ssl_ca_certs=os.path.join(self.other, "ca.crt"), socket_timeout=5)
        with self.assertRaises(redis.exceptions.ConnectionError):
            other.ping()
        # Plaintext spoken to the TLS port gets no reply; the server goes on serving.
        wrong = redis.Redis(port=port, socket_timeout=2, retry_on_timeout=False)
        with self.assertRaises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            wrong.ping()
        self.assertTrue(c.ping())
        self.assertTrue(plain.ping())

    def test_plaintext_ports_off(self):
        """tls.plaintext = no: the plaintext RESP and HTTP ports are not opened, TLS and HTTPS serve."""
        plain, plain_http, tls_port, https_port = free_port(), free_port(), free_port(), free_port()
        k = Keel("--set", "server.resp_port=%d" % plain, "--set", "server.http_port=%d" % plain_http,
                 "--set", "tls.plaintext=no", "--set", "tls.port=%d" % tls_port,
                 "--set", "tls.http_port=%d" % https_port,
                 "--set", "tls.cert_file=" + self.path("node-1.crt"),
                 "--set", "tls.key_file=" + self.path("node-1.key"),
                 "--set", "tls.auth_clients=no").start()
        self.addCleanup(k.cleanup)
        self.assertEqual((k.port, k.http_port), (0, 0))  # the ready line names no plaintext port
        self.assertIn("plaintext ports off (tls.plaintext = no): clients connect only over TLS: RESP on 127.0.0.1:%d, "
                      "HTTPS on 127.0.0.1:%d" % (tls_port, https_port), k.output())
        for port in (plain, plain_http):
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        c = redis.Redis(port=tls_port, ssl=True, ssl_ca_certs=self.path("ca.crt"), socket_timeout=5)
        self.assertTrue(c.set("k", "tls only"))
        self.assertEqual(c.config_get("port"), {"port": "0"})  # as Redis's `port 0` with tls-port
        self.assertEqual(c.config_get("tls.plaintext"), {"tls.plaintext": "no"})
        r = redis_cli("--tls", "--cacert", self.path("ca.crt"), "-p", str(tls_port), "get", "k")
        self.assertEqual(r.stdout.strip(), "tls only", r.stderr)
        ctx = ssl.create_default_context(cafile=self.path("ca.crt"))
        with urllib.request.urlopen("https://127.0.0.1:%d/v1/kv/k" % https_port, context=ctx, timeout=10) as resp:
            self.assertEqual(json.loads(resp.read())["value"], "tls only")

    def test_plaintext_off_needs_a_tls_door(self):
        r = subprocess.run([KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", tempfile.mkdtemp(),
                            "--set", "tls.plaintext=no"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("tls.plaintext: = no would leave this node no door for clients: set tls.port (RESP over TLS) "
                      "and/or tls.http_port (HTTPS), or keep tls.plaintext = yes", r.stderr)
        r = subprocess.run([KEEL_BIN, "serve", "--set", "tls.plaintext=maybe"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("'maybe' is not allowed; allowed: yes (plaintext ports open beside TLS), no (TLS only)", r.stderr)

    def test_client_certificates_required(self):
        k, port = self.start("yes")
        ca = self.path("ca.crt")
        # No certificate: refused.
        anon = redis.Redis(port=port, ssl=True, ssl_ca_certs=ca, socket_timeout=5)
        with self.assertRaises(redis.exceptions.ConnectionError):
            anon.ping()
        r = redis_cli("--tls", "--cacert", ca, "-p", str(port), "ping")
        self.assertNotEqual(r.stdout.strip(), "PONG")
        # A certificate from another CA: refused.
        mallory = redis.Redis(port=port, ssl=True, ssl_ca_certs=ca,
                              ssl_certfile=os.path.join(self.other, "mallory.crt"),
                              ssl_keyfile=os.path.join(self.other, "mallory.key"), socket_timeout=5)
        with self.assertRaises(redis.exceptions.ConnectionError):
            mallory.ping()
        # An issued client certificate: served.
        alice = redis.Redis(port=port, ssl=True, ssl_ca_certs=ca, ssl_certfile=self.path("alice.crt"),
                            ssl_keyfile=self.path("alice.key"), socket_timeout=5)
        self.assertTrue(alice.set("who", "alice"))
        self.assertEqual(alice.get("who"), b"alice")
        r = redis_cli("--tls", "--cacert", ca, "--cert", self.path("alice.crt"), "--key", self.path("alice.key"),
                      "-p", str(port), "ping")
        self.assertEqual(r.stdout.strip(), "PONG", r.stderr)
        # Plaintext still works beside it.
        plain = redis.Redis(port=k.port, socket_timeout=5)
        self.assertEqual(plain.get("who"), b"alice")
        # The refusals are counted (INFO and /metrics).
        deadline = time.time() + 5
        while plain.info("stats")["tls_handshake_failures"] < 3 and time.time() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(plain.info("stats")["tls_handshake_failures"], 3)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=5) as resp:
            metrics = resp.read().decode()
        m = re.search(r"^keel_tls_handshake_failures_total (\S+)$", metrics, re.M)
        self.assertIsNotNone(m, "keel_tls_handshake_failures_total missing from /metrics")
        self.assertGreaterEqual(float(m.group(1)), 3)
        self.assertEqual(plain.info("server")["tls_port"], port)

    def test_optional_client_certificates(self):
        k, port = self.start("optional")
        ca = self.path("ca.crt")
        self.assertTrue(redis.Redis(port=port, ssl=True, ssl_ca_certs=ca, socket_timeout=5).ping())
        self.assertTrue(redis.Redis(port=port, ssl=True, ssl_ca_certs=ca, ssl_certfile=self.path("alice.crt"),
                                    ssl_keyfile=self.path("alice.key"), socket_timeout=5).ping())
        mallory = redis.Redis(port=port, ssl=True, ssl_ca_certs=ca,
                              ssl_certfile=os.path.join(self.other, "mallory.crt"),
                              ssl_keyfile=os.path.join(self.other, "mallory.key"), socket_timeout=5)
        with self.assertRaises(redis.exceptions.ConnectionError):
            mallory.ping()

    def test_bad_files_refuse_to_start(self):
        junk = os.path.join(self.pki, "junk.crt")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        cases = [
            ({"tls.cert_file": junk}, "tls.cert_file: " + junk + ": not a PEM certificate"),
            ({"tls.cert_file": self.path("missing.crt")}, "tls.cert_file: " + self.path("missing.crt") + ": cannot read the file"),
            ({"tls.key_file": self.path("alice.key")}, "tls.key_file: " + self.path("alice.key") + ": the key does not belong"),
            ({"tls.ca_cert_file": junk}, "tls.ca_cert_file: " + junk + ": not a PEM CA certificate"),
            ({"tls.ca_cert_file": ""}, "tls.ca_cert_file: must be set when tls.auth_clients is yes"),
            ({"tls.auth_clients": "maybe"}, "'maybe' is not allowed; allowed: yes, no, optional"),
        ]
        for override, want in cases:
            settings = {"tls.port": str(free_port()), "tls.cert_file": self.path("node-1.crt"),
                        "tls.key_file": self.path("node-1.key"), "tls.ca_cert_file": self.path("ca.crt")}
            settings.update(override)
            args = []
            for key, value in settings.items():
                args += ["--set", "%s=%s" % (key, value)]
            k = Keel(*args)
            with self.assertRaises(RuntimeError) as e:
                k.start()
            k.cleanup()
            self.assertIn(want, str(e.exception))


if __name__ == "__main__":
    unittest.main()
