"""`keel cluster up/status/down`, and the README's "A 3-node cluster" commands run as written."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import KEEL_BIN

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def port_busy(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as keel does: TIME_WAIT is not busy
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


class ClusterCli(unittest.TestCase):
    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="keel-cluster-cli-")
        # The README's commands use `build/tools/keel/keel` from the repository root: give the
        # temporary directory that path, pointing at the binary under test.
        os.makedirs(os.path.join(self.cwd, "build/tools/keel"))
        os.symlink(os.path.abspath(KEEL_BIN), os.path.join(self.cwd, "build/tools/keel/keel"))

    def tearDown(self):
        subprocess.run([KEEL_BIN, "cluster", "down"], cwd=self.cwd, capture_output=True, timeout=60)
        shutil.rmtree(self.cwd, ignore_errors=True)

    def sh(self, cmd):
        return subprocess.run(cmd, shell=True, cwd=self.cwd, capture_output=True, text=True, timeout=60)

    def test_readme_commands_work_as_shown(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        section = readme.split("## A 3-node cluster", 1)[1].split("\n## ", 1)[0]
        block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
        cmds = [line for line in block.splitlines() if line.strip()]
        self.assertEqual(len(cmds), 5, cmds)
        busy = [p for p in (16380, 16480, 16580, 16382, 16482, 16582) if port_busy(p)]
        if busy:
            self.skipTest("the README's default ports are in use here: %s" % busy)
        up = self.sh(cmds[0])
        self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
        self.assertIn("keel cluster of 3 node(s) is up", up.stdout)
        self.assertRegex(up.stdout, r"\n  3 +\d+ +16382 +16482 +16582 ")
        st = self.sh(cmds[1])
        self.assertEqual(st.returncode, 0, st.stdout + st.stderr)
        self.assertIn("health: ok", st.stdout)
        self.assertEqual(len(re.findall(r"\n  [123] +127\.0\.0\.1:1658[0-2] +alive", st.stdout)), 3, st.stdout)
        put = self.sh(cmds[2])
        self.assertEqual(json.loads(put.stdout)["version"], 1, put.stdout)
        get = self.sh(cmds[3])
        self.assertEqual(json.loads(get.stdout)["value"], "hello", get.stdout)
        down = self.sh(cmds[4])
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertIn("stopped 3 node(s)", down.stdout)
        again = self.sh(cmds[1])
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("cannot reach", again.stderr)

    def test_up_twice_is_refused_and_bad_flags_are_named(self):
        base = 23000 + os.getpid() % 1000
        d = os.path.join(self.cwd, "c")
        up = subprocess.run([KEEL_BIN, "cluster", "up", "--nodes", "1", "--dir", d, "--base-port", str(base), "--engine", "memory"],
                            capture_output=True, text=True, timeout=60)
        try:
            self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
            again = subprocess.run([KEEL_BIN, "cluster", "up", "--dir", d, "--base-port", str(base)],
                                   capture_output=True, text=True, timeout=60)
            self.assertEqual(again.returncode, 1)
            self.assertIn("already running", again.stderr)
            st = subprocess.run([KEEL_BIN, "cluster", "status", "--json", "--http", "127.0.0.1:%d" % (base + 100)],
                                capture_output=True, text=True, timeout=60)
            self.assertEqual(json.loads(st.stdout)["config_members"], [1])
        finally:
            subprocess.run([KEEL_BIN, "cluster", "down", "--dir", d], capture_output=True, timeout=60)
        bad = subprocess.run([KEEL_BIN, "cluster", "up", "--engine", "disk", "--dir", d], capture_output=True, text=True, timeout=60)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("allowed: persistent, memory", bad.stderr)


if __name__ == "__main__":
    unittest.main()
