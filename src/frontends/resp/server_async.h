// Coroutine entry points of the RESP server for other front ends on the shard loops.
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "frontends/resp/server.h"

namespace keel::resp {

// Merged statistics of every shard (hops to each in turn).
boost::asio::awaitable<Snapshot> collect_snapshot(Server& server);

}  // namespace keel::resp
