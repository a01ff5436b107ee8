// Encryption at rest: the node's data keys, wrapped by a master key.
//
// The keyring file (`<storage.data_dir>/at_rest.keyring`, text, mode 0600) lists every data key
// version and its state; the key bytes are stored only wrapped (AES-256-GCM under the master
// key, see at_rest_codec.h). The master key itself is never stored by keel: it comes from a
// MasterKeyProvider (a key file, an environment variable, or your own).
//
// Versions: 0 stands for plaintext (values written before encryption was turned on); 1.. are
// data keys. The highest version is the current one: every value written is sealed with it.
// `rotate()` adds a new version; `retire(v)` forgets the key of an older version (its wrapped
// bytes leave the file), after which data under it cannot be read: callers check that none
// remains first (storage: at_rest_census). Reading data under a retired or unknown version is
// an error naming the version, never garbage.
//
// Thread safety: find(), current(), state() and the rewrap progress are lock-free and may be
// called from any thread; rotate() and retire() are serialised internally and write the file
// (durably: temporary file, fsync, rename, fsync of the directory) before the change is seen.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "security/at_rest_codec.h"

namespace keel::security::at_rest {

// Where the master key comes from. Implement it to take the key from a KMS, an HSM or a vault.
class MasterKeyProvider {
 public:
  virtual ~MasterKeyProvider() = default;
  // The 32-byte master key, or an error saying what was wrong with its source.
  virtual Result<std::array<uint8_t, kKeyBytes>> master_key() const = 0;
  // The source as an operator knows it, for messages: "security.at_rest.key_file (/etc/keel/master.key)".
  virtual std::string describe() const = 0;
};

// A file holding 64 hex digits (surrounding whitespace ignored) or exactly 32 raw bytes. It must
// not be readable by group or others (mode 0600 or 0400).
std::unique_ptr<MasterKeyProvider> key_file_provider(std::string path);
// An environment variable holding 64 hex digits. `getenv` is injectable for tests.
std::unique_ptr<MasterKeyProvider> env_provider(std::string variable,
                                                std::function<const char*(const char*)> getenv = nullptr);

// Parses master key text (64 hex digits, or 32 raw bytes when `raw_ok`); `what` names the source.
Result<std::array<uint8_t, kKeyBytes>> parse_master_key(std::string_view text, bool raw_ok, const std::string& what);

class Keyring {
 public:
  static constexpr uint32_t kMaxVersions = 1024;  // versions 0..1023
  static constexpr const char* kFileName = "at_rest.keyring";
  enum class State : uint8_t { kUnknown, kReadable, kRetired };

  // Opens `<dir>/at_rest.keyring` with the provider's master key, or creates it (version 1)
  // when missing. Errors name the file and the provider: a wrong master key, a damaged file.
  static Result<std::shared_ptr<Keyring>> open(const std::string& dir, const MasterKeyProvider& master);
  // Whether `dir` holds a keyring (a node started without a master key refuses such a dir).
  static bool exists(const std::string& dir);

  ~Keyring();
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

  const DataKey& current() const { return *current_.load(std::memory_order_acquire); }
  uint32_t current_version() const { return current().version; }
  // The key of `version` if it can be read, else nullptr (version 0 has no key: see state()).
  const DataKey* find(uint32_t version) const {
    return version < kMaxVersions ? slots_[version].load(std::memory_order_acquire) : nullptr;
  }
  State state(uint32_t version) const;
  // Why data under `version` cannot be read (for an unknown or retired version).
  std::string unreadable_reason(uint32_t version) const;

  // Adds version current+1 and makes it current. Returns it.
  Result<uint32_t> rotate();
  // Forgets `version`'s key. Refused for the current version, unknown or already retired ones.
  // Does not look at the data: callers check that nothing is stored under it.
  Status retire(uint32_t version);

  struct VersionInfo {
    uint32_t version;
    State state;
    bool current;
  };
  std::vector<VersionInfo> versions() const;
  const std::string& path() const { return path_; }
  std::string master_source() const {
    std::lock_guard lk(mu_);
    return master_source_;
  }

  // Changes the master key: every data key is wrapped under `next`'s key instead (the file is
  // rewritten durably), and later rotations use it. The node must be given `next` from then on
  // (the old master key no longer opens the keyring). Refused if `next` cannot give its key or
  // gives the one in use; on a failed write nothing changes.
  Status change_master(const MasterKeyProvider& next);

  // ---- background rewrap progress (storage engines report; metrics and retire read) --------
  static constexpr unsigned kMaxRewrapDrivers = 256;
  // One slot per driver (shard); returns its index. Called once per driver at open.
  unsigned register_rewrap_driver();
  void rewrap_started(unsigned driver, uint32_t target, uint64_t partitions_pending);
  void rewrap_partition_done(unsigned driver);
  void rewrap_keys(uint64_t n) { rewrap_keys_total_.fetch_add(n, std::memory_order_relaxed); }
  void rewrap_unreadable(uint64_t n) { rewrap_unreadable_total_.fetch_add(n, std::memory_order_relaxed); }
  struct RewrapProgress {
    uint32_t target = 0;              // the version data is being rewrapped to (the current one)
    bool complete = false;            // every driver finished a pass to the current version
    uint64_t partitions_pending = 0;  // partitions still to rewrap, over all drivers
    uint64_t keys_total = 0;          // values rewritten under a newer key since start
    uint64_t unreadable_total = 0;    // values the rewrap could not read (retired/unknown key)
  };
  RewrapProgress rewrap_progress() const;

 private:
  Keyring() = default;
  Status save_locked(const std::vector<std::pair<uint32_t, State>>& states,
                     const std::vector<const DataKey*>& keys) const;
  Status persist_locked() const;

  std::string dir_, path_, master_source_;
  DataKey master_{};
  mutable std::mutex mu_;  // rotate / retire
  std::vector<std::unique_ptr<DataKey>> owned_;  // every key ever loaded (never freed while running)
  std::array<std::atomic<const DataKey*>, kMaxVersions> slots_{};
  std::array<std::atomic<uint8_t>, kMaxVersions> states_{};  // State
  std::atomic<const DataKey*> current_{nullptr};

  std::atomic<unsigned> drivers_{0};
  struct DriverSlot {
    std::atomic<uint32_t> target{0};
    std::atomic<uint64_t> pending{0};
  };
  std::array<DriverSlot, kMaxRewrapDrivers> driver_slots_{};
  std::atomic<uint64_t> rewrap_keys_total_{0};
  std::atomic<uint64_t> rewrap_unreadable_total_{0};
};

}  // namespace keel::security::at_rest
