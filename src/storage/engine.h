// The storage Engine: what a shard uses to keep its keys. One Engine instance belongs to one
// shard and is only ever called from that shard's thread (no locking inside). Keys are grouped
// by partition (see base/slots.h); a partition is always owned by exactly one shard.
//
// Time is passed in (`now_ms`, wall-clock Unix milliseconds) so expiry is testable with a
// ManualClock: a key whose expire_at_ms <= now_ms is absent for every call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "storage/delta.h"
#include "storage/list_value.h"
#include "storage/stream_value.h"
#include "storage/zset_value.h"

namespace keel::security::at_rest {
class Keyring;
}

namespace keel::storage {

// Where a partition's background rewrap (encryption at rest) stands, kept with the data.
struct RewrapCursor {
  uint32_t target = 0;                  // the key version the pass rewrites to
  std::optional<std::string> next_key;  // nullopt: the partition is done for `target`
};

// The numbers are part of the stored and replicated formats: never renumber.
enum class ValueType : uint8_t {
  kString = 0,
  kHash = 1,
  kList = 2,
  kSet = 3,
  kZSet = 4,
  kStream = 5
};

using HashMap = std::unordered_map<std::string, std::string>;
using SetMembers = std::unordered_set<std::string>;

// Redis's name for the type (TYPE, SCAN TYPE).
std::string_view type_name(ValueType t);

// An owned value. Only the member of `type` is meaningful; the others are empty.
struct Value {
  ValueType type = ValueType::kString;
  std::string str;          // type == kString
  HashMap hash;             // type == kHash
  ListValue list;           // type == kList
  SetMembers set;           // type == kSet
  ZSetValue zset;           // type == kZSet
  StreamValue stream;       // type == kStream (8 bytes when unused)
  int64_t expire_at_ms = 0;  // 0 = never expires
};

// A read view. Valid until the next call on the same Engine.
struct ValueRef {
  ValueType type = ValueType::kString;
  std::string_view str;
  const HashMap* hash = nullptr;
  const ListValue* list = nullptr;
  const SetMembers* set = nullptr;
  const ZSetValue* zset = nullptr;
  const StreamValue* stream = nullptr;
  int64_t expire_at_ms = 0;
};

// An owned copy of what `r` shows.
Value copy_value(const ValueRef& r);
// A view of `v` (valid while `v` is).
ValueRef ref_to(const Value& v);
// Whether the value of `type` is empty (a collection with no elements; never a string, never a
// stream: an empty stream is kept, as in Redis).
bool empty_collection(const Value& v);

// The persistent engine's disk state: whether it takes writes, and if not, why. One state per
// database (all shards share it).
struct DiskState {
  bool writable = true;
  std::string state = "ok";  // ok | low_space | failed (DiskGuard::name)
  std::string error;          // why writes are refused ("" while writable)
  uint64_t write_errors_total = 0;    // failed writes, flushes and syncs of the database
  uint64_t refused_writes_total = 0;  // writes refused with kDiskError
  uint64_t free_bytes = 0;            // at the last look (0 if never read)
  bool read_only = false;             // the database is open read-only (started on a full disk)
};

// What an update callback decided.
enum class UpdateAction { kKeep, kWrite, kErase };

struct EngineStats {
  uint64_t keys = 0;
  uint64_t keys_with_expiry = 0;
  uint64_t used_memory_bytes = 0;   // memory engine: accounted bytes; rocksdb: memtables+cache
  uint64_t expired_keys_total = 0;  // removed because their TTL passed (lazily or actively)
  uint64_t evicted_keys_total = 0;  // removed to stay under maxmemory
  uint64_t disk_bytes = 0;          // persistent engine: live SST + WAL size estimate
  uint64_t syncs_total = 0;         // persistent engine: WAL fsyncs performed
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual std::optional<ValueRef> get(uint32_t partition, std::string_view key, int64_t now_ms) = 0;
  // get() without counting it as a use (no LRU/LFU touch): for the node's own reads, such as a
  // snapshot stream, which must not make every key it sends look recently used.
  virtual std::optional<ValueRef> peek(uint32_t partition, std::string_view key, int64_t now_ms) {
    return get(partition, key, now_ms);
  }

