#include "keel_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace keel::testing {

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

KeelProcess::KeelProcess(std::vector<std::string> args, std::string data_dir)
    : args_(std::move(args)), data_dir_(std::move(data_dir)) {
  if (data_dir_.empty()) {
    char tmpl[] = "/tmp/keel-cxx-XXXXXX";
    data_dir_ = mkdtemp(tmpl);
    own_dir_ = true;
  }
  char log_tmpl[] = "/tmp/keel-cxx-log-XXXXXX";
  int fd = mkstemp(log_tmpl);
  close(fd);
  log_path_ = log_tmpl;
}

KeelProcess::~KeelProcess() {
  stop();
  std::error_code ec;
  std::filesystem::remove(log_path_, ec);
  if (own_dir_) std::filesystem::remove_all(data_dir_, ec);
}

bool KeelProcess::start(int timeout_ms) {
  const char* bin = std::getenv("KEEL_BIN");
  std::string path = bin ? bin : "build/tools/keel/keel";
  std::vector<std::string> argv = {path, "serve", "--port", "0", "--http-port", "0", "--data-dir", data_dir_};
  argv.insert(argv.end(), args_.begin(), args_.end());
  // Truncate the log so a restart does not see the previous ready line.
  std::ofstream(log_path_, std::ios::trunc).close();
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_APPEND);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  std::regex ready(R"(ready: RESP on [^:]+:(\d+), HTTP on [^:]+:(\d+))");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    std::string out = output();
    if (std::regex_search(out, m, ready)) {
      resp_port_ = std::stoi(m[1]);
      http_port_ = std::stoi(m[2]);
      return true;
    }
    if (!running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool KeelProcess::running() const {
  if (pid_ <= 0) return false;
  int status;
  return waitpid(pid_, &status, WNOHANG) == 0;
}

void KeelProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void KeelProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string KeelProcess::output() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace keel::testing
