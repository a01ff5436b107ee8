// CACHE.CREATE, CACHE.INFO, CACHE.LIST, CACHE.DROP, CACHE.CLEAR: cache commands that go through
// cluster metadata and every shard, run by the server as coroutines on the connection's shard.
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "frontends/resp/command.h"

namespace keel::cache {
class Service;
}

namespace keel::resp {

boost::asio::awaitable<void> execute_cache_admin(cache::Service& caches, const CommandSpec& spec,
                                                 Args argv, Reply& r);

}  // namespace keel::resp
