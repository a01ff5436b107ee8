"""The HTTP door for Streams (docs/http.md#streams, docs/messaging.md): append and read back,
paging with `next`, consumer groups (create, read, ack) over HTTP with the pending entries
checked over RESP, a blocking group read woken by an append from another request, clear 400s
for bad input, ACLs (a user without +xadd gets 403) and a 3-node cluster (append through one
node, read through another).
"""
import base64
import json
import threading
import time
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel
from test_dht import DhtCluster


def call(port, method, path, body=None, auth=None, timeout=70):
    """(status, decoded JSON) of one request; `body` may be a dict (sent as JSON) or raw bytes/str."""
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


class StreamsHttp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--shards", "2").start()
        cls.port = cls.keel.http_port

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def r(self):
        return redis.Redis(port=self.keel.port, socket_timeout=10, decode_responses=True)

    def test_append_and_read_back(self):
        st, body = call(self.port, "POST", "/v1/streams/orders", {"fields": {"sku": "a1", "qty": "2"}})
        self.assertEqual(st, 201, body)
        first = body["id"]
        st, body = call(self.port, "POST", "/v1/streams/orders", {"fields": {"sku": "b2"}, "id": "*"})
        self.assertEqual(st, 201, body)
        second = body["id"]
        st, body = call(self.port, "GET", "/v1/streams/orders")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["entries"], [{"id": first, "fields": {"sku": "a1", "qty": "2"}},
                                           {"id": second, "fields": {"sku": "b2"}}])
        # The same stream over RESP.
        self.assertEqual(self.r().xlen("orders"), 2)
        self.assertEqual(self.r().xrange("orders")[0], (first, {"sku": "a1", "qty": "2"}))
        # Explicit ids, maxlen, and a name with a slash.
        st, body = call(self.port, "POST", "/v1/streams/a%2Fb", {"fields": {"k": "v"}, "id": "5-1"})
        self.assertEqual((st, body), (201, {"id": "5-1"}))
        st, body = call(self.port, "POST", "/v1/streams/a%2Fb", {"fields": {"k": "w"}, "id": "6-*", "maxlen": 1})
        self.assertEqual((st, body), (201, {"id": "6-0"}))
        self.assertEqual(self.r().xlen("a/b"), 1)
        # An id not above the top one: 400 naming the reason.
        st, body = call(self.port, "POST", "/v1/streams/a%2Fb", {"fields": {"k": "v"}, "id": "1-1"})
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "INVALID_ARGUMENT")
        self.assertIn("equal or smaller", body["error"]["message"])

    def test_missing_stream_is_an_empty_list(self):
        st, body = call(self.port, "GET", "/v1/streams/nothing-here")
        self.assertEqual((st, body), (200, {"entries": [], "next": "0-0"}))

    def test_paging_with_next(self):
        ids = [call(self.port, "POST", "/v1/streams/pages", {"fields": {"n": str(i)}})[1]["id"] for i in range(25)]
        seen = []
        path = "/v1/streams/pages?count=10"
        for _ in range(10):
            st, body = call(self.port, "GET", path)
            self.assertEqual(st, 200, body)
            seen += [e["id"] for e in body["entries"]]
            self.assertEqual([e["fields"]["n"] for e in body["entries"]],
                             [str(ids.index(e["id"])) for e in body["entries"]])
            if len(body["entries"]) < 10:
                break
            path = "/v1/streams/pages?count=10&from=" + body["next"]
        self.assertEqual(seen, ids)
        # At the end, `next` stays where a reader should continue from.
        st, body = call(self.port, "GET", path)
        self.assertEqual(body["entries"][-1]["id"], ids[-1])
        st, again = call(self.port, "GET", "/v1/streams/pages?from=" + body["next"])
        self.assertEqual(again, {"entries": [], "next": body["next"]})
        # `from` is inclusive.
        st, body = call(self.port, "GET", "/v1/streams/pages?count=1&from=" + ids[3])
        self.assertEqual(body["entries"][0]["id"], ids[3])

    def test_group_create_read_ack(self):
        for i in range(3):
            call(self.port, "POST", "/v1/streams/jobs", {"fields": {"job": str(i)}})
        st, body = call(self.port, "POST", "/v1/streams/jobs/groups/workers", {"from": "0"})
        self.assertEqual(st, 201, body)
        st, body = call(self.port, "POST", "/v1/streams/jobs/groups/workers", {"from": "0"})
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "ALREADY_EXISTS")
        st, body = call(self.port, "GET", "/v1/streams/jobs/groups/workers?consumer=w1&count=2")
        self.assertEqual(st, 200, body)
        self.assertEqual([e["fields"]["job"] for e in body["entries"]], ["0", "1"])
        got = [e["id"] for e in body["entries"]]
        st, body = call(self.port, "GET", "/v1/streams/jobs/groups/workers?consumer=w2")
        self.assertEqual([e["fields"]["job"] for e in body["entries"]], ["2"])
        got.append(body["entries"][0]["id"])
        r = self.r()
        self.assertEqual(r.xpending("jobs", "workers")["pending"], 3)
        st, body = call(self.port, "POST", "/v1/streams/jobs/groups/workers/ack", {"ids": got[:2]})
        self.assertEqual((st, body), (200, {"acked": 2}))
        p = r.xpending("jobs", "workers")
        self.assertEqual(p["pending"], 1)
        self.assertEqual(p["min"], got[2])
        st, body = call(self.port, "POST", "/v1/streams/jobs/groups/workers/ack", {"ids": got})
        self.assertEqual((st, body), (200, {"acked": 1}))
        self.assertEqual(r.xpending("jobs", "workers")["pending"], 0)
        # Nothing new: an empty list at once (block_ms 0).
        st, body = call(self.port, "GET", "/v1/streams/jobs/groups/workers?consumer=w1")
        self.assertEqual((st, body), (200, {"entries": []}))

    def test_group_errors(self):
        st, body = call(self.port, "GET", "/v1/streams/nostream/groups/g?consumer=c")
        self.assertEqual(st, 404, body)
        self.assertEqual(body["error"]["code"], "NOT_FOUND")
        st, body = call(self.port, "POST", "/v1/streams/nostream/groups/g", {"from": "$"})
        self.assertEqual(st, 404, body)
        self.assertIn("mkstream", body["error"]["message"])
        st, body = call(self.port, "POST", "/v1/streams/nostream/groups/g", {"from": "$", "mkstream": True})
        self.assertEqual(st, 201, body)
        self.assertEqual(self.r().type("nostream"), "stream")
        st, body = call(self.port, "GET", "/v1/streams/nostream/groups/g")
        self.assertEqual(st, 400, body)
        self.assertIn("consumer", body["error"]["message"])
        st, body = call(self.port, "DELETE", "/v1/streams/nostream")
        self.assertEqual(st, 405, body)

    def test_blocking_group_read_wakes_on_append(self):
        call(self.port, "POST", "/v1/streams/live/groups/g", {"from": "$", "mkstream": True})
        result = {}

        def reader():
            result["r"] = call(self.port, "GET", "/v1/streams/live/groups/g?consumer=c&block_ms=30000")

        t = threading.Thread(target=reader)
        t.start()
        # The read has run once and found nothing (it made consumer c) and now waits.
        r = self.r()
        for _ in range(1000):
            if any(c["name"] == "c" for c in r.xinfo_consumers("live", "g")):
                break
            time.sleep(0.01)
        self.assertTrue(t.is_alive())
        # Another request appends; the waiting read answers with it (well before block_ms).
        st, body = call(self.port, "POST", "/v1/streams/live", {"fields": {"hello": "world"}})
        self.assertEqual(st, 201, body)
        t.join(60)
        self.assertFalse(t.is_alive())
        st, got = result["r"]
        self.assertEqual(st, 200, got)
        self.assertEqual(got["entries"], [{"id": body["id"], "fields": {"hello": "world"}}])
        # Meanwhile the event loop serves other requests: a bounded wait with nothing to read
        # runs alongside a plain read.
        result.clear()
        t = threading.Thread(target=reader)
        t.start()
        st, body = call(self.port, "GET", "/v1/streams/live")
        self.assertEqual(st, 200, body)
        call(self.port, "POST", "/v1/streams/live", {"fields": {"n": "2"}})
        t.join(60)
        self.assertEqual(result["r"][1]["entries"][0]["fields"], {"n": "2"})

    def test_bad_inputs(self):
        cases = [
            ("POST", "/v1/streams/bad", "not json", "JSON object"),
            ("POST", "/v1/streams/bad", {"fields": {"a": "x", "n": 3}}, "field 'n'"),
            ("POST", "/v1/streams/bad", {"fields": {"o": {"x": 1}}}, "field 'o'"),
            ("POST", "/v1/streams/bad", {"fields": {}}, "fields"),
            ("POST", "/v1/streams/bad", {"k": "v"}, "unknown member 'k'"),
            ("POST", "/v1/streams/bad", {"fields": {"a": "x"}, "id": "abc"}, "\"id\""),
            ("POST", "/v1/streams/bad", {"fields": {"a": "x"}, "maxlen": -1}, "maxlen"),
            ("GET", "/v1/streams/bad?count=10001", None, "count must be an integer from 1 to 10000"),
            ("GET", "/v1/streams/bad?count=0", None, "count"),
            ("GET", "/v1/streams/bad?from=xyz", None, "from"),
            ("GET", "/v1/streams/bad/groups/g?consumer=c&block_ms=60001", None, "block_ms"),
            ("GET", "/v1/streams/bad/groups/g?consumer=c&count=20000", None, "count"),
            ("POST", "/v1/streams/bad/groups/g", {"from": "yesterday"}, "from"),
            ("POST", "/v1/streams/bad/groups/g", {"mkstream": "yes"}, "mkstream"),
            ("POST", "/v1/streams/bad/groups/g/ack", {"ids": ["1-x"]}, "ids"),
            ("POST", "/v1/streams/bad/groups/g/ack", {"ids": []}, "ids"),
            ("POST", "/v1/streams/bad/groups/g/ack", "[", "JSON object"),
        ]
        for method, path, body, words in cases:
            with self.subTest(method=method, path=path, body=body):
                st, got = call(self.port, method, path, body)
                self.assertEqual(st, 400, got)
                self.assertEqual(got["error"]["code"], "INVALID_ARGUMENT")
                self.assertIn(words, got["error"]["message"])

    def test_wrong_type(self):
        self.r().set("plain", "x")
        st, body = call(self.port, "POST", "/v1/streams/plain", {"fields": {"a": "b"}})
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "WRONG_TYPE")

    def test_acl(self):
        a = self.r()
        a.acl_setuser("reader", enabled=True, passwords=["+pw"], commands=["+xrange", "+xreadgroup", "+xack"], keys=["*"])
        a.acl_setuser("writer", enabled=True, passwords=["+pw"], commands=["+xadd", "+xgroup|create"], keys=["s:*"])
        st, body = call(self.port, "POST", "/v1/streams/s:1", {"fields": {"a": "b"}}, auth=("reader", "pw"))
        self.assertEqual(st, 403, body)
        self.assertEqual(body["error"]["code"], "NOPERM")
        self.assertEqual(body["error"]["command"], "xadd")
        st, body = call(self.port, "POST", "/v1/streams/s:1", {"fields": {"a": "b"}}, auth=("writer", "pw"))
        self.assertEqual(st, 201, body)
        st, body = call(self.port, "POST", "/v1/streams/other", {"fields": {"a": "b"}}, auth=("writer", "pw"))
        self.assertEqual(st, 403, body)
        self.assertEqual((body["error"]["reason"], body["error"]["object"]), ("key", "other"))
        st, body = call(self.port, "GET", "/v1/streams/s:1", auth=("reader", "pw"))
        self.assertEqual(st, 200, body)
        st, body = call(self.port, "GET", "/v1/streams/s:1", auth=("writer", "pw"))
        self.assertEqual(st, 403, body)
        self.assertEqual(body["error"]["command"], "xrange")
        st, body = call(self.port, "POST", "/v1/streams/s:1/groups/g", {"from": "0"}, auth=("writer", "pw"))
        self.assertEqual(st, 201, body)
        st, body = call(self.port, "POST", "/v1/streams/s:1/groups/g", {"from": "0"}, auth=("reader", "pw"))
        self.assertEqual(st, 403, body)
        self.assertEqual(body["error"]["command"], "xgroup|create")
        st, body = call(self.port, "GET", "/v1/streams/s:1/groups/g?consumer=c", auth=("reader", "pw"))
        self.assertEqual(st, 200, body)
        st, body = call(self.port, "POST", "/v1/streams/s:1/groups/g/ack", {"ids": [body["entries"][0]["id"]]},
                        auth=("writer", "pw"))
        self.assertEqual(st, 403, body)
        self.assertEqual(body["error"]["command"], "xack")


