// Errors of the keel client SDK. Every fallible call returns Result<T> (std::expected): the SDK
// throws no exceptions across its API. The codes follow the node's error space (src/base/result.h)
// where they overlap, so a caller can tell "retry may help" (kUnavailable, kTimeout, kIoError)
// from "the request was wrong" (kInvalidArgument, kServerError).
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace keel::client {

enum class Errc {
  kInvalidArgument,  // the caller passed something the SDK refuses (message says what is allowed)
  kNotFound,         // the key (or field) does not exist, where absence is an error
  kServerError,      // the server answered with an error reply; message is that reply
  kProtocol,         // the bytes received are not valid RESP, or exceed a configured limit
  kIoError,          // connect/read/write failed, or the peer closed the connection
  kTimeout,          // connect, command or pool-acquire deadline passed
  kClosed,           // the connection, pool or client was closed by this process
  kUnavailable,      // no connection could be obtained (pool closed, no node for a slot)
  kRedirectLimit,    // too many MOVED/ASK redirections for one command
  kUnexpectedReply,  // the reply has a type the call did not expect (e.g. GET returned an array)
};

std::string_view errc_name(Errc c);

struct Error {
  Errc code = Errc::kIoError;
  std::string message;
  std::string to_string() const { return std::string(errc_name(code)) + ": " + message; }
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> make_error(Errc code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace keel::client
