#include "storage/rocksdb/rocksdb_engine.h"

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <system_error>
#include <unordered_map>

#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include "base/assert.h"
#include "base/codec.h"
#include "base/random.h"
#include "security/keyring.h"
#include "storage/delta.h"
#include "storage/rewrap_driver.h"
#include "storage/disk_guard.h"
#include "observe/log.h"
#include "observe/signal_hub.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kStorage); }
}  // namespace

namespace keel::storage {
namespace {

// ---- formats -----------------------------------------------------------------------------
//
// key   = u32be partition ++ user key            (a partition is one contiguous key range)
// value = u8 version (1) ++ u8 type ++ u64be expire_at_ms (0 = none) ++ body
//   string body: the raw bytes
//   hash body:   varint field count, then per field: bytes(name) bytes(value)
//   list body:   varint element count, then per element (head first): bytes(element), then
//                varint change number (storage/list_value.h; absent when 0, as before it existed)
//   set body:    varint member count, then per member (sorted): bytes(member)
//   zset body:   varint member count, then per member (sorted by member): bytes(member),
//                u64be IEEE-754 bits of the score
//   stream body: StreamValue::encode (storage/stream_value.h): nodes of entries as they are in
//                memory, then the consumer groups with their pending entries
// The fixed-position expiry lets the compaction filter decide without decoding the body.
//
// A change described element by element (storage/delta.h) is written as a RocksDB merge operand
// on the key: the same header with the type's high bit set (kDeltaTypeFlag) and the delta's ops
// as the body (sealed like a value's body under a keyring). DeltaMerge folds the operands into
// the value below them when RocksDB reads or compacts the key, so a write costs what it changes,
// not the size of the collection. A value that cannot be folded (an operand or base that
// cannot be opened or applied) becomes an unreadable marker: u8 0xff ++ why (reads answer
// "cannot read key ...: why", SET or DEL replaces it).
constexpr uint8_t kFormatVersion = 1;
constexpr uint8_t kSealedFormatVersion = 2;  // encrypted at rest: see encode_stored
constexpr uint8_t kUnreadableFormat = 0xff;
constexpr uint8_t kDeltaTypeFlag = 0x80;
constexpr size_t kValueHeaderBytes = 10;
constexpr size_t kMaxScanCursors = 1024;
constexpr uint64_t kMaxKeyBytes = 512ull << 20;
constexpr uint64_t kMaxValueBytes = 512ull << 20;

constexpr const char* kMarksFamily = "keel_log_marks";  // partition (u32be) -> log mark

std::string partition_prefix(uint32_t partition) {
  std::string out;
  Writer(out).u32be(partition);
  return out;
}

std::string encode_key(uint32_t partition, std::string_view key) {
  std::string out;
  out.reserve(4 + key.size());
  Writer w(out);
  w.u32be(partition);
  w.raw(key);
  return out;
}

uint32_t partition_of(std::string_view raw_key) {
  KEEL_ASSERT(raw_key.size() >= 4);
  return (static_cast<uint32_t>(static_cast<uint8_t>(raw_key[0])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(raw_key[1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(raw_key[2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(raw_key[3]));
}

void encode_value(const Value& v, std::string& out) {
  out.clear();
  Writer w(out);
  w.u8(kFormatVersion);
  w.u8(static_cast<uint8_t>(v.type));
  w.u64be(static_cast<uint64_t>(v.expire_at_ms));
  if (v.type == ValueType::kString) {
    w.raw(v.str);
  } else if (v.type == ValueType::kList) {
    w.varint(v.list.size());
    for (size_t i = 0; i < v.list.size(); ++i) w.bytes(v.list[i]);
    if (v.list.version()) w.varint(v.list.version());  // absent (0) in lists stored before it
  } else if (v.type == ValueType::kStream) {
    v.stream.encode(w);
  } else if (v.type == ValueType::kZSet) {
    w.varint(v.zset.size());
    std::vector<const std::pair<const std::string, double>*> members;
    members.reserve(v.zset.size());
    for (const auto& kv : v.zset.dict()) members.push_back(&kv);
    std::sort(members.begin(), members.end(), [](auto* a, auto* b) { return a->first < b->first; });
    for (const auto* kv : members) {
      w.bytes(kv->first);
      uint64_t bits;
      std::memcpy(&bits, &kv->second, sizeof bits);
      w.u64be(bits);
    }
  } else if (v.type == ValueType::kSet) {
    w.varint(v.set.size());
    std::vector<const std::string*> members;
    members.reserve(v.set.size());
    for (const auto& m : v.set) members.push_back(&m);
    std::sort(members.begin(), members.end(), [](auto* a, auto* b) { return *a < *b; });
    for (const auto* m : members) w.bytes(*m);
  } else {
    w.varint(v.hash.size());
    // Sorted, so equal hashes encode equally.
    std::vector<const std::pair<const std::string, std::string>*> fields;
    fields.reserve(v.hash.size());
    for (const auto& kv : v.hash) fields.push_back(&kv);
    std::sort(fields.begin(), fields.end(), [](auto* a, auto* b) { return a->first < b->first; });
    for (const auto* kv : fields) {
      w.bytes(kv->first);
      w.bytes(kv->second);
    }
  }
}

// Expiry of an encoded value without decoding it; 0 if none or unreadable.
int64_t encoded_expiry(std::string_view raw) {
  if (raw.size() < kValueHeaderBytes) return 0;
  if (static_cast<uint8_t>(raw[0]) != kFormatVersion && static_cast<uint8_t>(raw[0]) != kSealedFormatVersion) return 0;
  Reader r(raw.substr(2, 8));
  auto e = r.u64be();
  return e ? static_cast<int64_t>(*e) : 0;
}

bool encoded_alive(std::string_view raw, int64_t now_ms) {
  int64_t e = encoded_expiry(raw);
  return e == 0 || e > now_ms;
}

// Decodes a body (what follows the 10-byte header) of `type`.
Status decode_body(uint8_t type_byte, int64_t expire_at_ms, std::string_view body, Value& out) {
  Reader r(body);
  const uint8_t* type = &type_byte;
  out.expire_at_ms = expire_at_ms;
  out.str.clear();
  out.hash.clear();
  out.list.clear();
  out.list.set_version(0);
  out.set.clear();
  out.zset.clear();
  out.stream = StreamValue();
  if (*type == static_cast<uint8_t>(ValueType::kString)) {
    out.type = ValueType::kString;
    out.str.assign(body);
    return {};
  }
  if (*type == static_cast<uint8_t>(ValueType::kStream)) {
    out.type = ValueType::kStream;
    auto s = StreamValue::decode(r);
    if (!s) return std::unexpected(s.error());
    if (!r.done()) return make_error(Errc::kCorruption, "trailing bytes after a stored stream");
    out.stream = std::move(*s);
    return {};
  }
  if (*type == static_cast<uint8_t>(ValueType::kZSet)) {
    out.type = ValueType::kZSet;
    auto n = r.varint();
    if (!n) return std::unexpected(n.error());
    if (*n > r.remaining() / 9)
      return make_error(Errc::kCorruption,
                        fmt::format("zset claims {} members in {} bytes", *n, r.remaining()));
    for (uint64_t i = 0; i < *n; ++i) {
      auto m = r.bytes();
      if (!m) return std::unexpected(m.error());
      auto bits = r.u64be();
      if (!bits) return std::unexpected(bits.error());
      double score;
      std::memcpy(&score, &*bits, sizeof score);
      if (std::isnan(score)) return make_error(Errc::kCorruption, "stored zset score is NaN");
      out.zset.set(*m, score);
    }
    if (!r.done()) return make_error(Errc::kCorruption, "trailing bytes after a stored zset");
    return {};
  }
  if (*type == static_cast<uint8_t>(ValueType::kList) ||
      *type == static_cast<uint8_t>(ValueType::kSet)) {
    const bool list = *type == static_cast<uint8_t>(ValueType::kList);
    out.type = list ? ValueType::kList : ValueType::kSet;
    auto n = r.varint();
    if (!n) return std::unexpected(n.error());
    if (*n > r.remaining())
      return make_error(Errc::kCorruption, fmt::format("{} claims {} elements in {} bytes",
                                                       list ? "list" : "set", *n, r.remaining()));
    if (list) out.list.reserve(*n);
    else out.set.reserve(*n);
    for (uint64_t i = 0; i < *n; ++i) {
      auto e = r.bytes();
      if (!e) return std::unexpected(e.error());
      if (list) out.list.push_back(std::string(*e));
      else out.set.emplace(*e);
    }
    if (list && !r.done()) {  // the list's change number
      auto version = r.varint();
      if (!version) return std::unexpected(version.error());
      out.list.set_version(*version);
    }
    if (!r.done()) return make_error(Errc::kCorruption, "trailing bytes after a stored collection");
    return {};
  }
  if (*type != static_cast<uint8_t>(ValueType::kHash))
    return make_error(Errc::kCorruption, fmt::format("stored value has unknown type {}", *type));
  out.type = ValueType::kHash;
  auto n = r.varint();
  if (!n) return std::unexpected(n.error());
  if (*n > r.remaining() / 2)
    return make_error(Errc::kCorruption,
                      fmt::format("hash claims {} fields in {} bytes", *n, r.remaining()));
  out.hash.reserve(*n);
  for (uint64_t i = 0; i < *n; ++i) {
    auto f = r.bytes();
    if (!f) return std::unexpected(f.error());
    auto v = r.bytes();
    if (!v) return std::unexpected(v.error());
    out.hash.emplace(std::string(*f), std::string(*v));
  }
  if (!r.done()) return make_error(Errc::kCorruption, "trailing bytes after a stored hash");
  return {};
}

Status decode_value(std::string_view raw, Value& out) {
  if (raw.size() < kValueHeaderBytes)
    return make_error(Errc::kCorruption, fmt::format("stored value is {} bytes, shorter than its header", raw.size()));
  if (static_cast<uint8_t>(raw[0]) != kFormatVersion)
    return make_error(Errc::kCorruption, fmt::format("stored value has format version {}; this build reads {} and {}",
                                                     static_cast<uint8_t>(raw[0]), kFormatVersion, kSealedFormatVersion));
  Reader r(raw.substr(2, 8));
  auto expire = r.u64be();
  if (!expire) return std::unexpected(expire.error());
  return decode_body(static_cast<uint8_t>(raw[1]), static_cast<int64_t>(*expire), raw.substr(kValueHeaderBytes), out);
}

// ---- encryption at rest (security/at_rest_codec.h, security/keyring.h) -------------------
//
// With a keyring, values are stored sealed:
//   value = u8 2 ++ u8 type ++ u64be expire_at_ms ++ u32be key_version ++ nonce[12] ++
//           AES-256-GCM(body) ++ tag[16]
// The 10-byte header stays plaintext (the compaction filter reads the expiry) and is
// authenticated with the raw key (partition ++ user key) as associated data: a value moved to
// another key, or given another type or expiry, fails authentication. Format-1 values
// (plaintext) are "version 0": readable until `keel keys retire 0`, rewrapped in the background.

// Why a stored value cannot be read, as the client sees it.
std::unexpected<Error> unreadable_error(std::string_view raw_key, std::string_view why) {
  std::string_view user = raw_key.size() >= 4 ? raw_key.substr(4) : raw_key;
  return make_error(Errc::kCorruption,
                    fmt::format("cannot read key '{}': {}; other keys are served, and SET or DEL replaces it", user, why));
}

// The key version a stored value is under (0 = plaintext), without decrypting it.
std::optional<uint32_t> stored_key_version(std::string_view raw) {
  if (raw.empty()) return std::nullopt;
  if (static_cast<uint8_t>(raw[0]) == kFormatVersion) return 0;
  if (static_cast<uint8_t>(raw[0]) != kSealedFormatVersion || raw.size() < kValueHeaderBytes) return std::nullopt;
  auto v = security::at_rest::sealed_version(raw.substr(kValueHeaderBytes));
  if (!v) return std::nullopt;
  return *v;
}

// Encodes `v` as stored under `raw_key`: sealed under the keyring's current key, or plaintext
// without a keyring. `plain` is scratch (kept to spare allocations).
Status encode_stored(const security::at_rest::Keyring* keyring, std::string_view raw_key, const Value& v,
                     std::string& out, std::string& plain) {
  if (keyring == nullptr) {
    encode_value(v, out);
    return {};
  }
  encode_value(v, plain);
  out.assign(plain, 0, kValueHeaderBytes);
  out[0] = static_cast<char>(kSealedFormatVersion);
  const std::string_view header(out.data(), kValueHeaderBytes);
  const std::string header_copy(header);  // `out` grows while sealing
  return security::at_rest::seal(keyring->current(), raw_key, header_copy,
                                 std::string_view(plain).substr(kValueHeaderBytes), out);
}

// Decodes a stored value, opening it first if sealed. `plain` is scratch.
Status decode_stored(const security::at_rest::Keyring* keyring, std::string_view raw_key, std::string_view raw,
                     Value& out, std::string& plain) {
  if (raw.empty()) return unreadable_error(raw_key, "the stored value is empty");
  const uint8_t format = static_cast<uint8_t>(raw[0]);
  if (format == kUnreadableFormat) return unreadable_error(raw_key, raw.substr(1));
  if (format == kFormatVersion) {
    if (keyring && keyring->state(0) == security::at_rest::Keyring::State::kRetired)
      return unreadable_error(raw_key, "it is stored in plaintext and " + keyring->unreadable_reason(0));
    return decode_value(raw, out);
  }
  if (format != kSealedFormatVersion || raw.size() < kValueHeaderBytes) return decode_value(raw, out);
  const std::string_view header = raw.substr(0, kValueHeaderBytes);
  auto sealed = security::at_rest::parse_sealed(raw.substr(kValueHeaderBytes));
  if (!sealed) return unreadable_error(raw_key, sealed.error().message);
  if (keyring == nullptr)
    return unreadable_error(raw_key, fmt::format("it is encrypted (at-rest key version {}) and this node has no "
                                                 "master key; set security.at_rest.key_file or security.at_rest.key_env",
                                                 sealed->version));
  const auto* key = keyring->find(sealed->version);
  if (key == nullptr) return unreadable_error(raw_key, keyring->unreadable_reason(sealed->version));
  if (auto st = security::at_rest::open_sealed(*key, *sealed, raw_key, header, plain); !st)
    return unreadable_error(raw_key, st.error().message);
  Reader r(raw.substr(2, 8));
  auto expire = r.u64be();
  if (!expire) return std::unexpected(expire.error());
  return decode_body(static_cast<uint8_t>(raw[1]), static_cast<int64_t>(*expire), plain, out);
}

// Encodes delta ops as the merge operand stored under `raw_key` (see the format notes above).
Status encode_operand(const security::at_rest::Keyring* keyring, std::string_view raw_key, ValueType type,
                      int64_t expire_at_ms, std::string_view ops, std::string& out) {
  out.clear();
  Writer w(out);
  w.u8(keyring ? kSealedFormatVersion : kFormatVersion);
  w.u8(static_cast<uint8_t>(type) | kDeltaTypeFlag);
  w.u64be(static_cast<uint64_t>(expire_at_ms));
  if (keyring == nullptr) {
    w.raw(ops);
    return {};
  }
  const std::string header(out);  // `out` grows while sealing
  return security::at_rest::seal(keyring->current(), raw_key, header, ops, out);
}

// Opens a merge operand: its value type, the key's expiry and the delta's ops (a view into
// `raw` or into `plain`).
Status open_operand(const security::at_rest::Keyring* keyring, std::string_view raw_key, std::string_view raw,
                    ValueType& type, int64_t& expire_at_ms, std::string_view& ops, std::string& plain) {
  if (raw.size() < kValueHeaderBytes) return unreadable_error(raw_key, "a stored change is shorter than its header");
  const uint8_t format = static_cast<uint8_t>(raw[0]);
  const uint8_t t = static_cast<uint8_t>(raw[1]);
  if ((format != kFormatVersion && format != kSealedFormatVersion) || !(t & kDeltaTypeFlag) ||
      (t & ~kDeltaTypeFlag) > static_cast<uint8_t>(ValueType::kStream))
    return unreadable_error(raw_key, fmt::format("a stored change has format {} and type {}", format, t));
  type = static_cast<ValueType>(t & ~kDeltaTypeFlag);
  Reader r(raw.substr(2, 8));
  expire_at_ms = static_cast<int64_t>(*r.u64be());
  if (format == kFormatVersion) {
    ops = raw.substr(kValueHeaderBytes);
    return {};
  }
  auto sealed = security::at_rest::parse_sealed(raw.substr(kValueHeaderBytes));
  if (!sealed) return unreadable_error(raw_key, sealed.error().message);
  if (keyring == nullptr)
    return unreadable_error(raw_key, fmt::format("a change to it is encrypted (at-rest key version {}) and this "
                                                 "node has no master key",
                                                 sealed->version));
  const auto* key = keyring->find(sealed->version);
  if (key == nullptr) return unreadable_error(raw_key, keyring->unreadable_reason(sealed->version));
  if (auto st = security::at_rest::open_sealed(*key, *sealed, raw_key, raw.substr(0, kValueHeaderBytes), plain); !st)
    return unreadable_error(raw_key, st.error().message);
  ops = plain;
  return {};
}

std::unexpected<Error> io_error(const char* what, const rocksdb::Status& s) {
  return make_error(s.IsCorruption() ? Errc::kCorruption : Errc::kIoError,
                    fmt::format("rocksdb {}: {}", what, s.ToString()));
}

Status check_sizes(std::string_view key, const Value* v) {
  if (key.size() > kMaxKeyBytes)
    return make_error(Errc::kLimitExceeded, fmt::format("key is {} bytes; the limit is {} bytes",
                                                        key.size(), kMaxKeyBytes));
  if (v && v->expire_at_ms < 0)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("expire_at_ms is {}; allowed: 0 (no TTL) or a Unix time in ms",
                                  v->expire_at_ms));
  if (v && v->type == ValueType::kString && v->str.size() > kMaxValueBytes)
    return make_error(Errc::kLimitExceeded, fmt::format("value is {} bytes; the limit is {} bytes",
                                                        v->str.size(), kMaxValueBytes));
  return {};
}

// RocksDB's own messages go to keel's log instead of a LOG file in the data directory. That
// file was what killed the node on a full disk: once one of its writes failed with ENOSPC, the
// next message RocksDB logged (the very error it had just met) was appended to a file writer
// that had seen an error, and a RocksDB built with assertions (Debian's) aborts on that.
// Warnings and above only (the rest is RocksDB's routine chatter); errors at warn, since keel
// reports the disk state itself, once per change.
class RocksLogger final : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char buf[1024];
    va_list copy;
    va_copy(copy, ap);
    int n = std::vsnprintf(buf, sizeof buf, format, copy);
    va_end(copy);
    if (n < 0) return;
    std::string_view text(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) klog().warn("rocksdb: {}", text);
    else klog().debug("rocksdb: {}", text);
  }
};

// keel decides when to recover from a background error (DiskGuard, from maintenance()), so
// RocksDB's own recovery is turned off: after an ENOSPC it waits for about a memtable's worth
// of free space beyond the reserve (64 MB), answering DB::Resume() with Busy meanwhile.
class NoAutoRecovery final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    if (auto_recovery) *auto_recovery = false;
  }
};

// ---- state shared by the shard instances -------------------------------------------------

struct Shared;

// Folds delta operands (storage/delta.h) into the value below them. Runs on the thread that
// reads (the resident engine's load) or compacts. Never fails a read: what cannot be folded
// becomes an unreadable marker naming why.
class DeltaMerge final : public rocksdb::MergeOperator {
 public:
  explicit DeltaMerge(const EngineConfig* config) : config_(config) {}
  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    const auto* keyring = config_->keyring.get();
    const std::string_view raw_key(in.key.data(), in.key.size());
    Value v;
    std::string plain;
    bool have = false;
    auto unreadable = [&](const Error& e) {
      out->new_value.assign(1, static_cast<char>(kUnreadableFormat));
      // decode_stored words it again ("cannot read key ...: why"): keep only the why.
      std::string_view why = e.message;
      if (auto at = why.find("': "); at != std::string_view::npos) why.remove_prefix(at + 3);
      if (auto at = why.find("; other keys are served"); at != std::string_view::npos) why = why.substr(0, at);
      out->new_value.append(why);
      return true;
    };
    if (in.existing_value) {
      std::string_view base(in.existing_value->data(), in.existing_value->size());
      if (auto d = decode_stored(keyring, raw_key, base, v, plain); !d) return unreadable(d.error());
      have = true;
    }
    for (const auto& operand : in.operand_list) {
      ValueType type = ValueType::kString;
      int64_t expire = 0;
      std::string_view ops;
      if (auto st = open_operand(keyring, raw_key, std::string_view(operand.data(), operand.size()), type, expire,
                                 ops, plain);
          !st)
        return unreadable(st.error());
      // No base: it was removed because the key expired (the operand carries the same past
      // deadline, so the result reads as absent), or the operands follow a write the journal
      // lost. Start from an empty value of the type.
      if (!have || v.type != type) {
        v = Value{};
        v.type = type;
        have = true;
      }
      v.expire_at_ms = expire;
      if (auto st = apply_delta(v, ops); !st) {
        if (in.existing_value) return unreadable(st.error());
        // Without the base the ops need not fit: the key is gone, keep what applied.
      }
    }
    std::string scratch;
    if (auto e = encode_stored(keyring, raw_key, v, out->new_value, scratch); !e) return unreadable(e.error());
    return true;
  }
  const char* Name() const override { return "keel.delta"; }

