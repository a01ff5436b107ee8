// Helpers shared by the command family files (not part of the public command API).
#pragma once

#include <climits>
#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include "base/random.h"
#include "frontends/resp/command.h"

namespace keel::resp {

using storage::UpdateAction;
using storage::Value;
using storage::ValueRef;
using storage::ValueType;

// A cluster-metadata change refused or unanswered, in Redis's words: CLUSTERDOWN only when
// nothing was or will be applied; a timeout says the outcome is unknown and `how_to_check`.
inline void reply_metadata_error(Reply& r, const Error& e, std::string_view how_to_check) {
  switch (e.code) {
    case Errc::kUnavailable:
      return r.error("CLUSTERDOWN " + e.message);
    case Errc::kTimeout:
      return r.error("ERR " + e.message + " (the outcome is unknown: the change may still be applied; " +
                     std::string(how_to_check) + ")");
    default:
      return r.error("ERR " + e.message);
  }
}

// Runs a family helper's `fn` on a collection: fn(container, delta) when it describes its change
// element by element (storage/delta.h), else fn(container) with the change recorded whole.
template <class F, class C>
bool call_described(F& fn, C& container, storage::Delta& delta) {
  if constexpr (std::is_invocable_v<F&, C&, storage::Delta&>) {
    return fn(container, delta);
  } else {
    delta.whole();
    return fn(container);
  }
}

// Looks up a key; nullopt if absent.
inline std::optional<ValueRef> lookup(CmdCtx& c, std::string_view key) {
  return c.engine->get(c.partition(key), key, c.now_ms);
}

// The order HSCAN and SSCAN walk a large collection in: a fixed 64-bit hash of the element.
inline uint64_t scan_order(std::string_view element) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a mixer for a uniform spread
  for (unsigned char ch : element) h = (h ^ ch) * 0x100000001b3ULL;
  return mix64(h);
}

// Replies with an engine error using Redis's wording where one exists.
inline void reply_status_error(Reply& r, const Error& e) {
  switch (e.code) {
    case Errc::kOutOfMemory: r.error("OOM " + e.message); break;
    // The persistent engine refuses writes (disk full or failing): Redis's prefix for "cannot
    // persist, writes refused".
    case Errc::kDiskError: r.error("MISCONF " + e.message); break;
    case Errc::kWrongType: r.wrong_type(); break;
    // Redis's definite refusal (clients treat it as "not run", e.g. the SDK's PeerPool moves
    // on) only when nothing was applied; an unknown outcome must not look like one.
    case Errc::kUnavailable: r.error("CLUSTERDOWN " + e.message); break;
    case Errc::kTimeout: r.error("TIMEOUT " + e.message); break;
    default: r.error("ERR " + e.message); break;
  }
}

inline std::string wrong_args(std::string_view cmd) {
  return "ERR wrong number of arguments for '" + to_lower(cmd) + "' command";
}

// A blocking command's timeout in seconds (float), as Redis's getTimeoutFromObjectOrReply:
// stores it in milliseconds (0 = forever) for the server, or replies the error.
inline bool parse_block_timeout(CmdCtx& c, std::string_view s, Reply& r) {
  long double v = 0;
  if (!parse_long_double(s, v)) {
    r.error("ERR timeout is not a float or out of range");
    return false;
  }
  v = std::ceil(v * 1000.0L);
  if (v > static_cast<long double>(LLONG_MAX)) {
    r.error("ERR timeout is out of range");
    return false;
  }
  if (v < 0) {
    r.error("ERR timeout is negative");
    return false;
  }
  auto ms = static_cast<int64_t>(v);
  if (ms > 0 && ms > LLONG_MAX - c.now_ms) {
    r.error("ERR timeout is out of range");
    return false;
  }
  c.client->block_timeout_ms = ms;
  return true;
}

// A blocking command found nothing: it replies as on a timeout and asks the server to block.
inline void would_block(CmdCtx& c) { c.client->would_block = true; }

// Converts a relative or absolute expire option into an absolute deadline in ms.
// Returns false (invalid expire) on non-positive or overflowing values, like Redis.
enum class ExpireUnit { kSeconds, kMillis };
inline bool expire_deadline(int64_t v, ExpireUnit unit, bool absolute, int64_t now_ms, int64_t& out) {
  if (v <= 0) return false;
  if (unit == ExpireUnit::kSeconds) {
    if (v > LLONG_MAX / 1000) return false;
    v *= 1000;
  }
  if (!absolute) {
    if (v > LLONG_MAX - now_ms) return false;
    v += now_ms;
  }
  out = v;
  return true;
}

}  // namespace keel::resp
