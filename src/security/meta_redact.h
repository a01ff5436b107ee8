// What the generic metadata doors (HTTP /v1/meta: list, get, watch) may show of, and do to, the
// security domains of cluster metadata (domain "acl": users with their Argon2id password hashes,
// revoked tokens; domain "transit": transit keys).
//
// Policy (docs/security.md, "Users and access rules", "In a cluster"): redacted for every
// caller, administrators included. Password hashes never leave a node through /v1/meta: an
// administrator reads users with ACL GETUSER / ACL LIST, which are governed by the users' own
// rules. Writes through /v1/meta to the security domain are refused: a hand-written user would
// bypass ACL SETUSER's checks (and the hashing of passwords).
//
// Pure: strings in, strings out.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace keel::security {

inline constexpr std::string_view kRedacted = "<redacted>";

// Whether `domain` belongs to security (its values are redacted on generic reads and its keys
// cannot be written through generic writes).
bool is_security_domain(std::string_view domain);

// The value a generic read shows for `key` of `domain`; nullopt: the value as stored (every
// domain but security's). In "acl": a user ("users/<name>") keeps its rules with every
// password hash replaced by "#<redacted>"; a revocation ("revoked/<id>", an id and an expiry,
// no secret) is shown as it is; anything else of the domain is replaced whole by "<redacted>".
// In "transit" (transit keys, with their material) and "secrets" every value is "<redacted>".
std::optional<std::string> redact_meta_value(std::string_view domain, std::string_view key, std::string_view value);

// Why a generic write (PUT / DELETE /v1/meta/{key}) to `domain` is refused; "" when allowed.
std::string generic_write_refusal(std::string_view domain);

}  // namespace keel::security
