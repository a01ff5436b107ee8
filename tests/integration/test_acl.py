"""Users and access rules (docs/security.md "Users and access rules") on real keel processes:
AUTH / HELLO AUTH / requirepass, NOPERM for commands, keys and channels, ACL LOG, bad input,
HTTP Basic (401 / 403 / 200), replies compared with redis-server, and a 3-node cluster where a
user made on one node authenticates on another and forwarded commands keep working.
"""
import base64
import json
import time
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel, Raw, RedisServer, reply_mismatches
from test_dht import DhtCluster


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def http_req(method, port, path, body=None, auth=None):
    """(status, headers, decoded JSON body) of one request, error statuses included."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, r.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


class AclNode(unittest.TestCase):
    """One node for the class; every test makes its own users."""

    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "2").start()

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def admin(self):
        return redis.Redis(port=self.keel.port, socket_timeout=10)

    def user(self, name, password, **kw):
        return redis.Redis(port=self.keel.port, username=name, password=password, socket_timeout=10, **kw)

    def test_auth_wrongpass_and_whoami(self):
        a = self.admin()
        self.assertTrue(a.acl_setuser("alice", enabled=True, passwords=["+s3cret"], commands=["+@all"], keys=["*"]))
        self.assertEqual(self.user("alice", "s3cret").acl_whoami(), "alice")
        with self.assertRaises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)) as e:
            self.user("alice", "wrong").ping()
        self.assertIn("WRONGPASS invalid username-password pair or user is disabled.", str(e.exception))
        r = Raw(self.keel.port)
        self.assertEqual(r.cmd("AUTH", "nobody", "x"),
                         b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        self.assertEqual(r.cmd("AUTH", "alice", "s3cret"), b"+OK\r\n")
        self.assertEqual(r.cmd("ACL", "WHOAMI"), b"$5\r\nalice\r\n")
        self.assertIn(b" user=alice", r.cmd("CLIENT", "INFO"))
        self.assertIn("alice", [c["user"] for c in a.client_list()])
        # HELLO 3 AUTH switches user and protocol at once.
        h = r.cmd("HELLO", "3", "AUTH", "alice", "s3cret")
        self.assertTrue(h.startswith(b"%7\r\n"), h)
        # A disabled user cannot authenticate; an existing connection keeps working (as Redis).
        a.acl_setuser("alice", enabled=False)
        with self.assertRaises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            self.user("alice", "s3cret").ping()
        self.assertEqual(r.cmd("PING"), b"+PONG\r\n")
        r.close()
        # Passwords are kept only as Argon2id hashes.
        info = a.acl_getuser("alice")
        self.assertEqual(len(info["passwords"]), 1)
        self.assertTrue(info["passwords"][0].startswith("$argon2id$"), info)
        self.assertNotIn("s3cret", " ".join(a.acl_list()))

    def test_noperm_for_command_key_and_channel(self):
        a = self.admin()
        a.acl_setuser("reader", enabled=True, passwords=["+pw"], commands=["+get", "+set", "+publish", "+subscribe",
                                                                              "+psubscribe", "+mget"],
                      keys=["app:*"], channels=["news.*"])
        u = Raw(self.keel.port)
        self.assertEqual(u.cmd("AUTH", "reader", "pw"), b"+OK\r\n")
        self.assertEqual(u.cmd("SET", "app:1", "v"), b"+OK\r\n")
        self.assertEqual(u.cmd("GET", "app:1"), b"$1\r\nv\r\n")
        self.assertEqual(u.cmd("DEL", "app:1"), b"-NOPERM this user has no permissions to run the 'del' command\r\n")
        self.assertEqual(u.cmd("GET", "other"),
                         b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n")
        self.assertEqual(u.cmd("MGET", "app:1", "other"),
                         b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n")
        self.assertEqual(u.cmd("PUBLISH", "news.sport", "m"), b":0\r\n")
        self.assertEqual(u.cmd("PUBLISH", "chat", "m"),
                         b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n")
        self.assertEqual(u.cmd("PSUBSCRIBE", "news.s*"),
                         b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n")
        self.assertEqual(u.cmd("CONFIG", "GET", "maxclients"),
                         b"-NOPERM this user has no permissions to run the 'config|get' command\r\n")
        # Inside MULTI a refused command aborts the transaction.
        self.assertEqual(u.cmd("MULTI"), b"-NOPERM this user has no permissions to run the 'multi' command\r\n")
        a.acl_setuser("reader", commands=["+@transaction"])
        self.assertEqual(u.cmd("MULTI"), b"+OK\r\n")
        self.assertTrue(u.cmd("GET", "other").startswith(b"-NOPERM"))
        self.assertTrue(u.cmd("EXEC").startswith(b"-EXECABORT"))
        entry = a.acl_log(1)[0]
        self.assertEqual((entry["reason"], entry["context"], entry["object"]), ("key", "multi", "other"))
        # A rule change applies to connections already authenticated.
        a.acl_setuser("reader", keys=["*"])
        self.assertEqual(u.cmd("GET", "other"), b"$-1\r\n")
        # Subscribing to an allowed channel works; the server still serves others.
        self.assertTrue(u.cmd("SUBSCRIBE", "news.x").startswith(b"*3\r\n"))
        self.assertTrue(a.ping())
        u.close()

    def test_dryrun_cat_getuser_and_users(self):
        a = self.admin()
        a.acl_setuser("dry", enabled=True, nopass=True, commands=["+@read", "+@cache", "-hgetall"], keys=["k*"])
        self.assertEqual(a.execute_command("ACL", "DRYRUN", "dry", "GET", "k1"), b"OK")
        self.assertEqual(a.execute_command("ACL", "DRYRUN", "dry", "GET", "x"),
                         b"This user has no permissions to access the 'x' key")
        self.assertEqual(a.execute_command("ACL", "DRYRUN", "dry", "SET", "k1", "v"),
                         b"This user has no permissions to run the 'set' command")
        self.assertEqual(a.execute_command("ACL", "DRYRUN", "dry", "HGETALL", "k1"),
                         b"This user has no permissions to run the 'hgetall' command")
        self.assertEqual(a.execute_command("ACL", "DRYRUN", "dry", "CACHE.GET", "c", "k1"), b"OK")
        cats = a.acl_cat()
        for c in ("read", "write", "keyspace", "string", "hash", "pubsub", "admin", "dangerous", "cache", "route"):
            self.assertIn(c, cats)
        self.assertIn("cache.get", a.acl_cat("cache"))
        self.assertIn("route.register", a.acl_cat("route"))
        self.assertIn("get", a.acl_cat("read"))
        self.assertIn("flushall", a.acl_cat("dangerous"))
        raw = Raw(self.keel.port)
        self.assertIn(b"$29\r\n-@all +@read +@cache -hgetall\r\n$4\r\nkeys\r\n$3\r\n~k*\r\n",
                      raw.cmd("ACL", "GETUSER", "dry"))
        raw.close()
        self.assertIn("dry", a.acl_users())
        self.assertIn("user dry on nopass ~k* resetchannels -@all +@read +@cache -hgetall", a.acl_list())
        self.assertIsNone(a.acl_getuser("nosuch"))
        self.assertEqual(a.acl_deluser("dry", "nosuch"), 1)
        self.assertNotIn("dry", a.acl_users())

    def test_acl_log_records_denials_and_failed_auth(self):
        a = self.admin()
        a.acl_log_reset()
        a.acl_setuser("logged", enabled=True, passwords=["+pw"], commands=["+get"], keys=["a*"])
        r = Raw(self.keel.port)
        r.cmd("AUTH", "logged", "bad")
        r.cmd("AUTH", "logged", "pw")
        r.cmd("SET", "a", "1")
        r.cmd("GET", "b")
        r.cmd("GET", "b")
        r.close()
        log = a.acl_log()
        self.assertEqual([(e["reason"], e["object"], e["username"]) for e in log],
                         [("key", "b", "logged"), ("command", "set", "logged"), ("auth", "auth", "logged")])
        self.assertEqual(log[0]["count"], 2)
        self.assertEqual(log[0]["context"], "toplevel")
        self.assertEqual(log[0]["client-info"]["user"], "logged")
        self.assertEqual(len(a.acl_log(1)), 1)
        stats = a.info("stats")
        for k in ("acl_access_denied_auth", "acl_access_denied_cmd", "acl_access_denied_key"):
            self.assertGreaterEqual(stats[k], 1, k)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.keel.http_port, timeout=10) as m:
            self.assertIn('keel_acl_denied_total{reason="key"}', m.read().decode())
        self.assertTrue(a.acl_log_reset())
        self.assertEqual(a.acl_log(), [])

    def test_bad_input_gets_clear_errors(self):
        a = self.admin()
        r = Raw(self.keel.port)
        e = r.cmd("ACL", "SETUSER", "x", "badrule")
        self.assertTrue(e.startswith(b"-ERR Error in ACL SETUSER modifier 'badrule': Syntax error (rules: on, off"), e)
        self.assertTrue(r.cmd("ACL", "SETUSER", "x", "+nosuch").startswith(
            b"-ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"))
        self.assertTrue(r.cmd("ACL", "SETUSER", "x", "#abc").startswith(
            b"-ERR Error in ACL SETUSER modifier '#abc': The password hash must be an Argon2id hash"))
        self.assertTrue(r.cmd("ACL", "SETUSER", "x", "%R~k").startswith(b"-ERR Error in ACL SETUSER modifier '%R~k'"))
        self.assertTrue(r.cmd("ACL", "SETUSER", "x", "allkeys", "~a").startswith(
            b"-ERR Error in ACL SETUSER modifier '~a': Adding a pattern after the * pattern"))
        self.assertTrue(r.cmd("ACL", "SETUSER", "a b", "on").startswith(b"-ERR a user name has printable characters"))
        self.assertIsNone(a.acl_getuser("x"))  # nothing of a refused SETUSER is kept
        self.assertEqual(r.cmd("ACL", "DELUSER", "default"), b"-ERR The 'default' user cannot be removed\r\n")
        self.assertEqual(r.cmd("ACL", "CAT", "nosuch"), b"-ERR Unknown category 'nosuch'\r\n")
        self.assertEqual(r.cmd("ACL", "DRYRUN", "nosuch", "GET", "k"), b"-ERR User 'nosuch' not found\r\n")
        self.assertEqual(r.cmd("ACL", "DRYRUN", "default", "NOSUCH"), b"-ERR Command 'NOSUCH' not found\r\n")
        self.assertTrue(r.cmd("ACL", "NOSUCH").startswith(b"-ERR unknown subcommand"))
        self.assertTrue(r.cmd("ACL", "LOG", "-1").startswith(b"-ERR"))
        self.assertTrue(r.cmd("ACL", "SAVE").startswith(b"-ERR keel keeps users in cluster metadata"))
        self.assertEqual(r.cmd("PING"), b"+PONG\r\n")
        r.close()

    def test_deleted_user_connections_are_closed(self):
        a = self.admin()
        a.acl_setuser("gone", enabled=True, nopass=True, commands=["+@all"])
        r = Raw(self.keel.port)
        self.assertEqual(r.cmd("AUTH", "gone", "x"), b"+OK\r\n")
        self.assertEqual(a.acl_deluser("gone"), 1)
        self.assertTrue(r.cmd("PING").startswith(b"-ERR this connection's user was removed"))
        self.assertTrue(r.closed())

    def test_subscribers_lose_revoked_channels(self):
        a = self.admin()
        a.acl_setuser("sub", enabled=True, nopass=True, commands=["+@pubsub"], channels=["news.*"])
        kept, cut, gone = Raw(self.keel.port), Raw(self.keel.port), Raw(self.keel.port)
        for r in (kept, cut, gone):
            self.assertEqual(r.cmd("AUTH", "sub", "x"), b"+OK\r\n")
        self.assertTrue(kept.cmd("SUBSCRIBE", "news.a").startswith(b"*3\r\n"))
        self.assertTrue(cut.cmd("SUBSCRIBE", "news.b").startswith(b"*3\r\n"))
        # Narrowing the channels closes the subscriber that has one no longer allowed.
        a.execute_command("ACL", "SETUSER", "sub", "resetchannels", "&news.a")
        self.assertTrue(cut.closed())
        self.assertEqual(a.publish("news.a", "still"), 1)
        self.assertEqual(kept.read_reply(), b"*3\r\n$7\r\nmessage\r\n$6\r\nnews.a\r\n$5\r\nstill\r\n")
        self.assertIn(("channel", "news.b", "sub"),
                      [(e["reason"], e["object"], e["username"]) for e in a.acl_log(5)])
        # Deleting the user closes its subscribers.
        self.assertTrue(gone.cmd("SUBSCRIBE", "news.a").startswith(b"*3\r\n"))
        self.assertEqual(a.acl_deluser("sub"), 1)
        self.assertTrue(kept.closed())
        self.assertTrue(gone.closed())

    def test_http_basic_401_403_200(self):
        a = self.admin()
        a.acl_setuser("web", enabled=True, passwords=["+pw"], commands=["+get", "+set", "+publish"],
                      keys=["web:*"], channels=["web.*"])
        port = self.keel.http_port
        st, _, body = http_req("PUT", port, "/v1/kv/web:1", "v", auth=basic("web", "pw"))
        self.assertEqual(st, 200, body)
        st, _, body = http_req("GET", port, "/v1/kv/web:1", auth=basic("web", "pw"))
        self.assertEqual((st, body["value"]), (200, "v"))
        st, hdr, body = http_req("GET", port, "/v1/kv/web:1", auth=basic("web", "nope"))
        self.assertEqual(st, 401)
        self.assertIn("Basic", hdr["WWW-Authenticate"])
        self.assertEqual(body["error"]["code"], "UNAUTHENTICATED")
        st, _, body = http_req("GET", port, "/v1/kv/other", auth=basic("web", "pw"))
        self.assertEqual(st, 403)
        self.assertEqual((body["error"]["code"], body["error"]["command"], body["error"]["reason"]),
                         ("NOPERM", "get", "key"))
        st, _, body = http_req("DELETE", port, "/v1/kv/web:1", auth=basic("web", "pw"))
        self.assertEqual((st, body["error"]["command"]), (403, "del"))
        self.assertIn("no permissions to run the 'del' command", body["error"]["message"])
        st, _, body = http_req("POST", port, "/v1/pubsub/chat", "m", auth=basic("web", "pw"))
        self.assertEqual((st, body["error"]["reason"]), (403, "channel"))
        st, _, body = http_req("POST", port, "/v1/pubsub/web.x", "m", auth=basic("web", "pw"))
        self.assertEqual(st, 200, body)
        # Subscribing (Server-Sent Events) is checked before the stream starts.
        st, _, body = http_req("GET", port, "/v1/pubsub/chat", auth=basic("web", "pw"))
        self.assertEqual((st, body["error"]["command"]), (403, "subscribe"))
        st, _, body = http_req("GET", port, "/v1/pubsub/web.*?pattern=true", auth=basic("web", "pw"))
        self.assertEqual((st, body["error"]["command"]), (403, "psubscribe"))
        st, _, body = http_req("GET", port, "/v1/meta", auth=basic("web", "pw"))
        self.assertEqual((st, body["error"]["command"]), (403, "cluster|meta"))
        st, _, body = http_req("GET", port, "/v1/kv/web:1", auth="Bearer abc")
        self.assertEqual(st, 401)
        # The default user is open here: no header needed.
        st, _, _ = http_req("GET", port, "/v1/kv/web:1")
        self.assertEqual(st, 200)
        log = a.acl_log(20)
        self.assertIn(("key", "other", "web"), [(e["reason"], e["object"], e["username"]) for e in log])


    def test_meta_never_shows_password_hashes(self):
        """/v1/meta list, get and watch redact the users' Argon2id hashes for every caller, the
        administrator included, and refuse writes to the security domain."""
        a = self.admin()
        a.acl_setuser("metaadmin", enabled=True, passwords=["+adm1n-pw"], commands=["+@all"], keys=["*"],
                      channels=["*"])
        a.acl_setuser("hashed", enabled=True, passwords=["+hashed-pw"], commands=["+get"], keys=["h:*"])
        stored = a.acl_getuser("hashed")["passwords"][0]
        self.assertTrue(stored.startswith("$argon2id$"), stored)
        port = self.keel.http_port

        def no_hash(text):
            self.assertNotIn("argon2", text)
            self.assertNotIn(stored, text)
            self.assertNotIn(stored.split("$")[-1], text)  # not even the digest alone

        for auth in (None, basic("metaadmin", "adm1n-pw")):
            st, _, body = http_req("GET", port, "/v1/meta?domain=acl", auth=auth)
            self.assertEqual(st, 200, body)
            no_hash(json.dumps(body))
            users = {i["key"]: i for i in body["items"]}
            self.assertIn("users/hashed", users)
            self.assertTrue(users["users/hashed"]["redacted"])
            self.assertIn("#<redacted>", users["users/hashed"]["value"])
            self.assertIn("~h:*", users["users/hashed"]["value"])  # the rules stay readable
            st, _, body = http_req("GET", port, "/v1/meta?domain=acl&prefix=users/h", auth=auth)
            self.assertEqual(st, 200, body)
            no_hash(json.dumps(body))
            st, _, body = http_req("GET", port, "/v1/meta/users%2Fhashed?domain=acl", auth=auth)
            self.assertEqual(st, 200, body)
            no_hash(json.dumps(body))
            self.assertEqual(body["value"].split()[:2], ["on", "#<redacted>"])
            st, _, body = http_req("GET", port, "/v1/meta/users%2Fhashed?domain=acl&stale=true", auth=auth)
            no_hash(json.dumps(body))
            st, _, body = http_req("GET", port, "/v1/meta/watch?domain=acl&from_revision=1&timeout_ms=0", auth=auth)
            self.assertEqual(st, 200, body)
            self.assertTrue(body["events"], body)
            no_hash(json.dumps(body))
        # Writes to the security domain through /v1/meta are refused, with what to use instead.
        for method, body_text in (("PUT", "on nopass ~* +@all"), ("DELETE", None)):
            st, _, body = http_req(method, port, "/v1/meta/users%2Fhashed?domain=acl", body_text)
            self.assertEqual((st, body["error"]["code"]), (403, "FORBIDDEN"), body)
            self.assertIn("ACL SETUSER", body["error"]["message"])
        self.assertEqual(self.user("hashed", "hashed-pw").get("h:1"), None)  # unchanged
        # Other domains are shown as stored.
        st, _, body = http_req("PUT", port, "/v1/meta/plain", "#not-a-hash")
        self.assertEqual(st, 200, body)
        st, _, body = http_req("GET", port, "/v1/meta/plain")
        self.assertEqual((body["value"], "redacted" in body), ("#not-a-hash", False))


class AuditLog(unittest.TestCase):
    """Security events as JSON lines of the `audit` component, with stable event names, and no
    password or hash anywhere in the log."""

    def test_security_events_are_audited_without_secrets(self):
        k = Keel("--engine", "memory", "--set", "log.format=json", "--set", "auth.lockout_threshold=2",
                 "--set", "auth.lockout_base_ms=60000").start()
        self.addCleanup(k.cleanup)
        a = redis.Redis(port=k.port, socket_timeout=10)
        a.execute_command("ACL", "SETUSER", "auditee", "on", ">Sup3r-Secret-pw", "~a:*", "+get")
        stored = a.acl_getuser("auditee")["passwords"][0]
        self.assertEqual(redis.Redis(port=k.port, username="auditee", password="Sup3r-Secret-pw").get("a:1"), None)
        for _ in range(2):
            with self.assertRaises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
                redis.Redis(port=k.port, username="auditee", password="Wr0ng-Guess-pw").ping()
        with self.assertRaises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)) as e:
            redis.Redis(port=k.port, username="auditee", password="Sup3r-Secret-pw").ping()
        self.assertIn("LOCKED", str(e.exception))
        self.assertEqual(a.execute_command("ACL", "UNLOCK", "*"), 2)
        a.set("a:1", "v")
        st, _, body = http_req("GET", k.http_port, "/v1/kv/a:1", auth=basic("auditee", "Wr0ng-Guess-pw"))
        self.assertEqual(st, 401, body)
        st, _, body = http_req("GET", k.http_port, "/v1/kv/a:1", auth=basic("auditee", "Sup3r-Secret-pw"))
        self.assertEqual(st, 200, body)
        rid = "0123456789abcdef0123456789abcdef"
        self.assertEqual(a.execute_command("ACL", "REVOKE", rid, "1900000000"), rid.encode())
        self.assertEqual(a.execute_command("ACL", "DELUSER", "auditee"), 1)

        def events():
            out = []
            for line in k.output().splitlines():
                if line.startswith("{"):
                    j = json.loads(line)
                    if j["component"] == "audit":
                        out.append(j)
            return out

        want = ["acl.setuser", "auth.success", "auth.failure", "auth.lockout", "auth.locked", "auth.unlock",
                "token.revoke", "acl.deluser"]
        deadline = time.time() + 10
        while time.time() < deadline and not set(want) <= {e.get("event") for e in events()}:
            time.sleep(0.05)
        got = events()
        by = {}
        for e in got:
            by.setdefault(e["event"], []).append(e["fields"])
        self.assertTrue(set(want) <= set(by), sorted(by))
        self.assertIn({"user": "auditee", "rules": "on ><redacted> ~a:* +get", "by": "default", "door": "resp",
                       "addr": "127.0.0.1"}, by["acl.setuser"])
        self.assertIn({"door": "resp", "method": "password", "user": "auditee", "addr": "127.0.0.1"}, by["auth.success"])
        self.assertIn({"door": "http", "method": "password", "user": "auditee", "addr": "127.0.0.1"}, by["auth.success"])
        self.assertIn({"door": "resp", "method": "password", "user": "auditee", "addr": "127.0.0.1",
                       "reason": "wrong password, or no such user, or the user is off"}, by["auth.failure"])
        self.assertIn("http", [f["door"] for f in by["auth.failure"]])
        self.assertEqual(sorted(f["subject"] for f in by["auth.lockout"]), ["addr:127.0.0.1", "user:auditee"])
        self.assertIn({"door": "resp", "user": "auditee", "addr": "127.0.0.1", "subject": "user:auditee"},
                      by["auth.locked"])
        self.assertIn({"subject": "*", "cleared": "2", "by": "default", "door": "resp", "addr": "127.0.0.1"},
                      by["auth.unlock"])
        self.assertIn({"id": rid, "user": "", "expires_s": "1900000000", "by": "default", "door": "resp",
                       "addr": "127.0.0.1"}, by["token.revoke"])
        self.assertIn({"users": "auditee", "deleted": "1", "by": "default", "door": "resp", "addr": "127.0.0.1"},
                      by["acl.deluser"])
        levels = {e["event"]: e["level"] for e in got}
        self.assertEqual((levels["auth.failure"], levels["auth.success"]), ("warning", "info"))
        # No secret anywhere in the log: passwords (right or wrong), the hash, the hash's digest.
        log = k.output()
        for secret in ("Sup3r-Secret-pw", "Wr0ng-Guess-pw", stored, stored.split("$")[-1]):
            self.assertNotIn(secret, log)


class RequirePass(unittest.TestCase):
    """requirepass from the configuration, then CONFIG SET requirepass, as Redis."""

    def test_requirepass_noauth_and_config_set(self):
        with Keel("--engine", "memory", "--requirepass", "first") as k:
            r = Raw(k.port)
            self.assertEqual(r.cmd("GET", "x"), b"-NOAUTH Authentication required.\r\n")
            self.assertEqual(r.cmd("AUTH", "wrong"),
                             b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            self.assertTrue(r.cmd("HELLO", "3").startswith(b"-NOAUTH HELLO must be called"))
            self.assertEqual(r.cmd("AUTH", "first"), b"+OK\r\n")
            self.assertEqual(r.cmd("CONFIG", "GET", "requirepass"), b"*2\r\n$11\r\nrequirepass\r\n$0\r\n\r\n")
            self.assertEqual(r.cmd("CONFIG", "SET", "requirepass", "second"), b"+OK\r\n")
            n = Raw(k.port)
            self.assertEqual(n.cmd("PING"), b"-NOAUTH Authentication required.\r\n")
            self.assertTrue(n.cmd("HELLO", "3", "AUTH", "default", "second").startswith(b"%7\r\n"))
            self.assertEqual(n.cmd("AUTH", "default", "first"),
                             b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            st, hdr, body = http_req("GET", k.http_port, "/v1/kv/x")
            self.assertEqual(st, 401)
            self.assertEqual(hdr["WWW-Authenticate"], 'Basic realm="keel", charset="UTF-8"')
            self.assertIn("NOAUTH", body["error"]["message"])
            st, _, _ = http_req("GET", k.http_port, "/v1/kv/x", auth=basic("default", "second"))
            self.assertEqual(st, 404)
            # Health and metrics stay open.
            self.assertEqual(http_req("GET", k.http_port, "/health/live")[0], 200)
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as m:
                self.assertEqual(m.status, 200)
            # Back to no password: nopass.
            self.assertEqual(r.cmd("CONFIG", "SET", "requirepass", ""), b"+OK\r\n")
            self.assertEqual(Raw(k.port).cmd("PING"), b"+PONG\r\n")
            r.close()
            n.close()


class Restart(unittest.TestCase):
    def test_users_and_the_default_password_survive_a_restart(self):
        k = Keel("--engine", "memory")
        try:
            k.start()
            a = redis.Redis(port=k.port, socket_timeout=10)
            self.assertTrue(a.acl_setuser("kept", enabled=True, passwords=["+pw"], commands=["+get"], keys=["*"]))
            self.assertTrue(a.config_set("requirepass", "adminpw"))
            k.stop()
            k.start()
            r = Raw(k.port)
            # The stored users hold from the first connection on.
            self.assertEqual(r.cmd("PING"), b"-NOAUTH Authentication required.\r\n")
            self.assertEqual(r.cmd("AUTH", "kept", "pw"), b"+OK\r\n")
            self.assertEqual(r.cmd("SET", "a", "1"), b"-NOPERM this user has no permissions to run the 'set' command\r\n")
            self.assertEqual(r.cmd("AUTH", "adminpw"), b"+OK\r\n")
            self.assertEqual(r.cmd("SET", "a", "1"), b"+OK\r\n")
            r.close()
        finally:
            k.cleanup()


class AclParity(unittest.TestCase):
    """The same commands against redis-server and keel, replies compared byte for byte."""

    # (Redis 7.0 rebuilds "+get +set" from its command bitmap, in its own command order; keel
    # keeps the rules in the order given, so only single-command rules are compared here.)
    CASES = [
        ["ACL", "SETUSER", "p1", "on", "nopass", "+get", "~k*", "&ch*"],
        ["ACL", "LIST"],
        ["ACL", "USERS"],
        ["ACL", "WHOAMI"],
        ["ACL", "SETUSER", "p2", "on", "nopass", "+@all", "-get", "~*"],
        ["ACL", "GETUSER", "p2"],
        ["ACL", "GETUSER", "nosuch"],
        ["ACL", "SETUSER", "p3", "on", "nopass", "+@hash", "-hdel", "~h*"],
        ["ACL", "GETUSER", "p3"],
        ["ACL", "SETUSER", "p4", "+config|get", "allkeys", "allchannels"],
        ["ACL", "LIST"],
        ["ACL", "SETUSER", "p4", "allkeys", "~x"],
        ["ACL", "SETUSER", "p4", "allchannels", "&x"],
        ["ACL", "SETUSER", "p4", "<nosuchpassword"],
        ["ACL", "DELUSER", "p4", "nosuch"],
        ["ACL", "DRYRUN", "p1", "SET", "k1", "v"],
        ["ACL", "DRYRUN", "p1", "GET", "k1"],
        ["ACL", "DRYRUN", "p1", "GET", "zz"],
        ["ACL", "DRYRUN", "p3", "HDEL", "h", "f"],
        ["AUTH", "p1", "x"],
        ["ACL", "WHOAMI"],
        ["SET", "k1", "v"],
        ["GET", "k1"],
        ["GET", "zz"],
        ["DEL", "k1"],
        ["PUBLISH", "ch1", "m"],
        ["AUTH", "nosuch", "x"],
        ["AUTH", "p2", "x"],
        ["GET", "k1"],
        ["SET", "k1", "w"],
        ["GET", "k1"],
        ["AUTH", "default", "x"],
        ["ACL", "DELUSER", "p1", "p2", "p3"],
        ["ACL", "DELUSER", "default"],
        ["ACL", "USERS"],
    ]

    def test_same_replies_as_redis(self):
        with RedisServer() as redis_srv, Keel("--engine", "memory", "--shards", "2") as keel:
            r, k = Raw(redis_srv.port), Raw(keel.port)
            mismatches = reply_mismatches(r, k, self.CASES)
            r.close()
            k.close()
            self.assertEqual(mismatches, [], "\n" + "\n".join(mismatches))


class AclCluster(unittest.TestCase):
    """Three nodes: users live in cluster metadata, so one change applies everywhere."""

    @classmethod
    def setUpClass(cls):
        cls.c = DhtCluster().start()

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def wait_for(self, cond, what, limit=10):
        deadline = time.time() + limit
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def test_setuser_on_one_node_authenticates_on_another(self):
        a, b, c = (self.c.client(i) for i in range(3))
        self.assertTrue(a.acl_setuser("carol", enabled=True, passwords=["+pw"], commands=["+get", "+set"],
                                      keys=["c:*"]))
        # Node C follows the change through its metadata subscription.
        self.wait_for(lambda: "carol" in c.acl_users(), "carol on node 3")
        u = redis.Redis(port=self.c.nodes[2].port, username="carol", password="pw", socket_timeout=10)
        with self.assertRaises(redis.exceptions.NoPermissionError):
            u.acl_whoami()  # not among carol's commands
        # Keys whose primary is another node: the entry node checks, then forwards.
        for i in range(50):
            self.assertTrue(u.set("c:%d" % i, str(i)))
        self.assertEqual([u.get("c:%d" % i) for i in range(50)], [str(i).encode() for i in range(50)])
        with self.assertRaises(redis.exceptions.NoPermissionError):
            u.get("other")
        with self.assertRaises(redis.exceptions.NoPermissionError):
            u.delete("c:1")
        # A rule changed on node B reaches the connection on node C.
        b.acl_setuser("carol", commands=["+del"])
        self.wait_for(lambda: "+del" in c.acl_getuser("carol")["commands"], "the new rule on node 3")
        self.assertEqual(u.delete("c:1"), 1)
        # CONFIG SET requirepass on one node is the default user's password on every node.
        self.assertTrue(a.config_set("requirepass", "clusterpw"))
        self.wait_for(lambda: Raw(self.c.nodes[2].port).cmd("PING").startswith(b"-NOAUTH"), "requirepass on node 3")
        admin_c = redis.Redis(port=self.c.nodes[2].port, password="clusterpw", socket_timeout=10)
        self.assertTrue(admin_c.ping())
        self.assertTrue(admin_c.config_set("requirepass", ""))
        self.assertEqual(admin_c.acl_deluser("carol"), 1)
        self.wait_for(lambda: "carol" not in a.acl_users(), "carol removed on node 1")

    def test_revocation_on_one_node_is_known_on_every_node(self):
        a, b, c = (self.c.client(i) for i in range(3))
        rid = "fedcba9876543210fedcba9876543210"
        self.assertEqual(b.execute_command("ACL", "REVOKE", rid, "1900000000"), rid.encode())

        def ids(client):
            return [dict(zip(e[::2], e[1::2]))[b"id"] for e in client.execute_command("ACL", "REVOCATIONS")]
        self.wait_for(lambda: rid.encode() in ids(a) and rid.encode() in ids(c), "the revocation on nodes 1 and 3")
        st, _, body = http_req("GET", self.c.nodes[2].http_port, "/v1/auth/revocations")
        self.assertEqual(st, 200, body)
        self.assertIn({"id": rid, "expires_s": 1900000000, "user": "", "revoked_at_s": body["revocations"][0]["revoked_at_s"]},
                      body["revocations"])
        # The revocation is visible in /v1/meta too (nothing secret in it), on any node.
        st, _, body = http_req("GET", self.c.nodes[0].http_port, "/v1/meta/revoked%2F" + rid + "?domain=acl")
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body["value"])["expires_s"], 1900000000)


if __name__ == "__main__":
    unittest.main()
