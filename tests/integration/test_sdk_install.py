"""The client SDK as a user gets it: `cmake --install` into a temporary prefix, then the programs
in examples/client and examples/resilience are built against that prefix with find_package(keel)
and with pkg-config (keel-client.pc, keel-resilience.pc), and run against a real keel node."""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import KEEL_BIN, Keel

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.path.join(os.path.dirname(KEEL_BIN), "..", ".."))


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=400, **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout[-4000:]))
    return p.stdout


class SdkInstall(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-sdk-")
        self.prefix = os.path.join(self.tmp, "prefix")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_examples_build_against_the_installed_sdk_and_run(self):
        run(["cmake", "--install", BUILD, "--prefix", self.prefix])
        for f in ["include/keel/client/client.h", "include/keel/client/async.h", "lib/libkeel-client.a",
                  "lib/cmake/keel/keelConfig.cmake", "lib/cmake/keel/keel-targets.cmake",
                  "lib/pkgconfig/keel-client.pc", "include/keel/resilience/retry.h",
                  "include/keel/signals.h", "include/keel/clock.h", "lib/libkeel-resilience.a",
                  "lib/pkgconfig/keel-resilience.pc"]:
            self.assertTrue(os.path.exists(os.path.join(self.prefix, f)), f + " not installed")
        # Nothing from the source tree leaks into the installed headers.
        for name in os.listdir(os.path.join(self.prefix, "include/keel/client")):
            with open(os.path.join(self.prefix, "include/keel/client", name)) as h:
                self.assertNotIn('#include "base/', h.read(), name)

        # 1. CMake package: find_package(keel) -> keel::client.
        out_dir = os.path.join(self.tmp, "cmake-build")
        run(["cmake", "-S", os.path.join(ROOT, "examples/client"), "-B", out_dir, "-G", "Ninja",
             "-DCMAKE_PREFIX_PATH=" + self.prefix, "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", out_dir])
        res_dir = os.path.join(self.tmp, "cmake-build-resilience")
        run(["cmake", "-S", os.path.join(ROOT, "examples/resilience"), "-B", res_dir, "-G", "Ninja",
             "-DCMAKE_PREFIX_PATH=" + self.prefix, "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", res_dir])

        # 2. pkg-config: keel-client.pc gives the flags.
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.prefix, "lib/pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "keel-client"], env=env).split()
        self.assertIn("-lkeel-client", flags)
        pc_exe = os.path.join(self.tmp, "quickstart-pc")
        run(["c++", "-O1", os.path.join(ROOT, "examples/client/quickstart.cpp"), "-o", pc_exe] + flags)
        res_flags = run(["pkg-config", "--cflags", "--libs", "keel-resilience", "keel-client"], env=env).split()
        res_pc_exe = os.path.join(self.tmp, "guarded-pc")
        run(["c++", "-O1", os.path.join(ROOT, "examples/resilience/guarded_get.cpp"), "-o", res_pc_exe] + res_flags)

        with Keel("--engine", "memory") as k:
            port = str(k.port)
            out = run([os.path.join(out_dir, "client_quickstart"), "127.0.0.1", port])
            self.assertIn("greeting=hello visits=1", out)
            self.assertIn("session=user=ada", out)
            out = run([pc_exe, "127.0.0.1", port])
            self.assertIn("greeting=hello visits=2", out)
            for exe in (os.path.join(res_dir, "resilience_guarded_get"), res_pc_exe):
                self.assertIn("guarded=yes breaker=CLOSED", run([exe, "127.0.0.1", port]))
            out = run([os.path.join(out_dir, "client_async"), "127.0.0.1", port])
            self.assertIn("protocol=RESP3 key:9=81", out)
            # A wrong port is reported, not a crash.
            p = subprocess.run([pc_exe, "127.0.0.1", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            self.assertEqual(p.returncode, 1)
            self.assertIn("cannot connect to 127.0.0.1:1", p.stdout)


if __name__ == "__main__":
    unittest.main()