  // Replaces (or creates) the key with a string value. expire_at_ms = 0 means no TTL.
  // Errors: kOutOfMemory (maxmemory with noeviction), kIoError.
  virtual Status set_string(uint32_t partition, std::string_view key, std::string_view value,
                            int64_t expire_at_ms, int64_t now_ms) = 0;

  // Replaces (or creates) the key with `value`.
  virtual Status put(uint32_t partition, std::string_view key, Value value, int64_t now_ms) = 0;

  // Removes the key. Returns whether a live key was removed.
  virtual Result<bool> erase(uint32_t partition, std::string_view key, int64_t now_ms) = 0;

  // Read-modify-write of one key. `fn` gets the current live value (nullptr if absent; then it
  // may fill `*scratch` and return kWrite to create the key) and may modify it in place.
  // kKeep: nothing is written. kWrite: the (modified) value is stored. kErase: the key is removed.
  // The memory engine hands out its own object; the persistent engine decodes a copy.
  using UpdateFn = std::function<UpdateAction(Value* current, Value* scratch)>;
  virtual Status update(uint32_t partition, std::string_view key, int64_t now_ms,
                        const UpdateFn& fn) = 0;

  // update() for a command that describes its change element by element (storage/delta.h):
  // `fn` also records in `delta` (cleared by the caller) what it changes of an existing value.
  // The persistent engine then journals those ops instead of the whole value, and the effect
  // recorder (src/dht) sends idempotent ones to replicas. A new key, or a delta left
  // undescribed, is written whole. Engines that store only whole values ignore `delta`.
  virtual Status update_by_element(uint32_t partition, std::string_view key, int64_t now_ms,
                                   const UpdateFn& fn, Delta& delta) {
    (void)delta;
    return update(partition, key, now_ms, fn);
  }

  // Journals delta `ops` as a change of the existing value of `type` at `key`, whose expiry is
  // `expire_at_ms` (the persistent engine in journal mode, under the resident engine).
  // kInvalidArgument from engines that store only whole values: the caller writes it whole.
  virtual Status patch(uint32_t partition, std::string_view key, ValueType type, int64_t expire_at_ms,
                       std::string_view ops, int64_t now_ms) {
    (void)partition, (void)key, (void)type, (void)expire_at_ms, (void)ops, (void)now_ms;
    return make_error(Errc::kInvalidArgument, "this engine stores whole values only");
  }

  // Atomic batch: all puts/erases apply, or none (persistent engine: one WriteBatch).
  struct BatchOp {
    uint32_t partition;
    std::string key;
    std::optional<Value> value;  // nullopt = erase
  };
  virtual Status write_batch(std::vector<BatchOp> ops, int64_t now_ms) = 0;

  // Iterates live keys. Start with cursor 0; returns the next cursor, 0 when done. Calls `fn`
  // for about `count` keys. A key present for the whole iteration is visited at least once.
  using ScanFn = std::function<void(std::string_view key, const ValueRef& value)>;
  virtual uint64_t scan(uint64_t cursor, size_t count, int64_t now_ms, const ScanFn& fn) = 0;

  // Iterates the live keys of one partition in key order starting at `start_key` (inclusive),
  // at most `limit` keys; returns the key to resume from, or nullopt if the partition is done.
  // Used to move or drop a partition and for ordered listings.
  virtual std::optional<std::string> scan_partition(uint32_t partition, std::string_view start_key,
                                                    size_t limit, int64_t now_ms,
                                                    const ScanFn& fn) = 0;

  // Whether scan_partition costs about what it returns (an ordered store) rather than a pass
  // over the whole partition per call (a hash table): a long walk over a partition, such as a
  // snapshot stream, then collects the partition's keys once and reads them one by one.
  virtual bool ordered_scan() const { return true; }

  virtual Status drop_partition(uint32_t partition) = 0;
  virtual Status clear() = 0;  // FLUSHALL for this shard

  // Number of live keys (may count keys whose TTL passed but that were not yet reclaimed).
  virtual uint64_t size() const = 0;

