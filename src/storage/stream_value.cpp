#include "storage/stream_value.h"

#include <fmt/format.h>

#include "base/assert.h"

namespace keel::storage {

namespace {
constexpr uint8_t kDeleted = 1;
constexpr uint8_t kSameFields = 2;
constexpr uint64_t kMaxCount = 1ull << 32;

std::unexpected<Error> corrupt(std::string_view what) {
  return make_error(Errc::kCorruption, fmt::format("stored stream: {}", what));
}

void put_id(Writer& w, StreamId id) {
  w.varint(id.ms);
  w.varint(id.seq);
}
Result<StreamId> get_id(Reader& r) {
  auto ms = r.varint();
  if (!ms) return std::unexpected(ms.error());
  auto seq = r.varint();
  if (!seq) return std::unexpected(seq.error());
  return StreamId{*ms, *seq};
}
}  // namespace

std::string StreamId::str() const { return fmt::format("{}-{}", ms, seq); }

bool StreamId::incr() {
  if (seq == UINT64_MAX) {
    if (ms == UINT64_MAX) return false;
    ++ms;
    seq = 0;
  } else {
    ++seq;
  }
  return true;
}

bool StreamId::decr() {
  if (seq == 0) {
    if (ms == 0) return false;
    --ms;
    seq = UINT64_MAX;
  } else {
    --seq;
  }
  return true;
}

bool StreamGroup::operator==(const StreamGroup& o) const {
  if (last_id != o.last_id || entries_read != o.entries_read || pel.size() != o.pel.size() ||
      consumers.size() != o.consumers.size())
    return false;
  for (auto a = pel.begin(), b = o.pel.begin(); a != pel.end(); ++a, ++b)
    if (a->first != b->first || a->second.consumer != b->second.consumer ||
        a->second.delivery_time_ms != b->second.delivery_time_ms ||
        a->second.delivery_count != b->second.delivery_count)
      return false;
  for (auto a = consumers.begin(), b = o.consumers.begin(); a != consumers.end(); ++a, ++b)
    if (a->first != b->first || a->second.seen_time_ms != b->second.seen_time_ms ||
        a->second.active_time_ms != b->second.active_time_ms ||
        a->second.pending != b->second.pending)
      return false;
  return true;
}

bool StreamValue::decode_node(StreamId master, const Node& n, std::vector<Decoded>& out) {
  Reader r(n.data);
  std::vector<std::string_view> master_fields;
  while (!r.done()) {
    Decoded d;
    d.flags_at = n.data.size() - r.remaining();
    auto flags = r.u8();
    auto dms = r.varint();
    auto dseq = r.varint();
    if (!flags || !dms || !dseq || *flags > 3) return false;
    d.deleted = *flags & kDeleted;
    if (*dms > UINT64_MAX - master.ms) return false;
    d.id.ms = master.ms + *dms;
    if (*dms == 0) {
      if (*dseq > UINT64_MAX - master.seq) return false;
      d.id.seq = master.seq + *dseq;
    } else {
      d.id.seq = *dseq;
    }
    if (*flags & kSameFields) {
      if (out.empty()) return false;
      for (auto f : master_fields) {
        auto v = r.bytes();
        if (!v) return false;
        d.entry.fields.emplace_back(f, *v);
      }
    } else {
      auto nf = r.varint();
      if (!nf || *nf == 0 || *nf > r.remaining() / 2) return false;
      for (uint64_t i = 0; i < *nf; ++i) {
        auto f = r.bytes();
        auto v = r.bytes();
        if (!f || !v) return false;
        d.entry.fields.emplace_back(*f, *v);
      }
    }
    if (out.empty()) {
      for (auto& [f, v] : d.entry.fields) master_fields.push_back(f);
    } else if (d.id <= out.back().id) {
      return false;
    }
    d.entry.id = d.id;
    out.push_back(std::move(d));
  }
  return true;
}

namespace {
// The id of the first (or, `last`, the last) entry: the one a range in that direction meets first.
std::optional<StreamId> edge_entry_id(const StreamValue& s, bool last) {
  std::optional<StreamId> out;
  s.range({}, StreamId::max(), last, [&](const StreamEntry& e) {
    out = e.id;
    return false;
  });
  return out;
}
}  // namespace

std::optional<StreamId> StreamValue::first_entry_id() const { return edge_entry_id(*this, false); }
std::optional<StreamId> StreamValue::last_entry_id() const { return edge_entry_id(*this, true); }

void StreamValue::append(StreamId id, std::span<const std::string_view> fv) {
  Data& d = data();
  KEEL_ASSERT(id > d.last_id);
  KEEL_ASSERT(fv.size() >= 2 && fv.size() % 2 == 0);
  size_t entry_bytes = 16;
  for (auto s : fv) entry_bytes += s.size() + 2;
  Node* node = nullptr;
  StreamId master;
  if (!d.nodes.empty()) {
    auto it = std::prev(d.nodes.end());
    Node& n = it->second;
    if (n.total < kNodeMaxEntries && n.data.size() + entry_bytes <= kNodeMaxBytes) {
      node = &n;
      master = it->first;
    } else {
      d.node_bytes -= node_cost(n);
      n.data.shrink_to_fit();  // a full node never grows again
      d.node_bytes += node_cost(n);
    }
  }
  if (!node) {
    node = &d.nodes[id];
    master = id;
  }
  // Same field names as the node's first entry?
  bool same = false;
  if (node->total > 0) {
    Reader r(node->data);
    (void)r.u8();
    (void)r.varint();
    (void)r.varint();
    auto nf = r.varint();
    if (nf && *nf == fv.size() / 2) {
      same = true;
      for (size_t i = 0; i < fv.size(); i += 2) {
        auto f = r.bytes();
        auto v = r.bytes();
        if (!f || !v || *f != fv[i]) {
          same = false;
          break;
        }
      }
    }
  }
  d.node_bytes -= node->total ? node_cost(*node) : 0;
  Writer w(node->data);
  w.u8(same ? kSameFields : 0);
  w.varint(id.ms - master.ms);
  w.varint(id.ms == master.ms ? id.seq - master.seq : id.seq);
  if (same) {
    for (size_t i = 1; i < fv.size(); i += 2) w.bytes(fv[i]);
  } else {
    w.varint(fv.size() / 2);
    for (auto s : fv) w.bytes(s);
  }
  ++node->total;
  ++node->live;
  d.node_bytes += node_cost(*node);
  node->last = id;
  ++d.length;
  ++d.entries_added;
  d.last_id = id;
}

void StreamValue::mark_deleted(std::map<StreamId, Node>::iterator it, const Decoded& dec) {
  Node& n = it->second;
  KEEL_ASSERT(!dec.deleted && n.live > 0);
  n.data[dec.flags_at] = static_cast<char>(static_cast<uint8_t>(n.data[dec.flags_at]) | kDeleted);
  --n.live;
  --d_->length;
}

bool StreamValue::erase(StreamId id) {
  if (!d_ || d_->nodes.empty()) return false;
  auto it = d_->nodes.upper_bound(id);
  if (it == d_->nodes.begin()) return false;
  --it;
  if (it->second.last < id) return false;
  std::vector<Decoded> dec;
  decode_node(it->first, it->second, dec);
  for (auto& e : dec) {
    if (e.id != id) continue;
    if (e.deleted) return false;
    mark_deleted(it, e);
    if (it->second.live == 0) {
      d_->node_bytes -= node_cost(it->second);
      d_->nodes.erase(it);
    }
    if (id > d_->max_deleted_id) d_->max_deleted_id = id;
    return true;
  }
  return false;
}

uint64_t StreamValue::trim_maxlen(uint64_t maxlen, bool approx, uint64_t limit) {
  if (!d_) return 0;
  uint64_t deleted = 0;
  auto& nodes = d_->nodes;
  while (!nodes.empty() && d_->length > maxlen) {
    auto it = nodes.begin();
    const uint64_t entries = it->second.live;
    if (limit && deleted + entries > limit) break;
    if (d_->length - entries >= maxlen) {
      d_->node_bytes -= node_cost(it->second);
      nodes.erase(it);
      d_->length -= entries;
      deleted += entries;
      continue;
    }
    if (approx) break;
    std::vector<Decoded> dec;
    decode_node(it->first, it->second, dec);
    for (auto& e : dec) {
      if (d_->length <= maxlen) break;
      if (e.deleted) continue;
      mark_deleted(it, e);
      ++deleted;
    }
    break;
  }
  return deleted;
}

uint64_t StreamValue::trim_minid(StreamId minid, bool approx, uint64_t limit) {
  if (!d_) return 0;
  uint64_t deleted = 0;
  auto& nodes = d_->nodes;
  while (!nodes.empty()) {
    auto it = nodes.begin();
    const uint64_t entries = it->second.live;
    if (limit && deleted + entries > limit) break;
    if (it->second.last < minid) {
      d_->node_bytes -= node_cost(it->second);
      nodes.erase(it);
      d_->length -= entries;
      deleted += entries;
      continue;
    }
    if (approx) break;
    std::vector<Decoded> dec;
    decode_node(it->first, it->second, dec);
    for (auto& e : dec) {
      if (e.id >= minid) break;
      if (e.deleted) continue;
      mark_deleted(it, e);
      ++deleted;
    }
    if (it->second.live == 0) {
      d_->node_bytes -= node_cost(it->second);
      nodes.erase(it);
    }
    break;
  }
  return deleted;
}

std::optional<StreamEntry> StreamValue::find(StreamId id) const {
  std::optional<StreamEntry> out;
  range(id, id, false, [&](const StreamEntry& e) {
    out = e;
    return false;
  });
  return out;
}

StreamGroup* StreamValue::group(std::string_view name) {
  if (!d_) return nullptr;
  auto it = d_->groups.find(name);
  return it == d_->groups.end() ? nullptr : &it->second;
}

const StreamGroup* StreamValue::group(std::string_view name) const {
  if (!d_) return nullptr;
  auto it = d_->groups.find(name);
  return it == d_->groups.end() ? nullptr : &it->second;
}

int64_t StreamValue::estimate_distance(StreamId id) const {
  const uint64_t added = entries_added();
  if (added == 0) return 0;
  const uint64_t length = size();
  const StreamId last = last_id();
  if (length == 0 && id <= last) return static_cast<int64_t>(added);
  if (id == last) return static_cast<int64_t>(added);
  if (id > last) return StreamGroup::kInvalidEntriesRead;
  const StreamId first = first_entry_id().value_or(StreamId{});
  const StreamId maxdel = max_deleted_id();
  if (maxdel.zero() || maxdel < first) {
    if (id < first) return static_cast<int64_t>(added - length);
    if (id == first) return static_cast<int64_t>(added - length + 1);
  }
  return StreamGroup::kInvalidEntriesRead;
}

bool StreamValue::range_has_tombstones(StreamId start, StreamId end) const {
  const StreamId maxdel = max_deleted_id();
  if (size() == 0 || maxdel.zero()) return false;
  const StreamId first = first_entry_id().value_or(StreamId{});
  if (first > maxdel) return false;
  return start <= maxdel && maxdel <= end;
}

namespace {
constexpr uint64_t kMapNodeBytes = 48;
}

uint64_t StreamValue::node_cost(const Node& n) {
  return kMapNodeBytes + sizeof(StreamId) + sizeof(Node) + n.data.capacity();
}

void StreamValue::recount() {
  if (!d_) return;
  d_->node_bytes = 0;
  for (auto& [id, n] : d_->nodes) d_->node_bytes += node_cost(n);
}

uint64_t StreamValue::heap_bytes() const {
  if (!d_) return 0;
  uint64_t total = sizeof(Data) + d_->node_bytes;
  for (auto& [name, g] : d_->groups) {
    total += kMapNodeBytes + sizeof(StreamGroup) + name.size();
    total +=
        g.pel.size() * (kMapNodeBytes + sizeof(StreamId) + sizeof(StreamNack) + 2 * kMapNodeBytes);
    for (auto& [cname, c] : g.consumers)
      total += kMapNodeBytes + sizeof(StreamConsumer) + cname.size();
  }
  return total;
}

void StreamValue::encode(Writer& w) const {
  static const Data kEmpty;
  const Data& d = d_ ? *d_ : kEmpty;
  w.varint(d.length);
  put_id(w, d.last_id);
  put_id(w, d.max_deleted_id);
  w.varint(d.entries_added);
  w.varint(d.nodes.size());
  for (auto& [master, n] : d.nodes) {
    put_id(w, master);
    w.varint(n.total);
    w.varint(n.live);
    w.bytes(n.data);
  }
  w.varint(d.groups.size());
  for (auto& [name, g] : d.groups) {
    w.bytes(name);
    put_id(w, g.last_id);
    w.svarint(g.entries_read);
    w.varint(g.consumers.size());
    for (auto& [cname, c] : g.consumers) {
      w.bytes(cname);
      w.svarint(c.seen_time_ms);
      w.svarint(c.active_time_ms);
    }
    w.varint(g.pel.size());
    for (auto& [id, nack] : g.pel) {
      put_id(w, id);
      w.bytes(nack.consumer);
      w.svarint(nack.delivery_time_ms);
      w.varint(nack.delivery_count);
    }
  }
}

Result<StreamValue> StreamValue::decode(Reader& r) {
  StreamValue out;
  Data& d = out.data();
  auto length = r.varint();
  if (!length) return corrupt("truncated header");
  auto last = get_id(r);
  auto maxdel = get_id(r);
  auto added = r.varint();
  auto nnodes = r.varint();
  if (!last || !maxdel || !added || !nnodes) return corrupt("truncated header");
  if (*nnodes > r.remaining() / 4) return corrupt("bad node count");
  d.last_id = *last;
  d.max_deleted_id = *maxdel;
  d.entries_added = *added;
  uint64_t live_total = 0;
  std::vector<Decoded> dec;
  std::optional<StreamId> prev_last;
  for (uint64_t i = 0; i < *nnodes; ++i) {
    auto master = get_id(r);
    auto total = r.varint();
    auto live = r.varint();
    auto bytes = r.bytes();
    if (!master || !total || !live || !bytes) return corrupt("truncated node");
    Node n;
    n.data.assign(*bytes);
    dec.clear();
    if (!decode_node(*master, n, dec) || dec.empty() || dec.size() != *total ||
        dec.front().id != *master)
      return corrupt(fmt::format("malformed node {}", master->str()));
    uint64_t live_here = 0;
    for (auto& e : dec) live_here += !e.deleted;
    if (live_here != *live || live_here == 0) return corrupt("node live count mismatch");
    if (prev_last && *master <= *prev_last) return corrupt("nodes out of order");
    if (dec.back().id > d.last_id) return corrupt("entry after the last id");
    n.total = static_cast<uint32_t>(*total);
    n.live = static_cast<uint32_t>(*live);
    n.last = dec.back().id;
    prev_last = n.last;
    live_total += live_here;
    d.node_bytes += node_cost(n);
    d.nodes.emplace(*master, std::move(n));
  }
  if (live_total != *length) return corrupt("length mismatch");
  d.length = *length;
  auto ngroups = r.varint();
  if (!ngroups || *ngroups > r.remaining()) return corrupt("bad group count");
  for (uint64_t i = 0; i < *ngroups; ++i) {
    auto name = r.bytes();
    auto glast = name ? get_id(r) : Result<StreamId>(std::unexpected(name.error()));
    auto read = r.svarint();
    auto ncons = r.varint();
    if (!name || !glast || !read || !ncons || *ncons > r.remaining() || *ncons > kMaxCount)
      return corrupt("truncated group");
    StreamGroup g;
    g.last_id = *glast;
    g.entries_read = *read;
    for (uint64_t j = 0; j < *ncons; ++j) {
      auto cname = r.bytes();
      auto seen = r.svarint();
      auto active = r.svarint();
      if (!cname || !seen || !active) return corrupt("truncated consumer");
      auto& c = g.consumers[std::string(*cname)];
      c.seen_time_ms = *seen;
      c.active_time_ms = *active;
    }
    auto npel = r.varint();
    if (!npel || *npel > r.remaining() || *npel > kMaxCount) return corrupt("bad pending count");
    for (uint64_t j = 0; j < *npel; ++j) {
      auto id = get_id(r);
      auto cname = r.bytes();
      auto time = r.svarint();
      auto count = r.varint();
      if (!id || !cname || !time || !count) return corrupt("truncated pending entry");
      auto c = g.consumers.find(*cname);
      if (c == g.consumers.end()) return corrupt("pending entry of an unknown consumer");
      if (!c->second.pending.insert(*id).second || g.pel.count(*id))
        return corrupt("duplicate pending entry");
      g.pel.emplace(*id, StreamNack{std::string(*cname), *time, *count});
    }
    if (!d.groups.emplace(std::string(*name), std::move(g)).second)
      return corrupt("duplicate group");
  }
  return out;
}

bool StreamValue::operator==(const StreamValue& o) const {
  std::string a, b;
  Writer wa(a), wb(b);
  encode(wa);
  o.encode(wb);
  return a == b;
}

}  // namespace keel::storage
