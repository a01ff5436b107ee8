#include "gateway/matcher.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"

namespace keel::gateway {

namespace {

// Rank of what a template has at position i (rule 1): higher is more specific.
int rank_at(const Template& t, size_t i) {
  if (i < t.segs.size()) {
    switch (t.segs[i].kind) {
      case SegKind::kLiteral:
        return 4;
      case SegKind::kParam:
        return 3;
      case SegKind::kRest:
        return 1;
    }
  }
  if (t.has_rest()) return 1;  // a catch-all covers every later position
  return 2;                    // the template has ended
}

size_t exact_headers(const RouteSpec& r) {
  size_t n = 0;
  for (auto& h : r.headers) n += h.presence ? 0 : 1;
  return n;
}

// Rules 2-5 (entries at the same trie node).
bool leaf_before(const Entry& a, uint32_t ia, const Entry& b, uint32_t ib) {
  bool ah = !a.route.host.empty(), bh = !b.route.host.empty();
  if (ah != bh) return ah;
  if (a.route.headers.size() != b.route.headers.size()) return a.route.headers.size() > b.route.headers.size();
  if (size_t ea = exact_headers(a.route), eb = exact_headers(b.route); ea != eb) return ea > eb;
  bool am = a.route.method != "*", bm = b.route.method != "*";
  if (am != bm) return am;
  if (a.order != b.order) return a.order < b.order;
  if (a.route.service != b.route.service) return a.route.service < b.route.service;
  return ia < ib;
}

}  // namespace

std::optional<std::string_view> HeaderList::get(std::string_view lower_name) const {
  for (auto& [k, v] : h_) {
    if (k.size() != lower_name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < k.size() && same; ++i) {
      char c = k[i] >= 'A' && k[i] <= 'Z' ? static_cast<char>(k[i] + 32) : k[i];
      same = c == lower_name[i];
    }
    if (same) return std::string_view(v);
  }
  return std::nullopt;
}

const HeaderLookup& no_headers() {
  static const HeaderList none;
  return none;
}

bool headers_accept(const RouteSpec& r, const HeaderLookup& headers) {
  for (auto& h : r.headers) {
    auto v = headers.get(h.name);
    if (!v || (!h.presence && *v != h.value)) return false;
  }
  return true;
}

bool higher_priority(const Entry& a, uint32_t ia, const Entry& b, uint32_t ib) {
  const auto& ta = a.route.path;
  const auto& tb = b.route.path;
  size_t n = std::max(ta.segs.size(), tb.segs.size());
  for (size_t i = 0; i < n; ++i) {
    int ra = rank_at(ta, i), rb = rank_at(tb, i);
    if (ra != rb) return ra > rb;
    if (ra == 1) break;  // both catch-alls from here on
  }
  return leaf_before(a, ia, b, ib);
}

bool route_accepts(const RouteSpec& r, std::string_view method, std::string_view host,
                   const std::vector<std::string_view>& segs, const HeaderLookup& headers) {
  if (r.method != "*" && r.method != method) return false;
  if (!r.host.empty() && r.host != host) return false;
  if (!headers_accept(r, headers)) return false;
  const auto& ts = r.path.segs;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].kind == SegKind::kRest) return true;
    if (i >= segs.size()) return false;
    if (ts[i].kind == SegKind::kLiteral && ts[i].text != segs[i]) return false;
  }
  return ts.size() == segs.size();
}

std::string normalize_host(std::string_view h) {
  if (h.starts_with('[')) {
    auto close = h.find(']');
    h = close == std::string_view::npos ? h : h.substr(0, close + 1);
  } else if (auto colon = h.rfind(':'); colon != std::string_view::npos) {
    h = h.substr(0, colon);
  }
  std::string out;
  out.reserve(h.size());
  for (char c : h) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  return out;
}

