#include "storage/resident/resident_engine.h"

#include <fmt/format.h>

#include <unordered_map>

#include "base/codec.h"
#include "base/random.h"
#include "observe/log.h"
#include "security/keyring.h"
#include "storage/memory/memory_engine.h"
#include "storage/rewrap_driver.h"

namespace keel::storage {
namespace {

Value copy_of(const ValueRef& r) { return copy_value(r); }

class ResidentEngine final : public Engine {
 public:
  ResidentEngine(const EngineConfig& config, std::unique_ptr<Engine> mem, std::unique_ptr<Engine> journal,
                 unsigned shard, unsigned shards)
      : mem_(std::move(mem)), log_(std::move(journal)) {
    if (!config.keyring) return;
    // The background rewrap re-journals this shard's live values from memory: the journal seals
    // them under the current key. On the shard's thread, so never racing a client write.
    RewrapDriver::Hooks h;
    h.owned = [shard, shards](uint32_t p) { return p % shards == shard; };
    h.load_cursor = [this](uint32_t p) { return log_->rewrap_cursor(p); };
    h.rewrap = [this](uint32_t p, const std::string& start, uint64_t max, uint32_t target) {
      return rewrap_range(p, start, max, target);
    };
    rewrap_.emplace(config.keyring, config.partitions, config.rewrap_keys_per_s / std::max(1u, shards), std::move(h));
  }

  std::optional<ValueRef> get(uint32_t partition, std::string_view key, int64_t now_ms) override {
    auto v = mem_->get(partition, key, now_ms);
    if (!v && !unreadable_.empty()) [[unlikely]]
      if (auto it = unreadable_.find(unreadable_key(partition, key)); it != unreadable_.end()) read_error_ = it->second;
    return v;
  }
  std::optional<ValueRef> peek(uint32_t partition, std::string_view key, int64_t now_ms) override {
    return mem_->peek(partition, key, now_ms);
  }
  std::optional<Error> take_read_error() override {
    if (!read_error_) return std::nullopt;
    auto e = std::move(read_error_);
    read_error_.reset();
    return e;
  }
  Result<std::map<uint32_t, uint64_t>> at_rest_census(int64_t now_ms) override { return log_->at_rest_census(now_ms); }
  void prefetch(std::span<const KeyRef> keys) override { mem_->prefetch(keys); }

  // Writes go to the journal first: if it refuses the write, memory is untouched and the
  // caller gets the error. kDiskError from the journal means it took the write but could not
  // write it to disk yet: it keeps it and writes it again when the disk recovers, so memory
  // takes it too (the caller gets the error: to it the outcome is unknown, as on a timeout).
  Status set_string(uint32_t partition, std::string_view key, std::string_view value,
                    int64_t expire_at_ms, int64_t now_ms) override {
    if (auto st = writable(); !st) return st;
    forget_unreadable(partition, key);
    auto j = log_->set_string(partition, key, value, expire_at_ms, now_ms);
    if (!j && j.error().code != Errc::kDiskError) return j;
    auto m = mem_->set_string(partition, key, value, expire_at_ms, now_ms);
    return j ? m : j;
  }

  Status put(uint32_t partition, std::string_view key, Value value, int64_t now_ms) override {
    if (auto st = writable(); !st) return st;
    forget_unreadable(partition, key);
    auto j = log_->put(partition, key, value, now_ms);
    if (!j && j.error().code != Errc::kDiskError) return j;
    auto m = mem_->put(partition, key, std::move(value), now_ms);
    return j ? m : j;
  }

  Result<bool> erase(uint32_t partition, std::string_view key, int64_t now_ms) override {
    if (auto st = writable(); !st) return std::unexpected(st.error());
    if (!unreadable_.empty()) [[unlikely]]
      if (auto it = unreadable_.find(unreadable_key(partition, key)); it != unreadable_.end()) {
        // A value nobody can read: DEL removes it from the journal (and says it removed a key).
        if (auto r = log_->erase(partition, key, now_ms); !r) return std::unexpected(r.error());
        unreadable_.erase(it);
        return true;
      }
    auto live = mem_->erase(partition, key, now_ms);
    if (!live || !*live) return live;
    if (auto r = log_->erase(partition, key, now_ms); !r) {
      if (r.error().code != Errc::kDiskError) failed(r.error());
      return std::unexpected(r.error());
    }
    return true;
  }

  // The new value is computed in memory and then journaled. The journal only buffers it (the
  // disk is written at commit()), and a batch it could not write is kept and written again when
  // the disk recovers, so memory and journal agree again. Any other journal error (a value the
  // journal cannot take) leaves memory ahead of the journal: then the engine refuses every
  // later write, since a reply saying otherwise would be a lie either way.
  Status update(uint32_t partition, std::string_view key, int64_t now_ms, const UpdateFn& fn) override {
    Delta whole;  // never described: journaled whole
    return update_by_element(partition, key, now_ms, fn, whole);
  }

