// HTTP routes of the caching service:
//   GET    /v1/caches                          list the named caches
//   PUT    /v1/caches/{name}                   create (JSON body: the definition)
//   GET    /v1/caches/{name}                   definition + entries on this node
//   DELETE /v1/caches/{name}                   drop: definition and entries
//   DELETE /v1/caches/{name}/entries           clear: every entry
//   PUT    /v1/caches/{name}/entries/{key}     store the body (?ttl=30s or ?ttl_ms=30000)
//   GET    /v1/caches/{name}/entries/{key}     read
//   DELETE /v1/caches/{name}/entries/{key}     remove
// Errors are {"error": {"code": "...", "message": "..."}}, as everywhere under /v1.
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "observe/trace_context.h"

namespace keel::cache {
class Service;
}

namespace keel::http {

struct CacheAnswer {
  unsigned status = 200;
  nlohmann::json body;
  std::string allow;  // for 405: the methods the route takes
};

using QueryLookup = std::function<const std::string*(std::string_view name)>;
// Runs a command through the RESP server (routing to the key's primary, forwarding, write
// quorum) and returns its RESP2 reply. Entry routes use it, so an entry reached over HTTP
// lives where the same entry reached over RESP does.
using CommandRunner =
    std::function<boost::asio::awaitable<std::string>(const std::vector<std::string>& argv)>;

// `path` starts with /v1/caches; `svc` may be null (no caching service on this node). `trace`:
// the request's own span when it is traced (a create's metadata write is then traced:
// cluster/driver.h, "Tracing").
boost::asio::awaitable<CacheAnswer> handle_caches(cache::Service* svc, std::string_view method,
                                                  std::string_view path, const QueryLookup& query,
                                                  const std::string& body,
                                                  const CommandRunner& run,
                                                  std::optional<observe::TraceParent> trace);

}  // namespace keel::http
