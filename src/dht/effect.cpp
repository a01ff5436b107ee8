#include "dht/effect.h"

#include <fmt/format.h>

#include <cstring>

#include "base/assert.h"
#include "base/codec.h"

namespace keel::dht {

using storage::Value;
using storage::ValueType;

namespace {
enum Op : uint8_t { kPut = 1, kErase = 2, kDrop = 3, kPatch = 4 };
constexpr uint64_t kMaxHashFields = 1ull << 32;
}  // namespace

void encode_put_string(std::string& out, std::string_view key, std::string_view value,
                       int64_t expire_at_ms) {
  Writer w(out);
  w.u8(kPut);
  w.bytes(key);
  w.u8(static_cast<uint8_t>(ValueType::kString));
  w.svarint(expire_at_ms);
  w.bytes(value);
}

void encode_put(std::string& out, std::string_view key, const Value& v) {
  if (v.type == ValueType::kString) return encode_put_string(out, key, v.str, v.expire_at_ms);
  Writer w(out);
  w.u8(kPut);
  w.bytes(key);
  w.u8(static_cast<uint8_t>(v.type));
  w.svarint(v.expire_at_ms);
  switch (v.type) {
    case ValueType::kList:
      w.varint(v.list.size());
      for (size_t i = 0; i < v.list.size(); ++i) w.bytes(v.list[i]);
      w.varint(v.list.version());
      return;
    case ValueType::kSet:
      w.varint(v.set.size());
      for (auto& m : v.set) w.bytes(m);
      return;
    case ValueType::kStream:
      v.stream.encode(w);
      return;
    case ValueType::kZSet:
      w.varint(v.zset.size());
      for (auto& [m, score] : v.zset.dict()) {
        w.bytes(m);
        uint64_t bits;
        std::memcpy(&bits, &score, sizeof bits);
        w.u64be(bits);
      }
      return;
    default:
      break;
  }
  w.varint(v.hash.size());
  for (auto& [f, val] : v.hash) {
    w.bytes(f);
    w.bytes(val);
  }
}

void encode_erase(std::string& out, std::string_view key) {
  Writer w(out);
  w.u8(kErase);
  w.bytes(key);
}

void encode_drop(std::string& out) { Writer(out).u8(kDrop); }

void encode_patch(std::string& out, std::string_view key, const Value& v, std::string_view ops) {
  Writer w(out);
  w.u8(kPatch);
  w.bytes(key);
  w.u8(static_cast<uint8_t>(v.type));
  w.svarint(v.expire_at_ms);
  w.bytes(ops);
}

namespace {
// Applies a patch: the delta's ops to the key's value of `type` (an empty one if the key is
// absent or holds another type; then it is written whole).
Status apply_patch(storage::Engine& engine, uint32_t partition, std::string_view key, ValueType type,
                   int64_t expire_at_ms, std::string_view ops, int64_t now_ms) {
  storage::Delta delta;
  delta.assign(ops, true);
  Status applied;
  auto st = engine.update_by_element(partition, key, now_ms, [&](Value* cur, Value* scratch) {
    Value* t = cur ? cur : scratch;
    if (t->type != type || !cur) {
      *t = Value{};
      t->type = type;
      delta.whole();
    }
    t->expire_at_ms = expire_at_ms;
    applied = storage::apply_delta(*t, ops);
    if (!applied) delta.whole();  // what applied is kept, written whole
    if (storage::empty_collection(*t)) return cur ? storage::UpdateAction::kErase : storage::UpdateAction::kKeep;
    return storage::UpdateAction::kWrite;
  }, delta);
  if (!st) return st;
  return applied;
}
}  // namespace

Status apply_effect(storage::Engine& engine, uint32_t partition, std::string_view effect,
                    int64_t now_ms) {
  Reader r(effect);
  auto bad = [](std::string_view what) {
    return make_error(Errc::kCorruption, fmt::format("replicated effect: {}", what));
  };
  while (!r.done()) {
    auto op = r.u8();
    if (!op) return bad("truncated op");
    if (*op == kDrop) {
      if (auto st = engine.drop_partition(partition); !st) return st;
      continue;
    }
    if (*op != kPut && *op != kErase && *op != kPatch)
      return bad(fmt::format("unknown op {} (allowed: 1 put, 2 erase, 3 drop, 4 patch)", *op));
    auto key = r.bytes(kMaxEffectKeyBytes);
    if (!key) return bad("truncated key");
    if (*op == kErase) {
      if (auto e = engine.erase(partition, *key, now_ms); !e) return std::unexpected(e.error());
      continue;
    }
    auto type = r.u8();
    auto exp = r.svarint();
    if (!type || !exp) return bad("truncated value header");
    if (*op == kPatch) {
      auto ops = r.bytes();
      if (!ops) return bad("truncated patch");
      if (*type == static_cast<uint8_t>(ValueType::kString) || *type > static_cast<uint8_t>(ValueType::kStream))
        return bad(fmt::format("patch of value type {} (allowed: 1 hash, 2 list, 3 set, 4 zset, 5 stream)", *type));
      if (auto st = apply_patch(engine, partition, *key, static_cast<ValueType>(*type), *exp, *ops, now_ms); !st)
        return bad(st.error().message);
      continue;
    }
    Value v;
    v.expire_at_ms = *exp;
    if (*type == static_cast<uint8_t>(ValueType::kString)) {
      auto s = r.bytes();
      if (!s) return bad("truncated string value");
      if (auto st = engine.set_string(partition, *key, *s, *exp, now_ms); !st) return st;
      continue;
    }
    if (*type == static_cast<uint8_t>(ValueType::kStream)) {
      v.type = ValueType::kStream;
      auto s = storage::StreamValue::decode(r);
      if (!s) return bad(s.error().message);
      v.stream = std::move(*s);
      if (auto st = engine.put(partition, *key, std::move(v), now_ms); !st) return st;
      continue;
    }
    if (*type == static_cast<uint8_t>(ValueType::kZSet)) {
      v.type = ValueType::kZSet;
      auto n = r.varint();
      if (!n || *n > kMaxHashFields || *n > r.remaining() / 9) return bad("bad zset member count");
      for (uint64_t i = 0; i < *n; ++i) {
        std::string_view m;
        double score;
        if (auto st = storage::read_scored_member(r, m, score); !st) return bad(st.error().message);
        v.zset.set(m, score);
      }
      if (auto st = engine.put(partition, *key, std::move(v), now_ms); !st) return st;
      continue;
    }
    if (*type == static_cast<uint8_t>(ValueType::kList) ||
        *type == static_cast<uint8_t>(ValueType::kSet)) {
      const bool list = *type == static_cast<uint8_t>(ValueType::kList);
      v.type = list ? ValueType::kList : ValueType::kSet;
      auto n = r.varint();
      if (!n || *n > kMaxHashFields || *n > r.remaining()) return bad("bad element count");
      if (list) v.list.reserve(*n);
      else v.set.reserve(*n);
      for (uint64_t i = 0; i < *n; ++i) {
        auto e = r.bytes();
        if (!e) return bad("truncated element");
        if (list) v.list.push_back(std::string(*e));
        else v.set.emplace(*e);
      }
      if (list) {
        auto version = r.varint();
        if (!version) return bad("truncated list change number");
        v.list.set_version(*version);
      }
      if (auto st = engine.put(partition, *key, std::move(v), now_ms); !st) return st;
      continue;
    }
    if (*type != static_cast<uint8_t>(ValueType::kHash))
      return bad(fmt::format("unknown value type {} (allowed: 0 string, 1 hash, 2 list, 3 set, 4 zset, 5 stream)",
                             *type));
    v.type = ValueType::kHash;
    auto n = r.varint();
    if (!n || *n > kMaxHashFields || *n > r.remaining()) return bad("bad hash field count");
    for (uint64_t i = 0; i < *n; ++i) {
      auto f = r.bytes();
      auto val = r.bytes();
      if (!f || !val) return bad("truncated hash field");
      v.hash.emplace(std::string(*f), std::string(*val));
    }
    if (auto st = engine.put(partition, *key, std::move(v), now_ms); !st) return st;
  }
  return {};
}

EffectRecorder::EffectRecorder(std::unique_ptr<storage::Engine> inner, uint32_t partitions)
    : inner_(std::move(inner)), recorded_(partitions, 0), primary_(partitions, 0) {
  inner_->set_removal_listener([this](uint32_t p, std::string_view key, RemovalCause cause) {
    if (recorded_[p]) encode_erase(buffer(p), key);
    changed(p, key, cause == RemovalCause::kExpired);
  });
}

std::string& EffectRecorder::buffer(uint32_t partition) {
  // Commands touch one partition, or a few: a linear search beats a map.
  for (size_t i = 0; i < npending_; ++i)
    if (pending_[i].first == partition) return pending_[i].second;
  if (npending_ == pending_.size()) pending_.emplace_back();
  auto& slot = pending_[npending_++];
  slot.first = partition;
  slot.second.clear();
  if (slot.second.capacity() > (64u << 10)) slot.second.shrink_to_fit();  // after a big value
  return slot.second;
}

std::vector<std::pair<uint32_t, std::string>> EffectRecorder::take() {
  std::vector<std::pair<uint32_t, std::string>> out(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(npending_));
  npending_ = 0;
  return out;
}

std::optional<storage::ValueRef> EffectRecorder::get(uint32_t partition, std::string_view key,
                                                     int64_t now_ms) {
  return inner_->get(partition, key, now_ms);
}

Status EffectRecorder::set_string(uint32_t partition, std::string_view key,
                                  std::string_view value, int64_t expire_at_ms, int64_t now_ms) {
  auto st = inner_->set_string(partition, key, value, expire_at_ms, now_ms);
  if (st && recorded_[partition]) encode_put_string(buffer(partition), key, value, expire_at_ms);
  if (st) changed(partition, key);
  return st;
}

Status EffectRecorder::put(uint32_t partition, std::string_view key, Value value,
                           int64_t now_ms) {
  std::string rec;
  if (recorded_[partition]) encode_put(rec, key, value);
  auto st = inner_->put(partition, key, std::move(value), now_ms);
  if (st && recorded_[partition]) buffer(partition) += rec;
  if (st) changed(partition, key);
  return st;
}

Result<bool> EffectRecorder::erase(uint32_t partition, std::string_view key, int64_t now_ms) {
  auto r = inner_->erase(partition, key, now_ms);
  if (r && *r && recorded_[partition]) encode_erase(buffer(partition), key);
  if (r && *r) changed(partition, key);
  return r;
}

Status EffectRecorder::update(uint32_t partition, std::string_view key, int64_t now_ms,
                              const UpdateFn& fn) {
  storage::Delta whole;  // never described: recorded as the key's resulting state
  return update_by_element(partition, key, now_ms, fn, whole);
}

Status EffectRecorder::update_by_element(uint32_t partition, std::string_view key, int64_t now_ms,
                                         const UpdateFn& fn, storage::Delta& delta) {
  const bool observed = observer_ && observer_->interested;
  const bool record = recorded_[partition];
  if (!record && !observed && !verify_deltas_) return inner_->update_by_element(partition, key, now_ms, fn, delta);
  std::string rec;
  bool touched = false;
  std::optional<Value> before;
  auto st = inner_->update_by_element(partition, key, now_ms, [&](Value* cur, Value* scratch) {
    if (verify_deltas_ && cur) before = *cur;
    auto action = fn(cur, scratch);
    if (action == storage::UpdateAction::kWrite) {
      touched = true;
      if (before && delta.described()) {
        Value expect = std::move(*before);
        auto applied = storage::apply_delta(expect, delta.ops());
        if (!applied || !storage::same_value(expect, *cur)) {
          const std::string why = fmt::format(
              "delta check (KEEL_VERIFY_DELTAS): the change recorded for key '{}' ({}) does not give the value "
              "the command wrote: {}",
              key, storage::type_name(cur->type), applied ? "the results differ" : applied.error().message);
          KEEL_ASSERT_MSG(false, why.c_str());
        }
      }
      if (record) {
        if (cur && delta.described() && delta.idempotent()) encode_patch(rec, key, *cur, delta.ops());
        else encode_put(rec, key, cur ? *cur : *scratch);
      }
    } else if (action == storage::UpdateAction::kErase && cur) {
      touched = true;
      if (record) encode_erase(rec, key);
    }
    return action;
  }, delta);
  // A command that changed nothing (SET NX on an existing key, SADD of a member already there)
  // records nothing: an empty effect must not reach the log (it is an epoch's barrier there).
  if (st && record && !rec.empty()) buffer(partition) += rec;
  if (st && touched) changed(partition, key);
  return st;
}

Status EffectRecorder::write_batch(std::vector<BatchOp> ops, int64_t now_ms) {
  std::vector<std::pair<uint32_t, std::string>> touched;
  if (observer_ && observer_->interested)
    for (auto& op : ops) touched.emplace_back(op.partition, op.key);
  std::vector<std::pair<uint32_t, std::string>> recs;
  for (auto& op : ops) {
    if (!recorded_[op.partition]) continue;
    std::string rec;
    if (op.value) encode_put(rec, op.key, *op.value);
    else encode_erase(rec, op.key);
    recs.emplace_back(op.partition, std::move(rec));
  }
  auto st = inner_->write_batch(std::move(ops), now_ms);
  if (st)
    for (auto& [p, rec] : recs) buffer(p) += rec;
  if (st)
    for (auto& [p, k] : touched) changed(p, k);
  return st;
}

Status EffectRecorder::clear() {
  if (observer_ && observer_->interested) observer_->clearing(*inner_);
  if (roles_known_) {
    for (uint32_t p = 0; p < primary_.size(); ++p) {
      if (!primary_[p]) continue;
      if (auto st = inner_->drop_partition(p); !st) return st;
      if (recorded_[p]) encode_drop(buffer(p));
    }
    return {};
  }
  auto st = inner_->clear();
  if (st)
    for (uint32_t p = 0; p < recorded_.size(); ++p)
      if (recorded_[p]) encode_drop(buffer(p));
  return st;
}

}  // namespace keel::dht
