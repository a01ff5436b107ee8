"""Log levels per component, changed while the node serves: CONFIG SET loglevel and
PUT /v1/config/loglevel take "<default> [<component>=<level> ...]", a JSON line names its
component, and bad values are refused with what is allowed.
"""
import json
import unittest

from harness import Keel, Raw, http


def lines(k):
    out = []
    for line in k.output().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def protocol_error(k):
    """A malformed request: the RESP server logs it at debug level (component resp)."""
    r = Raw(k.port)
    try:
        r.send(b"*1\r\n$x\r\n")
        reply = r.read_reply()
        assert reply.startswith(b"-ERR"), reply
    finally:
        r.close()


def resp_debug(k):
    return [l for l in lines(k) if l["level"] == "debug" and l["component"] == "resp"]


class ComponentLevelTest(unittest.TestCase):
    def test_levels_per_component_at_run_time(self):
        with Keel("--engine", "memory", "--set", "log.format=json") as k:
            # Every JSON line names its component.
            start = lines(k)
            self.assertTrue(start)
            self.assertTrue(all(l["component"] in ("node", "resp", "http", "dht", "cluster", "peers", "storage",
                                                   "cache", "routing", "security", "trace", "audit") for l in start), start)
            self.assertTrue(any(l["component"] == "node" and "ready:" in l["msg"] for l in start))

            protocol_error(k)
            self.assertEqual(resp_debug(k), [])
            # Debug for another component only: still nothing from resp.
            c = Raw(k.port)
            self.assertEqual(c.cmd("CONFIG", "SET", "loglevel", "info dht=debug"), b"+OK\r\n")
            protocol_error(k)
            self.assertEqual(resp_debug(k), [])
            # Debug for resp: its line appears.
            self.assertEqual(c.cmd("CONFIG", "SET", "loglevel", "info resp=debug"), b"+OK\r\n")
            self.assertEqual(c.cmd("CONFIG", "GET", "loglevel"), b"*2\r\n$8\r\nloglevel\r\n$15\r\ninfo resp=debug\r\n")
            protocol_error(k)
            self.assertEqual(len(resp_debug(k)), 1, lines(k)[-5:])
            # Bad values change nothing and say what is allowed.
            bad = c.cmd("CONFIG", "SET", "loglevel", "info resp=loud")
            self.assertIn(b"'loud' is not a log level; allowed: trace, debug, info, warn, error, off", bad)
            bad = c.cmd("CONFIG", "SET", "loglevel", "info rsp=debug")
            self.assertIn(b"unknown log component 'rsp'; components: node, resp, http", bad)
            c.close()

            # The same over HTTP: back to warn everywhere, so resp's debug line is gone again.
            st, body = http("PUT", k.http_port, "/v1/config/loglevel", json.dumps({"value": "warn"}))
            self.assertEqual((st, body), (200, {"name": "loglevel", "value": "warn"}))
            protocol_error(k)
            self.assertEqual(len(resp_debug(k)), 1)
            st, body = http("GET", k.http_port, "/v1/config/loglevel")
            self.assertEqual((st, body), (200, {"name": "loglevel", "value": "warn"}))
            st, body = http("PUT", k.http_port, "/v1/config/loglevel", json.dumps({"value": "warn cache=chatty"}))
            self.assertEqual(st, 400)
            self.assertEqual(body["error"]["code"], "INVALID_ARGUMENT")
            self.assertIn("'chatty' is not a log level", body["error"]["message"])
            st, body = http("PUT", k.http_port, "/v1/config/loglevel", json.dumps({"level": "warn"}))
            self.assertEqual(st, 400)
            self.assertIn('{"value": "<new value>"}', body["error"]["message"])
            st, body = http("PUT", k.http_port, "/v1/config/port", json.dumps({"value": "1"}))
            self.assertEqual(st, 400)
            self.assertIn("cannot be changed at run time", body["error"]["message"])
            st, body = http("GET", k.http_port, "/v1/config/nosuch")
            self.assertEqual(st, 404)
            st, _ = http("GET", k.http_port, "/v1/config/log*")
            self.assertEqual(st, 400)

    def test_bad_level_at_start_is_refused(self):
        k = Keel("--engine", "memory", "--set", "log.level=info nosuch=debug")
        with self.assertRaises(RuntimeError) as e:
            k.start()
        self.assertIn("unknown log component 'nosuch'", str(e.exception))
        k.cleanup()


if __name__ == "__main__":
    unittest.main()
