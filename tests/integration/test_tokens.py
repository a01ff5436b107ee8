"""Certificate-bound tokens, certificate users, signed HTTP requests and brute-force lockout
(docs/security.md): `keel token init|issue|attenuate`, then the RESP and HTTPS doors with real
clients (redis-py over TLS, urllib over HTTPS), each refusal with its exact error, and the server
still serving others afterwards."""
import base64
import hashlib
import json
import os
import re
import shutil
import ssl
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import Keel, free_port, keel_cli as keel, wait_for


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def fingerprint(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


class TokenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="keel-pki-")
        keel("cert", "init", "--dir", cls.pki)
        keel("cert", "issue", "--node", "1", "--dir", cls.pki, "--host", "localhost", "--host", "127.0.0.1")
        keel("cert", "issue", "--client", "alice", "--dir", cls.pki)
        keel("cert", "issue", "--client", "bob", "--dir", cls.pki)
        out = keel("token", "init", "--dir", cls.pki).stdout
        assert "token.pub" in out, out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.pki, name)

    def start(self, *extra, password=None):
        self.tls_port, self.https_port = free_port(), free_port()
        k = Keel("--set", "tls.port=%d" % self.tls_port, "--set", "tls.http_port=%d" % self.https_port,
                 "--set", "tls.cert_file=" + self.path("node-1.crt"), "--set", "tls.key_file=" + self.path("node-1.key"),
                 "--set", "tls.ca_cert_file=" + self.path("ca.crt"), "--set", "tls.auth_clients=optional",
                 "--set", "tls.http_auth_clients=optional",
                 "--set", "auth.token_public_key_file=" + self.path("token.pub"), *extra).start()
        self.addCleanup(k.cleanup)
        admin = redis.Redis(port=k.port, password=password, socket_timeout=10)
        admin.execute_command("ACL", "SETUSER", "orders", "on", ">orders-secret", "~orders:*", "&*", "+@read",
                              "+@write", "-@dangerous", "+acl|whoami")
        admin.execute_command("ACL", "SETUSER", "alice", "on", "~*", "&*", "+@all")
        return k, admin

    def tls_client(self, cert="alice"):
        kw = {}
        if cert:
            kw = dict(ssl_certfile=self.path(cert + ".crt"), ssl_keyfile=self.path(cert + ".key"))
        return redis.Redis(port=self.tls_port, ssl=True, ssl_ca_certs=self.path("ca.crt"), socket_timeout=10, **kw)

    def issue(self, user="orders", cert="alice", *rules):
        return keel("token", "issue", "--dir", self.pki, "--user", user, "--cert", self.path(cert + ".crt"),
                    *rules).stdout.strip()

    def error(self, client, *args):
        with self.assertRaises((redis.exceptions.ResponseError, redis.exceptions.AuthenticationError)) as e:
            client.execute_command(*args)
        return str(e.exception)

    def https(self, method, path, headers=None, body=None, cert="alice"):
        ctx = ssl.create_default_context(cafile=self.path("ca.crt"))
        if cert:
            ctx.load_cert_chain(self.path(cert + ".crt"), self.path(cert + ".key"))
        req = urllib.request.Request("https://localhost:%d%s" % (self.https_port, path), data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def test_cli_refuses_bad_input(self):
        import stat
        self.assertEqual(stat.S_IMODE(os.stat(self.path("token.key")).st_mode), 0o600)
        r = keel("token", "init", "--dir", self.pki, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("token.key: File exists (an existing key is never replaced", r.stderr)
        r = keel("token", "issue", "--dir", self.pki, "--user", "u", "--cert", self.path("alice.crt"),
                 "--commands", ">secret", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.strip(), "keel token issue: '>secret' is not a command rule a token may carry; "
                                           "allowed: +command, -command, +@category, -@category, +command|sub, "
                                           "allcommands, nocommands")
        r = keel("token", "issue", "--dir", self.pki, "--user", "u", "--cert", self.path("ca.key"), check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a PEM certificate", r.stderr)
        r = keel("token", "attenuate", "--token", "kt1.AAAA", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.strip(), "keel token attenuate: the token must be pairs of block and signature "
                                           "separated by '.'")
        # A P-256 signing key (--fips) issues tokens too.
        fips = tempfile.mkdtemp(prefix="keel-pki-fips-")
        self.addCleanup(shutil.rmtree, fips, True)
        self.assertIn("ECDSA P-256", keel("token", "init", "--dir", fips, "--fips").stdout)
        tok = keel("token", "issue", "--dir", fips, "--user", "u", "--cert", self.path("alice.crt")).stdout.strip()
        out = keel("token", "inspect", "--token", tok).stdout
        self.assertIn('"user":"u"', out)
        self.assertIn("proof key: present", out)
        # A node refuses a private key as the token key.
        bad = Keel("--set", "auth.token_public_key_file=" + self.path("token.key"))
        self.addCleanup(bad.cleanup)
        with self.assertRaises(RuntimeError) as e:
            bad.start()
        self.assertIn("this is a private key; give nodes only the public key", str(e.exception))

    def test_token_on_resp_intersects_with_the_user(self):
        k, admin = self.start()
        tok = self.issue("orders", "alice", "--commands", "+@read +set +acl|whoami", "--keys", "orders:*")
        self.assertTrue(tok.startswith("kt1."))
        c = self.tls_client()
        self.assertTrue(c.execute_command("AUTH", "orders", tok))
        self.assertEqual(c.execute_command("ACL", "WHOAMI"), b"orders")
        self.assertTrue(c.set("orders:1", "paid"))
        self.assertEqual(c.get("orders:1"), b"paid")
        # The user may DEL; the token may not.
        self.assertEqual(self.error(c, "DEL", "orders:1"),
                         "this token has no permissions to run the 'del' command: block 0 of the token allows only "
                         "'-@all +@read +set +acl|whoami ~orders:* &*'")
        # The token allows every key under its pattern, the user only orders:*.
        self.assertEqual(self.error(c, "GET", "users:1"),
                         "this user has no permissions to access one of the keys used as arguments")
        # AUTH <token> names its user by itself; HELLO AUTH works too.
        c2 = self.tls_client()
        self.assertTrue(c2.execute_command("AUTH", tok))
        self.assertEqual(c2.execute_command("ACL", "WHOAMI"), b"orders")
        c3 = self.tls_client()
        hello = c3.execute_command("HELLO", "2", "AUTH", "orders", tok)
        self.assertIn(b"proto", hello)
        self.assertEqual(c3.execute_command("ACL", "WHOAMI"), b"orders")
        # A token for another user name is refused; the password still works.
        self.assertEqual(self.error(self.tls_client(), "AUTH", "alice", tok),
                         "WRONGPASS token refused: the token is for user 'orders', not 'alice'")
        plain = redis.Redis(port=k.port, username="orders", password="orders-secret", socket_timeout=10)
        self.assertEqual(plain.get("orders:1"), b"paid")

    def test_token_bound_to_another_certificate_is_refused(self):
        k, admin = self.start()
        tok = self.issue("orders", "bob")
        a, b = fingerprint(self.path("alice.crt")), fingerprint(self.path("bob.crt"))
        self.assertEqual(self.error(self.tls_client("alice"), "AUTH", "orders", tok),
                         "WRONGPASS token refused: the token is bound to another client certificate (sha256 %s...), "
                         "this connection presented %s...; present the certificate the token was issued for"
                         % (b[:16], a[:16]))
        # Without a client certificate (TLS without one, or plaintext): refused.
        msg = ("WRONGPASS token refused: the token is bound to a client certificate (sha256 %s) and this connection "
               "presented none; use TLS with that certificate" % b[:16])
        self.assertEqual(self.error(self.tls_client(None), "AUTH", "orders", tok), msg)
        self.assertEqual(self.error(redis.Redis(port=k.port, socket_timeout=10), "AUTH", "orders", tok), msg)
        # The holder of bob's certificate gets in; everyone else is still served.
        self.assertTrue(self.tls_client("bob").execute_command("AUTH", "orders", tok))
        self.assertTrue(admin.ping())
        self.assertTrue(self.tls_client("alice").ping())
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10).read().decode()
        self.assertGreaterEqual(float(re.search(r"^keel_token_refusals_total (\S+)$", metrics, re.M).group(1)), 3)

    def test_widened_token_is_refused(self):
        k, admin = self.start()
        tok = self.issue("orders", "alice", "--keys", "orders:eu:*")
        body, rest = tok[4:].split(".", 1)
        block = json.loads(b64url_decode(body))
        block["keys"] = ["~*"]  # widen by editing block 0
        forged = "kt1." + b64url_encode(json.dumps(block, separators=(",", ":")).encode()) + "." + rest
        self.assertEqual(self.error(self.tls_client(), "AUTH", "orders", forged),
                         "WRONGPASS token refused: the token's signature does not verify with the cluster's token key "
                         "(auth.token_public_key_file): it was changed or issued by another key")
        # An attenuated token whose block was edited back to wider.
        narrow = keel("token", "attenuate", "--token", tok, "--commands", "-set").stdout.strip()
        parts = narrow[4:].split("~")[0].split(".")
        b1 = json.loads(b64url_decode(parts[2]))
        b1["cmds"] = ["+set"]
        parts[2] = b64url_encode(json.dumps(b1, separators=(",", ":")).encode())
        forged1 = "kt1." + ".".join(parts) + "~" + narrow.split("~")[1]
        self.assertEqual(self.error(self.tls_client(), "AUTH", "orders", forged1),
                         "WRONGPASS token refused: block 1's signature does not verify: the block was changed after it "
                         "was signed")
        # The honest attenuation narrows.
        c = self.tls_client()
        self.assertTrue(c.execute_command("AUTH", "orders", narrow))
        self.assertEqual(c.get("orders:eu:1"), None)
        self.assertEqual(self.error(c, "SET", "orders:eu:1", "x"),
                         "this token has no permissions to run the 'set' command: block 1 of the token allows only "
                         "'+@all -set ~* &*'")
        self.assertTrue(admin.ping())

    def test_certificate_names_the_user(self):
        k, admin = self.start("--set", "auth.cert_users=yes", "--set", "server.requirepass=admin-pass",
                              password="admin-pass")
        admin.execute_command("ACL", "SETUSER", "alice", "on", "resetkeys", "~alice:*", "+@all")
        alice = self.tls_client("alice")
        self.assertEqual(alice.execute_command("ACL", "WHOAMI"), b"alice")
        self.assertTrue(alice.set("alice:1", "x"))
        self.assertEqual(self.error(alice, "GET", "bob:1"),
                         "this user has no permissions to access one of the keys used as arguments")
        # bob has a certificate but no user: the default user, which needs a password here.
        self.assertEqual(self.error(self.tls_client("bob"), "GET", "x"), "Authentication required.")
        # HTTPS: no Authorization header, the certificate names the user.
        st, body, _ = self.https("GET", "/v1/kv/alice:1")
        self.assertEqual(st, 200, body)
        st, body, _ = self.https("GET", "/v1/kv/bob:1")
        self.assertEqual(st, 403, body)

    def test_bearer_token_on_https(self):
        k, admin = self.start()
        admin.set("orders:1", "paid")
        tok = self.issue("orders", "alice", "--commands", "+@read")
        st, body, _ = self.https("GET", "/v1/kv/orders:1", {"Authorization": "Bearer " + tok})
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["value"], "paid")
        st, body, _ = self.https("DELETE", "/v1/kv/orders:1", {"Authorization": "Bearer " + tok})
        self.assertEqual(st, 403, body)
        self.assertEqual(json.loads(body)["error"]["code"], "NOPERM")
        self.assertEqual(json.loads(body)["error"]["message"],
                         "this token has no permissions to run the 'del' command: block 0 of the token allows only "
                         "'-@all +@read ~* &*'")
        st, body, hdrs = self.https("GET", "/v1/kv/orders:1", {"Authorization": "Bearer " + tok}, cert="bob")
        self.assertEqual(st, 401, body)
        self.assertIn("bound to another client certificate", json.loads(body)["error"]["message"])
        self.assertIn("Bearer", hdrs.get("WWW-Authenticate", ""))
        # Plain HTTP carries no certificate.
        req = urllib.request.Request("http://127.0.0.1:%d/v1/kv/orders:1" % k.http_port,
                                     headers={"Authorization": "Bearer " + tok})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 401)
        self.assertIn("this connection presented none", json.loads(e.exception.read())["error"]["message"])

    def test_revoked_token_is_refused_on_resp_and_https(self):
        k, admin = self.start()
        admin.set("orders:1", "paid")
        tok = self.issue("orders", "alice", "--commands", "+@read +acl|whoami")
        child = keel("token", "attenuate", "--token", tok, "--commands", "+get").stdout.strip()
        sibling = keel("token", "attenuate", "--token", tok, "--keys", "orders:*").stdout.strip()
        grandchild = keel("token", "attenuate", "--token", child, "--keys", "orders:1").stdout.strip()
        ids = re.findall(r"block \d+ revocation id: ([0-9a-f]{32})", keel("token", "inspect", "--token", child).stdout)
        self.assertEqual(len(ids), 2)
        # Connections authenticated before the revocation, on RESP over TLS.
        before = self.tls_client()
        self.assertTrue(before.execute_command("AUTH", child))
        self.assertEqual(before.get("orders:1"), b"paid")
        parent_conn = self.tls_client()
        self.assertTrue(parent_conn.execute_command("AUTH", tok))
        bearer = lambda t: {"Authorization": "Bearer " + t}
        self.assertEqual(self.https("GET", "/v1/kv/orders:1", bearer(child))[0], 200)
        # Revoke the child with the CLI, over the plaintext HTTP door.
        out = keel("token", "revoke", "--token", child, "--http", "127.0.0.1:%d" % k.http_port).stdout
        self.assertIn("revoked %s (user orders) until " % ids[1], out)
        # RESP: a new AUTH is refused, with the reason; an authenticated connection is told and closed.
        msg = self.error(self.tls_client(), "AUTH", child)
        self.assertIn("WRONGPASS token refused: revoked: the token (revocation id %s) was revoked" % ids[1], msg)
        msg = self.error(self.tls_client(), "AUTH", grandchild)
        self.assertIn("revoked: the token (revocation id %s, a token it was attenuated from) was revoked" % ids[1], msg)
        # (redis-py drops the NOAUTH prefix.)
        msg = self.error(before, "GET", "orders:1")
        self.assertIn("revoked: the token this connection authenticated with (revocation id %s) was revoked by an "
                      "administrator (ACL REVOKE); the connection is closed" % ids[1], msg)
        # HTTPS: Bearer refused with the same reason.
        st, body, _ = self.https("GET", "/v1/kv/orders:1", bearer(child))
        self.assertEqual(st, 401, body)
        self.assertIn("revoked: the token (revocation id %s) was revoked" % ids[1], json.loads(body)["error"]["message"])
        st, body, _ = self.https("GET", "/v1/kv/orders:1", bearer(grandchild))
        self.assertEqual(st, 401, body)
        # The parent and the sibling still work, on both doors; so does the connection of the parent.
        self.assertEqual(self.https("GET", "/v1/kv/orders:1", bearer(tok))[0], 200)
        self.assertEqual(self.https("GET", "/v1/kv/orders:1", bearer(sibling))[0], 200)
        self.assertEqual(parent_conn.get("orders:1"), b"paid")
        c = self.tls_client()
        self.assertTrue(c.execute_command("AUTH", sibling))
        # Listed on both doors.
        listed = admin.execute_command("ACL", "REVOCATIONS")
        self.assertEqual(len(listed), 1)
        entry = dict(zip(listed[0][::2], listed[0][1::2]))
        self.assertEqual((entry[b"id"], entry[b"user"]), (ids[1].encode(), b"orders"))
        st, body, _ = self.https("GET", "/v1/auth/revocations", cert=None)
        self.assertEqual([e["id"] for e in json.loads(body)["revocations"]], [ids[1]])
        # Revoke the root by id over RESP (ACL REVOKE <id> <expires>): the whole family goes.
        root_id = re.search(r"block 0 revocation id: ([0-9a-f]{32})", keel("token", "inspect", "--token", tok).stdout).group(1)
        exp = json.loads(re.search(r"block 0: (\{.*\})", keel("token", "inspect", "--token", tok).stdout).group(1))["exp"]
        self.assertEqual(admin.execute_command("ACL", "REVOKE", root_id, str(exp)), root_id.encode())
        self.assertIn("revoked", self.error(self.tls_client(), "AUTH", sibling))
        self.assertIn("revoked: the token this connection authenticated with", self.error(parent_conn, "GET", "orders:1"))
        self.assertEqual(self.https("GET", "/v1/kv/orders:1", bearer(tok))[0], 401)
        # Bad input: each error says what is allowed.
        self.assertIn("revoking by id needs the unix time its token expires", self.error(admin, "ACL", "REVOKE", root_id))
        self.assertIn("'nope' cannot be revoked; allowed: the token itself (kt1....), or a revocation id",
                      self.error(admin, "ACL", "REVOKE", "nope"))
        st, body, _ = self.https("POST", "/v1/auth/revocations", body=b'{"id": "abc"}', cert=None)
        self.assertEqual(st, 400, body)
        self.assertIn("'abc' cannot be revoked", json.loads(body)["error"]["message"])
        r = keel("token", "revoke", "--id", root_id, check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--id needs --expires", r.stderr)
        # Passwords still work; the server still serves.
        plain = redis.Redis(port=k.port, username="orders", password="orders-secret", socket_timeout=10)
        self.assertEqual(plain.get("orders:1"), b"paid")

    # ---- signed requests ----

    def signed(self, tok, method, path, body=b"", nonce=None, created=None, ttl=60):
        proof = b64url_decode(tok.split("~")[1])
        key = Ed25519PrivateKey.from_private_bytes(proof)
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        created = created or int(time.time())
        params = '("@method" "@path" "content-digest");created=%d;expires=%d;nonce="%s";keyid="token"' % (
            created, created + ttl, nonce or uuid.uuid4().hex)
        base = '"@method": %s\n"@path": %s\n"content-digest": %s\n"@signature-params": %s' % (method, path, digest,
                                                                                             params)
        sig = base64.b64encode(key.sign(base.encode())).decode()
        return {"Authorization": "Bearer " + tok.split("~")[0], "Content-Digest": digest,
                "Signature-Input": "sig1=" + params, "Signature": "sig1=:%s:" % sig}

    def test_signed_request_and_replay(self):
        k, admin = self.start()
        tok = self.issue("orders", "alice")
        h = self.signed(tok, "PUT", "/v1/kv/orders:2", b"shipped")
        st, body, _ = self.https("PUT", "/v1/kv/orders:2", h, b"shipped")
        self.assertEqual(st, 200, body)
        self.assertEqual(admin.get("orders:2"), b"shipped")
        # The same signed request again: a replay.
        st, body, _ = self.https("PUT", "/v1/kv/orders:2", h, b"shipped")
        self.assertEqual(st, 401, body)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "REPLAYED")
        nonce = re.search(r'nonce="([^"]+)"', h["Signature-Input"]).group(1)
        self.assertEqual(err["message"], "signed request refused: nonce '%s' was already used by this key within the "
                                         "signature's validity; sign every request with a fresh nonce" % nonce)
        # A changed body under the same signature: refused by its digest.
        h2 = self.signed(tok, "PUT", "/v1/kv/orders:2", b"shipped")
        st, body, _ = self.https("PUT", "/v1/kv/orders:2", h2, b"refunded")
        self.assertEqual(st, 401, body)
        self.assertEqual(json.loads(body)["error"]["message"],
                         "signed request refused: Content-Digest does not match the body: send sha-256=:<base64 of the "
                         "SHA-256 of the body as sent>:")
        # Signed with another key (bob's token's holder key) under alice's token.
        other = self.issue("orders", "bob")
        h3 = self.signed(other, "GET", "/v1/kv/orders:2")
        h3["Authorization"] = "Bearer " + tok.split("~")[0]
        st, body, _ = self.https("GET", "/v1/kv/orders:2", h3)
        self.assertEqual(st, 401, body)
        self.assertIn("the signature does not verify with the token's holder key", body)
        # A token without its proof and without a signature is refused.
        st, body, _ = self.https("GET", "/v1/kv/orders:2", {"Authorization": "Bearer " + tok.split("~")[0]})
        self.assertEqual(st, 401, body)
        self.assertIn("carries no proof key", body)
        # Still serving.
        st, body, _ = self.https("GET", "/v1/kv/orders:2", self.signed(tok, "GET", "/v1/kv/orders:2"))
        self.assertEqual(st, 200, body)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10).read().decode()
        self.assertEqual(re.search(r'^keel_signed_requests_total\{outcome="replay"\} (\S+)$', metrics, re.M).group(1),
                         "1")

    def test_a_signed_request_replayed_through_another_node_is_refused(self):
        """Three members, HTTPS on each: a signed request accepted by node 1 is refused as a replay
        by node 2 and node 3 (the nonce is recorded in the keyspace, not only in node 1's memory)."""
        from harness import wait_cluster_ok
        root = tempfile.mkdtemp(prefix="keel-tokens-cluster-")
        self.addCleanup(shutil.rmtree, root, True)
        peer_ports = [free_port() for _ in range(3)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(peer_ports))
        nodes, https_ports = [], []
        for i in range(3):
            https_ports.append(free_port())
            d = os.path.join(root, "n%d" % i)
            os.makedirs(d)
            k = Keel("--engine", "memory", "--shards", "1", "--node-id", str(i + 1), "--peer-port", str(peer_ports[i]),
                     "--peers", peers, "--set", "cluster.heartbeat_ms=50", "--set", "dht.replicas=2",
                     "--set", "tls.http_port=%d" % https_ports[i],
                     "--set", "tls.cert_file=" + self.path("node-1.crt"), "--set", "tls.key_file=" + self.path("node-1.key"),
                     "--set", "tls.ca_cert_file=" + self.path("ca.crt"), "--set", "tls.http_auth_clients=optional",
                     "--set", "auth.token_public_key_file=" + self.path("token.pub"), data_dir=d)
            self.addCleanup(k.cleanup)
            nodes.append(k)
        for k in nodes:
            k.start()
        for i, k in enumerate(nodes):
            wait_cluster_ok(lambda k=k: redis.Redis(port=k.port, socket_timeout=10), "node %d" % (i + 1), k.output)
        admin = redis.Redis(port=nodes[0].port, socket_timeout=10)
        admin.execute_command("ACL", "SETUSER", "orders", "on", ">orders-secret", "~orders:*", "&*", "+@read", "+@write")
        tok = self.issue("orders", "alice")
        h = self.signed(tok, "PUT", "/v1/kv/orders:9", b"once")
        self.https_port = https_ports[0]
        st, body, _ = self.https("PUT", "/v1/kv/orders:9", h, b"once")
        self.assertEqual(st, 200, body)
        for port in https_ports[1:]:
            self.https_port = port
            st, body, _ = self.https("PUT", "/v1/kv/orders:9", h, b"once")
            self.assertEqual(st, 401, body)
            err = json.loads(body)["error"]
            self.assertEqual(err["code"], "REPLAYED")
            self.assertIn("through another node", err["message"])
        # A fresh signature goes through any node.
        self.https_port = https_ports[2]
        st, body, _ = self.https("PUT", "/v1/kv/orders:9", self.signed(tok, "PUT", "/v1/kv/orders:9", b"twice"), b"twice")
        self.assertEqual(st, 200, body)

    def test_nonce_store_full_fails_closed(self):
        k, admin = self.start("--set", "auth.nonce_capacity=2")
        tok = self.issue("orders", "alice")
        for i in range(2):
            st, body, _ = self.https("GET", "/v1/kv/orders:1", self.signed(tok, "GET", "/v1/kv/orders:1"))
            self.assertEqual(st, 404, body)  # accepted (the key does not exist)
        st, body, hdrs = self.https("GET", "/v1/kv/orders:1", self.signed(tok, "GET", "/v1/kv/orders:1"))
        self.assertEqual(st, 503, body)
        self.assertEqual(json.loads(body)["error"],
                         {"code": "NONCE_STORE_FULL",
                          "message": "signed request refused: the node remembers 2 unexpired nonces "
                                     "(auth.nonce_capacity) and cannot rule out a replay; retry after older signatures "
                                     "expire, sign with shorter expiries, or raise auth.nonce_capacity"})
        self.assertEqual(hdrs.get("Retry-After"), "1")
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10).read().decode()
        self.assertEqual(
            re.search(r'^keel_signed_requests_total\{outcome="nonce_store_full"\} (\S+)$', metrics, re.M).group(1), "1")
        self.assertEqual(re.search(r"^keel_nonce_store_entries (\S+)$", metrics, re.M).group(1), "2")
        # Unsigned requests and the proof-carrying token are still served.
        st, body, _ = self.https("GET", "/v1/kv/orders:1", {"Authorization": "Bearer " + tok})
        self.assertEqual(st, 404, body)
        self.assertTrue(admin.ping())

    # ---- lockout ----

    def test_wrong_passwords_lock_out_then_unlock(self):
        k, admin = self.start("--set", "auth.lockout_threshold=3", "--set", "auth.lockout_base_ms=1500")
        def auth(pw):
            c = redis.Redis(port=k.port, socket_timeout=10)
            return c.execute_command("AUTH", "orders", pw)
        for i in range(3):
            with self.assertRaisesRegex(redis.exceptions.ResponseError, "^WRONGPASS invalid"):
                auth("wrong")
        with self.assertRaises(redis.exceptions.ResponseError) as e:
            auth("orders-secret")  # refused unchecked, even with the right password
        self.assertRegex(str(e.exception),
                         r"^LOCKED too many failed authentications for (user:orders|addr:127\.0\.0\.1): further "
                         r"attempts are refused unchecked for \d+ ms; wait, or an administrator can run ACL UNLOCK "
                         r"(user:orders|addr:127\.0\.0\.1)$")
        locks = {e[b"subject"].decode(): e for e in
                 (dict(zip(x[::2], x[1::2])) for x in admin.execute_command("ACL", "LOCKOUTS"))}
        self.assertEqual(set(locks), {"user:orders", "addr:127.0.0.1"})
        self.assertEqual(locks["user:orders"][b"failures"], 3)
        # HTTP Basic is locked too (same user, same address).
        req = urllib.request.Request("http://127.0.0.1:%d/v1/kv/orders:1" % k.http_port, headers={
            "Authorization": "Basic " + base64.b64encode(b"orders:orders-secret").decode()})
        with self.assertRaises(urllib.error.HTTPError) as he:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(he.exception.code, 429)
        self.assertEqual(json.loads(he.exception.read())["error"]["code"], "LOCKED")
        # Other users and clients that need no authentication are served meanwhile.
        self.assertTrue(admin.set("orders:1", "x"))
        # After the period the right password works again (and clears the count).
        wait_for("the lock to end", lambda: self._auth_ok(k.port, "orders-secret"))
        self.assertEqual(admin.execute_command("ACL", "LOCKOUTS"), [])
        # Locked again, then lifted by an administrator.
        for i in range(3):
            with self.assertRaisesRegex(redis.exceptions.ResponseError, "^WRONGPASS invalid"):
                auth("wrong")
        with self.assertRaises(redis.exceptions.ResponseError):
            auth("orders-secret")
        # The HTTP door shows and clears them too.
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/auth/lockouts" % k.http_port, timeout=10) as r:
            shown = json.loads(r.read())["lockouts"]
        self.assertEqual({e["subject"]: e["failures"] for e in shown}, {"user:orders": 3, "addr:127.0.0.1": 3})
        self.assertTrue(all(e["locked_for_ms"] > 0 for e in shown))
        req = urllib.request.Request("http://127.0.0.1:%d/v1/auth/lockouts/user:orders" % k.http_port, method="DELETE")
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(json.loads(r.read()), {"subject": "user:orders", "cleared": 1})
        self.assertEqual(admin.execute_command("ACL", "UNLOCK", "*"), 1)
        self.assertTrue(auth("orders-secret"))
        self.assertEqual(self.error(admin, "ACL", "UNLOCK", "orders"),
                         "'orders' is not a lockout subject; allowed: user:<name>, addr:<ip> (as ACL LOCKOUTS shows "
                         "them) or * for all")
        info = admin.info("stats")
        self.assertGreaterEqual(info["auth_lockout_refusals"], 2)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10).read().decode()
        self.assertGreaterEqual(float(re.search(r"^keel_auth_lockout_refusals_total (\S+)$", metrics, re.M).group(1)), 3)

    @staticmethod
    def _auth_ok(port, pw):
        try:
            return redis.Redis(port=port, socket_timeout=10).execute_command("AUTH", "orders", pw) is True
        except redis.exceptions.ResponseError:
            return False


if __name__ == "__main__":
    unittest.main()
