"""Transit keys and secrets (docs/security.md, "Transit keys", "Secrets") on a 3-node cluster: a key created through
one node encrypts on another and rotates on the third (the keys live in cluster metadata);
old ciphertexts decrypt until their version is retired; rewrap moves them to the latest
version; Ed25519 keys sign and verify; the key material never shows through /v1/meta; access
rules govern the TRANSIT.* commands; a key that does not allow deletion cannot be deleted; the
keys survive kill -9 of a node. Secrets written through one node are read through the others,
versioned, with compare-and-set; their values never show through /v1/meta.
"""
import base64
import json
import unittest
import urllib.error
import urllib.request

import redis

from harness import http, wait_for
from test_dht import SharedCluster


def b64(s):
    return base64.b64encode(s.encode()).decode()


class TransitTest(SharedCluster):
    @property
    def r(self):
        # Fresh clients: a node restarted by a test listens on a new port.
        return [self.c.client(i) for i in range(3)]

    def http(self, i, method, path, body=None):
        return http(method, self.c.nodes[i].http_port, path, json.dumps(body) if body is not None else None)

    def test_a_key_made_on_one_node_works_on_every_node_across_rotations(self):
        r1, r2, r3 = self.r
        info = r1.execute_command("TRANSIT.CREATE", "payments")
        self.assertIn(b"aes256-gcm", info)
        with self.assertRaises(redis.ResponseError) as e:
            r2.execute_command("TRANSIT.CREATE", "payments")
        self.assertIn("exists", str(e.exception))
        v1 = r2.execute_command("TRANSIT.ENCRYPT", "payments", "4111 1111", "CONTEXT", "tenant-7").decode()
        self.assertTrue(v1.startswith("keel:v1:"))
        st, body = self.http(2, "POST", "/v1/transit/keys/payments/rotate")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["latest_version"], 2)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.c.nodes[2].http_port, timeout=10)
        self.assertRegex(metrics.read().decode(), r'(?m)^keel_signals_total\{signal="security.transit_key_changed"\} [1-9]')
        # The rotation answered once decided; the other nodes see it a moment later.
        def encrypt_on_node_0():
            st, body = self.http(0, "POST", "/v1/transit/encrypt/payments", {"plaintext": b64("4111 1111"),
                                                                            "context": b64("tenant-7")})
            self.assertEqual(st, 200, body)
            return body["ciphertext"]
        wait_for("node 1 to encrypt with version 2", lambda: encrypt_on_node_0().startswith("keel:v2:"), 10)
        v2 = encrypt_on_node_0()
        self.assertTrue(v2.startswith("keel:v2:"), v2)
        for node in range(3):
            for ct in (v1, v2):
                st, body = self.http(node, "POST", "/v1/transit/decrypt/payments",
                                     {"ciphertext": ct, "context": b64("tenant-7")})
                self.assertEqual((st, base64.b64decode(body["plaintext"])), (200, b"4111 1111"))
        st, body = self.http(1, "POST", "/v1/transit/decrypt/payments", {"ciphertext": v1, "context": b64("tenant-8")})
        self.assertEqual(st, 400)
        self.assertIn("authentication failed", body["error"]["message"])
        rewrapped = r3.execute_command("TRANSIT.REWRAP", "payments", v1, "CONTEXT", "tenant-7").decode()
        self.assertTrue(rewrapped.startswith("keel:v2:"))
        self.assertEqual(r1.execute_command("TRANSIT.CONFIG", "payments", "MIN_DECRYPTION_VERSION", "2"), b"OK")
        with self.assertRaises(redis.ResponseError) as e:
            r1.execute_command("TRANSIT.DECRYPT", "payments", v1, "CONTEXT", "tenant-7")
        self.assertIn("below its min_decryption_version 2", str(e.exception))

        # The other nodes apply the change a moment later (their copy of the keys follows metadata).
        def refuses_v1():
            try:
                r3.execute_command("TRANSIT.DECRYPT", "payments", v1, "CONTEXT", "tenant-7")
                return False
            except redis.ResponseError as e:
                return "below its min_decryption_version 2" in str(e)
        wait_for("node 3 to apply min_decryption_version 2", refuses_v1, 10)
        self.assertEqual(r2.execute_command("TRANSIT.DECRYPT", "payments", rewrapped, "CONTEXT", "tenant-7"),
                         b"4111 1111")

    def test_a_key_or_secret_made_through_one_node_is_usable_through_another_at_once(self):
        r = self.r
        for i in range(20):
            a, b = r[i % 3], r[(i + 1) % 3]
            a.execute_command("TRANSIT.CREATE", "fresh-%d" % i)
            ct = b.execute_command("TRANSIT.ENCRYPT", "fresh-%d" % i, "x")  # no wait in between
            self.assertEqual(a.execute_command("TRANSIT.ROTATE", "fresh-%d" % i), 2)
            v2 = a.execute_command("TRANSIT.ENCRYPT", "fresh-%d" % i, "y")
            self.assertEqual(b.execute_command("TRANSIT.DECRYPT", "fresh-%d" % i, v2), b"y")
            self.assertEqual(b.execute_command("TRANSIT.DECRYPT", "fresh-%d" % i, ct), b"x")
            a.execute_command("SECRET.PUT", "fresh/%d" % i, "s%d" % i)
            self.assertEqual(b.execute_command("SECRET.GET", "fresh/%d" % i), b"s%d" % i)

    def test_signing_keys_sign_on_one_node_and_verify_on_another(self):
        r1, r2, r3 = self.r
        r1.execute_command("TRANSIT.CREATE", "releases", "TYPE", "ed25519")
        sig = r2.execute_command("TRANSIT.SIGN", "releases", "artifact sha256 abc").decode()
        self.assertEqual(r3.execute_command("TRANSIT.VERIFY", "releases", "artifact sha256 abc", sig), 1)
        self.assertEqual(r3.execute_command("TRANSIT.VERIFY", "releases", "artifact sha256 abd", sig), 0)
        st, body = self.http(0, "POST", "/v1/transit/verify/releases", {"input": b64("artifact sha256 abc"),
                                                                       "signature": sig})
        self.assertEqual((st, body), (200, {"valid": True}))
        st, body = self.http(0, "GET", "/v1/transit/keys/releases")
        self.assertEqual(st, 200)
        self.assertEqual(len(base64.b64decode(body["public_keys"]["1"])), 32)
        with self.assertRaises(redis.ResponseError) as e:
            r1.execute_command("TRANSIT.ENCRYPT", "releases", "x")
        self.assertIn("needs a key of type aes256-gcm", str(e.exception))

    def test_key_material_never_shows_through_the_metadata_api(self):
        self.r[0].execute_command("TRANSIT.CREATE", "hidden")
        st, body = self.http(1, "GET", "/v1/meta?domain=transit")
        self.assertEqual(st, 200)
        self.assertTrue(body["items"])
        for item in body["items"]:
            self.assertEqual(item["value"], "<redacted>")
        st, body = self.http(1, "PUT", "/v1/meta/keys/hidden?domain=transit", {"x": 1})
        self.assertEqual(st, 403, body)
        self.assertIn("TRANSIT.CREATE", body["error"]["message"])

    def test_deletion_needs_to_be_allowed_first(self):
        r1, r2, _ = self.r
        r1.execute_command("TRANSIT.CREATE", "temp")
        with self.assertRaises(redis.ResponseError) as e:
            r2.execute_command("TRANSIT.DELETE", "temp")
        self.assertIn("DELETION_ALLOWED yes", str(e.exception))
        r2.execute_command("TRANSIT.CONFIG", "temp", "DELETION_ALLOWED", "yes")
        self.assertEqual(r1.execute_command("TRANSIT.DELETE", "temp"), b"OK")
        # Lists are this node's copy of the keys: the deletion reaches it a moment later.
        wait_for("node 2 to see the deletion", lambda: b"temp" not in r2.execute_command("TRANSIT.LIST"), 10)
        wait_for("node 3 to see the deletion", lambda: self.http(2, "GET", "/v1/transit/keys/temp")[0] == 404, 10)

    def test_access_rules_govern_transit_commands(self):
        admin = self.r[0]
        admin.execute_command("TRANSIT.CREATE", "app-data")
        admin.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+transit.encrypt", "+transit.decrypt")
        admin.execute_command("ACL", "SETUSER", "nobody", "on", ">nobody-pw", "~*", "+@all", "-@transit")
        app = redis.Redis(port=self.c.nodes[1].port, username="app", password="app-pw", socket_timeout=10)
        ct = app.execute_command("TRANSIT.ENCRYPT", "app-data", "x")
        self.assertEqual(app.execute_command("TRANSIT.DECRYPT", "app-data", ct), b"x")
        with self.assertRaises(redis.ResponseError) as e:
            app.execute_command("TRANSIT.ROTATE", "app-data")
        self.assertIn("no permissions to run the 'transit.rotate' command", str(e.exception))
        nobody = redis.Redis(port=self.c.nodes[2].port, username="nobody", password="nobody-pw", socket_timeout=10)
        with self.assertRaises(redis.ResponseError) as e:
            nobody.execute_command("TRANSIT.ENCRYPT", "app-data", "x")
        self.assertIn("no permissions to run the 'transit.encrypt' command", str(e.exception))
        cats = admin.execute_command("ACL", "CAT")
        self.assertIn(b"transit", cats)
        # Transit key names and secret paths are checked against the user's key patterns (~).
        admin.execute_command("TRANSIT.CREATE", "team-a.data")
        admin.execute_command("SECRET.PUT", "team-a/db", "pw")
        admin.execute_command("SECRET.PUT", "team-b/db", "other")
        admin.execute_command("ACL", "SETUSER", "team-a", "on", ">a-pw", "~team-a*", "+@transit", "+@secret")
        a = redis.Redis(port=self.c.nodes[0].port, username="team-a", password="a-pw", socket_timeout=10)
        self.assertTrue(a.execute_command("TRANSIT.ENCRYPT", "team-a.data", "x").startswith(b"keel:v1:"))
        self.assertEqual(a.execute_command("SECRET.GET", "team-a/db"), b"pw")
        for cmd in (("TRANSIT.ENCRYPT", "app-data", "x"), ("SECRET.GET", "team-b/db")):
            with self.assertRaises(redis.ResponseError) as e:
                a.execute_command(*cmd)
            self.assertIn("no permissions to access one of the keys", str(e.exception))
        req = urllib.request.Request("http://127.0.0.1:%d/v1/secrets/team-b/db" % self.c.nodes[0].http_port,
                                     headers={"Authorization": "Basic " + base64.b64encode(b"team-a:a-pw").decode()})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 403)

    def test_secrets_are_versioned_and_read_from_any_node(self):
        r1, r2, r3 = self.r
        self.assertEqual(r1.execute_command("SECRET.PUT", "db/orders/password", "first"), 1)
        self.assertEqual(r2.execute_command("SECRET.PUT", "db/orders/password", "second", "CAS", "1"), 2)
        with self.assertRaises(redis.ResponseError) as e:
            r3.execute_command("SECRET.PUT", "db/orders/password", "lost update", "CAS", "1")
        self.assertIn("at version 2, not 1", str(e.exception))
        self.assertEqual(r3.execute_command("SECRET.GET", "db/orders/password"), b"second")
        self.assertEqual(r1.execute_command("SECRET.GET", "db/orders/password", "VERSION", "1"), b"first")
        self.assertIsNone(r1.execute_command("SECRET.GET", "db/orders/missing"))
        st, body = self.http(1, "PUT", "/v1/secrets/api/payments/token?cas=0", None)
        self.assertEqual(st, 200, body)
        st, body = self.http(2, "GET", "/v1/secrets/api/payments/token")
        self.assertEqual((st, body["version"], body["value"]), (200, 1, ""))
        st, body = self.http(0, "GET", "/v1/secrets?prefix=db/")
        self.assertEqual(body["paths"], ["db/orders/password"])
        st, body = self.http(0, "GET", "/v1/secrets/db/orders/password?versions")
        self.assertEqual([v["version"] for v in body["versions"]], [1, 2])
        # Sealed under the transit key keel.secrets; nothing readable through /v1/meta.
        self.assertIn(b"keel.secrets", r2.execute_command("TRANSIT.LIST"))
        st, body = self.http(1, "GET", "/v1/meta?domain=secrets")
        self.assertTrue(body["items"])
        self.assertTrue(all(i["value"] == "<redacted>" for i in body["items"]))
        self.assertEqual(r2.execute_command("SECRET.DELETE", "db/orders/password"), 1)
        self.assertIsNone(r2.execute_command("SECRET.GET", "db/orders/password"))
        wait_for("node 3 to see the deletion", lambda: r3.execute_command("SECRET.GET", "db/orders/password") is None, 10)
        with self.assertRaises(redis.ResponseError) as e:
            r1.execute_command("SECRET.PUT", "/leading", "x")
        self.assertIn("starts or ends with '/'", str(e.exception))

    def test_secret_versions_are_soft_deleted_undeleted_and_destroyed(self):
        r1, r2, r3 = self.r
        for v in ("one", "two", "three"):
            r1.execute_command("SECRET.PUT", "svc/rotating", v)
        # The latest version soft-deleted: reading it says so (not nil), older ones still read.
        # (A node reads its own copy of the secrets: a change made through another node reaches
        # it a moment later, so the checks right after a change go to the node that made it.)
        self.assertEqual(r2.execute_command("SECRET.DELETE", "svc/rotating", "VERSIONS", "3"), 1)
        with self.assertRaises(redis.ResponseError) as e:
            r2.execute_command("SECRET.GET", "svc/rotating")
        self.assertIn("version 3 of secret 'svc/rotating' is deleted; SECRET.UNDELETE svc/rotating VERSIONS 3 "
                      "restores it", str(e.exception))

        def refused(r, *args):
            try:
                r.execute_command(*args)
                return False
            except redis.ResponseError:
                return True
        wait_for("node 3 to see the deletion", lambda: refused(r3, "SECRET.GET", "svc/rotating"), 10)
        self.assertEqual(r3.execute_command("SECRET.GET", "svc/rotating", "VERSION", "2"), b"two")
        self.assertEqual(r1.execute_command("SECRET.UNDELETE", "svc/rotating", "VERSIONS", "3"), 1)
        self.assertEqual(r1.execute_command("SECRET.GET", "svc/rotating"), b"three")
        # Destroyed: the value is gone for good, the version stays listed.
        self.assertEqual(r3.execute_command("SECRET.DESTROY", "svc/rotating", "VERSIONS", "1", "2"), 2)
        with self.assertRaises(redis.ResponseError) as e:
            r3.execute_command("SECRET.GET", "svc/rotating", "VERSION", "1")
        self.assertIn("is destroyed", str(e.exception))
        with self.assertRaises(redis.ResponseError) as e:
            r3.execute_command("SECRET.UNDELETE", "svc/rotating", "VERSIONS", "1")
        self.assertIn("is destroyed: its value is gone and cannot be undeleted", str(e.exception))
        wait_for("node 2 to see the destruction", lambda: refused(r2, "SECRET.GET", "svc/rotating", "VERSION", "1"), 10)
        versions = r2.execute_command("SECRET.VERSIONS", "svc/rotating")
        self.assertEqual(len(versions), 3)
        with self.assertRaises(redis.ResponseError) as e:
            r1.execute_command("SECRET.DELETE", "svc/rotating", "VERSIONS", "7")
        self.assertIn("has no version 7 (kept: 1 to 3)", str(e.exception))
        with self.assertRaises(redis.ResponseError) as e:
            r1.execute_command("SECRET.DESTROY", "svc/rotating", "1")
        self.assertIn("wrong number of arguments", str(e.exception))
        # HTTP: DELETE ?versions=, POST ?undelete= / ?destroy=, and the states in ?versions.
        st, body = self.http(0, "DELETE", "/v1/secrets/svc/rotating?versions=3")
        self.assertEqual((st, body), (200, {"path": "svc/rotating", "changed": 1}))
        st, body = self.http(0, "GET", "/v1/secrets/svc/rotating")
        self.assertEqual(st, 404)
        self.assertIn("is deleted", body["error"]["message"])
        st, body = self.http(0, "POST", "/v1/secrets/svc/rotating?undelete=3")
        self.assertEqual((st, body["changed"]), (200, 1))
        st, body = self.http(0, "POST", "/v1/secrets/svc/rotating?destroy=3,x")
        self.assertEqual(st, 400)
        self.assertIn("expected version numbers separated by ','", body["error"]["message"])
        st, body = self.http(0, "GET", "/v1/secrets/svc/rotating?versions")
        states = {v["version"]: (v["deleted_ms"] > 0, v["destroyed"]) for v in body["versions"]}
        wait_for("node 1 to see the undeletion", lambda: r1.execute_command("SECRET.GET", "svc/rotating") == b"three", 10)
        self.assertEqual(states, {1: (False, True), 2: (False, True), 3: (False, False)})
        # A user allowed SECRET.GET only cannot change versions (RESP or HTTP).
        r1.execute_command("ACL", "SETUSER", "sec-reader", "on", ">pw", "~svc/*", "+secret.get", "+secret.versions")
        try:
            reader = redis.Redis(port=self.c.nodes[0].port, username="sec-reader", password="pw")
            self.assertEqual(reader.execute_command("SECRET.GET", "svc/rotating"), b"three")
            with self.assertRaises(redis.exceptions.NoPermissionError):
                reader.execute_command("SECRET.DESTROY", "svc/rotating", "VERSIONS", "3")
            req = urllib.request.Request("http://127.0.0.1:%d/v1/secrets/svc/rotating?destroy=3" % self.c.nodes[0].http_port,
                                         method="POST", headers={"Authorization": "Basic " + b64("sec-reader:pw")})
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            self.assertEqual(e.exception.code, 403)
        finally:
            r1.execute_command("ACL", "DELUSER", "sec-reader")
        self.assertEqual(r1.execute_command("SECRET.GET", "svc/rotating"), b"three")

    def test_keys_survive_kill_9_of_a_node(self):
        self.r[0].execute_command("TRANSIT.CREATE", "durable")
        ct = self.r[0].execute_command("TRANSIT.ENCRYPT", "durable", "kept").decode()
        node = self.c.nodes[2]
        node.kill9()
        node.start()
        self.c.wait_state_ok(2)
        r3 = self.c.client(2)
        self.assertEqual(r3.execute_command("TRANSIT.DECRYPT", "durable", ct), b"kept")


if __name__ == "__main__":
    unittest.main()
