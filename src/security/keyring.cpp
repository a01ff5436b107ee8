#include "security/keyring.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/assert.h"

namespace keel::security::at_rest {
namespace {

constexpr std::string_view kHeader = "keel-at-rest-keyring 1";
constexpr std::string_view kWrapAad = "keel at-rest data key";

std::string version_aad(uint32_t v) { return fmt::format("v{}", v); }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

class FileProvider final : public MasterKeyProvider {
 public:
  explicit FileProvider(std::string path) : path_(std::move(path)) {}
  Result<std::array<uint8_t, kKeyBytes>> master_key() const override {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("security.at_rest.key_file: cannot read '{}': {}; allowed: a file holding the "
                                    "32-byte master key as 64 hex digits (or 32 raw bytes), mode 0600",
                                    path_, std::strerror(errno)));
    if ((st.st_mode & 077) != 0)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("security.at_rest.key_file: '{}' is readable by group or others (mode {:o}); "
                                    "allowed: mode 0600 or 0400 (chmod 600 '{}')",
                                    path_, st.st_mode & 0777, path_));
    std::ifstream in(path_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in.good() && !in.eof())
      return make_error(Errc::kInvalidArgument, fmt::format("security.at_rest.key_file: cannot read '{}'", path_));
    std::string text = ss.str();
    auto k = parse_master_key(text, true, describe());
    OPENSSL_cleanse(text.data(), text.size());
    return k;
  }
  std::string describe() const override { return fmt::format("security.at_rest.key_file ({})", path_); }

 private:
  std::string path_;
};

class EnvProvider final : public MasterKeyProvider {
 public:
  EnvProvider(std::string var, std::function<const char*(const char*)> getenv)
      : var_(std::move(var)), getenv_(std::move(getenv)) {}
  Result<std::array<uint8_t, kKeyBytes>> master_key() const override {
    const char* v = getenv_ ? getenv_(var_.c_str()) : std::getenv(var_.c_str());
    if (v == nullptr || *v == '\0')
      return make_error(Errc::kInvalidArgument,
                        fmt::format("security.at_rest.key_env: the environment variable {} is not set; allowed: "
                                    "64 hex digits (the 32-byte master key, e.g. from `openssl rand -hex 32`)",
                                    var_));
    return parse_master_key(v, false, describe());
  }
  std::string describe() const override {
    return fmt::format("security.at_rest.key_env (environment variable {})", var_);
  }

 private:
  std::string var_;
  std::function<const char*(const char*)> getenv_;
};

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