 private:
  const EngineConfig* config_;
};

// Drops values whose deadline passed, by the injected Clock. Runs on RocksDB's threads.
class TtlCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  explicit TtlCompactionFilter(Shared* s) : s_(s) {}
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string*,
              bool*) const override;
  const char* Name() const override { return "keel.ttl"; }

 private:
  Shared* s_;
};

struct Shared {
  EngineConfig config;
  const Clock* clock;
  unsigned shards;
  TtlCompactionFilter filter{this};
  std::shared_ptr<rocksdb::Cache> cache;
  std::unique_ptr<rocksdb::DB> db;
  // The column families' handles, released before the database closes (~Shared).
  std::unique_ptr<rocksdb::ColumnFamilyHandle> data_cf;
  std::unique_ptr<rocksdb::ColumnFamilyHandle> marks_cf;  // partition (u32be) -> log mark
  // Per partition: stored keys (live, or expired but not yet removed), those of them with a TTL,
  // and the engine that owns the partition. Only the owning shard's writes and its recount
  // pass change the counters (the compaction filter does not: it cannot tell a superseded
  // version from the latest one).
  std::unique_ptr<std::atomic<int64_t>[]> counts;
  std::unique_ptr<std::atomic<int64_t>[]> ttl_counts;
  std::unique_ptr<std::atomic<uint32_t>[]> owner;
  std::unique_ptr<std::atomic<uint64_t>[]> expired_by_engine;
  std::atomic<int64_t> last_sync_ms{0};
  std::atomic<uint64_t> syncs{0};

