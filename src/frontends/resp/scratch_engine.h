// A tiny in-memory Engine holding copies of a few keys, for commands whose keys live on
// different shards of this node (SINTER, SMOVE, LMOVE, S*STORE ... across shards): the server
// copies each key in from its shard, runs the command's ordinary handler against this engine,
// then writes every key the handler changed back to its own shard. The server closes those
// shards' gates meanwhile (server.cpp, execute_multi_key), so the whole is atomic.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>

#include "storage/engine.h"

namespace keel::resp {

class ScratchEngine final : public storage::Engine {
 public:
  using Key = std::pair<uint32_t, std::string>;

  // Copies a key in (not a change).
  void load(uint32_t partition, std::string_view key, storage::Value v) {
    values_[{partition, std::string(key)}] = std::move(v);
  }
  // The keys the handler wrote or erased.
  const std::set<Key>& changed() const { return changed_; }
  // The value of a changed key now (null: erased).
  const storage::Value* value(const Key& k) const {
    auto it = values_.find(k);
    return it == values_.end() ? nullptr : &it->second;
  }

  std::optional<storage::ValueRef> get(uint32_t partition, std::string_view key,
                                       int64_t) override {
    auto it = values_.find({partition, std::string(key)});
    if (it == values_.end()) return std::nullopt;
    return storage::ref_to(it->second);
  }
  Status set_string(uint32_t partition, std::string_view key, std::string_view value,
                    int64_t expire_at_ms, int64_t now_ms) override {
    storage::Value v;
    v.str.assign(value);
    v.expire_at_ms = expire_at_ms;
    return put(partition, key, std::move(v), now_ms);
  }
  Status put(uint32_t partition, std::string_view key, storage::Value value, int64_t) override {
    Key k{partition, std::string(key)};
    changed_.insert(k);
    values_[std::move(k)] = std::move(value);
    return {};
  }
  Result<bool> erase(uint32_t partition, std::string_view key, int64_t) override {
    Key k{partition, std::string(key)};
    bool had = values_.erase(k) > 0;
    if (had) changed_.insert(std::move(k));
    return had;
  }
  Status update(uint32_t partition, std::string_view key, int64_t now_ms,
                const UpdateFn& fn) override {
    Key k{partition, std::string(key)};
    auto it = values_.find(k);
    storage::Value scratch;
    auto act = fn(it == values_.end() ? nullptr : &it->second, &scratch);
    if (act == storage::UpdateAction::kWrite) {
      if (it == values_.end()) return put(partition, key, std::move(scratch), now_ms);
      changed_.insert(std::move(k));
    } else if (act == storage::UpdateAction::kErase && it != values_.end()) {
      values_.erase(it);
      changed_.insert(std::move(k));
    }
    return {};
  }
  Status write_batch(std::vector<BatchOp> ops, int64_t now_ms) override {
    for (auto& op : ops) {
      if (op.value) (void)put(op.partition, op.key, std::move(*op.value), now_ms);
      else (void)erase(op.partition, op.key, now_ms);
    }
    return {};
  }
  uint64_t scan(uint64_t, size_t, int64_t, const ScanFn&) override { return 0; }
  std::optional<std::string> scan_partition(uint32_t, std::string_view, size_t, int64_t,
                                            const ScanFn&) override {
    return std::nullopt;
  }
  Status drop_partition(uint32_t) override { return {}; }
  Status clear() override { return {}; }
  uint64_t size() const override { return values_.size(); }
  void maintenance(int64_t, size_t) override {}
  Status flush() override { return {}; }
  storage::EngineStats stats() const override { return {}; }

 private:
  std::map<Key, storage::Value> values_;
  std::set<Key> changed_;
};

}  // namespace keel::resp
