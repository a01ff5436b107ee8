// The metadata state machine replicated by Rabia: a versioned key-value map shared by several
// metadata domains (members, partition map, services, config, ...). Pure and deterministic:
// every replica that applies the same commands in the same order holds the same Store.
//
// Model (like etcd's): a global revision counts committed mutations; each key keeps the
// revision that created it, the revision that last modified it and its version (1 on create,
// +1 on every put; a delete removes the key and a later put starts again at version 1).
// Keys live in a domain: (domain, key). Domains are named [a-z0-9_-]{1,64}.
// A bounded history of events serves watch(from_revision); older revisions are "compacted".
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace keel::meta {

struct Limits {
  size_t max_key_bytes = 4096;
  size_t max_value_bytes = 1 << 20;
  size_t max_txn_ops = 128;
  size_t max_history = 10'000;  // watch events kept
  size_t max_list = 10'000;     // entries one list/watch call returns
};

struct KeyValue {
  std::string domain;
  std::string key;
  std::string value;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t version = 0;
  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

struct Event {
  enum class Type : uint8_t { kPut = 0, kDelete = 1 };
  Type type = Type::kPut;
  uint64_t revision = 0;
  KeyValue kv;  // for a delete: the key with its last value and version
  friend bool operator==(const Event&, const Event&) = default;
};

// Commands (what goes into the log). expected_version 0 means "the key must not exist".
struct Put {
  std::string domain, key, value;
};
struct Delete {
  std::string domain, key;
};
struct CompareAndSet {
  std::string domain, key;
  uint64_t expected_version = 0;
  std::string value;
};
struct Compare {
  std::string domain, key;
  uint64_t expected_version = 0;
};
// All compares hold -> every put and delete happens at one revision; else nothing happens.
struct Txn {
  std::vector<Compare> compares;
  std::vector<Put> puts;
  std::vector<Delete> deletes;
};

struct Command {
  enum class Op : uint8_t { kPut = 1, kDelete = 2, kCas = 3, kTxn = 4 };
  Op op = Op::kPut;
  Put put;
  Delete del;
  CompareAndSet cas;
  Txn txn;
};

std::string encode(const Command& c);
Result<Command> decode_command(std::string_view in, const Limits& limits = {});

// The outcome of applying one command. Deterministic: a refused compare is an Errc::kConflict
// error on every replica, and leaves the store unchanged.
struct Applied {
  uint64_t revision = 0;         // store revision after the command
  std::optional<KeyValue> prev;  // put/delete/cas: the previous value, if any
};

class Store {
 public:
  explicit Store(Limits limits = {}) : limits_(limits) {}

  // Validates then applies. Invalid commands (bad domain, oversize) and failed compares are
  // errors and change nothing (the revision does not move).
  Result<Applied> apply(const Command& c);
  // Decodes and applies a command from the log.
  Result<Applied> apply_bytes(std::string_view command);

  std::optional<KeyValue> get(std::string_view domain, std::string_view key) const;
  // Keys of `domain` starting with `prefix`, in key order, at most `limit` (and Limits).
  std::vector<KeyValue> list(std::string_view domain, std::string_view prefix,
                             size_t limit = SIZE_MAX) const;
  // Events with revision >= from_revision on keys of `domain` starting with `prefix`, oldest
  // first. Error kOutOfRange "compacted" when from_revision is older than the kept history.
  Result<std::vector<Event>> watch(std::string_view domain, std::string_view prefix,
                                   uint64_t from_revision, size_t limit = SIZE_MAX) const;

  // Unbounded variants for in-process readers (subscriptions): every key of the prefix, and
  // every kept event from from_revision on (same kOutOfRange error as watch()).
  std::vector<KeyValue> list_all(std::string_view domain, std::string_view prefix) const;
  Result<std::vector<Event>> changes_since(std::string_view domain, std::string_view prefix,
                                           uint64_t from_revision) const;

  uint64_t revision() const { return revision_; }
  // Oldest revision watch() can still serve.
  uint64_t oldest_watchable() const { return compacted_ + 1; }
  size_t size() const { return kv_.size(); }
  std::vector<std::string> domains() const;

  // Whole state (map, revision, history) as bytes, for Rabia snapshots and catch-up.
  std::string snapshot() const;
  static Result<Store> restore(std::string_view bytes, Limits limits = {});

  friend bool operator==(const Store& a, const Store& b) {
    return a.revision_ == b.revision_ && a.compacted_ == b.compacted_ && a.kv_ == b.kv_ &&
           a.history_ == b.history_;
  }

 private:
  using Key = std::pair<std::string, std::string>;  // (domain, key)
  Status validate(std::string_view domain, std::string_view key) const;
  Status validate_value(std::string_view value) const;
  uint64_t version_of(const std::string& domain, const std::string& key) const;
  void do_put(const std::string& domain, const std::string& key, const std::string& value);
  bool do_delete(const std::string& domain, const std::string& key);
  void record(Event e);

  Limits limits_;
  uint64_t revision_ = 0;
  uint64_t compacted_ = 0;  // events with revision <= compacted_ are gone
  std::map<Key, KeyValue> kv_;
  std::deque<Event> history_;
};

}  // namespace keel::meta