  // ---- the disk (see disk_guard.h and README.md "Disk full") --------------------------------
  // Every call that writes to the database, flushes or syncs its WAL happens under io_mu, and
  // in journal mode every use of `db` at all. After the first failure nothing touches the
  // database's WAL writer again until recovery: a RocksDB built with assertions (Debian's) aborts
  // when a file writer that saw an error is used again, and RocksDB's own notes on
  // SyncWithoutFlush() warn that two concurrent syncs (two shards committing at once) can get
  // there. Recovery closes and reopens `db` (journal mode) or calls DB::Resume()
  // (keep_in_memory = no, where reads use `db` without the lock).
  std::mutex io_mu;
  DiskGuard guard;                        // under io_mu
  std::atomic<bool> writable{true};       // guard.writable(), read without the lock
  std::atomic<uint64_t> refused{0};       // writes refused with kDiskError
  std::vector<rocksdb::WriteBatch> retained;  // journal batches not durable when it failed
  bool read_only = false;                 // db was opened read-only (started on a full disk)
  int64_t last_check_ms = 0;              // last look at the free space from maintenance()
  rocksdb::Options options;               // to reopen with
  std::string last_recovery_error;        // logged once

  Shared(const EngineConfig& c, const Clock& clk, unsigned n)
      : config(c),
        clock(&clk),
        shards(n),
        counts(new std::atomic<int64_t>[c.partitions]),
        ttl_counts(new std::atomic<int64_t>[c.partitions]),
        owner(new std::atomic<uint32_t>[c.partitions]),
        expired_by_engine(new std::atomic<uint64_t>[n]),
        guard(DiskGuardConfig{c.min_free_bytes, std::max<uint64_t>(c.min_free_bytes / 8, 1 << 20), 1000}) {
    for (uint32_t p = 0; p < c.partitions; ++p) {
      counts[p].store(0);
      ttl_counts[p].store(0);
      owner[p].store(p % n);  // the default assignment until a shard claims otherwise
    }
    for (unsigned i = 0; i < n; ++i) expired_by_engine[i].store(0);
  }
  ~Shared() { close_db(); }

  // ---- disk state: all under io_mu --------------------------------------------------------

  uint64_t free_space() const {
    struct statvfs fs {};
    if (::statvfs(config.data_dir.c_str(), &fs) != 0) return UINT64_MAX;  // unknown: no refusal
    return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  }

  // The refusal every write gets while the guard says no.
  std::unexpected<Error> refusal_locked() {
    refused.fetch_add(1, std::memory_order_relaxed);
    std::string why = guard.reason();
    std::string what = guard.no_space() ? "no space left on device" : "a write to the disk failed";
    return make_error(Errc::kDiskError,
                      fmt::format("keel cannot persist to disk: {} in {} ({}); writes are refused "
                                  "until {} (reads still served)",
                                  what, config.data_dir, why,
                                  guard.no_space() ? "space returns" : "the disk takes writes again"));
  }

  // Mirrors the guard into the lock-free flag and logs a state change once.
  void publish_locked() {
    writable.store(guard.writable(), std::memory_order_release);
    if (auto t = guard.take_transition()) {
      if (t->to == DiskGuard::State::kWritable)
        observe::signal(observe::Signal::kWritesAccepted,
                        fmt::format("storage: disk_write_status=ok data_dir={} previous={} writes are accepted again",
                                    config.data_dir, DiskGuard::name(t->from)));
      else
        observe::signal(observe::Signal::kWritesRefused,
                        fmt::format("storage: disk_write_status={} data_dir={} free_bytes={} reason=\"{}\" writes are "
                                    "refused (MISCONF) until the disk takes writes again; reads are served",
                                    DiskGuard::name(t->to), config.data_dir, guard.last_free(), t->reason));
    }
  }

  void check_space_locked() {
    guard.observe_free(free_space());
    publish_locked();
  }

  void failed_locked(const char* what, const rocksdb::Status& st) {
    const bool no_space = st.IsNoSpace() || st.ToString().find("No space left") != std::string::npos;
    guard.write_failed(fmt::format("rocksdb {}: {}", what, st.ToString()), no_space, clock->now_ms());
    check_space_locked();
  }

  bool broken_locked() const { return guard.state() == DiskGuard::State::kFailed || !db || read_only; }

