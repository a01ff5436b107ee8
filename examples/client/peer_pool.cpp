// peer_pool: one pool over several keel nodes. A PeerManager ranks the nodes by health and
// latency, each call goes to a good one, and its outcome is fed back; a node that stops
// answering is skipped until a probe finds it back.
//   client_peer_pool host:port [host:port ...]
#include <keel/client/peer_pool.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace keel::client;
using keel::sdk::PeerSpec;

// doc:begin client-peer-pool
asio::awaitable<int> run(std::vector<PeerSpec> nodes) {
  auto ex = co_await asio::this_coro::executor;
  PeerPoolOptions opts;
  opts.pool.max_size = 8;        // per node
  opts.peers.down_after = 3;     // failures in a row before a node is down
  opts.probe_interval = std::chrono::seconds(1);  // PING nodes that are not up
  auto pool = PeerPool::create(ex, std::move(nodes), opts);
  if (!pool) {
    std::fprintf(stderr, "peers: %s\n", pool.error().to_string().c_str());
    co_return 1;
  }
  int ok = 0;
  for (int i = 0; i < 100; ++i) {
    CallOptions call;
    call.required = {"write"};  // only nodes with this capability
    call.idempotent = true;     // may be re-sent to another node if this one fails mid-call
    std::vector<std::string> cmd{"SET", "visit:" + std::to_string(i), "1"};
    auto r = co_await (*pool)->command(std::move(cmd), std::move(call));
    if (r && !r->is_error()) ++ok;
  }
  for (const PeerPoolPeer& p : (*pool)->peers())
    std::printf("%s %s calls=%llu\n", p.view.id.c_str(),
                std::string(keel::sdk::peer_status_name(p.view.status)).c_str(),
                static_cast<unsigned long long>(p.calls));
  std::printf("ok=%d\n", ok);
  (*pool)->close();
  co_return ok == 100 ? 0 : 1;
}
// doc:end

int main(int argc, char** argv) {
  std::vector<PeerSpec> nodes;
  for (int i = 1; i < argc; ++i) {
    auto ep = parse_endpoint(argv[i]);
    if (!ep) {
      std::fprintf(stderr, "%s: %s\n", argv[i], ep.error().to_string().c_str());
      return 2;
    }
    nodes.push_back({argv[i], ep->host, ep->port, {"read", "write"}});
  }
  if (nodes.empty()) {
    std::fprintf(stderr, "usage: %s host:port [host:port ...]\n", argv[0]);
    return 2;
  }
  asio::io_context io;
  auto done = asio::co_spawn(io, run(std::move(nodes)), asio::use_future);
  io.run();
  return done.get();
}