class StreamsHttpCluster(unittest.TestCase):
    def test_append_on_one_node_read_on_another(self):
        c = DhtCluster(n=3, replicas=2, quorum=2)
        try:
            c.start()
            ports = [k.http_port for k in c.nodes]
            ids = []
            for i in range(20):
                st, body = call(ports[0], "POST", "/v1/streams/events:%d" % (i % 4), {"fields": {"i": str(i)}})
                self.assertEqual(st, 201, body)
                ids.append(body["id"])
            for s in range(4):
                st, body = call(ports[2], "GET", "/v1/streams/events:%d" % s)
                self.assertEqual(st, 200, body)
                self.assertEqual([e["fields"]["i"] for e in body["entries"]], [str(i) for i in range(s, 20, 4)])
            st, body = call(ports[1], "POST", "/v1/streams/events:0/groups/g", {"from": "0"})
            self.assertEqual(st, 201, body)
            st, body = call(ports[2], "GET", "/v1/streams/events:0/groups/g?consumer=c&count=2")
            self.assertEqual(st, 200, body)
            self.assertEqual(len(body["entries"]), 2)
            st, acked = call(ports[0], "POST", "/v1/streams/events:0/groups/g/ack", {"ids": [e["id"] for e in body["entries"]]})
            self.assertEqual((st, acked), (200, {"acked": 2}))
            # A read waiting on node 3 is answered by an append through node 1.
            st, body = call(ports[0], "POST", "/v1/streams/live/groups/g", {"mkstream": True})
            self.assertEqual(st, 201, body)
            result = {}
            t = threading.Thread(target=lambda: result.setdefault(
                "r", call(ports[2], "GET", "/v1/streams/live/groups/g?consumer=c3&block_ms=30000")))
            t.start()
            r = c.client(2)
            for _ in range(1000):
                if any(x.get("name", x.get(b"name")) in ("c3", b"c3") for x in r.xinfo_consumers("live", "g")):
                    break
                time.sleep(0.01)
            st, body = call(ports[0], "POST", "/v1/streams/live", {"fields": {"from": "node1"}})
            self.assertEqual(st, 201, body)
            t.join(60)
            self.assertFalse(t.is_alive())
            self.assertEqual(result["r"], (200, {"entries": [{"id": body["id"], "fields": {"from": "node1"}}]}))
        finally:
            c.cleanup()


if __name__ == "__main__":
    unittest.main()
