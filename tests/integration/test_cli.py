"""The keel command line: version, config check, configuration sources and their errors."""
import os
import socket
import subprocess
import tempfile
import unittest

import redis

from harness import KEEL_BIN, Keel, Raw


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([KEEL_BIN] + list(args), capture_output=True, text=True, timeout=30, env=e)


class Cli(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".toml")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_version(self):
        out = run("version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"^keel \d+\.\d+\.\d+")

    def test_config_check_accepts_a_good_file(self):
        path = self.write('[server]\nresp_port = 7000\n[storage]\nengine = "memory"\nmaxmemory = "100mb"\n'
                          'maxmemory_policy = "allkeys-lru"\n[log]\nformat = "json"\n')
        out = run("config", "check", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("OK", out.stdout)

    def test_config_check_names_each_problem_and_what_is_allowed(self):
        path = self.write('[server]\nresp_port = 70000\nshards = "many"\ncolour = "blue"\n'
                          '[storage]\nfsync = "sometimes"\nmaxmemory_policy = "lru"\n[log]\nlevel = "loud"\n')
        out = run("config", "check", path)
        self.assertEqual(out.returncode, 1)
        err = out.stderr
        self.assertIn("6 problem(s)", err)
        self.assertIn("server.resp_port: '70000' is not a port; allowed: 0..65535", err)
        self.assertIn("server.shards: 'many' is not allowed; allowed: an integer from 0 to 256", err)
        self.assertIn("server.colour: unknown setting; known settings:", err)
        self.assertIn("storage.fsync: 'sometimes' is not a policy; allowed: always, everysec, no", err)
        self.assertIn("storage.maxmemory_policy: 'lru' is not a policy; allowed: noeviction", err)
        self.assertIn("log.level: 'loud' is not a log level; allowed: trace", err)

    def test_config_check_reports_toml_syntax_errors(self):
        path = self.write('[server\nresp_port = 1\n')
        out = run("config", "check", path)
        self.assertEqual(out.returncode, 1)
        self.assertIn("not valid TOML at line 1", out.stderr)

    def test_serve_refuses_bad_environment_and_flags(self):
        out = run("serve", "--engine", "disk", env={"KEEL_SERVER_MAX_CLIENTS": "0"})
        self.assertEqual(out.returncode, 2)
        self.assertIn("KEEL_SERVER_MAX_CLIENTS: '0' is not allowed; allowed: an integer from 1 to 1000000", out.stderr)
        self.assertIn("storage.engine: 'disk' is not an engine; allowed: memory, persistent", out.stderr)

    def test_file_env_and_flags_layer_in_that_order(self):
        path = self.write('[server]\nmax_clients = 11\n[storage]\nmaxmemory_policy = "allkeys-lfu"\n'
                          'engine = "persistent"\n')
        with Keel("--config", path, "--engine", "memory", env={"KEEL_SERVER_MAX_CLIENTS": "22"}) as k:
            r = redis.Redis(port=k.port)
            self.assertEqual(r.config_get("maxclients"), {"maxclients": "22"})  # env over file
            self.assertEqual(r.config_get("maxmemory-policy"), {"maxmemory-policy": "allkeys-lfu"})  # file
            self.assertEqual(r.info("persistence")["engine"], "memory")  # flag over file

    def test_config_set_at_run_time(self):
        with Keel("--engine", "memory") as k:
            r = redis.Redis(port=k.port, decode_responses=True)
            self.assertTrue(r.config_set("maxclients", "5"))
            self.assertEqual(r.config_get("maxclients"), {"maxclients": "5"})
            # Raw sockets: redis-py reports a refused connection as "Connection has data" or
            # "Connection not ready" depending on timing, so read what the server says.
            extra = [Raw(k.port) for _ in range(6)]

            def first_words(c):
                c.s.settimeout(1.0)  # a refused client is told at once; an accepted one hears nothing
                try:
                    return c.read_reply()
                except socket.timeout:
                    c.s.settimeout(5)
                    return c.cmd("PING")
            replies = [first_words(c) for c in extra]
            refused = [x for x in replies if x == b"-ERR max number of clients reached\r\n"]
            self.assertGreaterEqual(len(refused), 2, replies)  # r + 4 fit under 5
            self.assertEqual(len(refused) + replies.count(b"+PONG\r\n"), len(replies), replies)
            for c in extra:
                c.close()
            with self.assertRaises(redis.ResponseError) as e:
                r.config_set("maxclients", "0")
            self.assertIn("allowed: an integer from 1 to 1000000", str(e.exception))
            with self.assertRaises(redis.ResponseError) as e:
                r.config_set("storage.engine", "memory")
            self.assertIn("cannot be changed at run time", str(e.exception))
            self.assertTrue(r.config_set("loglevel", "warning"))
            self.assertEqual(r.config_get("log.level"), {"log.level": "warn"})

    def test_json_logs(self):
        k = Keel("--engine", "memory", "--log-format", "json").start()
        k.stop()
        lines = [l for l in k.output().splitlines() if l.strip()]
        k.cleanup()
        import json
        for l in lines:
            rec = json.loads(l)
            self.assertIn(rec["level"], ("info", "warning", "error"))
        self.assertTrue(any("ready" in json.loads(l)["msg"] for l in lines))

    def test_port_in_use_is_a_clear_error(self):
        with Keel("--engine", "memory") as k:
            out = run("serve", "--engine", "memory", "--port", str(k.port), "--http-port", "0")
            self.assertEqual(out.returncode, 1)
            self.assertIn("cannot listen for RESP on 127.0.0.1:%d" % k.port, out.stderr)


if __name__ == "__main__":
    unittest.main()
