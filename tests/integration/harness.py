"""Starts and stops real keel (and redis-server) processes for integration tests.

Every server listens on a free loopback port chosen by the kernel (port 0) and uses its own
temporary data directory; everything is cleaned up when the test ends.
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import json
import urllib.error
import urllib.request

KEEL_BIN = os.environ.get("KEEL_BIN", os.path.join(os.path.dirname(__file__), "../../build/tools/keel/keel"))
READY = re.compile(r"ready: RESP on [^:]+:(\d+), HTTP on [^:]+:(\d+)")


class Keel:
    """A keel node. `args` are extra `keel serve` flags; `prefix` runs it through another
    command (e.g. `ip netns exec NS`)."""

    def __init__(self, *args, data_dir=None, env=None, prefix=()):
        self.prefix = list(prefix)
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="keel-it-")
        self.args = list(args)
        self.env = env
        self.proc = None
        self.port = self.http_port = None
        self.log_path = None

    def start(self, timeout=20):
        cmd = self.prefix + [KEEL_BIN, "serve", "--port", "0", "--http-port", "0", "--data-dir", self.data_dir] + self.args
        env = dict(os.environ)
        # Every element-by-element change is checked against the value it produced (a wrong
        # delta stops the node): tests run with the check on.
        env.setdefault("KEEL_VERIFY_DELTAS", "1")
        if self.env:
            env.update(self.env)
        if self.log_path:
            os.unlink(self.log_path)
        fd, self.log_path = tempfile.mkstemp(prefix="keel-it-", suffix=".log")
        os.close(fd)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                m = READY.search(f.read().decode(errors="replace"))
            if m:
                self.port, self.http_port = int(m.group(1)), int(m.group(2))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("keel exited with %s:\n%s" % (self.proc.returncode, self.output()))
            time.sleep(0.02)
        raise RuntimeError("keel did not become ready:\n" + self.output())

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("keel did not stop within %ss after signal %s" % (timeout, sig))
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


_given_ports = set()


def wait_cluster_ok(client, what, output, limit=30):
    """Waits until `client()` answers CLUSTER INFO with cluster_state:ok (the node knows a
    complete partition map); else fails naming `what` with the tail of `output()`."""
    import redis  # only the cluster tests need it
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            info = client().execute_command("CLUSTER", "INFO")
            if isinstance(info, bytes):
                info = info.decode()
            if "cluster_state:ok" in info:
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError("%s never saw a complete partition map:\n%s" % (what, output()[-3000:]))


def free_port():
    """A port for a server whose address must be known before it starts (a cluster's peer
    ports). Chosen below the kernel's ephemeral range (32768-60999 here): a port the kernel
    handed out could be handed out again — to another server listening on port 0, or to an
    outgoing connection — before the node binds it."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32000)
        if port in _given_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _given_ports.add(port)
        return port
    raise RuntimeError("no free port in 20000-31999")


class RedisServer:
    """Debian's redis-server on a free port, no persistence: the reference for replies."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redis-it-")
        self.proc = None

    def __enter__(self):
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                    return self
                except OSError:
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.02)
            self.proc.kill()
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Raw:
    """A raw RESP connection: send bytes, read exactly what the server answers."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.send(out)
        return self.read_reply()

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self):
        """Returns the reply as its exact wire bytes (so replies can be compared byte for byte)."""
        line = self._line()
        t, rest = line[:1], line[1:]
        out = line + b"\r\n"
        if t in (b"$", b"="):
            n = int(rest)
            if n >= 0:
                while len(self.buf) < n + 2:
                    self._fill()
                out += self.buf[: n + 2]
                self.buf = self.buf[n + 2:]
        elif t in (b"*", b"%", b"~", b">"):
            n = int(rest)
            if t == b"%":
                n *= 2
            for _ in range(max(n, 0)):
                out += self.read_reply()
        return out

    def closed(self, timeout=3):
        """True if the server closes the connection within `timeout` seconds."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def http(method, port, path, body=None, timeout=10):
    """One JSON request to a node's HTTP port: (status, decoded body), error statuses included."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def reply_mismatches(r, k, cases):
    """Sends each command of `cases` to redis-server (Raw `r`) and to keel (Raw `k`) in order;
    the commands whose raw replies differ, each with both replies."""
    out = []
    for args in cases:
        a, b = r.cmd(*args), k.cmd(*args)
        if a != b:
            out.append("%s\n    redis: %r\n    keel:  %r" % (" ".join(args), a, b))
    return out


def keel_cli(*args, check=True):
    """Runs `keel ARGS...` (e.g. `cert init`); with check, a failure raises with its output."""
    r = subprocess.run([KEEL_BIN] + list(args), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("keel %s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def wait_for(what, pred, limit=30):
    """Polls pred() until it is true; else fails naming `what`."""
    deadline = time.time() + limit
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)
