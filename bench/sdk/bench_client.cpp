// bench_client: GET/SET throughput of the keel client SDK (async Connection, C++20 coroutines)
// against hiredis's asynchronous API (redisAsyncContext driven by a poll() loop), on one
// connection each to the same keel node (one shard: the client shares this 2-core machine, and both
// clients then meet the same server path), at several pipeline depths (commands kept in flight).
//
//   bench_client [--ops N] [--depths 1,16,64,256] [--value-bytes 32] [--port P]
// Without --port it starts its own node (KEEL_BIN, or build/tools/keel/keel beside this binary).
#include <hiredis/async.h>

#include <algorithm>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "keel/client/async.h"
#include "keel_process.h"

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using keel::client::Connection;
using keel::client::Endpoint;

namespace {

// This thread's CPU time, so each client's own cost per operation can be reported apart from
// the node's (which shares the machine).
double thread_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Measure {
  double ops_per_sec = 0;
  double cpu_ns_per_op = 0;
};

struct Workload {
  bool set = true;
  int ops = 0;
  int depth = 1;
  std::vector<std::string> keys;
  std::string value;
};

// ---- keel -------------------------------------------------------------------------------------

struct KeelRun {
  int issued = 0, done = 0, errors = 0;
};

asio::awaitable<void> keel_worker(std::shared_ptr<Connection> c, const Workload* w, KeelRun* run) {
  while (run->issued < w->ops) {
    const std::string& key = w->keys[run->issued % w->keys.size()];
    ++run->issued;
    keel::client::Result<keel::client::Reply> r;
    if (w->set) {
      std::string_view args[] = {"SET", key, w->value};
      r = co_await c->async_command(args);
    } else {
      std::string_view args[] = {"GET", key};
      r = co_await c->async_command(args);
    }
    if (!r || r->is_error()) ++run->errors;
    ++run->done;
  }
}

Measure bench_keel(const Endpoint& ep, const Workload& w) {
  asio::io_context io{1};
  std::shared_ptr<Connection> conn;
  bool connected = false;
  asio::co_spawn(io, Connection::connect(io.get_executor(), ep), [&](std::exception_ptr, auto r) {
    connected = true;
    if (r) conn = *r;
    else std::fprintf(stderr, "keel connect: %s\n", r.error().to_string().c_str());
  });
  while (!connected) io.run_one();  // the connection's reader keeps run() busy forever
  if (!conn) std::exit(1);
  KeelRun run;
  double cpu0 = thread_cpu_seconds();
  auto t0 = Clock::now();
  for (int i = 0; i < w.depth; ++i) asio::co_spawn(io, keel_worker(conn, &w, &run), asio::detached);
  while (run.done < w.ops) io.run_one();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double cpu = thread_cpu_seconds() - cpu0;
  if (run.errors) std::fprintf(stderr, "keel: %d errors\n", run.errors);
  conn->close();
  io.poll();
  return {w.ops / secs, cpu * 1e9 / w.ops};
}

// ---- hiredis async, driven by poll() ---------------------------------------------------------

struct PollEvents {
  bool reading = false, writing = false;
};

struct HiredisRun {
  const Workload* w;
  int issued = 0, done = 0, errors = 0;
};

void hiredis_issue(redisAsyncContext* ac, HiredisRun* run);

void on_reply(redisAsyncContext* ac, void* reply, void* priv) {
  auto* run = static_cast<HiredisRun*>(priv);
  auto* r = static_cast<redisReply*>(reply);
  if (!r || r->type == REDIS_REPLY_ERROR) ++run->errors;
  ++run->done;
  if (run->issued < run->w->ops) hiredis_issue(ac, run);
}

void hiredis_issue(redisAsyncContext* ac, HiredisRun* run) {
  const Workload& w = *run->w;
  const std::string& key = w.keys[run->issued % w.keys.size()];
  ++run->issued;
  if (w.set) {
    const char* argv[] = {"SET", key.data(), w.value.data()};
    size_t lens[] = {3, key.size(), w.value.size()};
    redisAsyncCommandArgv(ac, on_reply, run, 3, argv, lens);
  } else {
    const char* argv[] = {"GET", key.data()};
    size_t lens[] = {3, key.size()};
    redisAsyncCommandArgv(ac, on_reply, run, 2, argv, lens);
  }
}

Measure bench_hiredis(const Endpoint& ep, const Workload& w) {
  redisAsyncContext* ac = redisAsyncConnect(ep.host.c_str(), ep.port);
  if (!ac || ac->err) {
    std::fprintf(stderr, "hiredis connect: %s\n", ac ? ac->errstr : "alloc");
    std::exit(1);
  }
  PollEvents ev;
  ac->ev.data = &ev;
  ac->ev.addRead = [](void* p) { static_cast<PollEvents*>(p)->reading = true; };
  ac->ev.delRead = [](void* p) { static_cast<PollEvents*>(p)->reading = false; };
  ac->ev.addWrite = [](void* p) { static_cast<PollEvents*>(p)->writing = true; };
  ac->ev.delWrite = [](void* p) { static_cast<PollEvents*>(p)->writing = false; };
  ac->ev.cleanup = [](void* p) { *static_cast<PollEvents*>(p) = {}; };
  HiredisRun run{&w};
  double cpu0 = thread_cpu_seconds();
  auto t0 = Clock::now();
  for (int i = 0; i < w.depth && run.issued < w.ops; ++i) hiredis_issue(ac, &run);
  while (run.done < w.ops) {
    pollfd pfd{ac->c.fd, static_cast<short>((ev.reading ? POLLIN : 0) | (ev.writing ? POLLOUT : 0)), 0};
    if (poll(&pfd, 1, 5000) <= 0) {
      std::fprintf(stderr, "hiredis: stalled\n");
      std::exit(1);
    }
    if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) redisAsyncHandleRead(ac);
    if (pfd.revents & POLLOUT) redisAsyncHandleWrite(ac);
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double cpu = thread_cpu_seconds() - cpu0;
  if (run.errors) std::fprintf(stderr, "hiredis: %d errors\n", run.errors);
  redisAsyncFree(ac);
  return {w.ops / secs, cpu * 1e9 / w.ops};
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int ops = 100000, value_bytes = 32, port = 0;
  std::string only;  // "keel" or "hiredis": profile one client alone
  std::vector<int> depths = {1, 16, 64, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--ops") ops = std::atoi(argv[i + 1]);
    else if (a == "--depths") depths = parse_list(argv[i + 1]);
    else if (a == "--value-bytes") value_bytes = std::atoi(argv[i + 1]);
    else if (a == "--port") port = std::atoi(argv[i + 1]);
    else if (a == "--only") only = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s (allowed: --ops --depths --value-bytes --port --only keel|hiredis)\n", a.c_str());
      return 2;
    }
  }
  if (ops <= 0 || value_bytes < 0 || depths.empty()) {
    std::fprintf(stderr, "--ops must be > 0, --value-bytes >= 0, --depths non-empty\n");
    return 2;
  }
  std::unique_ptr<keel::testing::KeelProcess> node;
  if (port == 0) {
    if (!std::getenv("KEEL_BIN")) {
      auto self = std::filesystem::read_symlink("/proc/self/exe");
      auto bin = self.parent_path().parent_path().parent_path() / "tools/keel/keel";
      setenv("KEEL_BIN", bin.c_str(), 1);
    }
    node = std::make_unique<keel::testing::KeelProcess>(std::vector<std::string>{"--engine", "memory", "--shards", "1"});
    if (!node->start()) {
      std::fprintf(stderr, "keel did not start:\n%s\n", node->output().c_str());
      return 1;
    }
    port = node->resp_port();
  }
  Endpoint ep{"127.0.0.1", static_cast<uint16_t>(port)};
  Workload base;
  base.value = std::string(static_cast<size_t>(value_bytes), 'v');
  for (int i = 0; i < 10000; ++i) base.keys.push_back("bench:" + std::to_string(i));

