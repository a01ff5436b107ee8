#include "frontends/resp/parser.h"

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace keel::resp {
namespace {

// Redis's string2ll: an optional '-', digits, no leading zeros (except "0"), no '+', no spaces.
bool parse_ll(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  if (s[0] == '-' && (s.size() == 1 || s[1] == '0')) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'; }

}  // namespace

void Parser::reset() {
  expected_ = -1;
  cursor_ = 0;
  spans_.clear();
  inline_ = false;
  wanted_ = 0;
}

Parser::Result Parser::fail(std::string msg) {
  error_ = std::move(msg);
  reset();
  return Result::kError;
}

Parser::Result Parser::parse(std::string_view data) {
  consumed_ = 0;
  if (data.empty()) return Result::kNeedMore;
  if (expected_ < 0 && cursor_ == 0 && data[0] != '*') return parse_inline(data);

  if (expected_ < 0) {
    spans_.clear();
    inline_ = false;
    auto nl = data.find('\r');
    if (nl == std::string_view::npos || nl + 1 >= data.size()) {
      if (data.size() > limits_.max_inline_len) return fail("Protocol error: too big mbulk count string");
      return Result::kNeedMore;
    }
    int64_t n = 0;
    if (!parse_ll(data.substr(1, nl - 1), n) || n > static_cast<int64_t>(limits_.max_multibulk_len))
      return fail("Protocol error: invalid multibulk length");
    if (n <= 0) {
      consumed_ = nl + 2;
      reset();
      return Result::kEmpty;
    }
    expected_ = n;
    cursor_ = nl + 2;
    // Reserve lazily: a client announcing a million args gets memory only as they arrive.
    spans_.reserve(static_cast<size_t>(std::min<int64_t>(n, 1024)));
  }

  while (static_cast<int64_t>(spans_.size()) < expected_) {
    if (cursor_ >= data.size()) return Result::kNeedMore;
    auto rest = data.substr(cursor_);
    auto nl = rest.find('\r');
    if (nl == std::string_view::npos || nl + 1 >= rest.size()) {
      if (rest.size() > limits_.max_inline_len) return fail("Protocol error: too big bulk count string");
      return Result::kNeedMore;
    }
    if (rest[0] != '$') return fail(fmt::format("Protocol error: expected '$', got '{}'", rest[0]));
    int64_t len = 0;
    if (!parse_ll(rest.substr(1, nl - 1), len) || len < 0 ||
        static_cast<uint64_t>(len) > limits_.max_bulk_len)
      return fail("Protocol error: invalid bulk length");
    size_t start = cursor_ + nl + 2;
    size_t need = start + static_cast<size_t>(len) + 2;
    if (need > data.size()) {
      wanted_ = need;
      return Result::kNeedMore;
    }
    // Redis does not check the trailing CRLF's content; it skips two bytes. So do we.
    spans_.emplace_back(start, static_cast<size_t>(len));
    cursor_ = need;
  }
  consumed_ = cursor_;
  expected_ = -1;
  cursor_ = 0;
  wanted_ = 0;
  inline_ = false;
  return Result::kRequest;
}

Parser::Result Parser::parse_inline(std::string_view data) {
  auto nl = data.find('\n');
  if (nl == std::string_view::npos) {
    if (data.size() > limits_.max_inline_len) return fail("Protocol error: too big inline request");
    return Result::kNeedMore;
  }
  if (nl > limits_.max_inline_len) return fail("Protocol error: too big inline request");
  auto line = data.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  inline_args_.clear();
  if (!split_inline_args(line, inline_args_)) return fail("Protocol error: unbalanced quotes in request");
  consumed_ = nl + 1;
  if (inline_args_.empty()) {
    reset();
    return Result::kEmpty;
  }
  spans_.clear();
  inline_ = true;
  return Result::kRequest;
}

void Parser::args(std::string_view data, std::vector<std::string_view>& out) const {
  out.clear();
  if (inline_) {
    for (auto& a : inline_args_) out.emplace_back(a);
    return;
  }
  for (auto [off, len] : spans_) out.emplace_back(data.data() + off, len);
}

bool split_inline_args(std::string_view line, std::vector<std::string>& out) {
  size_t i = 0, n = line.size();
  while (true) {
    while (i < n && is_space(line[i])) ++i;
    if (i >= n) return true;
    std::string cur;
    bool inq = false, insq = false, done = false;
    while (!done) {
      if (inq) {
        if (i >= n) return false;
        char c = line[i];
        if (c == '\\' && i + 3 < n && line[i + 1] == 'x' && hex_digit(line[i + 2]) >= 0 &&
            hex_digit(line[i + 3]) >= 0) {
          cur.push_back(static_cast<char>(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3])));
          i += 3;
        } else if (c == '\\' && i + 1 < n) {
          ++i;
          char e = line[i];
          switch (e) {
            case 'n': cur.push_back('\n'); break;
            case 'r': cur.push_back('\r'); break;
            case 't': cur.push_back('\t'); break;
            case 'b': cur.push_back('\b'); break;
            case 'a': cur.push_back('\a'); break;
            default: cur.push_back(e); break;
          }
        } else if (c == '"') {
          // A closing quote must be followed by a space or the end.
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          done = true;
        } else {
          cur.push_back(c);
        }
      } else if (insq) {
        if (i >= n) return false;
        char c = line[i];
        if (c == '\\' && i + 1 < n && line[i + 1] == '\'') {
          ++i;
          cur.push_back('\'');
        } else if (c == '\'') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          done = true;
        } else {
          cur.push_back(c);
        }
      } else {
        if (i >= n) {
          done = true;
          break;
        }
        char c = line[i];
        if (is_space(c)) {
          done = true;
        } else if (c == '"') {
          inq = true;
        } else if (c == '\'') {
          insq = true;
        } else {
          cur.push_back(c);
        }
      }
      if (i < n) ++i;
    }
    out.push_back(std::move(cur));
  }
}

}  // namespace keel::resp