  // Journal mode: reopens the database (which replays what of its WAL reached the disk) and
  // writes again the batches that were not durable when the failure came, in the order they
  // were taken. Other modes: DB::Resume(). Leaves the guard in kFailed on any error.
  void recover_locked(int64_t now_ms) {
    if (auto why = try_recover_locked(); !why.empty()) {
      guard.recovery_done(false, why, now_ms);
      if (why != last_recovery_error)  // once per distinct reason, not every second
        klog().warn("storage: recovery of data_dir={} failed, retrying while there is space: {}",
                     config.data_dir, why);
      last_recovery_error = why;
    } else {
      last_recovery_error.clear();
      guard.observe_free(free_space());
      guard.recovery_done(true, "", now_ms);
    }
    publish_locked();
  }

  // Opens `db` with its column families (the data, and the partitions' log marks), read-write
  // (creating the marks' family if missing) or read-only (without it if it is missing: a
  // database written before it existed; no mark is read, every write is refused anyway).
  rocksdb::Status open_db(bool for_reading) {
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(options)}};
    bool with_marks = true;
    if (for_reading) {
      std::vector<std::string> names;
      with_marks = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(options), config.data_dir, &names).ok() &&
                   std::find(names.begin(), names.end(), kMarksFamily) != names.end();
    }
    if (with_marks) families.push_back({kMarksFamily, rocksdb::ColumnFamilyOptions()});
    rocksdb::DBOptions o(options);
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    auto st = for_reading ? rocksdb::DB::OpenForReadOnly(o, config.data_dir, families, &handles, &raw,
                                                         /*error_if_wal_file_exists=*/false)
                          : rocksdb::DB::Open(o, config.data_dir, families, &handles, &raw);
    if (!st.ok()) return st;
    db.reset(raw);
    data_cf.reset(handles[0]);
    marks_cf.reset(with_marks ? handles[1] : nullptr);
    return st;
  }
  void close_db() {
    marks_cf.reset();  // column family handles go before the database closes
    data_cf.reset();
    if (db) {
      (void)db->Close();
      db.reset();
    }
  }

  // "" when recovered, else why not.
  std::string try_recover_locked() {
    if (config.journal_only) {
      close_db();  // a WAL writer that saw an error is closed without a flush
      auto st = open_db(false);
      if (!st.ok()) return "reopen: " + st.ToString();
      read_only = false;
    } else {
      auto st = db->Resume();
      if (!st.ok()) return "resume: " + st.ToString();
    }
    rocksdb::WriteOptions wo;
    for (auto& b : retained) {
      auto st = db->Write(wo, &b);
      if (!st.ok()) {
        failed_locked("rewrite after recovery", st);
        return "rewriting the batches not yet durable: " + st.ToString();
      }
    }
    auto st = config.journal_only ? db->FlushWAL(/*sync=*/true) : db->SyncWAL();
    if (!st.ok()) {
      failed_locked("sync after recovery", st);
      return "syncing after recovery: " + st.ToString();
    }
    retained.clear();
    return "";
  }

  DiskState disk_state() {
    std::lock_guard lk(io_mu);
    DiskState d;
    d.writable = guard.writable();
    d.state = std::string(DiskGuard::name(guard.state()));
    if (!d.writable) {
      auto r = refusal_locked();
      refused.fetch_sub(1, std::memory_order_relaxed);  // a look, not a refused write
      d.error = r.error().message;
    }
    d.write_errors_total = guard.failures_total();
    d.refused_writes_total = refused.load(std::memory_order_relaxed);
    d.free_bytes = guard.last_free();
    d.read_only = read_only;
    return d;
  }
};

bool TtlCompactionFilter::Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value,
                                 std::string*, bool*) const {
  std::string_view v(value.data(), value.size());
  int64_t e = encoded_expiry(v);
  if (e == 0 || e > s_->clock->now_ms()) return false;
  if (key.size() >= 4) {
    uint32_t p = partition_of(std::string_view(key.data(), key.size()));
    if (p < s_->config.partitions) s_->expired_by_engine[s_->owner[p].load() % s_->shards]++;
  }
  return true;
}

// ---- one shard's view --------------------------------------------------------------------

class RocksEngine final : public Engine {
 public:
  RocksEngine(std::shared_ptr<Shared> s, uint32_t index)
      : s_(std::move(s)), index_(index), cursor_seq_(mix64(index + 1) | 1) {
    // In journal mode commit() syncs the whole batch; otherwise every write syncs itself.
    wopts_.sync = s_->config.fsync == FsyncPolicy::kAlways && !s_->config.journal_only;
    // keep_in_memory = no: this engine rewraps its own partitions. In journal mode the resident
    // engine above does (from memory, where every live value is).
    if (s_->config.keyring && !s_->config.journal_only) {
      RewrapDriver::Hooks h;
      h.owned = [this](uint32_t p) { return s_->owner[p].load() == index_; };
      h.load_cursor = [this](uint32_t p) { return rewrap_cursor(p); };
      h.rewrap = [this](uint32_t p, const std::string& start, uint64_t max, uint32_t target) {
        return rewrap_range(p, start, max, target);
      };
      rewrap_.emplace(s_->config.keyring, s_->config.partitions,
                      s_->config.rewrap_keys_per_s / std::max(1u, s_->shards), std::move(h));
    }
  }
  ~RocksEngine() override {
    abort_recount();
    std::lock_guard lk(s_->io_mu);
    (void)write_pending_locked();  // best effort; commit() is where errors are reported
  }

  std::optional<ValueRef> get(uint32_t partition, std::string_view key, int64_t now_ms) override {
    claim(partition);
    rocksdb::PinnableSlice raw;
    const std::string k = encode_key(partition, key);
    auto st = s_->db->Get(rocksdb::ReadOptions(), s_->db->DefaultColumnFamily(), k, &raw);
    if (!st.ok()) return std::nullopt;  // NotFound, or an I/O error we cannot report here
    std::string_view v(raw.data(), raw.size());
    if (!encoded_alive(v, now_ms)) return std::nullopt;
    if (auto d = decode_stored(keyring(), k, v, last_, plain_); !d) {
      read_error_ = d.error();  // the command answers with it (take_read_error)
      return std::nullopt;
    }
    return ref_of(last_);
  }

  Status set_string(uint32_t partition, std::string_view key, std::string_view value,
                    int64_t expire_at_ms, int64_t now_ms) override {
    Value v;
    v.str.assign(value);
    v.expire_at_ms = expire_at_ms;
    return put(partition, key, std::move(v), now_ms);
  }

  Status put(uint32_t partition, std::string_view key, Value value, int64_t now_ms) override {
    claim(partition);
    if (auto st = check_sizes(key, &value); !st) return st;
    std::string k = encode_key(partition, key);
    // Journal mode: the resident engine above asked admit_write() before changing memory; the
    // journal takes what memory took (commit() refuses if the database failed meanwhile).
    if (!s_->config.journal_only)
      if (auto st = admit_write(); !st) return st;
    if (s_->config.journal_only) {  // the resident engine above keeps the counts
      rocksdb::Status st;
      if (value.expire_at_ms != 0 && value.expire_at_ms <= now_ms) {
        st = pending_.Delete(k);
      } else {
        if (auto e = encode_stored(keyring(), k, value, buf_, plain_); !e) return e;
        st = pending_.Put(k, buf_);
      }
      if (!st.ok()) return io_error("put", st);
      return pending_written_if_large();
    }
    auto before = raw_state(k);
    if (!before) return std::unexpected(before.error());
    if (value.expire_at_ms != 0 && value.expire_at_ms <= now_ms) {
      // A deadline that already passed: the key ends up absent.
      if (!before->exists) return {};
      if (auto st = io("delete", [&] { return s_->db->Delete(wopts_, k); }); !st) return st;
      adjust(partition, *before, KeyState{});
      return {};
    }
    if (auto e = encode_stored(keyring(), k, value, buf_, plain_); !e) return e;
    written_ += k.size() + buf_.size();
    if (auto st = io("put", [&] { return s_->db->Put(wopts_, k, buf_); }); !st) return st;
    adjust(partition, *before, KeyState{true, value.expire_at_ms != 0});
    return {};
  }

  // Journal mode only: the change is a merge operand on the key (DeltaMerge folds it in).
  Status patch(uint32_t partition, std::string_view key, ValueType type, int64_t expire_at_ms,
               std::string_view ops, int64_t now_ms) override {
    if (!s_->config.journal_only) return Engine::patch(partition, key, type, expire_at_ms, ops, now_ms);
    claim(partition);
    if (auto st = check_sizes(key, nullptr); !st) return st;
    std::string k = encode_key(partition, key);
    if (auto e = encode_operand(keyring(), k, type, expire_at_ms, ops, buf_); !e) return e;
    if (auto st = pending_.Merge(k, buf_); !st.ok()) return io_error("merge", st);
    return pending_written_if_large();
  }

  Result<bool> erase(uint32_t partition, std::string_view key, int64_t now_ms) override {
    claim(partition);
    std::string k = encode_key(partition, key);
    if (s_->config.journal_only) {
      auto st = pending_.Delete(k);
      if (!st.ok()) return io_error("delete", st);
      if (auto w = pending_written_if_large(); !w) return std::unexpected(w.error());
      return true;  // liveness is known by the resident engine, not here
    }
    if (auto a = admit_write(); !a) return std::unexpected(a.error());
    std::string raw;
    auto st = s_->db->Get(rocksdb::ReadOptions(), k, &raw);
    if (st.IsNotFound()) return false;
    if (!st.ok()) return io_error("get", st);
    const bool live = encoded_alive(raw, now_ms);
    if (auto d = io("delete", [&] { return s_->db->Delete(wopts_, k); }); !d)
      return std::unexpected(d.error());
    adjust(partition, KeyState{true, encoded_expiry(raw) != 0}, KeyState{});
    return live;
  }

