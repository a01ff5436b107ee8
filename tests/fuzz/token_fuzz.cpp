// Tokens (security/token.h) from untrusted text: the parser, the verifier and attenuation must
// answer every input with a value or a clear error, bounded, never a crash. The first byte
// picks the path: even, the input is a token as a client sends it; odd, the rest is one block's
// JSON that is signed with the root key first, so the checks after the signatures (claims,
// rules compiled against the catalog, expiry, binding) run on fuzzed content too.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "security/token.h"

using namespace keel::security;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const CommandCatalog catalog({{"get", cat_bit(kCatRead), false},
                                       {"set", cat_bit(kCatWrite), false},
                                       {"config", cat_bit(kCatAdmin), true}});
  static const std::array<unsigned char, 32> seed = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
  static const TokenKey root = *TokenKey::ed25519_from_seed(seed);
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string cert(64, 'a');
  VerifyInput vi{1'800'000'000, cert, (data[0] & 2) != 0};
  std::string token;
  if (data[0] & 1) {
    // A block body signed by the root: "kt1." body "." sig, and a proof that may not match.
    auto sig = root.sign(std::string("keel-token-v1") + '\0' + '\0' + std::string(in));
    if (!sig) __builtin_trap();
    token = std::string(kTokenPrefix) + base64url_encode(in) + "." + base64url_encode(*sig) + "~" +
            base64url_encode(std::string(reinterpret_cast<const char*>(seed.data()), seed.size()));
  } else {
    token.assign(in);
  }
  auto g = verify_token(token, root, vi, catalog);
  if (!g && g.error().message.empty()) __builtin_trap();
  if (g && g->limits.size() != g->blocks) __builtin_trap();
  TokenBlock narrow;
  narrow.commands = {"-set"};
  auto a = attenuate_token(token, narrow, seed);
  if (!a && a.error().message.empty()) __builtin_trap();
  if (a) {
    auto ga = verify_token(*a, root, vi, catalog);
    // A verified parent stays verifiable after attenuation (and only narrower).
    if (g && !ga) __builtin_trap();
    if (ga && ga->blocks != (g ? g->blocks + 1 : ga->blocks)) __builtin_trap();
  }
  return 0;
}
