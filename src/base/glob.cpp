#include "base/glob.h"

#include <cctype>
#include <utility>

namespace keel {

namespace {

// Matches one pattern element at p against c. Advances p past the element. Returns whether it
// matched; sets `ok=false` on a malformed class (treated literally like Redis does).
bool match_one(std::string_view pat, size_t& p, char c, bool nocase) {
  auto eq = [nocase](char a, char b) {
    return nocase ? std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b))
                  : a == b;
  };
  char pc = pat[p];
  if (pc == '?') {
    ++p;
    return true;
  }
  if (pc == '\\' && p + 1 < pat.size()) {
    p += 2;
    return eq(pat[p - 1], c);
  }
  if (pc == '[') {
    size_t q = p + 1;
    bool neg = false;
    if (q < pat.size() && pat[q] == '^') {
      neg = true;
      ++q;
    }
    bool matched = false;
    while (q < pat.size() && pat[q] != ']') {
      if (pat[q] == '\\' && q + 1 < pat.size()) {
        ++q;
        if (eq(pat[q], c)) matched = true;
        ++q;
      } else if (q + 2 < pat.size() && pat[q + 1] == '-') {
        char lo = pat[q], hi = pat[q + 2];
        if (lo > hi) std::swap(lo, hi);
        char cc = c;
        if (nocase) {
          lo = static_cast<char>(std::tolower(static_cast<unsigned char>(lo)));
          hi = static_cast<char>(std::tolower(static_cast<unsigned char>(hi)));
          cc = static_cast<char>(std::tolower(static_cast<unsigned char>(cc)));
        }
        if (cc >= lo && cc <= hi) matched = true;
        q += 3;
      } else {
        if (eq(pat[q], c)) matched = true;
        ++q;
      }
    }
    p = q < pat.size() ? q + 1 : q;  // past ']' (an unterminated class ends the pattern)
    return neg ? !matched : matched;
  }
  ++p;
  return eq(pc, c);
}

}  // namespace

// Glob matching with Redis's syntax (* ? [abc] [^a] [a-z] \x). Iterative with single-star
// backtracking: linear in practice, never exponential on adversarial patterns.
bool glob_match(std::string_view pat, std::string_view str, bool nocase) {
  size_t p = 0, s = 0;
  size_t star_p = std::string_view::npos, star_s = 0;
  while (s < str.size()) {
    if (p < pat.size() && pat[p] == '*') {
      while (p < pat.size() && pat[p] == '*') ++p;
      if (p == pat.size()) return true;
      star_p = p;
      star_s = s;
      continue;
    }
    if (p < pat.size()) {
      size_t np = p;
      if (match_one(pat, np, str[s], nocase)) {
        p = np;
        ++s;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    s = ++star_s;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

}  // namespace keel
