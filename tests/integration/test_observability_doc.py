"""docs/observability.md stays true: every ```console block runs, in order, against a real node
with tracing on (a fake OTLP collector in this test), through bash with the node's ports put in
(`redis-cli` gets -p, localhost:8380 becomes the node's HTTP port). What it prints must be what
the doc shows, ids and numbers aside (trace/span ids and counts differ from run to run)."""
import os
import re
import subprocess
import unittest

from harness import Keel
from test_tracing import Collector

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def steps(doc):
    out = []
    for block in BLOCK.findall(doc):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            else:
                out[-1][1].append(line)
    return out


def normal(line):
    return re.sub(r"\d+", "N", re.sub(r"[0-9a-f]{16,}", "H", line))


class ObservabilityDoc(unittest.TestCase):
    def test_the_transcripts_are_what_a_node_prints(self):
        with open(os.path.join(ROOT, "docs/observability.md")) as f:
            todo = steps(f.read())
        self.assertGreaterEqual(len(todo), 7)
        col = Collector()
        try:
            with Keel("--engine", "persistent", "--shards", "2", "--set", "trace.endpoint=" + col.url(),
                      "--set", "trace.sample_ratio=0.01") as k:
                for command, expected in todo:
                    self.assertTrue(command.startswith(("curl ", "redis-cli ", "printf ")), command)
                    run = command.replace("localhost:8380", "127.0.0.1:%d" % k.http_port)
                    run = run.replace("redis-cli", "redis-cli -p %d" % k.port)
                    got = subprocess.run(["bash", "-c", run], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, timeout=30).stdout.rstrip("\n").splitlines()
                    self.assertEqual([normal(l) for l in got], [normal(l) for l in expected],
                                     "%s\nprinted:\n%s" % (command, "\n".join(got)))
        finally:
            col.close()


if __name__ == "__main__":
    unittest.main()
