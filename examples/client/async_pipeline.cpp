// async_pipeline: the asynchronous client with C++20 coroutines; 100 commands in flight on one
// connection, replies matched in order.
//   client_async [host] [port]      (default 127.0.0.1 6380)
#include <keel/client/async.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace asio = boost::asio;
using keel::client::Connection;
using keel::client::Endpoint;

// doc:begin client-async
asio::awaitable<int> run(Endpoint ep) {
  auto ex = co_await asio::this_coro::executor;
  auto conn = co_await Connection::connect(ex, ep);
  if (!conn) {
    std::fprintf(stderr, "connect: %s\n", conn.error().to_string().c_str());
    co_return 1;
  }
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 100; ++i) cmds.push_back({"SET", "key:" + std::to_string(i), std::to_string(i * i)});
  cmds.push_back({"GET", "key:9"});
  auto replies = co_await (*conn)->pipeline(std::move(cmds));
  for (auto& r : replies)
    if (!r || r->is_error()) co_return 1;
  std::printf("protocol=RESP%d key:9=%s\n", (*conn)->protocol(), replies.back()->str.c_str());
  co_return 0;
}
// doc:end

int main(int argc, char** argv) {
  Endpoint ep{argc > 1 ? argv[1] : "127.0.0.1", static_cast<uint16_t>(argc > 2 ? std::atoi(argv[2]) : 6380)};
  asio::io_context io;
  int rc = 1;
  asio::co_spawn(io, run(ep), [&](std::exception_ptr, int r) { rc = r; });
  io.run();
  return rc;
}
