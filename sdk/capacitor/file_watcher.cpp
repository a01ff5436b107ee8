// The runtime shell of Capacitor: inotify + one thread. Everything that decides (debounce,
// parsing, state) is in CapacitorCore; this file only turns file-system events into
// notify_changed() and deadlines into poll().
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "keel/config_file_watcher.h"

namespace keel::sdk {

namespace {
std::unexpected<ConfigError> fail(ConfigErrc code, std::string message) {
  return std::unexpected(ConfigError{code, std::move(message)});
}

// Wake up at least this often even without events, so a missed event cannot stall forever.
constexpr int kMaxWaitMs = 1000;
}  // namespace

std::expected<std::string, ConfigError> FileSource::read() {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return fail(ConfigErrc::kRead, "cannot open " + path_);
  std::string out;
  char buf[16384];
  while (in) {
    in.read(buf, sizeof buf);
    out.append(buf, static_cast<size_t>(in.gcount()));
    if (out.size() > max_bytes_) {
      return fail(ConfigErrc::kTooLarge,
                  path_ + " is larger than " + std::to_string(max_bytes_) + " bytes");
    }
  }
  if (in.bad()) return fail(ConfigErrc::kRead, "error reading " + path_);
  return out;
}

std::expected<std::unique_ptr<ConfigFileWatcher>, ConfigError> ConfigFileWatcher::start(
    CapacitorCore& target, std::string path, const Clock& clock) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  if (!p.has_filename()) {
    return std::unexpected(ConfigError{ConfigErrc::kRead, "'" + path + "' names no file"});
  }
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (ifd < 0) {
    return std::unexpected(
        ConfigError{ConfigErrc::kRead, std::string("inotify_init1: ") + std::strerror(errno)});
  }
  const uint32_t mask = IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                        IN_DELETE | IN_ATTRIB;
  if (inotify_add_watch(ifd, dir.c_str(), mask) < 0) {
    const int err = errno;
    ::close(ifd);
    return std::unexpected(ConfigError{ConfigErrc::kRead, "cannot watch directory " +
                                                              dir.string() + ": " +
                                                              std::strerror(err)});
  }
  const int sfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (sfd < 0) {
    const int err = errno;
    ::close(ifd);
    return std::unexpected(
        ConfigError{ConfigErrc::kRead, std::string("eventfd: ") + std::strerror(err)});
  }
  std::unique_ptr<ConfigFileWatcher> w(
      new ConfigFileWatcher(target, std::move(path), clock, ifd, sfd));
  w->thread_ = std::thread([raw = w.get()] { raw->run(); });
  return w;
}

ConfigFileWatcher::ConfigFileWatcher(CapacitorCore& target, std::string path, const Clock& clock,
                                     int inotify_fd, int stop_fd)
    : target_(target),
      source_(path, target.options().max_bytes),
      name_(std::filesystem::path(path).filename().string()),
      clock_(clock),
      inotify_fd_(inotify_fd),
      stop_fd_(stop_fd) {}

ConfigFileWatcher::~ConfigFileWatcher() {
  stop();
  ::close(inotify_fd_);
  ::close(stop_fd_);
}

void ConfigFileWatcher::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  ssize_t n = ::write(stop_fd_, &one, sizeof one);
  (void)n;  // an eventfd write of 1 cannot fail short of overflow
  thread_.join();
}

void ConfigFileWatcher::run() {
  target_.load(source_.read(), clock_.now());
  loads_.fetch_add(1, std::memory_order_acq_rel);
  alignas(inotify_event) char buf[8192];
  for (;;) {
    int timeout_ms = kMaxWaitMs;
    if (auto deadline = target_.next_deadline()) {
      const auto left = *deadline - clock_.now();
      const auto left_ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left_ms, 0, kMaxWaitMs));
    }
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int rc = ::poll(fds, 2, timeout_ms);
    if (rc < 0 && errno != EINTR) return;  // cannot wait any more: stop watching
    if (fds[1].revents != 0) return;
    if (fds[0].revents != 0) {
      bool ours = false;
      for (;;) {
        const ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          if (ev->len > 0 && name_ == ev->name) ours = true;
          if (ev->mask & IN_Q_OVERFLOW) ours = true;  // events lost: assume ours was one
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
      if (ours) target_.notify_changed(clock_.now());
    }
    if (target_.poll(source_, clock_.now())) loads_.fetch_add(1, std::memory_order_acq_rel);
  }
}

}  // namespace keel::sdk