  // As update(), but a change the command described element by element is journaled as its
  // delta (a merge operand), so changing one element of a large collection costs what it
  // changes. A new key, an undescribed change, or a small collection is journaled whole.
  //
  // Small: fewer than kDeltaMinElements elements. RocksDB folds an operand into its value when
  // it flushes or compacts them together (a decode and an encode of the value), which for a
  // small, often-rewritten collection costs more than writing it whole (redis-benchmark's HSET
  // over a million small hashes: 0.53x Redis AOF with deltas for every size).
  static constexpr size_t kDeltaMinElements = 64;
  static size_t elements(const Value& v) {
    switch (v.type) {
      case ValueType::kHash: return v.hash.size();
      case ValueType::kList: return v.list.size();
      case ValueType::kSet: return v.set.size();
      case ValueType::kZSet: return v.zset.size();
      case ValueType::kStream: return v.stream.size();
      default: return 0;
    }
  }
  Status update_by_element(uint32_t partition, std::string_view key, int64_t now_ms, const UpdateFn& fn,
                           Delta& delta) override {
    if (auto st = writable(); !st) return st;
    // A read-modify-write of a value that cannot be read is refused (INCR must not start over).
    if (!unreadable_.empty()) [[unlikely]]
      if (auto it = unreadable_.find(unreadable_key(partition, key)); it != unreadable_.end())
        return std::unexpected(it->second);
    Status journaled;
    auto st = mem_->update(partition, key, now_ms, [&](Value* cur, Value* scratch) {
      UpdateAction act = fn(cur, scratch);
      if (act == UpdateAction::kWrite) {
        if (cur && delta.described() && elements(*cur) >= kDeltaMinElements) {
          journaled = log_->patch(partition, key, cur->type, cur->expire_at_ms, delta.ops(), now_ms);
          if (!journaled && journaled.error().code == Errc::kInvalidArgument)
            journaled = log_->put(partition, key, *cur, now_ms);
        } else {
          journaled = log_->put(partition, key, cur ? *cur : *scratch, now_ms);
        }
      } else if (act == UpdateAction::kErase && cur) {
        auto r = log_->erase(partition, key, now_ms);
        if (!r) journaled = std::unexpected(r.error());
      }
      return act;
    });
    if (!journaled) {
      if (journaled.error().code != Errc::kDiskError) failed(journaled.error());
      return journaled;
    }
    return st;
  }

  Status write_batch(std::vector<BatchOp> ops, int64_t now_ms) override {
    if (auto st = writable(); !st) return st;
    if (!unreadable_.empty()) [[unlikely]]
      for (const auto& op : ops) forget_unreadable(op.partition, op.key);
    auto j = log_->write_batch(ops, now_ms);
    if (!j && j.error().code != Errc::kDiskError) return j;
    auto m = mem_->write_batch(std::move(ops), now_ms);
    return j ? m : j;
  }

  uint64_t scan(uint64_t cursor, size_t count, int64_t now_ms, const ScanFn& fn) override {
    return mem_->scan(cursor, count, now_ms, fn);
  }
  std::optional<std::string> scan_partition(uint32_t partition, std::string_view start_key,
                                            size_t limit, int64_t now_ms, const ScanFn& fn) override {
    return mem_->scan_partition(partition, start_key, limit, now_ms, fn);
  }

  bool ordered_scan() const override { return mem_->ordered_scan(); }

  Status drop_partition(uint32_t partition) override {
    if (auto st = log_->drop_partition(partition); !st) return st;
    std::erase_if(unreadable_, [&](const auto& kv) { return kv.first.compare(0, 4, unreadable_key(partition, "")) == 0; });
    return mem_->drop_partition(partition);
  }
  Status clear() override {
    if (auto st = log_->clear(); !st) return st;
    unreadable_.clear();
    return mem_->clear();
  }

  uint64_t size() const override { return mem_->size(); }

  void maintenance(int64_t now_ms, size_t budget) override {
    // Active expiry in memory; the journal's expired values go at compaction or reload.
    mem_->maintenance(now_ms, budget);
    log_->maintenance(now_ms, budget);
    if (rewrap_ && failure_.empty()) {
      rewrap_now_ms_ = now_ms;
      rewrap_->tick(now_ms);
    }
  }

  Status flush() override { return log_->flush(); }
  void set_removal_listener(RemovalListener listener) override {
    mem_->set_removal_listener(std::move(listener));
  }
  Status commit() override { return log_->commit(); }
  bool commit_does_io() const override { return log_->commit_does_io(); }

  Status admit_write() override { return writable(); }
  std::optional<DiskState> disk_state() const override { return log_->disk_state(); }
  void set_log_mark(uint32_t partition, LogMark mark) override { log_->set_log_mark(partition, mark); }
  std::optional<LogMark> log_mark(uint32_t partition) override { return log_->log_mark(partition); }

