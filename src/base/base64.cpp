#include "base/base64.h"

namespace keel {
namespace {
constexpr std::string_view kStd = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
}  // namespace

std::string base64_encode(std::string_view in, Base64 kind) {
  const std::string_view a = kind == Base64::kUrl ? kUrl : kStd;
  const bool pad = kind == Base64::kStandard;
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  auto byte = [&](size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(in[k])); };
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    unsigned v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int s = 18; s >= 0; s -= 6) out.push_back(a[(v >> s) & 63]);
  }
  const size_t rest = in.size() - i;
  if (rest == 0) return out;
  unsigned v = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0u);
  out.push_back(a[(v >> 18) & 63]);
  out.push_back(a[(v >> 12) & 63]);
  if (rest == 2) out.push_back(a[(v >> 6) & 63]);
  if (pad) out.append(3 - rest, '=');
  return out;
}

std::optional<std::string> base64_decode(std::string_view in, Base64 kind) {
  const std::string_view a = kind == Base64::kUrl ? kUrl : kStd;
  if (kind == Base64::kStandard) {
    if (in.size() % 4 != 0) return std::nullopt;
    in.remove_suffix(in.ends_with("==") ? 2 : in.ends_with("=") ? 1 : 0);
  } else if (in.size() % 4 == 1) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(in.size() * 3 / 4);
  unsigned v = 0;
  int bits = 0;
  for (char c : in) {
    size_t d = a.find(c);
    if (d == std::string_view::npos) return std::nullopt;
    v = (v << 6) | static_cast<unsigned>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((v >> bits) & 0xff));
    }
  }
  if (kind == Base64::kUrl && bits > 0 && (v & ((1u << bits) - 1)) != 0) return std::nullopt;  // non-canonical tail
  return out;
}

}  // namespace keel
