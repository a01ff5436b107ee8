// The one replication hook every write passes: the effect recorder.
//
// Each shard's storage::Engine is wrapped in an EffectRecorder. Every change a command makes
// through the Engine interface — set_string, put, erase, update, write_batch, clear — and every
// key the engine removes on its own (expiry, eviction) is recorded, for the partitions marked
// as recorded (this node is their primary and they have replicas), as a deterministic
// *effect*: the resulting state of each key touched ("k now holds this value, expiring at this
// absolute time" or "k is absent"). A command family therefore gets replication by writing
// through the Engine, with no code of its own: `SET k v EX 10` is recorded as k's value with an
// absolute expiry; `INCRBYFLOAT` as the resulting string; a random pop as the removal of the
// member it chose (the resulting collection). Effects are full-state, so applying one twice, or
// applying a snapshot's and then the log's, converges.
//
// Wire format of one effect (the changes of one write to one partition), a sequence of ops:
//   u8 op: 1 = put, 2 = erase, 3 = drop every key of the partition (FLUSHALL)
//   put:   bytes key, u8 type, svarint expire_at_ms, then a string: bytes value
//                                                     or a hash: varint n, n x (bytes f, bytes v)
//                                                     or a list: varint n, n x bytes (head first),
//                                                                varint change number
//                                                     or a set:  varint n, n x bytes
//                                                     or a zset: varint n, n x (bytes m, u64be
//                                                                score's IEEE-754 bits)
//                                                     or a stream: StreamValue::encode
//                                                                (storage/stream_value.h)
//   erase: bytes key
//   4 = patch (a change described element by element, storage/delta.h; only idempotent ones,
//          list changes guarded by the list's change number among them):
//          bytes key, u8 type, svarint expire_at_ms, bytes delta ops
//          applied to the replica's value of that type (an empty one if it has none)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "storage/engine.h"

namespace keel::dht {

inline constexpr size_t kMaxEffectKeyBytes = 512u << 20;

void encode_put(std::string& out, std::string_view key, const storage::Value& v);
void encode_put_string(std::string& out, std::string_view key, std::string_view value,
                       int64_t expire_at_ms);
void encode_erase(std::string& out, std::string_view key);
void encode_drop(std::string& out);
void encode_patch(std::string& out, std::string_view key, const storage::Value& v, std::string_view ops);

// Applies one effect to `engine` (a replica's, or a snapshot being installed). Bounded decode:
// kCorruption names what was wrong; nothing past the bad op is applied.
Status apply_effect(storage::Engine& engine, uint32_t partition, std::string_view effect,
                    int64_t now_ms);

class EffectRecorder final : public storage::Engine {
 public:
  // `partitions`: how many partitions the engine's keys are spread over (the recorded set).
  EffectRecorder(std::unique_ptr<storage::Engine> inner, uint32_t partitions);

  storage::Engine& inner() { return *inner_; }

  // Whether changes to `partition` are recorded. Off for every partition at first (a single
  // node, or a partition without replicas, pays one branch per write).
  void set_recorded(uint32_t partition, bool on) { recorded_[partition] = on; }
  // Cluster mode: whether this node is `partition`'s primary. Once any role is set, clear()
  // (FLUSHALL) drops only the partitions this node is the primary of — a replica copy is the
  // primary's to change.
  void set_primary(uint32_t partition, bool on) {
    primary_[partition] = on;
    roles_known_ = true;
  }
  bool recorded(uint32_t partition) const { return recorded_[partition]; }

  // The effects recorded since the last take: one (partition, effect) per partition touched,
  // in the order partitions were first touched.
  bool has_pending() const { return npending_ > 0; }
  std::vector<std::pair<uint32_t, std::string>> take();
  // The same, handed to f(partition, std::string_view effect) one by one (valid during the
  // call): the recorder keeps its buffers for the next write (no allocation per write).
  template <class F>
  void drain(F&& f) {
    for (size_t i = 0; i < npending_; ++i) f(pending_[i].first, std::string_view(pending_[i].second));
    npending_ = 0;
  }

