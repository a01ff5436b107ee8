#include "security/token.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "base/base64.h"

namespace keel::security {

namespace {

using json = nlohmann::json;

Error bad(std::string message) { return Error{Errc::kInvalidArgument, std::move(message)}; }

constexpr std::string_view kSignContext = "keel-token-v1";

// What block `index` signs: a context string, the index, the block, and the previous
// signature (so blocks cannot be moved between chains or reordered).
std::string signed_message(size_t index, std::string_view body, std::string_view prev_sig) {
  std::string m(kSignContext);
  m.push_back('\0');
  m.push_back(static_cast<char>(index));
  m.append(body);
  m.append(prev_sig);
  return m;
}

bool is_hex64(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

bool looks_like_token(std::string_view text) { return text.starts_with(kTokenPrefix); }

std::string base64url_encode(std::string_view in) { return base64_encode(in, Base64::kUrl); }

std::optional<std::string> base64url_decode(std::string_view in) { return base64_decode(in, Base64::kUrl); }

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  return hex(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

std::string sha256_raw(std::string_view bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

Result<std::string> certificate_sha256_pem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return std::unexpected(bad("out of memory"));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!x) return std::unexpected(bad("not a PEM certificate"));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  int ok = X509_digest(x, EVP_sha256(), md, &n);
  X509_free(x);
  if (!ok) return std::unexpected(bad("cannot compute the certificate's SHA-256"));
  return hex(std::string_view(reinterpret_cast<const char*>(md), n));
}

// ---- keys ----

struct TokenKey::Impl {
  EVP_PKEY* key = nullptr;
  bool priv = false;
  ~Impl() { EVP_PKEY_free(key); }
};

TokenKey::TokenKey() = default;
TokenKey::~TokenKey() = default;
TokenKey::TokenKey(TokenKey&&) noexcept = default;
TokenKey& TokenKey::operator=(TokenKey&&) noexcept = default;

Result<TokenKey> TokenKey::from_pem(std::string_view pem) {
  TokenKey k;
  k.impl_ = std::make_unique<Impl>();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return std::unexpected(bad("out of memory"));
  k.impl_->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  if (k.impl_->key) {
    k.impl_->priv = true;
  } else {
    BIO_free(bio);
    bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    k.impl_->key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  }
  BIO_free(bio);
  if (!k.impl_->key)
    return std::unexpected(bad("not a PEM private key (PKCS#8) or public key (SubjectPublicKeyInfo)"));
  int id = EVP_PKEY_get_base_id(k.impl_->key);
  char group[64] = {0};
  size_t glen = 0;
  const bool p256 = id == EVP_PKEY_EC &&
                    EVP_PKEY_get_group_name(k.impl_->key, group, sizeof group, &glen) == 1 &&
                    (std::string_view(group) == "prime256v1" || std::string_view(group) == "P-256");
  if (id != EVP_PKEY_ED25519 && !p256)
    return std::unexpected(bad("the key is neither Ed25519 nor ECDSA P-256; allowed: those two"));
  return k;
}

Result<TokenKey> TokenKey::ed25519_from_seed(std::span<const unsigned char> seed) {
  if (seed.size() != 32) return std::unexpected(bad("an Ed25519 seed is 32 bytes"));
  TokenKey k;
  k.impl_ = std::make_unique<Impl>();
  k.impl_->key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size());
  if (!k.impl_->key) return std::unexpected(bad("cannot make an Ed25519 key from the seed"));
  k.impl_->priv = true;
  return k;
}

Result<TokenKey> TokenKey::ed25519_public(std::string_view raw) {
  if (raw.size() != 32) return std::unexpected(bad("an Ed25519 public key is 32 bytes"));
  TokenKey k;
  k.impl_ = std::make_unique<Impl>();
  k.impl_->key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                             reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  if (!k.impl_->key) return std::unexpected(bad("not an Ed25519 public key"));
  return k;
}

bool TokenKey::has_private() const { return impl_ && impl_->priv; }
bool TokenKey::is_ed25519() const { return impl_ && EVP_PKEY_get_base_id(impl_->key) == EVP_PKEY_ED25519; }

namespace {
std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(n));
  BIO_free(bio);
  return s;
}
}  // namespace

