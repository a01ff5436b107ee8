"""docs/caches.md stays true: every ```console block is run against a real node (a one-member
cluster) in order — `$ redis-cli ...` through redis-cli --no-raw (the output a terminal shows),
`$ curl ...` through curl — and what it prints must be what the doc shows. Only values that
depend on the rest of the metadata or on the clock are not compared: the `generation` (a
metadata revision) and `ttl_ms`."""
import json
import os
import re
import shlex
import subprocess
import time
import unittest
import urllib.request

from harness import Keel, free_port
from test_caches import wait_data_ready

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


def without_volatile(v):
    if isinstance(v, dict):
        return {k: ("*" if k in ("generation", "ttl_ms") else without_volatile(x)) for k, x in v.items()}
    return v


class CachesDoc(unittest.TestCase):
    def test_the_transcripts_are_what_a_node_prints(self):
        with open(os.path.join(ROOT, "docs/caches.md")) as f:
            doc = f.read()
        todo = steps(doc)
        self.assertGreaterEqual(len(todo), 20)
        peer = free_port()
        with Keel("--engine", "memory", "--node-id", "1", "--peer-port", str(peer),
                  "--peers", "1@127.0.0.1:%d" % peer) as k:
            deadline = time.time() + 30
            while time.time() < deadline:
                with urllib.request.urlopen("http://127.0.0.1:%d/v1/cluster/status" % k.http_port) as r:
                    if json.loads(r.read()).get("quorum"):
                        break
                time.sleep(0.05)
            wait_data_ready(k.port)
            checked = 0
            for command, expected in todo:
                argv = shlex.split(command)
                if argv[0] == "redis-cli":
                    run = ["redis-cli", "--no-raw", "-p", str(k.port)] + argv[1:]
                    got = subprocess.run(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         timeout=30).stdout.splitlines()
                    self.assertEqual(len(got), len(expected), "%s\nprinted:\n%s" % (command, "\n".join(got)))
                    for i, (g, e) in enumerate(zip(got, expected)):
                        if i > 0 and expected[i - 1].endswith('"generation"'):
                            self.assertRegex(g, r"^\d+\) \(integer\) \d+$")
                        else:
                            self.assertEqual(g, e, command)
                elif argv[0] == "curl":
                    run = [a.replace("localhost:8380", "127.0.0.1:%d" % k.http_port) for a in argv]
                    got = subprocess.run(run, stdout=subprocess.PIPE, text=True, timeout=30).stdout
                    self.assertEqual(len(expected), 1, command)
                    self.assertEqual(without_volatile(json.loads(got)), without_volatile(json.loads(expected[0])), command)
                else:
                    self.fail("docs/caches.md runs '%s': only redis-cli and curl are checked" % argv[0])
                checked += 1
            self.assertEqual(checked, len(todo))


if __name__ == "__main__":
    unittest.main()
