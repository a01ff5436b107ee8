// The runtime shell of Capacitor<T> (keel/capacitor.h): a file source and an inotify watcher.
// This is the only part of reactive configuration that touches files, threads and the clock.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <thread>

#include "keel/capacitor.h"
#include "keel/clock.h"

namespace keel::sdk {

// A file, read whole; refuses files larger than max_bytes.
class FileSource final : public ConfigSource {
 public:
  explicit FileSource(std::string path, size_t max_bytes = 1 << 20)
      : path_(std::move(path)), max_bytes_(max_bytes) {}
  std::expected<std::string, ConfigError> read() override;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  size_t max_bytes_;
};

// The runtime shell: watches a file with inotify (its directory, so editors that write a new
// file and rename it over the old one are seen too) and drives a Capacitor from its own thread.
// Loads once at start, then after every debounced change. Stops and joins in stop() or the
// destructor. The Capacitor must outlive the watcher.
class ConfigFileWatcher {
 public:
  static std::expected<std::unique_ptr<ConfigFileWatcher>, ConfigError> start(
      CapacitorCore& target, std::string path, const Clock& clock = SteadyClock::instance());
  ~ConfigFileWatcher();
  ConfigFileWatcher(const ConfigFileWatcher&) = delete;
  ConfigFileWatcher& operator=(const ConfigFileWatcher&) = delete;

  void stop();
  // Loads performed so far (including the first); for tests and diagnostics.
  uint64_t loads() const noexcept { return loads_.load(std::memory_order_acquire); }

 private:
  ConfigFileWatcher(CapacitorCore& target, std::string path, const Clock& clock, int inotify_fd,
                    int stop_fd);
  void run();

  CapacitorCore& target_;
  FileSource source_;
  std::string name_;  // the file's name inside its directory
  const Clock& clock_;
  int inotify_fd_;
  int stop_fd_;
  std::atomic<uint64_t> loads_{0};
  std::thread thread_;
};

}  // namespace keel::sdk
