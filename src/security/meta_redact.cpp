#include "security/meta_redact.h"

namespace keel::security {

namespace {
constexpr std::string_view kSecurityDomain = "acl";     // security/acl_service.h's kAclDomain
constexpr std::string_view kTransitDomain = "transit";  // security/transit_service.h's
constexpr std::string_view kSecretsDomain = "secrets";  // security/secrets_service.h's
}

bool is_security_domain(std::string_view domain) {
  return domain == kSecurityDomain || domain == kTransitDomain || domain == kSecretsDomain;
}

std::optional<std::string> redact_meta_value(std::string_view domain, std::string_view key, std::string_view value) {
  if (!is_security_domain(domain)) return std::nullopt;
  if (domain == kTransitDomain || domain == kSecretsDomain) return std::string(kRedacted);  // never shown
  if (key.starts_with("revoked/")) return std::nullopt;
  if (!key.starts_with("users/")) return std::string(kRedacted);
  // A user's description: words separated by single spaces (User::describe). Passwords are
  // stored only as hashes ("#..."); a plaintext ">..." is never stored, but would be hidden too.
  std::string out;
  out.reserve(value.size());
  size_t i = 0;
  while (i <= value.size()) {
    size_t end = value.find(' ', i);
    if (end == std::string_view::npos) end = value.size();
    std::string_view word = value.substr(i, end - i);
    if (i > 0) out += ' ';
    if (word.starts_with('#') || word.starts_with('>') || word.starts_with('!') || word.starts_with('<')) {
      out += word.front();
      out += kRedacted;
    } else {
      out += word;
    }
    i = end + 1;
  }
  return out;
}

std::string generic_write_refusal(std::string_view domain) {
  if (!is_security_domain(domain)) return {};
  if (domain == kTransitDomain)
    return "metadata domain 'transit' holds the transit keys and cannot be written through /v1/meta; use "
           "TRANSIT.CREATE / TRANSIT.ROTATE / TRANSIT.CONFIG / TRANSIT.DELETE or /v1/transit";
  if (domain == kSecretsDomain)
    return "metadata domain 'secrets' holds the secrets and cannot be written through /v1/meta; use SECRET.PUT / "
           "SECRET.DELETE or /v1/secrets";
  return "metadata domain 'acl' holds the users and the revoked tokens and cannot be written through /v1/meta; "
         "change users with ACL SETUSER / ACL DELUSER and revoke tokens with `keel token revoke` or ACL REVOKE";
}

}  // namespace keel::security
