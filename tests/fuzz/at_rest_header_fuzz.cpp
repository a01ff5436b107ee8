// libFuzzer target for the at-rest ciphertext header parser (security/at_rest_codec.h):
// arbitrary bytes must parse to a view inside the input or an error, never crash; whatever
// parses must fail authentication under a fixed key (nothing unauthenticated is ever opened).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "security/at_rest_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace keel::security::at_rest;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto v = parse_sealed(in);
  auto ver = sealed_version(in);
  KEEL_ASSERT(v.has_value() == ver.has_value());
  if (!v) return 0;
  KEEL_ASSERT(v->version == *ver);
  KEEL_ASSERT(v->nonce.size() == kNonceBytes && v->tag.size() == kTagBytes);
  KEEL_ASSERT(v->ciphertext.size() + kSealOverheadBytes == size);
  KEEL_ASSERT(v->nonce.data() >= in.data() && v->tag.data() + v->tag.size() == in.data() + in.size());
  DataKey k;
  k.version = v->version;
  k.bytes.fill(0x5a);
  std::string plain = "x";
  auto opened = open_sealed(k, *v, "key", "header", plain);
  KEEL_ASSERT(!opened.has_value() && plain.empty());
  // And what seal() writes parses back to the same version.
  std::string out;
  KEEL_ASSERT(seal(k, "key", "header", v->ciphertext, out).has_value());
  auto again = parse_sealed(out);
  KEEL_ASSERT(again && again->version == v->version && again->ciphertext.size() == v->ciphertext.size());
  return 0;
}
