// The background rewrap's driver: runs the pure RewrapScheduler from an engine's maintenance()
// (on the shard's thread, so a rewrite never races a client write of the same key) and
// reports progress to the keyring (metrics keel_at_rest_rewrap_*).
//
// A pass starts whenever the keyring's current version differs from the pass's target (at
// open, and after `keel keys rotate`). It covers the partitions this shard owns whose
// persisted cursor does not already say "done for this version", resuming a half-done
// partition from its cursor's key: a kill -9 mid-pass costs at most the last step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "security/keyring.h"
#include "storage/engine.h"
#include "storage/rewrap_scheduler.h"

namespace keel::storage {

class RewrapDriver {
 public:
  struct Hooks {
    std::function<bool(uint32_t partition)> owned;
    std::function<std::optional<RewrapCursor>(uint32_t partition)> load_cursor;
    struct Range {
      uint64_t examined = 0;                // live keys looked at (each costs a token)
      uint64_t rewritten = 0;               // of them, rewritten under the current key
      uint64_t unreadable = 0;              // of them, not readable (retired/unknown key)
      std::optional<std::string> next_key;  // nullopt: the partition is done
    };
    // Rewrites (under the current key) at most `max_keys` live keys of `partition` from
    // `start_key` on, and stores `cursor` for the partition after them (the cursor's next_key
    // is filled in by the callee from where it stopped).
    std::function<Result<Range>(uint32_t partition, const std::string& start_key, uint64_t max_keys,
                                uint32_t target)>
        rewrap;
  };
  // `keys_per_s`: this driver's share of security.at_rest.rewrap_keys_per_s.
  RewrapDriver(std::shared_ptr<security::at_rest::Keyring> keyring, uint32_t partitions, double keys_per_s,
               Hooks hooks);

  // Does what the rate allows now. Call from maintenance().
  void tick(int64_t now_ms);

 private:
  void start_pass(int64_t now_ms);

  std::shared_ptr<security::at_rest::Keyring> keyring_;
  uint32_t partitions_;
  Hooks hooks_;
  RewrapScheduler sched_;
  unsigned slot_;
  std::string last_error_;
};

}  // namespace keel::storage
