#include "meta/store.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"
#include "base/codec.h"

namespace keel::meta {

namespace {

constexpr uint8_t kVersion = 1;

std::unexpected<Error> bad(std::string what) {
  return make_error(Errc::kInvalidArgument, "meta: " + what);
}

#define META_TRY(var, expr)                              \
  auto var##_r = (expr);                                 \
  if (!var##_r) return std::unexpected(var##_r.error()); \
  auto var = *var##_r

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 64) return false;
  return std::all_of(d.begin(), d.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

void put_kv(Writer& w, const KeyValue& kv) {
  w.bytes(kv.domain);
  w.bytes(kv.key);
  w.bytes(kv.value);
  w.varint(kv.create_revision);
  w.varint(kv.mod_revision);
  w.varint(kv.version);
}

Result<KeyValue> get_kv(Reader& r, const Limits& l) {
  KeyValue kv;
  META_TRY(d, r.bytes(64));
  META_TRY(k, r.bytes(l.max_key_bytes));
  META_TRY(v, r.bytes(l.max_value_bytes));
  META_TRY(c, r.varint());
  META_TRY(m, r.varint());
  META_TRY(ver, r.varint());
  kv.domain = std::string(d);
  kv.key = std::string(k);
  kv.value = std::string(v);
  kv.create_revision = c;
  kv.mod_revision = m;
  kv.version = ver;
  return kv;
}

Result<uint64_t> get_count(Reader& r, size_t max, const char* what) {
  META_TRY(n, r.varint());
  if (n > max || n > r.remaining())
    return bad(fmt::format("{} {} exceed the limit of {} or the input", n, what, max));
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Command codec

std::string encode(const Command& c) {
  std::string out;
  Writer w(out);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(c.op));
  switch (c.op) {
    case Command::Op::kPut:
      w.bytes(c.put.domain);
      w.bytes(c.put.key);
      w.bytes(c.put.value);
      break;
    case Command::Op::kDelete:
      w.bytes(c.del.domain);
      w.bytes(c.del.key);
      break;
    case Command::Op::kCas:
      w.bytes(c.cas.domain);
      w.bytes(c.cas.key);
      w.varint(c.cas.expected_version);
      w.bytes(c.cas.value);
      break;
    case Command::Op::kTxn:
      w.varint(c.txn.compares.size());
      for (auto& x : c.txn.compares) {
        w.bytes(x.domain);
        w.bytes(x.key);
        w.varint(x.expected_version);
      }
      w.varint(c.txn.puts.size());
      for (auto& p : c.txn.puts) {
        w.bytes(p.domain);
        w.bytes(p.key);
        w.bytes(p.value);
      }
      w.varint(c.txn.deletes.size());
      for (auto& d : c.txn.deletes) {
        w.bytes(d.domain);
        w.bytes(d.key);
      }
      break;
  }
  return out;
}

Result<Command> decode_command(std::string_view in, const Limits& l) {
  Reader r(in);
  META_TRY(ver, r.u8());
  if (ver != kVersion)
    return bad(fmt::format("command version {} unsupported (want {})", ver, kVersion));
  META_TRY(op, r.u8());
  if (op < 1 || op > 4)
    return bad(fmt::format("command op {} unknown (1 put, 2 delete, 3 cas, 4 txn)", op));
  Command c;
  c.op = static_cast<Command::Op>(op);
  auto str = [&](size_t max) -> Result<std::string> {
    auto b = r.bytes(max);
    if (!b) return std::unexpected(b.error());
    return std::string(*b);
  };
  switch (c.op) {
    case Command::Op::kPut: {
      META_TRY(d, str(64));
      META_TRY(k, str(l.max_key_bytes));
      META_TRY(v, str(l.max_value_bytes));
      c.put = Put{d, k, v};
      break;
    }
    case Command::Op::kDelete: {
      META_TRY(d, str(64));
      META_TRY(k, str(l.max_key_bytes));
      c.del = Delete{d, k};
      break;
    }
    case Command::Op::kCas: {
      META_TRY(d, str(64));
      META_TRY(k, str(l.max_key_bytes));
      META_TRY(e, r.varint());
      META_TRY(v, str(l.max_value_bytes));
      c.cas = CompareAndSet{d, k, e, v};
      break;
    }
    case Command::Op::kTxn: {
      META_TRY(nc, get_count(r, l.max_txn_ops, "compares"));
      for (uint64_t i = 0; i < nc; ++i) {
        META_TRY(d, str(64));
        META_TRY(k, str(l.max_key_bytes));
        META_TRY(e, r.varint());
        c.txn.compares.push_back(Compare{d, k, e});
      }
      META_TRY(np, get_count(r, l.max_txn_ops, "puts"));
      for (uint64_t i = 0; i < np; ++i) {
        META_TRY(d, str(64));
        META_TRY(k, str(l.max_key_bytes));
        META_TRY(v, str(l.max_value_bytes));
        c.txn.puts.push_back(Put{d, k, v});
      }
      META_TRY(nd, get_count(r, l.max_txn_ops, "deletes"));
      for (uint64_t i = 0; i < nd; ++i) {
        META_TRY(d, str(64));
        META_TRY(k, str(l.max_key_bytes));
        c.txn.deletes.push_back(Delete{d, k});
      }
      break;
    }
  }
  if (!r.done()) return bad(fmt::format("{} trailing bytes after the command", r.remaining()));
  return c;
}

// ---------------------------------------------------------------------------------------------
// Store

Status Store::validate(std::string_view domain, std::string_view key) const {
  if (!valid_domain(domain))
    return bad(
        fmt::format("domain '{}' invalid (allowed: 1..64 of a-z 0-9 _ -)", domain.substr(0, 80)));
  if (key.empty() || key.size() > limits_.max_key_bytes)
    return bad(fmt::format("key of {} bytes (allowed 1..{})", key.size(), limits_.max_key_bytes));
  return {};
}

Status Store::validate_value(std::string_view value) const {
  if (value.size() > limits_.max_value_bytes)
    return bad(fmt::format("value of {} bytes exceeds the limit of {}", value.size(),
                           limits_.max_value_bytes));
  return {};
}

uint64_t Store::version_of(const std::string& domain, const std::string& key) const {
  auto it = kv_.find(Key{domain, key});
  return it == kv_.end() ? 0 : it->second.version;
}

void Store::record(Event e) {
  history_.push_back(std::move(e));
  while (history_.size() > limits_.max_history) {
    // Drop whole revisions: a watch from a revision must see all of its events or none.
    uint64_t r = history_.front().revision;
    while (!history_.empty() && history_.front().revision <= r) history_.pop_front();
    compacted_ = std::max(compacted_, r);
  }
}

void Store::do_put(const std::string& domain, const std::string& key, const std::string& value) {
  auto [it, fresh] = kv_.try_emplace(Key{domain, key});
  KeyValue& kv = it->second;
  if (fresh) {
    kv.domain = domain;
    kv.key = key;
    kv.create_revision = revision_;
    kv.version = 0;
  }
  kv.value = value;
  kv.mod_revision = revision_;
  kv.version += 1;
  record(Event{.type = Event::Type::kPut, .revision = revision_, .kv = kv});
}

bool Store::do_delete(const std::string& domain, const std::string& key) {
  auto it = kv_.find(Key{domain, key});
  if (it == kv_.end()) return false;
  KeyValue last = it->second;
  last.mod_revision = revision_;
  kv_.erase(it);
  record(Event{.type = Event::Type::kDelete, .revision = revision_, .kv = std::move(last)});
  return true;
}

Result<Applied> Store::apply(const Command& c) {
  Applied out;
  switch (c.op) {
    case Command::Op::kPut: {
      if (auto s = validate(c.put.domain, c.put.key); !s) return std::unexpected(s.error());
      if (auto s = validate_value(c.put.value); !s) return std::unexpected(s.error());
      out.prev = get(c.put.domain, c.put.key);
      ++revision_;
      do_put(c.put.domain, c.put.key, c.put.value);
      break;
    }
    case Command::Op::kDelete: {
      if (auto s = validate(c.del.domain, c.del.key); !s) return std::unexpected(s.error());
      out.prev = get(c.del.domain, c.del.key);
      if (!out.prev)
        return make_error(Errc::kNotFound,
                          fmt::format("meta: {}/{} does not exist", c.del.domain, c.del.key));
      ++revision_;
      do_delete(c.del.domain, c.del.key);
      break;
    }
    case Command::Op::kCas: {
      if (auto s = validate(c.cas.domain, c.cas.key); !s) return std::unexpected(s.error());
      if (auto s = validate_value(c.cas.value); !s) return std::unexpected(s.error());
      uint64_t have = version_of(c.cas.domain, c.cas.key);
      if (have != c.cas.expected_version)
        return make_error(Errc::kConflict,
                          fmt::format("meta: {}/{} is at version {}, expected {}", c.cas.domain,
                                      c.cas.key, have, c.cas.expected_version));
      out.prev = get(c.cas.domain, c.cas.key);
      ++revision_;
      do_put(c.cas.domain, c.cas.key, c.cas.value);
      break;
    }
    case Command::Op::kTxn: {
      const Txn& t = c.txn;
      if (t.compares.size() > limits_.max_txn_ops || t.puts.size() > limits_.max_txn_ops ||
          t.deletes.size() > limits_.max_txn_ops)
        return bad(
            fmt::format("transaction exceeds {} compares/puts/deletes", limits_.max_txn_ops));
      for (auto& x : t.compares)
        if (auto s = validate(x.domain, x.key); !s) return std::unexpected(s.error());
      for (auto& p : t.puts) {
        if (auto s = validate(p.domain, p.key); !s) return std::unexpected(s.error());
        if (auto s = validate_value(p.value); !s) return std::unexpected(s.error());
      }
      for (auto& d : t.deletes)
        if (auto s = validate(d.domain, d.key); !s) return std::unexpected(s.error());
      for (size_t i = 0; i < t.compares.size(); ++i) {
        auto& x = t.compares[i];
        uint64_t have = version_of(x.domain, x.key);
        if (have != x.expected_version)
          return make_error(Errc::kConflict,
                            fmt::format("meta: transaction compare {} failed: {}/{} is at version "
                                        "{}, expected {}",
                                        i, x.domain, x.key, have, x.expected_version));
      }
      if (t.puts.empty() && t.deletes.empty()) break;  // a read-only check: no new revision
      ++revision_;
      // Deletes first, then puts: a key both deleted and put ends up present (version 1).
      for (auto& d : t.deletes) do_delete(d.domain, d.key);
      for (auto& p : t.puts) do_put(p.domain, p.key, p.value);
      break;
    }
  }
  out.revision = revision_;
  return out;
}

Result<Applied> Store::apply_bytes(std::string_view command) {
  auto c = decode_command(command, limits_);
  if (!c) return std::unexpected(c.error());
  return apply(*c);
}

std::optional<KeyValue> Store::get(std::string_view domain, std::string_view key) const {
  auto it = kv_.find(Key{std::string(domain), std::string(key)});
  if (it == kv_.end()) return std::nullopt;
  return it->second;
}

std::vector<KeyValue> Store::list(std::string_view domain, std::string_view prefix,
                                  size_t limit) const {
  std::vector<KeyValue> out;
  limit = std::min(limit, limits_.max_list);
  for (auto it = kv_.lower_bound(Key{std::string(domain), std::string(prefix)});
       it != kv_.end() && out.size() < limit; ++it) {
    if (it->first.first != domain || !it->first.second.starts_with(prefix)) break;
    out.push_back(it->second);
  }
  return out;
}

Result<std::vector<Event>> Store::watch(std::string_view domain, std::string_view prefix,
                                        uint64_t from_revision, size_t limit) const {
  if (from_revision <= compacted_)
    return make_error(Errc::kOutOfRange,
                      fmt::format("meta: revision {} compacted; the oldest watchable revision is "
                                  "{} (re-read with list, then watch from its revision + 1)",
                                  from_revision, compacted_ + 1));
  limit = std::min(limit, limits_.max_list);
  std::vector<Event> out;
  // History is ordered by revision: binary search the start.
  auto it = std::lower_bound(history_.begin(), history_.end(), from_revision,
                             [](const Event& e, uint64_t r) { return e.revision < r; });
  for (; it != history_.end() && out.size() < limit; ++it)
    if (it->kv.domain == domain && it->kv.key.starts_with(prefix)) out.push_back(*it);
  return out;
}

std::vector<KeyValue> Store::list_all(std::string_view domain, std::string_view prefix) const {
  std::vector<KeyValue> out;
  for (auto it = kv_.lower_bound(Key{std::string(domain), std::string(prefix)}); it != kv_.end();
       ++it) {
    if (it->first.first != domain || !it->first.second.starts_with(prefix)) break;
    out.push_back(it->second);
  }
  return out;
}

Result<std::vector<Event>> Store::changes_since(std::string_view domain, std::string_view prefix,
                                                uint64_t from_revision) const {
  if (from_revision <= compacted_)
    return make_error(
        Errc::kOutOfRange,
        fmt::format("meta: revision {} compacted; the oldest watchable revision is {}",
                    from_revision, compacted_ + 1));
  std::vector<Event> out;
  auto it = std::lower_bound(history_.begin(), history_.end(), from_revision,
                             [](const Event& e, uint64_t r) { return e.revision < r; });
  for (; it != history_.end(); ++it)
    if (it->kv.domain == domain && it->kv.key.starts_with(prefix)) out.push_back(*it);
  return out;
}

std::vector<std::string> Store::domains() const {
  std::vector<std::string> out;
  for (auto& [k, _] : kv_)
    if (out.empty() || out.back() != k.first) out.push_back(k.first);
  return out;
}

std::string Store::snapshot() const {
  std::string out;
  Writer w(out);
  w.u8(kVersion);
  w.varint(revision_);
  w.varint(compacted_);
  w.varint(kv_.size());
  for (auto& [_, kv] : kv_) put_kv(w, kv);
  w.varint(history_.size());
  for (auto& e : history_) {
    w.u8(static_cast<uint8_t>(e.type));
    w.varint(e.revision);
    put_kv(w, e.kv);
  }
  return out;
}

Result<Store> Store::restore(std::string_view bytes, Limits limits) {
  Reader r(bytes);
  Store s(limits);
  META_TRY(ver, r.u8());
  if (ver != kVersion) return bad(fmt::format("snapshot version {} unsupported", ver));
  META_TRY(rev, r.varint());
  META_TRY(comp, r.varint());
  if (comp > rev) return bad("snapshot compacted revision beyond its revision");
  s.revision_ = rev;
  s.compacted_ = comp;
  META_TRY(n, get_count(r, SIZE_MAX, "keys"));
  for (uint64_t i = 0; i < n; ++i) {
    META_TRY(kv, get_kv(r, limits));
    if (!valid_domain(kv.domain) || kv.key.empty() || kv.mod_revision > rev || kv.version == 0)
      return bad(fmt::format("snapshot entry {} is inconsistent", i));
    Key k{kv.domain, kv.key};
    if (!s.kv_.emplace(std::move(k), std::move(kv)).second)
      return bad("snapshot holds a key twice");
  }
  META_TRY(h, get_count(r, limits.max_history, "history events"));
  for (uint64_t i = 0; i < h; ++i) {
    META_TRY(t, r.u8());
    if (t > 1) return bad("snapshot event type unknown");
    META_TRY(er, r.varint());
    META_TRY(kv, get_kv(r, limits));
    if (er <= comp || er > rev || (!s.history_.empty() && er < s.history_.back().revision))
      return bad("snapshot history out of order");
    s.history_.push_back(Event{static_cast<Event::Type>(t), er, std::move(kv)});
  }
  if (!r.done()) return bad("trailing bytes after the snapshot");
  return s;
}

}  // namespace keel::meta
