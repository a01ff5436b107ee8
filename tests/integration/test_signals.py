"""Signals by name: the node's events have stable names, and `signals.file` routes each one to
the log, to a counter (keel_signals_total{signal}) and to span events. The file is reloaded
while the node runs; a file with an unknown name is refused as a whole (the routes in force
stay) and the refusal is logged and shown by GET /v1/signals.
"""
import json
import os
import shutil
import tempfile
import time
import unittest
import urllib.request

from harness import Keel, Raw, http
from test_tracing import Collector, attrs

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def lines(k):
    out = []
    for line in k.output().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def metrics(k):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10) as r:
        return r.read().decode()


def counter(k, name):
    for line in metrics(k).splitlines():
        if line.startswith('keel_signals_total{signal="%s"} ' % name):
            return int(line.split()[-1])
    return None


def signals(k):
    st, body = http("GET", k.http_port, "/v1/signals")
    assert st == 200, body
    return body


def wait_file(k, pred, what):
    """Waits for the file watcher's reload (a condition, not a duration)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        f = signals(k)["file"]
        if pred(f):
            return f
        time.sleep(0.05)
    raise AssertionError("the signals file never became %s: %r" % (what, signals(k)["file"]))


def write(path, text):
    # As an editor does: a new file renamed over the old one.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class SignalsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-signals-")
        self.path = os.path.join(self.dir, "signals.toml")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_routes_reload_and_unknown_names(self):
        write(self.path, 'logs = ["*"]\nmetrics = ["node.config_changed"]\n')
        col = Collector()
        try:
            with Keel("--engine", "memory", "--set", "log.format=json", "--set", "signals.file=" + self.path,
                      "--set", "trace.endpoint=" + col.url(), "--set", "trace.sample_ratio=0",
                      "--set", "trace.batch_delay_ms=20") as k:
                body = signals(k)
                self.assertEqual(body["file"], {"path": self.path, "state": "healthy", "version": 1, "error": None})
                by_name = {s["name"]: s for s in body["signals"]}
                self.assertIn("cluster.member_suspected", by_name)
                self.assertIn("storage.writes_refused", by_name)
                self.assertEqual(by_name["node.config_changed"]["component"], "node")
                self.assertTrue(by_name["node.config_changed"]["metrics"])
                self.assertFalse(by_name["dht.partitions_moved"]["metrics"])
                self.assertTrue(all(s["logs"] and not s["span_events"] for s in body["signals"]))
                # Only the routed signal has a counter.
                self.assertEqual(counter(k, "node.config_changed"), 0)
                self.assertIsNone(counter(k, "dht.partitions_moved"))

                c = Raw(k.port)
                self.assertEqual(c.cmd("CONFIG", "SET", "maxclients", "1000"), b"+OK\r\n")
                self.assertEqual(counter(k, "node.config_changed"), 1)
                logged = [l for l in lines(k) if l.get("event") == "node.config_changed"]
                self.assertEqual(len(logged), 1)
                self.assertEqual(logged[0]["msg"], "CONFIG SET maxclients 1000")
                self.assertEqual(logged[0]["component"], "node")

                # An unknown name (and an unknown key): refused, reported, the routes stay.
                write(self.path, 'logs = []\nmetrics = ["node.config_chnaged"]\nspans = ["*"]\n')
                f = wait_file(k, lambda f: f["state"] == "degraded", "degraded")
                self.assertEqual(f["version"], 1)
                self.assertIn("metrics: unknown signal 'node.config_chnaged'; signals: cluster.member_suspected",
                              f["error"])
                self.assertIn("unknown key 'spans'; allowed: logs, metrics, span_events", f["error"])
                rejected = [l for l in lines(k) if l.get("event") == "node.signals_rejected"]
                self.assertTrue(rejected)
                self.assertEqual(rejected[0]["level"], "error")
                self.assertIn("node.config_chnaged", rejected[0]["msg"])
                self.assertEqual(c.cmd("CONFIG", "SET", "maxclients", "1001"), b"+OK\r\n")
                self.assertEqual(counter(k, "node.config_changed"), 2)
                self.assertEqual(len([l for l in lines(k) if l.get("event") == "node.config_changed"]), 2)

                # Fixed: not logged any more, counted, and a span event (a child of the
                # command's span when the command has a trace context).
                write(self.path, 'logs = ["node.signals_applied"]\nmetrics = ["*"]\n'
                                 'span_events = ["node.config_changed"]\n')
                f = wait_file(k, lambda f: f["version"] == 2, "version 2")
                self.assertEqual((f["state"], f["error"]), ("healthy", None))
                self.assertEqual(c.cmd("CLIENT", "TRACEPARENT", "00-%s-%s-01" % (TRACE, PARENT)), b"+OK\r\n")
                self.assertEqual(c.cmd("CONFIG", "SET", "maxclients", "1002"), b"+OK\r\n")
                c.close()
                self.assertEqual(counter(k, "node.config_changed"), 3)
                self.assertEqual(counter(k, "dht.partitions_moved"), 0)
                self.assertEqual(len([l for l in lines(k) if l.get("event") == "node.config_changed"]), 2)
                cmd = col.wait_span(lambda s: s["traceId"] == TRACE and s["name"] == "CONFIG", "the CONFIG span")
                ev = col.wait_span(lambda s: s["name"] == "node.config_changed", "the signal's span")
                self.assertEqual(ev["traceId"], TRACE)
                self.assertEqual(ev["parentSpanId"], cmd["spanId"])
                self.assertEqual(ev["kind"], 1)
                self.assertEqual(attrs(ev)["keel.signal"], "node.config_changed")
                self.assertEqual([e["name"] for e in ev["events"]], ["node.config_changed"])
                self.assertEqual(attrs(ev["events"][0])["message"], "CONFIG SET maxclients 1002")
        finally:
            col.close()

    def test_a_bad_file_at_start_is_reported_and_the_defaults_serve(self):
        write(self.path, 'logs = ["cluster.member_suspectd"]\n')
        with Keel("--engine", "memory", "--set", "log.format=json", "--set", "signals.file=" + self.path) as k:
            f = signals(k)["file"]
            self.assertEqual((f["state"], f["version"]), ("empty", 0))
            self.assertIn("unknown signal 'cluster.member_suspectd'", f["error"])
            self.assertTrue(any(l.get("event") == "node.signals_rejected" for l in lines(k)))
            # The default routes: every signal logged and counted.
            self.assertEqual(counter(k, "cluster.member_suspected"), 0)
            c = Raw(k.port)
            self.assertEqual(c.cmd("CONFIG", "SET", "maxclients", "1000"), b"+OK\r\n")
            c.close()
            self.assertTrue(any(l.get("event") == "node.config_changed" for l in lines(k)))

    def test_without_a_file_every_signal_is_logged_and_counted(self):
        with Keel("--engine", "memory") as k:
            body = signals(k)
            self.assertEqual(body["file"], {"path": "", "state": "none", "version": 0, "error": None})
            self.assertTrue(all(s["logs"] and s["metrics"] and not s["span_events"] for s in body["signals"]))
            self.assertEqual(counter(k, "storage.writes_refused"), 0)

    def test_a_file_in_a_missing_directory_stops_the_start(self):
        k = Keel("--engine", "memory", "--set", "signals.file=" + os.path.join(self.dir, "nodir", "s.toml"))
        with self.assertRaises(RuntimeError) as e:
            k.start()
        self.assertIn("signals.file: cannot watch", str(e.exception))
        k.cleanup()


if __name__ == "__main__":
    unittest.main()
