// Glob matching with Redis's syntax (* ? [abc] [^a] [a-z] \\x), used for KEYS/SCAN patterns,
// pub/sub patterns and ACL key and channel patterns.
#pragma once

#include <string_view>

namespace keel {

// Iterative with single-star backtracking: linear in practice, never exponential on
// adversarial patterns.
bool glob_match(std::string_view pattern, std::string_view str, bool nocase = false);

}  // namespace keel
