#include "frontends/resp/reply.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace keel::resp {

void Reply::header(char c, int64_t n) {
  char buf[24];
  out_.push_back(c);
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out_.append(buf, p);
  out_.append("\r\n", 2);
}

void Reply::simple(std::string_view s) {
  out_.push_back('+');
  out_.append(s);
  out_.append("\r\n", 2);
}

void Reply::error(std::string_view msg) {
  out_.push_back('-');
  // An error line cannot contain CR or LF: replace them, as Redis does.
  for (char c : msg) out_.push_back((c == '\r' || c == '\n') ? ' ' : c);
  out_.append("\r\n", 2);
}

void Reply::integer(int64_t v) { header(':', v); }

void Reply::bulk(std::string_view s) {
  header('$', static_cast<int64_t>(s.size()));
  out_.append(s);
  out_.append("\r\n", 2);
}

void Reply::null() { out_.append(proto_ >= 3 ? "_\r\n" : "$-1\r\n"); }
void Reply::null_array() { out_.append(proto_ >= 3 ? "_\r\n" : "*-1\r\n"); }
void Reply::array(size_t n) { header('*', static_cast<int64_t>(n)); }
void Reply::map(size_t n) {
  if (proto_ >= 3) header('%', static_cast<int64_t>(n));
  else header('*', static_cast<int64_t>(2 * n));
}
void Reply::set(size_t n) { header(proto_ >= 3 ? '~' : '*', static_cast<int64_t>(n)); }

void Reply::dbl(double v) {
  std::string s;
  if (std::isinf(v)) s = v > 0 ? "inf" : "-inf";
  else if (std::isnan(v)) s = "nan";
  else s = format_double(v);
  if (proto_ >= 3) {
    out_.push_back(',');
    out_.append(s);
    out_.append("\r\n", 2);
  } else {
    bulk(s);
  }
}

void Reply::boolean(bool v) {
  if (proto_ >= 3) out_.append(v ? "#t\r\n" : "#f\r\n");
  else integer(v ? 1 : 0);
}

void Reply::verbatim(std::string_view s) {
  if (proto_ >= 3) {
    header('=', static_cast<int64_t>(s.size() + 4));
    out_.append("txt:");
    out_.append(s);
    out_.append("\r\n", 2);
  } else {
    bulk(s);
  }
}

std::string format_double(long double v) {
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%.17Lg", v);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  // Redis trims trailing zeros after a decimal point (and the point itself) in INCRBYFLOAT.
  if (s.find('.') != std::string::npos && s.find('e') == std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

}  // namespace keel::resp