Result<std::array<uint8_t, kKeyBytes>> parse_master_key(std::string_view text, bool raw_ok, const std::string& what) {
  std::array<uint8_t, kKeyBytes> key{};
  if (raw_ok && text.size() == kKeyBytes) {
    std::memcpy(key.data(), text.data(), kKeyBytes);
    return key;
  }
  std::string hex = trim(text), bytes;
  if (hex.size() != 2 * kKeyBytes || !from_hex(hex, bytes)) {
    OPENSSL_cleanse(hex.data(), hex.size());
    return make_error(Errc::kInvalidArgument,
                      fmt::format("{}: the master key is not 64 hex digits (it has {} characters{}); allowed: "
                                  "64 hex digits{} (e.g. `openssl rand -hex 32`)",
                                  what, hex.size(), hex.size() == 2 * kKeyBytes ? ", not all hex" : "",
                                  raw_ok ? " or exactly 32 raw bytes" : ""));
  }
  std::memcpy(key.data(), bytes.data(), kKeyBytes);
  OPENSSL_cleanse(hex.data(), hex.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

std::unique_ptr<MasterKeyProvider> key_file_provider(std::string path) {
  return std::make_unique<FileProvider>(std::move(path));
}

std::unique_ptr<MasterKeyProvider> env_provider(std::string variable, std::function<const char*(const char*)> getenv) {
  return std::make_unique<EnvProvider>(std::move(variable), std::move(getenv));
}

bool Keyring::exists(const std::string& dir) {
  struct stat st {};
  return ::stat((dir + "/" + kFileName).c_str(), &st) == 0;
}

Keyring::~Keyring() {
  OPENSSL_cleanse(master_.bytes.data(), master_.bytes.size());
  for (auto& k : owned_) OPENSSL_cleanse(k->bytes.data(), k->bytes.size());
}

Result<std::shared_ptr<Keyring>> Keyring::open(const std::string& dir, const MasterKeyProvider& master) {
  auto mk = master.master_key();
  if (!mk) return std::unexpected(mk.error());
  std::shared_ptr<Keyring> kr(new Keyring());
  kr->dir_ = dir;
  kr->path_ = dir + "/" + kFileName;
  kr->master_source_ = master.describe();
  kr->master_.version = 0;
  kr->master_.bytes = *mk;
  for (auto& s : kr->states_) s.store(static_cast<uint8_t>(State::kUnknown));
  for (auto& s : kr->slots_) s.store(nullptr);

  std::ifstream in(kr->path_);
  if (!in) {
    if (exists(dir))
      return make_error(Errc::kIoError, fmt::format("cannot read the at-rest keyring '{}'", kr->path_));
    // A new keyring: plaintext (version 0, any data written before) stays readable until
    // rewrapped and retired; version 1 is the first data key.
    auto k = std::make_unique<DataKey>();
    k->version = 1;
    if (RAND_bytes(k->bytes.data(), static_cast<int>(kKeyBytes)) != 1)
      return make_error(Errc::kInternal, "cannot draw a data key: OpenSSL RAND_bytes failed");
    kr->states_[0].store(static_cast<uint8_t>(State::kReadable));
    kr->states_[1].store(static_cast<uint8_t>(State::kReadable));
    kr->slots_[1].store(k.get());
    kr->current_.store(k.get());
    kr->owned_.push_back(std::move(k));
    std::lock_guard lk(kr->mu_);
    if (auto st = kr->persist_locked(); !st) return std::unexpected(st.error());
    return kr;
  }
  std::string line;
  int lineno = 0;
  auto bad = [&](std::string_view why) {
    return make_error(Errc::kCorruption,
                      fmt::format("the at-rest keyring '{}' is damaged at line {}: {}", kr->path_, lineno, why));
  };
  const DataKey* current = nullptr;
  while (std::getline(in, line)) {
    ++lineno;
    if (lineno == 1) {
      if (trim(line) != kHeader) return bad(fmt::format("expected '{}'", kHeader));
      continue;
    }
    if (trim(line).empty()) continue;
    std::istringstream ls(line);
    std::string word, state, hex;
    uint64_t v = 0;
    if (!(ls >> word >> v >> state) || word != "key" || v >= kMaxVersions)
      return bad("expected 'key VERSION readable|retired [WRAPPED]'");
    ls >> hex;
    if (kr->states_[v].load() != static_cast<uint8_t>(State::kUnknown)) return bad("a version listed twice");
    if (state == "retired") {
      kr->states_[v].store(static_cast<uint8_t>(State::kRetired));
      continue;
    }
    if (state != "readable") return bad("a state other than readable or retired");
    kr->states_[v].store(static_cast<uint8_t>(State::kReadable));
    if (v == 0) continue;  // plaintext: no key
    std::string sealed;
    if (!from_hex(hex, sealed)) return bad("the wrapped key is not hex");
    auto view = parse_sealed(sealed);
    if (!view || view->version != 0) return bad("the wrapped key is malformed");
    std::string plain;
    if (auto st = open_sealed(kr->master_, *view, kWrapAad, version_aad(static_cast<uint32_t>(v)), plain);
        !st || plain.size() != kKeyBytes) {
      OPENSSL_cleanse(plain.data(), plain.size());
      return make_error(Errc::kInvalidArgument,
                        fmt::format("the master key from {} does not open data key version {} in '{}' "
                                    "(authentication failed): it is not the master key this data directory was "
                                    "encrypted with; allowed: the master key given when the keyring was created",
                                    kr->master_source_, v, kr->path_));
    }
    auto k = std::make_unique<DataKey>();
    k->version = static_cast<uint32_t>(v);
    std::memcpy(k->bytes.data(), plain.data(), kKeyBytes);
    OPENSSL_cleanse(plain.data(), plain.size());
    kr->slots_[v].store(k.get());
    if (!current || k->version > current->version) current = k.get();
    kr->owned_.push_back(std::move(k));
  }
  if (lineno == 0) return bad("the file is empty");
  for (uint32_t v = 1; v < kMaxVersions; ++v)
    if (current && v > current->version && kr->states_[v].load() != static_cast<uint8_t>(State::kUnknown))
      return bad(fmt::format("version {} is retired but newer than the newest readable key {}", v, current->version));
  if (!current) return bad("no readable data key (the current key can never be retired)");
  kr->current_.store(current);
  return kr;
}

Keyring::State Keyring::state(uint32_t version) const {
  if (version >= kMaxVersions) return State::kUnknown;
  return static_cast<State>(states_[version].load(std::memory_order_acquire));
}

std::string Keyring::unreadable_reason(uint32_t version) const {
  switch (state(version)) {
    case State::kRetired:
      return version == 0 ? "plaintext data was retired (keel keys retire 0)"
                          : fmt::format("at-rest key version {} is retired (keel keys retire {}); its key was deleted",
                                        version, version);
    case State::kReadable: return "";
    case State::kUnknown: break;
  }
  return fmt::format("at-rest key version {} is unknown to this node's keyring {} (versions 0..{} known)", version,
                     path_, current_version());
}

Status Keyring::persist_locked() const {
  std::string out(kHeader);
  out += "\n";
  for (uint32_t v = 0; v <= current_version(); ++v) {
    auto s = state(v);
    if (s == State::kUnknown) continue;
    if (s == State::kRetired) {
      out += fmt::format("key {} retired\n", v);
      continue;
    }
    if (v == 0) {
      out += "key 0 readable\n";
      continue;
    }
    const DataKey* k = find(v);
    KEEL_ASSERT(k != nullptr);
    std::string sealed;
    std::string_view kb(reinterpret_cast<const char*>(k->bytes.data()), kKeyBytes);
    if (auto st = seal(master_, kWrapAad, version_aad(v), kb, sealed); !st) return st;
    out += fmt::format("key {} readable {}\n", v, to_hex(sealed));
  }
  const std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(Errc::kIoError, fmt::format("cannot write the at-rest keyring '{}': {}", tmp, std::strerror(errno)));
  bool ok = write_all(fd, out) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0)
    return make_error(Errc::kIoError,
                      fmt::format("cannot write the at-rest keyring '{}': {}", path_, std::strerror(errno)));
  int d = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d >= 0) {
    (void)::fsync(d);
    ::close(d);
  }
  return {};
}

