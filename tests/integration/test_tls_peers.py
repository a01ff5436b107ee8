"""Mutual TLS on peer links (tls.peer = yes, docs/security.md): three real keel processes whose
metadata peers and data plane speak only TLS with certificates from the cluster CA naming each
node; a node with a certificate from another CA, or a certificate naming another node than the
one dialled, is refused, logged and counted, while the others go on serving."""
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

from harness import KEEL_BIN, Keel, free_port, http, wait_cluster_ok, keel_cli as keel, wait_for


def metrics(node):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % node.http_port, timeout=10) as r:
        return r.read().decode()


def metric(node, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), metrics(node), re.M)
    return float(m.group(1)) if m else None


def put_meta(port, key, value, limit=30):
    """PUT /v1/meta/KEY, retried while the answer is 503 (no quorum at that moment: nothing was
    applied) or 504 (outcome unknown: the same PUT again is harmless); bounded."""
    deadline = time.time() + limit
    while True:
        st, body = http("PUT", port, "/v1/meta/" + key, value)
        if st not in (503, 504) or time.time() > deadline:
            return st, body
        time.sleep(0.05)


class PeerTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="keel-pki-peers-")
        keel("cert", "init", "--dir", cls.pki, "--cluster", "it")
        for i in (1, 2, 3, 4):
            keel("cert", "issue", "--node", str(i), "--dir", cls.pki)
        # Another CA of the same cluster name, with a certificate for node 3.
        cls.other = tempfile.mkdtemp(prefix="keel-pki-peers-other-")
        keel("cert", "init", "--dir", cls.other, "--cluster", "it")
        keel("cert", "issue", "--node", "3", "--dir", cls.other)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)
        shutil.rmtree(cls.other, ignore_errors=True)

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="keel-tls-peers-it-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.peer_ports = [free_port() for _ in range(3)]
        self.peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.peer_ports))

    def node(self, node_id, port, pki=None, cert_id=None, peers=None):
        pki = pki or self.pki
        cert_id = cert_id or node_id
        d = os.path.join(self.root, "n%d-%d" % (node_id, port))
        os.makedirs(d)
        k = Keel("--engine", "memory", "--shards", "1", "--node-id", str(node_id), "--cluster-id", "it",
                 "--peer-port", str(port), "--peers", peers or self.peers,
                 "--set", "cluster.request_timeout_ms=3000", "--set", "cluster.heartbeat_ms=50",
                 "--set", "cluster.suspect_after_ms=300", "--set", "cluster.dead_after_ms=1000",
                 "--set", "dht.replicas=2", "--set", "dht.write_quorum=2",
                 "--set", "tls.peer=yes",
                 "--set", "tls.cert_file=" + os.path.join(pki, "node-%d.crt" % cert_id),
                 "--set", "tls.key_file=" + os.path.join(pki, "node-%d.key" % cert_id),
                 "--set", "tls.ca_cert_file=" + os.path.join(pki, "ca.crt"), data_dir=d)
        self.addCleanup(k.cleanup)
        return k.start()

    def wait_quorum(self, *nodes):
        for k in nodes:
            wait_for("quorum on a node", lambda: http("GET", k.http_port, "/v1/cluster/status")[1].get("quorum"))

    def meta_roundtrip(self, a, b):
        """A metadata write through `a` (Rabia over the TLS peer links) is read through `b`."""
        st, body = put_meta(a.http_port, "check/%d" % a.http_port, b"written")
        self.assertEqual(st, 200, body)
        wait_for("the metadata write to reach the other node",
                 lambda: http("GET", b.http_port, "/v1/meta/check/%d" % a.http_port)[0] == 200)

    def client(self, k):
        return redis.Redis(port=k.port, socket_timeout=10)

    def test_three_nodes_over_mutual_tls_replicate(self):
        nodes = [self.node(i + 1, self.peer_ports[i]) for i in range(3)]
        for i, k in enumerate(nodes):
            wait_cluster_ok(lambda k=k: self.client(k), "node %d" % (i + 1), k.output)
            self.assertIn("mutual TLS on peer links", k.output())
        # Data written through one node is read through the others (forwarded to the
        # partition's primary and replicated to a second copy over the TLS data plane).
        for i in range(50):
            self.assertTrue(self.client(nodes[i % 3]).set("key:%d" % i, "value-%d" % i))
        for j in range(3):
            c = self.client(nodes[j])
            for i in range(50):
                self.assertEqual(c.get("key:%d" % i), b"value-%d" % i)
        # Metadata (Rabia over the TLS peer links): written on one node, read on another.
        st, body = put_meta(nodes[0].http_port, "svc/a", b"over tls")
        self.assertEqual(st, 200, body)
        wait_for("the metadata write on node 3",
                 lambda: http("GET", nodes[2].http_port, "/v1/meta/svc/a")[0] == 200)
        self.assertEqual(http("GET", nodes[2].http_port, "/v1/meta/svc/a")[1]["value"], "over tls")
        # Writes are replicated: each written key is held by two nodes.
        held = sum(int(self.client(k).execute_command("DBSIZE")) for k in nodes)
        self.assertEqual(held, 100)
        for k in nodes:
            self.assertEqual(metric(k, "keel_peer_tls_refusals_total", '{reason="handshake"}'), 0)
            self.assertEqual(metric(k, "keel_peer_tls_refusals_total", '{reason="identity"}'), 0)
        # The peer port speaks only TLS, and only to a client with a certificate from the CA:
        # it presents node 1's identity.
        ctx = ssl.create_default_context(cafile=os.path.join(self.pki, "ca.crt"))
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", self.peer_ports[0]), timeout=10) as s:
            with ctx.wrap_socket(s) as t:
                self.assertEqual(t.getpeercert()["subjectAltName"], (("URI", "spiffe://it/node/1"),))
                # No certificate of ours: the node ends the handshake (TLS 1.3 reports it on read).
                with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
                    t.settimeout(10)
                    if not t.recv(1):
                        raise ConnectionError("closed")
        wait_for("the refusal to be counted",
                 lambda: metric(nodes[0], "keel_peer_tls_refusals_total", '{reason="handshake"}') >= 1)
        info = self.client(nodes[0]).info("stats")
        self.assertGreaterEqual(info["tls_peer_refused_handshakes"], 1)
        # Plaintext to the peer port is refused too; the cluster goes on serving.
        with socket.create_connection(("127.0.0.1", self.peer_ports[1]), timeout=10) as s:
            s.sendall(b"hello, plaintext\r\n")
            s.settimeout(10)
            try:
                self.assertEqual(s.recv(100), b"")
            except ConnectionResetError:
                pass
        self.assertEqual(self.client(nodes[1]).get("key:7"), b"value-7")

    def test_a_restarted_member_comes_back_over_tls(self):
        nodes = [self.node(i + 1, self.peer_ports[i]) for i in range(3)]
        self.wait_quorum(*nodes)
        nodes[2].kill9()
        # Written while node 3 is down; it catches up over the TLS links once it is back.
        st, body = put_meta(nodes[0].http_port, "while/down", b"missed")
        self.assertEqual(st, 200, body)
        nodes[2].start()
        self.wait_quorum(nodes[2])
        wait_for("node 3 to catch up", lambda: http("GET", nodes[2].http_port, "/v1/meta/while/down")[0] == 200)
        self.assertEqual(http("GET", nodes[2].http_port, "/v1/meta/while/down")[1]["value"], "missed")
        self.meta_roundtrip(nodes[2], nodes[0])
        for k in nodes:
            self.assertEqual(metric(k, "keel_peer_tls_refusals_total", '{reason="identity"}'), 0)

    def test_a_certificate_from_another_ca_is_refused(self):
        n1 = self.node(1, self.peer_ports[0])
        n2 = self.node(2, self.peer_ports[1])
        n3 = self.node(3, self.peer_ports[2], pki=self.other)  # right id, wrong CA
        self.wait_quorum(n1, n2)
        wait_for("a refusal of node 3's handshake",
                 lambda: (metric(n1, "keel_peer_tls_refusals_total", '{reason="handshake"}') or 0) >= 1 and
                 (metric(n2, "keel_peer_tls_refusals_total", '{reason="handshake"}') or 0) >= 1)
        self.assertRegex(n1.output(), r"refused a peer connection from 127\.0\.0\.1:\d+: TLS handshake failed: "
                                      r"tlsv1 alert unknown ca|TLS handshake failed: certificate verify failed")
        self.assertRegex(n3.output(), r"TLS handshake with peer 127\.0\.0\.1:\d+ failed: certificate verify failed")
        # Nodes 1 and 2 form a quorum and serve metadata; node 3 reaches no one.
        self.meta_roundtrip(n1, n2)
        st, body = http("GET", n3.http_port, "/v1/cluster/status")
        self.assertFalse(body.get("quorum"), body)
        st, body = http("PUT", n3.http_port, "/v1/meta/from/n3", b"x")
        self.assertEqual(st, 503, body)

    def test_a_certificate_naming_another_node_is_refused(self):
        # Node 4, with its own valid certificate from the cluster CA, listens where the others
        # expect node 3: they dial it as node 3 and refuse the certificate it presents.
        n1 = self.node(1, self.peer_ports[0])
        n2 = self.node(2, self.peer_ports[1])
        self.node(4, self.peer_ports[2], peers=self.peers.replace("3@", "4@"))
        self.wait_quorum(n1, n2)
        want = ("dialled as node 3: the certificate names node 4 (spiffe://it/node/4), not node 3; "
                "expected spiffe://it/node/3")
        wait_for("node 1 to refuse node 4's certificate", lambda: want in n1.output())
        wait_for("the refusal to be counted",
                 lambda: metric(n1, "keel_peer_tls_refusals_total", '{reason="identity"}') >= 1)
        self.assertGreaterEqual(self.client(n1).info("stats")["tls_peer_refused_identities"], 1)
        self.meta_roundtrip(n2, n1)

    def test_own_certificate_must_name_this_node(self):
        d = os.path.join(self.root, "bad")
        os.makedirs(d)
        r = subprocess.run([KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", d,
                            "--node-id", "3", "--cluster-id", "it", "--peer-port", str(self.peer_ports[2]),
                            "--peers", self.peers, "--set", "tls.peer=yes",
                            "--set", "tls.cert_file=" + os.path.join(self.pki, "node-4.crt"),
                            "--set", "tls.key_file=" + os.path.join(self.pki, "node-4.key"),
                            "--set", "tls.ca_cert_file=" + os.path.join(self.pki, "ca.crt")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("keel: cannot start: tls.cert_file: " + os.path.join(self.pki, "node-4.crt") +
                      ": not usable for peer links (tls.peer = yes) by node 3 of cluster 'it': the certificate "
                      "names node 4 (spiffe://it/node/4), not node 3", r.stderr)
        r = subprocess.run([KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", d,
                            "--node-id", "3", "--cluster-id", "it", "--peer-port", str(self.peer_ports[2]),
                            "--peers", self.peers, "--set", "tls.peer=yes"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("tls.cert_file: must be set when tls.peer = yes", r.stderr)
        self.assertIn("tls.ca_cert_file: must be set when tls.peer = yes", r.stderr)
        r = subprocess.run([KEEL_BIN, "serve", "--set", "tls.peer=maybe"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("'maybe' is not allowed; allowed: yes, no", r.stderr)

    def test_config_check_warns_when_a_cluster_runs_without_tls(self):
        path = os.path.join(self.root, "keel.toml")
        with open(path, "w") as f:
            f.write('[cluster]\nnode_id = 1\npeers = ["1@127.0.0.1:9380", "2@127.0.0.1:9381", "3@127.0.0.1:9382"]\n')
        r = subprocess.run([KEEL_BIN, "config", "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), path + ": OK, 2 warning(s)")
        self.assertIn("warning: tls.peer: this node is a cluster member whose peer links run without TLS", r.stderr)
        self.assertIn("warning: tls.port: clients reach this cluster member only in plaintext", r.stderr)
        with open(path, "a") as f:
            f.write('[tls]\npeer = true\nport = 6390\ncert_file = "%s"\nkey_file = "%s"\nca_cert_file = "%s"\n' % (
                os.path.join(self.pki, "node-1.crt"), os.path.join(self.pki, "node-1.key"),
                os.path.join(self.pki, "ca.crt")))
        r = subprocess.run([KEEL_BIN, "config", "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, path + ": OK, 1 warning(s)"), r.stderr)
        self.assertIn("warning: tls.plaintext: the plaintext ports (server.resp_port, server.http_port) stay open "
                      "beside TLS", r.stderr)
        # TLS only: nothing left to warn about.
        with open(path, "a") as f:
            f.write('plaintext = false\n')
        r = subprocess.run([KEEL_BIN, "config", "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr), (0, path + ": OK", ""))
        # tls.plaintext = no without any TLS port leaves no door: a problem, not a warning.
        with open(path, "w") as f:
            f.write('[tls]\nplaintext = false\n')
        r = subprocess.run([KEEL_BIN, "config", "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("tls.plaintext: = no would leave this node no door for clients", r.stderr)
        # A single node has no peer links: nothing to warn about.
        with open(path, "w") as f:
            f.write('[server]\nresp_port = 6380\n')
        r = subprocess.run([KEEL_BIN, "config", "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr), (0, path + ": OK", ""))


if __name__ == "__main__":
    unittest.main()