  Status update(uint32_t partition, std::string_view key, int64_t now_ms,
                const UpdateFn& fn) override {
    claim(partition);
    if (auto a = admit_write(); !a) return a;
    std::string k = encode_key(partition, key);
    std::string raw;
    auto st = s_->db->Get(rocksdb::ReadOptions(), k, &raw);
    if (!st.ok() && !st.IsNotFound()) return io_error("get", st);
    const bool existed = st.ok();
    Value current;
    bool have = false;
    if (existed && encoded_alive(raw, now_ms)) {
      if (auto d = decode_stored(keyring(), k, raw, current, plain_); !d) return d;
      have = true;
    }
    Value scratch;
    UpdateAction act = fn(have ? &current : nullptr, &scratch);
    if (act == UpdateAction::kKeep) return {};
    if (act == UpdateAction::kErase) {
      if (!existed) return {};
      if (auto d = io("delete", [&] { return s_->db->Delete(wopts_, k); }); !d) return d;
      adjust(partition, KeyState{true, encoded_expiry(raw) != 0}, KeyState{});
      return {};
    }
    return put(partition, key, have ? std::move(current) : std::move(scratch), now_ms);
  }

  Status write_batch(std::vector<BatchOp> ops, int64_t now_ms) override {
    for (const auto& op : ops) {
      if (op.partition >= s_->config.partitions)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("batch op partition {} out of range; allowed: 0..{}",
                                      op.partition, s_->config.partitions - 1));
      if (auto st = check_sizes(op.key, op.value ? &*op.value : nullptr); !st) return st;
    }
    if (!s_->config.journal_only)
      if (auto a = admit_write(); !a) return a;
    rocksdb::WriteBatch batch;
    struct Track {
      uint32_t partition;
      KeyState before;
      KeyState after;
    };
    std::unordered_map<std::string, Track> touched;  // raw key -> state before / after the ops
    if (s_->config.journal_only) {
      // Joins the pending batch whole (rolled back on error), so it reaches the log atomically.
      pending_.SetSavePoint();
      for (const auto& op : ops) {
        claim(op.partition);
        std::string k = encode_key(op.partition, op.key);
        rocksdb::Status st;
        if (op.value && !(op.value->expire_at_ms != 0 && op.value->expire_at_ms <= now_ms)) {
          if (auto e = encode_stored(keyring(), k, *op.value, buf_, plain_); !e) {
            (void)pending_.RollbackToSavePoint();
            return e;
          }
          st = pending_.Put(k, buf_);
        } else {
          st = pending_.Delete(k);
        }
        if (!st.ok()) {
          (void)pending_.RollbackToSavePoint();
          return io_error("write batch", st);
        }
      }
      (void)pending_.PopSavePoint();
      return pending_written_if_large();
    }
    for (const auto& op : ops) {
      claim(op.partition);
      std::string k = encode_key(op.partition, op.key);
      auto it = touched.find(k);
      if (it == touched.end()) {
        auto e = raw_state(k);
        if (!e) return std::unexpected(e.error());
        it = touched.emplace(k, Track{op.partition, *e, *e}).first;
      }
      const bool write =
          op.value && !(op.value->expire_at_ms != 0 && op.value->expire_at_ms <= now_ms);
      if (write) {
        if (auto e = encode_stored(keyring(), k, *op.value, buf_, plain_); !e) return e;
        batch.Put(k, buf_);
        it->second.after = KeyState{true, op.value->expire_at_ms != 0};
      } else {
        batch.Delete(k);
        it->second.after = KeyState{};
      }
    }
    written_ += batch.GetDataSize();
    if (auto st = io("write batch", [&] { return s_->db->Write(wopts_, &batch); }); !st) return st;
    for (const auto& [k, t] : touched) adjust(t.partition, t.before, t.after);
    return {};
  }

  uint64_t scan(uint64_t cursor, size_t count, int64_t now_ms, const ScanFn& fn) override {
    std::string start;
    if (cursor != 0) {
      auto it = cursors_.find(cursor);
      if (it == cursors_.end()) return 0;  // unknown or evicted cursor: the scan ends
      start = std::move(it->second);
      cursors_.erase(it);
    } else {
      start = partition_prefix(0);
    }
    count = std::max<size_t>(count, 1);
    std::unique_ptr<rocksdb::Iterator> iter(s_->db->NewIterator(rocksdb::ReadOptions()));
    size_t emitted = 0;
    iter->Seek(start);
    while (iter->Valid()) {
      std::string_view k(iter->key().data(), iter->key().size());
      if (k.size() < 4) {
        iter->Next();
        continue;
      }
      const uint32_t p = partition_of(k);
      if (p >= s_->config.partitions) break;
      if (s_->owner[p].load() != index_) {
        // Jump to the next partition this engine owns.
        uint32_t q = p + 1;
        while (q < s_->config.partitions && s_->owner[q].load() != index_) ++q;
        if (q >= s_->config.partitions) break;
        iter->Seek(partition_prefix(q));
        continue;
      }
      if (emitted == count) {
        if (cursors_.size() >= kMaxScanCursors) cursors_.erase(cursors_.begin());
        uint64_t id = next_cursor_id();
        cursors_.emplace(id, std::string(k));
        return id;
      }
      std::string_view v(iter->value().data(), iter->value().size());
      if (encoded_alive(v, now_ms)) {
        if (auto d = decode_stored(keyring(), k, v, scan_value_, plain_); d) {
          fn(k.substr(4), ref_of(scan_value_));
          ++emitted;
        } else {
          note_unreadable(k, d.error());
        }
      }
      iter->Next();
    }
    return 0;
  }

  std::optional<std::string> scan_partition(uint32_t partition, std::string_view start_key,
                                            size_t limit, int64_t now_ms,
                                            const ScanFn& fn) override {
    claim(partition);
    const std::string upper = partition_prefix(partition + 1);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> iter(s_->db->NewIterator(ro));
    size_t emitted = 0;
    for (iter->Seek(encode_key(partition, start_key)); iter->Valid(); iter->Next()) {
      std::string_view k(iter->key().data(), iter->key().size());
      std::string_view v(iter->value().data(), iter->value().size());
      if (!encoded_alive(v, now_ms)) continue;
      if (emitted == limit) return std::string(k.substr(4));
      if (auto d = decode_stored(keyring(), k, v, scan_value_, plain_); !d) {
        note_unreadable(k, d.error());
        continue;
      }
      fn(k.substr(4), ref_of(scan_value_));
      ++emitted;
    }
    return std::nullopt;
  }

  Status drop_partition(uint32_t partition) override {
    if (partition >= s_->config.partitions)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("partition {} out of range; allowed: 0..{}", partition,
                                    s_->config.partitions - 1));
    {
      std::lock_guard lk(s_->io_mu);
      if (auto st = write_pending_locked(); !st) return st;  // earlier writes first
      // The mark goes first: a crash in between leaves data that claims nothing, never a
      // claim without its data.
      marks_.erase(partition);
      if (s_->marks_cf)
        if (auto st = io_locked("delete log mark", [&] {
              return s_->db->Delete(wopts_, s_->marks_cf.get(), partition_prefix(partition));
            });
            !st)
          return st;
      if (auto st = io_locked("delete range", [&] {
            return s_->db->DeleteRange(wopts_, s_->db->DefaultColumnFamily(),
                                       partition_prefix(partition), partition_prefix(partition + 1));
          });
          !st)
        return st;
    }
    s_->counts[partition].store(0);
    s_->ttl_counts[partition].store(0);
    if (recount_.active && recount_.partition == partition) abort_recount();
    return {};
  }

  Status clear() override {
    std::lock_guard lk(s_->io_mu);
    if (auto st = write_pending_locked(); !st) return st;  // earlier writes first
    // Range-deletes every run of consecutive partitions this engine owns.
    uint32_t p = 0;
    const uint32_t n = s_->config.partitions;
    while (p < n) {
      if (s_->owner[p].load() != index_) {
        ++p;
        continue;
      }
      uint32_t q = p;
      while (q < n && s_->owner[q].load() == index_) ++q;
      if (auto st = io_locked("delete range", [&] {
            return s_->db->DeleteRange(wopts_, s_->db->DefaultColumnFamily(), partition_prefix(p),
                                       partition_prefix(q));
          });
          !st)
        return st;
      for (uint32_t i = p; i < q; ++i) {
        s_->counts[i].store(0);
        s_->ttl_counts[i].store(0);
      }
      if (recount_.active && recount_.partition >= p && recount_.partition < q) abort_recount();
      p = q;
    }
    return {};
  }

  Status compact() {
    std::lock_guard lk(s_->io_mu);
    if (s_->broken_locked()) return s_->refusal_locked();
    rocksdb::CompactRangeOptions o;
    o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    auto st = s_->db->CompactRange(o, nullptr, nullptr);
    if (!st.ok()) return io_error("compact range", st);
    return {};
  }

  uint64_t size() const override { return owned_sum(s_->counts.get()); }

  void maintenance(int64_t now_ms, size_t budget) override {
    // Walk as many partitions as the budget allows: one partition per call would take a
    // whole minute to visit 1024 partitions at 10 calls a second. Each partition costs at
    // least kPartitionCost (a snapshot and a seek), so an idle node stays cheap.
    constexpr size_t kPartitionCost = 32;
    size_t left = s_->config.journal_only ? 0 : budget;  // journal: counts live above
    while (left > 0) {
      size_t used = recount_step(now_ms, left);
      if (used == 0) break;
      used = std::max(used, kPartitionCost);
      left = used >= left ? 0 : left - used;
    }
    disk_maintenance(now_ms);
    if (rewrap_) {
      rewrap_now_ms_ = now_ms;
      rewrap_->tick(now_ms);
    }
    if (s_->config.fsync != FsyncPolicy::kEverySec) return;
    int64_t last = s_->last_sync_ms.load();
    if (now_ms < last) {
      s_->last_sync_ms.compare_exchange_strong(last, now_ms);  // the clock went back: restart
      return;
    }
    if (now_ms - last < 1000) return;
    if (!s_->last_sync_ms.compare_exchange_strong(last, now_ms)) return;  // another shard does it
    std::lock_guard lk(s_->io_mu);
    if (s_->broken_locked()) return;
    auto st = s_->db->FlushWAL(/*sync=*/true);
    if (st.ok()) s_->syncs++;
    else s_->failed_locked("sync WAL", st);
  }

  // Journal mode buffers the WAL in memory (manual_wal_flush) until commit(): one write (and,
  // for fsync=always, one fsync) per pipelined batch instead of one per command. The batch is
  // kept until the flush (and sync) succeeded: if either fails, it is handed to the shared
  // state and written again after recovery, so the journal catches up with what memory holds.
  bool commit_does_io() const override { return s_->config.journal_only; }
  Status commit() override {
    std::lock_guard lk(s_->io_mu);
    if (!s_->config.journal_only) return write_marks_locked();  // each write was written (and synced) itself
    // Nothing written since the last commit (a refused write, a read): nothing to make durable.
    if (pending_.Count() == 0 && unsynced_.empty() && s_->broken_locked()) return {};
    marks_into_pending();  // after the data, in the same batch
    if (auto w = write_pending_locked(); !w) return w;
    if (s_->broken_locked()) {
      retain_locked();
      return s_->refusal_locked();
    }
    auto st = s_->db->FlushWAL(/*sync=*/s_->config.fsync == FsyncPolicy::kAlways);
    if (!st.ok()) {
      s_->failed_locked("flush WAL", st);
      retain_locked();
      return s_->refusal_locked();
    }
    unsynced_.clear();
    if (s_->config.fsync == FsyncPolicy::kAlways) s_->syncs++;
    return {};
  }

  void set_log_mark(uint32_t partition, LogMark mark) override { marks_[partition] = mark; }
  std::optional<LogMark> log_mark(uint32_t partition) override {
    if (auto it = marks_.find(partition); it != marks_.end()) return it->second;
    std::lock_guard lk(s_->io_mu);  // recovery may reopen the database
    if (!s_->db || !s_->marks_cf) return std::nullopt;
    std::string raw;
    auto st = s_->db->Get(rocksdb::ReadOptions(), s_->marks_cf.get(), partition_prefix(partition), &raw);
    if (!st.ok()) return std::nullopt;
    Reader r(raw);
    auto lsn = r.varint();
    auto epoch = r.varint();
    if (!lsn || !epoch) return std::nullopt;
    LogMark m{*lsn, *epoch};
    if (!r.done()) {  // a partial snapshot (marks without it predate resumable transfers)
      auto flag = r.u8();
      auto source = r.varint();
      auto key = r.bytes(raw.size());
      if (!flag || !source || !key || *flag != 1) return std::nullopt;
      m.partial = true;
      m.source = *source;
      m.next_key = std::string(*key);
    }
    return m;
  }

  std::optional<Error> take_read_error() override {
    if (!read_error_) return std::nullopt;
    auto e = std::move(read_error_);
    read_error_.reset();
    return e;
  }
  std::vector<Unreadable> take_unreadable() override { return std::exchange(unreadable_, {}); }

  Result<std::map<uint32_t, uint64_t>> at_rest_census(int64_t now_ms) override {
    std::map<uint32_t, uint64_t> out;
    std::lock_guard lk(s_->io_mu);  // journal mode: recovery may reopen the database
    if (!s_->db) return make_error(Errc::kDiskError, "the database is closed (recovering from a disk failure)");
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> iter(s_->db->NewIterator(ro, s_->data_cf.get()));
    for (iter->SeekToFirst(); iter->Valid(); iter->Next()) {
      std::string_view v(iter->value().data(), iter->value().size());
      if (!encoded_alive(v, now_ms)) continue;  // never read again; the compaction filter drops it
      auto ver = stored_key_version(v);
      out[ver ? *ver : UINT32_MAX]++;  // UINT32_MAX: a value of no known format
    }
    if (!iter->status().ok()) return io_error("at-rest census scan", iter->status());
    return out;
  }

  std::optional<RewrapCursor> rewrap_cursor(uint32_t partition) override {
    if (auto it = cursors_pending_.find(partition); it != cursors_pending_.end()) return it->second;
    std::lock_guard lk(s_->io_mu);
    if (!s_->db || !s_->marks_cf) return std::nullopt;
    std::string raw;
    if (!s_->db->Get(rocksdb::ReadOptions(), s_->marks_cf.get(), rewrap_cursor_key(partition), &raw).ok())
      return std::nullopt;
    Reader r(raw);
    auto target = r.u32be();
    auto done = r.u8();
    if (!target || !done) return std::nullopt;
    RewrapCursor c{*target, std::nullopt};
    if (*done == 0) {
      auto key = r.bytes(raw.size());
      if (!key) return std::nullopt;
      c.next_key = std::string(*key);
    }
    return c;
  }
  void set_rewrap_cursor(uint32_t partition, RewrapCursor cursor) override {
    cursors_pending_[partition] = std::move(cursor);
  }

  Status flush() override {
    std::lock_guard lk(s_->io_mu);
    if (!s_->config.journal_only) {
      if (auto w = write_marks_locked(); !w) return w;
    } else {
      marks_into_pending();
    }
    if (auto w = write_pending_locked(); !w) return w;
    if (s_->broken_locked()) {
      retain_locked();
      return s_->refusal_locked();
    }
    auto st = s_->db->FlushWAL(/*sync=*/true);
    if (!st.ok()) {
      s_->failed_locked("sync WAL", st);
      retain_locked();
      return s_->refusal_locked();
    }
    unsynced_.clear();
    s_->syncs++;
    return {};
  }

  Status admit_write() override {
    if (!s_->writable.load(std::memory_order_acquire)) {
      std::lock_guard lk(s_->io_mu);
      if (!s_->guard.writable()) return s_->refusal_locked();
    }
    if (written_ < budget_) return {};
    // This shard used up its share of the headroom above the reserve: look at the disk again.
    std::lock_guard lk(s_->io_mu);
    s_->check_space_locked();
    written_ = 0;
    budget_ = s_->guard.write_budget(s_->shards, kMaxBudget);
    if (!s_->guard.writable()) return s_->refusal_locked();
    return {};
  }

  std::optional<DiskState> disk_state() const override { return s_->disk_state(); }

  EngineStats stats() const override {
    EngineStats out;
    out.keys = size();
    out.keys_with_expiry = owned_sum(s_->ttl_counts.get());
    out.expired_keys_total = s_->expired_by_engine[index_].load();
    out.syncs_total = s_->syncs.load();
    std::lock_guard lk(s_->io_mu);  // recovery may reopen db
    if (!s_->db) return out;
    uint64_t mem = 0;
    s_->db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
    out.used_memory_bytes = mem + (s_->cache ? s_->cache->GetUsage() : 0);
    out.evicted_keys_total = 0;
    uint64_t sst = 0;
    s_->db->GetIntProperty("rocksdb.live-sst-files-size", &sst);
    rocksdb::VectorLogPtr wals;
    uint64_t wal = 0;
    if (s_->db->GetSortedWalFiles(wals).ok())
      for (const auto& w : wals) wal += w->SizeFileBytes();
    out.disk_bytes = sst + wal;
    return out;
  }

 private:
  void claim(uint32_t partition) {
    KEEL_ASSERT_MSG(partition < s_->config.partitions, "partition id out of range for this engine");
    if (s_->owner[partition].load(std::memory_order_relaxed) != index_)
      s_->owner[partition].store(index_);
  }

  // What is stored under a raw key (whether live or expired).
  struct KeyState {
    bool exists = false;
    bool ttl = false;
  };
  Result<KeyState> raw_state(const std::string& k) {
    rocksdb::PinnableSlice raw;
    auto st = s_->db->Get(rocksdb::ReadOptions(), s_->db->DefaultColumnFamily(), k, &raw);
    if (st.IsNotFound()) return KeyState{};
    if (!st.ok()) return io_error("get", st);
    return KeyState{true, encoded_expiry(std::string_view(raw.data(), raw.size())) != 0};
  }

  // Applies one key's change to the partition counters (and to a running recount's delta).
  void adjust(uint32_t p, KeyState before, KeyState after) {
    const int64_t dk = int64_t{after.exists} - int64_t{before.exists};
    const int64_t dt = int64_t{after.exists && after.ttl} - int64_t{before.exists && before.ttl};
    if (dk) s_->counts[p] += dk;
    if (dt) s_->ttl_counts[p] += dt;
    if (recount_.active && recount_.partition == p) {
      recount_.delta_keys += dk;
      recount_.delta_ttl += dt;
    }
  }

  uint64_t owned_sum(const std::atomic<int64_t>* counters) const {
    int64_t total = 0;
    for (uint32_t p = 0; p < s_->config.partitions; ++p)
      if (s_->owner[p].load(std::memory_order_relaxed) == index_)
        total += std::max<int64_t>(0, counters[p].load(std::memory_order_relaxed));
    return static_cast<uint64_t>(total);
  }

  // ---- recount + active expiry -------------------------------------------------------------
  // The compaction filter drops expired values without telling the counters (it cannot know
  // whether a newer version exists), so maintenance() walks the owned partitions one at a time
  // over a snapshot, `budget` keys per call: it counts what the snapshot holds, adds the writes
  // made since the snapshot (tracked by adjust()), and stores the exact figure when the
  // partition is done. On the way it deletes keys whose deadline passed (active expiry).
  // Examines at most `budget` keys of the current partition. Returns the keys examined (at
  // least 1 when there was work to do), 0 when this shard owns no partition.
  size_t recount_step(int64_t now_ms, size_t budget) {
    if (budget == 0) return 0;
    if (!recount_.active && !start_recount()) return 0;
    const uint32_t p = recount_.partition;
    if (s_->owner[p].load() != index_) {  // handed to another shard meanwhile
      abort_recount();
      return 1;
    }
    const std::string upper = partition_prefix(p + 1);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.snapshot = recount_.snapshot;
    ro.iterate_upper_bound = &upper_slice;
    ro.fill_cache = false;
    std::vector<std::string> expired;
    bool done = true;
    size_t examined = 0;
    {
      std::unique_ptr<rocksdb::Iterator> iter(s_->db->NewIterator(ro));
      size_t n = 0;
      for (iter->Seek(recount_.resume); iter->Valid(); iter->Next(), ++n) {
        if (n == budget) {
          recount_.resume.assign(iter->key().data(), iter->key().size());
          done = false;
          break;
        }
        std::string_view v(iter->value().data(), iter->value().size());
        ++recount_.keys;
        if (encoded_expiry(v) != 0) ++recount_.ttl;
        if (!encoded_alive(v, now_ms)) expired.emplace_back(iter->key().data(), iter->key().size());
      }
      examined = n;
      if (done && !iter->status().ok()) {
        abort_recount();
        return std::max<size_t>(examined, 1);
      }
    }
    for (const auto& k : expired) {
      // The snapshot may be stale: delete only if the current version is expired too.
      std::string raw;
      if (!s_->db->Get(rocksdb::ReadOptions(), k, &raw).ok() || encoded_alive(raw, now_ms))
        continue;
      if (!s_->db->Delete(wopts_, k).ok()) continue;
      adjust(p, KeyState{true, true}, KeyState{});
      s_->expired_by_engine[index_]++;
    }
    if (!done) return std::max<size_t>(examined, 1);
    s_->counts[p].store(recount_.keys + recount_.delta_keys);
    s_->ttl_counts[p].store(recount_.ttl + recount_.delta_ttl);
    recount_.next_partition = p + 1;
    abort_recount();
    return std::max<size_t>(examined, 1);
  }

  bool start_recount() {
    const uint32_t n = s_->config.partitions;
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t p = (recount_.next_partition + i) % n;
      if (s_->owner[p].load() != index_) continue;
      recount_.active = true;
      recount_.partition = p;
      recount_.snapshot = s_->db->GetSnapshot();
      recount_.resume = partition_prefix(p);
      recount_.keys = recount_.ttl = recount_.delta_keys = recount_.delta_ttl = 0;
      return true;
    }
    return false;
  }

  void abort_recount() {
    if (recount_.snapshot) s_->db->ReleaseSnapshot(recount_.snapshot);
    recount_.snapshot = nullptr;
    recount_.active = false;
  }

  struct Recount {
    bool active = false;
    uint32_t partition = 0;
    uint32_t next_partition = 0;
    const rocksdb::Snapshot* snapshot = nullptr;
    std::string resume;  // raw key to continue from
    int64_t keys = 0, ttl = 0, delta_keys = 0, delta_ttl = 0;
  };
  Recount recount_;

  uint64_t next_cursor_id() {
    cursor_seq_ = mix64(cursor_seq_);
    return cursor_seq_ == 0 ? 1 : cursor_seq_;
  }

  static ValueRef ref_of(const Value& v) { return ref_to(v); }

  std::shared_ptr<Shared> s_;
  uint32_t index_;
  rocksdb::WriteOptions wopts_;
  // Journal mode: the writes since the last commit(), written to RocksDB as one batch there
  // (one write-group entry and one WAL record per pipelined batch instead of one per command).
  rocksdb::WriteBatch pending_;
  static constexpr size_t kPendingLimit = 4 << 20;  // written early past this size

  // The log marks set since the last commit, written after every write made before them: in
  // journal mode into the same batch as the data (kept with it if the disk fails), otherwise
  // as a batch of their own. A mark that is lost leaves the data claiming less, never more.
  std::map<uint32_t, LogMark> marks_;
  void marks_into_pending() {
    if (!s_->marks_cf) return;  // opened read-only without the family: every write is refused
    for (auto& [p, m] : marks_) {
      std::string v;
      Writer w(v);
      w.varint(m.lsn);
      w.varint(m.epoch);
      if (m.partial) {
        w.u8(1);
        w.varint(m.source);
        w.bytes(m.next_key);
      }
      pending_.Put(s_->marks_cf.get(), partition_prefix(p), v);
    }
    marks_.clear();
    for (auto& [p, c] : cursors_pending_) {
      std::string v;
      Writer w(v);
      w.u32be(c.target);
      w.u8(c.next_key ? 0 : 1);
      if (c.next_key) w.bytes(*c.next_key);
      pending_.Put(s_->marks_cf.get(), rewrap_cursor_key(p), v);
    }
    cursors_pending_.clear();
  }
  // The rewrap cursors set since the last commit, written after the data like the marks.
  std::map<uint32_t, RewrapCursor> cursors_pending_;
  // Cursor keys live in the marks family beside the marks (4-byte keys): 'R' ++ u32be partition.
  static std::string rewrap_cursor_key(uint32_t partition) {
    std::string k = "R";
    Writer(k).u32be(partition);
    return k;
  }

  // keep_in_memory = no: rewrites the live values of `partition` from `start` that are not
  // under `target` (decrypting with their own key, sealing with the current one), then the
  // cursor. On this shard's thread: no client write of these keys runs meanwhile.
  Result<RewrapDriver::Hooks::Range> rewrap_range(uint32_t partition, const std::string& start, uint64_t max,
                                                 uint32_t target) {
    RewrapDriver::Hooks::Range out;
    const int64_t now_ms = rewrap_now_ms_;
    std::vector<std::pair<std::string, Value>> batch;
    {
      const std::string upper = partition_prefix(partition + 1);
      rocksdb::Slice upper_slice(upper);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper_slice;
      ro.fill_cache = false;
      std::unique_ptr<rocksdb::Iterator> iter(s_->db->NewIterator(ro));
      for (iter->Seek(encode_key(partition, start)); iter->Valid(); iter->Next()) {
        std::string_view k(iter->key().data(), iter->key().size());
        if (out.examined == max) {
          out.next_key = std::string(k.substr(4));
          break;
        }
        ++out.examined;
        std::string_view v(iter->value().data(), iter->value().size());
        if (!encoded_alive(v, now_ms)) continue;
        if (auto ver = stored_key_version(v); ver && *ver == target) continue;
        Value val;
        if (!decode_stored(keyring(), k, v, val, plain_)) {
          ++out.unreadable;
          continue;
        }
        batch.emplace_back(std::string(k.substr(4)), std::move(val));
      }
      if (!iter->status().ok()) return io_error("rewrap scan", iter->status());
    }
    for (auto& [key, val] : batch) {
      if (auto st = put(partition, key, std::move(val), now_ms); !st) return std::unexpected(st.error());
      ++out.rewritten;
    }
    set_rewrap_cursor(partition, RewrapCursor{target, out.next_key});
    std::lock_guard lk(s_->io_mu);
    if (auto st = write_marks_locked(); !st) return std::unexpected(st.error());
    return out;
  }
  std::optional<RewrapDriver> rewrap_;
  int64_t rewrap_now_ms_ = 0;
  // Without the journal (each write is written, and synced, by itself): the marks likewise,
  // and nothing is kept for a later WAL flush.
  Status write_marks_locked() {
    if (marks_.empty() && cursors_pending_.empty()) return {};
    marks_into_pending();
    auto st = write_pending_locked();
    if (st) unsynced_.clear();
    return st;
  }

  // Writes the journal batch (without flushing the WAL buffer); kept in unsynced_ until
  // commit() flushed it. Under io_mu.
  Status write_pending_locked() {
    if (pending_.Count() == 0) return {};
    written_ += pending_.GetDataSize();
    if (s_->broken_locked()) {
      retain_locked();
      return s_->refusal_locked();
    }
    auto st = s_->db->Write(wopts_, &pending_);
    if (!st.ok()) {
      s_->failed_locked("write", st);
      retain_locked();
      return s_->refusal_locked();
    }
    unsynced_.push_back(std::move(pending_));
    pending_.Clear();
    return {};
  }
  Status pending_written_if_large() {
    if (pending_.GetDataSize() <= kPendingLimit) return {};
    std::lock_guard lk(s_->io_mu);
    return write_pending_locked();
  }
  // Hands the batches not known durable to the shared state, for recovery to write again.
  void retain_locked() {
    for (auto& b : unsynced_) s_->retained.push_back(std::move(b));
    unsynced_.clear();
    if (pending_.Count() > 0) s_->retained.push_back(std::move(pending_));
    pending_.Clear();
  }
  // A database call that writes (keep_in_memory = no, range deletes): refused while the
  // database failed; its own failure marks it failed.
  template <class F>
  Status io_locked(const char* what, F&& fn) {
    if (s_->broken_locked()) return s_->refusal_locked();
    rocksdb::Status st = fn();
    if (!st.ok()) {
      s_->failed_locked(what, st);
      return s_->refusal_locked();
    }
    return {};
  }
  template <class F>
  Status io(const char* what, F&& fn) {
    std::lock_guard lk(s_->io_mu);
    return io_locked(what, std::forward<F>(fn));
  }
  // Looks at the free space (at most every 100 ms of `now_ms`, whichever shard comes first) and
  // attempts recovery when the guard says so.
  void disk_maintenance(int64_t now_ms) {
    std::unique_lock lk(s_->io_mu, std::try_to_lock);
    if (!lk.owns_lock()) return;  // another shard is at it (or writing): next time
    if (now_ms >= s_->last_check_ms && now_ms - s_->last_check_ms < 100) return;
    s_->last_check_ms = now_ms;
    s_->check_space_locked();
    if (s_->guard.should_recover(now_ms)) s_->recover_locked(now_ms);
  }

  static constexpr uint64_t kMaxBudget = 16ull << 20;  // re-read free space at least this often
  std::vector<rocksdb::WriteBatch> unsynced_;  // written to the db, WAL not yet flushed
  uint64_t written_ = 0;  // bytes written since this shard last looked at the free space
  uint64_t budget_ = 0;   // bytes it may write before it looks again
  const security::at_rest::Keyring* keyring() const { return s_->config.keyring.get(); }
  // Scans skip values they cannot read (encrypted under a retired or unknown key, damaged)
  // and list them here for take_unreadable() (the resident engine's load), at most this many.
  static constexpr size_t kMaxUnreadableListed = 100000;
  void note_unreadable(std::string_view raw_key, const Error& e) {
    // Only the journal's are collected (by the resident engine's load); reads from RocksDB
    // (keep_in_memory = no) answer the error themselves.
    if (s_->config.journal_only && unreadable_.size() < kMaxUnreadableListed)
      unreadable_.push_back({partition_of(raw_key), std::string(raw_key.substr(4)), e});
  }
  std::vector<Unreadable> unreadable_;
  std::optional<Error> read_error_;
  std::string plain_;  // scratch of encode_stored / decode_stored
  Value last_;        // backs the ValueRef returned by get()
  Value scan_value_;  // backs the ValueRef passed to scan callbacks
  std::string buf_;
  std::map<uint64_t, std::string> cursors_;  // scan cursor -> raw key to resume at
  uint64_t cursor_seq_;
};

}  // namespace