  // --- storage::Engine
  std::optional<storage::ValueRef> get(uint32_t partition, std::string_view key,
                                       int64_t now_ms) override;
  std::optional<storage::ValueRef> peek(uint32_t partition, std::string_view key, int64_t now_ms) override {
    return inner_->peek(partition, key, now_ms);
  }
  Status set_string(uint32_t partition, std::string_view key, std::string_view value,
                    int64_t expire_at_ms, int64_t now_ms) override;
  Status put(uint32_t partition, std::string_view key, storage::Value value,
             int64_t now_ms) override;
  Result<bool> erase(uint32_t partition, std::string_view key, int64_t now_ms) override;
  Status update(uint32_t partition, std::string_view key, int64_t now_ms,
                const UpdateFn& fn) override;
  // Records an idempotent described change as a patch, anything else as the whole value.
  Status update_by_element(uint32_t partition, std::string_view key, int64_t now_ms, const UpdateFn& fn,
                           storage::Delta& delta) override;
  // Checks every described change: the delta applied to a copy of the value before the command
  // must give the value after it; a mismatch stops the process naming the key (tests).
  void set_verify_deltas(bool on) { verify_deltas_ = on; }
  Status write_batch(std::vector<BatchOp> ops, int64_t now_ms) override;
  uint64_t scan(uint64_t cursor, size_t count, int64_t now_ms, const ScanFn& fn) override {
    return inner_->scan(cursor, count, now_ms, fn);
  }
  std::optional<std::string> scan_partition(uint32_t partition, std::string_view start_key,
                                            size_t limit, int64_t now_ms,
                                            const ScanFn& fn) override {
    return inner_->scan_partition(partition, start_key, limit, now_ms, fn);
  }
  bool ordered_scan() const override { return inner_->ordered_scan(); }
  // Not recorded: the runtime drops a partition this node no longer holds.
  Status drop_partition(uint32_t partition) override { return inner_->drop_partition(partition); }
  Status clear() override;
  uint64_t size() const override { return inner_->size(); }
  void maintenance(int64_t now_ms, size_t budget) override { inner_->maintenance(now_ms, budget); }
  Status flush() override { return inner_->flush(); }
  Status commit() override { return inner_->commit(); }
  bool commit_does_io() const override { return inner_->commit_does_io(); }
  void set_log_mark(uint32_t partition, LogMark mark) override { inner_->set_log_mark(partition, mark); }
  std::optional<LogMark> log_mark(uint32_t partition) override { return inner_->log_mark(partition); }
  void prefetch(std::span<const KeyRef> keys) override { inner_->prefetch(keys); }
  storage::EngineStats stats() const override { return inner_->stats(); }
  Status admit_write() override { return inner_->admit_write(); }
  std::optional<storage::DiskState> disk_state() const override { return inner_->disk_state(); }
  void set_removal_listener(RemovalListener) override {}  // the recorder listens itself
  void set_key_observer(KeyObserver* observer) override { observer_ = observer; }
  std::optional<Error> take_read_error() override { return inner_->take_read_error(); }
  Result<std::map<uint32_t, uint64_t>> at_rest_census(int64_t now_ms) override {
    return inner_->at_rest_census(now_ms);
  }

 private:
  std::string& buffer(uint32_t partition);
  void changed(uint32_t partition, std::string_view key, bool expired = false) {
    if (observer_ && observer_->interested) observer_->key_changed(partition, key, expired);
  }

  std::unique_ptr<storage::Engine> inner_;
  std::vector<uint8_t> recorded_;
  std::vector<uint8_t> primary_;
  bool roles_known_ = false;
  // pending_[0, npending_): the effects recorded since the last take; the rest are spare buffers.
  std::vector<std::pair<uint32_t, std::string>> pending_;
  size_t npending_ = 0;
  KeyObserver* observer_ = nullptr;
  bool verify_deltas_ = false;
};

}  // namespace keel::dht
