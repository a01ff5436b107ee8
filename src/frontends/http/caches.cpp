#include "frontends/http/caches.h"

#include <fmt/format.h>

#include <charconv>

#include "base/clock.h"
#include "frontends/http/resp_reply.h"
#include "frontends/http/server.h"
#include "services/cache/service.h"

namespace keel::http {

namespace {

using json = nlohmann::json;

unsigned status_for(Errc c) {
  switch (c) {
    case Errc::kInvalidArgument:
      return 400;
    case Errc::kNotFound:
      return 404;
    case Errc::kAlreadyExists:
    case Errc::kConflict:
      return 409;
    case Errc::kLimitExceeded:
      return 413;
    case Errc::kOutOfMemory:
    case Errc::kDiskError:
      return 507;
    case Errc::kUnavailable:
      return 503;
    case Errc::kTimeout:
      return 504;
    case Errc::kWrongType:
      return 409;
    default:
      return 500;
  }
}

CacheAnswer error(unsigned status, std::string_view code, std::string message) {
  return CacheAnswer{status, json{{"error", {{"code", code}, {"message", std::move(message)}}}},
                     ""};
}
CacheAnswer error(const Error& e) {
  return error(status_for(e.code), errc_name(e.code), e.message);
}

CacheAnswer not_allowed(std::string_view method, std::string_view route, std::string allow) {
  auto a = error(405, "METHOD_NOT_ALLOWED",
                 fmt::format("{} is not allowed on {}; allowed: {}", method, route, allow));
  a.allow = std::move(allow);
  return a;
}

json active_json(const cache::Active& a) {
  json j = cache::to_json(a.def);
  j["generation"] = a.generation;
  return j;
}

// A RESP error reply of an entry command as an HTTP answer.
CacheAnswer resp_error(const std::string& err) {
  auto rest = [&](size_t n) { return err.substr(std::min(n, err.size())); };
  if (err.starts_with("ERR no cache named")) return error(404, "NOT_FOUND", rest(4));
  if (err.starts_with("ERR invalid expire") || err.starts_with("ERR name") ||
      err.starts_with("ERR TTL"))
    return error(400, "INVALID_ARGUMENT", rest(4));
  if (err.starts_with("ERR entry of")) return error(413, "LIMIT_EXCEEDED", rest(4));
  auto e = resp_error_to_http(err);  // the data path's own errors, as for /v1/kv
  return error(e.status, e.code, std::move(e.message));
}

}  // namespace

boost::asio::awaitable<CacheAnswer> handle_caches(cache::Service* svc, std::string_view method,
                                                  std::string_view path, const QueryLookup& query,
                                                  const std::string& body,
                                                  const CommandRunner& run,
                                                  std::optional<observe::TraceParent> trace) {
  if (!svc) co_return error(503, "UNAVAILABLE", "the caching service is not running on this node");
  std::string_view rest = path.substr(std::string_view("/v1/caches").size());
  if (rest.empty() || rest == "/") {
    if (method != "GET") co_return not_allowed(method, "/v1/caches", "GET");
    auto r = co_await svc->list();
    if (!r) co_return error(r.error());
    json caches = json::array();
    for (auto& a : *r) caches.push_back(active_json(a));
    co_return CacheAnswer{200, json{{"caches", caches}}, ""};
  }
  rest.remove_prefix(1);
  auto slash = rest.find('/');
  std::string name;
  if (!url_decode(rest.substr(0, slash), name, false))
    co_return error(400, "INVALID_ARGUMENT", "malformed percent-escape in the cache name");
  std::string_view tail = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  int64_t now = SystemClock::instance().now_ms();

  if (tail.empty()) {  // /v1/caches/{name}
    if (method == "PUT" || method == "POST") {
      auto d = cache::from_json_text(
          name, body.empty() ? std::string_view("{}") : std::string_view(body));
      if (!d) co_return error(d.error());
      auto r = co_await svc->create(std::move(*d), std::move(trace));
      if (!r) co_return error(r.error());
      co_return CacheAnswer{200, active_json(*r), ""};
    }
    if (name == cache::kDefaultCache)
      co_return error(400, "INVALID_ARGUMENT",
                      "'default' is the plain keyspace, not a named cache: it has no definition "
                      "and cannot be dropped (use /v1/caches/default/entries/{key} for its keys)");
    if (method == "GET") {
      auto r = co_await svc->info(name);
      if (!r) co_return error(r.error());
      json j = active_json(r->active);
      j["entries"] = r->entries;
      j["bytes"] = r->bytes;
      j["partitions"] = r->partitions;
      const auto& d = r->active.def;
      j["partitionMaxEntries"] =
          d.max_entries ? json(cache::per_partition(d.max_entries, r->partitions)) : json(nullptr);
      j["partitionMaxMemory"] = d.max_memory_bytes
                                    ? json(cache::per_partition(d.max_memory_bytes, r->partitions))
                                    : json(nullptr);
      co_return CacheAnswer{200, j, ""};
    }
    if (method == "DELETE") {
      auto r = co_await svc->drop(name);
      if (!r) co_return error(r.error());
      co_return CacheAnswer{200, json{{"name", name}, {"dropped", true}, {"entriesRemoved", *r}},
                            ""};
    }
    co_return not_allowed(method, "/v1/caches/{name}", "GET, PUT, DELETE");
  }

  if (tail == "/entries" || tail == "/entries/") {
    if (method != "DELETE")
      co_return not_allowed(method, "/v1/caches/{name}/entries", "DELETE (clears the cache)");
    if (name == cache::kDefaultCache)
      co_return error(400, "INVALID_ARGUMENT",
                      "the default cache is the plain keyspace; clear it with FLUSHALL");
    auto r = co_await svc->clear(name);
    if (!r) co_return error(r.error());
    co_return CacheAnswer{200, json{{"name", name}, {"cleared", true}, {"entriesRemoved", *r}}, ""};
  }

  if (!tail.starts_with("/entries/"))
    co_return error(
        404, "NOT_FOUND",
        fmt::format("no route for {} {}; cache routes: /v1/caches, /v1/caches/{{name}}, "
                    "/v1/caches/{{name}}/entries, /v1/caches/{{name}}/entries/{{key}}",
                    method, path));
  std::string key;
  if (!url_decode(tail.substr(9), key, false))
    co_return error(400, "INVALID_ARGUMENT", "malformed percent-escape in the key");
  if (key.empty())
    co_return error(400, "INVALID_ARGUMENT",
                    "the key must not be empty: use /v1/caches/{name}/entries/{key}");

  if (method == "GET") {
    if (run) {
      std::vector<std::string> cmd{"CACHE.GET", name, key};
      auto v = parse_resp2(co_await run(cmd));
      if (v.kind == '-') co_return resp_error(v.text);
      if (v.is_null)
        co_return error(404, "NOT_FOUND", fmt::format("key '{}' is not in cache '{}'", key, name));
      std::vector<std::string> tcmd{"CACHE.TTL", name, key};
      auto t = parse_resp2(co_await run(tcmd));
      json j{{"cache", name}, {"key", key}};
      if (valid_utf8(v.text))
        j["value"] = v.text;
      else
        j["value_hex"] = fmt::format("{:02x}", fmt::join(v.text, ""));
      j["ttl_ms"] = t.kind == ':' && t.number >= 0 ? t.number : -1;
      co_return CacheAnswer{200, j, ""};
    }
    auto r = co_await svc->get(name, key, now);
    if (!r) co_return error(r.error());
    if (!*r)
      co_return error(404, "NOT_FOUND", fmt::format("key '{}' is not in cache '{}'", key, name));
    json j{{"cache", name}, {"key", key}};
    if (valid_utf8((*r)->value))
      j["value"] = (*r)->value;
    else
      j["value_hex"] = fmt::format("{:02x}", fmt::join((*r)->value, ""));
    j["ttl_ms"] = (*r)->expire_at_ms ? std::max<int64_t>(0, (*r)->expire_at_ms - now) : -1;
    co_return CacheAnswer{200, j, ""};
  }
  if (method == "PUT" || method == "POST") {
    std::optional<int64_t> ttl;
    if (auto* t = query("ttl")) {
      auto d = cache::parse_duration_ms("ttl", *t);
      if (!d) co_return error(d.error());
      ttl = *d;
    } else if (auto* tm = query("ttl_ms")) {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(tm->data(), tm->data() + tm->size(), v);
      if (tm->empty() || ec != std::errc() || p != tm->data() + tm->size() || v <= 0 ||
          v > cache::kMaxTtlMs)
        co_return error(
            400, "INVALID_ARGUMENT",
            fmt::format(
                "ttl_ms must be a positive integer number of milliseconds up to 2^50, got '{}'",
                *tm));
      ttl = v;
    }
    if (run) {
      std::vector<std::string> cmd{"CACHE.PUT", name, key, body};
      if (ttl) {
        cmd.push_back("PX");
        cmd.push_back(std::to_string(*ttl));
      }
      auto v = parse_resp2(co_await run(cmd));
      if (v.kind == '-') co_return resp_error(v.text);
      co_return CacheAnswer{
          200, json{{"cache", name}, {"key", key}, {"stored", true}, {"bytes", body.size()}}, ""};
    }
    auto r = co_await svc->put(name, key, body, ttl, now);
    if (!r) co_return error(r.error());
    co_return CacheAnswer{200,
                          json{{"cache", name},
                               {"key", key},
                               {"stored", true},
                               {"bytes", body.size()},
                               {"evicted", r->evicted}},
                          ""};
  }
  if (method == "DELETE") {
    if (run) {
      std::vector<std::string> cmd{"CACHE.DEL", name, key};
      auto v = parse_resp2(co_await run(cmd));
      if (v.kind == '-') co_return resp_error(v.text);
      co_return CacheAnswer{200, json{{"cache", name}, {"key", key}, {"deleted", v.number > 0}},
                            ""};
    }
    auto r = co_await svc->remove(name, key, now);
    if (!r) co_return error(r.error());
    co_return CacheAnswer{200, json{{"cache", name}, {"key", key}, {"deleted", *r}}, ""};
  }
  co_return not_allowed(method, "/v1/caches/{name}/entries/{key}", "GET, PUT, DELETE");
}

}  // namespace keel::http
