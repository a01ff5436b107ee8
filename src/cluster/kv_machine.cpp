#include "cluster/kv_machine.h"

#include <fmt/format.h>

#include "base/codec.h"

namespace keel::cluster {

namespace {
constexpr uint8_t kCmdVersion = 1;
constexpr size_t kMaxKey = 64 * 1024;
constexpr size_t kMaxValue = 16u << 20;

#define KV_TRY(lhs, expr)                        \
  do {                                           \
    auto _r = (expr);                            \
    if (!_r) return std::unexpected(_r.error()); \
    lhs = *_r;                                   \
  } while (0)
}  // namespace

std::string encode_command(const KvCommand& c) {
  std::string out;
  Writer w(out);
  w.u8(kCmdVersion);
  w.u8(static_cast<uint8_t>(c.op));
  w.bytes(c.key);
  w.bytes(c.value);
  w.u8(c.prev_version ? 1 : 0);
  if (c.prev_version) w.varint(*c.prev_version);
  return out;
}

Result<KvCommand> decode_command(std::string_view in) {
  Reader r(in);
  KvCommand c;
  uint8_t v = 0, op = 0, has = 0;
  KV_TRY(v, r.u8());
  if (v != kCmdVersion) return make_error(Errc::kCorruption, fmt::format("meta command version {} (expected {})", v, kCmdVersion));
  KV_TRY(op, r.u8());
  if (op != 1 && op != 2) return make_error(Errc::kCorruption, fmt::format("meta command op {} unknown", op));
  c.op = static_cast<KvCommand::Op>(op);
  std::string_view k, val;
  KV_TRY(k, r.bytes(kMaxKey));
  KV_TRY(val, r.bytes(kMaxValue));
  c.key = std::string(k);
  c.value = std::string(val);
  KV_TRY(has, r.u8());
  if (has) {
    uint64_t p = 0;
    KV_TRY(p, r.varint());
    c.prev_version = p;
  }
  if (!r.done()) return make_error(Errc::kCorruption, "meta command: trailing bytes");
  return c;
}

std::string encode_reply(const Result<WriteResult>& res) {
  std::string out;
  Writer w(out);
  if (res) {
    w.u8(0);
    w.varint(res->revision);
    w.varint(res->version);
    w.u8(res->existed ? 1 : 0);
  } else {
    w.u8(static_cast<uint8_t>(res.error().code));
    w.bytes(res.error().message);
  }
  return out;
}

Result<WriteResult> decode_reply(std::string_view in) {
  Reader r(in);
  uint8_t code = 0;
  KV_TRY(code, r.u8());
  if (code != 0) {
    std::string_view msg;
    KV_TRY(msg, r.bytes(1 << 16));
    if (code > static_cast<uint8_t>(Errc::kInternal)) code = static_cast<uint8_t>(Errc::kInternal);
    return make_error(static_cast<Errc>(code), std::string(msg));
  }
  WriteResult w;
  uint8_t ex = 0;
  KV_TRY(w.revision, r.varint());
  KV_TRY(w.version, r.varint());
  KV_TRY(ex, r.u8());
  w.existed = ex != 0;
  return w;
}

Result<WriteResult> KvMachine::run(const KvCommand& c) {
  auto it = map_.find(c.key);
  uint64_t cur = it == map_.end() ? 0 : it->second.version;
  if (c.prev_version && *c.prev_version != cur)
    return make_error(Errc::kConflict,
                      cur == 0 ? fmt::format("key '{}' does not exist, expected version {}", c.key, *c.prev_version)
                               : fmt::format("key '{}' is at version {}, expected version {}", c.key, cur, *c.prev_version));
  WriteResult w;
  WatchEvent ev;
  if (c.op == KvCommand::Op::kPut) {
    ++revision_;
    auto& kv = map_[c.key];
    if (kv.version == 0) {
      kv.key = c.key;
      kv.create_revision = revision_;
    }
    kv.value = c.value;
    kv.version += 1;
    kv.mod_revision = revision_;
    w.version = kv.version;
    w.existed = cur != 0;
    ev.kv = kv;
  } else {
    if (it == map_.end()) {
      w.revision = revision_;
      return w;  // nothing deleted: no new revision (as etcd)
    }
    ++revision_;
    ev.deleted = true;
    ev.kv = it->second;
    ev.kv.value.clear();
    ev.kv.mod_revision = revision_;
    map_.erase(it);
    w.existed = true;
  }
  w.revision = revision_;
  history_.push_back(std::move(ev));
  while (history_.size() > history_limit_) {
    history_.pop_front();
    history_floor_ = history_.front().kv.mod_revision;
  }
  return w;
}

std::string KvMachine::apply(uint64_t, std::string_view command) {
  auto c = decode_command(command);
  if (!c) return encode_reply(std::unexpected(c.error()));
  return encode_reply(run(*c));
}

std::string KvMachine::snapshot() const {
  std::string out;
  Writer w(out);
  w.u8(kCmdVersion);
  w.varint(revision_);
  w.varint(map_.size());
  for (auto& [k, kv] : map_) {
    w.bytes(k);
    w.bytes(kv.value);
    w.varint(kv.version);
    w.varint(kv.create_revision);
    w.varint(kv.mod_revision);
  }
  return out;
}

Status KvMachine::restore(std::string_view state) {
  Reader r(state);
  uint8_t v = 0;
  KV_TRY(v, r.u8());
  if (v != kCmdVersion) return make_error(Errc::kCorruption, fmt::format("meta snapshot version {}", v));
  std::map<std::string, KeyValue> m;
  uint64_t rev = 0, n = 0;
  KV_TRY(rev, r.varint());
  KV_TRY(n, r.varint());
  for (uint64_t i = 0; i < n; ++i) {
    KeyValue kv;
    std::string_view k, val;
    KV_TRY(k, r.bytes(kMaxKey));
    KV_TRY(val, r.bytes(kMaxValue));
    kv.key = std::string(k);
    kv.value = std::string(val);
    KV_TRY(kv.version, r.varint());
    KV_TRY(kv.create_revision, r.varint());
    KV_TRY(kv.mod_revision, r.varint());
    m.emplace(kv.key, std::move(kv));
  }
  if (!r.done()) return make_error(Errc::kCorruption, "meta snapshot: trailing bytes");
  map_ = std::move(m);
  revision_ = rev;
  history_.clear();
  history_floor_ = rev + 1;  // events before the snapshot are not kept
  return {};
}

std::optional<KeyValue> KvMachine::get(const std::string& key) const {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

ListResult KvMachine::list(const std::string& prefix, size_t limit) const {
  ListResult out;
  out.revision = revision_;
  for (auto it = map_.lower_bound(prefix); it != map_.end() && it->first.starts_with(prefix); ++it) {
    if (out.items.size() == limit) {
      out.more = true;
      break;
    }
    out.items.push_back(it->second);
  }
  return out;
}

Result<std::vector<WatchEvent>> KvMachine::events(const std::string& prefix, uint64_t from, size_t limit) const {
  if (from < history_floor_ && from <= revision_)
    return make_error(Errc::kOutOfRange,
                      fmt::format("revision {} is compacted; the oldest revision still watchable is {} "
                                  "(list the keys and watch from the listing's revision + 1)",
                                  from, history_floor_));
  std::vector<WatchEvent> out;
  for (auto& e : history_) {
    if (e.kv.mod_revision < from || !e.kv.key.starts_with(prefix)) continue;
    out.push_back(e);
    if (out.size() == limit) break;
  }
  return out;
}

}  // namespace keel::cluster