  // Periodic work, called by the shard every ~100 ms: active expiry (bounded by `budget`
  // keys), eviction catch-up, WAL fsync for fsync=everysec.
  virtual void maintenance(int64_t now_ms, size_t budget) = 0;

  // Makes every acknowledged write durable (persistent engine); no-op for memory.
  virtual Status flush() = 0;

  // Makes the writes made so far as durable as the fsync policy promises: written to the OS
  // (everysec, no) or synced to the disk (always). The shard calls it once before it replies
  // to any of those writes, so one call covers a whole pipelined batch (group commit).
  // An error means the writes since the last commit may be lost: the caller must not
  // acknowledge them.
  virtual Status commit() { return {}; }
  // Whether commit() does I/O (a write or sync of a journal): the shard then lets every
  // connection it serves in one turn of its loop share one commit (see the RESP server).
  virtual bool commit_does_io() const { return false; }

  // Cluster mode: where in `partition`'s replication log the data this engine holds of it
  // stands — the (lsn, epoch) of the last entry applied. An engine that keeps its data across
  // a restart keeps the mark with it: set_log_mark() is written by the next commit(), after
  // the writes made before it, so a mark never claims more than the data holds (a crash may
  // leave it behind the data, never ahead). drop_partition() forgets the mark first. nullopt:
  // none known (an engine that keeps nothing across a restart, or no mark was ever written).
  struct LogMark {
    uint64_t lsn = 0, epoch = 0;
    // A snapshot transfer in progress: the engine holds the keys before `next_key` of the
    // snapshot begun at (lsn, epoch), and no LSN (replication::Output::snapshot_progress).
    bool partial = false;
    uint64_t source = 0;  // the primary process that streamed it (replication::SnapshotBegin)
    std::string next_key;
  };
  virtual void set_log_mark(uint32_t partition, LogMark mark) {
    (void)partition;
    (void)mark;
  }
  virtual std::optional<LogMark> log_mark(uint32_t partition) {
    (void)partition;
    return std::nullopt;
  }

  // A hint that these keys are about to be used (a pipelined batch): the engine may start
  // loading what it will touch into the CPU cache, so the misses of a batch overlap instead of
  // following one another. Has no effect on results.
  struct KeyRef {
    uint32_t partition;
    std::string_view key;
  };
  virtual void prefetch(std::span<const KeyRef> keys) { (void)keys; }

  virtual EngineStats stats() const = 0;

  // Whether a write may start now. kDiskError (MISCONF-style message naming the data directory)
  // while the persistent engine refuses writes: the disk is full or a write to it failed. A
  // caller that modifies state outside the engine before writing asks first. Other writes
  // check by themselves.
  virtual Status admit_write() { return {}; }

  // The persistent engine's disk state; nullopt for engines without a disk. Safe to call from
  // any thread (unlike the rest of the interface).
  virtual std::optional<DiskState> disk_state() const { return std::nullopt; }

  // Keys the engine removes on its own — a TTL that passed (found on access or by active
  // expiry) or an eviction under maxmemory — are reported here, on the engine's thread, right
  // after the removal. The replication hook (src/dht) turns them into deletions for the
  // partition's replicas, so expiry and eviction are decided by the primary alone. Engines
  // that never remove keys on their own may ignore it.
  enum class RemovalCause : uint8_t { kExpired, kEvicted };
  using RemovalListener =
      std::function<void(uint32_t partition, std::string_view key, RemovalCause cause)>;
  virtual void set_removal_listener(RemovalListener listener) { (void)listener; }

  // Told of every key that changes, on the engine's thread, right after the change: what WATCH
  // and blocking pops need (frontends/resp/key_events.h). Only the effect recorder (src/dht),
  // which wraps every shard's engine, reports; other engines ignore it. Costs one branch per
  // write while `interested` is false.
  class KeyObserver {
   public:
    virtual ~KeyObserver() = default;
    // `key` was written or removed; `expired`: removed because its TTL passed.
    virtual void key_changed(uint32_t partition, std::string_view key, bool expired) = 0;
    // Every key of `engine` (the store itself) is about to be removed (FLUSHALL).
    virtual void clearing(Engine& engine) = 0;
    bool interested = false;
  };
  virtual void set_key_observer(KeyObserver* observer) { (void)observer; }

