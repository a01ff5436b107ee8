"""Bad input gets Redis's error and a closed connection, never a crash or a hang, and every
other client keeps being served."""
import socket
import threading
import time
import unittest

import redis

from harness import Keel, Raw


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keel = Keel("--engine", "memory", "--max-clients", "200").start()

    @classmethod
    def tearDownClass(cls):
        cls.keel.cleanup()

    def assert_alive(self):
        r = redis.Redis(port=self.keel.port, socket_timeout=5)
        self.assertTrue(r.ping())
        self.assertIsNone(self.keel.proc.poll(), "keel must still be running")

    def expect_error_and_close(self, payload, error):
        k = Raw(self.keel.port)
        k.send(payload)
        self.assertEqual(k.read_reply(), error)
        self.assertTrue(k.closed(), "connection should be closed after %r" % payload[:40])
        k.close()
        self.assert_alive()

    def test_garbage_bytes(self):
        k = Raw(self.keel.port)
        k.send(bytes(range(1, 256)) * 10 + b"\r\n")  # parsed as an (unknown) inline command
        reply = k.read_reply()
        self.assertTrue(reply.startswith(b"-ERR"), reply[:80])
        k.close()
        self.expect_error_and_close(b"*1\r\n\x00\x01\x02garbage\r\n", b"-ERR Protocol error: expected '$', got '\x00'\r\n")
        self.assert_alive()

    def test_oversized_bulk_length(self):
        self.expect_error_and_close(b"*2\r\n$3\r\nGET\r\n$99999999999\r\n",
                                    b"-ERR Protocol error: invalid bulk length\r\n")

    def test_huge_multibulk_count(self):
        self.expect_error_and_close(b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n")

    def test_huge_inline_request(self):
        self.expect_error_and_close(b"A" * (70 * 1024), b"-ERR Protocol error: too big inline request\r\n")

    def test_slow_client_does_not_block_others(self):
        # One byte per 200 ms of a SET command; meanwhile another client runs 2000 commands.
        slow = Raw(self.keel.port)
        payload = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$1\r\nx\r\n"
        done = threading.Event()

        def dribble():
            for b in payload:
                slow.send(bytes([b]))
                time.sleep(0.2 if not done.is_set() else 0)

        t = threading.Thread(target=dribble)
        t.start()
        fast = redis.Redis(port=self.keel.port, socket_timeout=5)
        start = time.time()
        for i in range(2000):
            fast.set("fast:%d" % i, i)
        elapsed = time.time() - start
        still_dribbling = t.is_alive()
        done.set()
        t.join()
        self.assertTrue(still_dribbling, "the slow client must still be sending while others are served")
        self.assertEqual(slow.read_reply(), b"+OK\r\n")
        self.assertEqual(fast.get("slow"), b"x")
        self.assertLess(elapsed, 60)  # a bound on a hang, not a performance check
        slow.close()

    def test_unknown_command_and_wrong_arity_keep_the_connection(self):
        k = Raw(self.keel.port)
        self.assertTrue(k.cmd("NOPE").startswith(b"-ERR unknown command 'NOPE'"))
        self.assertEqual(k.cmd("GET"), b"-ERR wrong number of arguments for 'get' command\r\n")
        self.assertEqual(k.cmd("PING"), b"+PONG\r\n")
        k.close()

    def test_max_clients(self):
        conns = []
        try:
            for _ in range(220):
                s = socket.create_connection(("127.0.0.1", self.keel.port), 5)
                conns.append(s)
            # The connections past the limit are told why and closed.
            s = conns[-1]
            s.settimeout(5)
            data = s.recv(100)
            self.assertEqual(data, b"-ERR max number of clients reached\r\n")
        finally:
            for s in conns:
                s.close()
        time.sleep(0.3)
        self.assert_alive()

    def test_idle_clients_are_closed_after_timeout(self):
        with Keel("--engine", "memory", "--set", "server.timeout_s=1") as k:
            idle = Raw(k.port)
            busy = Raw(k.port)
            deadline = time.time() + 2.5
            while time.time() < deadline:
                self.assertEqual(busy.cmd("PING"), b"+PONG\r\n")
                time.sleep(0.2)
            self.assertTrue(idle.closed(timeout=5), "an idle client must be closed after server.timeout_s")
            self.assertEqual(busy.cmd("PING"), b"+PONG\r\n")
            idle.close()
            busy.close()

    def test_pipelined_errors_do_not_desync(self):
        k = Raw(self.keel.port)
        k.send(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$0\r\n\r\n*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$1\r\n1\r\nPING\r\n")
        self.assertEqual(k.read_reply(), b"+PONG\r\n")
        self.assertEqual(k.read_reply(), b":1\r\n")
        self.assertEqual(k.read_reply(), b"+OK\r\n")
        self.assertEqual(k.read_reply(), b"+PONG\r\n")
        k.close()


if __name__ == "__main__":
    unittest.main()
