// Certificate-bound tokens with offline attenuation (docs/security.md, "Tokens").
//
// A token is a chain of blocks. Block 0 is signed by the cluster's token key (Ed25519, or
// ECDSA P-256) and names the user, the SHA-256 fingerprint of the certificate the token is
// bound to, an expiry and the permissions (ACL rules). Every block commits a fresh Ed25519
// public key ("next"); the following block is signed by its private key, over the block and
// the previous signature. The holder of the last private key (the token's "proof", carried
// after '~') can add a block; a verifier needs only the root public key. The effective
// permissions are the intersection of every block's (each block is checked on its own, and
// all must allow), the expiry the earliest: a block can narrow, never widen. Editing a block
// breaks its signature; dropping the last blocks leaves a proof that does not match.
//
// Text form: "kt1." base64url(block 0) "." base64url(sig 0) ["." block "." sig]... "~" proof,
// blocks being JSON objects (see token.cpp). Parsing is bounded (kMaxTokenBytes, kMaxBlocks,
// kMaxBlockBytes, kMaxRules, kMaxRuleBytes) and every error names what was wrong.
//
// Pure: no clock, no random source, no files. `now` and key seeds are parameters. OpenSSL
// does the arithmetic; no OpenSSL types in this header.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "security/acl.h"

namespace keel::security {

inline constexpr std::string_view kTokenPrefix = "kt1.";
inline constexpr size_t kMaxTokenBytes = 8192;
inline constexpr size_t kMaxBlocks = 8;
inline constexpr size_t kMaxBlockBytes = 2048;  // one block's JSON
inline constexpr size_t kMaxRules = 32;         // per list (commands, keys, channels) of a block
inline constexpr size_t kMaxRuleBytes = 256;

// True for text in the token form (starts with "kt1."): AUTH and Bearer take the token path.
bool looks_like_token(std::string_view text);

std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);  // nullopt: not base64url
std::string hex(std::string_view bytes);

// An Ed25519 or P-256 key pair, or only a public key.
class TokenKey {
 public:
  TokenKey();
  ~TokenKey();
  TokenKey(TokenKey&&) noexcept;
  TokenKey& operator=(TokenKey&&) noexcept;
  // PKCS#8 private key or SubjectPublicKeyInfo public key, PEM; Ed25519 or P-256 only.
  static Result<TokenKey> from_pem(std::string_view pem);
  // An Ed25519 key from a 32-byte seed (the caller draws it from a secure random source).
  static Result<TokenKey> ed25519_from_seed(std::span<const unsigned char> seed);
  static Result<TokenKey> ed25519_public(std::string_view raw32);
  bool has_private() const;
  bool is_ed25519() const;
  std::string public_pem() const;
  std::string private_pem() const;  // "" without a private key
  std::string raw_public() const;   // Ed25519: the 32 raw bytes; P-256: "" (not used raw)
  std::string raw_private() const;  // Ed25519 seed (32 bytes); "" otherwise
  Result<std::string> sign(std::string_view message) const;
  bool verify(std::string_view message, std::string_view signature) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// What one block states. Empty lists mean "no restriction from this block".
struct TokenBlock {
  std::string user;         // block 0 only
  std::string cert_sha256;  // block 0 only: 64 lower-case hex digits
  int64_t expires_s = 0;    // unix seconds; required in block 0, optional (0) after
  // ACL command rules, applied in order: +cmd -cmd +@cat -@cat +cmd|sub allcommands nocommands.
  // A list starting with '-' starts from every command (a deny-list), otherwise from none.
  std::vector<std::string> commands;
  std::vector<std::string> keys;      // ACL key patterns: ~pattern, allkeys
  std::vector<std::string> channels;  // ACL channel patterns: &pattern, allchannels
};

// Checks a block's rules are of the allowed forms (before signing and after parsing).
Status check_block_rules(const TokenBlock& b);

// Issues a token: block 0 signed by `root` (with its private key), the next key from
// `next_seed` (32 random bytes).
Result<std::string> issue_token(const TokenKey& root, const TokenBlock& block0,
                                std::span<const unsigned char> next_seed);
// Adds a block (offline: needs only the token, whose proof key signs it). `block` may not
// name a user or a certificate.
Result<std::string> attenuate_token(std::string_view token, const TokenBlock& block,
                                    std::span<const unsigned char> next_seed);

// A parsed token, signatures not yet checked.
struct ParsedToken {
  struct Part {
    std::string body;       // the block's JSON as signed
    std::string signature;  // raw
    TokenBlock block;
    std::string next_key;   // raw Ed25519 public key the next block is signed with
  };
  std::vector<Part> parts;
  std::string proof;  // raw Ed25519 seed of the last next key ("" if the token carries none)
};
Result<ParsedToken> parse_token(std::string_view token);

// What a verified token grants: the user it names and one rule set per block, all of which
// must allow a command (intersected with the user's own rules by the door).
struct TokenGrant {
  std::string user;
  std::string cert_sha256;
  int64_t expires_s = 0;  // the earliest of the blocks'
  std::vector<User> limits;
  size_t blocks = 0;
  std::vector<std::string> revocation_ids;  // one per block (token_revocation_ids)
};

struct VerifyInput {
  int64_t now_s = 0;
  // SHA-256 of the client certificate the connection presented (hex); empty: none.
  std::string_view cert_sha256;
  // Whether the proof key must be in the token (AUTH, Bearer). A signed request proves the key
  // by its signature instead, and sends the token without it.
  bool require_proof = true;
};
// Errors: kInvalidArgument with the reason (bad form, bad signature,
// expired, wrong or missing certificate). `catalog` compiles the rules.
Result<TokenGrant> verify_token(std::string_view token, const TokenKey& root, const VerifyInput& in,
                                const CommandCatalog& catalog);
// The raw Ed25519 public key a request signature must verify with: the last block's next key.
Result<std::string> token_holder_key(std::string_view token);

// Revocation. Block i's revocation id is the first 16 bytes of the SHA-256 of its signature, in
// hex (kRevocationIdHexDigits). A block's signature covers the block and every signature before
// it, so id i names the token up to block i: revoking it refuses that token and every token
// attenuated from it (they share blocks 0..i), and no other. Not secret: an id cannot be turned
// back into a token.
inline constexpr size_t kRevocationIdHexDigits = 32;
std::string block_revocation_id(std::string_view signature);
// Whether `text` has the form of a revocation id (32 lower-case hex digits).
bool is_revocation_id(std::string_view text);
// What revoking `token` (signatures not checked) records: its last block's id, the user block 0
// names and the token's expiry (the earliest of its blocks'), after which the entry can go.
struct RevocationTarget {
  std::string id;
  std::string user;
  int64_t expires_s = 0;
  std::vector<std::string> ids;  // every block's, block 0 first
};
Result<RevocationTarget> revocation_target(std::string_view token);
// What to revoke from ACL REVOKE's arguments (HTTP's and the CLI's alike): a token (its last
// block's id, its user and expiry), or a revocation id and the unix time its token expires.
// `now_s` stamps revoked_at_s. Errors (kInvalidArgument) say what is allowed.
Result<Acl::Revocation> parse_revoke_request(std::span<const std::string_view> args, int64_t now_s);

// SHA-256 of a certificate's DER (hex), from PEM (the CLI) or DER (the doors).
Result<std::string> certificate_sha256_pem(std::string_view pem);
std::string sha256_hex(std::string_view bytes);
std::string sha256_raw(std::string_view bytes);

}  // namespace keel::security
