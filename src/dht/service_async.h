// The awaitable side of dht::Service for the RESP server's coroutines. Includes Asio: include
// it only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dht/service.h"

namespace keel::dht {

// Resumes once every wait's LSN is held by its quorum of copies. kTimeout (outcome
// unknown: the write is applied here and may survive) after request_timeout_ms, or
// kUnavailable-free kTimeout as well when this node stops being the partition's primary.
boost::asio::awaitable<Status> wait_committed(Service& s, unsigned shard,
                                              std::span<const Wait> waits);  // lives in the caller's frame

// Runs `argv` on node `node` (the partition's primary) and returns its reply bytes, encoded
// for `protocol`. kUnavailable if the request could not be sent (nothing ran), kTimeout if no
// answer came within request_timeout_ms (it may have run). `trace` (may be null: then the
// frame is as without tracing, not one byte more) is the context of the forwarding span, carried
// to the primary so that its span is that span's child.
boost::asio::awaitable<Result<std::string>> forward(Service& s, unsigned shard, uint32_t node,
                                                    std::span<const std::string_view> argv,
                                                    int protocol,
                                                    const observe::TraceParent* trace = nullptr);

}  // namespace keel::dht
