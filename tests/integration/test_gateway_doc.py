"""docs/gateway.md stays true: the routes file it shows is loaded, and every `$ curl` line of
its ```console blocks is run in order against a real node; what curl prints must be the JSON the
doc shows (only `expires_at_ms`, a wall-clock time, is not compared)."""
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from harness import Keel

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def masked(v):
    if isinstance(v, dict):
        return {k: ("*" if k == "expires_at_ms" else masked(x)) for k, x in v.items()}
    return v


class GatewayDoc(unittest.TestCase):
    def test_the_examples_are_what_a_node_prints(self):
        with open(os.path.join(ROOT, "docs/gateway.md")) as f:
            doc = f.read()
        routes = re.search(r"one per line in the blueprint form.*?```\n(.*?)```", doc, re.S).group(1)
        steps = []
        for block in re.findall(r"```console\n(.*?)```", doc, re.S):
            for line in block.splitlines():
                if line.startswith("$ "):
                    steps.append([line[2:], []])
                else:
                    steps[-1][1].append(line)
        self.assertGreaterEqual(len(steps), 4)
        d = tempfile.mkdtemp(prefix="keel-gw-doc-")
        try:
            path = os.path.join(d, "routes.txt")
            with open(path, "w") as f:
                f.write(routes)
            with Keel("--engine", "memory", "--set", "gateway.routes_file=" + path) as k:
                for cmd, want in steps:
                    argv = [a.replace("localhost:8380", "127.0.0.1:%d" % k.http_port) for a in shlex.split(cmd)]
                    self.assertEqual(argv[0], "curl")
                    out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
                    self.assertEqual(masked(json.loads(out)), masked(json.loads("\n".join(want))), cmd)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
