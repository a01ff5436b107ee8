// The replicated state machine behind MetaService: a versioned key-value map with revisions
// (etcd's model: every write bumps the store revision; a key has version, create_revision and
// mod_revision), compare-and-set on version, and a bounded history of events for watches.
//
// NOTE: the metadata state machine proper (src/meta, with transactions and several domains)
// is being written on the `rabia` branch; this is the small map the cluster runtime needs to
// serve /v1/meta until it lands, kept behind MetaService so the swap touches one file.
//
// Commands and replies are encoded with base/codec; apply() is deterministic. Not thread-safe:
// the driver thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "cluster/driver.h"
#include "cluster/meta_service.h"

namespace keel::cluster {

struct KvCommand {
  enum class Op : uint8_t { kPut = 1, kDelete = 2 };
  Op op = Op::kPut;
  std::string key;
  std::string value;
  std::optional<uint64_t> prev_version;  // CAS: required current version (0 = absent)
};
std::string encode_command(const KvCommand& c);
Result<KvCommand> decode_command(std::string_view in);

// Reply to a command: ok + result, or an error code and message.
std::string encode_reply(const Result<WriteResult>& r);
Result<WriteResult> decode_reply(std::string_view in);

class KvMachine final : public StateMachine {
 public:
  explicit KvMachine(size_t history = 10000) : history_limit_(history) {}

  std::string apply(uint64_t slot, std::string_view command) override;
  std::string snapshot() const override;
  Status restore(std::string_view state) override;

  std::optional<KeyValue> get(const std::string& key) const;
  ListResult list(const std::string& prefix, size_t limit) const;
  // Events with revision >= from (and key starting with prefix), at most `limit`. kOutOfRange
  // if `from` is older than the history kept.
  Result<std::vector<WatchEvent>> events(const std::string& prefix, uint64_t from, size_t limit) const;
  uint64_t revision() const { return revision_; }
  size_t size() const { return map_.size(); }

 private:
  Result<WriteResult> run(const KvCommand& c);
  std::map<std::string, KeyValue> map_;
  uint64_t revision_ = 0;
  std::deque<WatchEvent> history_;
  uint64_t history_floor_ = 1;  // oldest revision still answerable
  size_t history_limit_;
};

}  // namespace keel::cluster