std::string TokenKey::public_pem() const {
  if (!impl_) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, impl_->key);
  return bio_text(bio);
}

std::string TokenKey::private_pem() const {
  if (!has_private()) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, impl_->key, nullptr, nullptr, 0, nullptr, nullptr);
  return bio_text(bio);
}

std::string TokenKey::raw_public() const {
  if (!is_ed25519()) return {};
  std::string out(32, '\0');
  size_t n = out.size();
  if (EVP_PKEY_get_raw_public_key(impl_->key, reinterpret_cast<unsigned char*>(out.data()), &n) != 1) return {};
  out.resize(n);
  return out;
}

std::string TokenKey::raw_private() const {
  if (!is_ed25519() || !has_private()) return {};
  std::string out(32, '\0');
  size_t n = out.size();
  if (EVP_PKEY_get_raw_private_key(impl_->key, reinterpret_cast<unsigned char*>(out.data()), &n) != 1) return {};
  out.resize(n);
  return out;
}

Result<std::string> TokenKey::sign(std::string_view message) const {
  if (!has_private()) return std::unexpected(bad("signing needs the private key"));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = is_ed25519() ? nullptr : EVP_sha256();
  std::string sig;
  size_t n = 0;
  bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, md, nullptr, impl_->key) == 1;
  if (ok && is_ed25519()) {
    ok = EVP_DigestSign(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
    sig.resize(n);
    ok = ok && EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n,
                              reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  } else if (ok) {
    ok = EVP_DigestSignUpdate(ctx, message.data(), message.size()) == 1 &&
         EVP_DigestSignFinal(ctx, nullptr, &n) == 1;
    sig.resize(n);
    ok = ok && EVP_DigestSignFinal(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n) == 1;
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return std::unexpected(bad("signing failed"));
  sig.resize(n);
  return sig;
}

bool TokenKey::verify(std::string_view message, std::string_view signature) const {
  if (!impl_) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = is_ed25519() ? nullptr : EVP_sha256();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, impl_->key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                             reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// ---- blocks ----

Status check_block_rules(const TokenBlock& b) {
  auto check_list = [](const std::vector<std::string>& list, std::string_view what, auto ok_rule,
                       std::string_view allowed) -> Status {
    if (list.size() > kMaxRules)
      return std::unexpected(bad(fmt::format("{} {} rules in one block; allowed: at most {}", list.size(), what, kMaxRules)));
    for (auto& r : list) {
      if (r.empty() || r.size() > kMaxRuleBytes)
        return std::unexpected(bad(fmt::format("a {} rule must have 1..{} bytes", what, kMaxRuleBytes)));
      if (!ok_rule(r))
        return std::unexpected(bad(fmt::format("'{}' is not a {} rule a token may carry; allowed: {}", r, what, allowed)));
    }
    return {};
  };
  if (auto st = check_list(b.commands, "command",
                           [](const std::string& r) {
                             return ((r[0] == '+' || r[0] == '-') && r.size() > 1) || r == "allcommands" ||
                                    r == "nocommands";
                           },
                           "+command, -command, +@category, -@category, +command|sub, allcommands, nocommands");
      !st)
    return st;
  if (auto st = check_list(b.keys, "key",
                           [](const std::string& r) { return (r[0] == '~' && r.size() > 1) || r == "allkeys"; },
                           "~pattern (Redis glob, e.g. ~orders:*), allkeys");
      !st)
    return st;
  if (auto st = check_list(b.channels, "channel",
                           [](const std::string& r) { return (r[0] == '&' && r.size() > 1) || r == "allchannels"; },
                           "&pattern, allchannels");
      !st)
    return st;
  if (!b.cert_sha256.empty() && !is_hex64(b.cert_sha256))
    return std::unexpected(bad("the certificate fingerprint must be 64 lower-case hex digits (SHA-256)"));
  return {};
}

namespace {

std::string encode_block(const TokenBlock& b, std::string_view next_key) {
  json j = json::object();
  if (!b.user.empty()) j["user"] = b.user;
  if (!b.cert_sha256.empty()) j["cert"] = b.cert_sha256;
  if (b.expires_s) j["exp"] = b.expires_s;
  if (!b.commands.empty()) j["cmds"] = b.commands;
  if (!b.keys.empty()) j["keys"] = b.keys;
  if (!b.channels.empty()) j["chans"] = b.channels;
  j["next"] = base64url_encode(next_key);
  return j.dump();
}

// Nesting deeper than an object holding arrays is refused before the JSON parser sees it.
bool shallow(std::string_view s) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > 2) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

Result<std::vector<std::string>> string_list(const json& j, std::string_view field, size_t index) {
  if (!j.is_array())
    return std::unexpected(bad(fmt::format("block {}: '{}' must be a list of strings", index, field)));
  if (j.size() > kMaxRules)
    return std::unexpected(bad(fmt::format("block {}: '{}' has {} entries; allowed: at most {}", index, field, j.size(), kMaxRules)));
  std::vector<std::string> out;
  for (auto& e : j) {
    if (!e.is_string()) return std::unexpected(bad(fmt::format("block {}: '{}' must be a list of strings", index, field)));
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<ParsedToken::Part> decode_part(std::string_view body64, std::string_view sig64, size_t index) {
  ParsedToken::Part p;
  auto body = base64url_decode(body64);
  auto sig = base64url_decode(sig64);
  if (!body || !sig)
    return std::unexpected(bad(fmt::format("block {} is not base64url (A-Z a-z 0-9 - _ without padding)", index)));
  if (body->size() > kMaxBlockBytes)
    return std::unexpected(bad(fmt::format("block {} has {} bytes; allowed: at most {}", index, body->size(), kMaxBlockBytes)));
  if (sig->empty() || sig->size() > 128) return std::unexpected(bad(fmt::format("block {}: the signature has a wrong size", index)));
  if (!shallow(*body)) return std::unexpected(bad(fmt::format("block {} nests deeper than an object of lists", index)));
  json j = json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::unexpected(bad(fmt::format("block {} is not a JSON object", index)));
  for (auto& [k, v] : j.items()) {
    if (k == "user" || k == "cert") {
      if (index != 0)
        return std::unexpected(bad(fmt::format("block {} names '{}': only the first block may (an attenuation cannot change the user or the certificate)", index, k)));
      if (!v.is_string()) return std::unexpected(bad(fmt::format("block 0: '{}' must be a string", k)));
      (k == "user" ? p.block.user : p.block.cert_sha256) = v.get<std::string>();
    } else if (k == "exp") {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0)
        return std::unexpected(bad(fmt::format("block {}: 'exp' must be a positive integer (unix seconds)", index)));
      p.block.expires_s = v.get<int64_t>();
    } else if (k == "cmds" || k == "keys" || k == "chans") {
      auto l = string_list(v, k, index);
      if (!l) return std::unexpected(l.error());
      (k == "cmds" ? p.block.commands : k == "keys" ? p.block.keys : p.block.channels) = std::move(*l);
    } else if (k == "next") {
      auto raw = v.is_string() ? base64url_decode(v.get<std::string>()) : std::nullopt;
      if (!raw || raw->size() != 32)
        return std::unexpected(bad(fmt::format("block {}: 'next' must be a base64url Ed25519 public key (32 bytes)", index)));
      p.next_key = std::move(*raw);
    } else {
      return std::unexpected(bad(fmt::format("block {} has an unknown field '{}'; allowed: user, cert, exp, cmds, keys, chans, next", index, k.substr(0, 32))));
    }
  }
  if (p.next_key.empty()) return std::unexpected(bad(fmt::format("block {} has no 'next' key", index)));
  if (index == 0 && (p.block.user.empty() || p.block.cert_sha256.empty() || p.block.expires_s == 0))
    return std::unexpected(bad("block 0 must name 'user', 'cert' and 'exp'"));
  if (auto st = check_block_rules(p.block); !st)
    return std::unexpected(bad(fmt::format("block {}: {}", index, st.error().message)));
  p.body = std::move(*body);
  p.signature = std::move(*sig);
  return p;
}

}  // namespace

Result<ParsedToken> parse_token(std::string_view token) {
  if (token.size() > kMaxTokenBytes)
    return std::unexpected(bad(fmt::format("the token has {} bytes; allowed: at most {}", token.size(), kMaxTokenBytes)));
  if (!looks_like_token(token)) return std::unexpected(bad("not a keel token (they start with 'kt1.')"));
  token.remove_prefix(kTokenPrefix.size());
  ParsedToken out;
  if (size_t tilde = token.find('~'); tilde != std::string_view::npos) {
    auto proof = base64url_decode(token.substr(tilde + 1));
    if (!proof || proof->size() != 32)
      return std::unexpected(bad("the token's proof (after '~') must be a base64url Ed25519 seed (32 bytes)"));
    out.proof = std::move(*proof);
    token = token.substr(0, tilde);
  }
  std::vector<std::string_view> segs;
  while (true) {
    size_t dot = token.find('.');
    segs.push_back(token.substr(0, dot));
    if (segs.size() > 2 * kMaxBlocks)
      return std::unexpected(bad(fmt::format("the token has more than {} blocks; allowed: at most {}", kMaxBlocks, kMaxBlocks)));
    if (dot == std::string_view::npos) break;
    token.remove_prefix(dot + 1);
  }
  if (segs.size() % 2 != 0)
    return std::unexpected(bad("the token must be pairs of block and signature separated by '.'"));
  for (size_t i = 0; i < segs.size(); i += 2) {
    auto p = decode_part(segs[i], segs[i + 1], i / 2);
    if (!p) return std::unexpected(p.error());
    out.parts.push_back(std::move(*p));
  }
  return out;
}

namespace {
std::string serialize(const ParsedToken& t) {
  std::string s(kTokenPrefix);
  for (size_t i = 0; i < t.parts.size(); ++i) {
    if (i) s.push_back('.');
    s += base64url_encode(t.parts[i].body);
    s.push_back('.');
    s += base64url_encode(t.parts[i].signature);
  }
  if (!t.proof.empty()) {
    s.push_back('~');
    s += base64url_encode(t.proof);
  }
  return s;
}

Result<std::string> append_block(ParsedToken t, const TokenKey& signer, const TokenBlock& b,
                                  std::span<const unsigned char> next_seed) {
  if (auto st = check_block_rules(b); !st) return std::unexpected(st.error());
  auto next = TokenKey::ed25519_from_seed(next_seed);
  if (!next) return std::unexpected(next.error());
  ParsedToken::Part p;
  p.block = b;
  p.next_key = next->raw_public();
  p.body = encode_block(b, p.next_key);
  if (p.body.size() > kMaxBlockBytes)
    return std::unexpected(bad(fmt::format("the block would have {} bytes; allowed: at most {}", p.body.size(), kMaxBlockBytes)));
  const std::string prev = t.parts.empty() ? std::string() : t.parts.back().signature;
  auto sig = signer.sign(signed_message(t.parts.size(), p.body, prev));
  if (!sig) return std::unexpected(sig.error());
  p.signature = std::move(*sig);
  t.parts.push_back(std::move(p));
  t.proof = next->raw_private();
  std::string s = serialize(t);
  if (s.size() > kMaxTokenBytes)
    return std::unexpected(bad(fmt::format("the token would have {} bytes; allowed: at most {}", s.size(), kMaxTokenBytes)));
  return s;
}
}  // namespace

Result<std::string> issue_token(const TokenKey& root, const TokenBlock& b, std::span<const unsigned char> next_seed) {
  if (b.user.empty() || b.cert_sha256.empty() || b.expires_s <= 0)
    return std::unexpected(bad("a token needs a user, a certificate fingerprint and an expiry"));
  return append_block(ParsedToken{}, root, b, next_seed);
}

Result<std::string> attenuate_token(std::string_view token, const TokenBlock& b, std::span<const unsigned char> next_seed) {
  auto t = parse_token(token);
  if (!t) return std::unexpected(t.error());
  if (!b.user.empty() || !b.cert_sha256.empty())
    return std::unexpected(bad("an attenuation cannot name a user or a certificate; it narrows commands, keys, channels and expiry"));
  if (t->parts.size() >= kMaxBlocks)
    return std::unexpected(bad(fmt::format("the token already has {} blocks; allowed: at most {}", t->parts.size(), kMaxBlocks)));
  if (t->proof.empty()) return std::unexpected(bad("the token carries no proof key (after '~'): it cannot be attenuated"));
  auto signer = TokenKey::ed25519_from_seed(
      std::span(reinterpret_cast<const unsigned char*>(t->proof.data()), t->proof.size()));
  if (!signer) return std::unexpected(signer.error());
  if (signer->raw_public() != t->parts.back().next_key)
    return std::unexpected(bad("the token's proof key does not match its last block (blocks were removed): it cannot be attenuated"));
  return append_block(std::move(*t), *signer, b, next_seed);
}

Result<std::string> token_holder_key(std::string_view token) {
  auto t = parse_token(token);
  if (!t) return std::unexpected(t.error());
  return t->parts.back().next_key;
}

std::string block_revocation_id(std::string_view signature) {
  return hex(sha256_raw(signature)).substr(0, kRevocationIdHexDigits);
}

bool is_revocation_id(std::string_view s) {
  if (s.size() != kRevocationIdHexDigits) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<RevocationTarget> revocation_target(std::string_view token) {
  auto t = parse_token(token);
  if (!t) return std::unexpected(t.error());
  RevocationTarget r;
  r.user = t->parts[0].block.user;
  r.expires_s = t->parts[0].block.expires_s;
  for (auto& p : t->parts) {
    r.ids.push_back(block_revocation_id(p.signature));
    if (p.block.expires_s) r.expires_s = std::min(r.expires_s, p.block.expires_s);
  }
  r.id = r.ids.back();
  return r;
}

Result<Acl::Revocation> parse_revoke_request(std::span<const std::string_view> args, int64_t now_s) {
  constexpr std::string_view kForms =
      "allowed: the token itself (kt1....), or a revocation id (32 hex digits, as `keel token inspect` or ACL "
      "REVOCATIONS shows it) followed by the unix time in seconds its token expires";
  Acl::Revocation r;
  r.revoked_at_s = now_s;
  if (args.size() == 1 && looks_like_token(args[0])) {
    auto t = revocation_target(args[0]);
    if (!t) return make_error(Errc::kInvalidArgument, "the token cannot be read: " + t.error().message);
    r.id = t->id;
    r.user = t->user;
    r.expires_s = t->expires_s;
    return r;
  }
  if (args.size() == 1 && is_revocation_id(args[0]))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("revoking by id needs the unix time its token expires (the entry is kept until "
                                  "then): give <id> <expires-unix-seconds>, or the token itself"));
  if (args.size() == 2 && is_revocation_id(args[0])) {
    int64_t e = 0;
    auto [p, ec] = std::from_chars(args[1].data(), args[1].data() + args[1].size(), e);
    if (ec != std::errc() || p != args[1].data() + args[1].size() || e <= 0)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("'{}' is not an expiry; allowed: the unix time in seconds the token expires (a "
                                    "positive integer)",
                                    args[1].substr(0, 64)));
    r.id = std::string(args[0]);
    r.expires_s = e;
    return r;
  }
  if (args.empty()) return make_error(Errc::kInvalidArgument, fmt::format("nothing to revoke; {}", kForms));
  return make_error(Errc::kInvalidArgument,
                    fmt::format("'{}' cannot be revoked; {}", args[0].substr(0, 64), kForms));
}

Result<TokenGrant> verify_token(std::string_view token, const TokenKey& root, const VerifyInput& in,
                                const CommandCatalog& catalog) {
  auto t = parse_token(token);
  if (!t) return std::unexpected(t.error());
  // Signatures first: nothing a block says counts before its signature is checked.
  for (size_t i = 0; i < t->parts.size(); ++i) {
    auto& p = t->parts[i];
    const std::string prev = i == 0 ? std::string() : t->parts[i - 1].signature;
    bool ok;
    if (i == 0) {
      ok = root.verify(signed_message(0, p.body, prev), p.signature);
    } else {
      auto k = TokenKey::ed25519_public(t->parts[i - 1].next_key);
      ok = k && k->verify(signed_message(i, p.body, prev), p.signature);
    }
    if (!ok)
      return std::unexpected(bad(i == 0 ? "the token's signature does not verify with the cluster's token key "
                                          "(auth.token_public_key_file): it was changed or issued by another key"
                                        : fmt::format("block {}'s signature does not verify: the block was changed after it was signed", i)));
  }
  if (in.require_proof) {
    if (t->proof.empty())
      return std::unexpected(bad("the token carries no proof key (after '~'); present the whole token as issued or attenuated"));
    auto k = TokenKey::ed25519_from_seed(std::span(reinterpret_cast<const unsigned char*>(t->proof.data()), t->proof.size()));
    if (!k || k->raw_public() != t->parts.back().next_key)
      return std::unexpected(bad("the token's proof key does not match its last block (blocks were removed)"));
  }
  TokenGrant g;
  auto& b0 = t->parts[0].block;
  g.user = b0.user;
  g.cert_sha256 = b0.cert_sha256;
  g.blocks = t->parts.size();
  g.expires_s = b0.expires_s;
  for (auto& p : t->parts) {
    if (p.block.expires_s) g.expires_s = std::min(g.expires_s, p.block.expires_s);
    g.revocation_ids.push_back(block_revocation_id(p.signature));
  }
  if (in.now_s >= g.expires_s)
    return std::unexpected(bad(fmt::format("the token expired {} s ago; issue a new one (keel token issue)", in.now_s - g.expires_s)));
  if (in.cert_sha256.empty())
    return std::unexpected(bad(fmt::format("the token is bound to a client certificate (sha256 {}) and this connection presented none; "
                                           "use TLS with that certificate", g.cert_sha256.substr(0, 16))));
  if (in.cert_sha256 != g.cert_sha256)
    return std::unexpected(bad(fmt::format("the token is bound to another client certificate (sha256 {}...), this connection "
                                           "presented {}...; present the certificate the token was issued for",
                                           g.cert_sha256.substr(0, 16), in.cert_sha256.substr(0, 16))));
  for (auto& p : t->parts) {
    User u = new_user("token");
    std::vector<std::string> rules;
    // An allow-list ("+@read +set") starts from no commands, a deny-list ("-del") from all.
    if (p.block.commands.empty() || p.block.commands[0][0] == '-') rules.push_back("allcommands");
    if (p.block.keys.empty()) rules.push_back("allkeys");
    if (p.block.channels.empty()) rules.push_back("allchannels");
    rules.insert(rules.end(), p.block.commands.begin(), p.block.commands.end());
    rules.insert(rules.end(), p.block.keys.begin(), p.block.keys.end());
    rules.insert(rules.end(), p.block.channels.begin(), p.block.channels.end());
    std::string failed;
    if (auto st = apply_rules(u, rules, catalog, &failed); !st)
      return std::unexpected(bad(fmt::format("the token's rule '{}' cannot be used: {}", failed, st.error().message)));
    g.limits.push_back(std::move(u));
  }
  return g;
}

}  // namespace keel::security
