// Starts a real `keel serve` process on free loopback ports for C++ integration tests, and
// stops it. The binary's path comes from the KEEL_BIN environment variable (set by ctest).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::testing {

// A loopback TCP port that was free a moment ago (bound to port 0, then closed).
uint16_t free_port();

class KeelProcess {
 public:
  // `args` are extra flags for `keel serve`; ports are chosen by the kernel (port 0) and a
  // fresh temporary data directory is used unless `data_dir` is given.
  explicit KeelProcess(std::vector<std::string> args = {}, std::string data_dir = "");
  ~KeelProcess();
  KeelProcess(const KeelProcess&) = delete;
  KeelProcess& operator=(const KeelProcess&) = delete;

  // Starts the process and waits until it prints its ready line (at most `timeout_ms`).
  // Returns false (with what it printed in output()) if it exits or does not become ready.
  bool start(int timeout_ms = 20000);
  void stop();   // SIGTERM and wait
  void kill9();  // SIGKILL and wait
  bool running() const;

  int resp_port() const { return resp_port_; }
  int http_port() const { return http_port_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string output() const;

 private:
  std::vector<std::string> args_;
  std::string data_dir_;
  bool own_dir_ = false;
  std::string log_path_;
  int pid_ = -1;
  int resp_port_ = 0;
  int http_port_ = 0;
};

}  // namespace keel::testing
