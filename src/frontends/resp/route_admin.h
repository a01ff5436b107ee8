// ROUTE.REGISTER and ROUTE.DEREGISTER, run by the server as coroutines on the connection's
// shard: the arguments become the HTTP door's JSON body (gateway::registration_body_from_args)
// and go to the one registration service. Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "frontends/resp/command.h"

namespace keel::routing {
class Service;
}

namespace keel::resp {

boost::asio::awaitable<void> execute_route_admin(routing::Service& routes, const CommandSpec& spec, Args argv,
                                                 Reply& r);

}  // namespace keel::resp
