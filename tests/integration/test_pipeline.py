"""Pipelined requests in one buffer: keel parses a batch ahead of running it (to prefetch the
keys), so check the edges of that batch against what Redis does: more requests than one batch,
inline and multibulk requests mixed, a request split across reads, QUIT in the middle, and a
protocol error after valid requests (those are answered first, then the error, then close)."""
import time
import unittest

from harness import Keel, Raw


def bulk(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Pipeline(unittest.TestCase):
    def test_many_requests_in_one_buffer_answer_in_order(self):
        with Keel("--engine", "memory") as k:
            c = Raw(k.port)
            n = 1000
            c.send(b"".join(bulk("SET", "k%d" % i, "v%d" % i) for i in range(n)) +
                   b"".join(bulk("GET", "k%d" % i) for i in range(n)))
            for i in range(n):
                self.assertEqual(c.read_reply(), b"+OK\r\n")
            for i in range(n):
                v = b"v%d" % i
                self.assertEqual(c.read_reply(), b"$%d\r\n%s\r\n" % (len(v), v))

    def test_inline_and_multibulk_mixed(self):
        with Keel("--engine", "memory") as k:
            c = Raw(k.port)
            c.send(bulk("SET", "a", "1") + b"INCR a\r\n" + bulk("INCR", "a") + b"\r\n" +
                   b"GET a\r\n" + bulk("GET", "a"))
            self.assertEqual([c.read_reply() for _ in range(5)],
                             [b"+OK\r\n", b":2\r\n", b":3\r\n", b"$1\r\n3\r\n", b"$1\r\n3\r\n"])

    def test_request_split_across_reads(self):
        with Keel("--engine", "memory") as k:
            c = Raw(k.port)
            data = bulk("SET", "split", "x" * 5000) + bulk("GET", "split")
            c.send(bulk("PING") + data[:100])
            self.assertEqual(c.read_reply(), b"+PONG\r\n")
            time.sleep(0.1)
            c.send(data[100:])
            self.assertEqual(c.read_reply(), b"+OK\r\n")
            self.assertEqual(c.read_reply(), b"$5000\r\n" + b"x" * 5000 + b"\r\n")

    def test_quit_in_the_middle_stops_the_rest(self):
        with Keel("--engine", "memory") as k:
            c = Raw(k.port)
            c.send(bulk("SET", "q", "1") + bulk("QUIT") + bulk("SET", "q", "2"))
            self.assertEqual(c.read_reply(), b"+OK\r\n")
            self.assertEqual(c.read_reply(), b"+OK\r\n")
            self.assertTrue(c.closed())
            self.assertEqual(Raw(k.port).cmd("GET", "q"), b"$1\r\n1\r\n")

    def test_protocol_error_after_valid_requests(self):
        with Keel("--engine", "memory") as k:
            c = Raw(k.port)
            c.send(bulk("SET", "e", "1") + bulk("INCR", "e") + b"*1\r\n$x\r\n" + bulk("SET", "e", "9"))
            self.assertEqual(c.read_reply(), b"+OK\r\n")
            self.assertEqual(c.read_reply(), b":2\r\n")
            self.assertEqual(c.read_reply(), b"-ERR Protocol error: invalid bulk length\r\n")
            self.assertTrue(c.closed())
            self.assertEqual(Raw(k.port).cmd("GET", "e"), b"$1\r\n2\r\n")


if __name__ == "__main__":
    unittest.main()
