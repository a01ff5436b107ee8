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
  // The two ways a request can fail for want of the cluster differ in what the caller knows:
  kUnavailable,      // refused before it was submitted (no quorum, not a member, peer down):
                     // nothing was or will be applied; a retry may succeed and is safe
  kTimeout,          // a deadline passed after submission: for a write the outcome is
                     // unknown (it may still be applied later); "DEADLINE_EXCEEDED"
  kConflict,         // compare-and-set lost, expected version mismatch
  kIoError,          // disk or network failure
  kCorruption,       // checksum or format failure in stored or received bytes
  kInternal,
  // The persistent engine refuses writes: the disk is full (below storage.min_free_bytes) or a
  // write to it failed. Nothing of the refused write was applied; reads still work. RESP
  // answers it with Redis's MISCONF prefix, HTTP with 507. Last: the peer codec clamps
  // unknown codes to the highest it knows.
  kDiskError,
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
