"""Encryption at rest with the real binary (persistent engine): values sealed on disk, start
refusals with the setting named, data under a retired key answered with a clear error while
the node serves other keys, and a key rotation whose background rewrap survives kill -9 under
write load and loses nothing."""
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import redis

from harness import KEEL_BIN, Keel, http, keel_cli, wait_for

MASTER = "5f" * 32
OTHER = "a0" * 32


class AtRest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="keel-atrest-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.key_file = os.path.join(self.work, "master.key")
        with open(self.key_file, "w") as f:
            f.write(MASTER + "\n")
        os.chmod(self.key_file, 0o600)
        self.dir = os.path.join(self.work, "data")

    def node(self, *extra, data_dir=None, key=True):
        args = ["--engine", "persistent"] + list(extra)
        if key:
            args += ["--set", "security.at_rest.key_file=" + self.key_file]
        return Keel(*args, data_dir=data_dir or self.dir)

    def keys(self, k, *args):
        return keel_cli("keys", *args, "--http", "127.0.0.1:%d" % k.http_port, check=False)

    def refused_start(self, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        r = subprocess.run([KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", self.dir,
                            "--engine", "persistent"] + list(args),
                           capture_output=True, text=True, timeout=30, env=e)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout + r.stderr

    def test_values_sealed_on_disk_and_start_refusals(self):
        k = self.node().start()
        try:
            r = redis.Redis(port=k.port)
            r.set("card", "needle-4111-1111-1111-1111")
            r.hset("h", "f", "needle-in-a-hash")
            # Cluster metadata (the Rabia log): a cache definition and a transit key (its key
            # bytes live in metadata) are sealed on disk too.
            self.assertTrue(r.execute_command("CACHE.CREATE", "needlecache", "TTL", "1h"))
            self.assertTrue(r.execute_command("TRANSIT.CREATE", "needlekey"))
            self.assertEqual(r.get("card"), b"needle-4111-1111-1111-1111")
        finally:
            self.assertEqual(k.stop(), 0, k.output())
        for base, _, files in os.walk(self.dir):
            for f in files:
                with open(os.path.join(base, f), "rb") as fh:
                    self.assertNotIn(b"needle", fh.read(), f)
        # Without the master key, with another one, or with a bad one: no start, the setting named.
        out = self.refused_start()
        self.assertIn("holds an at-rest keyring", out)
        self.assertIn("set security.at_rest.key_file or security.at_rest.key_env", out)
        out = self.refused_start("--set", "security.at_rest.key_env=KEEL_IT_MASTER", env={"KEEL_IT_MASTER": OTHER})
        self.assertIn("the master key from security.at_rest.key_env (environment variable KEEL_IT_MASTER) does not "
                      "open data key version 1", out)
        out = self.refused_start("--set", "security.at_rest.key_env=KEEL_IT_MASTER", env={"KEEL_IT_MASTER": "abc"})
        self.assertIn("is not 64 hex digits", out)
        os.chmod(self.key_file, 0o644)
        out = self.refused_start("--set", "security.at_rest.key_file=" + self.key_file)
        self.assertIn("is readable by group or others", out)
        os.chmod(self.key_file, 0o600)
        # The right key from the environment reads what the key file wrote.
        k = Keel("--engine", "persistent", "--set", "security.at_rest.key_env=KEEL_IT_MASTER",
                 data_dir=self.dir, env={"KEEL_IT_MASTER": MASTER}).start()
        try:
            self.assertEqual(redis.Redis(port=k.port).hget("h", "f"), b"needle-in-a-hash")
        finally:
            k.stop()

    def test_data_under_a_retired_key_version(self):
        k = self.node().start()
        try:
            r = redis.Redis(port=k.port)
            r.set("old", "written under version 1")
            r.set("other", "also version 1")
        finally:
            self.assertEqual(k.stop(), 0, k.output())
        backup = os.path.join(self.work, "backup")
        shutil.copytree(self.dir, backup)  # a backup holding data under version 1
        k = self.node().start()
        try:
            out = self.keys(k, "rotate")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("current key version: 2", out.stdout)
            wait_for("the rewrap to version 2", lambda: http("GET", k.http_port, "/v1/keys")[1]["rewrap"]["complete"])
            out = self.keys(k, "retire", "2")
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("version 2 is the current key", out.stderr)
            out = self.keys(k, "retire", "1")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("version 1: retired", out.stdout)
        finally:
            self.assertEqual(k.stop(), 0, k.output())
        # The backup restored under today's keyring: its values are under the retired version 1,
        # and so is its metadata log, which the node cannot do without: it does not start, and
        # says why.
        shutil.copy(os.path.join(self.dir, "at_rest.keyring"), os.path.join(backup, "at_rest.keyring"))
        r = subprocess.run([KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", backup,
                            "--engine", "persistent", "--set", "security.at_rest.key_file=" + self.key_file],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("rabia.log at offset 0: sealed under at-rest key version 1: ", r.stdout + r.stderr)
        # With today's metadata log the backup's values are served key by key.
        shutil.rmtree(os.path.join(backup, "cluster"))
        shutil.copytree(os.path.join(self.dir, "cluster"), os.path.join(backup, "cluster"))
        k = self.node(data_dir=backup).start()
        try:
            r = redis.Redis(port=k.port)
            with self.assertRaises(redis.ResponseError) as e:
                r.get("old")
            self.assertEqual(str(e.exception),
                             "cannot read key 'old': at-rest key version 1 is retired (keel keys retire 1); its key "
                             "was deleted; other keys are served, and SET or DEL replaces it")
            with self.assertRaises(redis.ResponseError) as e:
                r.append("old", "x")  # a read-modify-write refuses it too
            self.assertIn("at-rest key version 1 is retired", str(e.exception))
            # The node serves everything else.
            r.set("fresh", "v")
            self.assertEqual(r.get("fresh"), b"v")
            self.assertEqual(http("GET", k.http_port, "/v1/kv/fresh")[0], 200)
            status, body = http("GET", k.http_port, "/v1/kv/other")
            self.assertNotEqual(status, 200)
            self.assertIn("at-rest key version 1 is retired", body["error"]["message"])
            # SET replaces the unreadable value; DEL removes one.
            r.set("old", "new value")
            self.assertEqual(r.get("old"), b"new value")
            self.assertEqual(r.delete("other"), 1)
            self.assertIsNone(r.get("other"))
        finally:
            self.assertEqual(k.stop(), 0, k.output())

    def test_rotation_under_write_load_survives_kill9_and_loses_nothing(self):
        rate = ["--set", "security.at_rest.rewrap_keys_per_s=400"]
        k = self.node(*rate).start()
        preload = 4000
        r = redis.Redis(port=k.port)
        p = r.pipeline(transaction=False)
        for i in range(preload):
            p.set("pre:%d" % i, "value-%d" % i)
        p.execute()
        acked = {}
        stop = threading.Event()
        lock = threading.Lock()
        port = {"p": k.port}

        # acked[key]: the values the key may hold at the end — the last acknowledged one, and
        # any later write whose outcome is unknown (cut by the kill, or timed out: it may have
        # been applied and made durable without its reply reaching us).
        def writer():
            i = 0
            while not stop.is_set():
                key, val = "w:%d" % (i % 500), "gen-%d" % i
                try:
                    redis.Redis(port=port["p"], socket_timeout=5).set(key, val)
                    with lock:
                        acked[key] = {val}
                except (redis.ConnectionError, redis.TimeoutError):
                    with lock:
                        acked.setdefault(key, {None}).add(val)
                    time.sleep(0.05)  # the node is down: not acknowledged, retried later
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            self.assertEqual(self.keys(k, "rotate").returncode, 0)
            # Kill mid-rewrap: a good part done, not all.
            def progressed():
                rw = http("GET", k.http_port, "/v1/keys")[1]["rewrap"]
                return rw["partitions_pending"] <= 700 and not rw["complete"]
            wait_for("a third of the rewrap", progressed, 60)
            rewritten_before = http("GET", k.http_port, "/v1/keys")[1]["rewrap"]["keys_total"]
            self.assertLess(rewritten_before, preload)
            k.kill9()
            k = self.node(*rate).start()
            port["p"] = k.port
            wait_for("the resumed rewrap", lambda: http("GET", k.http_port, "/v1/keys")[1]["rewrap"]["complete"], 120)
            st = http("GET", k.http_port, "/v1/keys")[1]
            self.assertEqual(st["current"], 2)
            # Resumed from the persisted cursors, not started over.
            self.assertLess(st["rewrap"]["keys_total"], preload + 500)
            metrics = urlopen_text(k.http_port, "/metrics")
            self.assertIn("keel_at_rest_rewrap_complete 1", metrics)
            self.assertIn("keel_at_rest_key_version 2", metrics)
        finally:
            stop.set()
            t.join()
        out = self.keys(k, "retire", "1")
        self.assertEqual(out.returncode, 0, out.stderr + k.output())
        self.assertEqual(k.stop(), 0, k.output())
        k = self.node().start()
        try:
            r = redis.Redis(port=k.port)
            for i in range(preload):
                self.assertEqual(r.get("pre:%d" % i), b"value-%d" % i)
            for key, vals in acked.items():
                got = r.get(key)
                self.assertIn(got.decode() if got is not None else None, vals, key)
        finally:
            self.assertEqual(k.stop(), 0, k.output())

    def test_config_check_validates_the_at_rest_settings(self):
        path = os.path.join(self.work, "keel.toml")
        with open(path, "w") as f:
            f.write('[storage]\nengine = "memory"\n[security.at_rest]\nkey_file = "k"\nkey_env = "K"\n'
                    'rewrap_keys_per_s = 0\n')
        out = keel_cli("config", "check", path, check=False)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("3 problem(s)", out.stderr)
        self.assertIn("security.at_rest.rewrap_keys_per_s: '0' is not allowed; allowed: an integer from 1 to 10000000",
                      out.stderr)
        self.assertIn("security.at_rest.key_env: is set together with security.at_rest.key_file; allowed: one source "
                      "of the master key", out.stderr)
        self.assertIn("security.at_rest.key_file: encryption at rest needs storage.engine = persistent", out.stderr)

    def test_retire_refused_while_data_remains(self):
        k = self.node("--set", "security.at_rest.rewrap_keys_per_s=1").start()
        try:
            r = redis.Redis(port=k.port)
            for i in range(50):
                r.set("k%d" % i, "v")
            self.assertEqual(self.keys(k, "rotate").returncode, 0)
            out = self.keys(k, "retire", "1")
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("version 1 cannot be retired yet: the background rewrap to version 2 is not complete", out.stderr)
            status, body = http("POST", k.http_port, "/v1/keys/x/retire")
            self.assertEqual(status, 400)
            self.assertEqual(body["error"]["message"], "'x' is not a key version; allowed: 0..2")
        finally:
            k.stop()

    def test_change_master_then_restart_with_the_new_key(self):
        new_file = os.path.join(self.work, "master-2.key")
        with open(new_file, "w") as f:
            f.write(OTHER + "\n")
        k = self.node().start()
        try:
            r = redis.Redis(port=k.port)
            r.set("kept", "across the master key change")
            self.assertTrue(r.execute_command("CACHE.CREATE", "keptcache", "TTL", "1h"))
            # Refusals: the key in use, a file others can read, a body naming both or neither.
            out = keel_cli("keys", "change-master", "--key-file", self.key_file, "--http",
                           "127.0.0.1:%d" % k.http_port, check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("is the one in use", out.stderr)
            os.chmod(new_file, 0o644)
            status, body = http("POST", k.http_port, "/v1/keys/master", '{"key_file": "%s"}' % new_file)
            self.assertEqual(status, 400, body)
            self.assertIn("is readable by group or others", body["error"]["message"])
            os.chmod(new_file, 0o600)
            status, body = http("POST", k.http_port, "/v1/keys/master", '{"key_file": "a", "key_env": "B"}')
            self.assertEqual(status, 400)
            self.assertIn("exactly one of them", body["error"]["message"])
            out = keel_cli("keys", "change-master", "--key-file", new_file, "--http",
                           "127.0.0.1:%d" % k.http_port, check=False)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn('set security.at_rest.key_file = "%s"' % new_file, out.stdout)
            self.assertEqual(r.config_get("security.at_rest.key_file"), {"security.at_rest.key_file": new_file})
            # A rotation after the change wraps the new data key under the new master key too.
            self.assertEqual(self.keys(k, "rotate").returncode, 0)
        finally:
            self.assertEqual(k.stop(), 0, k.output())
        out = self.refused_start("--set", "security.at_rest.key_file=" + self.key_file)
        self.assertIn("does not open data key version 1", out)
        k = self.node("--set", "security.at_rest.key_file=" + new_file, key=False).start()
        try:
            r = redis.Redis(port=k.port)
            self.assertEqual(r.get("kept"), b"across the master key change")
            self.assertIn(b"keptcache", r.execute_command("CACHE.LIST"))
            self.assertEqual(http("GET", k.http_port, "/v1/keys")[1]["current"], 2)
        finally:
            self.assertEqual(k.stop(), 0, k.output())


def urlopen_text(port, path):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read().decode()


if __name__ == "__main__":
    unittest.main()
