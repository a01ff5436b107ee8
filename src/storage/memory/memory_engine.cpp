#include "storage/memory/memory_engine.h"

#include <fmt/format.h>
#include <malloc.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <unordered_set>

#include "base/assert.h"
#include "base/random.h"

namespace keel::storage {
namespace {

// ---- Entry: one allocation per key -------------------------------------------------------
//
//   offset 0  Entry* next        chain link inside the bucket
//          8  u32 meta           flags << 24 | access (24 bits, Redis's layout):
//                                  LRU: seconds; LFU: minutes (16 bits) << 8 | log counter
//         12  [i64 expire_at_ms, u32 index into volatile_]   only with kFlagExpiry
//             varint key_len, varint val_len (val_len of a collection = sizeof(HashBox*))
//             key bytes, value bytes (or a HashBox* for a hash, list or set)
//
// With a 10-byte key and a 64-byte value that is 88 bytes: glibc's 96-byte chunk. No per-entry
// hash is stored: rehashing recomputes it (as Redis does).
struct Entry {
  Entry* next;
  uint32_t meta;
};
constexpr size_t kHeaderBytes = 12;
constexpr size_t kExpiryBlockBytes = 12;
constexpr uint32_t kFlagHash = 1;
constexpr uint32_t kFlagExpiry = 2;
constexpr uint32_t kAccessMask = 0xffffff;
constexpr uint64_t kMaxKeyBytes = 512ull << 20;  // Redis's proto-max-bulk-len
constexpr uint64_t kMaxValueBytes = 512ull << 20;
constexpr uint64_t kMinBuckets = 4;
constexpr unsigned kCursorBucketBits = 40;  // scan cursor = partition << 40 | bucket cursor
constexpr uint8_t kLfuInitVal = 5;          // Redis's LFU_INIT_VAL
constexpr unsigned kLfuLogFactor = 10;      // Redis's lfu-log-factor default
constexpr unsigned kLfuDecayMinutes = 1;    // Redis's lfu-decay-time default

// A hash value lives in its own heap object so update() can hand it out for in-place changes.
// (Lists and sets live in the same kind of box; `type` is the type stored.)
struct HashBox {
  Value value;
  uint64_t accounted_bytes = 0;  // what used_ was charged for it, re-measured on change
  ValueType type = ValueType::kHash;
  // The last sample of a big collection's elements (see sample_elements): its sum and count,
  // the size it was taken at, and the changes since.
  uint64_t sample_sum = 0;
  uint32_t sample_count = 0;
  uint32_t changes_since_sample = 0;
  uint64_t sampled_at = 0;
};

template <class T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

char* raw(Entry* e) { return reinterpret_cast<char*>(e); }
const char* raw(const Entry* e) { return reinterpret_cast<const char*>(e); }
uint32_t flags_of(const Entry* e) { return e->meta >> 24; }
uint32_t access_of(const Entry* e) { return e->meta & kAccessMask; }
void set_access(Entry* e, uint32_t access) {
  e->meta = (e->meta & ~kAccessMask) | (access & kAccessMask);
}
bool has_expiry(const Entry* e) { return flags_of(e) & kFlagExpiry; }
bool is_hash(const Entry* e) { return flags_of(e) & kFlagHash; }
int64_t expire_of(const Entry* e) {
  return has_expiry(e) ? load<int64_t>(raw(e) + kHeaderBytes) : 0;
}
uint32_t vol_index(const Entry* e) { return load<uint32_t>(raw(e) + kHeaderBytes + 8); }
void set_vol_index(Entry* e, uint32_t i) { store<uint32_t>(raw(e) + kHeaderBytes + 8, i); }

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
char* put_varint(char* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}
const char* get_varint(const char* p, uint32_t& out) {
  uint32_t v = 0;
  for (unsigned shift = 0;; shift += 7) {
    uint8_t b = static_cast<uint8_t>(*p++);
    v |= static_cast<uint32_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  out = v;
  return p;
}

struct Layout {
  uint32_t key_len;
  uint32_t val_len;
  const char* key;  // value follows the key
};
Layout layout_of(const Entry* e) {
  Layout l;
  const char* p = raw(e) + kHeaderBytes + (has_expiry(e) ? kExpiryBlockBytes : 0);
  p = get_varint(p, l.key_len);
  p = get_varint(p, l.val_len);
  l.key = p;
  return l;
}
std::string_view key_of(const Entry* e) {
  Layout l = layout_of(e);
  return {l.key, l.key_len};
}
std::string_view str_of(const Entry* e) {
  Layout l = layout_of(e);
  return {l.key + l.key_len, l.val_len};
}
HashBox* box_of(const Entry* e) {
  KEEL_ASSERT(is_hash(e));
  Layout l = layout_of(e);
  return load<HashBox*>(l.key + l.key_len);
}
bool alive(const Entry* e, int64_t now_ms) { return !has_expiry(e) || expire_of(e) > now_ms; }

// The allocator's real footprint of one block: usable size plus glibc's 8-byte chunk header.
uint64_t block_bytes(const void* p) {
  return malloc_usable_size(const_cast<void*>(p)) + sizeof(size_t);
}

uint64_t string_heap_bytes(const std::string& s) {
  return s.size() > 15 ? ((s.size() + 1 + 8 + 15) & ~uint64_t{15}) : 0;  // beyond SSO
}

// Estimated footprint of a hash value: the box, the bucket array, and per field an
// unordered_map node (next + pair<string,string> + cached hash, rounded by malloc) plus any
// out-of-line string storage. Lists: the ring buffer's slots plus each element's out-of-line
// bytes; sets: like a hash's nodes with one string each; sorted sets: a map node per member
// plus its share of the tree's leaves. Collections above 128 elements are measured on a sample
// of 64 elements and extrapolated; the sample is kept with the value (HashBox) and taken again
// only every 1024 changes or once the size has halved or doubled, so that a write to a big
// collection does not visit 64 scattered elements (that was a sixth of an LPUSH's CPU).
struct ElemSample {
  uint64_t sum = 0;    // bytes of the elements looked at
  uint64_t count = 0;  // how many were looked at (0: none)
};

size_t elements_of(const Value& v) {
  switch (v.type) {
    case ValueType::kList: return v.list.size();
    case ValueType::kSet: return v.set.size();
    case ValueType::kZSet: return v.zset.size();
    case ValueType::kHash: return v.hash.size();
    default: return 0;
  }
}

// What does not depend on the elements: the box, the bucket array or ring buffer.
uint64_t fixed_value_bytes(const Value& v) {
  const uint64_t base = sizeof(size_t) + sizeof(HashBox);
  switch (v.type) {
    case ValueType::kList: return base + sizeof(std::string) * v.list.capacity();
    case ValueType::kSet: return base + 8 * v.set.bucket_count();
    case ValueType::kZSet: return base + 8 * v.zset.dict().bucket_count();
    case ValueType::kHash: return base + 8 * v.hash.bucket_count();
    default: return base;
  }
}

ElemSample sample_elements(const Value& v) {
  ElemSample out;
  const size_t n = elements_of(v);
  if (n == 0) return out;
  const size_t limit = n > 128 ? 64 : n;
  auto take = [&](uint64_t bytes) {
    out.sum += bytes;
    return ++out.count == limit;
  };
  switch (v.type) {
    case ValueType::kList:
      for (size_t i = 0; i < limit; ++i) take(string_heap_bytes(v.list[i * (n / limit)]));
      break;
    case ValueType::kSet:
      for (const auto& m : v.set)
        if (take(64 + string_heap_bytes(m))) break;
      break;
    case ValueType::kZSet:  // a map node, and about 20 bytes of a B+ tree leaf
      for (const auto& [m, sc] : v.zset.dict())
        if (take(64 + 24 + string_heap_bytes(m))) break;
      break;
    case ValueType::kHash:
      for (const auto& [f, val] : v.hash)
        if (take(96 + string_heap_bytes(f) + string_heap_bytes(val))) break;
      break;
    default: break;
  }
  return out;
}

uint64_t estimate(const Value& v, const ElemSample& s) {
  const uint64_t n = elements_of(v);
  return fixed_value_bytes(v) + (s.count ? s.sum * n / s.count : 0);
}

uint64_t hash_value_bytes(const Value& v) {
  if (v.type == ValueType::kStream) return sizeof(size_t) + sizeof(HashBox) + v.stream.heap_bytes();
  return estimate(v, sample_elements(v));
}

Entry* alloc_entry(std::string_view key, bool hash, std::string_view str, HashBox* box,
                   int64_t expire_at_ms) {
  const size_t val_len = hash ? sizeof(HashBox*) : str.size();
  const size_t n = kHeaderBytes + (expire_at_ms ? kExpiryBlockBytes : 0) + varint_size(key.size()) +
                   varint_size(val_len) + key.size() + val_len;
  void* mem = std::malloc(std::max(n, sizeof(Entry)));
  if (!mem) throw std::bad_alloc();
  Entry* e = new (mem) Entry;
  e->next = nullptr;
  e->meta = ((hash ? kFlagHash : 0) | (expire_at_ms ? kFlagExpiry : 0)) << 24;
  char* p = raw(e) + kHeaderBytes;
  if (expire_at_ms) {
    store<int64_t>(p, expire_at_ms);
    set_vol_index(e, 0);
    p += kExpiryBlockBytes;
  }
  p = put_varint(p, key.size());
  p = put_varint(p, val_len);
  if (!key.empty()) std::memcpy(p, key.data(), key.size());
  p += key.size();
  if (hash) {
    store<HashBox*>(p, box);
  } else if (!str.empty()) {
    std::memcpy(p, str.data(), str.size());
  }
  return e;
}

uint64_t hash_key(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

uint64_t rev64(uint64_t v) {
  v = ((v >> 1) & 0x5555555555555555ull) | ((v & 0x5555555555555555ull) << 1);
  v = ((v >> 2) & 0x3333333333333333ull) | ((v & 0x3333333333333333ull) << 2);
  v = ((v >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((v & 0x0F0F0F0F0F0F0F0Full) << 4);
  return __builtin_bswap64(v);
}

// Redis's reverse-binary cursor increment: walks buckets so that growing or shrinking the
// table between calls never skips a bucket that was not yet visited.
uint64_t next_cursor(uint64_t v, uint64_t mask) {
  v |= ~mask;
  v = rev64(v);
  ++v;
  return rev64(v);
}

struct Table {
  Entry** buckets = nullptr;
  uint64_t mask = 0;  // bucket count - 1 (when buckets != nullptr)
  uint64_t used = 0;
};

struct VolatileSlot {
  Entry* entry;
  uint32_t partition;
};

class MemoryEngine final : public Engine {
 public:
  MemoryEngine(const EngineConfig& config, uint64_t seed)
      : config_(config),
        rng_(seed),
        parts_(config.partitions),
        nonempty_pos_(config.partitions, -1) {
    KEEL_ASSERT(config.partitions >= 1);
    KEEL_ASSERT(config.eviction_samples >= 1 && config.eviction_samples <= 64);
    lfu_ = config.eviction == EvictionPolicy::kAllKeysLfu ||
           config.eviction == EvictionPolicy::kVolatileLfu;
    used_ = base_bytes();
  }

  // The fixed cost of an empty engine: per-partition table headers and bookkeeping.
  uint64_t base_bytes() const {
    return sizeof(*this) + parts_.size() * (sizeof(Table) + sizeof(int32_t) + sizeof(uint32_t));
  }
  ~MemoryEngine() override { free_all(); }

  // Two passes over the batch: first the buckets, then (once those lines are on their way)
  // the first entry of each chain, which is the entry itself at the table's load factor.
  void prefetch(std::span<const KeyRef> keys) override {
    constexpr size_t kMax = 64;
    Entry** slots[kMax];
    size_t n = std::min(keys.size(), kMax);
    for (size_t i = 0; i < n; ++i) {
      slots[i] = nullptr;
      if (keys[i].partition >= parts_.size()) continue;
      const Table& t = parts_[keys[i].partition];
      if (!t.buckets) continue;
      slots[i] = &t.buckets[hash_key(keys[i].key) & t.mask];
      __builtin_prefetch(slots[i]);
    }
    for (size_t i = 0; i < n; ++i)
      if (slots[i] && *slots[i]) __builtin_prefetch(*slots[i]);
  }

  std::optional<ValueRef> get(uint32_t partition, std::string_view key, int64_t now_ms) override {
    check_partition(partition);
    Entry** link = find_live(partition, key, hash_key(key), now_ms);
    if (!link) return std::nullopt;
    Entry* e = *link;
    touch(e, now_ms);
    return ref_of(e);
  }
  std::optional<ValueRef> peek(uint32_t partition, std::string_view key, int64_t now_ms) override {
    check_partition(partition);
    Entry** link = find_live(partition, key, hash_key(key), now_ms);
    if (!link) return std::nullopt;
    return ref_of(*link);
  }

  Status set_string(uint32_t partition, std::string_view key, std::string_view value,
                    int64_t expire_at_ms, int64_t now_ms) override {
    check_partition(partition);
    if (auto st = check_sizes(key, value.size()); !st) return st;
    if (expire_at_ms < 0)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("expire_at_ms is {}; allowed: 0 (no TTL) or a Unix time in ms",
                                    expire_at_ms));
    const uint64_t h = hash_key(key);
    if (expire_at_ms != 0 && expire_at_ms <= now_ms)
      return erase_expired_write(partition, key, h, now_ms);
    Entry* ne = alloc_entry(key, false, value, nullptr, expire_at_ms);
    return install_checked(partition, key, h, ne, now_ms);
  }

  Status put(uint32_t partition, std::string_view key, Value value, int64_t now_ms) override {
    check_partition(partition);
    if (value.type == ValueType::kString)
      return set_string(partition, key, value.str, value.expire_at_ms, now_ms);
    if (auto st = check_value(key, value); !st) return st;
    const uint64_t h = hash_key(key);
    if (value.expire_at_ms != 0 && value.expire_at_ms <= now_ms)
      return erase_expired_write(partition, key, h, now_ms);
    Entry* ne = make_entry(key, std::move(value));
    return install_checked(partition, key, h, ne, now_ms);
  }

  Result<bool> erase(uint32_t partition, std::string_view key, int64_t now_ms) override {
    check_partition(partition);
    Entry** link = find_live(partition, key, hash_key(key), now_ms);
    if (!link) return false;
    unlink_and_free(partition, link);
    return true;
  }

  Status update(uint32_t partition, std::string_view key, int64_t now_ms,
                const UpdateFn& fn) override {
    check_partition(partition);
    const uint64_t h = hash_key(key);
    Entry** link = find_live(partition, key, h, now_ms);
    Value scratch;
    if (!link) {
      UpdateAction act = fn(nullptr, &scratch);
      if (act != UpdateAction::kWrite) return {};
      return put(partition, key, std::move(scratch), now_ms);
    }
    Entry* e = *link;
    touch(e, now_ms);
    if (!is_hash(e)) {
      // Strings live inline, so fn works on a copy; a kWrite re-installs it.
      Value copy;
      copy.type = ValueType::kString;
      copy.str.assign(str_of(e));
      copy.expire_at_ms = expire_of(e);
      UpdateAction act = fn(&copy, &scratch);
      if (act == UpdateAction::kKeep) return {};
      if (act == UpdateAction::kErase) return erase_link_fresh(partition, key, h);
      return put(partition, key, std::move(copy), now_ms);
    }
    // Hashes are handed out in place. Under noeviction a write is admitted only while memory
    // is not already above the limit (Redis's rule for commands that may grow memory).
    if (config_.max_memory_bytes && config_.eviction == EvictionPolicy::kNoEviction &&
        used_ > config_.max_memory_bytes)
      return oom();
    HashBox* box = box_of(e);
    box->value.type = box->type;
    box->value.expire_at_ms = expire_of(e);
    UpdateAction act = fn(&box->value, &scratch);
    if (act == UpdateAction::kErase) return erase_link_fresh(partition, key, h);
    // kKeep or kWrite: the object may have changed, so re-measure it either way.
    link = find_link(parts_[partition], h, key);
    KEEL_ASSERT(link && *link == e);
    if (act == UpdateAction::kKeep) {
      box->value.type = box->type;
      box->value.expire_at_ms = expire_of(e);
      remeasure(box);
      return {};
    }
    Value& v = box->value;
    if (v.type != box->type || (v.expire_at_ms != 0 && v.expire_at_ms <= now_ms) ||
        v.expire_at_ms < 0) {
      Value moved = std::move(v);
      v = Value{};
      v.type = box->type;
      remeasure(box);
      if (moved.expire_at_ms < 0) moved.expire_at_ms = 0;
      return put(partition, key, std::move(moved), now_ms);
    }
    remeasure(box);
    if (v.expire_at_ms != expire_of(e)) {
      // The expiry lives in the entry header: rebuild the entry around the same box.
      Entry* ne = alloc_entry(key, true, {}, box, v.expire_at_ms);
      set_access(ne, access_of(e));
      replace(partition, link, ne, /*free_box=*/false);
    }
    if (config_.max_memory_bytes && used_ > config_.max_memory_bytes &&
        config_.eviction != EvictionPolicy::kNoEviction) {
      Entry** l = find_link(parts_[partition], h, key);
      (void)ensure_room(0, l ? *l : nullptr, now_ms);
    }
    return {};
  }

  Status write_batch(std::vector<BatchOp> ops, int64_t now_ms) override {
    // Validate everything first: a batch applies completely or not at all.
    for (const auto& op : ops) {
      if (op.partition >= config_.partitions)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("batch op partition {} out of range; allowed: 0..{}",
                                      op.partition, config_.partitions - 1));
      if (op.value) {
        if (auto st = check_value(op.key, *op.value); !st) return st;
      } else if (op.key.size() > kMaxKeyBytes) {
        return check_sizes(op.key, 0);
      }
    }
    struct Prepared {
      uint64_t hash;
      Entry* entry;  // nullptr = erase
    };
    std::vector<Prepared> prepared;
    prepared.reserve(ops.size());
    int64_t extra = 0;
    std::unordered_set<std::string> seen;
    for (auto& op : ops) {
      const uint64_t h = hash_key(op.key);
      Entry* ne = nullptr;
      if (op.value && !(op.value->expire_at_ms != 0 && op.value->expire_at_ms <= now_ms)) {
        ne = make_entry(op.key, std::move(*op.value));
        extra += static_cast<int64_t>(entry_bytes(ne));
      }
      std::string id;
      id.reserve(4 + op.key.size());
      id.append(reinterpret_cast<const char*>(&op.partition), 4).append(op.key);
      if (seen.insert(std::move(id)).second) {
        if (Entry** l = find_live(op.partition, op.key, h, now_ms))
          extra -= static_cast<int64_t>(entry_bytes(*l));
      }
      prepared.push_back({h, ne});
    }
    if (auto st = ensure_room(extra, nullptr, now_ms); !st) {
      for (auto& p : prepared)
        if (p.entry) free_entry(p.entry, true);
      return st;
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      if (prepared[i].entry) {
        install(ops[i].partition, ops[i].key, prepared[i].hash, prepared[i].entry, now_ms);
      } else if (Entry** l = find_live(ops[i].partition, ops[i].key, prepared[i].hash, now_ms)) {
        unlink_and_free(ops[i].partition, l);
      }
    }
    // Bucket growth was not in the estimate; evicting policies catch up at once.
    if (config_.max_memory_bytes && used_ > config_.max_memory_bytes &&
        config_.eviction != EvictionPolicy::kNoEviction)
      (void)ensure_room(0, nullptr, now_ms);
    return {};
  }

  uint64_t scan(uint64_t cursor, size_t count, int64_t now_ms, const ScanFn& fn) override {
    uint64_t p = cursor >> kCursorBucketBits;
    uint64_t bc = cursor & ((1ull << kCursorBucketBits) - 1);
    size_t emitted = 0;
    size_t buckets_visited = 0;
    const size_t max_buckets = std::max<size_t>(count, 1) * 10;
    count = std::max<size_t>(count, 1);
    while (p < config_.partitions && emitted < count && buckets_visited < max_buckets) {
      const Table& t = parts_[p];
      if (!t.buckets) {
        ++p;
        bc = 0;
        continue;
      }
      for (Entry* e = t.buckets[bc & t.mask]; e; e = e->next) {
        if (!alive(e, now_ms)) continue;
        fn(key_of(e), ref_of(e));
        ++emitted;
      }
      ++buckets_visited;
      bc = next_cursor(bc, t.mask);
      if (bc == 0) ++p;
    }
    if (p >= config_.partitions) return 0;
    return (p << kCursorBucketBits) | bc;
  }

  std::optional<std::string> scan_partition(uint32_t partition, std::string_view start_key,
                                            size_t limit, int64_t now_ms,
                                            const ScanFn& fn) override {
    check_partition(partition);
    const Table& t = parts_[partition];
    if (!t.buckets) return std::nullopt;
    std::vector<const Entry*> found;
    for (uint64_t b = 0; b <= t.mask; ++b)
      for (Entry* e = t.buckets[b]; e; e = e->next)
        if (alive(e, now_ms) && key_of(e) >= start_key) found.push_back(e);
    auto less = [](const Entry* a, const Entry* b) { return key_of(a) < key_of(b); };
    const size_t take = found.size() <= limit ? found.size() : limit + 1;  // no overflow at SIZE_MAX
    std::partial_sort(found.begin(), found.begin() + static_cast<ptrdiff_t>(take), found.end(),
                      less);
    const size_t emit = std::min(found.size(), limit);
    for (size_t i = 0; i < emit; ++i) fn(key_of(found[i]), ref_of(found[i]));
    if (found.size() > limit) return std::string(key_of(found[limit]));
    return std::nullopt;
  }

  bool ordered_scan() const override { return false; }

  Status drop_partition(uint32_t partition) override {
    if (partition >= config_.partitions)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("partition {} out of range; allowed: 0..{}", partition,
                                    config_.partitions - 1));
    free_table(partition);
    return {};
  }

  Status clear() override {
    free_all();
    pool_.clear();
    return {};
  }

  uint64_t size() const override { return keys_; }

  void maintenance(int64_t now_ms, size_t budget) override {
    // Active expiry, Redis-style: sample keys with a TTL in rounds of 20; keep going while more
    // than a quarter of a round was expired, never beyond `budget` samples.
    size_t sampled = 0;
    while (sampled < budget && !volatile_.empty()) {
      const size_t round = std::min<size_t>(20, budget - sampled);
      size_t expired = 0;
      for (size_t i = 0; i < round && !volatile_.empty(); ++i) {
        VolatileSlot s = volatile_[rng_.uniform(volatile_.size())];
        if (!alive(s.entry, now_ms)) {
          std::string key(key_of(s.entry));
          Entry** l = find_link(parts_[s.partition], hash_key(key), key);
          KEEL_ASSERT(l && *l == s.entry);
          unlink_and_free(s.partition, l);
          ++expired_total_;
          ++expired;
          if (removed_) removed_(s.partition, key, RemovalCause::kExpired);
        }
      }
      sampled += round;
      if (expired * 4 <= round) break;
    }
    // Eviction catch-up (e.g. after max_memory was lowered or a hash grew in place).
    if (config_.max_memory_bytes && config_.eviction != EvictionPolicy::kNoEviction) {
      for (size_t i = 0; i < budget && used_ > config_.max_memory_bytes; ++i)
        if (!evict_one(now_ms, nullptr)) break;
    }
  }

  Status flush() override { return {}; }

  void set_removal_listener(RemovalListener listener) override { removed_ = std::move(listener); }

  EngineStats stats() const override {
    EngineStats s;
    s.keys = keys_;
    s.keys_with_expiry = volatile_.size();
    s.used_memory_bytes = used_;
    s.expired_keys_total = expired_total_;
    s.evicted_keys_total = evicted_total_;
    return s;
  }

 private:
  void check_partition(uint32_t partition) const {
    KEEL_ASSERT_MSG(partition < config_.partitions, "partition id out of range for this engine");
  }

  static Status check_sizes(std::string_view key, uint64_t value_bytes) {
    if (key.size() > kMaxKeyBytes)
      return make_error(Errc::kLimitExceeded, fmt::format("key is {} bytes; the limit is {} bytes",
                                                          key.size(), kMaxKeyBytes));
    if (value_bytes > kMaxValueBytes)
      return make_error(
          Errc::kLimitExceeded,
          fmt::format("value is {} bytes; the limit is {} bytes", value_bytes, kMaxValueBytes));
    return {};
  }

  static Status check_value(std::string_view key, const Value& v) {
    if (v.expire_at_ms < 0)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("expire_at_ms is {}; allowed: 0 (no TTL) or a Unix time in ms",
                                    v.expire_at_ms));
    return check_sizes(key, v.type == ValueType::kString ? v.str.size() : 0);
  }

  static Status oom() { return make_error(Errc::kOutOfMemory, std::string(kOomMessage)); }

  Entry* make_entry(std::string_view key, Value value) {
    if (value.type == ValueType::kString)
      return alloc_entry(key, false, value.str, nullptr, value.expire_at_ms);
    const ValueType type = value.type;
    auto* box = new HashBox{std::move(value), 0, type};
    box->value.str.clear();
    box->accounted_bytes = hash_value_bytes(box->value);
    return alloc_entry(key, true, {}, box, box->value.expire_at_ms);
  }

  // Everything one key costs: its block, a hash value's estimate, and its slot in the TTL
  // array (the array's spare capacity is not charged).
  static uint64_t entry_bytes(const Entry* e) {
    uint64_t b = block_bytes(e);
    if (is_hash(e)) b += box_of(e)->accounted_bytes;
    if (has_expiry(e)) b += sizeof(VolatileSlot);
    return b;
  }

  void remeasure(HashBox* box) {
    used_ -= box->accounted_bytes;
    const Value& v = box->value;
    const uint64_t n = elements_of(v);
    if (v.type == ValueType::kStream || n <= 128) {
      box->accounted_bytes = hash_value_bytes(v);
      box->sample_count = 0;
    } else if (box->sample_count && ++box->changes_since_sample < 1024 && n <= 2 * box->sampled_at &&
               2 * n >= box->sampled_at) {
      box->accounted_bytes = estimate(v, ElemSample{box->sample_sum, box->sample_count});
    } else {
      ElemSample s = sample_elements(v);
      box->sample_sum = s.sum;
      box->sample_count = static_cast<uint32_t>(s.count);
      box->sampled_at = n;
      box->changes_since_sample = 0;
      box->accounted_bytes = estimate(v, s);
    }
    used_ += box->accounted_bytes;
  }

  static void free_entry(Entry* e, bool free_box) {
    if (free_box && is_hash(e)) delete box_of(e);
    std::free(e);
  }

  ValueRef ref_of(const Entry* e) const {
    ValueRef r;
    r.expire_at_ms = expire_of(e);
    if (is_hash(e)) {
      const HashBox* box = box_of(e);
      r.type = box->type;
      r.hash = &box->value.hash;
      r.list = &box->value.list;
      r.set = &box->value.set;
      r.zset = &box->value.zset;
      r.stream = &box->value.stream;
    } else {
      r.type = ValueType::kString;
      r.str = str_of(e);
    }
    return r;
  }

  // ---- access tracking (LRU clock / LFU counter) ----
  // LRU clock: seconds in 24 bits (wraps after 194 days, as Redis's).
  static uint32_t lru_ticks(int64_t now_ms) {
    return static_cast<uint32_t>(now_ms / 1000) & kAccessMask;
  }
  static uint32_t lfu_minutes(int64_t now_ms) {
    return static_cast<uint32_t>(now_ms / 60000) & 0xffff;
  }
  uint32_t initial_access(int64_t now_ms) const {
    return lfu_ ? (lfu_minutes(now_ms) << 8) | kLfuInitVal : lru_ticks(now_ms);
  }
  static uint32_t idle_ticks(const Entry* e, int64_t now_ms) {
    uint32_t d = (lru_ticks(now_ms) - access_of(e)) & kAccessMask;
    return d > (kAccessMask >> 1) ? 0 : d;  // a clock that went back means "just used"
  }
  static uint8_t lfu_decayed(const Entry* e, int64_t now_ms) {
    uint32_t counter = access_of(e) & 0xff;
    uint32_t elapsed = (lfu_minutes(now_ms) - (access_of(e) >> 8)) & 0xffff;
    uint32_t periods = elapsed / kLfuDecayMinutes;
    return static_cast<uint8_t>(periods >= counter ? 0 : counter - periods);
  }
  void touch(Entry* e, int64_t now_ms) {
    if (!lfu_) {
      set_access(e, lru_ticks(now_ms));
      return;
    }
    uint32_t counter = lfu_decayed(e, now_ms);
    if (counter < 255) {
      double base = counter > kLfuInitVal ? counter - kLfuInitVal : 0;
      if (rng_.unit() < 1.0 / (base * kLfuLogFactor + 1)) ++counter;
    }
    set_access(e, (lfu_minutes(now_ms) << 8) | counter);
  }

  // ---- table operations ----
  static Entry** find_link(Table& t, uint64_t h, std::string_view key) {
    if (!t.buckets) return nullptr;
    for (Entry** link = &t.buckets[h & t.mask]; *link; link = &(*link)->next) {
      if (key_of(*link) == key) return link;
    }
    return nullptr;
  }

  // The link to the live entry for key, or nullptr. An expired entry is removed on the way.
  Entry** find_live(uint32_t partition, std::string_view key, uint64_t h, int64_t now_ms) {
    Entry** link = find_link(parts_[partition], h, key);
    if (!link) return nullptr;
    if (!alive(*link, now_ms)) {
      std::string removed_key = removed_ ? std::string(key) : std::string();
      unlink_and_free(partition, link);
      ++expired_total_;
      if (removed_) removed_(partition, removed_key, RemovalCause::kExpired);
      return nullptr;
    }
    return link;
  }

  void resize(Table& t, uint64_t buckets) {
    KEEL_ASSERT(buckets >= kMinBuckets && (buckets & (buckets - 1)) == 0);
    auto** nb = static_cast<Entry**>(std::calloc(buckets, sizeof(Entry*)));
    if (!nb) throw std::bad_alloc();
    const uint64_t nmask = buckets - 1;
    for (uint64_t b = 0; t.buckets && b <= t.mask; ++b) {
      Entry* e = t.buckets[b];
      while (e) {
        Entry* next = e->next;
        Entry** slot = &nb[hash_key(key_of(e)) & nmask];
        e->next = *slot;
        *slot = e;
        e = next;
      }
    }
    if (t.buckets) {
      used_ -= block_bytes(t.buckets);
      std::free(t.buckets);
    }
    t.buckets = nb;
    t.mask = nmask;
    used_ += block_bytes(nb);
  }

  void link_new(uint32_t partition, uint64_t h, Entry* e) {
    Table& t = parts_[partition];
    if (!t.buckets) {
      resize(t, kMinBuckets);
      nonempty_pos_[partition] = static_cast<int32_t>(nonempty_.size());
      nonempty_.push_back(partition);
    } else if (t.used + 1 > t.mask + 1) {
      resize(t, (t.mask + 1) * 2);
    }
    Entry** slot = &t.buckets[h & t.mask];
    e->next = *slot;
    *slot = e;
    ++t.used;
    ++keys_;
    used_ += entry_bytes(e);
    if (has_expiry(e)) vol_add(e, partition);
  }

  void replace(uint32_t partition, Entry** link, Entry* ne, bool free_box) {
    Entry* old = *link;
    ne->next = old->next;
    *link = ne;
    used_ -= entry_bytes(old);
    used_ += entry_bytes(ne);
    if (has_expiry(old) && has_expiry(ne)) {
      uint32_t i = vol_index(old);
      volatile_[i].entry = ne;
      set_vol_index(ne, i);
    } else if (has_expiry(old)) {
      vol_remove(vol_index(old));
    } else if (has_expiry(ne)) {
      vol_add(ne, partition);
    }
    free_entry(old, free_box);
  }

  void unlink_and_free(uint32_t partition, Entry** link) {
    Table& t = parts_[partition];
    Entry* e = *link;
    *link = e->next;
    if (has_expiry(e)) vol_remove(vol_index(e));
    used_ -= entry_bytes(e);
    free_entry(e, true);
    --t.used;
    --keys_;
    if (t.used == 0) {
      release_buckets(partition);
    } else if (t.mask + 1 > kMinBuckets && t.used < (t.mask + 1) / 8) {
      resize(t, (t.mask + 1) / 2);
    }
  }

  void release_buckets(uint32_t partition) {
    Table& t = parts_[partition];
    if (!t.buckets) return;
    used_ -= block_bytes(t.buckets);
    std::free(t.buckets);
    t = Table{};
    int32_t pos = nonempty_pos_[partition];
    KEEL_ASSERT(pos >= 0);
    uint32_t last = nonempty_.back();
    nonempty_[static_cast<size_t>(pos)] = last;
    nonempty_pos_[last] = pos;
    nonempty_.pop_back();
    nonempty_pos_[partition] = -1;
  }

  void vol_add(Entry* e, uint32_t partition) {
    set_vol_index(e, static_cast<uint32_t>(volatile_.size()));
    volatile_.push_back({e, partition});
  }
  void vol_remove(uint32_t i) {
    KEEL_ASSERT(i < volatile_.size());
    VolatileSlot last = volatile_.back();
    volatile_[i] = last;
    set_vol_index(last.entry, i);
    volatile_.pop_back();
  }

  void free_table(uint32_t partition) {
    Table& t = parts_[partition];
    if (!t.buckets) return;
    for (uint64_t b = 0; b <= t.mask; ++b) {
      Entry* e = t.buckets[b];
      while (e) {
        Entry* next = e->next;
        if (has_expiry(e)) vol_remove(vol_index(e));
        used_ -= entry_bytes(e);
        free_entry(e, true);
        --keys_;
        e = next;
      }
    }
    t.used = 0;
    release_buckets(partition);
  }

  void free_all() {
    while (!nonempty_.empty()) free_table(nonempty_.back());
    KEEL_ASSERT(keys_ == 0 && volatile_.empty() && used_ == base_bytes());
  }

  // Installs `ne` (already allocated) after checking maxmemory.
  Status install_checked(uint32_t partition, std::string_view key, uint64_t h, Entry* ne,
                         int64_t now_ms) {
    Entry** link = find_live(partition, key, h, now_ms);
    int64_t extra = static_cast<int64_t>(entry_bytes(ne)) -
                    (link ? static_cast<int64_t>(entry_bytes(*link)) : 0);
    if (!link) extra += static_cast<int64_t>(table_growth_bytes(partition));
    if (auto st = ensure_room(extra, link ? *link : nullptr, now_ms); !st) {
      free_entry(ne, true);
      return st;
    }
    install(partition, key, h, ne, now_ms);
    // The growth estimate can be off by an allocator rounding; evicting policies catch up now.
    if (config_.max_memory_bytes && used_ > config_.max_memory_bytes &&
        config_.eviction != EvictionPolicy::kNoEviction)
      (void)ensure_room(0, ne, now_ms);
    return {};
  }

  // What adding one key to `partition` would add in bucket arrays (glibc chunk rounding).
  uint64_t table_growth_bytes(uint32_t partition) const {
    auto chunk = [](uint64_t n) { return std::max<uint64_t>(32, (n + 8 + 15) & ~uint64_t{15}); };
    const Table& t = parts_[partition];
    if (!t.buckets) return chunk(kMinBuckets * sizeof(Entry*));
    if (t.used + 1 <= t.mask + 1) return 0;
    return chunk((t.mask + 1) * 2 * sizeof(Entry*)) - block_bytes(t.buckets);
  }

  void install(uint32_t partition, std::string_view key, uint64_t h, Entry* ne, int64_t now_ms) {
    Entry** link = find_live(partition, key, h, now_ms);
    if (link) {
      // Like Redis, an overwrite keeps the key's access history (LFU counter), then counts
      // as an access.
      set_access(ne, access_of(*link));
      touch(ne, now_ms);
      replace(partition, link, ne, true);
    } else {
      set_access(ne, initial_access(now_ms));
      link_new(partition, h, ne);
    }
  }

  Status erase_expired_write(uint32_t partition, std::string_view key, uint64_t h, int64_t now_ms) {
    // Writing a deadline that already passed: the key ends up absent (as Redis's SET PXAT).
    if (Entry** l = find_live(partition, key, h, now_ms)) unlink_and_free(partition, l);
    return {};
  }

  Status erase_link_fresh(uint32_t partition, std::string_view key, uint64_t h) {
    Entry** l = find_link(parts_[partition], h, key);
    if (l) unlink_and_free(partition, l);
    return {};
  }

  // ---- eviction ----
  bool volatile_policy() const {
    return config_.eviction == EvictionPolicy::kVolatileLru ||
           config_.eviction == EvictionPolicy::kVolatileLfu ||
           config_.eviction == EvictionPolicy::kVolatileTtl;
  }

  VolatileSlot random_entry() {
    uint32_t p = nonempty_[rng_.uniform(nonempty_.size())];
    const Table& t = parts_[p];
    uint64_t b = rng_.uniform(t.mask + 1);
    while (!t.buckets[b]) b = (b + 1) & t.mask;
    size_t len = 0;
    for (Entry* e = t.buckets[b]; e; e = e->next) ++len;
    size_t k = rng_.uniform(len);
    Entry* e = t.buckets[b];
    while (k--) e = e->next;
    return {e, p};
  }

  // Higher = better eviction candidate.
  uint64_t score(const Entry* e, int64_t now_ms) const {
    switch (config_.eviction) {
      case EvictionPolicy::kAllKeysLru:
      case EvictionPolicy::kVolatileLru:
        return idle_ticks(e, now_ms);
      case EvictionPolicy::kAllKeysLfu:
      case EvictionPolicy::kVolatileLfu:
        return 255 - lfu_decayed(e, now_ms);
      case EvictionPolicy::kVolatileTtl:
        return UINT64_MAX - static_cast<uint64_t>(expire_of(e));
      default:
        return 0;
    }
  }

  // Redis's eviction pool: the best candidates seen by recent samplings (ascending score),
  // kept across calls so each eviction benefits from more than `eviction_samples` keys.
  struct PoolEntry {
    uint64_t score;
    uint32_t partition;
    std::string key;
  };
  static constexpr size_t kPoolSize = 16;  // Redis's EVPOOL_SIZE

  void pool_offer(uint64_t sc, const VolatileSlot& s) {
    if (pool_.size() == kPoolSize && sc <= pool_.front().score) return;
    std::string_view key = key_of(s.entry);
    for (const auto& c : pool_)
      if (c.partition == s.partition && c.key == key) return;
    auto pos = std::upper_bound(pool_.begin(), pool_.end(), sc,
                                [](uint64_t v, const PoolEntry& c) { return v < c.score; });
    pool_.insert(pos, PoolEntry{sc, s.partition, std::string(key)});
    if (pool_.size() > kPoolSize) pool_.erase(pool_.begin());
  }

  VolatileSlot sample() {
    if (volatile_policy()) return volatile_[rng_.uniform(volatile_.size())];
    return random_entry();
  }

  bool evict_one(int64_t now_ms, const Entry* protect) {
    const bool vol = volatile_policy();
    if (vol ? volatile_.empty() : nonempty_.empty()) return false;
    if (config_.eviction == EvictionPolicy::kAllKeysRandom) {
      VolatileSlot s{nullptr, 0};
      for (int i = 0; i < 8 && (!s.entry || s.entry == protect); ++i) s = sample();
      if (!s.entry || s.entry == protect) return false;
      evict(s);
      return true;
    }
    for (int attempt = 0; attempt < 4; ++attempt) {
      for (unsigned i = 0; i < config_.eviction_samples; ++i) {
        VolatileSlot s = sample();
        if (s.entry != protect) pool_offer(score(s.entry, now_ms), s);
      }
      // Best first; pooled keys may have been deleted or lost their TTL since.
      while (!pool_.empty()) {
        PoolEntry c = std::move(pool_.back());
        pool_.pop_back();
        Entry** l = find_link(parts_[c.partition], hash_key(c.key), c.key);
        if (!l || *l == protect || (vol && !has_expiry(*l))) continue;
        evict({*l, c.partition});
        return true;
      }
    }
    return false;
  }

  void evict(const VolatileSlot& s) {
    std::string key(key_of(s.entry));
    Entry** l = find_link(parts_[s.partition], hash_key(key), key);
    KEEL_ASSERT(l && *l == s.entry);
    unlink_and_free(s.partition, l);
    ++evicted_total_;
    if (removed_) removed_(s.partition, key, RemovalCause::kEvicted);
  }

  Status ensure_room(int64_t extra, const Entry* protect, int64_t now_ms) {
    const uint64_t max = config_.max_memory_bytes;
    if (max == 0) return {};
    auto over = [&] { return static_cast<int64_t>(used_) + extra > static_cast<int64_t>(max); };
    while (over()) {
      if (config_.eviction == EvictionPolicy::kNoEviction) return oom();
      if (!evict_one(now_ms, protect)) return oom();
    }
    return {};
  }

  EngineConfig config_;
  SeededRandom rng_;
  bool lfu_ = false;
  std::vector<Table> parts_;
  std::vector<uint32_t> nonempty_;      // partitions with a bucket array
  std::vector<int32_t> nonempty_pos_;   // partition -> index in nonempty_, or -1
  std::vector<VolatileSlot> volatile_;  // every entry with a TTL (for sampling)
  std::vector<PoolEntry> pool_;         // eviction candidates, ascending score
  uint64_t keys_ = 0;
  uint64_t used_ = 0;
  uint64_t expired_total_ = 0;
  RemovalListener removed_;
  uint64_t evicted_total_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_memory_engine(const EngineConfig& config, uint64_t seed) {
  return std::make_unique<MemoryEngine>(config, seed);
}

}  // namespace keel::storage
