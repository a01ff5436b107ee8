#include "runtime/cluster/record_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "base/codec.h"
#include "consensus/rabia/codec.h"

namespace keel::cluster {

namespace {

std::unexpected<Error> io_error(const std::string& what, const std::string& path) {
  return make_error(Errc::kIoError, fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

void frame(std::string& out, const rabia::Record& r) {
  std::string data = rabia::encode(r);
  Writer w(out);
  w.u32be(static_cast<uint32_t>(data.size()));
  w.u32be(XXH32(data.data(), data.size(), 0));
  w.raw(data);
}

Status fsync_dir(const std::string& dir) {
  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (d < 0) return io_error("open directory", dir);
  int rc = ::fsync(d);
  ::close(d);
  if (rc != 0) return io_error("fsync directory", dir);
  return {};
}

}  // namespace

RecordLog::~RecordLog() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::vector<rabia::Record>> RecordLog::open(const std::string& dir) {
  dir_ = dir;
  path_ = dir + "/rabia.log";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(Errc::kIoError, fmt::format("cannot create {}: {}", dir, ec.message()));
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return io_error("open", path_);
  std::string all;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("read", path_);
    }
    if (n == 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  std::vector<rabia::Record> out;
  size_t pos = 0;
  while (all.size() - pos >= 8) {
    Reader r(std::string_view(all).substr(pos));
    uint32_t len = *r.u32be();
    uint32_t sum = *r.u32be();
    if (all.size() - pos - 8 < len) break;  // cut short
    std::string_view data(all.data() + pos + 8, len);
    if (XXH32(data.data(), data.size(), 0) != sum) break;
    auto rec = rabia::decode_record(data);
    if (!rec)  // intact bytes that do not decode: not a torn write, a real problem
      return make_error(Errc::kCorruption, fmt::format("{} at offset {}: {}", path_, pos, rec.error().message));
    out.push_back(std::move(*rec));
    pos += 8 + len;
  }
  if (pos < all.size()) {
    torn_ = all.size() - pos;
    if (::ftruncate(fd_, static_cast<off_t>(pos)) != 0) return io_error("truncate", path_);
    if (::fsync(fd_) != 0) return io_error("fsync", path_);
  }
  if (::lseek(fd_, static_cast<off_t>(pos), SEEK_SET) < 0) return io_error("seek", path_);
  bytes_ = pos;
  return out;
}

Status RecordLog::append(const rabia::Record& r) {
  std::string out;
  frame(out, r);
  auto st = write_all(fd_, out, path_);
  if (st) bytes_ += out.size();
  return st;
}

Status RecordLog::sync() {
  if (::fdatasync(fd_) != 0) return io_error("fdatasync", path_);
  ++syncs_;
  return {};
}

Status RecordLog::rewrite(const std::vector<rabia::Record>& keep) {
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("open", tmp);
  std::string out;
  for (auto& r : keep) frame(out, r);
  auto st = write_all(fd, out, tmp);
  if (st && ::fsync(fd) != 0) st = io_error("fsync", tmp);
  ::close(fd);
  if (!st) return st;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return io_error("rename", tmp);
  if (auto d = fsync_dir(dir_); !d) return d;
  ::close(fd_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return io_error("open", path_);
  bytes_ = out.size();
  ++syncs_;
  return {};
}

}  // namespace keel::cluster
