// The security audit log (docs/security.md, "Audit log"): one line per security event through
// the `audit` log component (log.level "audit=off" silences it). With log.format = json a line
// is
//   {"ts_ms":..,"level":"info","component":"audit","msg":"auth.failure door=resp user=alice ...",
//    "event":"auth.failure","fields":{"door":"resp","user":"alice",...}}
// The event names (kAuth*, ...) are stable: alerting may match them.
//
// Never a secret: callers pass names, addresses, ids, versions and reasons, never a password,
// a hash, a token, a proof or a key; rules are passed through redact_rules(). Every value is
// cut to kMaxFieldBytes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::security::audit {

inline constexpr std::string_view kAuthSuccess = "auth.success";    // door, method, user, addr
inline constexpr std::string_view kAuthFailure = "auth.failure";    // door, method, user, addr, reason
inline constexpr std::string_view kAuthLocked = "auth.locked";      // door, user, addr, subject (refused unchecked)
inline constexpr std::string_view kLockout = "auth.lockout";        // subject, locked_ms (a lock began)
inline constexpr std::string_view kUnlock = "auth.unlock";          // subject, cleared, by, door, addr
inline constexpr std::string_view kUserSet = "acl.setuser";         // user, rules (redacted), by, door, addr
inline constexpr std::string_view kUserDeleted = "acl.deluser";     // users, deleted, by, door, addr
inline constexpr std::string_view kTokenRevoked = "token.revoke";   // id, user, expires_s, by, door, addr
inline constexpr std::string_view kKeyRotated = "keys.rotate";      // version, by, door, addr
inline constexpr std::string_view kKeyRetired = "keys.retire";      // version, by, door, addr
inline constexpr std::string_view kMasterKeyChanged = "keys.master";  // source (where the new key is), door
inline constexpr std::string_view kTransitKey = "transit.key";      // transit_key, change, version, door
inline constexpr std::string_view kSecretRead = "secret.read";      // path, version, door (never the value)
inline constexpr std::string_view kSecretWrite = "secret.write";    // path, version or deleted or versions+delete|undelete|destroy, door

inline constexpr size_t kMaxFieldBytes = 256;

using Fields = std::vector<std::pair<std::string_view, std::string>>;

// Pure: the fields as one JSON object ({"k":"v",...}, values cut and escaped), and the text
// line ("<event> k=v k=v").
std::string fields_json(const Fields& fields);
std::string text(std::string_view event, const Fields& fields);
// Pure: ACL rules with every password or hash replaced (">x" -> "><redacted>", "#h", "<x", "!h").
std::string redact_rules(std::span<const std::string> rules);
std::string redact_rules(std::span<const std::string_view> rules);

// Logs the event at info (warn for failures and locks) on the audit component. Any thread.
void emit(std::string_view event, const Fields& fields);

// An event as emit() hands it to the sink (the node's audit stream, security/audit_stream.h):
// every value already cut to kMaxFieldBytes; `trace_id` is the 32 hex digits of the request's
// trace when the event was emitted inside one (observe/log_context.h), else empty.
struct Record {
  std::string event;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string trace_id;
};
// Process-wide: every emit() also hands its event to `sink`, whatever the audit log level. The
// sink is called on the emitting thread, possibly with the caller's locks held: it must only
// queue (never block, never run a command, never emit). One sink at a time; set_sink replaces
// the previous one and returns a handle; clear_sink(handle) removes it if it is still the one
// set, and returns once no emit() is calling it any more.
using Sink = std::function<void(Record)>;
uint64_t set_sink(Sink sink);
void clear_sink(uint64_t handle);

// auth.success is logged at most once per (door, method, user, address) per
// kSuccessIntervalMs: HTTP authenticates every request. Any thread; bounded (forgets all when
// it holds kMaxSuccessKeys). Returns whether to log.
inline constexpr int64_t kSuccessIntervalMs = 60000;
inline constexpr size_t kMaxSuccessKeys = 4096;
bool success_due(std::string_view key, int64_t now_ms);

}  // namespace keel::security::audit