Result<uint32_t> Keyring::rotate() {
  std::lock_guard lk(mu_);
  const uint32_t next = current_version() + 1;
  if (next >= kMaxVersions)
    return make_error(Errc::kLimitExceeded,
                      fmt::format("the keyring holds versions up to {}; allowed: at most {} versions", next - 1,
                                  kMaxVersions));
  auto k = std::make_unique<DataKey>();
  k->version = next;
  if (RAND_bytes(k->bytes.data(), static_cast<int>(kKeyBytes)) != 1)
    return make_error(Errc::kInternal, "cannot draw a data key: OpenSSL RAND_bytes failed");
  // Durable before anything is sealed with it.
  slots_[next].store(k.get());
  states_[next].store(static_cast<uint8_t>(State::kReadable));
  auto* prev = current_.exchange(k.get());
  if (auto st = persist_locked(); !st) {
    current_.store(prev);
    states_[next].store(static_cast<uint8_t>(State::kUnknown));
    slots_[next].store(nullptr);
    return std::unexpected(st.error());
  }
  owned_.push_back(std::move(k));
  return next;
}

Status Keyring::change_master(const MasterKeyProvider& next) {
  auto mk = next.master_key();
  if (!mk) return std::unexpected(mk.error());
  std::lock_guard lk(mu_);
  if (CRYPTO_memcmp(mk->data(), master_.bytes.data(), kKeyBytes) == 0) {
    OPENSSL_cleanse(mk->data(), mk->size());
    return make_error(Errc::kInvalidArgument,
                      fmt::format("the master key from {} is the one in use ({}); allowed: a new 32-byte key, e.g. "
                                  "from `openssl rand -hex 32`",
                                  next.describe(), master_source_));
  }
  DataKey previous = master_;
  master_.bytes = *mk;
  OPENSSL_cleanse(mk->data(), mk->size());
  auto st = persist_locked();
  if (!st) master_ = previous;
  else master_source_ = next.describe();
  OPENSSL_cleanse(previous.bytes.data(), previous.bytes.size());
  return st;
}

