"""docs/security.md stays true: the shell blocks of "A TLS cluster from nothing" and of
"Reloading certificates" run exactly as written (three members with mutual TLS on peer links,
TLS on RESP and HTTPS, a renewed certificate), and print what the doc says. They use the fixed
ports the doc shows, so they run in a network namespace of their own (`unshare --net`, root
needed), where nothing else listens, and a PID namespace of their own (`--pid --fork`): when
the script ends, the kernel ends every process it started, whatever happened."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from harness import KEEL_BIN

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def kill_processes_in(work):
    """A safety net: ends any process still running in `work` (none should be)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/cwd" % pid).startswith(work):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def section(doc, title):
    return doc.split("## " + title + "\n", 1)[1].split("\n## ", 1)[0]


def sh_blocks(text):
    return re.findall(r"```sh\n(.*?)```", text, re.S)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"), "needs root and unshare for a network namespace")
class SecurityDoc(unittest.TestCase):
    def test_tls_cluster_from_nothing_and_reload(self):
        with open(os.path.join(ROOT, "docs/security.md")) as f:
            doc = f.read()
        cluster = sh_blocks(section(doc, "A TLS cluster from nothing"))
        reload = sh_blocks(section(doc, "Reloading certificates"))
        self.assertEqual((len(cluster), len(reload)), (2, 1))
        work = tempfile.mkdtemp(prefix="keel-security-doc-")
        self.addCleanup(shutil.rmtree, work, True)
        self.addCleanup(kill_processes_in, work)
        # `keel` on PATH, as the doc assumes: `keel serve ... &` is then the keel process itself.
        os.makedirs(os.path.join(work, ".bin"))
        os.symlink(os.path.abspath(KEEL_BIN), os.path.join(work, ".bin", "keel"))
        script = "\n".join([
            "set -e",
            "ip link set lo up",
            'export PATH="$PWD/.bin:$PATH"',
            "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT",
            "timeout_at=$((SECONDS + 60))",
            # The readiness loop of the doc, bounded here so that a broken node fails the test.
            cluster[0].replace("; do sleep 0.2; done",
                               "; do sleep 0.2; [ $SECONDS -lt $timeout_at ] || { cat node-*.log; exit 1; }; done"),
            "echo ---",
            cluster[1],
            "echo ---",
            reload[0],
            "for n in $(seq 300); do grep -q 'TLS: reloaded' node-1.log && break; sleep 0.1; done",
            "grep 'TLS: reloaded' node-1.log",
        ])
        r = subprocess.run(["unshare", "--net", "--pid", "--fork", "bash", "-c", script], cwd=work,
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = r.stdout.split("---\n")
        self.assertEqual(len(out), 3, r.stdout)
        lines = out[1].splitlines()
        self.assertEqual(lines[0], "OK")
        self.assertEqual(lines[1], "hello")
        self.assertEqual(lines[2], '{"key":"greeting","ttl_ms":-1,"type":"string","value":"hello"}')
        self.assertIn("mutual TLS on peer links", lines[3])
        self.assertIn("TLS: reloaded pki/node-1.crt (and its key and CA): new connections use it", out[2])


if __name__ == "__main__":
    unittest.main()
