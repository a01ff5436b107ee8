#include "runtime/cluster/record_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "base/assert.h"
#include "base/codec.h"
#include "consensus/rabia/codec.h"
#include "security/at_rest_codec.h"
#include "security/keyring.h"

namespace keel::cluster {

namespace {

std::unexpected<Error> io_error(const std::string& what, const std::string& path) {
  return make_error(Errc::kIoError, fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

// Zeros written ahead of the records. They reach the disk with the next sync (which pays for
// them once per chunk); starting their writeback early with sync_file_range made later record
// writes wait on pages under writeback (p99 90 ms instead of 10 in the 3-node bench).
constexpr uint64_t kGrowBytes = 256 << 10;

Status write_all(int fd, std::string_view data, uint64_t at, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(at));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
    at += static_cast<uint64_t>(n);
  }
  return {};
}

// A sealed record's first byte (a plain record starts with the codec's version, 1), and the
// associated data every sealed record is authenticated with.
constexpr uint8_t kSealedMark = 0xE1;
constexpr std::string_view kSealAad = "keel.rabia.log";

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

Status RecordLog::frame(std::string& out, const rabia::Record& r, uint32_t& version) const {
  std::string data = rabia::encode(r);
  KEEL_ASSERT(!data.empty());  // a zero length marks the end of the log
  version = 0;
  if (keyring_) {
    const auto& key = keyring_->current();
    std::string sealed(1, static_cast<char>(kSealedMark));
    if (auto st = security::at_rest::seal(key, kSealAad, {}, data, sealed); !st) return st;
    data = std::move(sealed);
    version = key.version;
  }
  Writer w(out);
  w.u32be(static_cast<uint32_t>(data.size()));
  w.u32be(XXH32(data.data(), data.size(), 0));
  w.raw(data);
  return {};
}

Result<std::vector<rabia::Record>> RecordLog::read_all(std::string& all, size_t& end,
                                                       std::map<uint32_t, uint64_t>& versions) {
  all.clear();
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::pread(fd_, buf, sizeof buf, static_cast<off_t>(all.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("read", path_);
    }
    if (n == 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  std::vector<rabia::Record> out;
  std::string plain;
  size_t pos = 0;
  while (all.size() - pos >= 8) {
    Reader r(std::string_view(all).substr(pos));
    uint32_t len = *r.u32be();
    uint32_t sum = *r.u32be();
    if (len == 0) break;                     // the zeros ahead of the records (or a torn header)
    if (all.size() - pos - 8 < len) break;  // cut short
    std::string_view data(all.data() + pos + 8, len);
    if (XXH32(data.data(), data.size(), 0) != sum) break;
    uint32_t version = 0;
    if (static_cast<uint8_t>(data[0]) == kSealedMark) {
      auto sealed = security::at_rest::parse_sealed(data.substr(1));
      if (!sealed)
        return make_error(Errc::kCorruption, fmt::format("{} at offset {}: {}", path_, pos, sealed.error().message));
      version = sealed->version;
      if (!keyring_)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("{} at offset {}: the record is encrypted at rest (key version {}); set "
                                      "security.at_rest.key_file or security.at_rest.key_env to the master key "
                                      "of this data directory",
                                      path_, pos, version));
      const auto* key = keyring_->find(version);
      if (!key)
        return make_error(Errc::kCorruption, fmt::format("{} at offset {}: sealed under at-rest key version {}: {}",
                                                         path_, pos, version, keyring_->unreadable_reason(version)));
      if (auto st = security::at_rest::open_sealed(*key, *sealed, kSealAad, {}, plain); !st)
        return make_error(Errc::kCorruption, fmt::format("{} at offset {}: sealed under at-rest key version {}: {}",
                                                         path_, pos, version, st.error().message));
      data = plain;
    }
    auto rec = rabia::decode_record(data);
    if (!rec)  // intact bytes that do not decode: not a torn write, a real problem
      return make_error(Errc::kCorruption, fmt::format("{} at offset {}: {}", path_, pos, rec.error().message));
    out.push_back(std::move(*rec));
    ++versions[version];
    pos += 8 + len;
  }
  end = pos;
  return out;
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
  size_t pos = 0;
  std::map<uint32_t, uint64_t> versions;
  auto out = read_all(all, pos, versions);
  if (!out) return out;
  // After the intact records: zeros written ahead (clean), or something else — part of a record
  // that was being written when the process died — which is cut off with the zeros.
  size_t end = all.size();
  while (end > pos && all[end - 1] == '\0') --end;
  allocated_ = all.size();
  if (end > pos) {
    torn_ = end - pos;
    if (::ftruncate(fd_, static_cast<off_t>(pos)) != 0) return io_error("truncate", path_);
    if (::fsync(fd_) != 0) return io_error("fsync", path_);
    allocated_ = pos;
  }
  bytes_ = pos;
  std::lock_guard lock(versions_mu_);
  versions_ = std::move(versions);
  return out;
}

Status RecordLog::reseal() {
  if (!keyring_ || fd_ < 0) return {};
  const uint32_t current = keyring_->current_version();
  {
    std::lock_guard lock(versions_mu_);
    if (versions_.empty() || (versions_.size() == 1 && versions_.begin()->first == current)) return {};
  }
  std::string all;
  size_t end = 0;
  std::map<uint32_t, uint64_t> versions;
  auto records = read_all(all, end, versions);
  if (!records) return std::unexpected(records.error());
  return rewrite(*records);
}

std::map<uint32_t, uint64_t> RecordLog::key_versions() const {
  std::lock_guard lock(versions_mu_);
  return versions_;
}

Status RecordLog::ensure_room(size_t n) {
  if (bytes_ + n <= allocated_) return {};
  uint64_t target = (bytes_ + n + kGrowBytes - 1) / kGrowBytes * kGrowBytes;
  static const std::string zeros(kGrowBytes, '\0');
  while (allocated_ < target) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(target - allocated_, zeros.size()));
    if (auto st = write_all(fd_, std::string_view(zeros).substr(0, k), allocated_, path_); !st) return st;
    allocated_ += k;
  }
  return {};
}

Status RecordLog::append(const rabia::Record& r) {
  std::string out;
  uint32_t version = 0;
  if (auto st = frame(out, r, version); !st) return st;
  if (auto st = ensure_room(out.size()); !st) return st;
  auto st = write_all(fd_, out, bytes_, path_);
  if (!st) return st;
  bytes_ += out.size();
  std::lock_guard lock(versions_mu_);
  ++versions_[version];
  return {};
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
  std::map<uint32_t, uint64_t> versions;
  Status st;
  for (auto& r : keep) {
    uint32_t version = 0;
    if (st = frame(out, r, version); !st) break;
    ++versions[version];
  }
  if (st) st = write_all(fd, out, 0, tmp);
  if (st && ::fsync(fd) != 0) st = io_error("fsync", tmp);
  ::close(fd);
  if (!st) return st;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return io_error("rename", tmp);
  if (auto d = fsync_dir(dir_); !d) return d;
  ::close(fd_);
  fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) return io_error("open", path_);
  bytes_ = out.size();
  allocated_ = out.size();
  ++syncs_;
  std::lock_guard lock(versions_mu_);
  versions_ = std::move(versions);
  return {};
}

}  // namespace keel::cluster
