"""Helpers shared by the benchmark scripts: a free loopback port and a process's CPU time."""
import os
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (as the kernel hands one out)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """CPU time (user + system) process `pid` used so far, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port, tries=400):
    """Waits until something accepts connections on 127.0.0.1:port (up to tries x 50 ms)."""
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False
