// The composition root: builds a node from a Config (engines, shards, RESP and HTTP servers,
// maintenance timers), runs it, and shuts it down cleanly.
#pragma once

#include <memory>

#include "base/result.h"
#include "node/config.h"

namespace keel::node {

inline constexpr const char* kVersion = "0.1.0";
// The Redis version keel reports to clients (HELLO, INFO): the command set it follows.
inline constexpr const char* kRedisCompatVersion = "7.0.0";

class Node {
 public:
  explicit Node(Config config);
  ~Node();

  // Opens storage, binds listeners and starts the shard threads.
  Status start();
  // Blocks until SIGINT/SIGTERM (or request_stop), then shuts down: stop accepting, answer
  // in-flight requests, flush engines, join threads.
  void run_until_signal();
  void request_stop();
  void stop();

  int resp_port() const;
  int http_port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::node
