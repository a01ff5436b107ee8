"""The admin page (/ui/) in a real browser: headless Chromium loads it from a 3-node cluster,
and the DOM it renders lists the members with the partition counts /v1/cluster/status gives,
the named caches, the slow log with links to the traces of slow requests, a slow request's spans
as a tree, and a member's death. Screenshots are saved (the path is printed)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from html.parser import HTMLParser

from harness import Raw, http
from test_dht import DhtCluster
from test_tracing import Collector

CHROMIUM = shutil.which("chromium")


class Rows(HTMLParser):
    """The text of every table row, by table id: {"members": [["1 (this node)", ...], ...]}."""

    def __init__(self):
        super().__init__()
        self.tables, self.table, self.row, self.cell, self.attrs = {}, None, None, None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.attrs = a
        if tag == "table":
            self.table = a.get("id")
            self.tables[self.table] = []
        elif tag == "tr" and self.table:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.table].append(self.row)
            self.row = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


@unittest.skipUnless(CHROMIUM, "chromium is not installed (scripts/deps.sh installs it)")
class AdminPageTest(unittest.TestCase):
    def browse(self, port, shot, fragment="", height=1000):
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--user-data-dir=" + os.path.join(self.tmp, "profile"), "--virtual-time-budget=6000",
                "--window-size=1280,%d" % height]
        url = "http://127.0.0.1:%d/ui/%s" % (port, fragment)
        subprocess.run(args + ["--screenshot=" + os.path.join(self.tmp, shot), url],
                       capture_output=True, timeout=120)
        dom = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        p = Rows()
        p.feed(dom)
        self.assertEqual(p.attrs.get("data-loaded"), "yes", dom[-2000:])
        return p.tables, dom

    def test_page_shows_the_cluster_as_the_api_does(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-ui-")
        # Tracing on, sampling nothing by itself: only requests with a sampled parent have spans.
        col = Collector()
        self.addCleanup(col.close)
        c = DhtCluster(extra=("--set", "trace.endpoint=" + col.url(), "--set", "trace.sample_ratio=0",
                              "--set", "trace.slow_ms=0", "--set", "trace.batch_delay_ms=50")).start()
        try:
            a = c.client(0)
            self.assertTrue(a.execute_command("CACHE.CREATE", "sessions", "REPLICAS", "2", "QUORUM", "2", "TTL", "30m"))
            for i in range(200):
                a.set("k%d" % i, "v")
            # For a moment every request is a slow one (then none is, so that the page's own
            # polling does not push these out): the page lists them.
            a.config_set("slowlog-log-slower-than", 0)
            a.set("ui-slow-marker", "v")
            self.assertEqual(http("GET", c.nodes[0].http_port, "/v1/cluster/status")[0], 200)
            a.config_set("slowlog-log-slower-than", 10000000)
            hp = c.nodes[0].http_port
            st, body = http("GET", hp, "/v1/cluster/status")
            self.assertEqual(st, 200)
            tables, dom = self.browse(hp, "ui-cluster.png")
            members = [r for r in tables["members"][1:]]  # the header row first
            self.assertEqual(len(members), 3, members)
            held = {n["id"]: n for n in body["partitions"]["nodes"]}
            for r in members:
                node = int(r[0].split()[0])
                self.assertEqual(r[2], "alive", r)
                self.assertEqual((int(r[4]), int(r[5])), (held[node]["primaries"], held[node]["replicas"]), r)
            self.assertIn(["partitions", "1024"], tables["partitions"])
            self.assertIn(["write quorum", "2"], tables["partitions"])
            self.assertEqual(tables["caches"][1][:3], ["sessions", "2", "2"])
            self.assertIn("no routes registered", dom)
            slow = tables["slow"][1:]
            marked = [r for r in slow if r[3] == "SET ui-slow-marker v"]
            self.assertEqual(len(marked), 1, slow)
            self.assertEqual(marked[0][2], "resp")
            self.assertEqual(marked[0][5], "not traced")
            self.assertTrue(any(r[2] == "http" and r[3].startswith("GET /v1/cluster/status") for r in slow), slow)

            # A traced metadata write that was slow: the slow log links to its trace, and the
            # page shows the spans this node kept of it as a tree.
            trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
            t = Raw(c.nodes[0].port)
            try:
                self.assertEqual(t.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0"), b"+OK\r\n")
                self.assertEqual(t.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (trace, parent)), b"+OK\r\n")
                self.assertEqual(t.cmd("CACHE.CREATE", "traced", "TTL", "1m"), b"+OK\r\n")
                self.assertEqual(t.cmd("CLIENT", "TRACEPARENT", "CLEAR"), b"+OK\r\n")
                self.assertEqual(t.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000000"), b"+OK\r\n")
            finally:
                t.close()
            tables, dom = self.browse(hp, "ui-trace-link.png")
            linked = [r for r in tables["slow"][1:] if r[3].startswith("CACHE.CREATE traced")]
            self.assertEqual(len(linked), 1, tables["slow"])
            self.assertEqual(linked[0][5], trace)
            self.assertIn('href="#trace=%s"' % trace, dom)
            self.assertIn('id="trace-section" hidden', dom.replace('hidden=""', "hidden"))
            tables, dom = self.browse(hp, "ui-trace.png", "#trace=" + trace, height=1800)
            spans = tables["trace-spans"][1:]
            self.assertEqual([r[0] for r in spans[:2]], ["CACHE.CREATE", "└ keel.rabia.decision"], spans)
            for r in spans[:2]:
                self.assertEqual(r[1], "node 1", r)
                self.assertEqual(r[4], "ok", r)
            self.assertEqual(spans[0][2], "+0 µs")
            self.assertIn("keel.rabia.outcome=decided", spans[1][6])
            self.assertIn("event keel.rabia.applied", spans[1][6])
            self.assertIn("Trace " + trace, dom)
            # A trace this node holds nothing of says so.
            tables, dom = self.browse(hp, "ui-trace-missing.png", "#trace=" + "1" * 32, height=1800)
            self.assertIn("holds no spans of trace", tables["trace-spans"][1][0])
            # Node 3 dies: the page says so once the failure detector does.
            os.kill(c.nodes[2].proc.pid, signal.SIGKILL)
            deadline = time.time() + 30
            while True:
                tables, _ = self.browse(hp, "ui-node-dead.png")
                states = {int(r[0].split()[0]): r[2] for r in tables["members"][1:]}
                if states.get(3) == "dead":
                    break
                self.assertLess(time.time(), deadline, states)
                time.sleep(0.5)
            self.assertEqual(states[1], "alive")
            print("screenshots in", self.tmp)
        finally:
            c.cleanup()


if __name__ == "__main__":
    unittest.main()
