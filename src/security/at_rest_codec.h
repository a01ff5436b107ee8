// Encryption at rest: the sealed form of one stored value (AES-256-GCM, OpenSSL EVP).
//
//   sealed = u32be key_version ++ nonce[12] ++ ciphertext ++ tag[16]      (32 bytes + plaintext)
//
// The key version names the data key (keyring.h) that sealed it; the nonce is unique per value
// (a random start per thread, counted up: see at_rest_codec.cpp);
// the tag authenticates the ciphertext, the key version and the caller's associated data
// (`aad`: the storage engine passes the stored key and the value's plaintext header, so a
// ciphertext moved to another key, or given another expiry or type, fails authentication).
// `parse_sealed` is pure and bounded (fuzzed: tests/fuzz/at_rest_header_fuzz.cpp); `seal` and
// `open_sealed` use one EVP_CIPHER_CTX per thread, re-keyed only when the key changes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace keel::security::at_rest {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kVersionBytes = 4;
constexpr size_t kSealOverheadBytes = kVersionBytes + kNonceBytes + kTagBytes;

// A data key (the codec's per-thread contexts remember the last key they were set up with).
struct DataKey {
  uint32_t version = 0;
  std::array<uint8_t, kKeyBytes> bytes{};
};

struct SealedView {
  uint32_t version = 0;
  std::string_view nonce;       // kNonceBytes
  std::string_view ciphertext;  // as long as the plaintext
  std::string_view tag;         // kTagBytes
};

// Splits a sealed value; kCorruption if it is shorter than kSealOverheadBytes.
Result<SealedView> parse_sealed(std::string_view in);

// The key version of a sealed value without parsing the rest (kCorruption if too short).
Result<uint32_t> sealed_version(std::string_view in);

// Appends the sealed form of `plain` under `key` to `out`. `aad1` and `aad2` are authenticated,
// not stored. Fails only if OpenSSL does (kInternal) or the random source does.
Status seal(const DataKey& key, std::string_view aad1, std::string_view aad2, std::string_view plain,
            std::string& out);

// Replaces `plain` with the plaintext of `s` (sealed under `key`, whose version must be
// s.version). kCorruption "authentication failed" when the tag does not match: a wrong key, a
// changed byte, or associated data other than at sealing.
Status open_sealed(const DataKey& key, const SealedView& s, std::string_view aad1, std::string_view aad2,
                   std::string& plain);

// Hex helpers for key material in files and variables (lowercase out; either case in).
std::string to_hex(std::string_view bytes);
bool from_hex(std::string_view hex, std::string& out);

}  // namespace keel::security::at_rest
