// CACHE.CREATE, CACHE.INFO, CACHE.LIST, CACHE.DROP, CACHE.CLEAR: cache commands that go through
// cluster metadata and every shard, run by the server as coroutines on the connection's shard.
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>

#include "frontends/resp/command.h"
#include "observe/trace_context.h"

namespace keel::cache {
class Service;
}

namespace keel::resp {

// `trace`: the command's trace context when it is sampled (CACHE.CREATE's metadata write is then
// traced: cluster/driver.h, "Tracing").
boost::asio::awaitable<void> execute_cache_admin(cache::Service& caches, const CommandSpec& spec,
                                                 Args argv, Reply& r, std::optional<observe::TraceParent> trace);

}  // namespace keel::resp
