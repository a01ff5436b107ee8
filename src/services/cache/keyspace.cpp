#include "services/cache/keyspace.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "base/slots.h"

namespace keel::cache {

std::string name_prefix(std::string_view name) {
  std::string k;
  k.reserve(name.size() + 4);
  k.push_back(kServiceKeyMark);
  k.append("c:");
  k.append(name);
  k.push_back(':');
  return k;
}

std::string generation_prefix(std::string_view name, uint64_t generation) {
  std::string k = name_prefix(name);
  k += fmt::format("{:016x}", generation);
  k.push_back('\0');
  return k;
}

std::string entry_key(std::string_view name, uint64_t generation, std::string_view user_key) {
  std::string k = generation_prefix(name, generation);
  k.append(user_key);
  return k;
}

std::optional<EntryKey> parse_entry_key(std::string_view key) {
  if (key.size() < 4 || key[0] != kServiceKeyMark || key.substr(1, 2) != "c:") return std::nullopt;
  auto sep = key.find('\0', 3);
  if (sep == std::string_view::npos) return std::nullopt;
  auto ns = key.substr(3, sep - 3);  // <name>:<16 hex>
  if (ns.size() < 18 || ns[ns.size() - 17] != ':') return std::nullopt;
  EntryKey e;
  e.name = ns.substr(0, ns.size() - 17);
  auto hex = ns.substr(ns.size() - 16);
  for (char c : hex) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    e.generation = e.generation * 16 + static_cast<uint64_t>(d);
  }
  if (e.name.empty()) return std::nullopt;
  e.user_key = key.substr(sep + 1);
  return e;
}

namespace {
void put_be(std::string& s, size_t at, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    s[at + static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}
uint64_t get_be(std::string_view s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}
}  // namespace

std::string encode_entry(std::string_view value, int64_t access_ms, uint32_t hits) {
  std::string s(kEntryHeaderBytes, '\0');
  s[0] = '\x01';
  put_be(s, 1, static_cast<uint64_t>(access_ms), 8);
  put_be(s, 9, hits, 4);
  s.append(value);
  return s;
}

std::optional<Entry> decode_entry(std::string_view stored) {
  if (stored.size() < kEntryHeaderBytes || stored[0] != '\x01') return std::nullopt;
  Entry e;
  e.access_ms = static_cast<int64_t>(get_be(stored, 1, 8));
  e.hits = static_cast<uint32_t>(get_be(stored, 9, 4));
  e.value = stored.substr(kEntryHeaderBytes);
  return e;
}

bool touch_entry(std::string& stored, int64_t access_ms) {
  auto e = decode_entry(stored);
  if (!e) return false;
  uint32_t hits = e->hits == UINT32_MAX ? e->hits : e->hits + 1;
  put_be(stored, 1, static_cast<uint64_t>(access_ms), 8);
  put_be(stored, 9, hits, 4);
  return true;
}

std::optional<std::vector<size_t>> choose_victims(const std::vector<Candidate>& c, Eviction policy,
                                                  uint64_t max_entries, uint64_t max_bytes,
                                                  uint64_t incoming_bytes) {
  if (max_bytes != 0 && incoming_bytes > max_bytes) return std::nullopt;
  uint64_t count = c.size() + 1;
  uint64_t bytes = incoming_bytes;
  for (auto& x : c) bytes += x.bytes;
  auto over = [&] {
    return (max_entries != 0 && count > max_entries) || (max_bytes != 0 && bytes > max_bytes);
  };
  std::vector<size_t> out;
  if (!over()) return out;
  if (policy == Eviction::kNone) return std::nullopt;
  std::vector<size_t> order(c.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = c[a];
    const auto& y = c[b];
    if (policy == Eviction::kLfu && x.hits != y.hits) return x.hits < y.hits;
    if (x.access_ms != y.access_ms) return x.access_ms < y.access_ms;
    return x.key < y.key;
  });
  for (size_t i : order) {
    if (!over()) break;
    out.push_back(i);
    --count;
    bytes -= c[i].bytes;
  }
  return out;
}

}  // namespace keel::cache