Status Keyring::retire(uint32_t version) {
  std::lock_guard lk(mu_);
  if (version == current_version())
    return make_error(Errc::kInvalidArgument,
                      fmt::format("version {} is the current key; allowed: an older readable version (rotate first)",
                                  version));
  auto s = state(version);
  if (s == State::kRetired)
    return make_error(Errc::kInvalidArgument, fmt::format("version {} is already retired", version));
  if (s == State::kUnknown)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("version {} is not in the keyring; allowed: 0..{}", version, current_version()));
  const DataKey* k = slots_[version].load();
  states_[version].store(static_cast<uint8_t>(State::kRetired));
  slots_[version].store(nullptr);
  if (auto st = persist_locked(); !st) {
    states_[version].store(static_cast<uint8_t>(State::kReadable));
    slots_[version].store(k);
    return st;
  }
  return {};
}

std::vector<Keyring::VersionInfo> Keyring::versions() const {
  std::vector<VersionInfo> out;
  const uint32_t cur = current_version();
  for (uint32_t v = 0; v <= cur; ++v)
    if (auto s = state(v); s != State::kUnknown) out.push_back({v, s, v == cur});
  return out;
}

unsigned Keyring::register_rewrap_driver() {
  unsigned i = drivers_.fetch_add(1);
  KEEL_ASSERT_MSG(i < kMaxRewrapDrivers, "more rewrap drivers than Keyring::kMaxRewrapDrivers");
  return i;
}

void Keyring::rewrap_started(unsigned driver, uint32_t target, uint64_t partitions_pending) {
  driver_slots_[driver].pending.store(partitions_pending, std::memory_order_relaxed);
  driver_slots_[driver].target.store(target, std::memory_order_release);
}

void Keyring::rewrap_partition_done(unsigned driver) {
  auto& p = driver_slots_[driver].pending;
  if (p.load(std::memory_order_relaxed) > 0) p.fetch_sub(1, std::memory_order_relaxed);
}

Keyring::RewrapProgress Keyring::rewrap_progress() const {
  RewrapProgress r;
  r.target = current_version();
  r.complete = true;
  const unsigned n = drivers_.load();
  for (unsigned i = 0; i < n && i < kMaxRewrapDrivers; ++i) {
    const uint32_t t = driver_slots_[i].target.load(std::memory_order_acquire);
    const uint64_t p = driver_slots_[i].pending.load(std::memory_order_relaxed);
    if (t != r.target || p > 0) r.complete = false;
    if (t == r.target) r.partitions_pending += p;
  }
  if (n == 0) r.complete = false;
  r.keys_total = rewrap_keys_total_.load(std::memory_order_relaxed);
  r.unreadable_total = rewrap_unreadable_total_.load(std::memory_order_relaxed);
  return r;
}

}  // namespace keel::security::at_rest
