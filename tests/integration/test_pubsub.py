"""Pub/sub against keel nodes with two shards: Redis 7's replies byte for byte (RESP2
subscribed mode, RESP3 push frames), delivery to many subscribers on different shards, a
subscriber that stops reading cut off by the pubsub output-buffer limit while the others keep
receiving, PUBLISH fanned out over a three-node cluster, SPUBLISH kept to the slot's owners,
and the HTTP door (POST publishes, GET streams Server-Sent Events).

redis-py here (Debian's 4.3) has no RESP3: RESP3 is checked on raw sockets after HELLO 3."""
import os
import socket
import threading
import time
import unittest
import urllib.request

import redis

from harness import Keel, Raw, http
from test_dht import DhtCluster


def frame(*items):
    """A RESP2 array of bulk strings / integers (int) / nil (None), as bytes."""
    out = b"*%d\r\n" % len(items)
    for it in items:
        if it is None:
            out += b"$-1\r\n"
        elif isinstance(it, int):
            out += b":%d\r\n" % it
        else:
            it = it.encode() if isinstance(it, str) else it
            out += b"$%d\r\n%s\r\n" % (len(it), it)
    return out


def push(*items):
    """The same as a RESP3 push frame."""
    f = frame(*items)
    return b">" + f[1:].replace(b"$-1\r\n", b"_\r\n")


