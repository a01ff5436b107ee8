#!/usr/bin/env python3
"""TLS clients: keel against Debian's redis-server, both serving RESP over TLS, side by side.

One certificate authority and one server certificate (made with `keel cert`) serve both: keel
with `tls.port`, `tls.cert_file`, `tls.key_file`, `tls.ca_cert_file`, `tls.auth_clients = no`
and its plaintext port off; redis-server with the same files through `--tls-port --port 0
--tls-auth-clients no`. Each round runs `redis-benchmark --tls --cacert CA` SET and GET with 50
clients at -P 1 and -P 16 (-r 1000000, 64-byte values) against each server in turn (the order
alternates between rounds), one server process per (round, server). Prints the medians of
requests/s and of the server's CPU time per request (/proc/PID/stat) and keel/Redis ratios.

Usage: bench/tls_bench.py BUILD_DIR
  env: TLS_ROUNDS=3 TLS_REQUESTS=100000 (x4 at -P 16) TLS_TESTS=set,get TLS_PIPELINES=1,16
"""
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_seconds, free_port, wait_port

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
KEEL = os.path.join(BUILD, "tools/keel/keel")
ROUNDS = int(os.environ.get("TLS_ROUNDS", "3"))
REQUESTS = int(os.environ.get("TLS_REQUESTS", "100000"))
TESTS = os.environ.get("TLS_TESTS", "set,get").split(",")
PIPELINES = [int(x) for x in os.environ.get("TLS_PIPELINES", "1,16").split(",")]


def make_pki(d):
    subprocess.run([KEEL, "cert", "init", "--dir", d], check=True, capture_output=True)
    subprocess.run([KEEL, "cert", "issue", "--node", "1", "--dir", d], check=True, capture_output=True)
    return {"ca": os.path.join(d, "ca.crt"), "cert": os.path.join(d, "node-1.crt"), "key": os.path.join(d, "node-1.key")}


def start(kind, pki, work):
    port = free_port()
    d = tempfile.mkdtemp(prefix="tls-bench-", dir=work)
    if kind == "keel":
        args = [KEEL, "serve", "--engine", "memory", "--shards", "1", "--http-port", "0", "--data-dir", d,
                "--log-level", "warn", "--set", "tls.plaintext=no", "--set", "tls.port=%d" % port,
                "--set", "tls.cert_file=" + pki["cert"], "--set", "tls.key_file=" + pki["key"],
                "--set", "tls.ca_cert_file=" + pki["ca"], "--set", "tls.auth_clients=no"]
    else:
        args = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", d, "--tls-cert-file", pki["cert"], "--tls-key-file", pki["key"],
                "--tls-ca-cert-file", pki["ca"], "--tls-auth-clients", "no"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        p.kill()
        raise RuntimeError("%s did not listen on its TLS port %d" % (kind, port))
    time.sleep(0.3)
    return p, port


def bench(port, pki, test, pipeline):
    n = REQUESTS * (4 if pipeline > 1 else 1)
    out = subprocess.run(["redis-benchmark", "--tls", "--cacert", pki["ca"], "-h", "127.0.0.1", "-p", str(port),
                          "-t", test, "-n", str(n), "-c", "50", "-P", str(pipeline), "-r", "1000000", "-d", "64",
                          "--csv"], capture_output=True, text=True, timeout=600).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if not rows:
        raise RuntimeError("redis-benchmark gave no result:\n" + out)
    return float(rows[-1][1]), n


def main():
    work = tempfile.mkdtemp(prefix="keel-tls-bench-")
    try:
        pki = make_pki(os.path.join(work, "pki"))
        res = {}
        for rnd in range(ROUNDS):
            order = ("keel", "redis") if rnd % 2 == 0 else ("redis", "keel")
            for kind in order:
                p, port = start(kind, pki, work)
                try:
                    for test in TESTS:
                        for pl in PIPELINES:
                            c0 = cpu_seconds(p.pid)
                            rps, n = bench(port, pki, test, pl)
                            c1 = cpu_seconds(p.pid)
                            res.setdefault((kind, test, pl), []).append((rps, (c1 - c0) * 1e6 / n))
                finally:
                    p.kill()
                    p.wait()
        print("| command | -P | Redis TLS ops/s | keel TLS ops/s | keel/Redis | server CPU µs/req Redis / keel |")
        print("|---|---|---|---|---|---|")
        for test in TESTS:
            for pl in PIPELINES:
                r = statistics.median(x[0] for x in res[("redis", test, pl)])
                k = statistics.median(x[0] for x in res[("keel", test, pl)])
                rc = statistics.median(x[1] for x in res[("redis", test, pl)])
                kc = statistics.median(x[1] for x in res[("keel", test, pl)])
                print("| %s | %d | %.0f | %.0f | %.2fx | %.2f / %.2f |" % (test.upper(), pl, r, k, k / r, rc, kc))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
