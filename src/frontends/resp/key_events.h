// What one shard knows about keys that clients wait on: the keys WATCHed by transactions, the
// clients blocked on keys (BLPOP, BZPOPMIN, ...) in the order they blocked, and the shard's
// gate, which a transaction or an atomic multi-key command closes while it runs.
//
// One KeyEvents per shard, used only on that shard's thread (no locking inside). It is the
// engine's key observer (storage::Engine::KeyObserver): every change of a key marks the
// transactions watching it dirty and the key ready for the clients blocked on it. The server
// (server.cpp) serves ready keys after each command and when a gate opens.
//
// Watch semantics are Redis 7's (multi.c): a change or deletion of a watched key makes EXEC
// fail; a key that was absent (or already expired) when WATCHed and is then removed by expiry
// is no change; FLUSHALL touches only the watched keys it removes.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dht/wait.h"
#include "storage/engine.h"

namespace keel::resp {

struct CommandSpec;

// A transaction's "some watched key changed" flag: set by the shards holding its keys, read by
// the connection at EXEC (after it closed those shards' gates, so no write can race the read).
struct WatchFlag {
  std::atomic<bool> dirty{false};
};

// A client blocked on keys. Shared by every shard it waits on; whichever claims it first
// (try_claim) serves it — or the client itself claims it when its timeout passes or it
// disconnects. The server derives from it to hold its timer and wakes it after serving.
struct BlockedClient {
  virtual ~BlockedClient() = default;
  bool try_claim() {
    bool expected = false;
    return claimed_.compare_exchange_strong(expected, true);
  }
  bool claimed() const { return claimed_.load(); }

  // The blocking command, owned (the request buffer it came from is reused).
  std::vector<std::string> argv;
  const CommandSpec* spec = nullptr;
  int protocol = 2;
  unsigned conn_shard = 0;
  // BLMOVE whose destination lives on another shard: the serving shard only claims the client
  // and wakes it, and the client runs the move itself (atomically across the two shards).
  bool wake_only = false;

  // Filled by the serving shard before wake(); read by the client after it woke.
  std::string reply;
  std::vector<dht::Wait> waits;  // cluster: write quorum to wait for
  std::optional<std::string> write_error;

 private:
  std::atomic<bool> claimed_{false};
};

class KeyEvents final : public storage::Engine::KeyObserver {
 public:
  explicit KeyEvents(uint32_t partitions = 1024) : partitions_(partitions) {}
  void set_partitions(uint32_t partitions) { partitions_ = partitions; }

  // --- WATCH
  // `existed`: whether the key was live when WATCHed (an absent or expired key's removal by
  // expiry is no change).
  void watch(std::string_view key, std::shared_ptr<WatchFlag> flag, bool existed);
  void unwatch(std::string_view key, const WatchFlag* flag);
  size_t watched_keys() const { return watches_.size(); }

  // --- blocking
  void block(std::string_view key, std::shared_ptr<BlockedClient> client);
  void unblock(std::string_view key, const BlockedClient* client);
  size_t blocked_keys() const { return blocked_.size(); }
  // The clients blocked on `key`, first blocked first (null if none). Claimed clients may still
  // be in it; the caller drops them.
  std::deque<std::shared_ptr<BlockedClient>>* waiters(std::string_view key);
  // Marks `key` ready if a client is blocked on it.
  void mark_ready(std::string_view key);
  bool has_ready() const { return !ready_.empty(); }
  std::optional<std::string> next_ready();
  // Called when the first key becomes ready (the server schedules serving).
  std::function<void()> on_ready;

  // --- the shard's gate: while `held`, other clients' commands on this shard wait in
  // `waiting` (in arrival order) and blocked clients are not served.
  struct Gate {
    bool held = false;
    std::deque<std::move_only_function<void()>> waiting;
  };
  Gate gate;
  // Opens the gate and runs what waited, in order, until one of them closes it again.
  void open_gate();

  // --- storage::Engine::KeyObserver
  void key_changed(uint32_t partition, std::string_view key, bool expired) override;
  void clearing(storage::Engine& engine) override;

 private:
  struct WatchEntry {
    std::shared_ptr<WatchFlag> flag;
    bool existed;
  };
  void update_interest() { interested = !watches_.empty() || !blocked_.empty(); }

  uint32_t partitions_;
  std::unordered_map<std::string, std::vector<WatchEntry>> watches_;
  std::unordered_map<std::string, std::deque<std::shared_ptr<BlockedClient>>> blocked_;
  std::deque<std::string> ready_;
  std::unordered_set<std::string> ready_set_;
};

}  // namespace keel::resp
