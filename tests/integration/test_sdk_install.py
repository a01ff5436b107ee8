"""The client SDK as a user gets it: `cmake --install` into a temporary prefix, then the programs
in examples/client, examples/resilience and examples/sdk are built against that prefix with
find_package(keel) and with pkg-config (keel-client.pc, keel-resilience.pc, keel-peers.pc,
keel-config.pc, keel-epoch-cache.pc, keel-signal-metrics.pc), and run (against a real keel node
where they need one)."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import time
import urllib.error
import urllib.request

from harness import KEEL_BIN, Keel, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.path.join(os.path.dirname(KEEL_BIN), "..", ".."))


def read(path):
    with open(path) as f:
        return f.read()


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
                  "lib/pkgconfig/keel-resilience.pc",
                  "include/keel/peers.h", "lib/libkeel-peers.a", "lib/pkgconfig/keel-peers.pc",
                  "include/keel/capacitor.h", "include/keel/config_file_watcher.h", "include/keel/config_meta_watcher.h",
                  "include/keel/client/peer_pool.h", "lib/libkeel-config.a",
                  "lib/pkgconfig/keel-config.pc", "lib/cmake/keel/keel-config-targets.cmake",
                  "include/keel/epoch_cache.h", "lib/pkgconfig/keel-epoch-cache.pc",
                  "include/keel/signal_metrics.h", "lib/libkeel-signal-metrics.a",
                  "lib/pkgconfig/keel-signal-metrics.pc", "lib/cmake/keel/keel-signal-metrics-targets.cmake"]:
            self.assertTrue(os.path.exists(os.path.join(self.prefix, f)), f + " not installed")
        # Nothing from the source tree leaks into the installed headers: every quoted include
        # names a header installed beside them (system and third-party headers use <...>).
        inc = os.path.join(self.prefix, "include")
        headers = [os.path.join(d, n) for d, _, ns in os.walk(os.path.join(inc, "keel")) for n in ns]
        self.assertGreaterEqual(len(headers), 25)
        for h in headers:
            for quoted in re.findall(r'#include "([^"]+)"', read(h)):
                self.assertTrue(os.path.exists(os.path.join(inc, quoted)),
                                "%s includes \"%s\", which is not installed" % (os.path.relpath(h, inc), quoted))
        # The optional components' dependencies are named where a user looks for them.
        config = read(os.path.join(self.prefix, "lib/cmake/keel/keelConfig.cmake"))
        for dep in ("tomlplusplus", "prometheus-cpp", "spdlog", "nlohmann_json", "Boost"):
            self.assertIn(dep, config)
        pcs = {n: read(os.path.join(self.prefix, "lib/pkgconfig", n + ".pc"))
               for n in ("keel-config", "keel-signal-metrics", "keel-peers")}
        self.assertRegex(pcs["keel-config"], r"Requires: .*tomlplusplus")
        self.assertRegex(pcs["keel-config"], r"Requires: .*nlohmann_json")
        self.assertRegex(pcs["keel-signal-metrics"], r"Requires: .*prometheus-cpp-core.*spdlog")
        self.assertRegex(pcs["keel-peers"], r"Requires: .*keel-resilience")

        # 1. CMake package: find_package(keel) -> keel::client.
        out_dir = os.path.join(self.tmp, "cmake-build")
        run(["cmake", "-S", os.path.join(ROOT, "examples/client"), "-B", out_dir, "-G", "Ninja",
             "-DCMAKE_PREFIX_PATH=" + self.prefix, "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", out_dir])
        res_dir = os.path.join(self.tmp, "cmake-build-resilience")
        run(["cmake", "-S", os.path.join(ROOT, "examples/resilience"), "-B", res_dir, "-G", "Ninja",
             "-DCMAKE_PREFIX_PATH=" + self.prefix, "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", res_dir])
        sdk_dir = os.path.join(self.tmp, "cmake-build-sdk")
        run(["cmake", "-S", os.path.join(ROOT, "examples/sdk"), "-B", sdk_dir, "-G", "Ninja",
             "-DCMAKE_PREFIX_PATH=" + self.prefix, "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", sdk_dir])
        # A component that does not exist is refused by name.
        bad = os.path.join(self.tmp, "bad-component")
        os.makedirs(bad)
        with open(os.path.join(bad, "CMakeLists.txt"), "w") as f:
            f.write("cmake_minimum_required(VERSION 3.25)\nproject(bad CXX)\n"
                    "find_package(keel REQUIRED COMPONENTS config no_such_part)\n")
        p = subprocess.run(["cmake", "-S", bad, "-B", os.path.join(bad, "b"), "-DCMAKE_PREFIX_PATH=" + self.prefix],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no component named 'no_such_part'", p.stdout)

        # 2. pkg-config: keel-client.pc gives the flags.
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.prefix, "lib/pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "keel-client"], env=env).split()
        self.assertIn("-lkeel-client", flags)
        pc_exe = os.path.join(self.tmp, "quickstart-pc")
        run(["c++", "-O1", os.path.join(ROOT, "examples/client/quickstart.cpp"), "-o", pc_exe] + flags)
        res_flags = run(["pkg-config", "--cflags", "--libs", "keel-resilience", "keel-client"], env=env).split()
        res_pc_exe = os.path.join(self.tmp, "guarded-pc")
        run(["c++", "-O1", os.path.join(ROOT, "examples/resilience/guarded_get.cpp"), "-o", res_pc_exe] + res_flags)
        sdk_flags = run(["pkg-config", "--cflags", "--libs", "keel-peers", "keel-config", "keel-epoch-cache",
                         "keel-signal-metrics"], env=env).split()
        for lib in ("-lkeel-peers", "-lkeel-config", "-lkeel-signal-metrics", "-lkeel-resilience",
                    "-ltomlplusplus", "-lprometheus-cpp-core", "-lspdlog"):
            self.assertIn(lib, sdk_flags)
        sdk_pc_exe = os.path.join(self.tmp, "peers-config-pc")
        run(["c++", "-O1", os.path.join(ROOT, "examples/sdk/peers_config.cpp"), "-o", sdk_pc_exe] + sdk_flags)
        meta_pc_exe = os.path.join(self.tmp, "meta-config-pc")
        meta_flags = run(["pkg-config", "--cflags", "--libs", "keel-config"], env=env).split()
        run(["c++", "-O1", os.path.join(ROOT, "examples/sdk/meta_config.cpp"), "-o", meta_pc_exe] + meta_flags)
        for i, exe in enumerate((os.path.join(sdk_dir, "sdk_peers_config"), sdk_pc_exe)):
            work = os.path.join(self.tmp, "peers-config-%d" % i)
            os.makedirs(work)
            out = run([exe, work])
            self.assertIn("config v1 peers=2", out)
            self.assertIn("best reader=n2 n1=down", out)
            self.assertIn("degraded kept=2 error=replicas: 5 is not in 1..peers", out)
            self.assertIn("cache fresh=no", out)
            self.assertIn("metrics ok", out)

        # ConfigMetaWatcher from the installed libkeel-config, against a one-member cluster node.
        peer_port = free_port()
        with Keel("--engine", "memory", "--shards", "1", "--node-id", "1", "--peer-port", str(peer_port),
                  "--peers", "1@127.0.0.1:%d" % peer_port) as node:
            body = b'{"max_connections": 64, "mode": "strict"}'
            for _ in range(100):  # the fresh member may need a moment to decide its first slot
                try:
                    req = urllib.request.Request("http://127.0.0.1:%d/v1/meta/svc/limits" % node.http_port,
                                                 data=body, method="PUT")
                    with urllib.request.urlopen(req, timeout=10) as r:
                        if r.status == 200:
                            break
                except urllib.error.HTTPError:
                    pass
                time.sleep(0.1)
            for exe in (os.path.join(sdk_dir, "sdk_meta_config"), meta_pc_exe):
                out = run([exe, "127.0.0.1", str(node.http_port), "svc/limits"])
                self.assertIn("state=Healthy max_connections=64 mode=strict", out)
            # The quickstart's typed Cache is a server-side named cache: cluster metadata needed.
            out = run([os.path.join(out_dir, "client_quickstart"), "127.0.0.1", str(node.port)])
            self.assertIn("greeting=hello visits=1", out)
            self.assertIn("session=user=ada", out)
            out = run([pc_exe, "127.0.0.1", str(node.port)])
            self.assertIn("greeting=hello visits=2", out)
            self.assertIn("session=user=ada", out)

        pp_flags = run(["pkg-config", "--cflags", "--libs", "keel-client"], env=env).split()
        self.assertIn("-lkeel-peers", pp_flags)  # PeerPool's PeerManager comes with keel-client
        pp_pc_exe = os.path.join(self.tmp, "peer-pool-pc")
        run(["c++", "-O1", os.path.join(ROOT, "examples/client/peer_pool.cpp"), "-o", pp_pc_exe] + pp_flags)

        with Keel("--engine", "memory") as k, Keel("--engine", "memory") as k2:
            # PeerPool over two nodes, from both builds: every call answered, both nodes up.
            for exe in (os.path.join(out_dir, "client_peer_pool"), pp_pc_exe):
                out = run([exe, "127.0.0.1:%d" % k.port, "127.0.0.1:%d" % k2.port])
                self.assertIn("ok=100", out)
                self.assertIn("127.0.0.1:%d up" % k.port, out)
                self.assertIn("127.0.0.1:%d up" % k2.port, out)
            port = str(k.port)
            for exe in (os.path.join(res_dir, "resilience_guarded_get"), res_pc_exe):
                self.assertIn("guarded=yes breaker=CLOSED", run([exe, "127.0.0.1", port]))
            out = run([os.path.join(out_dir, "client_async"), "127.0.0.1", port])
            self.assertIn("protocol=RESP3 key:9=81", out)
            out = run([os.path.join(out_dir, "client_tracing"), "127.0.0.1", port])
            self.assertIn("span=SET trace=4bf92f3577b34da6a3ce929d0e0e4736 parent_is_incoming=yes error=no", out)
            # A wrong port is reported, not a crash.
            p = subprocess.run([pc_exe, "127.0.0.1", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            self.assertEqual(p.returncode, 1)
            self.assertIn("cannot connect to 127.0.0.1:1", p.stdout)


if __name__ == "__main__":
    unittest.main()
