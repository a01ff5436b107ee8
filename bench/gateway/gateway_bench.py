#!/usr/bin/env python3
"""HTTP gateway: keel against Debian's nginx as a reverse proxy, side by side, same upstream.

The upstream is an nginx (one worker) answering a small static body on loopback. In front of
it, in turn:
  - keel (gateway.pool_max_idle = 64, as nginx's keepalive 64), the upstream registered with PUT /v1/routes/services/bench/instances/1 for
    "* /**", requests sent to keel's HTTP port (the gateway routes every path that is not
    keel's own);
  - nginx as a reverse proxy (one worker, like keel's one HTTP event loop) with an upstream
    keep-alive pool (keepalive 64, proxy_http_version 1.1).
Load: `wrk -t1 -c50 -d10s --latency`, a small GET and a 4 KiB POST. CPU per request is the
proxy process's user + system time (from /proc) over the requests wrk completed.
All processes share the machine's cores: the figures compare, they do not measure capacity.

Usage: bench/gateway/gateway_bench.py [BUILD_DIR]
  env: GW_BENCH_SECONDS=10 GW_BENCH_CONNS=50 GW_BENCH_ROUNDS=1
Prints a table with keel/nginx ratios and writes bench/out/gateway_bench.json.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
KEEL = os.path.join(BUILD, "tools/keel/keel")
SECONDS = int(os.environ.get("GW_BENCH_SECONDS", "10"))
CONNS = int(os.environ.get("GW_BENCH_CONNS", "50"))
ROUNDS = int(os.environ.get("GW_BENCH_ROUNDS", "1"))
OUT = os.path.join(ROOT, "bench/out")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TICK = os.sysconf("SC_CLK_TCK")


def wait_port(port, limit=20):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def nginx_conf(d, listen, body):
    return """
daemon off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  keepalive_requests 1000000;
  client_body_buffer_size 64k;
  %(body)s
}
""" % {"d": d, "body": body.replace("LISTEN", "127.0.0.1:%d" % listen)}


def start_nginx(d, listen, body):
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(d, listen, body))
    p = subprocess.Popen([NGINX, "-c", conf, "-p", d, "-e", os.path.join(d, "error.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(listen)
    return p


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def wrk(port, script):
    cmd = ["wrk", "-t1", "-c%d" % CONNS, "-d%ds" % SECONDS, "--latency", "-s", script,
           "http://127.0.0.1:%d/api/bench" % port]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def ms(label):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % label, out)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "requests": total, "p50_ms": ms("50"), "p99_ms": ms("99"), "errors": errors}


def measure(port, pids, script):
    c0 = cpu_seconds(pids)
    r = wrk(port, script)
    r["cpu_us_per_req"] = (cpu_seconds(pids) - c0) * 1e6 / max(r["requests"], 1)
    return r


def main():
    tmp = tempfile.mkdtemp(prefix="keel-gw-bench-")
    procs = []
    try:
        scripts = {}
        for name, lua in (("get", 'wrk.method = "GET"\n'),
                          ("post4k", 'wrk.method = "POST"\nwrk.body = string.rep("x", 4096)\n'
                                     'wrk.headers["Content-Type"] = "application/octet-stream"\n')):
            scripts[name] = os.path.join(tmp, name + ".lua")
            with open(scripts[name], "w") as f:
                f.write(lua)
        up_port, ngx_port = free_port(), free_port()
        procs.append(start_nginx(os.path.join(tmp, "upstream"), up_port,
                                 'server { listen LISTEN; location / { default_type text/plain; '
                                 'return 200 "hello from the upstream\\n"; } }'))
        ngx = start_nginx(os.path.join(tmp, "proxy"), ngx_port,
                          'upstream backend { server 127.0.0.1:%d; keepalive 64; }\n'
                          'server { listen LISTEN; location / { proxy_pass http://backend; '
                          'proxy_http_version 1.1; proxy_set_header Connection ""; '
                          'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; '
                          'proxy_set_header Host $host; } }' % up_port)
        procs.append(ngx)
        time.sleep(0.3)
        ngx_pids = [ngx.pid] + children(ngx.pid)

        kdir = os.path.join(tmp, "keel")
        log = open(os.path.join(tmp, "keel.log"), "wb")
        keel = subprocess.Popen([KEEL, "serve", "--port", "0", "--http-port", "0", "--data-dir", kdir,
                                 "--engine", "memory", "--shards", "1",
                                 "--set", "gateway.pool_max_idle=64"],  # as nginx's keepalive 64
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append(keel)
        kport = None
        deadline = time.time() + 30
        while kport is None and time.time() < deadline:
            with open(os.path.join(tmp, "keel.log")) as f:
                m = re.search(r"HTTP on [^:]+:(\d+)", f.read())
            if m:
                kport = int(m.group(1))
            time.sleep(0.05)
        if kport is None:
            raise RuntimeError("keel did not start")
        body = json.dumps({"address": "127.0.0.1:%d" % up_port, "routes": ["* /**"], "lease_ms": 3600000})
        req = urllib.request.Request("http://127.0.0.1:%d/v1/routes/services/bench/instances/1" % kport,
                                     data=body.encode(), method="PUT")
        urllib.request.urlopen(req, timeout=10).read()

        results = []
        for rnd in range(ROUNDS):
            for load in ("get", "post4k"):
                k = measure(kport, [keel.pid], scripts[load])
                n = measure(ngx_port, ngx_pids, scripts[load])
                results.append({"round": rnd + 1, "load": load, "keel": k, "nginx": n})

        print("wrk -t1 -c%d -d%ds --latency, upstream nginx (static 24-byte answer), both proxies one event loop"
              % (CONNS, SECONDS))
        print("%-7s %-6s %12s %9s %9s %12s %7s" % ("load", "proxy", "req/s", "p50 ms", "p99 ms", "cpu us/req", "errors"))
        for r in results:
            for who in ("keel", "nginx"):
                x = r[who]
                print("%-7s %-6s %12.0f %9.2f %9.2f %12.1f %7d" % (r["load"], who, x["rps"], x["p50_ms"], x["p99_ms"],
                                                                   x["cpu_us_per_req"], x["errors"]))
            k, n = r["keel"], r["nginx"]
            print("%-7s ratio  keel/nginx req/s %.2fx, p99 %.2fx, cpu/req %.2fx" % (
                r["load"], k["rps"] / n["rps"], k["p99_ms"] / max(n["p99_ms"], 1e-9),
                k["cpu_us_per_req"] / max(n["cpu_us_per_req"], 1e-9)))
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "gateway_bench.json"), "w") as f:
            json.dump({"seconds": SECONDS, "conns": CONNS, "results": results}, f, indent=1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