Status compact_persistent_engine(Engine& engine) {
  auto* e = dynamic_cast<RocksEngine*>(&engine);
  if (e == nullptr)
    return make_error(Errc::kInvalidArgument, "compaction needs a persistent (RocksDB) engine");
  return e->compact();
}

Result<std::vector<std::unique_ptr<Engine>>> open_rocksdb_engines(const EngineConfig& config,
                                                                  unsigned shards,
                                                                  const Clock& clock) {
  if (shards == 0) return make_error(Errc::kInvalidArgument, "shards must be at least 1");
  if (config.data_dir.empty())
    return make_error(Errc::kInvalidArgument, "data_dir is empty; give a directory path");
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec)
    return make_error(Errc::kIoError, fmt::format("cannot create data_dir '{}': {}",
                                                  config.data_dir, ec.message()));
  auto shared = std::make_shared<Shared>(config, clock, shards);

  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  o.max_background_jobs = 2;
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  o.compaction_filter = &shared->filter;
  o.merge_operator = std::make_shared<DeltaMerge>(&shared->config);
  o.manual_wal_flush = config.journal_only;
  if (config.journal_only) {
    // A journal is written, never read while the node runs (the resident engine reads from
    // memory; RocksDB is read once, at start). An unsorted vector memtable makes a write an
    // append instead of a skiplist insert (that insert was a quarter of a SET profile); the
    // sort happens when the memtable is flushed, on a background thread.
    o.memtable_factory.reset(new rocksdb::VectorRepFactory());
    o.allow_concurrent_memtable_write = false;
  }
  auto supported = rocksdb::GetSupportedCompressions();
  auto has = [&](rocksdb::CompressionType t) {
    return std::find(supported.begin(), supported.end(), t) != supported.end();
  };
  o.compression = has(rocksdb::kLZ4Compression)      ? rocksdb::kLZ4Compression
                  : has(rocksdb::kSnappyCompression) ? rocksdb::kSnappyCompression
                                                     : rocksdb::kNoCompression;
  if (has(rocksdb::kZSTD)) o.bottommost_compression = rocksdb::kZSTD;
  if (config.keyring) {
    // Sealed values are random bytes to a compressor: trying LZ4 and ZSTD on every block costs
    // CPU in flushes and compactions and saves nothing (only the plaintext keys would shrink).
    o.compression = rocksdb::kNoCompression;
    o.bottommost_compression = rocksdb::kDisableCompressionOption;
  }
  rocksdb::BlockBasedTableOptions t;
  shared->cache = rocksdb::NewLRUCache(config.block_cache_bytes);
  t.block_cache = shared->cache;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  t.cache_index_and_filter_blocks = true;
  t.pin_l0_filter_and_index_blocks_in_cache = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));

  // Recovery replays the WAL into the memtable without writing an SST at once: starting (or
  // reopening after a failure) then needs almost no disk space, and the WAL stays until the
  // memtable is flushed in the background as usual.
  o.avoid_flush_during_recovery = true;
  o.info_log = std::make_shared<RocksLogger>();
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  o.listeners.push_back(std::make_shared<NoAutoRecovery>());
  shared->options = o;

  // On a full disk (below the reserve, or a read-write open that fails for want of space) the
  // resident engine still starts: the database is opened read-only, reads are served from
  // memory, writes are refused until maintenance() finds space and reopens it read-write.
  const uint64_t free = shared->free_space();
  const bool low = config.min_free_bytes != 0 && free < config.min_free_bytes;
  rocksdb::Status st;
  if (!low || !config.journal_only) st = shared->open_db(false);
  // Only for want of space: another process holding the database's lock, a corrupt or
  // unreadable database stay errors.
  const bool no_space = !st.ok() && (st.IsNoSpace() || st.ToString().find("No space left") != std::string::npos);
  if (low || !st.ok()) {
    std::string why = low ? fmt::format("free space {} bytes is below the reserve of {} bytes "
                                        "(storage.min_free_bytes)",
                                        free, config.min_free_bytes)
                          : "opening read-write failed: " + st.ToString();
    if (!config.journal_only || !(low || no_space))
      return make_error(Errc::kIoError, fmt::format("cannot open RocksDB at '{}': {}",
                                                    config.data_dir, why));
    auto ro = shared->open_db(true);
    if (!ro.ok())
      return make_error(Errc::kIoError,
                        fmt::format("cannot open RocksDB at '{}' ({}), not even read-only: {}",
                                    config.data_dir, why, ro.ToString()));
    shared->read_only = true;
    std::lock_guard lk(shared->io_mu);
    shared->guard.write_failed("started read-only: " + why, true, clock.now_ms());
    shared->check_space_locked();
  }
  rocksdb::DB* db = shared->db.get();

  // Recount keys per partition (expired-but-present keys included, as the write path counts).
  // In journal mode the resident engine counts while it loads.
  std::unique_ptr<rocksdb::Iterator> iter(db->NewIterator(rocksdb::ReadOptions()));
  for (iter->SeekToFirst(); !config.journal_only && iter->Valid(); iter->Next()) {
    std::string_view k(iter->key().data(), iter->key().size());
    if (k.size() < 4)
      return make_error(Errc::kCorruption,
                        fmt::format("'{}' holds a key of {} bytes without a partition prefix",
                                    config.data_dir, k.size()));
    uint32_t p = partition_of(k);
    if (p >= config.partitions)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("'{}' holds data of partition {} but partitions is {}; "
                                    "open it with the partition count it was written with",
                                    config.data_dir, p, config.partitions));
    shared->counts[p]++;
    if (encoded_expiry(std::string_view(iter->value().data(), iter->value().size())) != 0)
      shared->ttl_counts[p]++;
  }
  if (!iter->status().ok()) return io_error("recount scan", iter->status());
  iter.reset();

  std::vector<std::unique_ptr<Engine>> out;
  out.reserve(shards);
  for (unsigned i = 0; i < shards; ++i) out.push_back(std::make_unique<RocksEngine>(shared, i));
  return out;
}

}  // namespace keel::storage
