"""Rebalancing speed: a 3-node keel cluster (2 copies, write quorum 2) holding KEYS values of
VALUE bytes takes a 4th node under a light read/write load; prints how long until every
partition is where placement puts it, how much data moved and the rate.

  BENCH_KEYS=50000 BENCH_VALUE=1000 python3 bench/cluster/rebalance_bench.py
"""
import os
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tests", "integration"))
import redis  # noqa: E402
from test_dht import DhtCluster  # noqa: E402

keys = int(os.environ.get("BENCH_KEYS", "50000"))
size = int(os.environ.get("BENCH_VALUE", "1000"))
rate = os.environ.get("BENCH_MB_PER_S", "0")

c = DhtCluster(extra=("--set", "dht.rebalance=yes", "--set", "dht.rebalance_mb_per_s=%s" % rate, "--set", "dht.rebalance_transfers=8")).start()
try:
    p = c.client(0).pipeline(transaction=False)
    for i in range(keys):
        p.set("k%d" % i, "v" * size)
        if i % 1000 == 999:
            p.execute()
    p.execute()
    stop = threading.Event()
    ops = [0, 0]

    def load():
        cl = c.client(1)
        i = 0
        while not stop.is_set():
            try:
                cl.set("load%d" % (i % 1000), i)
                ops[0] += 1
            except redis.RedisError:
                ops[1] += 1
            i += 1
    t = threading.Thread(target=load)
    t.start()
    began = time.time()
    c.add_node()
    settled = 0
    while settled < 3 and time.time() - began < 600:
        st = c.rebalance(0)
        mine = {n["id"]: n for n in st["nodes"]}.get(4)
        quiet = st["rebalance"]["remaining"] == 0 and not st["rebalance"]["transfers"]
        settled = settled + 1 if quiet and mine and mine["primaries"] + mine["replicas"] > 0 else 0
        time.sleep(0.3)
    took = time.time() - began - 0.6  # the two quiet polls after the end
    stop.set()
    t.join()
    held = c.client(3).dbsize()
    moved_mb = held * size / 1e6
    print("rebalance 3 -> 4 nodes: %d keys of %d B (2 copies); node 4 received %d keys (%.1f MB) in %.1f s "
          "= %.1f MB/s; %d writes served meanwhile, %d errors; status %s"
          % (keys, size, held, moved_mb, took, moved_mb / took, ops[0], ops[1],
             {n["id"]: (n["primaries"], n["replicas"]) for n in st["nodes"]}))
finally:
    c.cleanup()
