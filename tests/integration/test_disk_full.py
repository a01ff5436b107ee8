"""A full disk never kills the node (issue 10, part 5).

The data directory lives on a small tmpfs made by the test (needs root; skipped otherwise).
Step by step: SET load with fsync = always fills the disk until writes are refused with a
MISCONF error naming the disk problem and the data directory; reads still answer and the
process is alive; INFO, /metrics, readiness and /v1/kv show it; the tmpfs grows and writes
resume without a restart; kill -9 and restart keep every acknowledged key. Then a node started
on an already full disk comes up read-only, serves reads, refuses writes, and becomes writable
once the filler file is removed. No timing assertions: every wait is for a condition, with a
limit.
"""
import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import redis

from harness import Keel, free_port, wait_cluster_ok

MiB = 1 << 20
RESERVE = 4 * MiB


def http(port, method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(what, cond, limit=60, output=None):
    deadline = time.time() + limit
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (redis.RedisError, OSError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("%s did not happen within %ss (last: %r)%s" %
                         (what, limit, last, ("\n" + output()[-3000:]) if output else ""))


def info(r):
    """INFO persistence as the raw text (redis-py would parse it into a dict)."""
    r.set_response_callback("INFO", lambda resp, **kw: resp)
    return r.execute_command("INFO", "persistence").decode()


def unmount(path):
    """Unmounts the test's tmpfs (lazily if it is still busy)."""
    for args in (["umount", path], ["umount", "-l", path]):
        if subprocess.run(args, capture_output=True).returncode == 0:
            break


def fill_file(path):
    """Writes zeros into `path` until the filesystem is full; returns the bytes written."""
    n = 0
    chunk = b"\0" * (256 * 1024)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        small = b"\0" * 4096
        while True:
            try:
                n += f.write(small)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return n


@unittest.skipUnless(os.geteuid() == 0, "needs root to mount a tmpfs for the data directory")
class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="keel-diskfull-")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            os.rmdir(self.mnt)
            self.skipTest("cannot mount a tmpfs: " + (p.stderr or p.stdout).strip())
        self.data = os.path.join(self.mnt, "data")
        self.nodes = []

    def tearDown(self):
        for k in self.nodes:
            try:
                if k.proc and k.proc.poll() is None:
                    k.kill9()
                k.cleanup()
            except Exception:  # noqa: BLE001 - teardown must go on to unmount
                pass
        unmount(self.mnt)
        shutil.rmtree(self.mnt, ignore_errors=True)

    def node(self, reserve=RESERVE, fsync="always", extra=()):
        k = Keel("--engine", "persistent", "--fsync", fsync,
                 "--set", "storage.min_free_bytes=%d" % reserve, *extra, data_dir=self.data)
        self.nodes.append(k)
        return k

    def assert_misconf(self, err):
        text = str(err)
        self.assertTrue(text.startswith("MISCONF"), text)
        self.assertIn("keel cannot persist to disk", text)
        self.assertIn("no space left on device", text)
        self.assertIn(self.data, text)
        self.assertIn("writes are refused", text)

    def load_until_refused(self, r, acked, prefix, value_bytes=4096, limit=180, dropped=None):
        """Pipelined SETs until one is refused; records every acknowledged key. Returns the
        first refusal. `dropped`: a list that collects connection errors (a batch whose commit
        failed is answered by closing the connection) instead of failing."""
        deadline = time.time() + limit
        i = 0
        while time.time() < deadline:
            p = r.pipeline(transaction=False)
            batch = []
            for _ in range(64):
                key = "%s:%d" % (prefix, i)
                val = (key + ":").encode() + os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
                p.set(key, val)
                batch.append((key, val))
                i += 1
            try:
                results = p.execute(raise_on_error=False)
            except redis.ConnectionError as e:
                if dropped is None:
                    raise
                dropped.append(e)  # outcome unknown: none of the batch counts as acknowledged
                continue
            refused = None
            for (key, val), res in zip(batch, results):
                if res is True:
                    acked[key] = val
                elif isinstance(res, redis.ResponseError):
                    refused = refused or res
                else:
                    self.fail("unexpected reply %r" % (res,))
            if refused:
                return refused
        self.fail("writes were never refused after %d SETs" % i)

    def assert_all_present(self, r, acked):
        keys = list(acked)
        for n in range(0, len(keys), 500):
            part = keys[n:n + 500]
            got = r.mget(part)
            for k, v in zip(part, got):
                self.assertEqual(v, acked[k], "acknowledged key %s lost or changed" % k)

    def test_fill_refuse_read_resume_and_restart(self):
        self.fill_refuse_read_resume_and_restart()

    def test_fill_refuse_read_resume_and_restart_reading_from_disk(self):
        # storage.keep_in_memory = no: reads come from RocksDB, the same refusal and resume.
        self.fill_refuse_read_resume_and_restart(extra=("--set", "storage.keep_in_memory=no"))

    def fill_refuse_read_resume_and_restart(self, extra=()):
        k = self.node(extra=extra).start()
        r = redis.Redis(port=k.port, socket_timeout=30)
        acked = {}

        # 1. SET load until the disk is full: refused with MISCONF, naming disk and directory.
        err = self.load_until_refused(r, acked, "k")
        self.assert_misconf(err)
        self.assertGreater(len(acked), 100)
        with self.assertRaises(redis.ResponseError) as cm:
            r.set("one-more", "x")
        self.assert_misconf(cm.exception)
        # Every kind of write is refused the same way, and leaves nothing behind.
        first = next(iter(acked))
        for cmd in (("HSET", "h", "f", "v"), ("LPUSH", "l", "a"), ("SADD", "s", "a"),
                    ("ZADD", "z", "1", "a"), ("XADD", "x", "*", "f", "v"), ("INCR", "n"),
                    ("APPEND", first, "more"), ("DEL", first), ("EXPIRE", first, "100")):
            with self.assertRaises(redis.ResponseError, msg=str(cmd)) as cm:
                r.execute_command(*cmd)
            self.assert_misconf(cm.exception)
        self.assertEqual(r.exists("h", "l", "s", "z", "x", "n"), 0)
        self.assertEqual(r.get(first), acked[first])
        self.assertEqual(r.ttl(first), -1)

        # 2. Reads go on, the process is alive, and it is visible everywhere.
        self.assertIsNone(k.proc.poll())
        self.assertTrue(r.ping())
        some = list(acked)[:50]
        self.assertEqual(r.mget(some), [acked[x] for x in some])
        text = info(r)
        self.assertIn("disk_writable:0", text)
        self.assertIn("rdb_last_bgsave_status:err", text)
        self.assertRegex(text, r"disk_write_status:(low_space|failed)")
        self.assertIn("disk_error:keel cannot persist to disk", text)
        status, metrics = http(k.http_port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("keel_storage_writable 0", metrics)
        self.assertIn("keel_storage_refused_writes_total", metrics)
        status, body = wait_until("readiness failing on storage",
                                  lambda: (lambda s: s if s[0] == 503 else None)(
                                      http(k.http_port, "GET", "/health/ready?verbose")))
        self.assertIn("[-]storage failed", body)
        self.assertIn("cannot persist to disk", body)
        status, body = http(k.http_port, "PUT", "/v1/kv/http-key", b"value")
        self.assertEqual(status, 507, body)
        self.assertEqual(json.loads(body)["error"]["code"], "DISK_ERROR")
        self.assertIn("cannot persist to disk", json.loads(body)["error"]["message"])
        self.assertIn("disk_write_status=", k.output())

        # 3. Space returns (the tmpfs grows): writes resume by themselves, no restart.
        subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
        wait_until("writes accepted again", lambda: r.set("after-resume", "yes"), output=k.output)
        acked["after-resume"] = b"yes"
        for n in range(200):
            key = "more:%d" % n
            self.assertTrue(r.set(key, key))
            acked[key] = key.encode()
        self.assertIn("disk_writable:1", info(r))
        self.assertIn("keel_storage_writable 1", http(k.http_port, "GET", "/metrics")[1])
        wait_until("readiness passing again",
                   lambda: http(k.http_port, "GET", "/health/ready")[0] == 200)
        self.assertIsNone(k.proc.poll())

        # 4. kill -9 and restart: every acknowledged write is there.
        k.kill9()
        k.start()
        r = redis.Redis(port=k.port, socket_timeout=30)
        self.assert_all_present(r, acked)

    def test_enospc_without_reserve_never_kills_the_node(self):
        # No reserve: RocksDB itself runs into ENOSPC in the middle of a write — what used to
        # abort the process (WritableFileWriter ... sync_without_flush_called_).
        self.enospc_without_reserve("always")

    def test_enospc_without_reserve_fsync_everysec(self):
        self.enospc_without_reserve("everysec")

    def test_enospc_without_reserve_reading_from_disk(self):
        # keep_in_memory = no: recovered by DB::Resume() instead of a reopen.
        self.enospc_without_reserve("always", extra=("--set", "storage.keep_in_memory=no"))

    def enospc_without_reserve(self, fsync, extra=()):
        k = self.node(reserve=0, fsync=fsync, extra=extra).start()
        r = redis.Redis(port=k.port, socket_timeout=30)
        acked = {}
        dropped = []
        err = self.load_until_refused(r, acked, "e", dropped=dropped)
        self.assert_misconf(err)
        self.assertIsNone(k.proc.poll(), k.output()[-3000:])
        self.assertTrue(r.ping())
        some = list(acked)[:50]
        self.assertEqual(r.mget(some), [acked[x] for x in some])
        text = info(r)
        self.assertIn("disk_write_status:failed", text)
        self.assertRegex(text, r"disk_write_errors:[1-9]")
        self.assertIn("keel_storage_writable 0", http(k.http_port, "GET", "/metrics")[1])

        subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
        wait_until("writes accepted again", lambda: r.set("after-resume", "yes"), output=k.output)
        acked["after-resume"] = b"yes"
        self.assertIn("disk_write_status:ok", info(r))
        k.kill9()
        k.start()
        r = redis.Redis(port=k.port, socket_timeout=30)
        self.assert_all_present(r, acked)

    def test_start_on_a_full_disk_read_only_then_writable(self):
        k = self.node().start()
        r = redis.Redis(port=k.port, socket_timeout=30)
        acked = {}
        for n in range(300):
            key = "before:%d" % n
            self.assertTrue(r.set(key, key * 10))
            acked[key] = (key * 10).encode()
        self.assertEqual(k.stop(), 0)

        # The disk is full before the node starts.
        filler = os.path.join(self.mnt, "filler")
        fill_file(filler)
        k.start()  # starts instead of failing
        r = redis.Redis(port=k.port, socket_timeout=30)
        self.assertTrue(r.ping())
        self.assert_all_present(r, acked)  # reads work
        with self.assertRaises(redis.ResponseError) as cm:
            r.set("refused", "x")
        self.assert_misconf(cm.exception)
        text = info(r)
        self.assertIn("disk_writable:0", text)
        self.assertIn("disk_read_only_open:1", text)

        # Space returns: the node reopens its database read-write by itself.
        os.unlink(filler)
        wait_until("writes accepted after space returned", lambda: r.set("after", "yes"),
                   output=k.output)
        acked["after"] = b"yes"
        self.assertIn("disk_read_only_open:0", info(r))
        self.assertIn("disk_writable:1", info(r))

        k.kill9()
        k.start()
        r = redis.Redis(port=k.port, socket_timeout=30)
        self.assert_all_present(r, acked)


@unittest.skipUnless(os.geteuid() == 0, "needs root to mount a tmpfs for the data directory")
class ReplicaDiskFullTest(unittest.TestCase):
    """In a cluster, a replica whose disk is full does not acknowledge the replicated writes it
    could not persist: with every copy in the write quorum, those writes are not answered OK.
    Once its disk has space again, it takes the entries it refused and writes succeed."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="keel-diskfull-cluster-")
        self.mnt = os.path.join(self.root, "n3")
        os.makedirs(self.mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            self.skipTest("cannot mount a tmpfs: " + (p.stderr or p.stdout).strip())
        ports = [free_port() for _ in range(3)]
        peers = ",".join("%d@127.0.0.1:%d" % (i + 1, q) for i, q in enumerate(ports))
        settings = ["--engine", "persistent", "--fsync", "always", "--shards", "2",
                    "--set", "storage.min_free_bytes=%d" % RESERVE,
                    "--set", "cluster.request_timeout_ms=1500",
                    "--set", "cluster.heartbeat_ms=50",
                    # No failover while node 3 refuses writes: the quorum is what is tested.
                    "--set", "cluster.suspect_after_ms=30000",
                    "--set", "cluster.dead_after_ms=60000",
                    "--set", "dht.replicas=3", "--set", "dht.write_quorum=3"]
        self.nodes = []
        for i in range(3):
            d = os.path.join(self.root, "n%d" % (i + 1), "data")
            os.makedirs(d, exist_ok=True)
            self.nodes.append(Keel(*settings, "--node-id", str(i + 1), "--peer-port", str(ports[i]),
                                   "--peers", peers, data_dir=d))

    def tearDown(self):
        for k in self.nodes:
            try:
                k.cleanup()
            except Exception:  # noqa: BLE001 - teardown must go on to unmount
                pass
        unmount(self.mnt)
        shutil.rmtree(self.root, ignore_errors=True)

    def test_a_replica_with_a_full_disk_does_not_acknowledge(self):
        for k in self.nodes:
            k.start()
        for i, k in enumerate(self.nodes):
            wait_cluster_ok(lambda: redis.Redis(port=k.port, socket_timeout=10), "node %d" % (i + 1), k.output)
        a = redis.Redis(port=self.nodes[0].port, socket_timeout=30)
        # Keys whose primary is node 1 (node 3 is a replica of every partition: 3 copies).
        slots = a.execute_command("CLUSTER", "SLOTS")
        mine = [(r[0], r[1]) for r in slots if r[2][1] == self.nodes[0].port]
        keys = []
        for i in range(100000):
            key = "rk%d" % i
            s = a.execute_command("CLUSTER", "KEYSLOT", key)
            if any(lo <= s <= hi for lo, hi in mine):
                keys.append(key)
                if len(keys) == 5:
                    break
        for key in keys:
            self.assertTrue(a.set(key, "v0"))

        filler = os.path.join(self.mnt, "filler")
        fill_file(filler)
        n3 = redis.Redis(port=self.nodes[2].port, socket_timeout=30)
        wait_until("node 3 refusing writes", lambda: "disk_writable:0" in info(n3),
                   output=self.nodes[2].output)
        answers = []
        for key in keys:
            try:
                a.set(key, "v1")
                answers.append("OK")
            except redis.ResponseError as e:
                answers.append(str(e).split(" ")[0])
        print("writes needing node 3 while its disk is full:", answers)
        self.assertNotIn("OK", answers)
        self.assertIsNone(self.nodes[2].proc.poll())
        self.assertIn("cannot apply lsn", self.nodes[2].output())

        os.unlink(filler)
        for key in keys:
            wait_until("write of %s acknowledged again" % key, lambda: a.set(key, "v2"),
                       output=self.nodes[2].output)
        self.assertEqual(a.mget(keys), [b"v2"] * len(keys))
        self.assertIsNone(self.nodes[2].proc.poll())


if __name__ == "__main__":
    unittest.main()
