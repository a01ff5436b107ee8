// Base64 (RFC 4648): the standard alphabet with '=' padding, or the URL-safe alphabet without
// padding. One implementation for every door (tokens, signed requests, HTTP bodies).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace keel {

enum class Base64 {
  kStandard,  // A-Z a-z 0-9 + /, padded with '='
  kUrl,       // A-Z a-z 0-9 - _, no padding; decoding also refuses non-zero bits in the tail
};

std::string base64_encode(std::string_view bytes, Base64 kind = Base64::kStandard);
// nullopt: not base64 of that kind (a character outside the alphabet, a bad length or padding).
std::optional<std::string> base64_decode(std::string_view text, Base64 kind = Base64::kStandard);

}  // namespace keel
