#!/usr/bin/env python3
"""CPU time the servers spend per request, for comparing two builds on a busy machine.

Ops/s on a shared 2-core machine move with whatever else runs; the CPU time the three server
processes use per request (utime + stime from /proc, summed over the processes) moves much
less. Starts a 3-node keel cluster (or a 3-master Redis Cluster) as cluster_bench.py does,
warms it up, runs one `redis-benchmark --cluster` of N requests and prints the rate, the CPU
microseconds per request and the servers' resident memory. Alternate two builds a few times
and compare the spread, not one run.

Usage: bench/cluster/cpu_per_op.py BUILD_DIR {keel|redis} WRITE_QUORUM PIPELINE N [set|get]
Example: bench/cluster/cpu_per_op.py build keel 2 16 400000
"""
import importlib.util
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) < 6 or sys.argv[2] not in ("keel", "redis"):
        sys.exit(__doc__)
    build, kind, quorum, pipeline, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    test = sys.argv[6] if len(sys.argv) > 6 else "set"
    spec = importlib.util.spec_from_file_location("cluster_bench", os.path.join(HERE, "cluster_bench.py"))
    cb = importlib.util.module_from_spec(spec)
    sys.argv = [sys.argv[0], build]
    spec.loader.exec_module(cb)

    def cpu(pid):
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    cluster = cb.KeelCluster(quorum) if kind == "keel" else cb.RedisCluster()
    with cluster as c:
        pids = [p.pid for p in c.procs]
        bench = ["redis-benchmark", "--cluster", "-p", str(c.ports[0]), "-t", test, "-c", "50", "-P", str(pipeline),
                 "-r", "1000000", "-d", "64"]
        subprocess.run(bench + ["-n", "50000", "-q"], capture_output=True)  # warm up
        before = sum(cpu(p) for p in pids)
        out = subprocess.run(bench + ["-n", str(n), "--csv"], capture_output=True, text=True).stdout
        used = sum(cpu(p) for p in pids) - before
        rate = [row.split(",")[1].strip('"') for row in out.splitlines() if row.startswith('"%s"' % test.upper())]
        rss = [int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % p).read()).group(1)) // 1024 for p in pids]
        print("%s W%d -P %d %s: %s requests/s, %.2f us CPU per request, RSS MB %s" %
              (kind, quorum, pipeline, test.upper(), rate[0] if rate else "?", used * 1e6 / n, rss))


if __name__ == "__main__":
    main()