std::vector<std::pair<std::string, std::string>> captures(const RouteSpec& r,
                                                          const std::vector<std::string_view>& segs) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto& ts = r.path.segs;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].kind == SegKind::kLiteral || ts[i].text.empty()) continue;
    if (ts[i].kind == SegKind::kParam) {
      KEEL_ASSERT(i < segs.size());
      out.emplace_back(ts[i].text, std::string(segs[i]));
    } else {
      std::string rest;
      for (size_t j = i; j < segs.size(); ++j) {
        if (j > i) rest.push_back('/');
        rest += segs[j];
      }
      out.emplace_back(ts[i].text, std::move(rest));
    }
  }
  return out;
}

Result<Matcher> Matcher::build(std::vector<Entry> entries, const Limits& limits) {
  if (entries.size() > limits.max_routes)
    return make_error(Errc::kLimitExceeded, fmt::format("{} routes exceed the limit of {}", entries.size(),
                                                        limits.max_routes));
  Matcher m;
  m.limits_ = limits;
  m.entries_ = std::move(entries);
  m.nodes_.emplace_back();
  for (uint32_t i = 0; i < m.entries_.size(); ++i) {
    uint32_t at = 0;
    bool rest = false;
    for (const auto& s : m.entries_[i].route.path.segs) {
      if (s.kind == SegKind::kRest) {
        m.nodes_[at].rest.push_back(i);
        rest = true;
        break;
      }
      uint32_t next;
      if (s.kind == SegKind::kParam) {
        next = m.nodes_[at].param;
        if (next == kNone) {
          next = static_cast<uint32_t>(m.nodes_.size());
          m.nodes_[at].param = next;
          m.nodes_.emplace_back();
        }
      } else {
        auto it = m.nodes_[at].literal.find(s.text);
        if (it == m.nodes_[at].literal.end()) {
          next = static_cast<uint32_t>(m.nodes_.size());
          m.nodes_[at].literal.emplace(s.text, next);
          m.nodes_.emplace_back();  // invalidates references into nodes_: none held
        } else {
          next = it->second;
        }
      }
      at = next;
    }
    if (!rest) m.nodes_[at].terminal.push_back(i);
  }
  auto by_leaf = [&m](uint32_t a, uint32_t b) { return leaf_before(m.entries_[a], a, m.entries_[b], b); };
  for (auto& n : m.nodes_) {
    std::sort(n.terminal.begin(), n.terminal.end(), by_leaf);
    std::sort(n.rest.begin(), n.rest.end(), by_leaf);
  }
  return m;
}

std::optional<uint32_t> Matcher::pick(const std::vector<uint32_t>& list, const Query& q) const {
  for (uint32_t i : list) {
    const auto& r = entries_[i].route;
    if ((r.method == "*" || r.method == q.method) && (r.host.empty() || r.host == q.host) &&
        (r.headers.empty() || headers_accept(r, q.headers)))
      return i;
  }
  return std::nullopt;
}

std::optional<uint32_t> Matcher::walk(uint32_t node, size_t i, const Query& q) const {
  const Node& n = nodes_[node];
  if (i == q.segs.size()) {
    if (auto e = pick(n.terminal, q)) return e;
    return pick(n.rest, q);
  }
  if (!n.literal.empty()) {
    if (auto it = n.literal.find(q.segs[i]); it != n.literal.end())
      if (auto e = walk(it->second, i + 1, q)) return e;
  }
  if (n.param != kNone)
    if (auto e = walk(n.param, i + 1, q)) return e;
  return pick(n.rest, q);
}

std::optional<uint32_t> Matcher::find(std::string_view method, std::string_view host,
                                      const std::vector<std::string_view>& segs, const HeaderLookup& headers) const {
  if (nodes_.empty()) return std::nullopt;
  return walk(0, 0, Query{method, host, segs, headers});
}

std::optional<Match> Matcher::match(std::string_view method, std::string_view host, std::string_view path,
                                    const HeaderLookup& headers) const {
  auto segs = split_path(path, limits_);
  if (!segs) return std::nullopt;
  auto h = normalize_host(host);
  auto e = find(method, h, *segs, headers);
  if (!e) return std::nullopt;
  return Match{*e, captures(entries_[*e].route, *segs)};
}

}  // namespace keel::gateway