  // ---- encryption at rest (persistent engine with a keyring; docs/security.md) -------------
  // A get() since the last call found a stored value it could not read (encrypted under a
  // retired or unknown at-rest key version, or damaged): get() answered nullopt, and this says
  // why (kCorruption, naming the key and the version). Returns it once and forgets it. The
  // command front ends answer the command with this error instead of its reply.
  virtual std::optional<Error> take_read_error() { return std::nullopt; }
  // Values scans skipped because they could not be read, since the last call (the resident
  // engine's load keeps them so that a GET of one answers the error, not nil).
  struct Unreadable {
    uint32_t partition;
    std::string key;
    Error error;
  };
  virtual std::vector<Unreadable> take_unreadable() { return {}; }
  // Live values per at-rest key version (0 = plaintext) in the whole database (every shard:
  // the database is shared). Any thread. kInvalidArgument for engines without a disk.
  virtual Result<std::map<uint32_t, uint64_t>> at_rest_census(int64_t now_ms) {
    (void)now_ms;
    return make_error(Errc::kInvalidArgument, "encryption at rest needs the persistent engine");
  }
  // The background rewrap's persisted cursor of `partition` (persistent engine: written with
  // the next commit(), after the writes made before it, like a log mark).
  virtual std::optional<RewrapCursor> rewrap_cursor(uint32_t partition) {
    (void)partition;
    return std::nullopt;
  }
  virtual void set_rewrap_cursor(uint32_t partition, RewrapCursor cursor) {
    (void)partition;
    (void)cursor;
  }
};

enum class EvictionPolicy {
  kNoEviction,
  kAllKeysLru,
  kAllKeysLfu,
  kVolatileLru,
  kVolatileLfu,
  kVolatileTtl,
  kAllKeysRandom,
};
enum class FsyncPolicy { kAlways, kEverySec, kNo };

struct EngineConfig {
  enum class Kind { kMemory, kPersistent } kind = Kind::kPersistent;
  uint32_t partitions = 1024;
  // memory engine
  uint64_t max_memory_bytes = 0;  // 0 = unlimited
  EvictionPolicy eviction = EvictionPolicy::kNoEviction;
  uint32_t eviction_samples = 5;
  // persistent engine
  std::string data_dir = "./data";
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  uint64_t block_cache_bytes = 64ull << 20;
  // Writes are refused (MISCONF) while the data directory's filesystem has less free space than
  // this, so RocksDB never runs out of space in the middle of a write; they resume by themselves
  // when space returns. 0 = refuse only after a write failed.
  uint64_t min_free_bytes = 64ull << 20;
  // Persistent engine: keep every key in memory as well (reads never touch the disk; RocksDB
  // is the durable journal, like Redis with an append-only file). false: reads go to RocksDB
  // and the dataset may be larger than memory.
  bool keep_in_memory = true;
  // Encryption at rest: values are sealed under the keyring's current key (nullptr: stored in
  // plaintext). Set by the node from security.at_rest.*; shared by every shard.
  std::shared_ptr<security::at_rest::Keyring> keyring;
  // The background rewrap's rate over the whole node, in keys a second
  // (security.at_rest.rewrap_keys_per_s).
  double rewrap_keys_per_s = 2000;
  // Internal: the RocksDB engine only journals (blind writes, no counting); set by
  // open_engines for keep_in_memory.
  bool journal_only = false;
};

// Opens one Engine per shard. The persistent engine shares one RocksDB database among them.
// `clock` is used only by the persistent engine's compaction filter (dropping expired keys).
Result<std::vector<std::unique_ptr<Engine>>> open_engines(const EngineConfig& config,
                                                          unsigned shards, const Clock& clock);

std::string_view eviction_policy_name(EvictionPolicy p);
std::optional<EvictionPolicy> parse_eviction_policy(std::string_view name);  // Redis's names
std::string_view fsync_policy_name(FsyncPolicy p);
std::optional<FsyncPolicy> parse_fsync_policy(std::string_view name);  // always|everysec|no

}  // namespace keel::storage
