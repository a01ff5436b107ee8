#include "security/http_signature.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"
#include "base/base64.h"

namespace keel::security {

namespace {

Error bad(std::string m) { return Error{Errc::kInvalidArgument, std::move(m)}; }

constexpr int64_t kClockSkewS = 5;

struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i;
    return true;
  }
  void spaces() {
    while (peek() == ' ') ++i;
  }
};

bool key_char(char c, bool first) {
  if (c >= 'a' && c <= 'z') return true;
  if (c == '*') return true;
  if (first) return false;
  return (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

std::optional<std::string> sf_key(Cursor& c) {
  std::string k;
  if (!key_char(c.peek(), true)) return std::nullopt;
  while (!c.done() && key_char(c.peek(), k.empty()) && k.size() < 64) k.push_back(c.s[c.i++]);
  return k;
}

std::optional<std::string> sf_string(Cursor& c) {
  if (!c.eat('"')) return std::nullopt;
  std::string out;
  while (!c.done()) {
    char ch = c.s[c.i++];
    if (ch == '"') return out;
    if (ch == '\\') {
      if (c.done()) return std::nullopt;
      ch = c.s[c.i++];
      if (ch != '"' && ch != '\\') return std::nullopt;
    } else if (ch < 0x20 || ch > 0x7e) {
      return std::nullopt;
    }
    out.push_back(ch);
  }
  return std::nullopt;
}

std::optional<int64_t> sf_integer(Cursor& c) {
  size_t start = c.i;
  bool neg = c.eat('-');
  int64_t v = 0;
  size_t digits = 0;
  while (!c.done() && c.peek() >= '0' && c.peek() <= '9') {
    if (++digits > 15) return std::nullopt;  // RFC 8941: at most 15 digits
    v = v * 10 + (c.s[c.i++] - '0');
  }
  if (digits == 0) {
    c.i = start;
    return std::nullopt;
  }
  return neg ? -v : v;
}

}  // namespace

Result<SignatureInput> parse_signature_input(std::string_view header) {
  if (header.size() > kMaxSignatureHeaderBytes)
    return std::unexpected(bad(fmt::format("Signature-Input has {} bytes; allowed: at most {}", header.size(),
                                           kMaxSignatureHeaderBytes)));
  const std::string form =
      "allowed: sig1=(\"@method\" \"@path\" \"content-digest\");created=<unix s>;expires=<unix s>;nonce=\"...\";keyid=\"token\"";
  Cursor c{header};
  c.spaces();
  SignatureInput in;
  auto label = sf_key(c);
  if (!label || !c.eat('=')) return std::unexpected(bad("Signature-Input must start with a label and '='; " + form));
  in.label = *label;
  const size_t params_start = c.i;
  if (!c.eat('(')) return std::unexpected(bad("Signature-Input: the covered components must be a list in (); " + form));
  for (;;) {
    c.spaces();
    if (c.eat(')')) break;
    auto comp = sf_string(c);
    if (!comp) return std::unexpected(bad("Signature-Input: each covered component must be a quoted string; " + form));
    if (in.components.size() >= 8) return std::unexpected(bad("Signature-Input: more than 8 covered components"));
    in.components.push_back(*comp);
  }
  std::set<std::string> seen;
  while (c.eat(';')) {
    auto k = sf_key(c);
    if (!k || !c.eat('=')) return std::unexpected(bad("Signature-Input: a parameter must be name=value; " + form));
    if (!seen.insert(*k).second) return std::unexpected(bad(fmt::format("Signature-Input: parameter '{}' given twice", *k)));
    if (*k == "created" || *k == "expires") {
      auto v = sf_integer(c);
      if (!v || *v <= 0)
        return std::unexpected(bad(fmt::format("Signature-Input: '{}' must be a positive integer (unix seconds)", *k)));
      (*k == "created" ? in.created_s : in.expires_s) = *v;
    } else if (*k == "nonce" || *k == "keyid" || *k == "alg" || *k == "tag") {
      auto v = sf_string(c);
      if (!v) return std::unexpected(bad(fmt::format("Signature-Input: '{}' must be a quoted string", *k)));
      if (*k == "nonce") in.nonce = *v;
      else if (*k == "keyid") in.keyid = *v;
      else if (*k == "alg") in.alg = *v;
    } else {
      return std::unexpected(bad(fmt::format("Signature-Input: unknown parameter '{}'; allowed: created, expires, nonce, keyid, alg, tag", *k)));
    }
  }
  in.params = std::string(header.substr(params_start, c.i - params_start));
  c.spaces();
  if (!c.done() && !c.eat(','))
    return std::unexpected(bad("Signature-Input: unexpected text after the parameters; " + form));
  return in;
}

Result<std::string> parse_signature(std::string_view header, std::string_view label) {
  if (header.size() > kMaxSignatureHeaderBytes)
    return std::unexpected(bad(fmt::format("Signature has {} bytes; allowed: at most {}", header.size(), kMaxSignatureHeaderBytes)));
  Cursor c{header};
  for (int member = 0; member < 8; ++member) {
    c.spaces();
    auto k = sf_key(c);
    if (!k || !c.eat('=') || !c.eat(':'))
      return std::unexpected(bad("Signature must be label=:base64 of the signature: (e.g. sig1=:MEUCIQ...:)"));
    size_t start = c.i;
    while (!c.done() && c.peek() != ':') ++c.i;
    if (!c.eat(':')) return std::unexpected(bad("Signature: the byte sequence must end with ':'"));
    if (*k == label) {
      auto raw = base64_decode(header.substr(start, c.i - 1 - start));
      if (!raw) return std::unexpected(bad("Signature: the signature is not base64"));
      return *raw;
    }
    c.spaces();
    if (!c.eat(',')) break;
  }
  return std::unexpected(bad(fmt::format("Signature has no member '{}' (the label in Signature-Input)", label)));
}

Result<std::string> signature_base(const SignatureInput& in, const RequestFacts& req, int64_t now_s, int64_t window_s) {
  auto has = [&](std::string_view c) { return std::find(in.components.begin(), in.components.end(), c) != in.components.end(); };
  for (std::string_view need : {"@method", "@path", "content-digest"})
    if (!has(need))
      return std::unexpected(bad(fmt::format("the signature must cover \"{}\"; it must cover \"@method\", \"@path\" and "
                                             "\"content-digest\" (\"@query\" may be added)",
                                             need)));
  if (!in.alg.empty() && in.alg != "ed25519")
    return std::unexpected(bad(fmt::format("alg '{}' is not supported; allowed: ed25519 (or leave it out)", in.alg)));
  if (in.created_s == 0 || in.expires_s == 0)
    return std::unexpected(bad("the signature needs 'created' and 'expires' parameters (unix seconds)"));
  if (in.nonce.empty() || in.nonce.size() > kMaxNonceBytes)
    return std::unexpected(bad(fmt::format("the signature needs a 'nonce' of 1..{} characters, fresh for every request", kMaxNonceBytes)));
  if (in.created_s > now_s + kClockSkewS)
    return std::unexpected(bad(fmt::format("the signature was created {} s in the future; allowed: at most {} s of clock skew",
                                           in.created_s - now_s, kClockSkewS)));
  if (now_s >= in.expires_s) return std::unexpected(bad(fmt::format("the signature expired {} s ago", now_s - in.expires_s)));
  if (in.expires_s - in.created_s > window_s || in.expires_s < in.created_s)
    return std::unexpected(bad(fmt::format("the signature is valid for {} s; allowed: at most {} s (auth.signature_window_s)",
                                           in.expires_s - in.created_s, window_s)));
  // The body digest: RFC 9530's Content-Digest with sha-256.
  std::string_view cd = req.content_digest;
  if (!cd.starts_with("sha-256=:") || !cd.ends_with(":") || cd.size() < 11)
    return std::unexpected(bad("Content-Digest must be sha-256=:<base64 of the SHA-256 of the body>:"));
  auto digest = base64_decode(cd.substr(9, cd.size() - 10));
  if (!digest || digest->size() != 32) return std::unexpected(bad("Content-Digest: the sha-256 value is not 32 bytes of base64"));
  // (The caller compares the digest with the body: hashing is OpenSSL's, outside this file.)
  std::string base;
  for (auto& comp : in.components) {
    std::string_view value;
    if (comp == "@method") value = req.method;
    else if (comp == "@path") value = req.path;
    else if (comp == "@query") {
      base += fmt::format("\"@query\": ?{}\n", req.query);
      continue;
    } else if (comp == "content-digest") value = req.content_digest;
    else
      return std::unexpected(bad(fmt::format("the signature covers \"{}\"; allowed components: \"@method\", \"@path\", "
                                             "\"@query\", \"content-digest\"",
                                             comp.substr(0, 64))));
    base += fmt::format("\"{}\": {}\n", comp, value);
  }
  base += "\"@signature-params\": " + in.params;
  return base;
}

std::string base64_encode(std::string_view in) { return keel::base64_encode(in, Base64::kStandard); }

std::optional<std::string> base64_decode(std::string_view in) { return keel::base64_decode(in, Base64::kStandard); }

// ---- nonce store ----

void NonceStore::expire(int64_t now_s) {
  while (!by_expiry_.empty() && by_expiry_.begin()->first <= now_s) {
    by_key_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
  }
}

NonceStore::Admit NonceStore::admit(std::string_view key, int64_t expires_s, int64_t now_s) {
  expire(now_s);
  if (by_key_.find(key) != by_key_.end()) return Admit::kReplay;
  if (by_key_.size() >= capacity_) return Admit::kFull;
  by_key_.emplace(std::string(key), expires_s);
  by_expiry_.emplace(expires_s, std::string(key));
  KEEL_ASSERT(by_key_.size() == by_expiry_.size());
  KEEL_ASSERT(by_key_.size() <= capacity_);
  return Admit::kOk;
}

}  // namespace keel::security