  std::printf("keel client SDK vs hiredis async, one connection each, keel node on port %d, %d ops per run, %d-byte values\n",
              port, ops, value_bytes);
  std::printf("%-4s %6s %12s %14s %7s %14s %14s\n", "op", "depth", "keel ops/s", "hiredis ops/s", "ratio",
              "keel cpu ns/op", "hiredis ns/op");
  for (int depth : depths) {
    for (bool set : {true, false}) {
      Workload w = base;
      w.set = set;
      w.depth = depth;
      w.ops = ops;
      // Warm both paths (and, for GET, make sure the keys exist).
      Workload warm = w;
      warm.ops = std::min(ops, 20000);
      warm.set = true;
      if (only != "hiredis") bench_keel(ep, warm);
      if (only != "keel") bench_hiredis(ep, warm);
      // Runs alternate ABBA, so neither client always runs first (warmer caches, a quieter
      // moment on the machine).
      if (!only.empty()) {
        Measure m = only == "keel" ? bench_keel(ep, w) : bench_hiredis(ep, w);
        std::printf("%-4s %6d %s %.0f ops/s %.0f cpu ns/op\n", set ? "SET" : "GET", depth, only.c_str(), m.ops_per_sec,
                    m.cpu_ns_per_op);
        continue;
      }
      // Medians over the rounds: one disturbed run (other work on this shared machine) does
      // not move the figure.
      const int reps = 6;
      std::vector<Measure> km(reps), hm(reps);
      for (int rep = 0; rep < reps; ++rep) {
        if (rep % 2 == 0) {
          km[rep] = bench_keel(ep, w);
          hm[rep] = bench_hiredis(ep, w);
        } else {
          hm[rep] = bench_hiredis(ep, w);
          km[rep] = bench_keel(ep, w);
        }
      }
      auto median = [](std::vector<Measure> v, double Measure::*f) {
        std::sort(v.begin(), v.end(), [f](const Measure& a, const Measure& b) { return a.*f < b.*f; });
        return (v[v.size() / 2 - 1].*f + v[v.size() / 2].*f) / 2;
      };
      Measure k{median(km, &Measure::ops_per_sec), median(km, &Measure::cpu_ns_per_op)};
      Measure h{median(hm, &Measure::ops_per_sec), median(hm, &Measure::cpu_ns_per_op)};
      std::printf("%-4s %6d %12.0f %14.0f %6.2fx %14.0f %14.0f\n", set ? "SET" : "GET", depth, k.ops_per_sec,
                  h.ops_per_sec, k.ops_per_sec / h.ops_per_sec, k.cpu_ns_per_op, h.cpu_ns_per_op);
      std::fflush(stdout);
    }
  }
  return 0;
}
