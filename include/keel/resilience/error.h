// Errors of the resilience toolkit. Calls wrapped by the toolkit return Result<T>; the toolkit
// adds its own refusals (circuit open, rate limited, ...) in the same type, and a pipeline
// records in `path` the identities of the stages an error passed through, outermost first.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::resilience {

enum class ErrorCode : uint8_t {
  kFailed,           // the wrapped call failed (application error, not retryable by default)
  kUnavailable,      // transient: the callee is down or overloaded; retrying may succeed
  kTimeout,          // a deadline passed
  kCircuitOpen,      // a circuit breaker refused the call
  kRateLimited,      // a rate limiter refused the call
  kBulkheadFull,     // a bulkhead refused the call
  kFiltered,         // a filter stage refused the request
  kInvalidArgument,  // bad configuration or description; the message says what is allowed
  kNotFound,         // a switch found no route, a registry has no such name
};

std::string_view error_code_name(ErrorCode c) noexcept;

struct Error {
  ErrorCode code = ErrorCode::kFailed;
  std::string message;
  std::vector<std::string> path;  // stage identities, outermost first (filled by pipelines)

  // "kUnavailable: connection refused (via edge > breaker > primary)"
  std::string to_string() const;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message), {}});
}

// The toolkit's default view of which errors are worth retrying: transient ones.
inline bool is_transient(const Error& e) noexcept {
  return e.code == ErrorCode::kUnavailable || e.code == ErrorCode::kTimeout;
}

}  // namespace keel::resilience
