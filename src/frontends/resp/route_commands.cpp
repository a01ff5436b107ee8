// ROUTE.REGISTER and ROUTE.DEREGISTER: the gateway's self-registration over RESP
// (docs/gateway.md). The server runs them as coroutines (route_admin.h) through the same
// registration service as the HTTP door.
#include "frontends/resp/command.h"

namespace keel::resp {

void register_route_commands(std::vector<CommandSpec>& t) {
  constexpr auto L = Routing::kLocal;
  t.push_back({"route.register", -4, kWrite, 0, 0, 0, L, nullptr, "route",
               "Registers or renews a gateway instance: service id address [LEASE ms] [ROUTE \"METHOD /path\"]... "
               "[WEIGHT n] [ZONE z] [VERSION v].",
               "0.1.0"});
  t.push_back({"route.deregister", 3, kWrite, 0, 0, 0, L, nullptr, "route",
               "Removes a gateway instance's registration: service id.", "0.1.0"});
}

}  // namespace keel::resp
