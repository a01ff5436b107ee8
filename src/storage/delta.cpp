#include "storage/delta.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/codec.h"
#include "storage/engine.h"

namespace keel::storage {
namespace {

enum Op : uint8_t {
  kHashSet = 1,
  kHashDel = 2,
  kSetAdd = 3,
  kSetRem = 4,
  kZSetSet = 5,
  kZSetRem = 6,
  kListPushHead = 7,
  kListPushTail = 8,
  kListPopHead = 9,
  kListPopTail = 10,
  kListSet = 11,
  kListInsert = 12,
  kListErase = 13,
  kStreamAppend = 14,
  kStreamTrimThrough = 15,
  kStreamDelete = 16,
  kGroupPos = 17,
  kConsumerSet = 18,
  kConsumerDel = 19,
  kPelSet = 20,
  kPelDel = 21,
  kListVersion = 22,
};
constexpr uint8_t kMaxOp = kListVersion;

// The type an op applies to.
ValueType op_type(uint8_t code) {
  if (code <= kHashDel) return ValueType::kHash;
  if (code <= kSetRem) return ValueType::kSet;
  if (code <= kZSetRem) return ValueType::kZSet;
  if (code <= kListErase || code == kListVersion) return ValueType::kList;
  return ValueType::kStream;
}

std::unexpected<Error> bad(std::string_view what) {
  return make_error(Errc::kCorruption, fmt::format("delta: {}", what));
}

}  // namespace

void Delta::op(uint8_t code, bool idempotent) {
  if (state_ == State::kNone) state_ = State::kOps;
  idempotent_ = idempotent_ && idempotent;
  Writer(ops_).u8(code);
}

void Delta::assign(std::string_view ops, bool idempotent) {
  ops_.assign(ops);
  state_ = State::kOps;
  idempotent_ = idempotent;
  guarded_ = false;
}

void Delta::seal_list(ListValue& l, uint64_t before) {
  l.set_version(before + 1);
  if (state_ != State::kOps) return;
  std::string guard;
  Writer w(guard);
  w.u8(kListVersion);
  w.varint(before + 1);
  ops_.insert(0, guard);
  guarded_ = true;
}

void Delta::hash_set(std::string_view field, std::string_view value) {
  op(kHashSet, true);
  Writer w(ops_);
  w.bytes(field);
  w.bytes(value);
}
void Delta::hash_del(std::string_view field) {
  op(kHashDel, true);
  Writer(ops_).bytes(field);
}
void Delta::set_add(std::string_view member) {
  op(kSetAdd, true);
  Writer(ops_).bytes(member);
}
void Delta::set_rem(std::string_view member) {
  op(kSetRem, true);
  Writer(ops_).bytes(member);
}
void Delta::zset_set(std::string_view member, double score) {
  op(kZSetSet, true);
  Writer w(ops_);
  w.bytes(member);
  uint64_t bits;
  std::memcpy(&bits, &score, sizeof bits);
  w.u64be(bits);
}
void Delta::zset_rem(std::string_view member) {
  op(kZSetRem, true);
  Writer(ops_).bytes(member);
}
void Delta::list_push(bool head, std::string_view element) {
  op(head ? kListPushHead : kListPushTail, false);
  Writer(ops_).bytes(element);
}
void Delta::list_pop(bool head, uint64_t n) {
  op(head ? kListPopHead : kListPopTail, false);
  Writer(ops_).varint(n);
}
void Delta::list_set(uint64_t index, std::string_view element) {
  op(kListSet, false);
  Writer w(ops_);
  w.varint(index);
  w.bytes(element);
}
void Delta::list_insert(uint64_t index, std::string_view element) {
  op(kListInsert, false);
  Writer w(ops_);
  w.varint(index);
  w.bytes(element);
}
void Delta::list_erase(uint64_t index) {
  op(kListErase, false);
  Writer(ops_).varint(index);
}
void Delta::stream_append(StreamId id, std::span<const std::string_view> field_values) {
  op(kStreamAppend, true);
  Writer w(ops_);
  w.u64be(id.ms);
  w.u64be(id.seq);
  w.varint(field_values.size());
  for (auto fv : field_values) w.bytes(fv);
}

void Delta::stream_trimmed(const StreamValue& after) {
  StreamId through = after.last_id();
  if (auto first = after.first_entry_id()) {
    through = *first;
    through.decr();
  }
  op(kStreamTrimThrough, true);
  Writer w(ops_);
  w.u64be(through.ms);
  w.u64be(through.seq);
}
void Delta::stream_delete(StreamId id) {
  op(kStreamDelete, true);
  Writer w(ops_);
  w.u64be(id.ms);
  w.u64be(id.seq);
}

void Delta::group_touched(std::string_view group, const StreamGroup& g, std::span<const StreamId> pending_ids,
                          std::span<const std::string_view> consumers) {
  op(kGroupPos, true);
  Writer w(ops_);
  w.bytes(group);
  w.u64be(g.last_id.ms);
  w.u64be(g.last_id.seq);
  w.svarint(g.entries_read);
  for (auto name : consumers) {
    auto it = g.consumers.find(name);
    if (it == g.consumers.end()) {
      consumer_del(group, name);
      continue;
    }
    op(kConsumerSet, true);
    w.bytes(group);
    w.bytes(name);
    w.svarint(it->second.seen_time_ms);
    w.svarint(it->second.active_time_ms);
  }
  for (auto id : pending_ids) {
    auto it = g.pel.find(id);
    op(it == g.pel.end() ? kPelDel : kPelSet, true);
    w.bytes(group);
    w.u64be(id.ms);
    w.u64be(id.seq);
    if (it == g.pel.end()) continue;
    w.bytes(it->second.consumer);
    w.svarint(it->second.delivery_time_ms);
    w.varint(it->second.delivery_count);
  }
}

void Delta::consumer_del(std::string_view group, std::string_view consumer) {
  op(kConsumerDel, true);
  Writer w(ops_);
  w.bytes(group);
  w.bytes(consumer);
}

namespace {
// The consumer-group ops (17..21) on `s`.
Status apply_group_op(uint8_t code, Reader& r, StreamValue& s) {
  auto group = r.bytes();
  if (!group) return bad("truncated group name");
  StreamGroup* g = s.group(*group);
  auto read_id = [&](StreamId& id) {
    auto ms = r.u64be();
    auto seq = r.u64be();
    if (!ms || !seq) return false;
    id = {*ms, *seq};
    return true;
  };
  switch (code) {
    case kGroupPos: {
      StreamId id;
      if (!read_id(id)) return bad("truncated group position");
      auto entries_read = r.svarint();
      if (!entries_read) return bad("truncated group position");
      if (g) {
        g->last_id = id;
        g->entries_read = *entries_read;
      }
      return {};
    }
    case kConsumerSet: {
      auto name = r.bytes();
      auto seen = name ? r.svarint() : Result<int64_t>(0);
      auto active = seen ? r.svarint() : Result<int64_t>(0);
      if (!name || !seen || !active) return bad("truncated consumer");
      if (g) {
        auto& c = g->consumers[std::string(*name)];
        c.seen_time_ms = *seen;
        c.active_time_ms = *active;
      }
      return {};
    }
    case kConsumerDel: {
      auto name = r.bytes();
      if (!name) return bad("truncated consumer");
      if (!g) return {};
      auto it = g->consumers.find(*name);
      if (it == g->consumers.end()) return {};
      for (auto id : it->second.pending) g->pel.erase(id);
      g->consumers.erase(it);
      return {};
    }
    case kPelSet:
    case kPelDel: {
      StreamId id;
      if (!read_id(id)) return bad("truncated pending id");
      std::string_view consumer;
      int64_t time = 0;
      uint64_t count = 0;
      if (code == kPelSet) {
        auto name = r.bytes();
        auto t = name ? r.svarint() : Result<int64_t>(0);
        auto n = t ? r.varint() : Result<uint64_t>(0);
        if (!name || !t || !n) return bad("truncated pending entry");
        consumer = *name;
        time = *t;
        count = *n;
      }
      if (!g) return {};
      auto it = g->pel.find(id);
      if (it != g->pel.end()) {  // leaves its consumer
        auto c = g->consumers.find(it->second.consumer);
        if (c != g->consumers.end()) c->second.pending.erase(id);
        if (code == kPelDel) g->pel.erase(it);
      }
      if (code == kPelDel) return {};
      auto& nack = g->pel[id];
      nack.consumer.assign(consumer);
      nack.delivery_time_ms = time;
      nack.delivery_count = count;
      g->consumers[std::string(consumer)].pending.insert(id);
      return {};
    }
  }
  return bad("unreachable group op");
}
}  // namespace

Status apply_delta(Value& v, std::string_view ops) {
  Reader r(ops);
  std::vector<std::string_view> fields;
  uint64_t list_version = 0;  // set by a guard, given to the list once every op is applied
  bool first = true;
  while (!r.done()) {
    auto code = r.u8();
    if (!code) return bad("truncated op");
    if (*code == 0 || *code > kMaxOp) return bad(fmt::format("unknown op {} (allowed: 1 to {})", *code, kMaxOp));
    if (op_type(*code) != v.type)
      return bad(fmt::format("op {} is for a {} but the value is a {}", *code, type_name(op_type(*code)),
                             type_name(v.type)));
    switch (*code) {
      case kHashSet: {
        auto f = r.bytes();
        auto val = r.bytes();
        if (!f || !val) return bad("truncated hash field");
        v.hash[std::string(*f)].assign(*val);
        break;
      }
      case kHashDel: {
        auto f = r.bytes();
        if (!f) return bad("truncated hash field");
        v.hash.erase(std::string(*f));
        break;
      }
      case kSetAdd:
      case kSetRem: {
        auto m = r.bytes();
        if (!m) return bad("truncated set member");
        if (*code == kSetAdd) v.set.emplace(*m);
        else v.set.erase(std::string(*m));
        break;
      }
      case kZSetSet: {
        std::string_view m;
        double score;
        if (auto st = read_scored_member(r, m, score); !st) return bad(st.error().message);
        v.zset.set(m, score);
        break;
      }
      case kZSetRem: {
        auto m = r.bytes();
        if (!m) return bad("truncated zset member");
        v.zset.erase(*m);
        break;
      }
      case kListVersion: {
        if (!first) return bad("a list's change number (op 22) must be the first op");
        auto n = r.varint();
        if (!n || *n == 0) return bad("truncated or zero list change number");
        if (v.list.version() >= *n) return {};  // the list already has this change
        // A guarded change whose ops do not fit the list (a pop past its length, an index past
        // its end) stops where it does not fit, without error: replication replays a guarded
        // change over a state it was not made on only when that state is a later incarnation of
        // the key (deleted and created again, which restarts its numbers) or a list not yet
        // reset, and the whole value or erase that ended the older incarnation follows in the
        // same replay and resets the key (docs/consistency.md, "Resuming a snapshot transfer").
        list_version = *n;
        break;
      }
      case kListPushHead:
      case kListPushTail: {
        auto e = r.bytes();
        if (!e) return bad("truncated list element");
        if (*code == kListPushHead) v.list.push_front(std::string(*e));
        else v.list.push_back(std::string(*e));
        break;
      }
      case kListPopHead:
      case kListPopTail: {
        auto n = r.varint();
        if (!n) return bad("truncated pop count");
        if (*n > v.list.size()) {
          if (list_version) return {};  // see kListVersion
          return bad(fmt::format("pops {} of a list of {}", *n, v.list.size()));
        }
        for (uint64_t i = 0; i < *n; ++i) {
          if (*code == kListPopHead) v.list.pop_front();
          else v.list.pop_back();
        }
        break;
      }
      case kListSet:
      case kListInsert:
      case kListErase: {
        auto i = r.varint();
        if (!i) return bad("truncated list index");
        std::string_view e;
        if (*code != kListErase) {
          auto b = r.bytes();
          if (!b) return bad("truncated list element");
          e = *b;
        }
        const uint64_t limit = v.list.size() + (*code == kListInsert ? 1 : 0);
        if (*i >= limit) {
          if (list_version) return {};  // see kListVersion
          return bad(fmt::format("index {} is past a list of {}", *i, v.list.size()));
        }
        if (*code == kListSet) v.list[*i].assign(e);
        else if (*code == kListInsert) v.list.insert(*i, std::string(e));
        else v.list.erase(*i);
        break;
      }
      case kStreamAppend: {
        auto ms = r.u64be();
        auto seq = r.u64be();
        auto n = r.varint();
        if (!ms || !seq || !n) return bad("truncated stream entry");
        if (*n < 2 || *n % 2 != 0 || *n > r.remaining())
          return bad(fmt::format("stream entry has {} fields and values (an even number >= 2 allowed)", *n));
        fields.clear();
        for (uint64_t i = 0; i < *n; ++i) {
          auto b = r.bytes();
          if (!b) return bad("truncated stream field");
          fields.push_back(*b);
        }
        const StreamId id{*ms, *seq};
        if (id > v.stream.last_id()) v.stream.append(id, fields);
        break;
      }
      case kStreamTrimThrough:
      case kStreamDelete: {
        auto ms = r.u64be();
        auto seq = r.u64be();
        if (!ms || !seq) return bad("truncated stream id");
        const StreamId id{*ms, *seq};
        if (*code == kStreamDelete) {
          v.stream.erase(id);
        } else if (id == StreamId::max()) {
          v.stream.trim_maxlen(0, false, 0);  // no entry can come after the last possible id
        } else {
          StreamId first_kept = id;
          first_kept.incr();
          v.stream.trim_minid(first_kept, false, 0);
        }
        break;
      }
      case kGroupPos:
      case kConsumerSet:
      case kConsumerDel:
      case kPelSet:
      case kPelDel:
        if (auto st = apply_group_op(*code, r, v.stream); !st) return st;
        break;
      default:
        return bad("unreachable op");
    }
    first = false;
  }
  if (list_version) v.list.set_version(list_version);
  return {};
}

Status read_scored_member(Reader& r, std::string_view& member, double& score) {
  auto m = r.bytes();
  auto bits = r.u64be();
  if (!m || !bits) return make_error(Errc::kCorruption, "truncated zset member");
  std::memcpy(&score, &*bits, sizeof score);
  if (std::isnan(score)) return make_error(Errc::kCorruption, "zset score is NaN");
  member = *m;
  return {};
}

bool same_value(const Value& a, const Value& b) {
  if (a.type != b.type || a.expire_at_ms != b.expire_at_ms) return false;
  switch (a.type) {
    case ValueType::kString: return a.str == b.str;
    case ValueType::kHash: return a.hash == b.hash;
    case ValueType::kList: return a.list == b.list && a.list.version() == b.list.version();
    case ValueType::kSet: return a.set == b.set;
    case ValueType::kZSet: return a.zset == b.zset;
    case ValueType::kStream: return a.stream == b.stream;
  }
  return false;
}

}  // namespace keel::storage
