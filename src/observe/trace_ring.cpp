#include "observe/trace_ring.h"

#include <algorithm>
#include <set>

namespace keel::observe {

TraceRing::TraceRing(TraceRingOptions o) : opt_(o) {}

size_t TraceRing::span_bytes(const SpanData& s) {
  size_t n = 128 + s.trace_state.size() + s.name.size() + s.status_message.size();
  auto attrs = [&](const std::vector<Attribute>& as) {
    for (auto& a : as) {
      n += 32 + a.key.size();
      if (auto* v = std::get_if<std::string>(&a.value)) n += v->size();
    }
  };
  attrs(s.attributes);
  for (auto& e : s.events) {
    n += 48 + e.name.size();
    attrs(e.attributes);
  }
  return n;
}

void TraceRing::add(const SpanData& s) {
  if (opt_.max_spans == 0) return;
  const size_t b = span_bytes(s);
  if (auto it = kept_.find(s.trace_id); it != kept_.end()) {
    append(s.trace_id, it->second, s, b);
    return;
  }
  if (opt_.staged_spans == 0) return;
  staged_.emplace_back(s, b);
  while (staged_.size() > opt_.staged_spans) staged_.pop_front();
}

void TraceRing::append(const TraceId& id, Kept& k, SpanData s, size_t bytes) {
  // A span that cannot fit beside its own trace's spans is dropped (the trace stays as it is).
  if (k.spans.size() + 1 > opt_.max_spans || k.bytes + bytes > opt_.max_bytes) {
    ++dropped_;
    return;
  }
  k.spans.push_back(std::move(s));
  k.bytes += bytes;
  spans_ += 1;
  bytes_ += bytes;
  evict_for(id);
}

void TraceRing::evict_for(const TraceId& keep_id) {
  // Oldest first, never the trace being added to; an empty kept trace counts as one span so
  // that the number of traces is bounded too.
  auto over = [&] {
    return std::max(spans_, kept_.size()) > opt_.max_spans || bytes_ > opt_.max_bytes;
  };
  for (auto it = by_order_.begin(); over() && it != by_order_.end();) {
    if (it->second == keep_id) {
      ++it;
      continue;
    }
    auto k = kept_.find(it->second);
    spans_ -= k->second.spans.size();
    bytes_ -= k->second.bytes;
    kept_.erase(k);
    it = by_order_.erase(it);
    ++evicted_;
  }
}

void TraceRing::keep(const TraceId& id) {
  if (opt_.max_spans == 0) return;
  auto [it, fresh] = kept_.try_emplace(id);
  Kept& k = it->second;
  if (!fresh) by_order_.erase(k.order);
  k.order = next_order_++;
  by_order_.emplace(k.order, id);
  if (fresh) {
    std::deque<std::pair<SpanData, size_t>> rest;
    std::vector<std::pair<SpanData, size_t>> mine;
    for (auto& e : staged_) {
      if (e.first.trace_id == id)
        mine.push_back(std::move(e));
      else
        rest.push_back(std::move(e));
    }
    staged_ = std::move(rest);
    for (auto& [s, b] : mine) append(id, k, std::move(s), b);
  }
  evict_for(id);
}

std::vector<SpanData> TraceRing::spans(const TraceId& id) const {
  std::vector<SpanData> out;
  if (auto it = kept_.find(id); it != kept_.end()) out = it->second.spans;
  for (auto& [s, b] : staged_)
    if (s.trace_id == id) out.push_back(s);
  return out;
}

std::vector<TraceSummary> TraceRing::kept(size_t limit) const {
  std::vector<TraceSummary> out;
  for (auto it = by_order_.rbegin(); it != by_order_.rend() && out.size() < limit; ++it) {
    const Kept& k = kept_.at(it->second);
    TraceSummary t;
    t.trace_id = it->second;
    t.spans = k.spans.size();
    // Its root here: the earliest span whose parent is not held here (the request that came
    // in, rather than what it caused).
    std::set<SpanId> held;
    for (auto& s : k.spans) held.insert(s.span_id);
    const SpanData* root = nullptr;
    for (auto& s : k.spans) {
      const bool local_root = is_zero(s.parent_span_id) || !held.contains(s.parent_span_id);
      if (local_root && (!root || s.start_unix_ns < root->start_unix_ns)) root = &s;
      t.start_unix_ns =
          t.start_unix_ns ? std::min(t.start_unix_ns, s.start_unix_ns) : s.start_unix_ns;
      t.end_unix_ns = std::max(t.end_unix_ns, s.end_unix_ns);
      t.error |= s.status_code == kStatusError;
    }
    if (root) t.root_name = root->name;
    out.push_back(std::move(t));
  }
  return out;
}

TraceRingStats TraceRing::stats() const {
  return {kept_.size(), spans_, bytes_, staged_.size(), evicted_, dropped_};
}

}  // namespace keel::observe
