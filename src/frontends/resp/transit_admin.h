// TRANSIT.*: transit keys over RESP (docs/security.md, "Transit keys"), run by the server as
// coroutines on the connection's shard through the node's TransitService, as the HTTP door's
// /v1/transit does. Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>

#include "frontends/resp/command.h"
#include "observe/trace_context.h"

namespace keel::security {
class TransitService;
class SecretsService;
}

namespace keel::resp {

// `trace`: the command's trace context when it is sampled (TRANSIT.CREATE's metadata write is then
// traced: cluster/driver.h, "Tracing").
boost::asio::awaitable<void> execute_transit(security::TransitService& transit, const CommandSpec& spec, Args argv,
                                             Reply& r, std::optional<observe::TraceParent> trace);
// SECRET.* (docs/security.md, "Secrets"); `caller` (the user) goes to the audit log.
boost::asio::awaitable<void> execute_secret(security::SecretsService& secrets, const CommandSpec& spec, Args argv,
                                            Reply& r, const std::string& caller);

}  // namespace keel::resp
