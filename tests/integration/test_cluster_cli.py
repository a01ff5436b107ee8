"""`keel cluster up/status/down`, and the README's "A 3-node cluster" commands run as written."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
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
        blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
        self.assertEqual(len(blocks), 4, blocks)  # up, a session, a named cache, down
        start = [line for line in blocks[0].splitlines() if line.strip()]
        self.assertEqual(len(start), 2, start)
        busy = [p for p in (16380, 16480, 16580, 16382, 16482, 16582) if port_busy(p)]
        if busy:
            self.skipTest("the README's default ports are in use here: %s" % busy)
        up = self.sh(start[0])
        self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
        self.assertIn("keel cluster of 3 node(s) is up", up.stdout)
        self.assertRegex(up.stdout, r"\n  3 +\d+ +16382 +16482 +16582 ")
        # The partition map is created once every member has published its addresses.
        deadline = time.time() + 30
        while "cluster_state:ok" not in self.sh("redis-cli -p 16382 CLUSTER INFO").stdout:
            self.assertLess(time.time(), deadline, "no partition map within 30 s")
            time.sleep(0.1)
        st = self.sh(start[1])
        self.assertEqual(st.returncode, 0, st.stdout + st.stderr)
        self.assertIn("health: ok", st.stdout)
        self.assertEqual(len(re.findall(r"\n  [123] +127\.0\.0\.1:1658[0-2] +alive", st.stdout)), 3, st.stdout)
        self.assertIn("partitions: 1024, 2 copies each (write quorum 2)", st.stdout)
        # The sessions (keys, then a named cache): every "$ command" line prints exactly the
        # lines that follow it.
        for block in blocks[1:3]:
            lines = block.splitlines()
            i = 0
            while i < len(lines):
                self.assertTrue(lines[i].startswith("$ "), lines[i])
                cmd = lines[i][2:].split("  #")[0]
                expected = []
                i += 1
                while i < len(lines) and not lines[i].startswith("$ "):
                    expected.append(lines[i])
                    i += 1
                # At a terminal redis-cli quotes strings; here its stdout is a pipe, so ask for
                # the terminal's format (a command piped into another program prints raw).
                if "|" not in cmd:
                    cmd = cmd.replace("redis-cli ", "redis-cli --no-raw ", 1)
                out = self.sh(cmd)
                self.assertEqual(out.stdout.splitlines(), expected, cmd + "\n" + out.stderr)
        # "What a client sees when a node dies": the kill command in the text works, and once
        # the failover is decided every key is served again with its value.
        kill = re.search(r"\(`(kill -9 [^`]+)`", section).group(1)
        self.assertEqual(self.sh(kill).returncode, 0)
        deadline = time.time() + 30
        while self.sh("redis-cli -p 16380 GET user:1").stdout.strip() != '"ada"' and \
                self.sh("redis-cli -p 16380 GET user:1").stdout.strip() != "ada":
            self.assertLess(time.time(), deadline, "user:1 not served 30 s after a node died")
            time.sleep(0.2)
        down = [line for line in blocks[3].splitlines() if line.strip()]
        self.assertEqual(len(down), 1)
        out = self.sh(down[0])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("stopped", out.stdout)
        again = self.sh(start[1])
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
