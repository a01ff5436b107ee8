#include "base/result.h"

namespace keel {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::kOk: return "OK";
    case Errc::kInvalidArgument: return "INVALID_ARGUMENT";
    case Errc::kNotFound: return "NOT_FOUND";
    case Errc::kAlreadyExists: return "ALREADY_EXISTS";
    case Errc::kWrongType: return "WRONG_TYPE";
    case Errc::kOutOfRange: return "OUT_OF_RANGE";
    case Errc::kLimitExceeded: return "LIMIT_EXCEEDED";
    case Errc::kOutOfMemory: return "OUT_OF_MEMORY";
    case Errc::kUnavailable: return "UNAVAILABLE";
    case Errc::kTimeout: return "DEADLINE_EXCEEDED";
    case Errc::kConflict: return "CONFLICT";
    case Errc::kIoError: return "IO_ERROR";
    case Errc::kCorruption: return "CORRUPTION";
    case Errc::kInternal: return "INTERNAL";
    case Errc::kDiskError: return "DISK_ERROR";
  }
  return "UNKNOWN";
}

}  // namespace keel
