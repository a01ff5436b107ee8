// A loopback TCP port nothing listens on, for the cluster tests' nodes. It is drawn from below
// the kernel's ephemeral range (32768 and up by default, /proc/sys/net/ipv4/ip_local_port_range):
// a port the kernel hands out as ephemeral can be taken by one node's outgoing connection to a
// peer before the node meant to listen on it binds it ("cannot listen for peers on
// 127.0.0.1:54975: Address already in use", seen in a full run). Never the same port twice in
// one test process.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <random>
#include <set>

namespace keel::cluster::testing {

inline uint16_t free_port() {
  static std::mutex mu;
  static std::set<uint16_t> handed;
  static std::mt19937 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const auto port = static_cast<uint16_t>(20000 + rng() % 12000);
    if (handed.count(port)) continue;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (free) {
      handed.insert(port);
      return port;
    }
  }
  return 0;  // none found: the node binds any port and the test fails naming it
}

}  // namespace keel::cluster::testing
