#include "frontends/http/resp_reply.h"

#include <charconv>

namespace keel::http {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

Resp2 parse_resp2(std::string_view s) {
  Resp2 r;
  if (s.size() < 3) return r;
  r.kind = s[0];
  size_t nl = s.find("\r\n");
  std::string_view head = s.substr(1, nl == std::string_view::npos ? s.size() - 1 : nl - 1);
  if (r.kind == '+' || r.kind == '-') {
    r.text = head;
  } else if (r.kind == ':') {
    std::from_chars(head.data(), head.data() + head.size(), r.number);
  } else if (r.kind == '$') {
    int64_t len = -1;
    std::from_chars(head.data(), head.data() + head.size(), len);
    if (len < 0) r.is_null = true;
    else r.text = s.substr(nl + 2, static_cast<size_t>(len));
  } else if (r.kind == '*') {
    int64_t n = 0;
    std::from_chars(head.data(), head.data() + head.size(), n);
    size_t pos = nl + 2;
    for (int64_t i = 0; i < n && pos < s.size(); ++i) {
      size_t e = s.find("\r\n", pos);
      int64_t len = -1;
      std::from_chars(s.data() + pos + 1, s.data() + e, len);
      if (len < 0) {
        r.items.emplace_back();
        pos = e + 2;
        continue;
      }
      r.items.emplace_back(s.substr(e + 2, static_cast<size_t>(len)));
      pos = e + 2 + static_cast<size_t>(len) + 2;
    }
  }
  return r;
}

namespace {
bool parse_node(std::string_view s, size_t& pos, RespNode& out, int depth) {
  if (depth > 32 || pos >= s.size()) return false;
  size_t nl = s.find("\r\n", pos);
  if (nl == std::string_view::npos) return false;
  out.kind = s[pos];
  std::string_view head = s.substr(pos + 1, nl - pos - 1);
  pos = nl + 2;
  switch (out.kind) {
    case '+':
    case '-':
      out.text = head;
      return true;
    case ':':
      return std::from_chars(head.data(), head.data() + head.size(), out.number).ec == std::errc();
    case '$': {
      int64_t len = -1;
      if (std::from_chars(head.data(), head.data() + head.size(), len).ec != std::errc()) return false;
      if (len < 0) {
        out.is_null = true;
        return true;
      }
      if (pos + static_cast<size_t>(len) + 2 > s.size()) return false;
      out.text = s.substr(pos, static_cast<size_t>(len));
      pos += static_cast<size_t>(len) + 2;
      return true;
    }
    case '*': {
      int64_t n = -1;
      if (std::from_chars(head.data(), head.data() + head.size(), n).ec != std::errc()) return false;
      if (n < 0) {
        out.is_null = true;
        return true;
      }
      for (int64_t i = 0; i < n; ++i) {
        out.items.emplace_back();
        if (!parse_node(s, pos, out.items.back(), depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}
}  // namespace

RespNode parse_resp2_tree(std::string_view s) {
  RespNode r;
  size_t pos = 0;
  if (!parse_node(s, pos, r, 0)) return RespNode{};
  return r;
}

HttpError resp_error_to_http(std::string_view err) {
  auto after = [&](size_t n) { return std::string(err.substr(std::min(n, err.size()))); };
  if (err.starts_with("TIMEOUT ")) return {504, "DEADLINE_EXCEEDED", after(8)};
  if (err.starts_with("TRYAGAIN ") || err.starts_with("CLUSTERDOWN "))
    return {503, "UNAVAILABLE", after(err.find(' ') + 1)};
  if (err.starts_with("WRONGTYPE ")) return {409, "WRONG_TYPE", after(10)};
  if (err.starts_with("OOM ")) return {507, "OUT_OF_MEMORY", after(4)};
  // The persistent engine refuses writes: the disk is full or failing (docs/operations.md).
  if (err.starts_with("MISCONF ")) return {507, "DISK_ERROR", after(8)};
  return {500, "INTERNAL", std::string(err)};
}

}  // namespace keel::http
