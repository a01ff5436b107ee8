#include "frontends/resp/command.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "base/glob.h"
#include "base/slots.h"

namespace keel::resp {

uint32_t CmdCtx::compute_partition(std::string_view key) const { return key_partition(key, partitions); }

namespace {

struct Table {
  std::vector<CommandSpec> specs;
  std::unordered_map<std::string, const CommandSpec*> by_name;
  std::vector<const CommandSpec*> sorted;
  Table() {
    register_server_commands(specs);
    register_string_commands(specs);
    register_key_commands(specs);
    register_hash_commands(specs);
    register_list_commands(specs);
    register_set_commands(specs);
    register_zset_commands(specs);
    register_stream_commands(specs);
    register_bitmap_commands(specs);
    register_cluster_commands(specs);
    register_cache_commands(specs);
    register_route_commands(specs);
    register_transit_commands(specs);
    register_secret_commands(specs);
    register_pubsub_commands(specs);
    register_acl_commands(specs);
    for (auto& s : specs) {
      by_name.emplace(std::string(s.name), &s);
      sorted.push_back(&s);
    }
    std::sort(sorted.begin(), sorted.end(), [](auto a, auto b) { return a->name < b->name; });
    for (size_t i = 0; i < sorted.size(); ++i) const_cast<CommandSpec*>(sorted[i])->index = static_cast<uint16_t>(i);
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

const CommandSpec* find_command(std::string_view name) {
  char buf[64];
  if (name.size() >= sizeof buf) return nullptr;
  for (size_t i = 0; i < name.size(); ++i)
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  auto& t = table();
  auto it = t.by_name.find(std::string(buf, name.size()));
  return it == t.by_name.end() ? nullptr : it->second;
}

const std::vector<const CommandSpec*>& all_commands() { return table().sorted; }

namespace {
// XREAD / XREADGROUP: the index after STREAMS, and how many keys follow (0, 0 if none).
std::pair<size_t, size_t> streams_range(Args argv) {
  for (size_t i = 1; i < argv.size(); ++i) {
    if (iequals(argv[i], "streams")) {
      const size_t n = argv.size() - i - 1;
      if (n == 0 || n % 2) return {0, 0};
      return {i + 1, n / 2};
    }
  }
  return {0, 0};
}
}  // namespace

size_t routing_key_index(const CommandSpec& c, Args argv) {
  if (c.streams_keys) return streams_range(argv).first;
  // A container command without its key (XGROUP HELP): the handler answers it.
  return static_cast<size_t>(c.first_key) < argv.size() ? static_cast<size_t>(c.first_key) : 0;
}

std::vector<size_t> command_keys(const CommandSpec& c, Args argv) {
  std::vector<size_t> keys;
  if (c.streams_keys) {
    auto [at, n] = streams_range(argv);
    for (size_t i = 0; i < n; ++i) keys.push_back(at + i);
    return keys;
  }
  if (c.first_key <= 0) return keys;
  if (c.numkeys_index > 0) {
    // An unreadable count leaves the first position only: the handler replies the error.
    int64_t n = 0;
    const size_t at = static_cast<size_t>(c.numkeys_index);
    // Keys before the count (ZUNIONSTORE's destination).
    for (size_t i = static_cast<size_t>(c.first_key); i < at && i < argv.size(); ++i) keys.push_back(i);
    if (at >= argv.size() || !parse_int64(argv[at], n) || n < 1) n = 1;
    for (size_t i = at + 1; i < argv.size() && i <= at + static_cast<uint64_t>(n); ++i)
      keys.push_back(i);
    return keys;
  }
  int last = c.last_key < 0 ? static_cast<int>(argv.size()) + c.last_key : c.last_key;
  int step = c.key_step > 0 ? c.key_step : 1;
  for (int i = c.first_key; i <= last && i < static_cast<int>(argv.size()); i += step)
    keys.push_back(static_cast<size_t>(i));
  return keys;
}

bool parse_int64(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  if (s[0] == '-' && (s.size() == 1 || s[1] == '0')) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_long_double(std::string_view s, long double& out) {
  if (s.empty() || s.size() > 5000) return false;
  if (std::isspace(static_cast<unsigned char>(s[0]))) return false;
  std::string tmp(s);
  char* end = nullptr;
  errno = 0;
  long double v = std::strtold(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size() || errno == ERANGE || std::isnan(v)) return false;
  out = v;
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string to_lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool glob_match(std::string_view pat, std::string_view str, bool nocase) {
  return keel::glob_match(pat, str, nocase);
}

}  // namespace keel::resp
