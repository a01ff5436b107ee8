#include "security/at_rest_codec.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

#include "base/assert.h"

namespace keel::security::at_rest {
namespace {

// One context per thread and direction, keyed once per key (the AES key schedule is the
// costly part of an init); each value then only sets its nonce.
struct ThreadCtx {
  EVP_CIPHER_CTX* ctx = nullptr;
  bool keyed = false;
  std::array<uint8_t, kKeyBytes> key{};  // the key the context is set up for (compared by value)
  bool needs(const DataKey& k) const { return !keyed || std::memcmp(key.data(), k.bytes.data(), kKeyBytes) != 0; }
  void keyed_with(const DataKey& k) {
    key = k.bytes;
    keyed = true;
  }
  ThreadCtx() : ctx(EVP_CIPHER_CTX_new()) { KEEL_ASSERT_MSG(ctx != nullptr, "EVP_CIPHER_CTX_new failed"); }
  ~ThreadCtx() {
    OPENSSL_cleanse(key.data(), key.size());
    EVP_CIPHER_CTX_free(ctx);
  }
  ThreadCtx(const ThreadCtx&) = delete;
  ThreadCtx& operator=(const ThreadCtx&) = delete;
};

thread_local ThreadCtx t_enc;

// Nonces: a random 96-bit start drawn per thread every 2^16 values, then counted up in its low 64
// bits (NIST SP 800-38D 8.2: distinct for a key as long as two counted runs never overlap,
// which for random starts is as unlikely as two random nonces colliding). One RAND_bytes per
// value was a fifth of a pipelined SET's CPU time.
struct NonceSource {
  unsigned char base[kNonceBytes];
  uint64_t counter = 0;
  uint32_t left = 0;
  bool next(unsigned char* out) {
    if (left == 0) {
      if (RAND_bytes(base, static_cast<int>(kNonceBytes)) != 1) return false;
      counter = 0;
      left = 1u << 16;
    }
    uint64_t low = 0;
    for (int i = 4; i < 12; ++i) low = (low << 8) | base[i];
    low += counter++;
    --left;
    std::memcpy(out, base, 4);
    for (int i = 11; i >= 4; --i) {
      out[i] = static_cast<unsigned char>(low);
      low >>= 8;
    }
    return true;
  }
};
thread_local NonceSource t_nonce;
thread_local ThreadCtx t_dec;

void put_u32be(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

uint32_t get_u32be(const char* p) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(p[0])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(p[1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(p[2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(p[3]));
}

const unsigned char* u(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

std::unexpected<Error> ssl_failed(const char* what) {
  return make_error(Errc::kInternal, fmt::format("OpenSSL AES-256-GCM {} failed", what));
}

// The associated data (key version ++ aad1 ++ aad2) handed to OpenSSL in one call: each
// EVP_*Update goes through the provider's dispatch, which costs more than the copy.
thread_local std::string t_aad;

bool add_aad(EVP_CIPHER_CTX* ctx, bool enc, std::string_view version, std::string_view aad1,
             std::string_view aad2) {
  t_aad.assign(version);
  t_aad.append(aad1);
  t_aad.append(aad2);
  int n = 0;
  const bool ok = (enc ? EVP_EncryptUpdate(ctx, nullptr, &n, u(t_aad), static_cast<int>(t_aad.size()))
                       : EVP_DecryptUpdate(ctx, nullptr, &n, u(t_aad), static_cast<int>(t_aad.size()))) == 1;
  if (t_aad.capacity() > (1u << 20)) std::string().swap(t_aad);
  return ok;
}

}  // namespace

Result<SealedView> parse_sealed(std::string_view in) {
  if (in.size() < kSealOverheadBytes)
    return make_error(Errc::kCorruption,
                      fmt::format("encrypted value is {} bytes; at least {} expected (key version, nonce, tag)",
                                  in.size(), kSealOverheadBytes));
  SealedView s;
  s.version = get_u32be(in.data());
  s.nonce = in.substr(kVersionBytes, kNonceBytes);
  s.ciphertext = in.substr(kVersionBytes + kNonceBytes, in.size() - kSealOverheadBytes);
  s.tag = in.substr(in.size() - kTagBytes);
  return s;
}

Result<uint32_t> sealed_version(std::string_view in) {
  if (in.size() < kSealOverheadBytes)
    return make_error(Errc::kCorruption,
                      fmt::format("encrypted value is {} bytes; at least {} expected", in.size(), kSealOverheadBytes));
  return get_u32be(in.data());
}

Status seal(const DataKey& key, std::string_view aad1, std::string_view aad2, std::string_view plain,
            std::string& out) {
  if (plain.size() > static_cast<size_t>(INT32_MAX))
    return make_error(Errc::kLimitExceeded, "a value to encrypt must be under 2 GiB");
  const size_t at = out.size();
  out.resize(at + kSealOverheadBytes + plain.size());
  char* p = out.data() + at;
  put_u32be(p, key.version);
  unsigned char* nonce = reinterpret_cast<unsigned char*>(p + kVersionBytes);
  if (!t_nonce.next(nonce)) {
    out.resize(at);
    return ssl_failed("nonce (RAND_bytes)");
  }
  auto& t = t_enc;
  const bool rekey = t.needs(key);
  if (EVP_EncryptInit_ex(t.ctx, rekey ? EVP_aes_256_gcm() : nullptr, nullptr, rekey ? key.bytes.data() : nullptr,
                         nonce) != 1) {
    t.keyed = false;
    out.resize(at);
    return ssl_failed("encrypt init");
  }
  t.keyed_with(key);
  // The key version is authenticated too: a value relabelled with another version fails.
  unsigned char* ct = reinterpret_cast<unsigned char*>(p + kVersionBytes + kNonceBytes);
  int n = 0;
  bool ok = add_aad(t.ctx, true, std::string_view(p, kVersionBytes), aad1, aad2);
  if (ok && !plain.empty()) ok = EVP_EncryptUpdate(t.ctx, ct, &n, u(plain), static_cast<int>(plain.size())) == 1;
  int fin = 0;
  if (ok) ok = EVP_EncryptFinal_ex(t.ctx, ct + n, &fin) == 1;
  if (ok)
    ok = EVP_CIPHER_CTX_ctrl(t.ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes),
                             p + kVersionBytes + kNonceBytes + plain.size()) == 1;
  if (!ok) {
    t.keyed = false;
    out.resize(at);
    return ssl_failed("encrypt");
  }
  KEEL_ASSERT(static_cast<size_t>(n + fin) == plain.size());
  return {};
}

Status open_sealed(const DataKey& key, const SealedView& s, std::string_view aad1, std::string_view aad2,
                   std::string& plain) {
  KEEL_ASSERT_MSG(key.version == s.version, "open_sealed with the key of another version");
  if (s.nonce.size() != kNonceBytes || s.tag.size() != kTagBytes)
    return make_error(Errc::kCorruption, "encrypted value has a malformed nonce or tag");
  auto& t = t_dec;
  const bool rekey = t.needs(key);
  if (EVP_DecryptInit_ex(t.ctx, rekey ? EVP_aes_256_gcm() : nullptr, nullptr, rekey ? key.bytes.data() : nullptr,
                         u(s.nonce)) != 1) {
    t.keyed = false;
    return ssl_failed("decrypt init");
  }
  t.keyed_with(key);
  char version[kVersionBytes];
  put_u32be(version, s.version);
  plain.resize(s.ciphertext.size());
  int n = 0;
  bool ok = add_aad(t.ctx, false, std::string_view(version, kVersionBytes), aad1, aad2);
  if (ok && !s.ciphertext.empty())
    ok = EVP_DecryptUpdate(t.ctx, reinterpret_cast<unsigned char*>(plain.data()), &n, u(s.ciphertext),
                           static_cast<int>(s.ciphertext.size())) == 1;
  if (!ok) {
    t.keyed = false;
    plain.clear();
    return ssl_failed("decrypt");
  }
  char tag[kTagBytes];
  std::memcpy(tag, s.tag.data(), kTagBytes);
  if (EVP_CIPHER_CTX_ctrl(t.ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes), tag) != 1) {
    t.keyed = false;
    plain.clear();
    return ssl_failed("set tag");
  }
  int fin = 0;
  if (EVP_DecryptFinal_ex(t.ctx, reinterpret_cast<unsigned char*>(plain.data()) + n, &fin) != 1) {
    plain.clear();  // never hand out unauthenticated bytes
    return make_error(Errc::kCorruption,
                      fmt::format("encrypted value under at-rest key version {} failed authentication "
                                  "(changed on disk, moved from another key, or a different key with that version)",
                                  s.version));
  }
  return {};
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool from_hex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int a = val(hex[i]), b = val(hex[i + 1]);
    if (a < 0 || b < 0) return false;
    out.push_back(static_cast<char>(a * 16 + b));
  }
  return true;
}

}  // namespace keel::security::at_rest
