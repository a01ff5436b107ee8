// Signed HTTP requests in the style of RFC 9421 (HTTP Message Signatures), and the nonce store
// that refuses a signature seen before (docs/security.md, "Signed requests").
//
// A client holding a token signs each request with the token's holder key (the Ed25519 key of
// its last block, security/token.h) and sends the token without its proof:
//
//   Authorization: Bearer kt1.<blocks>            (no "~proof": the signature proves the key)
//   Content-Digest: sha-256=:<base64 SHA-256 of the body>:
//   Signature-Input: sig1=("@method" "@path" "content-digest");created=<unix s>;expires=<unix s>;nonce="<random>";keyid="token"
//   Signature: sig1=:<base64 Ed25519 signature of the signature base>:
//
// Covered components: "@method", "@path" and "content-digest" are required, "@query" may be
// added; the signature base is RFC 9421's (one `"name": value` line per component, then
// `"@signature-params": <the inner list and parameters as sent>`). Only the first signature of
// the dictionaries is used. Pure: no clock, no sockets; `now` is a parameter. Parsers are
// bounded (kMaxSignatureHeaderBytes) and every error says what was wrong and what is allowed.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace keel::security {

inline constexpr size_t kMaxSignatureHeaderBytes = 1024;
inline constexpr size_t kMaxNonceBytes = 128;

struct SignatureInput {
  std::string label;                    // "sig1"
  std::vector<std::string> components;  // "@method", "@path", ...
  int64_t created_s = 0;
  int64_t expires_s = 0;
  std::string nonce;
  std::string keyid;
  std::string alg;     // optional; "ed25519" if given
  std::string params;  // the serialized inner list and parameters, as signed
};

// Signature-Input: the first member of the dictionary.
Result<SignatureInput> parse_signature_input(std::string_view header);
// Signature: the member named `label`, a byte sequence (":base64:"); returns the raw bytes.
Result<std::string> parse_signature(std::string_view header, std::string_view label);

struct RequestFacts {
  std::string_view method;          // "POST"
  std::string_view path;            // "/v1/kv/x" (no query)
  std::string_view query;           // "a=1" without '?', "" if none
  std::string_view content_digest;  // the Content-Digest header as sent
  std::string_view body;
};
// Checks the covered components, the times (created <= now + 5 s, now < expires,
// expires - created <= window_s), the nonce and the body digest; returns the signature base.
Result<std::string> signature_base(const SignatureInput& in, const RequestFacts& req, int64_t now_s,
                                   int64_t window_s);

std::string base64_encode(std::string_view bytes);                 // standard, padded
std::optional<std::string> base64_decode(std::string_view text);  // standard, padded

// Remembers the nonces of accepted signatures until they expire, at most `capacity`. Fails
// closed: when full of unexpired nonces, admit() answers kFull and the request must be refused
// (a replay cannot be ruled out). Not thread-safe.
class NonceStore {
 public:
  explicit NonceStore(size_t capacity) : capacity_(capacity) {}
  enum class Admit { kOk, kReplay, kFull };
  // `key` identifies the signer and nonce; `expires_s` is the signature's expiry (it can be
  // refused by its time afterwards, so the nonce is forgotten then).
  Admit admit(std::string_view key, int64_t expires_s, int64_t now_s);
  size_t size() const { return by_key_.size(); }
  size_t capacity() const { return capacity_; }
  void set_capacity(size_t c) { capacity_ = c; }

 private:
  void expire(int64_t now_s);
  size_t capacity_;
  std::map<std::string, int64_t, std::less<>> by_key_;
  std::set<std::pair<int64_t, std::string>> by_expiry_;
};

}  // namespace keel::security
