// Transit: named keys that never leave keel, used to encrypt, decrypt, sign and verify for the
// applications (Vault's Transit engine is the anchor; docs/security.md, "Transit keys").
//
// A key has versions (1, 2, ... : `rotate` adds one); new work uses the latest, and any version
// at or above `min_decryption_version` still decrypts and verifies, so old ciphertexts keep
// working until an administrator retires their version (after `rewrap`ping them to the latest,
// which needs no plaintext to leave keel). Every output names its version:
//
//   ciphertext  keel:v<N>:<base64 of u32be N ++ nonce[12] ++ AES-256-GCM ciphertext ++ tag[16]>
//   signature   keel:v<N>:<base64 of the Ed25519 signature>
//
// AES-256-GCM authenticates, beside the ciphertext and its version, the key's name and an
// optional caller context, so a ciphertext moved to another key or another context fails. Keys
// are `aes256-gcm` (encrypt, decrypt, rewrap) or `ed25519` (sign, verify).
//
// This file is the pure part: a key's stored form (JSON in cluster metadata) and the
// operations on a key held in memory. transit_service.h keeps the keys in metadata.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"

namespace keel::security::transit {

enum class KeyType { kAes256Gcm, kEd25519 };
std::string_view type_name(KeyType t);
// "aes256-gcm" or "ed25519"; kInvalidArgument naming what is allowed otherwise.
Result<KeyType> parse_type(std::string_view text);

inline constexpr size_t kMaterialBytes = 32;       // an AES-256 key, or an Ed25519 seed
inline constexpr uint32_t kMaxVersions = 1000;     // rotations kept per key
inline constexpr size_t kMaxInputBytes = 16u << 20;  // plaintext, ciphertext or message

struct Key {
  std::string name;
  KeyType type = KeyType::kAes256Gcm;
  std::map<uint32_t, std::string> versions;  // version -> kMaterialBytes of key material
  uint32_t min_decryption_version = 1;
  bool deletion_allowed = false;
  int64_t created_ms = 0;
  uint32_t latest() const { return versions.empty() ? 0 : versions.rbegin()->first; }
};

// A key name: 1 to 128 of letters, digits, '_', '-', '.'; kInvalidArgument naming the fault.
Status check_name(std::string_view name);

// A new key with version 1 (fresh random material). kInternal if the random source fails.
Result<Key> create(std::string name, KeyType type, int64_t now_ms);
// Adds the next version (fresh material). kLimitExceeded past kMaxVersions.
Status rotate(Key& k);
// Sets min_decryption_version (1 .. latest): versions below it no longer decrypt or verify.
Status set_min_decryption_version(Key& k, uint32_t v);

// The stored form (JSON, key material in base64) and back (bounded; kCorruption names the fault).
std::string encode(const Key& k);
Result<Key> decode(std::string_view json);

// kInvalidArgument for the wrong key type, input too large, a malformed or unknown-version
// ciphertext or signature, or a version below min_decryption_version; decrypt answers
// kInvalidArgument "authentication failed" for a changed ciphertext, another key or context.
Result<std::string> encrypt(const Key& k, std::string_view plaintext, std::string_view context = {});
Result<std::string> decrypt(const Key& k, std::string_view ciphertext, std::string_view context = {});
// Decrypts and encrypts again under the latest version (the plaintext never leaves this call).
Result<std::string> rewrap(const Key& k, std::string_view ciphertext, std::string_view context = {});
Result<std::string> sign(const Key& k, std::string_view message);
// false for a signature that does not match; an error for one that cannot be checked at all.
Result<bool> verify(const Key& k, std::string_view message, std::string_view signature);
// The version an output ("keel:v<N>:...") names; kInvalidArgument if it is not one.
Result<uint32_t> output_version(std::string_view output);
// The key's public part for verification elsewhere (Ed25519: the 32 raw bytes per version).
std::map<uint32_t, std::string> public_keys(const Key& k);

}  // namespace keel::security::transit
