// libFuzzer target for transit keys (security/transit.h): arbitrary bytes as a stored key, a
// ciphertext and a signature must give a key, a refusal or an error, never a crash; nothing that
// was not made by the key decrypts, and what the key makes round-trips.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "security/transit.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace keel::security::transit;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto stored = decode(in)) (void)encode(*stored);
  static const Key aes = *create("fuzz", KeyType::kAes256Gcm, 0);
  static const Key ed = *create("fuzz-sign", KeyType::kEd25519, 0);
  auto pt = decrypt(aes, in, "ctx");
  KEEL_ASSERT(!pt.has_value());  // the fuzzer cannot forge AES-GCM
  (void)output_version(in);
  auto v = verify(ed, "message", in);
  KEEL_ASSERT(!v.has_value() || !*v);
  auto ct = encrypt(aes, in, "ctx");
  KEEL_ASSERT(ct.has_value() || size > kMaxInputBytes);
  if (ct) KEEL_ASSERT(*decrypt(aes, *ct, "ctx") == in);
  return 0;
}
