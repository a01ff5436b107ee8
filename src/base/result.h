// Errors are values at module boundaries: Result<T> = std::expected<T, Error>.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace keel {

// One code space for the whole node, so RESP, HTTP and the SDK report the same thing.
enum class Errc {
  kOk = 0,
  kInvalidArgument,  // the caller sent something malformed; the message says what is allowed
  kNotFound,
  kAlreadyExists,
  kWrongType,        // operation against a key holding the wrong kind of value
  kOutOfRange,       // numeric overflow, index past the end
  kLimitExceeded,    // a configured bound was hit (size, count, memory)
  kOutOfMemory,      // maxmemory reached under the noeviction policy
  kUnavailable,      // transient: retry may succeed (no quorum, peer down)
  kTimeout,
  kConflict,         // compare-and-set lost, expected version mismatch
  kIoError,          // disk or network failure
  kCorruption,       // checksum or format failure in stored or received bytes
  kInternal,
};

std::string_view errc_name(Errc c);

struct Error {
  Errc code = Errc::kInternal;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> make_error(Errc code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace keel