def wait_for(cond, what, limit=10):
    deadline = time.time() + limit
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Node(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "2").start()

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def client(self):
        return redis.Redis(port=self.keel.port, decode_responses=True)

    def test_resp2_subscribed_mode_byte_for_byte(self):
        s, p = Raw(self.keel.port), self.client()
        s.send(b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n")
        self.assertEqual(s.read_reply(), frame("subscribe", "a", 1))
        self.assertEqual(s.read_reply(), frame("subscribe", "b", 2))
        self.assertEqual(s.cmd("PSUBSCRIBE", "a*"), frame("psubscribe", "a*", 3))
        self.assertEqual(p.publish("a", "hello"), 2)  # the channel and the pattern
        got = {s.read_reply(), s.read_reply()}
        self.assertEqual(got, {frame("message", "a", "hello"), frame("pmessage", "a*", "a", "hello")})
        self.assertEqual(s.cmd("PING"), frame("pong", ""))
        self.assertEqual(s.cmd("PING", "x"), frame("pong", "x"))
        self.assertEqual(s.cmd("GET", "k"),
                         b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
                         b"RESET are allowed in this context\r\n")
        self.assertEqual(s.cmd("CONFIG", "GET", "x")[:31], b"-ERR Can't execute 'config|get'")
        self.assertEqual(s.cmd("PUBLISH", "a", "x")[:28], b"-ERR Can't execute 'publish'")
        # UNSUBSCRIBE with no arguments leaves every channel, counting down; patterns remain.
        s.send(b"*1\r\n$11\r\nUNSUBSCRIBE\r\n")
        self.assertEqual(s.read_reply(), frame("unsubscribe", "a", 2))
        self.assertEqual(s.read_reply(), frame("unsubscribe", "b", 1))
        self.assertEqual(s.cmd("UNSUBSCRIBE"), frame("unsubscribe", None, 1))
        self.assertEqual(s.cmd("PUNSUBSCRIBE", "nope"), frame("punsubscribe", "nope", 1))
        self.assertEqual(s.cmd("PUNSUBSCRIBE"), frame("punsubscribe", "a*", 0))
        # Out of subscribed mode: every command again, and PING answers +PONG.
        self.assertEqual(s.cmd("PING"), b"+PONG\r\n")
        self.assertEqual(s.cmd("GET", "k"), b"$-1\r\n")
        self.assertEqual(s.cmd("PUNSUBSCRIBE"), frame("punsubscribe", None, 0))
        self.assertEqual(p.publish("a", "nobody"), 0)
        s.close()

    def test_resp3_push_frames_and_normal_commands(self):
        s, p = Raw(self.keel.port), self.client()
        self.assertTrue(s.cmd("HELLO", "3").startswith(b"%7\r\n"))
        self.assertEqual(s.cmd("SUBSCRIBE", "r3"), push("subscribe", "r3", 1))
        self.assertEqual(s.cmd("SSUBSCRIBE", "s3"), push("ssubscribe", "s3", 1))
        # RESP3: no subscribed-mode limits.
        self.assertEqual(s.cmd("SET", "r3k", "v"), b"+OK\r\n")
        self.assertEqual(s.cmd("GET", "r3k"), b"$1\r\nv\r\n")
        self.assertEqual(s.cmd("PING"), b"+PONG\r\n")
        self.assertEqual(p.publish("r3", "m1"), 1)
        self.assertEqual(s.read_reply(), push("message", "r3", "m1"))
        self.assertEqual(p.execute_command("SPUBLISH", "s3", "m2"), 1)
        self.assertEqual(s.read_reply(), push("smessage", "s3", "m2"))
        self.assertEqual(s.cmd("SUNSUBSCRIBE"), push("sunsubscribe", "s3", 0))
        self.assertEqual(s.cmd("UNSUBSCRIBE", "r3"), push("unsubscribe", "r3", 0))
        self.assertEqual(s.cmd("UNSUBSCRIBE"), push("unsubscribe", None, 0))
        s.close()

    def test_reset_leaves_subscribed_mode(self):
        s, p = Raw(self.keel.port), self.client()
        s.cmd("SUBSCRIBE", "rs")
        s.cmd("PSUBSCRIBE", "rs*")
        self.assertEqual(s.cmd("RESET"), b"+RESET\r\n")
        self.assertEqual(s.cmd("GET", "k"), b"$-1\r\n")
        self.assertEqual(p.publish("rs", "x"), 0)
        self.assertEqual(p.pubsub_numpat(), 0)
        s.close()

    def test_redis_py_pubsub_flow(self):
        p = self.client()
        ps = p.pubsub()
        ps.subscribe("news.tech")
        ps.psubscribe("news.*")
        self.assertEqual(ps.get_message(timeout=2)["type"], "subscribe")
        self.assertEqual(ps.get_message(timeout=2)["type"], "psubscribe")
        self.assertEqual(p.publish("news.tech", "x"), 2)
        self.assertEqual(p.publish("news.sport", "y"), 1)
        msgs = [ps.get_message(timeout=2) for _ in range(3)]
        self.assertEqual(sorted((m["type"], m["channel"], m["data"]) for m in msgs),
                         [("message", "news.tech", "x"), ("pmessage", "news.sport", "y"),
                          ("pmessage", "news.tech", "x")])
        self.assertEqual(p.pubsub_channels("news*"), ["news.tech"])
        self.assertEqual(p.pubsub_channels("news.t*"), ["news.tech"])
        self.assertEqual(p.pubsub_channels("x*"), [])
        self.assertEqual(p.pubsub_numsub("news.tech", "none"), [("news.tech", 1), ("none", 0)])
        self.assertEqual(p.pubsub_numpat(), 1)
        ps.close()
        wait_for(lambda: p.pubsub_numpat() == 0, "the closed subscriber to be forgotten")
        self.assertEqual(p.pubsub_channels("news*"), [])

    def test_many_subscribers_on_both_shards(self):
        p = self.client()
        subs = []
        for _ in range(12):  # connections are spread over the shards round-robin
            ps = p.pubsub()
            ps.subscribe("fan")
            self.assertEqual(ps.get_message(timeout=2)["type"], "subscribe")
            subs.append(ps)
        pat = p.pubsub()
        pat.psubscribe("f?n")
        pat.get_message(timeout=2)
        self.assertEqual(p.pubsub_numsub("fan"), [("fan", 12)])
        for i in range(20):
            self.assertEqual(p.publish("fan", "m%d" % i), 13)
        for ps in subs + [pat]:
            got = [ps.get_message(timeout=2)["data"] for _ in range(20)]
            self.assertEqual(got, ["m%d" % i for i in range(20)])  # in publish order
        info = p.info("stats")
        self.assertGreaterEqual(info["pubsub_messages_delivered"], 260)
        self.assertEqual(info["pubsub_channels"], 1)
        self.assertEqual(info["pubsub_patterns"], 1)
        for ps in subs + [pat]:
            ps.close()
        # Closed connections leave nothing behind (the other tests count patterns).
        wait_for(lambda: p.pubsub_numpat() == 0 and p.pubsub_numsub("fan") == [("fan", 0)],
                 "the closed subscribers to be forgotten")

    def test_pubsub_introspection_errors_match_redis(self):
        k = Raw(self.keel.port)
        self.assertEqual(k.cmd("PUBSUB", "NOPE"), b"-ERR unknown subcommand 'NOPE'. Try PUBSUB HELP.\r\n")
        self.assertEqual(k.cmd("PUBSUB", "NUMPAT", "x"),
                         b"-ERR wrong number of arguments for 'pubsub|numpat' command\r\n")
        self.assertEqual(k.cmd("PUBSUB", "CHANNELS", "a", "b"),
                         b"-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.\r\n")
        self.assertEqual(k.cmd("PUBSUB", "NUMSUB"), b"*0\r\n")
        self.assertEqual(k.cmd("PUBLISH", "a"), b"-ERR wrong number of arguments for 'publish' command\r\n")
        self.assertEqual(k.cmd("SUBSCRIBE"), b"-ERR wrong number of arguments for 'subscribe' command\r\n")
        k.close()

    def test_http_publish_and_sse_subscribe(self):
        sse = socket.create_connection(("127.0.0.1", self.keel.http_port), timeout=10)
        sse.sendall(b"GET /v1/pubsub/web%2Fnews HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"event: subscribe\ndata: " not in buf or not buf.endswith(b"\n\n"):
            buf += sse.recv(65536)
        head, _, first = buf.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
        self.assertIn(b"Content-Type: text/event-stream", head)
        self.assertEqual(first, b'event: subscribe\ndata: {"channel":"web/news"}\n\n')
        p = self.client()
        s = p.pubsub()
        s.subscribe("web/news")
        s.get_message(timeout=2)
        # POST publishes the body; the reply counts this node's receivers (the SSE stream and
        # the RESP subscriber).
        st, body = http("POST", self.keel.http_port, "/v1/pubsub/web%2Fnews", "line1\nline2")
        self.assertEqual((st, body), (200, {"receivers": 2}))
        self.assertEqual(p.publish("web/news", b"\xff\x00"), 2)
        want = (b'event: message\ndata: {"channel":"web/news","message":"line1\\nline2"}\n\n'
                b'event: message\ndata: {"channel":"web/news","message_base64":"/wA="}\n\n')
        buf = b""
        while len(buf) < len(want):
            buf += sse.recv(65536)
        self.assertEqual(buf, want)
        self.assertEqual(s.get_message(timeout=2)["data"], "line1\nline2")
        self.assertEqual(p.pubsub_numsub("web/news"), [("web/news", 2)])
        sse.close()
        # The closed stream is noticed at the next write (a message or the keep-alive).
        p.publish("web/news", "x")
        wait_for(lambda: p.pubsub_numsub("web/news") == [("web/news", 1)], "the SSE stream to go", 20)
        s.close()
        # Errors are /v1's JSON errors.
        st, body = http("PUT", self.keel.http_port, "/v1/pubsub/a", "x")
        self.assertEqual(st, 405)
        self.assertEqual(body["error"]["code"], "METHOD_NOT_ALLOWED")
        st, body = http("POST", self.keel.http_port, "/v1/pubsub/", "x")
        self.assertEqual(st, 400)
        self.assertIn("must not be empty", body["error"]["message"])
        st, body = http("GET", self.keel.http_port, "/v1/pubsub/a?pattern=maybe")
        self.assertEqual(st, 400)
        self.assertIn("pattern must be true or false", body["error"]["message"])

    def test_sse_pattern_subscription(self):
        sse = socket.create_connection(("127.0.0.1", self.keel.http_port), timeout=10)
        sse.sendall(b"GET /v1/pubsub/ev.*?pattern=true HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b'data: {"pattern":"ev.*"}\n\n' not in buf:
            buf += sse.recv(65536)
        self.assertEqual(self.client().publish("ev.1", "m"), 1)
        want = b'event: message\ndata: {"channel":"ev.1","message":"m","pattern":"ev.*"}\n\n'
        buf = b""
        while len(buf) < len(want):
            buf += sse.recv(65536)
        self.assertEqual(buf, want)
        sse.close()


class SlowSubscriber(unittest.TestCase):
    """A subscriber that stops reading is cut off by the pubsub output-buffer limit; the node's
    memory does not follow it, and the others keep receiving every message."""

    def test_slow_subscriber_is_cut_off_and_others_keep_receiving(self):
        with Keel("--engine", "memory", "--shards", "2") as keel:
            admin = redis.Redis(port=keel.port, decode_responses=True)
            self.assertTrue(admin.config_set("client-output-buffer-limit", "pubsub 1mb 512kb 1"))
            self.assertEqual(admin.config_get("client-output-buffer-limit")["client-output-buffer-limit"],
                             "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 1")
            self.assertEqual(admin.config_get("limits.pubsub_output_hard")["limits.pubsub_output_hard"], "1048576")
            slow = socket.create_connection(("127.0.0.1", keel.port))
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nflow\r\n")
            # Subscribed before the first PUBLISH (else that one has one receiver fewer).
            confirm = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nflow\r\n:1\r\n"
            buf = b""
            while len(buf) < len(confirm):
                buf += slow.recv(len(confirm) - len(buf))
            self.assertEqual(buf, confirm)
            fast = admin.pubsub()
            fast.subscribe("flow")
            fast.get_message(timeout=2)
            got = []

            def read():
                while len(got) < 200:
                    m = fast.get_message(timeout=10)
                    if m is None:
                        return
                    got.append(m["data"])

            t = threading.Thread(target=read)
            t.start()
            payload = "x" * (64 * 1024)
            pub = redis.Redis(port=keel.port)
            receivers = [pub.publish("flow", payload + str(i)) for i in range(200)]  # 12.8 MB
            t.join(30)
            self.assertEqual(len(got), 200)
            self.assertEqual(got, [payload + str(i) for i in range(200)])
            self.assertEqual(receivers[0], 2)
            self.assertEqual(receivers[-1], 1)  # the slow one was gone by then
            stats = admin.info("stats")
            self.assertEqual(stats["client_output_buffer_limit_disconnections"], 1)
            self.assertIn("over the pubsub limit", keel.output())
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % keel.http_port, timeout=10) as r:
                text = r.read().decode()
            self.assertIn("keel_client_output_buffer_limit_disconnections_total 1", text)
            # The node closed the slow connection (what its kernel buffers still hold trickles
            # into a 4 KB window: not read here) and forgot its subscription.
            subscribers = [c for c in admin.client_list() if c["cmd"] == "subscribe"]
            self.assertEqual(len(subscribers), 1, subscribers)
            slow.close()
            self.assertEqual(admin.pubsub_numsub("flow"), [("flow", 1)])
            fast.close()

    def test_sse_stream_that_stops_reading_is_cut_off(self):
        with Keel("--engine", "memory", "--shards", "2", "--set", "limits.pubsub_output_hard=512kb") as keel:
            admin = redis.Redis(port=keel.port, decode_responses=True)
            sse = socket.socket()
            sse.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sse.connect(("127.0.0.1", keel.http_port))
            sse.sendall(b"GET /v1/pubsub/feed HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while b"event: subscribe" not in buf:
                buf += sse.recv(4096)
            payload = "y" * (32 * 1024)
            for i in range(200):  # 6.4 MB, never read
                admin.publish("feed", payload)
                if admin.pubsub_numsub("feed") == [("feed", 0)]:
                    break
            wait_for(lambda: admin.pubsub_numsub("feed") == [("feed", 0)], "the SSE stream to be cut off")
            self.assertEqual(admin.info("stats")["client_output_buffer_limit_disconnections"], 1)
            self.assertIn("closing SSE subscriber", keel.output())
            sse.close()

    def test_blocked_resp3_subscriber_cut_off_leaves_nothing_behind(self):
        # RESP3 allows BLPOP while subscribed; a cut-off ends the wait as a hangup would.
        with Keel("--engine", "memory", "--shards", "2", "--set", "limits.pubsub_output_hard=256kb") as keel:
            admin = redis.Redis(port=keel.port, decode_responses=True)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", keel.port))
            s.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nbx\r\n"
                      b"*3\r\n$5\r\nBLPOP\r\n$6\r\nnolist\r\n$1\r\n0\r\n")
            wait_for(lambda: any(c["cmd"] == "blpop" for c in admin.client_list()), "the client to block")
            payload = "z" * (32 * 1024)
            for _ in range(200):
                admin.publish("bx", payload)
            wait_for(lambda: not any(c["cmd"] == "blpop" for c in admin.client_list()),
                     "the blocked subscriber to be closed")
            self.assertEqual(admin.info("stats")["client_output_buffer_limit_disconnections"], 1)
            self.assertEqual(admin.pubsub_numsub("bx"), [("bx", 0)])
            admin.lpush("nolist", "v")  # nobody is blocked on it any more
            self.assertEqual(admin.lrange("nolist", 0, -1), ["v"])
            s.close()

    def test_bad_limits_are_refused(self):
        with Keel("--engine", "memory") as keel:
            r = redis.Redis(port=keel.port, decode_responses=True)
            for bad, why in [("pubsub 1mb 1mb", "Wrong number of arguments"),
                             ("nosuch 1 1 1", "Invalid client class"),
                             ("pubsub x 1 1", "Error in hard, soft or soft_seconds"),
                             ("pubsub 1 1 -1", "Error in hard, soft or soft_seconds")]:
                with self.assertRaises(redis.ResponseError) as e:
                    r.config_set("client-output-buffer-limit", bad)
                self.assertIn(why, str(e.exception))
            self.assertEqual(r.config_get("client-output-buffer-limit")["client-output-buffer-limit"],
                             "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60")


class Cluster(unittest.TestCase):
    """Three nodes, two copies of each partition: PUBLISH through any node reaches every
    node's subscribers; SPUBLISH reaches the slot's owners (primary and replica) only."""

    @classmethod
    def setUpClass(cls):
        cls.c = DhtCluster(n=3, replicas=2, quorum=1)
        try:
            cls.c.start()
        except Exception:
            cls.c.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def test_publish_reaches_subscribers_on_every_node(self):
        subs = []
        for i in range(3):
            ps = self.c.client(i).pubsub()
            ps.subscribe("everywhere")
            self.assertEqual(ps.get_message(timeout=5)["type"], "subscribe")
            subs.append(ps)
        pat = self.c.client(2).pubsub()
        pat.psubscribe("every*")
        pat.get_message(timeout=5)
        for i in range(3):
            # The reply counts the receivers on the node that took the PUBLISH (Redis Cluster's
            # rule): node 3 has two (a channel and a pattern subscriber), the others one.
            self.assertEqual(self.c.client(i).publish("everywhere", "from%d" % i), 2 if i == 2 else 1)
        for ps in subs + [pat]:
            got = [ps.get_message(timeout=5) for _ in range(3)]
            # Each exactly once; published through different nodes, they have no order
            # (docs/messaging.md: they travel on different links).
            self.assertEqual(sorted(m["data"] for m in got), [b"from0", b"from1", b"from2"])
        for ps in subs + [pat]:
            self.assertIsNone(ps.get_message(timeout=0.3))  # delivered once, not once per hop
            ps.close()

    def test_spublish_stays_with_the_slot_owners(self):
        owners, others = [], []
        for i in range(3):
            r = Raw(self.c.nodes[i].port)
            rep = r.cmd("SSUBSCRIBE", "orders")
            if rep.startswith(b"*3"):
                self.assertEqual(rep, frame("ssubscribe", "orders", 1))
                owners.append(r)
            else:
                # A node that holds no copy of the slot sends the client to its primary.
                self.assertTrue(rep.startswith(b"-MOVED 105 127.0.0.1:"), rep)
                others.append((i, r))
        self.assertEqual(len(owners), 2)
        self.assertEqual(len(others), 1)
        # A plain subscriber to a channel of the same name on the non-owner: not a shard channel.
        i, r = others[0]
        self.assertEqual(r.cmd("SUBSCRIBE", "orders"), frame("subscribe", "orders", 1))
        for n in range(3):  # through every node: forwarded to the slot's primary
            self.assertEqual(self.c.client(n).execute_command("SPUBLISH", "orders", "o%d" % n), 1)
            for o in owners:
                self.assertEqual(o.read_reply(), frame("smessage", "orders", "o%d" % n))
        self.assertFalse(r.closed(timeout=0.5))
        self.assertEqual(r.buf, b"")  # nothing reached the non-owner
        # Shard channels of two slots in one SSUBSCRIBE are refused, as in Redis Cluster.
        self.assertEqual(owners[0].cmd("SSUBSCRIBE", "a", "b"),
                         b"-CROSSSLOT Keys in request don't hash to the same slot\r\n")
        for o in owners:
            o.close()
        r.close()


class ClusterDeadPeer(unittest.TestCase):
    def test_publish_does_not_wait_for_a_dead_node(self):
        c = DhtCluster(n=3, replicas=2, quorum=1)
        try:
            c.start()
            ps = c.client(1).pubsub()
            ps.subscribe("x")
            self.assertEqual(ps.get_message(timeout=5)["type"], "subscribe")
            c.nodes[2].kill9()
            pub = c.client(0)
            t0 = time.time()
            for i in range(300):
                self.assertEqual(pub.publish("x", "m%d" % i), 0)  # no receiver on node 1 itself
            # The fan-out to the dead member is queued (bounded) or dropped, never waited for.
            self.assertLess(time.time() - t0, 5)
            got = [ps.get_message(timeout=5) for _ in range(300)]
            self.assertEqual([m["data"] for m in got], [b"m%d" % i for i in range(300)])
            ps.close()
        finally:
            c.cleanup()

if __name__ == "__main__":
    unittest.main()
