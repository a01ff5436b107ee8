#include "frontends/resp/route_admin.h"

#include <fmt/format.h>

#include <string>
#include <vector>

#include "frontends/resp/family_util.h"
#include "services/routing/service.h"

namespace keel::resp {

namespace {

void reply_error(Reply& r, const Error& e) { reply_metadata_error(r, e, "check GET /v1/routes"); }

}  // namespace

boost::asio::awaitable<void> execute_route_admin(routing::Service& routes, const CommandSpec& spec, Args a,
                                                 Reply& r) {
  std::string service(a[1]), id(a[2]);
  if (spec.name == "route.register") {
    std::vector<std::string_view> rest(a.begin() + 3, a.end());
    auto body = gateway::registration_body_from_args(rest);
    if (!body) co_return r.error("ERR " + body.error().message);
    auto reg = co_await routes.register_instance(service, id, *body);
    if (!reg) co_return reply_error(r, reg.error());
    r.map(6);
    r.bulk("service");
    r.bulk(reg->service);
    r.bulk("id");
    r.bulk(reg->id);
    r.bulk("address");
    r.bulk(reg->address);
    r.bulk("routes");
    r.array(reg->routes.size());
    for (auto& rt : reg->routes) r.bulk(rt.text());
    r.bulk("lease_ms");
    r.integer(reg->lease_ms);
    r.bulk("expires_at_ms");
    r.integer(reg->expires_at_ms);
    co_return;
  }
  auto gone = co_await routes.deregister(service, id);
  if (!gone) co_return reply_error(r, gone.error());
  co_return r.integer(*gone ? 1 : 0);
}

}  // namespace keel::resp