  EngineStats stats() const override {
    EngineStats s = mem_->stats();
    EngineStats j = log_->stats();
    s.used_memory_bytes += j.used_memory_bytes;
    s.disk_bytes = j.disk_bytes;
    s.syncs_total = j.syncs_total;
    return s;
  }

  Status load(unsigned shard, unsigned shards, uint32_t partitions, int64_t now_ms) {
    Status st;
    for (uint32_t p = shard; p < partitions; p += shards) {
      std::optional<std::string> next = std::string();
      while (next && st) {
        next = log_->scan_partition(p, *next, 4096, now_ms, [&](std::string_view k, const ValueRef& v) {
          if (st) st = mem_->put(p, k, copy_of(v), now_ms);
        });
        // Values the journal could not read (an at-rest key retired or unknown): remembered,
        // so that reading one answers why instead of nil.
        for (auto& u : log_->take_unreadable()) {
          if (unreadable_.empty())
            klog_unreadable(u.error.message);
          unreadable_.insert_or_assign(unreadable_key(u.partition, u.key), std::move(u.error));
        }
      }
      if (!st) return st;
    }
    return {};
  }

 private:
  // Whether a write may change memory: not after a journal failure that left memory ahead
  // (restart needed), and not while the journal's disk refuses writes (full, or failed: that
  // clears by itself when the disk takes writes again).
  Status writable() {
    if (!failure_.empty())
      return make_error(Errc::kIoError,
                        fmt::format("writes are refused since the journal failed ({}); restart the node "
                                    "once the disk is healthy",
                                    failure_));
    return log_->admit_write();
  }
  void failed(const Error& e) {
    if (failure_.empty()) failure_ = e.message;
  }
  static std::string unreadable_key(uint32_t partition, std::string_view key) {
    std::string k;
    k.reserve(4 + key.size());
    Writer w(k);
    w.u32be(partition);
    w.raw(key);
    return k;
  }
  void forget_unreadable(uint32_t partition, std::string_view key) {
    if (!unreadable_.empty()) [[unlikely]]
      unreadable_.erase(unreadable_key(partition, key));
  }
  static void klog_unreadable(const std::string& first);

  // Rewrites up to `max` live keys of `partition` from `start` into the journal (sealed under
  // the current key there), then the cursor, and makes it durable as a client write would be.
  Result<RewrapDriver::Hooks::Range> rewrap_range(uint32_t partition, const std::string& start, uint64_t max,
                                                 uint32_t target) {
    RewrapDriver::Hooks::Range out;
    if (auto st = log_->admit_write(); !st) return std::unexpected(st.error());
    std::vector<std::pair<std::string, Value>> batch;
    out.next_key = mem_->scan_partition(partition, start, max, rewrap_now_ms_, [&](std::string_view k, const ValueRef& v) {
      batch.emplace_back(std::string(k), copy_of(v));
    });
    out.examined = batch.size();
    for (auto& [k, v] : batch) {
      if (auto st = log_->put(partition, k, std::move(v), rewrap_now_ms_); !st) return std::unexpected(st.error());
      ++out.rewritten;
    }
    log_->set_rewrap_cursor(partition, RewrapCursor{target, out.next_key});
    if (auto st = log_->commit(); !st) return std::unexpected(st.error());
    return out;
  }

  std::unique_ptr<Engine> mem_;
  std::unique_ptr<Engine> log_;
  std::string failure_;
  // Keys whose journaled value could not be read at load (u32be partition ++ key -> why).
  std::unordered_map<std::string, Error> unreadable_;
  std::optional<Error> read_error_;
  std::optional<RewrapDriver> rewrap_;
  int64_t rewrap_now_ms_ = 0;
};

void ResidentEngine::klog_unreadable(const std::string& first) {
  observe::logger(observe::Component::kStorage)
      .error("storage: some stored values cannot be read and are answered with an error, e.g. {}", first);
}

}  // namespace

Result<std::unique_ptr<Engine>> make_resident_engine(const EngineConfig& config,
                                                     std::unique_ptr<Engine> journal, unsigned shard,
                                                     unsigned shards, int64_t now_ms) {
  EngineConfig mc = config;
  mc.kind = EngineConfig::Kind::kMemory;
  mc.max_memory_bytes = 0;  // nothing may be evicted: memory is the only copy reads see
  mc.eviction = EvictionPolicy::kNoEviction;
  auto engine = std::make_unique<ResidentEngine>(config, make_memory_engine(mc, mix64(0x7265736964656e74ull + shard)),
                                                 std::move(journal), shard, shards);
  if (auto st = engine->load(shard, shards, config.partitions, now_ms); !st)
    return make_error(st.error().code, "loading the data into memory failed: " + st.error().message);
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace keel::storage
