#include "keel/resilience/error.h"

namespace keel::resilience {

std::string_view error_code_name(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::kFailed: return "failed";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kCircuitOpen: return "circuit_open";
    case ErrorCode::kRateLimited: return "rate_limited";
    case ErrorCode::kBulkheadFull: return "bulkhead_full";
    case ErrorCode::kFiltered: return "filtered";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
  }
  return "unknown";
}

std::string Error::to_string() const {
  std::string s(error_code_name(code));
  s += ": ";
  s += message;
  if (!path.empty()) {
    s += " (via ";
    for (size_t i = 0; i < path.size(); ++i) {
      if (i) s += " > ";
      s += path[i];
    }
    s += ")";
  }
  return s;
}

}  // namespace keel::resilience
