// The peer transport's cost per frame, plaintext vs mutual TLS (tls.peer = yes), on one
// thread over loopback: two transports on one io_context, node 1 sends N frames of 100 bytes
// to node 2, a few at a time (like replication under unpipelined writes) or in bulk. Prints
// the CPU time per frame (both ends together) and the frame rate.
//
// Usage: build/bench/peers/bench_peers [FRAMES]   (default 300000)
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/cluster/peers.h"
#include "security/pki.h"
#include "security/tls.h"

namespace {

using namespace keel;
namespace asio = boost::asio;

std::shared_ptr<security::PeerTls> node_tls(const std::filesystem::path& dir,
                                            const security::Pem& ca, uint32_t id) {
  security::IssueRequest req;
  req.name = std::to_string(id);
  auto c = security::issue(ca, req);
  if (!c) {
    std::fprintf(stderr, "issue: %s\n", c.error().message.c_str());
    std::exit(1);
  }
  auto put = [&](const std::string& name, const std::string& text) {
    auto p = (dir / name).string();
    std::ofstream(p) << text;
    return p;
  };
  security::TlsServerFiles f;
  f.ca_cert_file = put("ca.crt", ca.cert);
  f.cert_file = put("node-" + req.name + ".crt", c->cert);
  f.key_file = put("node-" + req.name + ".key", c->key);
  auto t = security::PeerTls::create(f, "bench", id);
  if (!t) {
    std::fprintf(stderr, "tls: %s\n", t.error().message.c_str());
    std::exit(1);
  }
  return *t;
}

cluster::TransportOptions opts(uint32_t id, std::shared_ptr<security::PeerTls> tls) {
  cluster::TransportOptions o;
  o.cluster_id = "bench";
  o.node_id = id;
  o.port = 0;
  o.max_queue_frames = 1 << 20;
  o.tls = std::move(tls);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 300000;
  spdlog::set_level(spdlog::level::warn);
  auto dir =
      std::filesystem::temp_directory_path() / ("keel-bench-peers-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto ca = security::create_ca("bench", security::KeyType::kEd25519);
  if (!ca) return 1;
  std::printf(
      "| frames sent at a time | link | CPU µs per frame | frames/s |\n|---|---|---|---|\n");
  for (size_t chunk : {size_t{4}, size_t{1000}}) {
    for (bool tls : {false, true}) {
      asio::io_context io;
      size_t got = 0;
      cluster::PeerTransport t2(io, opts(2, tls ? node_tls(dir, *ca, 2) : nullptr),
                                [&](uint32_t, cluster::MsgType, std::string) { ++got; });
      auto p2 = t2.start();
      if (!p2) return 1;
      auto o1 = opts(1, tls ? node_tls(dir, *ca, 1) : nullptr);
      o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
      cluster::PeerTransport t1(io, o1, {});
      if (!t1.start()) return 1;
      while (!t1.connected(2)) {
        io.run_for(std::chrono::milliseconds(5));
        io.restart();
      }
      const std::string payload(100, 'p');
      const std::clock_t c0 = std::clock();
      const auto w0 = std::chrono::steady_clock::now();
      size_t sent = 0;
      while (got < n) {
        for (size_t i = 0; i < chunk && sent < n; ++i, ++sent)
          t1.send(2, cluster::MsgType::kData, payload);
        io.poll();
        io.restart();
      }
      const double cpu_us = double(std::clock() - c0) / CLOCKS_PER_SEC * 1e6 / double(n);
      const double wall_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      std::printf("| %zu | %s | %.2f | %.0f |\n", chunk, tls ? "mutual TLS" : "plaintext", cpu_us,
                  double(n) / wall_s);
      std::fflush(stdout);
      t1.stop();
      t2.stop();
      io.run_for(std::chrono::milliseconds(20));
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
