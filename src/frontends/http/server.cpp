#include "frontends/http/server.h"

#include <openssl/evp.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <atomic>
#include <charconv>
#include <fstream>
#include <future>
#include <limits>
#include <list>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/slots.h"
#include "dht/service.h"
#include "runtime/cluster/meta_await.h"
#include "runtime/cluster/meta_service.h"
#include "cluster/peer_address.h"
#include "frontends/http/caches.h"
#include "frontends/http/gateway_impl.h"
#include "frontends/http/metrics.h"
#include "frontends/http/resp_reply.h"
#include "frontends/http/ui_page.h"
#include "frontends/http/write_plain.h"
#include "frontends/resp/server_async.h"
#include "frontends/resp/command.h"
#include "observe/health_board.h"
#include "security/acl.h"
#include "security/acl_service.h"
#include "security/client_limits.h"
#include "security/secrets_service.h"
#include "security/transit_service.h"
#include "security/http_signature.h"
#include "security/audit.h"
#include "security/meta_redact.h"
#include "security/token.h"
#include "security/tls.h"
#include "base/base64.h"
#include "observe/log_export.h"
#include "observe/slowlog.h"
#include "observe/tracer.h"
#include "observe/signal_hub.h"
#include "runtime/shards.h"
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kHttp); }
}  // namespace

namespace keel::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
// A request and, when tracing is on, its trace decided before it is handled (begin_trace):
// the commands it runs through the RESP server become children of its span.
struct Request : bhttp::request<bhttp::string_body> {
  using Base = bhttp::request<bhttp::string_body>;
  Request() = default;
  explicit Request(Base&& b) : Base(std::move(b)) {}
  std::optional<observe::TraceParent> parent;  // a valid `traceparent` (+ `tracestate`)
  bool head = false;                           // the sampler's head decision
  uint64_t low = 0;                            // new trace: the random low bits of its id
  // This request's own span as the parent of what it runs: set when it has a parent or was
  // sampled; an unsampled request without a parent has none (and costs nothing more).
  std::optional<observe::TraceParent> self;
};
using Response = bhttp::response<bhttp::string_body>;

// What the HTTP door logs for a request (its own lines, its audit events) carries the request's
// trace ids in JSON logs, as a RESP command's lines do (observe/log_context.h): `f` runs under
// the request's log scope. Only around synchronous work: a scope never spans a co_await.
template <class F>
void for_request(const Request& req, F&& f) {
  observe::LogContext ctx;
  std::optional<observe::LogScope> scope;
  if (req.self) {
    ctx.trace_id = req.self->trace_id;
    ctx.span_id = req.self->span_id;
    scope.emplace(&ctx);
  }
  f();
}

bool url_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int h = hex(in[i + 1]), l = hex(in[i + 2]);
      if (h < 0 || l < 0) return false;
      out.push_back(static_cast<char>(h * 16 + l));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

namespace {

std::string base64(std::string_view s) { return keel::base64_encode(s); }

std::string hex_encode(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) {
    o.push_back(d[c >> 4]);
    o.push_back(d[c & 15]);
  }
  return o;
}

bool hex_decode(std::string_view s, std::string& out) {
  if (s.size() % 2) return false;
  out.clear();
  for (size_t i = 0; i < s.size(); i += 2) {
    unsigned v;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
    if (ec != std::errc() || p != s.data() + i + 2) return false;
    out.push_back(static_cast<char>(v));
  }
  return true;
}

// Puts a byte string into a JSON object as "<name>" if it is UTF-8, else "<name>_base64".
void put_bytes(json& j, const std::string& name, std::string_view v) {
  if (valid_utf8(v)) j[name] = std::string(v);
  else j[name + "_base64"] = base64(v);
}

Response json_response(const Request& req, bhttp::status st, const json& body) {
  Response res{st, req.version()};
  res.set(bhttp::field::server, "keel");
  res.set(bhttp::field::content_type, "application/json");
  res.body() = body.dump() + "\n";
  return res;
}

Response error_response(const Request& req, bhttp::status st, std::string_view code, std::string message) {
  return json_response(req, st, json{{"error", {{"code", code}, {"message", std::move(message)}}}});
}

Response meta_error(const Request& req, const Error& e);  // a metadata error as its HTTP status (below)
std::string http_caller(const Request& req);              // who a request authenticated as (below)

struct Query {
  std::vector<std::pair<std::string, std::string>> items;
  const std::string* get(std::string_view k) const {
    for (auto& [a, b] : items)
      if (a == k) return &b;
    return nullptr;
  }
};

bool parse_query(std::string_view q, Query& out) {
  while (!q.empty()) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    std::string k, v;
    if (!url_decode(part.substr(0, eq), k, true)) return false;
    if (eq != std::string_view::npos && !url_decode(part.substr(eq + 1), v, true)) return false;
    out.items.emplace_back(std::move(k), std::move(v));
  }
  return true;
}

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

struct Server::Impl {
  runtime::ShardSet& shards;
  resp::Server& resp;
  dht::Service* dht = nullptr;
  ServerOptions opt;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<tcp::acceptor> tls_acceptor;  // HTTPS, while opt.tls is set
  int bound_tls_port = 0;
  std::atomic<uint64_t> tls_handshake_failures{0};
  std::atomic<uint64_t> http_timeouts[3] = {0, 0, 0};  // idle, header, body (keel_http_timeouts_total)
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> requests{0};
  std::list<beast::tcp_stream*> sessions;  // touched only on shard 0
  cluster::MetaService* meta = nullptr;
  cache::Service* caches = nullptr;
  observe::HealthBoard* health = nullptr;
  observe::Tracer* tracer = nullptr;
  observe::LogExporter* log_exporter = nullptr;
  Gateway* gateway = nullptr;
  security::AclService* acl_service = nullptr;
  security::Acl* acl = nullptr;

  // Users and access rules on /v1/*: who is asking (Authorization: Basic, else the default
  // user) and whether the command the request is equivalent to is allowed. An answer (401,
  // 403) refuses the request; nullopt lets it through.
  // The client as the connection knows it: its address, and on HTTPS the certificate it
  // presented (what tokens are bound to, and what auth.cert_users maps to a user).
  struct Peer {
    std::string ip;
    std::string cert_sha256;
    std::vector<std::string> uris;
  };
  awaitable<std::optional<Response>> authorize(const Request& req, const Peer& peer);
  // Signed requests: the nonces of accepted signatures (shard 0's thread only, under nonce_mu
  // for /metrics), and refusals by reason.
  std::mutex nonce_mu;
  std::unique_ptr<security::NonceStore> nonces;
  std::atomic<uint64_t> signed_ok{0}, signed_replay{0}, signed_full{0}, signed_invalid{0};
  // The signature of a request carrying one, checked against the token's holder key; an
  // answer refuses the request.
  // `nonce_key` and `nonce_expires_s` get the accepted nonce (per holder key) and until when it
  // must not be seen again, for the cluster-wide check (authorize()).
  std::optional<Response> check_signature(const Request& req, std::string_view token, std::string_view path,
                                          std::string_view query, const std::string& ip, std::string& nonce_key,
                                          int64_t& nonce_expires_s);
  // The same nonce seen through another node of the cluster (a key in the keyspace, set once
  // with SET NX until the signature expires): the refusal, or nullopt when it is new. Fails
  // closed: when the check cannot be made, the request is refused.
  awaitable<std::optional<Response>> check_nonce_cluster_wide(const Request& req, const std::string& nonce_key,
                                                              int64_t expires_s, const std::string& ip);

  Impl(runtime::ShardSet& s, resp::Server& r, ServerOptions o) : shards(s), resp(r), opt(std::move(o)) {
    nonces = std::make_unique<security::NonceStore>(opt.nonce_capacity);
  }

  runtime::Shard& owner_of(std::string_view key) {
    return shards.shard(shards.owner(key_partition(key, shards.partitions())));
  }

  // `client_ip`: the peer's address, for the audit log.
  awaitable<Response> handle(const Request& req, std::string client_ip = {});
  Response handle_health(const Request& req, std::string_view path, const Query& q);
  void begin_trace(Request& req);
  // The trace id of the span kept for the request, if one was.
  std::optional<observe::TraceId> trace_request(const Request& req, Response& res, int64_t t0_ns);
  observe::SlowLog* slow = nullptr;  // the node's slow log (null: none)
  void log_slow(const Request& req, const Response& res, int64_t t0_ns, const std::string& client_ip,
                const std::optional<observe::TraceId>& traced);
  // GET /v1/slowlog[?count=N]: the slow log as JSON; DELETE: empties it.
  Response handle_slowlog(const Request& req, const Query& q);
  // GET /v1/traces[?count=N]: the recent slow traces this node keeps spans of;
  // GET /v1/traces/{trace_id}: those spans (observe/trace_ring.h).
  Response handle_traces(const Request& req, std::string_view path, const Query& q);
  awaitable<Response> handle_kv(const Request& req, const std::string& key, const Query& q);
  awaitable<Response> handle_kv_routed(const Request& req, const std::string& key, const Query& q);
  // Runs a command through the RESP server (routing, forwarding, write quorum) for `req`; its
  // RESP2 reply.
  awaitable<std::string> run_command(const Request& req, const std::vector<std::string>& argv);
  awaitable<Response> handle_list(const Request& req, const Query& q);
  awaitable<Response> handle_streams(const Request& req, std::string_view path, const Query& q);
  awaitable<Response> handle_meta(const Request& req, std::string_view path, const Query& q);
  awaitable<Response> handle_transit(const Request& req, std::string_view path);
  // Bodies (answers, and uploads to a gateway route) above this are streamed, not held.
  uint64_t gateway_stream_above() const;
  awaitable<Response> handle_secrets(const Request& req, std::string_view path, const Query& q);
  security::TransitService* transit = nullptr;
  security::SecretsService* secrets = nullptr;
  std::shared_ptr<security::ClientLimits> client_limits;  // per user / address (null: none)
  std::shared_ptr<security::ClientLimits> connection_limits;  // limits.address_connections (null: none)
  awaitable<Response> handle_cluster_status(const Request& req);
  // GET /v1/signals: the signal catalogue, the routes in force and the signals file's state.
  Response handle_signals(const Request& req);
  // GET|PUT /v1/config/{name}: this node's CONFIG GET / CONFIG SET of one setting.
  awaitable<Response> handle_config(const Request& req, std::string_view name);
  awaitable<Response> handle_cluster_members(const Request& req, std::string_view path);
  awaitable<void> session(tcp::socket sock, bool tls);
  // The requests of one connection, over `stream` (plain TCP, or TLS over `tcp`).
  template <class Stream>
  awaitable<void> serve_requests(Stream& stream, beast::tcp_stream& tcp, const Peer& peer);
  // GET /v1/pubsub/{channel}: the rest of the connection is a Server-Sent Events stream.
  template <class Stream>
  awaitable<void> serve_sse(Stream& stream, beast::tcp_stream& tcp, const Request& req);
  awaitable<void> accept_loop(bool tls);
};

namespace {
// Paths keel answers itself on the HTTP door; everything else may be a gateway route.
bool keel_path(std::string_view target) {
  return target.starts_with("/v1/") || target == "/v1" || target.starts_with("/health/") ||
         target.starts_with("/metrics") || target == "/ui" || target.starts_with("/ui/") ||
         target.starts_with("/ui?");
}

// An error reply from the data path as an HTTP answer (resp_reply.h).
Response resp_error_response(const Request& req, const std::string& err) {
  auto e = resp_error_to_http(err);
  return error_response(req, static_cast<bhttp::status>(e.status), e.code, std::move(e.message));
}
}  // namespace

// `argv` lives in the caller's frame until this completes (GCC 12 mishandles by-value
// container parameters of coroutines called inside co_await).
awaitable<std::string> Server::Impl::run_command(const Request& req, const std::vector<std::string>& argv) {
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::string)>(
      [this, &argv, &req](auto handler) {
        auto ex = asio::get_associated_executor(handler);
        // std::function needs a copyable target; the handler is move-only.
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        resp.run(argv, [h, ex](std::string reply) {
          asio::post(ex, [h, reply = std::move(reply)]() mutable { std::move(*h)(std::move(reply)); });
        }, req.self);
      },
      use_awaitable);
}

// Cluster mode: the key's partition may live on another node, so the request runs as the
// equivalent commands through the RESP server, which routes and forwards them.
awaitable<Response> Server::Impl::handle_kv_routed(const Request& req, const std::string& key, const Query& q) {
  auto method = req.method();
  if (method == bhttp::verb::get) {
    std::vector<std::string> cmd{"TYPE", key};  // (GCC 12: no braced lists inside co_await)
    auto type = parse_resp2(co_await run_command(req, cmd));
    if (type.kind == '-') co_return resp_error_response(req, type.text);
    if (type.text == "none") co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("key '{}' does not exist", key));
    json body;
    body["key"] = key;
    cmd = {type.text == "hash" ? "HGETALL" : "GET", key};
    auto v = parse_resp2(co_await run_command(req, cmd));
    if (v.kind == '-') co_return resp_error_response(req, v.text);
    if (type.text == "hash") {
      body["type"] = "hash";
      json fields = json::object();
      for (size_t i = 0; i + 1 < v.items.size(); i += 2) {
        auto& f = v.items[i];
        auto& val = v.items[i + 1];
        if (valid_utf8(f) && valid_utf8(val)) fields[f] = val;
        else fields[valid_utf8(f) ? f : "base64:" + base64(f)] = "base64:" + base64(val);
      }
      body["fields"] = std::move(fields);
    } else {
      if (v.is_null) co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("key '{}' does not exist", key));
      body["type"] = "string";
      put_bytes(body, "value", v.text);
    }
    cmd = {"PTTL", key};
    auto ttl = parse_resp2(co_await run_command(req, cmd));
    body["ttl_ms"] = ttl.kind == ':' && ttl.number >= 0 ? ttl.number : -1;
    co_return json_response(req, bhttp::status::ok, body);
  }
  if (method == bhttp::verb::put || method == bhttp::verb::post) {
    std::vector<std::string> argv{"SET", key, std::string(req.body())};
    if (auto* t = q.get("ttl_ms")) {
      int64_t ttl = 0;
      auto [p, ec] = std::from_chars(t->data(), t->data() + t->size(), ttl);
      if (ec != std::errc() || p != t->data() + t->size() || ttl <= 0 || ttl > (int64_t{1} << 50))
        co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                 fmt::format("ttl_ms must be a positive integer number of milliseconds up to 2^50, got '{}'", *t));
      argv.push_back("PX");
      argv.push_back(std::to_string(ttl));
    }
    auto r = parse_resp2(co_await run_command(req, argv));
    if (r.kind == '-') co_return resp_error_response(req, r.text);
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"stored", true}, {"bytes", req.body().size()}});
  }
  if (method == bhttp::verb::delete_) {
    std::vector<std::string> cmd{"DEL", key};
    auto r = parse_resp2(co_await run_command(req, cmd));
    if (r.kind == '-') co_return resp_error_response(req, r.text);
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"deleted", r.number > 0}});
  }
  auto res = error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                            fmt::format("{} is not allowed on /v1/kv/{{key}}; allowed: GET, PUT, DELETE", std::string(req.method_string())));
  res.set(bhttp::field::allow, "GET, PUT, DELETE");
  co_return res;
}

awaitable<Response> Server::Impl::handle_kv(const Request& req, const std::string& key, const Query& q) {
  if (key.empty()) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "the key must not be empty: use /v1/kv/{key}");
  if (resp.clustered()) co_return co_await handle_kv_routed(req, key, q);
  auto& shard = owner_of(key);
  uint32_t part = key_partition(key, shards.partitions());
  int64_t now = SystemClock::instance().now_ms();
  auto method = req.method();

  if (method == bhttp::verb::get) {
    json body;
    bool found = false;
    auto work = [&] {
      auto v = shard.engine->get(part, key, now);
      if (!v) return;
      found = true;
      body["key"] = key;
      if (v->type == storage::ValueType::kString) {
        body["type"] = "string";
        put_bytes(body, "value", v->str);
      } else if (v->type == storage::ValueType::kZSet) {
        body["type"] = "zset";
        json members = json::array();
        for (auto it = v->zset->tree().begin(); it != v->zset->tree().end(); ++it) {
          const std::string& m = *it->member;
          members.push_back({{"member", valid_utf8(m) ? m : "base64:" + base64(m)},
                             {"score", it->score}});
        }
        body["members"] = std::move(members);
      } else if (v->type == storage::ValueType::kList || v->type == storage::ValueType::kSet) {
        bool list = v->type == storage::ValueType::kList;
        body["type"] = list ? "list" : "set";
        json items = json::array();
        auto add = [&](const std::string& s) {
          items.push_back(valid_utf8(s) ? s : "base64:" + base64(s));
        };
        if (list)
          for (size_t i = 0; i < v->list->size(); ++i) add((*v->list)[i]);
        else
          for (auto& m : *v->set) add(m);
        body[list ? "items" : "members"] = std::move(items);
      } else if (v->type == storage::ValueType::kStream) {
        // The entries are read with XRANGE (a stream can be large); this shows its size.
        body["type"] = "stream";
        body["length"] = v->stream->size();
        body["last_generated_id"] = v->stream->last_id().str();
      } else {
        body["type"] = "hash";
        json fields = json::object();
        for (auto& [f, val] : *v->hash) {
          if (valid_utf8(f) && valid_utf8(val)) fields[f] = val;
          else fields[valid_utf8(f) ? f : "base64:" + base64(f)] = "base64:" + base64(val);
        }
        body["fields"] = std::move(fields);
      }
      body["ttl_ms"] = v->expire_at_ms ? std::max<int64_t>(0, v->expire_at_ms - now) : -1;
    };
    co_await runtime::run_on(shard, work);
    if (!found) co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("key '{}' does not exist", key));
    co_return json_response(req, bhttp::status::ok, body);
  }

  if (method == bhttp::verb::put || method == bhttp::verb::post) {
    int64_t expire_at = 0;
    if (auto* t = q.get("ttl_ms")) {
      int64_t ttl = 0;
      auto [p, ec] = std::from_chars(t->data(), t->data() + t->size(), ttl);
      if (ec != std::errc() || p != t->data() + t->size() || ttl <= 0 || ttl > (int64_t{1} << 50))
        co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                 fmt::format("ttl_ms must be a positive integer number of milliseconds up to 2^50, got '{}'", *t));
      expire_at = now + ttl;
    }
    Status st;
    auto work = [&] {
      st = shard.engine->set_string(part, key, req.body(), expire_at, now);
      if (st) st = shard.engine->commit();
    };
    co_await runtime::run_on(shard, work);
    if (!st) {
      // 507 Insufficient Storage: maxmemory (memory engine) or a disk that refuses writes.
      auto code = st.error().code == Errc::kOutOfMemory || st.error().code == Errc::kDiskError
                      ? bhttp::status::insufficient_storage
                      : bhttp::status::internal_server_error;
      co_return error_response(req, code, errc_name(st.error().code), st.error().message);
    }
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"stored", true}, {"bytes", req.body().size()}});
  }

  if (method == bhttp::verb::delete_) {
    Result<bool> res = false;
    auto work = [&] {
      res = shard.engine->erase(part, key, now);
      if (res && *res) {
        if (auto st = shard.engine->commit(); !st) res = std::unexpected(st.error());
      }
    };
    co_await runtime::run_on(shard, work);
    if (!res)
      co_return error_response(req,
                               res.error().code == Errc::kDiskError ? bhttp::status::insufficient_storage
                                                                    : bhttp::status::internal_server_error,
                               errc_name(res.error().code), res.error().message);
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"deleted", *res}});
  }

  auto res = error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                            fmt::format("{} is not allowed on /v1/kv/{{key}}; allowed: GET, PUT, DELETE", std::string(req.method_string())));
  res.set(bhttp::field::allow, "GET, PUT, DELETE");
  co_return res;
}

namespace {

// A stream entry id as the HTTP door accepts it: "ms" or "ms-seq" (decimal, 64-bit each).
bool parse_stream_id(std::string_view s, uint64_t& ms, uint64_t& seq, bool& has_seq) {
  auto dash = s.find('-');
  std::string_view a = s.substr(0, dash);
  if (a.empty()) return false;
  auto [p, ec] = std::from_chars(a.data(), a.data() + a.size(), ms);
  if (ec != std::errc() || p != a.data() + a.size()) return false;
  has_seq = dash != std::string_view::npos;
  seq = 0;
  if (!has_seq) return true;
  std::string_view b = s.substr(dash + 1);
  if (b.empty()) return false;
  auto [q, ec2] = std::from_chars(b.data(), b.data() + b.size(), seq);
  return ec2 == std::errc() && q == b.data() + b.size();
}

bool valid_stream_id(std::string_view s) {
  uint64_t ms, seq;
  bool has_seq;
  return parse_stream_id(s, ms, seq, has_seq);
}

// The id right after `id` (the smallest one greater): what a reader passes as `from` next.
std::string next_stream_id(std::string_view id) {
  uint64_t ms = 0, seq = 0;
  bool has_seq = false;
  if (!parse_stream_id(id, ms, seq, has_seq)) return std::string(id);
  if (seq == UINT64_MAX) return fmt::format("{}-0", ms + 1);
  return fmt::format("{}-{}", ms, seq + 1);
}

// Parses a query integer in [lo, hi]; false if absent-but-malformed or out of range.
bool query_uint(const Query& q, std::string_view name, uint64_t lo, uint64_t hi, uint64_t& v) {
  const std::string* s = q.get(name);
  if (!s) return true;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  return ec == std::errc() && p == s->data() + s->size() && v >= lo && v <= hi;
}

// XRANGE / XREADGROUP entries ([id, [field, value, ...]] ...) as JSON; a field or value that
// is not UTF-8 comes as "base64:<...>" as in /v1/kv hashes.
json stream_entries_json(const RespNode& arr) {
  json entries = json::array();
  for (const auto& e : arr.items) {
    if (e.items.size() < 2) continue;
    json fields = json::object();
    for (size_t i = 0; i + 1 < e.items[1].items.size(); i += 2) {
      const std::string& f = e.items[1].items[i].text;
      const std::string& v = e.items[1].items[i + 1].text;
      fields[valid_utf8(f) ? f : "base64:" + base64(f)] = valid_utf8(v) ? v : "base64:" + base64(v);
    }
    json entry{{"id", e.items[0].text}};
    // An entry deleted while pending comes with a null body (XREADGROUP with an explicit id).
    entry["fields"] = e.items[1].is_null ? json(nullptr) : std::move(fields);
    entries.push_back(std::move(entry));
  }
  return entries;
}

constexpr uint64_t kStreamMaxCount = 10000;
constexpr uint64_t kStreamMaxBlockMs = 60000;

}  // namespace

// An error reply of a stream command as an HTTP answer: the inputs were checked before, so an
// ERR is about them (400); NOGROUP and a missing stream are 404, BUSYGROUP 409; the rest as
// for /v1/kv (WRONGTYPE 409, TRYAGAIN 503, TIMEOUT 504, ...).
static Response stream_error_response(const Request& req, const std::string& err) {
  if (err.starts_with("NOGROUP "))
    return error_response(req, bhttp::status::not_found, "NOT_FOUND", err.substr(8));
  if (err.starts_with("BUSYGROUP "))
    return error_response(req, bhttp::status::conflict, "ALREADY_EXISTS", err.substr(10));
  if (err.starts_with("ERR The XGROUP subcommand requires the key to exist"))
    return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                          "the stream does not exist: pass \"mkstream\": true to create it with the group");
  if (err.starts_with("ERR ")) return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", err.substr(4));
  return resp_error_response(req, err);
}

// /v1/streams/{name}[/groups/{group}[/ack]]: each request runs as the equivalent stream
// commands through the RESP server (routing, forwarding, replication, as /v1/kv in a cluster).
awaitable<Response> Server::Impl::handle_streams(const Request& req, std::string_view path, const Query& q) {
  auto bad = [&req](std::string message) {
    return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", std::move(message));
  };
  auto not_allowed = [&req](std::string_view route, std::string_view allow) {
    auto res = error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                              fmt::format("{} is not allowed on {}; allowed: {}", std::string(req.method_string()), route, allow));
    res.set(bhttp::field::allow, allow);
    return res;
  };
  // Split the raw path before decoding, so that a name may hold "%2F".
  std::string_view rest = path.substr(std::min<size_t>(path.size(), 12));  // after "/v1/streams/"
  std::vector<std::string_view> parts;
  while (true) {
    auto slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  std::string name, group;
  if (!url_decode(parts[0], name, false)) co_return bad("malformed percent-escape in the stream name");
  if (name.empty()) co_return bad("the stream name must not be empty: use /v1/streams/{name}");
  const bool is_get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
  const bool is_post = req.method() == bhttp::verb::post;

  if (parts.size() == 1) {
    if (is_post) {
      // POST /v1/streams/{name} {"fields": {...}, "id": "*", "maxlen": N}: XADD.
      auto body = json::parse(req.body(), nullptr, false);
      if (body.is_discarded() || !body.is_object())
        co_return bad("the body must be a JSON object: {\"fields\": {\"field\": \"value\", ...}, \"id\": \"*\", \"maxlen\": N}");
      for (auto& el : body.items())
        if (el.key() != "fields" && el.key() != "id" && el.key() != "maxlen")
          co_return bad(fmt::format("unknown member '{}' in the body; allowed: fields, id, maxlen", el.key()));
      auto f = body.find("fields");
      if (f == body.end() || !f->is_object() || f->empty())
        co_return bad("\"fields\" must be a non-empty JSON object of string values: {\"fields\": {\"field\": \"value\"}}");
      std::vector<std::string> argv{"XADD", name};
      if (auto m = body.find("maxlen"); m != body.end()) {
        if (!m->is_number_unsigned())
          co_return bad(fmt::format("\"maxlen\" must be a non-negative integer, got {}", m->dump()));
        argv.push_back("MAXLEN");
        argv.push_back(std::to_string(m->get<uint64_t>()));
      }
      std::string id = "*";
      if (auto i = body.find("id"); i != body.end()) {
        if (!i->is_string()) co_return bad(fmt::format("\"id\" must be a string (\"*\", \"<ms>-*\" or \"<ms>-<seq>\"), got {}", i->dump()));
        id = i->get<std::string>();
        uint64_t ms, seq;
        bool has_seq;
        bool ok = id == "*" || (id.ends_with("-*") && parse_stream_id(std::string_view(id).substr(0, id.size() - 2), ms, seq, has_seq) && !has_seq) ||
                  parse_stream_id(id, ms, seq, has_seq);
        if (!ok) co_return bad(fmt::format("\"id\" must be \"*\", \"<ms>-*\" or \"<ms>-<seq>\" (decimal), got '{}'", id));
      }
      argv.push_back(id);
      for (auto& el : f->items()) {
        if (!el.value().is_string())
          co_return bad(fmt::format("field '{}' must have a string value, got {} (encode numbers and objects as strings)",
                                    el.key(), el.value().dump()));
        argv.push_back(el.key());
        argv.push_back(el.value().get<std::string>());
      }
      auto r = parse_resp2(co_await run_command(req, argv));
      if (r.kind == '-') co_return stream_error_response(req, r.text);
      co_return json_response(req, bhttp::status::created, json{{"id", r.text}});
    }
    if (!is_get) co_return not_allowed("/v1/streams/{name}", "GET, POST");
    // GET /v1/streams/{name}?from=&count=: XRANGE name from + COUNT count.
    std::string from = "-";
    if (auto* s = q.get("from")) {
      if (*s != "-" && !valid_stream_id(*s))
        co_return bad(fmt::format("from must be an entry id '<ms>' or '<ms>-<seq>' (inclusive; '-' or absent: the start), got '{}'", *s));
      from = *s;
    }
    uint64_t count = 100;
    if (!query_uint(q, "count", 1, kStreamMaxCount, count))
      co_return bad(fmt::format("count must be an integer from 1 to {}, got '{}'", kStreamMaxCount, *q.get("count")));
    std::vector<std::string> argv{"XRANGE", name, from, "+", "COUNT", std::to_string(count)};
    auto r = parse_resp2_tree(co_await run_command(req, argv));
    if (r.kind == '-') co_return stream_error_response(req, r.text);
    if (r.kind != '*') co_return error_response(req, bhttp::status::internal_server_error, "INTERNAL", "unexpected XRANGE reply");
    json body{{"entries", stream_entries_json(r)}};
    if (!r.items.empty() && !r.items.back().items.empty()) body["next"] = next_stream_id(r.items.back().items[0].text);
    else body["next"] = from == "-" ? std::string("0-0") : from;
    co_return json_response(req, bhttp::status::ok, body);
  }

  if (parts.size() < 3 || parts[1] != "groups" || parts.size() > 4 || (parts.size() == 4 && parts[3] != "ack"))
    co_return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                             fmt::format("no route for {} {}; stream routes: /v1/streams/{{name}}, /v1/streams/{{name}}/groups/{{group}}, "
                                         "/v1/streams/{{name}}/groups/{{group}}/ack",
                                         std::string(req.method_string()), std::string(path)));
  if (!url_decode(parts[2], group, false)) co_return bad("malformed percent-escape in the group name");
  if (group.empty()) co_return bad("the group name must not be empty: use /v1/streams/{name}/groups/{group}");

  if (parts.size() == 4) {
    // POST .../ack {"ids": [...]}: XACK name group id...
    if (!is_post) co_return not_allowed("/v1/streams/{name}/groups/{group}/ack", "POST");
    auto body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      co_return bad("the body must be a JSON object: {\"ids\": [\"<ms>-<seq>\", ...]}");
    auto ids = body.find("ids");
    if (ids == body.end() || !ids->is_array() || ids->empty() || ids->size() > kStreamMaxCount)
      co_return bad(fmt::format("\"ids\" must be an array of 1 to {} entry ids: {{\"ids\": [\"<ms>-<seq>\", ...]}}", kStreamMaxCount));
    std::vector<std::string> argv{"XACK", name, group};
    for (auto& i : *ids) {
      if (!i.is_string() || !valid_stream_id(i.get_ref<const std::string&>()))
        co_return bad(fmt::format("\"ids\" must hold entry ids '<ms>-<seq>' as strings, got {}", i.dump()));
      argv.push_back(i.get<std::string>());
    }
    auto r = parse_resp2(co_await run_command(req, argv));
    if (r.kind == '-') co_return stream_error_response(req, r.text);
    co_return json_response(req, bhttp::status::ok, json{{"acked", r.number}});
  }

  if (is_post) {
    // POST .../groups/{group} {"from": "$"|"0"|id, "mkstream": bool}: XGROUP CREATE.
    json body = json::object();
    if (!req.body().empty()) {
      body = json::parse(req.body(), nullptr, false);
      if (body.is_discarded() || !body.is_object())
        co_return bad("the body must be empty or a JSON object: {\"from\": \"$\" | \"0\" | \"<ms>-<seq>\", \"mkstream\": true}");
    }
    for (auto& el : body.items())
      if (el.key() != "from" && el.key() != "mkstream")
        co_return bad(fmt::format("unknown member '{}' in the body; allowed: from, mkstream", el.key()));
    std::string from = "$";
    if (auto f = body.find("from"); f != body.end()) {
      if (!f->is_string() || (f->get<std::string>() != "$" && !valid_stream_id(f->get<std::string>())))
        co_return bad(fmt::format("\"from\" must be \"$\" (new entries only), \"0\" (the whole stream) or an entry id, got {}", f->dump()));
      from = f->get<std::string>();
    }
    bool mkstream = false;
    if (auto m = body.find("mkstream"); m != body.end()) {
      if (!m->is_boolean()) co_return bad(fmt::format("\"mkstream\" must be true or false, got {}", m->dump()));
      mkstream = m->get<bool>();
    }
    std::vector<std::string> argv{"XGROUP", "CREATE", name, group, from};
    if (mkstream) argv.push_back("MKSTREAM");
    auto r = parse_resp2(co_await run_command(req, argv));
    if (r.kind == '-') co_return stream_error_response(req, r.text);
    co_return json_response(req, bhttp::status::created, json{{"stream", name}, {"group", group}, {"created", true}});
  }
  if (!is_get) co_return not_allowed("/v1/streams/{name}/groups/{group}", "GET, POST");
  // GET .../groups/{group}?consumer=&count=&block_ms=: XREADGROUP GROUP g c COUNT n STREAMS name >.
  const std::string* consumer = q.get("consumer");
  if (!consumer || consumer->empty())
    co_return bad("consumer is required: ?consumer=<name> (the group's pending entries are kept per consumer)");
  uint64_t count = 100, block_ms = 0;
  if (!query_uint(q, "count", 1, kStreamMaxCount, count))
    co_return bad(fmt::format("count must be an integer from 1 to {}, got '{}'", kStreamMaxCount, *q.get("count")));
  if (!query_uint(q, "block_ms", 0, kStreamMaxBlockMs, block_ms))
    co_return bad(fmt::format("block_ms must be an integer from 0 to {}, got '{}'", kStreamMaxBlockMs, *q.get("block_ms")));
  // The door's commands do not block (docs/data-types.md), so the wait is here, on a timer (the
  // session waits, not the event loop). An empty XREADGROUP writes (it records the consumer's
  // seen time, and a stream is journaled whole), so it is not what is repeated: the stream's
  // last id is watched with XREVRANGE ... COUNT 1 (a read), and XREADGROUP runs again once it
  // moves. The last id is taken before each XREADGROUP, so an append in between is seen.
  std::vector<std::string> argv{"XREADGROUP", "GROUP", group, *consumer, "COUNT", std::to_string(count), "STREAMS", name, ">"};
  std::vector<std::string> top_argv{"XREVRANGE", name, "+", "-", "COUNT", "1"};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(block_ms);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    std::string top;
    if (block_ms > 0) {
      auto t = parse_resp2_tree(co_await run_command(req, top_argv));
      if (t.kind == '-') co_return stream_error_response(req, t.text);
      if (!t.items.empty() && !t.items[0].items.empty()) top = t.items[0].items[0].text;
    }
    auto r = parse_resp2_tree(co_await run_command(req, argv));
    if (r.kind == '-') co_return stream_error_response(req, r.text);
    json entries = json::array();
    if (r.kind == '*' && !r.is_null)
      for (const auto& s : r.items)
        if (s.items.size() == 2) entries = stream_entries_json(s.items[1]);
    if (!entries.empty() || std::chrono::steady_clock::now() >= deadline || stopping)
      co_return json_response(req, bhttp::status::ok, json{{"entries", std::move(entries)}});
    int64_t pause_ms = 5;
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline || stopping) co_return json_response(req, bhttp::status::ok, json{{"entries", json::array()}});
      timer.expires_after(std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(pause_ms), deadline - now));
      co_await timer.async_wait(asio::as_tuple(use_awaitable));
      pause_ms = std::min<int64_t>(pause_ms * 2, 50);
      auto t = parse_resp2_tree(co_await run_command(req, top_argv));
      if (t.kind == '-') co_return stream_error_response(req, t.text);
      std::string now_top;
      if (!t.items.empty() && !t.items[0].items.empty()) now_top = t.items[0].items[0].text;
      if (now_top != top) break;  // appended (or trimmed): read for the group again
    }
  }
}

// GET /v1/kv?prefix=&limit=&cursor=: walks partitions in order, keys in order inside each
// partition. The cursor is "<partition>.<hex of the next key>"; an absent cursor means done.
awaitable<Response> Server::Impl::handle_list(const Request& req, const Query& q) {
  std::string prefix;
  if (auto* p = q.get("prefix")) prefix = *p;
  uint64_t limit = 100;
  if (auto* l = q.get("limit")) {
    auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), limit);
    if (ec != std::errc() || p != l->data() + l->size() || limit < 1 || limit > opt.max_list_limit)
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                               fmt::format("limit must be an integer from 1 to {}, got '{}'", opt.max_list_limit, *l));
  }
  uint32_t part = 0;
  std::string start;
  if (auto* c = q.get("cursor")) {
    auto dot = c->find('.');
    uint32_t pv = 0;
    bool ok = dot != std::string::npos;
    if (ok) {
      auto [p, ec] = std::from_chars(c->data(), c->data() + dot, pv);
      ok = ec == std::errc() && p == c->data() + dot && pv < shards.partitions() &&
           hex_decode(std::string_view(*c).substr(dot + 1), start);
    }
    if (!ok) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                      fmt::format("cursor '{}' is not one this server returned; pass the 'cursor' field of the previous page", *c));
    part = pv;
  }
  int64_t now = SystemClock::instance().now_ms();
  json keys = json::array();
  std::optional<std::string> next_cursor;
  size_t visited = 0;
  while (part < shards.partitions()) {
    auto& shard = shards.shard(shards.owner(part));
    std::optional<std::string> resume;
    auto work = [&] {
      resume = shard.engine->scan_partition(part, start, limit - keys.size(), now,
                                            [&](std::string_view k, const storage::ValueRef&) {
                                              ++visited;
                                              if (k.substr(0, prefix.size()) == prefix) {
                                                if (valid_utf8(k)) keys.push_back(std::string(k));
                                                else keys.push_back(json{{"key_base64", base64(k)}});
                                              }
                                            });
    };
    co_await runtime::run_on(shard, work);
    if (resume) {
      start = *resume;
    } else {
      ++part;
      start.clear();
    }
    if (keys.size() >= limit || visited >= 100000) {
      if (part < shards.partitions()) next_cursor = fmt::format("{}.{}", part, hex_encode(start));
      break;
    }
  }
  json body{{"keys", keys}};
  body["cursor"] = next_cursor ? json(*next_cursor) : json(nullptr);
  co_return json_response(req, bhttp::status::ok, body);
}

awaitable<Response> Server::Impl::handle(const Request& req, std::string client_ip) {
  std::string_view target(req.target().data(), req.target().size());
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  Query q;
  if (qpos != std::string_view::npos && !parse_query(target.substr(qpos + 1), q))
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the query string");
  bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;

  if (path == "/health/live" || path == "/health/ready" || path.starts_with("/health/ready/")) {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    co_return handle_health(req, path, q);
  }
  if (path == "/ui" || path == "/ui/") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    Response res{path == "/ui" ? bhttp::status::moved_permanently : bhttp::status::ok, req.version()};
    res.set(bhttp::field::server, "keel");
    if (path == "/ui") {
      res.set(bhttp::field::location, "/ui/");
      co_return res;
    }
    res.set(bhttp::field::content_type, "text/html; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-cache");
    // The page loads nothing from elsewhere: say so to the browser as well.
    res.set("Content-Security-Policy",
            "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    res.body() = std::string(ui_page());
    co_return res;
  }
  if (path == "/metrics") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    auto snap = co_await resp::collect_snapshot(resp);
    Response res{bhttp::status::ok, req.version()};
    res.set(bhttp::field::server, "keel");
    res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = render_metrics(snap, rss_bytes(), requests.load());
    if (gateway) res.body() += gateway->impl().metrics_text();
    if (acl) {
      auto d = acl->denials();
      res.body() += fmt::format(
          "# HELP keel_acl_denied_total Requests refused by users and access rules (RESP and HTTP): failed "
          "authentication, or a command, key or channel outside the user's rules.\n"
          "# TYPE keel_acl_denied_total counter\n"
          "keel_acl_denied_total{{reason=\"auth\"}} {}\nkeel_acl_denied_total{{reason=\"command\"}} {}\n"
          "keel_acl_denied_total{{reason=\"key\"}} {}\nkeel_acl_denied_total{{reason=\"channel\"}} {}\n",
          d.auth, d.command, d.key, d.channel);
      res.body() += fmt::format(
          "# HELP keel_auth_lockout_refusals_total Authentications refused unchecked because the user or the client "
          "address is locked after failed attempts (auth.lockout_*).\n"
          "# TYPE keel_auth_lockout_refusals_total counter\nkeel_auth_lockout_refusals_total {}\n"
          "# HELP keel_auth_lockouts_total Locks started by failed authentications.\n"
          "# TYPE keel_auth_lockouts_total counter\nkeel_auth_lockouts_total {}\n"
          "# HELP keel_auth_lockout_subjects Users and client addresses with failed authentications this node "
          "remembers (on a cluster member: its copy of the cluster's records it has read or written).\n"
          "# TYPE keel_auth_lockout_subjects gauge\nkeel_auth_lockout_subjects {}\n"
          "# HELP keel_auth_lockout_store_errors_total Reads and writes of the cluster-wide lockout table "
          "(keel:lockouts) that failed; this node's own table decided meanwhile.\n"
          "# TYPE keel_auth_lockout_store_errors_total counter\nkeel_auth_lockout_store_errors_total {}\n"
          "# HELP keel_token_refusals_total Tokens refused (bad form or signature, expired, another certificate, "
          "unknown user).\n"
          "# TYPE keel_token_refusals_total counter\nkeel_token_refusals_total {}\n",
          acl->lockout_refusals(), acl->lockouts_started(), acl->lockouts().size(),
          acl_service ? acl_service->lockout_store_errors() : 0, acl->token_refusals());
      size_t held;
      {
        std::lock_guard lock(nonce_mu);
        held = nonces->size();
      }
      res.body() += fmt::format(
          "# HELP keel_signed_requests_total Signed HTTP requests by outcome: accepted, replay (nonce seen before), "
          "nonce_store_full (refused: a replay could not be ruled out), invalid (bad header, time, digest or "
          "signature).\n"
          "# TYPE keel_signed_requests_total counter\n"
          "keel_signed_requests_total{{outcome=\"accepted\"}} {}\nkeel_signed_requests_total{{outcome=\"replay\"}} {}\n"
          "keel_signed_requests_total{{outcome=\"nonce_store_full\"}} {}\nkeel_signed_requests_total{{outcome=\"invalid\"}} {}\n"
          "# HELP keel_nonce_store_entries Unexpired nonces of signed requests remembered (auth.nonce_capacity at most).\n"
          "# TYPE keel_nonce_store_entries gauge\nkeel_nonce_store_entries {}\n",
          signed_ok.load(), signed_replay.load(), signed_full.load(), signed_invalid.load(), held);
    }
    res.body() += fmt::format(
        "# HELP keel_http_timeouts_total HTTP connections closed for a slow client: no request within "
        "http.idle_timeout_s (idle), a header not whole within http.header_timeout_ms of its first byte (header), a "
        "body not whole within http.body_timeout_ms (body).\n"
        "# TYPE keel_http_timeouts_total counter\nkeel_http_timeouts_total{{phase=\"idle\"}} {}\n"
        "keel_http_timeouts_total{{phase=\"header\"}} {}\nkeel_http_timeouts_total{{phase=\"body\"}} {}\n",
        http_timeouts[0].load(), http_timeouts[1].load(), http_timeouts[2].load());
    if (opt.tls)
      res.body() += fmt::format(
          "# HELP keel_https_handshake_failures_total HTTPS connections whose TLS handshake failed (no or a bad client certificate, plaintext, timeout).\n"
          "# TYPE keel_https_handshake_failures_total counter\nkeel_https_handshake_failures_total {}\n",
          tls_handshake_failures.load());
    if (opt.extra_metrics) res.body() += opt.extra_metrics();
    if (!opt.data_dir.empty()) {
      struct statvfs fs {};
      if (::statvfs(opt.data_dir.c_str(), &fs) == 0)
        res.body() += fmt::format(
            "# HELP keel_disk_free_bytes Space left for keel on the filesystem of the data directory.\n"
            "# TYPE keel_disk_free_bytes gauge\nkeel_disk_free_bytes {}\n"
            "# HELP keel_disk_size_bytes Size of the filesystem of the data directory.\n"
            "# TYPE keel_disk_size_bytes gauge\nkeel_disk_size_bytes {}\n",
            static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize, static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize);
    }
    if (dht) {
      auto d = dht->status();
      uint32_t self = dht->options().self;
      auto& mine = d.nodes[self];
      res.body() += fmt::format(
          "# HELP keel_dht_partitions Partitions this node holds, by role.\n# TYPE keel_dht_partitions gauge\n"
          "keel_dht_partitions{{role=\"primary\"}} {}\nkeel_dht_partitions{{role=\"replica\"}} {}\n"
          "# HELP keel_dht_under_replicated_partitions Partitions with fewer copies than the target, in the map this node knows.\n"
          "# TYPE keel_dht_under_replicated_partitions gauge\nkeel_dht_under_replicated_partitions {}\n"
          "# HELP keel_dht_map_version Metadata revision of the partition map this node routes by.\n"
          "# TYPE keel_dht_map_version gauge\nkeel_dht_map_version {}\n"
          "# HELP keel_dht_forwarded_requests_total Commands forwarded to another node's primary.\n"
          "# TYPE keel_dht_forwarded_requests_total counter\nkeel_dht_forwarded_requests_total {}\n"
          "# HELP keel_dht_forward_errors_total Forwarded commands that got no answer in time.\n"
          "# TYPE keel_dht_forward_errors_total counter\nkeel_dht_forward_errors_total {}\n"
          "# HELP keel_dht_replicated_entries_total Log entries this node applied as a replica.\n"
          "# TYPE keel_dht_replicated_entries_total counter\nkeel_dht_replicated_entries_total {}\n"
          "# HELP keel_dht_replicated_bytes_total Bytes of the effects in the log entries this node applied as a replica.\n"
          "# TYPE keel_dht_replicated_bytes_total counter\nkeel_dht_replicated_bytes_total {}\n"
          "# HELP keel_dht_failovers_total Partitions this node promoted a new primary for (as the failover manager).\n"
          "# TYPE keel_dht_failovers_total counter\nkeel_dht_failovers_total {}\n"
          "# HELP keel_dht_rebalance_remaining_partitions Partitions whose copies are not yet where placement puts them over the current members.\n"
          "# TYPE keel_dht_rebalance_remaining_partitions gauge\nkeel_dht_rebalance_remaining_partitions {}\n"
          "# HELP keel_dht_rebalance_transfers Partition copies being filled now (on the member that runs the moves).\n"
          "# TYPE keel_dht_rebalance_transfers gauge\nkeel_dht_rebalance_transfers {}\n"
          "# HELP keel_dht_rebalance_partitions_moved_total Partitions switched to new copies by this node (as the member running the moves).\n"
          "# TYPE keel_dht_rebalance_partitions_moved_total counter\nkeel_dht_rebalance_partitions_moved_total {}\n"
          "# HELP keel_dht_snapshot_sent_bytes_total Bytes of partition snapshots this node sent to new or lagging copies.\n"
          "# TYPE keel_dht_snapshot_sent_bytes_total counter\nkeel_dht_snapshot_sent_bytes_total {}\n"
          "# HELP keel_dht_copies_recovered_total Partition copies this node took up again from what its persistent engine kept through a restart (caught up from the primary's log, not a snapshot, when the log reaches back that far).\n"
          "# TYPE keel_dht_copies_recovered_total counter\nkeel_dht_copies_recovered_total {}\n"
          "# HELP keel_dht_stale_partitions_dropped_total Partitions a persistent engine kept through a restart that the map no longer gives this node, dropped from disk.\n"
          "# TYPE keel_dht_stale_partitions_dropped_total counter\nkeel_dht_stale_partitions_dropped_total {}\n"
          "# HELP keel_dht_snapshots_resumed_total Snapshot transfers this node continued where they stopped (after a lost chunk or a restart of the receiver) instead of sending them whole again.\n"
          "# TYPE keel_dht_snapshots_resumed_total counter\nkeel_dht_snapshots_resumed_total {}\n"
          "# HELP keel_dht_replica_reads_total Reads this node answered from a replica copy (readFrom replica, READONLY).\n"
          "# TYPE keel_dht_replica_reads_total counter\nkeel_dht_replica_reads_total {}\n"
          "# HELP keel_dht_replica_lag_seconds How far behind its primary this node's most lagging in-sync replica copy may be (-1: none).\n"
          "# TYPE keel_dht_replica_lag_seconds gauge\nkeel_dht_replica_lag_seconds {}\n",
          mine.primaries, mine.replicas, d.under_replicated, d.map_version, d.forwarded, d.forward_errors,
          d.replicated_entries, d.replicated_bytes, d.failovers, d.rebalance_remaining, d.transfers_in_flight, d.partitions_moved,
          d.snapshot_bytes_sent, d.recovered_copies, d.stale_dropped, d.snapshots_resumed, d.replica_reads,
          d.replica_lag_max_ms < 0 ? -1.0 : static_cast<double>(d.replica_lag_max_ms) / 1000.0);
      if (d.members_known)
        res.body() += fmt::format(
            "# HELP keel_cluster_members Configured cluster members by state, as this node's failure detector sees them.\n"
            "# TYPE keel_cluster_members gauge\n"
            "keel_cluster_members{{state=\"alive\"}} {}\nkeel_cluster_members{{state=\"suspect\"}} {}\nkeel_cluster_members{{state=\"dead\"}} {}\n"
            "# HELP keel_cluster_quorum Whether this node reaches a quorum of the members (1) or not (0): without it, metadata and failover stop.\n"
            "# TYPE keel_cluster_quorum gauge\nkeel_cluster_quorum {}\n",
            d.members_alive, d.members_suspect, d.members_dead, d.quorum ? 1 : 0);
    }
    if (tracer) {
      auto t = tracer->stats();
      auto& e = t.export_counters;
      res.body() += fmt::format(
          "# HELP keel_trace_spans_queued_total Spans kept by the sampler and queued for export.\n"
          "# TYPE keel_trace_spans_queued_total counter\nkeel_trace_spans_queued_total {}\n"
          "# HELP keel_trace_spans_exported_total Spans the OTLP collector accepted.\n"
          "# TYPE keel_trace_spans_exported_total counter\nkeel_trace_spans_exported_total {}\n"
          "# HELP keel_trace_spans_dropped_total Spans lost before export: queue full, export failed (not retryable or out of retries), rejected by the collector (partial success).\n"
          "# TYPE keel_trace_spans_dropped_total counter\n"
          "keel_trace_spans_dropped_total{{reason=\"queue_full\"}} {}\n"
          "keel_trace_spans_dropped_total{{reason=\"export_failed\"}} {}\n"
          "keel_trace_spans_dropped_total{{reason=\"rejected\"}} {}\n"
          "# HELP keel_trace_export_requests_total OTLP export requests sent, retries included.\n"
          "# TYPE keel_trace_export_requests_total counter\nkeel_trace_export_requests_total {}\n"
          "# HELP keel_trace_export_retries_total OTLP export requests that were retries.\n"
          "# TYPE keel_trace_export_retries_total counter\nkeel_trace_export_retries_total {}\n"
          "# HELP keel_trace_queue_spans Spans waiting for export.\n"
          "# TYPE keel_trace_queue_spans gauge\nkeel_trace_queue_spans {}\n",
          e.queued, e.exported, e.dropped_queue_full + t.dropped_handoff, e.dropped_failed, e.rejected,
          e.requests, e.retries, t.queued);
    }
    if (log_exporter) {
      auto t = log_exporter->stats();
      auto& e = t.export_counters;
      res.body() += fmt::format(
          "# HELP keel_log_records_exported_total Log lines the OTLP collector accepted (log.otlp_endpoint).\n"
          "# TYPE keel_log_records_exported_total counter\nkeel_log_records_exported_total {}\n"
          "# HELP keel_log_records_dropped_total Log lines lost before export: queue full, export failed (not retryable or out of retries), rejected by the collector (partial success).\n"
          "# TYPE keel_log_records_dropped_total counter\n"
          "keel_log_records_dropped_total{{reason=\"queue_full\"}} {}\n"
          "keel_log_records_dropped_total{{reason=\"export_failed\"}} {}\n"
          "keel_log_records_dropped_total{{reason=\"rejected\"}} {}\n"
          "# HELP keel_log_export_requests_total OTLP log export requests sent, retries included.\n"
          "# TYPE keel_log_export_requests_total counter\nkeel_log_export_requests_total {}\n"
          "# HELP keel_log_queue_records Log lines waiting for export.\n"
          "# TYPE keel_log_queue_records gauge\nkeel_log_queue_records {}\n",
          e.exported, e.dropped_queue_full + t.dropped_handoff, e.dropped_failed, e.rejected, e.requests, t.queued);
    }
    {
      // Signals routed to metrics (signals.file): one counter each, the label from the fixed
      // catalogue (observe/signals.h), listed even at 0 so that rate() sees the first one.
      auto& hub = observe::SignalHub::instance();
      auto routed = hub.routes().metrics;
      if (routed.any()) {
        res.body() += "# HELP keel_signals_total The node's signals by name, counted while signals.file routes them to metrics.\n"
                      "# TYPE keel_signals_total counter\n";
        for (size_t i = 0; i < observe::kSignalCount; ++i)
          if (routed.test(i))
            res.body() += fmt::format("keel_signals_total{{signal=\"{}\"}} {}\n", observe::signal_catalogue()[i].name,
                                      hub.count(static_cast<observe::Signal>(i)));
      }
    }
    co_return res;
  }
  if (path == "/v1/keys" || path.starts_with("/v1/keys/")) {
    if (!opt.keys_admin)
      co_return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                               "encryption at rest is off on this node; set security.at_rest.key_file or "
                               "security.at_rest.key_env to turn it on");
    auto [code, body] = opt.keys_admin(get ? "GET" : (req.method() == bhttp::verb::post ? "POST" : "OTHER"),
                                       path.substr(8), req.body());
    Response res{static_cast<bhttp::status>(code), req.version()};
    res.set(bhttp::field::server, "keel");
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(body);
    co_return res;
  }
  if (path == "/v1/signals") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    co_return handle_signals(req);
  }
  if (path == "/v1/auth/lockouts" || path.starts_with("/v1/auth/lockouts/")) {
    // The lockout table, cluster-wide on a cluster member (ACL LOCKOUTS / ACL UNLOCK on the RESP door).
    if (!acl)
      co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE", "users and access rules are off on this node");
    const int64_t now = SystemClock::instance().now_ms();
    if (path == "/v1/auth/lockouts" && get) {
      json out = json::array();
      auto all = co_await acl_service->lockouts();
      if (!all) {
        Response res = error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE", all.error().message);
        res.set(bhttp::field::retry_after, "1");
        co_return res;
      }
      for (auto& e : *all)
        out.push_back({{"subject", e.subject}, {"failures", e.failures},
                       {"last_failure_age_ms", now - e.last_failure_ms},
                       {"locked_for_ms", std::max<int64_t>(0, e.locked_until_ms - now)}});
      co_return json_response(req, bhttp::status::ok, json{{"lockouts", out}});
    }
    if (path.starts_with("/v1/auth/lockouts/") && req.method() == bhttp::verb::delete_) {
      std::string subject;
      if (!url_decode(path.substr(18), subject, false))
        co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the subject");
      if (subject != "*" && !subject.starts_with("user:") && !subject.starts_with("addr:"))
        co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                 fmt::format("'{}' is not a lockout subject; allowed: user:<name>, addr:<ip> (as GET "
                                             "/v1/auth/lockouts shows them) or * for all",
                                             subject.substr(0, 128)));
      auto done = co_await acl_service->unlock(subject);
      if (!done) {
        Response res = error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE", done.error().message);
        res.set(bhttp::field::retry_after, "1");
        co_return res;
      }
      const size_t cleared = *done;
      for_request(req, [&] { security::audit::emit(security::audit::kUnlock, {{"subject", subject}, {"cleared", std::to_string(cleared)},
                                                       {"by", http_caller(req)}, {"door", "http"}, {"addr", client_ip}}); });
      co_return json_response(req, bhttp::status::ok, json{{"subject", subject}, {"cleared", cleared}});
    }
    co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                             "use GET /v1/auth/lockouts, or DELETE /v1/auth/lockouts/{subject}");
  }
  if (path == "/v1/auth/revocations") {
    // Revoked tokens, cluster-wide (ACL REVOKE / ACL REVOCATIONS on the RESP door).
    if (!acl_service)
      co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE", "users and access rules are off on this node");
    if (get) {
      json out = json::array();
      for (auto& e : acl->revocations())
        out.push_back({{"id", e.id}, {"expires_s", e.expires_s}, {"user", e.user}, {"revoked_at_s", e.revoked_at_s}});
      co_return json_response(req, bhttp::status::ok, json{{"revocations", out}});
    }
    if (req.method() != bhttp::verb::post)
      co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                               "use GET /v1/auth/revocations to list, POST to revoke");
    auto body = json::parse(req.body(), nullptr, false);
    std::vector<std::string> args;
    if (!body.is_discarded() && body.is_object()) {
      if (body.contains("token") && body["token"].is_string()) {
        args.push_back(body["token"].get<std::string>());
      } else if (body.contains("id") && body["id"].is_string()) {
        args.push_back(body["id"].get<std::string>());
        if (body.contains("expires_s") && body["expires_s"].is_number_integer())
          args.push_back(std::to_string(body["expires_s"].get<int64_t>()));
      }
    }
    if (args.empty())
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                               "send a JSON object {\"token\": \"kt1....\"} or {\"id\": \"<32 hex digits>\", "
                               "\"expires_s\": <unix seconds the token expires>}");
    std::vector<std::string_view> views(args.begin(), args.end());
    auto parsed = security::parse_revoke_request(views, SystemClock::instance().now_ms() / 1000);
    if (!parsed) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", parsed.error().message);
    json done{{"id", parsed->id}, {"expires_s", parsed->expires_s}, {"user", parsed->user}};
    security::audit::Fields fields{{"id", parsed->id}, {"user", parsed->user}, {"expires_s", std::to_string(parsed->expires_s)},
                                   {"by", http_caller(req)}, {"door", "http"}, {"addr", client_ip}};
    auto st = co_await acl_service->revoke(std::move(*parsed));
    if (!st) co_return meta_error(req, st.error());
    for_request(req, [&] { security::audit::emit(security::audit::kTokenRevoked, fields); });
    co_return json_response(req, bhttp::status::ok, done);
  }
  if (path == "/v1/meta" || path.starts_with("/v1/meta/")) co_return co_await handle_meta(req, path, q);
  if (path == "/v1/transit" || path.starts_with("/v1/transit/")) co_return co_await handle_transit(req, path);
  if (path == "/v1/secrets" || path.starts_with("/v1/secrets/")) co_return co_await handle_secrets(req, path, q);
  if (path == "/v1/routes" || path.starts_with("/v1/routes/")) {
    if (!gateway)
      co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE", "the gateway is off on this node (gateway.enabled = no)");
    co_return co_await gateway->impl().handle_api(req, path, qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1));
  }
  if (path.starts_with("/v1/config/")) co_return co_await handle_config(req, path.substr(11));
  if (path == "/v1/cluster/members" || path.starts_with("/v1/cluster/members/"))
    co_return co_await handle_cluster_members(req, path);
  if (path == "/v1/cluster/status") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    co_return co_await handle_cluster_status(req);
  }
  if (path == "/v1/slowlog") co_return handle_slowlog(req, q);
  if (path == "/v1/traces" || path.starts_with("/v1/traces/")) co_return handle_traces(req, path, q);
  if (path == "/v1/caches" || path.starts_with("/v1/caches/")) {
    auto query = [&q](std::string_view k) { return q.get(k); };
    // Entries travel as CACHE.* commands through the RESP server (routing to the primary).
    CommandRunner runner;
    if (resp.clustered()) runner = [this, &req](const std::vector<std::string>& argv) { return run_command(req, argv); };
    auto a = co_await handle_caches(caches, std::string_view(req.method_string().data(), req.method_string().size()),
                                    path, query, req.body(), runner, req.self);
    auto res = json_response(req, static_cast<bhttp::status>(a.status), a.body);
    if (!a.allow.empty()) res.set(bhttp::field::allow, a.allow);
    co_return res;
  }
  if (path == "/v1/pubsub" || path.starts_with("/v1/pubsub/")) {
    std::string channel;
    if (!url_decode(path.substr(std::min<size_t>(path.size(), 11)), channel, false))
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the channel");
    if (channel.empty())
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                               "the channel must not be empty: use /v1/pubsub/{channel}");
    if (req.method() != bhttp::verb::post)
      co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                               fmt::format("{} is not allowed on /v1/pubsub/{{channel}}; allowed: POST (publish the body), "
                                           "GET (subscribe: Server-Sent Events)",
                                           std::string(req.method_string())));
    // PUBLISH through the RESP server: every node's subscribers, RESP and SSE alike.
    std::vector<std::string> cmd{"PUBLISH", channel, std::string(req.body())};
    auto reply = parse_resp2(co_await run_command(req, cmd));
    if (reply.kind == '-') co_return resp_error_response(req, reply.text);
    co_return json_response(req, bhttp::status::ok, json{{"receivers", reply.number}});
  }
  if (path == "/v1/streams" || path.starts_with("/v1/streams/")) co_return co_await handle_streams(req, path, q);
  if (path == "/v1/kv" || path == "/v1/kv/") {
    if (req.method() != bhttp::verb::get)
      co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET to list keys; PUT and DELETE take /v1/kv/{key}");
    co_return co_await handle_list(req, q);
  }
  if (path.starts_with("/v1/kv/")) {
    std::string key;
    if (!url_decode(path.substr(7), key, false))
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the key");
    co_return co_await handle_kv(req, key, q);
  }
  co_return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                           fmt::format("no route for {} {}; routes: /v1/kv, /v1/kv/{{key}}, /v1/pubsub/{{channel}}, /v1/streams/{{name}}, /v1/streams/{{name}}/groups/{{group}}, /v1/streams/{{name}}/groups/{{group}}/ack, /v1/caches, /v1/caches/{{name}}, /v1/meta, /v1/meta/{{key}}, /v1/meta/watch, /v1/routes, /v1/cluster/status, /v1/slowlog, /v1/traces, /metrics, /health/live, /health/ready",
                                       std::string(req.method_string()), std::string(path)));
}

namespace {

// The RESP command an HTTP request is equivalent to, for the access rules (docs/security.md
// lists them). Empty: the path is not governed by users (health, metrics, the UI page).
std::vector<std::string> equivalent_command(bhttp::verb method, std::string_view path, const Query& q) {
  bool pattern = false;
  if (const std::string* p = q.get("pattern")) pattern = *p == "true" || *p == "1" || *p == "yes";
  auto decoded = [](std::string_view s) {
    std::string out;
    if (!url_decode(s, out, false)) out.assign(s);
    return out;
  };
  const bool get = method == bhttp::verb::get || method == bhttp::verb::head;
  const bool del = method == bhttp::verb::delete_;
  if (path.starts_with("/v1/kv/") && path.size() > 7) {
    std::string key = decoded(path.substr(7));
    if (get) return {"get", key};
    if (del) return {"del", key};
    return {"set", key, ""};
  }
  if (path == "/v1/kv" || path == "/v1/kv/") return {"scan", "0"};
  if (path.starts_with("/v1/pubsub/")) {
    std::string ch = decoded(path.substr(11));
    if (get) return {pattern ? "psubscribe" : "subscribe", ch};
    return {"publish", ch, ""};
  }
  if (path == "/v1/streams" || path == "/v1/streams/") return {};  // a 400: no stream named
  if (path.starts_with("/v1/streams/") && path.size() > 12) {
    // /v1/streams/{name}[/groups/{group}[/ack]] (split before decoding, as the handler does).
    std::string_view rest = path.substr(12);
    size_t slash = rest.find('/');
    std::string name = decoded(rest.substr(0, slash));
    if (slash == std::string_view::npos) {
      if (get) return {"xrange", name, "-", "+"};
      return {"xadd", name, "*", "f", "v"};
    }
    std::string_view tail = rest.substr(slash);  // "/groups/{group}[/ack]"
    std::string group;
    bool ack = false;
    if (tail.starts_with("/groups/")) {
      std::string_view g = tail.substr(8);
      size_t s2 = g.find('/');
      group = decoded(g.substr(0, s2));
      ack = s2 != std::string_view::npos && g.substr(s2) == "/ack";
    }
    if (ack) return {"xack", name, group, "0-1"};
    if (get) return {"xreadgroup", "GROUP", group, "c", "STREAMS", name, ">"};
    return {"xgroup", "create", name, group, "$"};
  }
  if (path == "/v1/caches" || path == "/v1/caches/") return {"cache.list"};
  if (path.starts_with("/v1/caches/")) {
    std::string_view rest = path.substr(11);
    size_t slash = rest.find('/');
    std::string name = decoded(rest.substr(0, slash));
    std::string_view tail = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (tail.starts_with("/entries/") && tail.size() > 9) {
      std::string key = decoded(tail.substr(9));
      if (get) return {"cache.get", name, key};
      if (del) return {"cache.del", name, key};
      return {"cache.put", name, key, ""};
    }
    if (tail.starts_with("/entries")) return {"cache.clear", name};
    if (get) return {"cache.info", name};
    if (del) return {"cache.drop", name};
    return {"cache.create", name};
  }
  if (path == "/v1/routes" || path.starts_with("/v1/routes/"))
    return {del ? "route.deregister" : "route.register", "", ""};
  if (path == "/v1/transit" || path.starts_with("/v1/transit/")) {
    // /v1/transit/keys[/{name}[/rotate|/config]], /v1/transit/{op}/{name}
    std::string_view rest = path.size() > 12 ? path.substr(12) : std::string_view();
    size_t slash = rest.find('/');
    std::string_view first = rest.substr(0, slash);
    std::string_view tail = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (first == "keys") {
      if (tail.empty()) return {"transit.list"};
      size_t s2 = tail.find('/');
      std::string name = decoded(tail.substr(0, s2));
      std::string_view action = s2 == std::string_view::npos ? std::string_view() : tail.substr(s2 + 1);
      if (action == "rotate") return {"transit.rotate", name};
      if (action == "config") return {"transit.config", name, "deletion_allowed", "no"};
      if (get) return {"transit.info", name};
      if (del) return {"transit.delete", name};
      return {"transit.create", name};
    }
    std::string name = decoded(tail);
    if (first == "verify") return {"transit.verify", name, "", ""};
    if (first == "encrypt" || first == "decrypt" || first == "rewrap" || first == "sign")
      return {"transit." + std::string(first), name, ""};
    return {"transit.list"};
  }
  if (path == "/v1/secrets" || path == "/v1/secrets/") return {"secret.list"};
  if (path.starts_with("/v1/secrets/")) {
    std::string p = decoded(path.substr(12));
    if (get) return {"secret.get", p};
    if (del) return {"secret.delete", p};
    if (method == bhttp::verb::post && q.get("undelete")) return {"secret.undelete", p, "VERSIONS", "1"};
    if (method == bhttp::verb::post && q.get("destroy")) return {"secret.destroy", p, "VERSIONS", "1"};
    return {"secret.put", p, ""};
  }
  if (path == "/v1/cluster/status") return {"cluster", "info"};
  if (path == "/v1/slowlog") return {"slowlog", get ? "get" : "reset"};
  if (path == "/v1/traces" || path.starts_with("/v1/traces/")) return {"slowlog", "get"};  // governed as /v1/slowlog
  if (path == "/v1/signals") return {"config", "get", "signals.file"};
  if (path == "/v1/auth/lockouts") return {"acl", "lockouts"};
  if (path.starts_with("/v1/auth/lockouts/")) return {"acl", "unlock", decoded(path.substr(18))};
  if (path == "/v1/auth/revocations") {
    if (get) return {"acl", "revocations"};
    return {"acl", "revoke", ""};
  }
  // Encryption at rest's keys: what CONFIG GET / CONFIG SET of its settings needs (administrators).
  if (path == "/v1/keys" || path.starts_with("/v1/keys/")) {
    if (get) return {"config", "get", "security.at_rest.key_file"};
    return {"config", "set", "security.at_rest.key_file", ""};
  }
  if (path.starts_with("/v1/config/")) {
    if (get) return {"config", "get", decoded(path.substr(11))};
    return {"config", "set", decoded(path.substr(11)), ""};
  }
  if (path == "/v1/cluster/members" || path.starts_with("/v1/cluster/members/")) {
    if (get) return {"cluster", "nodes"};
    return {"cluster", del ? "forget" : "meet"};
  }
  // The metadata store itself (every domain, users included): CLUSTER's "meta" subcommand.
  if (path == "/v1" || path.starts_with("/v1/")) return {"cluster", "meta"};
  return {};
}

// Basic credentials: empty when not base64 (or longer than 4 KiB).
std::string basic_decode(std::string_view in) {
  if (in.size() > 4096) return {};
  return keel::base64_decode(in).value_or(std::string());
}

// The user a request authenticated as, for the audit log: authorize() verified the header
// before any handler runs; no header is the default user (or a certificate user).
std::string http_caller(const Request& req) {
  auto auth = req.find(bhttp::field::authorization);
  if (auth == req.end()) return "default";
  std::string_view v(auth->value().data(), auth->value().size());
  if (v.size() >= 6 && resp::iequals(v.substr(0, 6), "basic ")) {
    std::string creds = basic_decode(v.substr(6));
    std::string name = creds.substr(0, creds.find(':'));
    std::fill(creds.begin(), creds.end(), '\0');
    return name;
  }
  if (v.size() >= 7 && resp::iequals(v.substr(0, 7), "bearer ")) {
    std::string_view token = v.substr(7);
    while (token.starts_with(' ')) token.remove_prefix(1);
    auto parsed = security::parse_token(token);
    return parsed ? parsed->parts[0].block.user : std::string("(token)");
  }
  return "(unknown)";
}

}  // namespace

awaitable<std::optional<Response>> Server::Impl::check_nonce_cluster_wide(const Request& req, const std::string& nonce_key,
                                                                          int64_t expires_s, const std::string& ip) {
  // A service key (0xFF ... 0x00 <slot part>): in the slot of the holder and nonce, replicated
  // like any key; its expiry is the signature's.
  std::string key("\xff" "nonce", 6);
  key.push_back('\0');
  key += nonce_key;
  // (GCC 12: the arguments in a variable, not a braced list inside the co_await.)
  const std::vector<std::string> argv{"SET", key, "1", "NX", "PXAT", std::to_string(expires_s * 1000)};
  std::string reply = co_await run_command(req, argv);
  if (reply.starts_with("+")) co_return std::nullopt;
  if (reply.starts_with("$-1") || reply.starts_with("_")) {
    ++signed_replay;
    for_request(req, [&] { klog().info("HTTP {}: refused a signed request replayed through another node (nonce '{}')", ip,
                nonce_key.substr(nonce_key.find(':') + 1, 64)); });
    Response res = error_response(req, bhttp::status::unauthorized, "REPLAYED",
                                  fmt::format("signed request refused: nonce '{}' was already used by this key within the "
                                              "signature's validity (through another node); sign every request with a "
                                              "fresh nonce",
                                              nonce_key.substr(nonce_key.find(':') + 1, 64)));
    res.set(bhttp::field::www_authenticate, "Bearer realm=\"keel\", error=\"invalid_token\"");
    co_return res;
  }
  ++signed_full;
  std::string why = reply.substr(reply.starts_with("-") ? 1 : 0, reply.find("\r\n") == std::string::npos ? 200 : reply.find("\r\n") - 1);
  Response res = error_response(req, bhttp::status::service_unavailable, "NONCE_STORE_UNAVAILABLE",
                                fmt::format("signed request refused: the cluster-wide nonce record could not be checked "
                                            "({}), so a replay through another node cannot be ruled out; retry",
                                            why));
  res.set(bhttp::field::retry_after, "1");
  co_return res;
}

std::optional<Response> Server::Impl::check_signature(const Request& req, std::string_view token, std::string_view path,
                                                      std::string_view query, const std::string& ip,
                                                      std::string& nonce_key, int64_t& nonce_expires_s) {
  auto refuse = [&](bhttp::status st, const char* code, std::string message) {
    Response res = error_response(req, st, code, std::move(message));
    res.set(bhttp::field::www_authenticate, "Bearer realm=\"keel\", error=\"invalid_token\"");
    return res;
  };
  auto invalid = [&](const std::string& m) {
    ++signed_invalid;
    return refuse(bhttp::status::unauthorized, "UNAUTHENTICATED", "signed request refused: " + m);
  };
  auto field = [&](std::string_view name) {
    auto it = req.find(name);
    return it == req.end() ? std::string_view() : std::string_view(it->value().data(), it->value().size());
  };
  auto in = security::parse_signature_input(field("Signature-Input"));
  if (!in) return invalid(in.error().message);
  auto sig = security::parse_signature(field("Signature"), in->label);
  if (!sig) return invalid(sig.error().message);
  const std::string method(req.method_string());
  const std::string_view digest = field("Content-Digest");
  const int64_t now_s = SystemClock::instance().now_ms() / 1000;
  auto base = security::signature_base(*in, {method, path, query, digest, req.body()}, now_s, opt.signature_window_s);
  if (!base) return invalid(base.error().message);
  if (digest != "sha-256=:" + security::base64_encode(security::sha256_raw(req.body())) + ":")
    return invalid("Content-Digest does not match the body: send sha-256=:<base64 of the SHA-256 of the body as sent>:");
  auto holder = security::token_holder_key(token);
  if (!holder) return invalid(holder.error().message);
  auto key = security::TokenKey::ed25519_public(*holder);
  if (!key || !key->verify(*base, *sig))
    return invalid("the signature does not verify with the token's holder key (the last block's key): sign the "
                   "signature base of RFC 9421 with it");
  // Only a verified signature reaches the store: others cannot fill it.
  security::NonceStore::Admit a;
  nonce_key = security::hex(*holder) + ":" + in->nonce;
  nonce_expires_s = in->expires_s;
  {
    std::lock_guard lock(nonce_mu);
    a = nonces->admit(nonce_key, in->expires_s, now_s);
  }
  if (a == security::NonceStore::Admit::kReplay) {
    ++signed_replay;
    for_request(req, [&] { klog().info("HTTP {}: refused a replayed signed request (nonce '{}')", ip, in->nonce.substr(0, 64)); });
    return refuse(bhttp::status::unauthorized, "REPLAYED",
                  fmt::format("signed request refused: nonce '{}' was already used by this key within the signature's "
                              "validity; sign every request with a fresh nonce",
                              in->nonce.substr(0, 64)));
  }
  if (a == security::NonceStore::Admit::kFull) {
    ++signed_full;
    for_request(req, [&] { klog().warn("HTTP {}: refused a signed request: the nonce store is full ({} unexpired nonces, auth.nonce_capacity)",
                ip, opt.nonce_capacity); });
    Response res = error_response(
        req, bhttp::status::service_unavailable, "NONCE_STORE_FULL",
        fmt::format("signed request refused: the node remembers {} unexpired nonces (auth.nonce_capacity) and cannot "
                    "rule out a replay; retry after older signatures expire, sign with shorter expiries, or raise "
                    "auth.nonce_capacity",
                    opt.nonce_capacity));
    res.set(bhttp::field::retry_after, "1");
    return res;
  }
  ++signed_ok;
  return std::nullopt;
}

awaitable<std::optional<Response>> Server::Impl::authorize(const Request& req, const Peer& peer) {
  std::string_view target(req.target().data(), req.target().size());
  const size_t qpos = target.find('?');
  const std::string_view path = target.substr(0, qpos);
  if (!(path == "/v1" || path.starts_with("/v1/"))) co_return std::nullopt;  // health, metrics, the UI page
  auto unauthorized = [&](std::string message, bool bearer = false) {
    Response res = error_response(req, bhttp::status::unauthorized, "UNAUTHENTICATED", std::move(message));
    res.set(bhttp::field::www_authenticate, bearer ? "Bearer realm=\"keel\", error=\"invalid_token\""
                                                   : "Basic realm=\"keel\", charset=\"UTF-8\"");
    return res;
  };
  const int64_t now_ms = SystemClock::instance().now_ms();
  auto locked = [&](const security::Acl::Locked& lk) {
    Response res = error_response(
        req, bhttp::status::too_many_requests, "LOCKED",
        fmt::format("too many failed authentications for {}: further attempts are refused unchecked for {} ms; wait, "
                    "or an administrator can run ACL UNLOCK {}",
                    lk.subject, lk.remaining_ms, lk.subject));
    res.set(bhttp::field::retry_after, std::to_string((lk.remaining_ms + 999) / 1000));
    return res;
  };
  std::shared_ptr<const security::User> user;
  std::shared_ptr<const security::TokenGrant> grant;
  auto auth = req.find(bhttp::field::authorization);
  if (auth != req.end()) {
    std::string_view v(auth->value().data(), auth->value().size());
    const bool basic = v.size() >= 6 && resp::iequals(v.substr(0, 6), "basic ");
    const bool bearer = v.size() >= 7 && resp::iequals(v.substr(0, 7), "bearer ");
    if (!basic && !bearer)
      co_return unauthorized("only Authorization: Basic <base64 of user:password> or Bearer <token> is accepted");
    if (bearer) {
      std::string_view token = v.substr(7);
      while (token.starts_with(' ')) token.remove_prefix(1);
      auto parsed = security::parse_token(token);
      const std::string who = parsed ? parsed->parts[0].block.user : std::string("(token)");
      // Tokens are not guessed (signatures): the cluster's lockout records are read only when
      // this node's copy shows a lock (it may have been cleared through another node).
      auto chk = co_await acl_service->lockout_gate(who, peer.ip, now_ms, true);
      auto& lk = chk.locked;
      const bool recorded = chk.recorded;
      if (lk) {
        for_request(req, [&] { security::audit::emit(security::audit::kAuthLocked,
                              {{"door", "http"}, {"user", who}, {"addr", peer.ip}, {"subject", lk->subject}}); });
        co_return locked(*lk);
      }
      const bool signed_request = req.find("Signature-Input") != req.end();
      auto login = acl->authenticate_token({}, token, peer.cert_sha256, now_ms, !signed_request);
      if (!login) {
        resp::ClientState cs;
        cs.addr = "http";
        cs.last_cmd = "auth";
        resp::acl_log(*acl, cs, "auth", "auth", who, now_ms);
        for_request(req, [&] { security::audit::emit(security::audit::kAuthFailure,
                              {{"door", "http"}, {"method", signed_request ? "signature" : "token"}, {"user", who},
                               {"addr", peer.ip}, {"reason", login.error().message}}); });
        co_await acl_service->lockout_failed(who, peer.ip, now_ms);
        co_return unauthorized("WRONGPASS token refused: " + login.error().message, true);
      }
      if (signed_request) {
        std::string_view query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
        std::string nonce_key;
        int64_t nonce_expires_s = 0;
        if (auto refused = check_signature(req, token, path, query, peer.ip, nonce_key, nonce_expires_s))
          co_return std::move(*refused);
        if (resp.clustered())
          if (auto refused = co_await check_nonce_cluster_wide(req, nonce_key, nonce_expires_s, peer.ip))
            co_return std::move(*refused);
      }
      co_await acl_service->lockout_succeeded(login->user->name, peer.ip, recorded);
      if (security::audit::success_due(
              fmt::format("http|{}|{}|{}", signed_request ? "signature" : "token", login->user->name, peer.ip), now_ms))
        for_request(req, [&] { security::audit::emit(security::audit::kAuthSuccess,
                              {{"door", "http"}, {"method", signed_request ? "signature" : "token"},
                               {"user", login->user->name}, {"addr", peer.ip},
                               {"token_id", login->grant->revocation_ids.back()}}); });
      user = std::move(login->user);
      grant = std::move(login->grant);
    } else {
      std::string creds = basic_decode(v.substr(6));
      size_t colon = creds.find(':');
      if (colon == std::string::npos)
        co_return unauthorized("Authorization: Basic must carry base64 of user:password");
      std::string name = creds.substr(0, colon);
      std::string password = creds.substr(colon + 1);
      std::fill(creds.begin(), creds.end(), '\0');
      // Cluster-wide lockout: the cluster's records decide before a password is hashed; a
      // password this node verified before (every request of a client sends it) is answered
      // without asking, unless this node's copy of the records shows a lock.
      auto quick = acl->authenticate_cached(name, password);
      const bool fast = quick && *quick;
      auto chk = co_await acl_service->lockout_gate(name, peer.ip, now_ms, fast);
      auto& lk = chk.locked;
      const bool recorded = chk.recorded;
      if (lk) {
        std::fill(password.begin(), password.end(), '\0');
        for_request(req, [&] { security::audit::emit(security::audit::kAuthLocked,
                              {{"door", "http"}, {"user", name}, {"addr", peer.ip}, {"subject", lk->subject}}); });
        co_return locked(*lk);
      }
      if (quick) user = *quick;
      else user = co_await acl_service->authenticate(name, password);
      std::fill(password.begin(), password.end(), '\0');
      if (!user) {
        resp::ClientState cs;
        cs.addr = "http";
        cs.last_cmd = "auth";
        resp::acl_log(*acl, cs, "auth", "auth", name, SystemClock::instance().now_ms());
        for_request(req, [&] { security::audit::emit(security::audit::kAuthFailure,
                              {{"door", "http"}, {"method", "password"}, {"user", name}, {"addr", peer.ip},
                               {"reason", "wrong password, or no such user, or the user is off"}}); });
        co_await acl_service->lockout_failed(name, peer.ip, now_ms);
        co_return unauthorized("WRONGPASS invalid username-password pair or user is disabled.");
      }
      co_await acl_service->lockout_succeeded(name, peer.ip, recorded);
      if (security::audit::success_due(fmt::format("http|password|{}|{}", name, peer.ip), now_ms))
        for_request(req, [&] { security::audit::emit(security::audit::kAuthSuccess,
                              {{"door", "http"}, {"method", "password"}, {"user", name}, {"addr", peer.ip}}); });
    }
  } else if (auto cu = peer.uris.empty() ? nullptr : acl->user_for_certificate(peer.uris)) {
    user = std::move(cu);  // auth.cert_users: the client certificate names the user
  } else {
    user = acl->default_user();
    if (!user->enabled || !user->nopass)
      co_return unauthorized("NOAUTH Authentication required: send Authorization: Basic <base64 of user:password>");
  }
  if (user->unrestricted() && !grant) co_return std::nullopt;
  Query q;
  if (qpos != std::string_view::npos && !parse_query(target.substr(qpos + 1), q)) q = Query{};
  std::vector<std::string> argv = equivalent_command(req.method(), path, q);
  if (argv.empty()) co_return std::nullopt;
  const resp::CommandSpec* spec = resp::find_command(argv[0]);
  if (!spec) co_return std::nullopt;
  std::vector<std::string_view> views(argv.begin(), argv.end());
  resp::Args args(views.data(), views.size());
  auto d = resp::acl_check(*user, *spec, args);
  if (!d && grant) d = resp::token_check(*grant, *spec, args);
  if (!d) co_return std::nullopt;
  resp::ClientState cs;
  cs.addr = "http";
  cs.user = user;
  cs.last_cmd = spec->name;
  resp::acl_log(*acl, cs, d->reason, d->object, user->name, SystemClock::instance().now_ms());
  Response res = error_response(req, bhttp::status::forbidden, "NOPERM", d->error.substr(7));
  auto body = json::parse(res.body(), nullptr, false);
  if (!body.is_discarded()) {
    body["error"]["command"] = resp::full_command_name(*spec, args);
    body["error"]["reason"] = d->reason;
    if (d->reason != "command") body["error"]["object"] = d->object;
    res.body() = body.dump();
    res.prepare_payload();
  }
  co_return res;
}

namespace {

// Relays bytes both ways between a client and the upstream of an upgraded connection
// (WebSocket through the gateway), starting with what either side sent past its handshake,
// until one side closes or nothing passes either way for `idle_ms`; then closes both.
struct RelayState {
  explicit RelayState(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool done = false;
};

template <class From, class To>
awaitable<void> relay_one_way(From& from, To& to, beast::flat_buffer& early, RelayState& st,
                              std::function<void()> close_both) {
  if (early.size() > 0) {
    auto [ec, n] = co_await asio::async_write(to, early.data(), asio::as_tuple(use_awaitable));
    early.consume(early.size());
    if (ec) {
      close_both();
      co_return;
    }
  }
  std::vector<char> chunk(16 * 1024);
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(chunk), asio::as_tuple(use_awaitable));
    if (ec || n == 0) break;
    st.last = std::chrono::steady_clock::now();
    auto [wec, wn] = co_await asio::async_write(to, asio::buffer(chunk.data(), n), asio::as_tuple(use_awaitable));
    if (wec) break;
  }
  close_both();
}

awaitable<void> relay_watchdog(std::shared_ptr<RelayState> st, std::chrono::milliseconds idle,
                               std::function<void()> close_both) {
  while (!st->done) {
    st->timer.expires_after(std::min<std::chrono::milliseconds>(idle, std::chrono::milliseconds(1000)));
    co_await st->timer.async_wait(asio::as_tuple(use_awaitable));
    if (st->done) co_return;
    if (std::chrono::steady_clock::now() - st->last >= idle) {
      close_both();
      co_return;
    }
  }
}

template <class Stream>
awaitable<void> relay(Stream& client, beast::tcp_stream& client_tcp, beast::flat_buffer& client_early,
                      Gateway::Impl::Conn& up, int64_t idle_ms) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  client_tcp.expires_never();
  up.stream.expires_never();
  auto st = std::make_shared<RelayState>(ex);
  auto close_both = [&client_tcp, &up] {
    boost::system::error_code ec;
    client_tcp.socket().close(ec);
    up.stream.socket().close(ec);
  };
  asio::co_spawn(ex, relay_watchdog(st, std::chrono::milliseconds(std::max<int64_t>(idle_ms, 1)), close_both),
                 asio::detached);
  co_await (relay_one_way(client, up.stream, client_early, *st, close_both) &&
            relay_one_way(up.stream, client, up.buf, *st, close_both));
  st->done = true;
  st->timer.cancel();
}

// Writes a streamed gateway answer: `header` (what proxy() answered: the upstream's status and
// fields, hop-by-hop gone) with the body read from the upstream as it arrives, 64 KB at a time.
// The length is the upstream's when it gave one; otherwise the body goes chunked to an HTTP/1.1
// client, or to the connection's close to an HTTP/1.0 one (`keep` then becomes false). Returns
// whether the whole body went through (the client connection is unusable otherwise).
template <class Stream>
awaitable<bool> relay_streamed(Stream& client, beast::tcp_stream& client_tcp, const Response& header,
                               Gateway::Impl::Streamed& up, bool& keep, unsigned client_version,
                               int64_t upstream_timeout_ms, int64_t client_timeout_s) {
  auto& p = up.parser;
  auto& m = p.get();
  const auto length = p.content_length();
  m.base() = header.base();
  if (length) {
    m.content_length(*length);
  } else if (client_version >= 11) {
    m.chunked(true);
  } else {
    keep = false;
  }
  m.keep_alive(keep);
  bhttp::response_serializer<bhttp::buffer_body> sr{m};
  client_tcp.expires_after(std::chrono::seconds(client_timeout_s));
  auto [hec, hn] = co_await bhttp::async_write_header(client, sr, asio::as_tuple(use_awaitable));
  if (hec) co_return false;
  std::vector<char> chunk(64 * 1024);
  do {
    if (!p.is_done()) {
      m.body().data = chunk.data();
      m.body().size = chunk.size();
      up.conn->stream.expires_after(std::chrono::milliseconds(upstream_timeout_ms));
      auto [rec, rn] = co_await bhttp::async_read(up.conn->stream, up.conn->buf, p, asio::as_tuple(use_awaitable));
      if (rec == bhttp::error::need_buffer) rec = {};
      if (rec) co_return false;  // the upstream broke (or passed gateway.max_response) mid-body
      m.body().size = chunk.size() - m.body().size;
      m.body().data = chunk.data();
      m.body().more = !p.is_done();
    } else {
      m.body().data = nullptr;
      m.body().size = 0;
      m.body().more = false;
    }
    client_tcp.expires_after(std::chrono::seconds(client_timeout_s));
    auto [wec, wn] = co_await bhttp::async_write(client, sr, asio::as_tuple(use_awaitable));
    if (wec == bhttp::error::need_buffer) wec = {};
    if (wec) co_return false;
  } while (!p.is_done() || !sr.is_done());
  co_return true;
}

}  // namespace

// "100 Continue" to a client that asked for it (Expect: 100-continue) before its body.
template <class Stream>
awaitable<void> write_continue(Stream& s) {
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  co_await asio::async_write(s, asio::buffer(kContinue.data(), kContinue.size()), asio::as_tuple(use_awaitable));
}

// Defined before session(), which instantiates them.
template <class Stream>
awaitable<void> Server::Impl::serve_requests(Stream& stream, beast::tcp_stream& tcp, const Peer& peer) {
  const std::string& client_ip = peer.ip;
  beast::flat_buffer buf;
  for (;;) {
    // The header first: an upload to a gateway route too large to hold is streamed to the
    // instance (Gateway::Impl::BodyReader); any other body is read whole, up to
    // limits.http_max_body.
    bhttp::request_parser<bhttp::empty_body> head;
    head.body_limit(std::numeric_limits<uint64_t>::max());  // judged below
    head.header_limit(opt.max_header_bytes);
    if (buf.size() == 0) {
      // Waiting for the next request: http.idle_timeout_s. Once its first bytes are here, the
      // rest of its header has http.header_timeout_ms (a client trickling a header byte by
      // byte cannot hold the connection for longer).
      tcp.expires_after(std::chrono::seconds(opt.idle_timeout_s));
      auto [iec, in] = co_await stream.async_read_some(buf.prepare(16 * 1024), asio::as_tuple(use_awaitable));
      if (iec) {
        if (iec == beast::error::timeout) ++http_timeouts[0];
        break;
      }
      buf.commit(in);
    }
    tcp.expires_after(std::chrono::milliseconds(opt.header_timeout_ms));
    auto [ec, n] = co_await bhttp::async_read_header(stream, buf, head, asio::as_tuple(use_awaitable));
    if (ec == beast::error::timeout) {
      ++http_timeouts[1];
      spdlog::debug("HTTP client {}: its request header did not arrive within http.header_timeout_ms ({} ms); closed",
                    client_ip, opt.header_timeout_ms);
      break;
    }
    std::optional<bhttp::request_parser<bhttp::string_body>> parser;
    std::optional<bhttp::request_parser<bhttp::buffer_body>> upload;
    if (!ec) {
      const auto length = head.content_length();
      const bool big = !head.is_done() && (head.chunked() || (length && *length > gateway_stream_above()));
      if (big && gateway && (opt.gateway_only || !keel_path(std::string_view(head.get().target().data(), head.get().target().size())))) {
        Request probe;
        probe.base() = head.get().base();
        if (gateway->impl().routes_request(probe)) upload.emplace(std::move(head));
      }
      if (!upload) {
        if (length && *length > opt.max_body_bytes) {
          ec = bhttp::error::body_limit;
        } else {
          const bool expect_continue = !head.is_done() && beast::iequals(head.get()[bhttp::field::expect], "100-continue");
          parser.emplace(std::move(head));
          parser->body_limit(opt.max_body_bytes);
          if (expect_continue) co_await write_continue(stream);
          if (!parser->is_done()) {
            tcp.expires_after(std::chrono::milliseconds(opt.body_timeout_ms));
            auto [bec, bn] = co_await bhttp::async_read(stream, buf, *parser, asio::as_tuple(use_awaitable));
            ec = bec;
            if (ec == beast::error::timeout) {
              ++http_timeouts[2];
              spdlog::debug("HTTP client {}: its request body did not arrive within http.body_timeout_ms ({} ms); closed",
                            client_ip, opt.body_timeout_ms);
              break;
            }
          }
        }
      }
    }
    if (ec) {
      std::optional<Response> err;
      Request dummy;
      dummy.version(11);
      if (ec == bhttp::error::body_limit)
        err = error_response(dummy, bhttp::status::payload_too_large, "LIMIT_EXCEEDED",
                             fmt::format("request body exceeds limits.http_max_body ({} bytes)", opt.max_body_bytes));
      else if (ec == bhttp::error::header_limit)
        err = error_response(dummy, bhttp::status::request_header_fields_too_large, "LIMIT_EXCEEDED",
                             fmt::format("request headers exceed {} bytes", opt.max_header_bytes));
      else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
               ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message)
        err = error_response(dummy, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed HTTP request: " + ec.message());
      if (err) {
        err->keep_alive(false);
        err->prepare_payload();
        co_await bhttp::async_write(stream, *err, asio::as_tuple(use_awaitable));
        // Lingering close (as nginx does): drain what the client is still sending, for a
        // bounded time and size, so it reads our error instead of a reset connection.
        boost::system::error_code sec;
        tcp.socket().shutdown(tcp::socket::shutdown_send, sec);
        tcp.expires_after(std::chrono::seconds(2));
        std::vector<char> sink(64 * 1024);
        for (size_t drained = 0; drained < (256u << 20);) {
          auto [rec, rn] = co_await stream.async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
          if (rec) break;
          drained += rn;
        }
      }
      break;
    }
    Request req;
    if (upload) {
      req.base() = upload->get().base();
      if (beast::iequals(req[bhttp::field::expect], "100-continue")) co_await write_continue(stream);
    } else {
      static_cast<Request::Base&>(req) = parser->release();
    }
    // An upload's body, handed to the gateway as it arrives (64 KB at a time).
    std::vector<char> upload_chunk;
    std::optional<Gateway::Impl::BodyReader> upload_reader;
    if (upload) upload_reader.emplace([&]() -> awaitable<std::optional<std::string_view>> {
      auto& p = *upload;
      if (p.is_done()) co_return std::string_view();
      upload_chunk.resize(64 * 1024);
      p.get().body().data = upload_chunk.data();
      p.get().body().size = upload_chunk.size();
      tcp.expires_after(std::chrono::seconds(opt.idle_timeout_s));
      auto [rec, rn] = co_await bhttp::async_read(stream, buf, p, asio::as_tuple(use_awaitable));
      if (rec == bhttp::error::need_buffer) rec = {};
      if (rec) co_return std::nullopt;
      co_return std::string_view(upload_chunk.data(), upload_chunk.size() - p.get().body().size);
    });
    ++requests;
    int64_t t0 = SystemClock::instance().monotonic_ns();
    if (tracer) begin_trace(req);
    bool keep = req.keep_alive() && !stopping;
    // (GCC 12: no co_await inside a conditional expression; it corrupts the result.)
    std::optional<Response> answer;
    bool proxied = false;
    // Rate limits per user and per client address (security/client_limits.h); the node's own
    // health and metrics stay reachable (probes and scrapes are not a client's traffic).
    const std::string_view target_path(req.target().data(), req.target().size());
    if (client_limits && !target_path.starts_with("/health/") && !target_path.starts_with("/metrics")) [[unlikely]] {
      if (auto no = client_limits->check(http_caller(req), client_ip, sdk::SteadyClock::instance().now())) {
        answer = error_response(req, bhttp::status::too_many_requests, "RATE_LIMITED", no->message);
        answer->set(bhttp::field::retry_after, std::to_string(std::max<int64_t>(1, (no->retry_after_ms + 999) / 1000)));
        if (upload) keep = false;  // its body was not read
      }
    }
    Gateway::Impl::Handoff handoff;  // an upgrade the upstream accepted, or a streamed answer
    if (!answer && gateway && (opt.gateway_only || !keel_path(std::string_view(req.target().data(), req.target().size())))) {
      answer = co_await gateway->impl().proxy(req, client_ip, opt.gateway_only, &handoff,
                                              upload_reader ? &*upload_reader : nullptr);
      proxied = answer.has_value();
    }
    if (upload && !upload->is_done()) keep = false;  // the rest of its body is still on the wire
    if (handoff.streamed) {
      if (tracer) trace_request(req, *answer, t0);
      bool ok = co_await relay_streamed(stream, tcp, *answer, *handoff.streamed, keep, req.version(),
                                        gateway->impl().opt.request_timeout_ms, opt.idle_timeout_s);
      if (ok && handoff.streamed->parser.keep_alive()) gateway->impl().give_back(*handoff.streamed);
      if (!ok || !keep) break;
      continue;
    }
    auto& tunnel = handoff.tunnel;
    if (tunnel) {
      // WebSocket (or any upgrade) through the gateway: the upstream's 101 as it is, then the
      // bytes of both sides relayed until one closes (no keep-alive after it).
      if (tracer) trace_request(req, *answer, t0);
      auto [wec, wn] = co_await bhttp::async_write(stream, *answer, asio::as_tuple(use_awaitable));
      if (!wec) {
        auto& g = gateway->impl();
        ++g.tunnels_open;
        co_await relay(stream, tcp, buf, *tunnel, g.opt.tunnel_idle_timeout_ms);
        --g.tunnels_open;
      }
      break;
    }
    if (!answer && acl) answer = co_await authorize(req, peer);
    if (!answer && req.method() == bhttp::verb::get &&
        std::string_view(req.target().data(), req.target().size()).starts_with("/v1/pubsub/")) {
      co_await serve_sse(stream, tcp, req);
      break;
    }
    if (!answer) answer = co_await handle(req, client_ip);
    Response& res = *answer;
    std::optional<observe::TraceId> traced;
    if (tracer) traced = trace_request(req, res, t0);
    if (slow) log_slow(req, res, t0, client_ip, traced);
    res.keep_alive(keep);
    if (proxied && req.method() == bhttp::verb::head) {
      // The upstream's answer to HEAD: its Content-Length stands.
    } else if (req.method() == bhttp::verb::head) {
      res.prepare_payload();
      res.body().clear();
    } else {
      res.prepare_payload();
    }
    auto wec = co_await write_plain(stream, res);
    if (wec || !keep) break;
  }
}

namespace {

// One SSE stream's subscription: messages arrive on shard 0's thread (where HTTP sessions run)
// and wait in `queued` for the session to write them. The pubsub output-buffer limit applies
// as to a RESP subscriber: past it the stream is cut off, counted and logged.
struct SseSink final : resp::PubSubSink {
  SseSink(asio::io_context& io, resp::Server& r, tcp::socket& s, std::string peer)
      : wake(io), resp(r), sock(s), peer(std::move(peer)) {}
  asio::steady_timer wake;  // the session sleeps on it; a message cancels it
  resp::Server& resp;
  tcp::socket& sock;
  std::string peer;
  std::string queued;
  size_t inflight = 0;  // bytes of the write under way
  bool dead = false;
  int64_t soft_since_ms = 0;

  void message(resp::PubKind, const std::string* pattern, std::string_view channel,
               std::string_view payload) override {
    if (dead) return;
    json j;
    put_bytes(j, "channel", channel);
    if (pattern) put_bytes(j, "pattern", *pattern);
    put_bytes(j, "message", payload);
    queued += "event: message\ndata: " + j.dump() + "\n\n";  // dump() escapes newlines
    const auto lim = resp.pubsub_limits();
    const size_t pending = queued.size() + inflight;
    bool over = lim.hard_bytes > 0 && pending >= lim.hard_bytes;
    if (!over && lim.soft_bytes > 0 && pending >= lim.soft_bytes) {
      const int64_t now = SystemClock::instance().monotonic_ns() / 1000000;
      if (soft_since_ms == 0) soft_since_ms = now;
      else if (now - soft_since_ms > static_cast<int64_t>(lim.soft_s) * 1000) over = true;
    } else if (!over) {
      soft_since_ms = 0;
    }
    if (over) {
      dead = true;
      resp.count_output_limit_disconnection(0);
      klog().warn("closing SSE subscriber {}: its output buffer reached {} bytes, over the pubsub limit "
                   "(client-output-buffer-limit pubsub {} {} {}); it reads slower than messages arrive",
                   peer, pending, lim.hard_bytes, lim.soft_bytes, lim.soft_s);
      std::string().swap(queued);
      boost::system::error_code ignored;
      sock.shutdown(tcp::socket::shutdown_both, ignored);
      sock.cancel(ignored);
    }
    wake.cancel();
  }
};

}  // namespace

// GET /v1/pubsub/{channel}[?pattern=true]: an `event: subscribe` first (the subscription is
// active from then on), then an `event: message` per message with a JSON `data` line
// ({"channel", "message"} and "pattern" for a pattern subscription; "..._base64" for bytes
// that are not UTF-8), and a comment line every 15 s of silence so that a proxy keeps the
// stream open and a closed client is noticed.
template <class Stream>
awaitable<void> Server::Impl::serve_sse(Stream& stream, beast::tcp_stream& tcp, const Request& req) {
  std::string_view target(req.target().data(), req.target().size());
  const auto qpos = target.find('?');
  const std::string_view path = target.substr(0, qpos);
  Query q;
  std::string channel;
  std::optional<Response> err;
  if (qpos != std::string_view::npos && !parse_query(target.substr(qpos + 1), q))
    err = error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the query string");
  else if (!url_decode(path.substr(11), channel, false))
    err = error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the channel");
  else if (channel.empty())
    err = error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "the channel must not be empty: use /v1/pubsub/{channel}");
  const std::string* pattern_arg = q.get("pattern");
  if (!err && pattern_arg && *pattern_arg != "true" && *pattern_arg != "false")
    err = error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                         fmt::format("pattern must be true or false, got '{}'", *pattern_arg));
  if (err) {
    err->keep_alive(false);
    err->prepare_payload();
    co_await bhttp::async_write(stream, *err, asio::as_tuple(use_awaitable));
    co_return;
  }
  const bool pattern = pattern_arg && *pattern_arg == "true";
  tcp.expires_never();
  boost::system::error_code ec;
  auto peer = tcp.socket().remote_endpoint(ec);
  SseSink sink(shards.shard(0).io, resp, tcp.socket(),
               ec ? std::string("?") : fmt::format("{}:{}", peer.address().to_string(), peer.port()));
  json hello;
  put_bytes(hello, pattern ? "pattern" : "channel", channel);
  sink.queued =
      "HTTP/1.1 200 OK\r\nServer: keel\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "Connection: close\r\n\r\nevent: subscribe\ndata: " + hello.dump() + "\n\n";
  const uint64_t id = resp.subscribe_sink(0, pattern ? resp::PubKind::kPattern : resp::PubKind::kChannel, channel, &sink);
  int idle_s = 0;
  while (!sink.dead && !stopping) {
    if (!sink.queued.empty()) {
      std::string out;
      out.swap(sink.queued);
      sink.inflight = out.size();
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(out), asio::as_tuple(use_awaitable));
      sink.inflight = 0;
      if (wec) break;
      idle_s = 0;
      continue;
    }
    sink.wake.expires_after(std::chrono::seconds(1));
    auto [tec] = co_await sink.wake.async_wait(asio::as_tuple(use_awaitable));
    if (!tec && ++idle_s >= 15) sink.queued += ": keep-alive\n\n";
  }
  resp.unsubscribe_sink(0, id);
}

awaitable<void> Server::Impl::session(tcp::socket sock, bool tls) {
  boost::system::error_code rec;
  std::string client_ip = sock.remote_endpoint(rec).address().to_string();
  // limits.address_connections: held for the connection's life, shared with the RESP door.
  std::optional<security::ConnectionSlot> slot;
  if (connection_limits) {
    std::string why;
    slot = connection_limits->open_connection(client_ip, why);
    if (!slot) {
      if (!tls) {  // a TLS client would need a handshake to read it: just closed
        Request dummy;
        dummy.version(11);
        auto res = error_response(dummy, bhttp::status::service_unavailable, "CONNECTION_LIMIT", why);
        res.keep_alive(false);
        res.prepare_payload();
        boost::system::error_code wec;
        bhttp::write(sock, res, wec);
      }
      boost::system::error_code cec;
      sock.shutdown(tcp::socket::shutdown_both, cec);
      sock.close(cec);
      co_return;
    }
  }
  beast::tcp_stream tcp(std::move(sock));
  sessions.push_front(&tcp);
  auto self = sessions.begin();
  Peer peer{client_ip, {}, {}};
  if (!tls) {
    co_await serve_requests(tcp, tcp, peer);
  } else {
    // HTTPS: the same requests over TLS; the context is the one current when the client
    // connected (a reload gives later connections the new one).
    std::shared_ptr<asio::ssl::context> ctx = opt.tls->get();
    asio::ssl::stream<beast::tcp_stream&> stream(tcp, *ctx);
    tcp.expires_after(std::chrono::seconds(10));  // a client that never finishes its handshake
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(use_awaitable));
    if (hec) {
      ++tls_handshake_failures;
      spdlog::debug("HTTPS client {}: TLS handshake failed: {}", client_ip, hec.message());
    } else {
      peer.cert_sha256 = security::peer_certificate_sha256(stream.native_handle());
      if (!peer.cert_sha256.empty()) peer.uris = security::peer_certificate_uris(stream.native_handle());
      co_await serve_requests(stream, tcp, peer);
      // close_notify, so that a client reading to the end sees a clean end (bounded).
      tcp.expires_after(std::chrono::seconds(1));
      co_await stream.async_shutdown(asio::as_tuple(use_awaitable));
    }
  }
  boost::system::error_code ec;
  tcp.socket().shutdown(tcp::socket::shutdown_both, ec);
  sessions.erase(self);
}

awaitable<void> Server::Impl::accept_loop(bool tls) {
  auto& acc = tls ? *tls_acceptor : *acceptor;
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(asio::as_tuple(use_awaitable));
    if (ec) {
      if (stopping || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(shards.shard(0).io, session(std::move(sock), tls), asio::detached);
  }
}

namespace {

bhttp::status status_for(Errc c) {
  switch (c) {
    case Errc::kInvalidArgument: return bhttp::status::bad_request;
    case Errc::kNotFound: return bhttp::status::not_found;
    case Errc::kConflict: return bhttp::status::conflict;
    case Errc::kUnavailable: return bhttp::status::service_unavailable;
    case Errc::kTimeout: return bhttp::status::gateway_timeout;
    case Errc::kLimitExceeded: return bhttp::status::too_many_requests;
    case Errc::kOutOfRange: return bhttp::status::gone;
    case Errc::kOutOfMemory:
    case Errc::kDiskError: return bhttp::status::insufficient_storage;
    default: return bhttp::status::internal_server_error;
  }
}

Response meta_error(const Request& req, const Error& e) {
  return error_response(req, status_for(e.code), errc_name(e.code), e.message);
}

json transit_key_json(const security::transit::Key& k) {
  json j{{"name", k.name},
         {"type", std::string(security::transit::type_name(k.type))},
         {"latest_version", k.latest()},
         {"min_decryption_version", k.min_decryption_version},
         {"deletion_allowed", k.deletion_allowed},
         {"created_ms", k.created_ms}};
  auto pub = security::transit::public_keys(k);
  if (!pub.empty()) {
    json p = json::object();
    for (auto& [v, raw] : pub) p[std::to_string(v)] = keel::base64_encode(raw);
    j["public_keys"] = p;
  }
  return j;
}

Response transit_error(const Request& req, const Error& e) {
  if (e.code == Errc::kAlreadyExists) return error_response(req, bhttp::status::conflict, "ALREADY_EXISTS", e.message);
  if (e.code == Errc::kLimitExceeded) return error_response(req, bhttp::status::bad_request, "LIMIT_EXCEEDED", e.message);
  return meta_error(req, e);
}

}  // namespace

// /v1/secrets (docs/security.md, "Secrets"): the same SecretsService as SECRET.*. A value is the
// request body (raw bytes) and comes back as "value" (UTF-8) or "value_base64".
awaitable<Response> Server::Impl::handle_secrets(const Request& req, std::string_view path, const Query& q) {
  if (!secrets)
    co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE",
                             "secrets are not available on this node (they need cluster metadata)");
  const bool get = req.method() == bhttp::verb::get, put = req.method() == bhttp::verb::put,
             del = req.method() == bhttp::verb::delete_;
  if (path == "/v1/secrets" || path == "/v1/secrets/") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    const std::string* prefix = q.get("prefix");
    json paths = json::array();
    for (auto& p : secrets->list(prefix ? std::string_view(*prefix) : std::string_view())) paths.push_back(p);
    co_return json_response(req, bhttp::status::ok, json{{"paths", paths}});
  }
  std::string sp;
  if (!url_decode(path.substr(12), sp, false))
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "bad percent-encoding in the path");
  if (auto st = security::secrets::check_path(sp); !st)
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", st.error().message);
  auto number = [&](const char* name, std::optional<uint32_t>& out) -> std::optional<Response> {
    const std::string* s = q.get(name);
    if (!s) return std::nullopt;
    uint32_t v = 0;
    if (std::from_chars(s->data(), s->data() + s->size(), v).ptr != s->data() + s->size())
      return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            fmt::format("?{}= must be a version number, got '{}'", name, s->substr(0, 40)));
    out = v;
    return std::nullopt;
  };
  if (put) {
    std::optional<uint32_t> cas;
    if (auto e = number("cas", cas)) co_return *e;
    auto v = co_await secrets->put(sp, req.body(), cas);
    if (!v) {
      if (v.error().code == Errc::kConflict)
        co_return error_response(req, bhttp::status::conflict, "CONFLICT", v.error().message);
      co_return meta_error(req, v.error());
    }
    for_request(req, [&] { security::audit::emit(security::audit::kSecretWrite,
                          {{"path", sp}, {"version", std::to_string(*v)}, {"by", http_caller(req)}, {"door", "http"}}); });
    co_return json_response(req, bhttp::status::ok, json{{"path", sp}, {"version", *v}});
  }
  // Versions: DELETE ?versions=2,3 soft-deletes them, POST ?undelete=2,3 restores them, POST
  // ?destroy=2,3 erases their values (SECRET.DELETE/UNDELETE/DESTROY path VERSIONS ...).
  const std::string* listed = del ? q.get("versions")
                              : req.method() == bhttp::verb::post ? (q.get("undelete") ? q.get("undelete") : q.get("destroy"))
                                                                  : nullptr;
  if (listed) {
    std::vector<uint32_t> versions;
    std::string_view rest(*listed);
    while (true) {
      std::string_view one = rest.substr(0, rest.find(','));
      uint32_t v = 0;
      if (one.empty() || std::from_chars(one.data(), one.data() + one.size(), v).ptr != one.data() + one.size())
        co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                 fmt::format("expected version numbers separated by ',' (e.g. 2,3), got '{}'",
                                             listed->substr(0, 80)));
      versions.push_back(v);
      if (one.size() == rest.size()) break;
      rest.remove_prefix(one.size() + 1);
    }
    namespace sc = security::secrets;
    const auto op = del ? sc::VersionOp::kDelete : q.get("undelete") ? sc::VersionOp::kUndelete : sc::VersionOp::kDestroy;
    const char* what = del ? "delete" : op == sc::VersionOp::kUndelete ? "undelete" : "destroy";
    auto changed = co_await secrets->change_versions(sp, op, versions);
    if (!changed) {
      if (changed.error().code == Errc::kConflict)
        co_return error_response(req, bhttp::status::conflict, "CONFLICT", changed.error().message);
      co_return meta_error(req, changed.error());
    }
    if (*changed)
      for_request(req, [&] { security::audit::emit(security::audit::kSecretWrite,
                            {{"path", sp}, {"versions", *listed}, {what, "true"}, {"by", http_caller(req)}, {"door", "http"}}); });
    co_return json_response(req, bhttp::status::ok, json{{"path", sp}, {"changed", *changed}});
  }
  if (del) {
    auto gone = co_await secrets->remove(sp);
    if (!gone) co_return meta_error(req, gone.error());
    if (*gone)
      for_request(req, [&] { security::audit::emit(security::audit::kSecretWrite,
                            {{"path", sp}, {"deleted", "true"}, {"by", http_caller(req)}, {"door", "http"}}); });
    co_return json_response(req, bhttp::status::ok, json{{"path", sp}, {"deleted", *gone}});
  }
  if (!get)
    co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                             "use GET, PUT or DELETE (DELETE ?versions=, POST ?undelete= or ?destroy= for versions)");
  if (q.get("versions")) {
    auto s = co_await secrets->find_fresh(sp);
    if (!s) co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("no secret at '{}'", sp));
    json vs = json::array();
    for (auto& [v, ver] : s->versions)
      vs.push_back(json{{"version", v},
                        {"created_ms", ver.created_ms},
                        {"deleted_ms", ver.deleted_ms},
                        {"destroyed", ver.destroyed}});
    co_return json_response(req, bhttp::status::ok, json{{"path", sp}, {"current", s->current}, {"versions", vs}});
  }
  std::optional<uint32_t> version;
  if (auto e = number("version", version)) co_return *e;
  auto got = co_await secrets->get(sp, version);
  if (!got) co_return meta_error(req, got.error());
  for_request(req, [&] { security::audit::emit(security::audit::kSecretRead, {{"path", sp},
                                                       {"version", std::to_string(got->version)},
                                                       {"by", http_caller(req)},
                                                       {"door", "http"}}); });
  json j{{"path", sp}, {"version", got->version}, {"created_ms", got->created_ms}, {"mod_revision", got->mod_revision}};
  put_bytes(j, "value", got->value);
  co_return json_response(req, bhttp::status::ok, j);
}

// /v1/transit (docs/security.md, "Transit keys"): the same TransitService as TRANSIT.*. Bytes
// travel base64 in JSON ("plaintext", "context", "input"), as in Vault's Transit.
awaitable<Response> Server::Impl::handle_transit(const Request& req, std::string_view path) {
  namespace tr = security::transit;
  if (!transit)
    co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE",
                             "transit keys are not available on this node (they need cluster metadata)");
  const bool get = req.method() == bhttp::verb::get, post = req.method() == bhttp::verb::post,
             put = req.method() == bhttp::verb::put, del = req.method() == bhttp::verb::delete_;
  std::string_view rest = path.size() > 12 ? path.substr(12) : std::string_view();
  size_t slash = rest.find('/');
  std::string_view first = rest.substr(0, slash);
  std::string_view tail = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  json body = json::object();
  if (!req.body().empty()) {
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "the body must be a JSON object");
  }
  // A base64 field of the body ("" when absent and optional).
  auto bytes_field = [&](const char* name, bool required, std::string& out) -> std::optional<Response> {
    if (!body.contains(name)) {
      if (!required) return std::nullopt;
      return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            fmt::format("the body needs \"{}\" (base64)", name));
    }
    if (!body[name].is_string())
      return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", fmt::format("\"{}\" must be a string", name));
    auto b = keel::base64_decode(body[name].get<std::string>());
    if (!b)
      return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            fmt::format("\"{}\" is not base64 (standard alphabet, padded)", name));
    out = std::move(*b);
    return std::nullopt;
  };
  auto text_field = [&](const char* name, std::string& out) -> std::optional<Response> {
    if (!body.contains(name) || !body[name].is_string())
      return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            fmt::format("the body needs \"{}\" (a keel:v<N>:... string)", name));
    out = body[name].get<std::string>();
    return std::nullopt;
  };
  if (first == "keys") {
    if (tail.empty()) {
      if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
      json names = json::array();
      for (auto& n : transit->names()) names.push_back(n);
      co_return json_response(req, bhttp::status::ok, json{{"keys", names}});
    }
    size_t s2 = tail.find('/');
    std::string name;
    if (!url_decode(tail.substr(0, s2), name, false))
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "bad percent-encoding in the key name");
    if (auto st = tr::check_name(name); !st)
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", st.error().message);
    std::string_view action = s2 == std::string_view::npos ? std::string_view() : tail.substr(s2 + 1);
    Result<std::shared_ptr<const tr::Key>> k = std::shared_ptr<const tr::Key>();
    std::string change;
    if (action == "rotate" && post) {
      k = co_await transit->rotate(name);
      change = "rotate";
    } else if (action == "config" && post) {
      std::optional<uint32_t> minv;
      std::optional<bool> deletion;
      if (body.contains("min_decryption_version")) {
        if (!body["min_decryption_version"].is_number_unsigned())
          co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                   "\"min_decryption_version\" must be a version number");
        minv = body["min_decryption_version"].get<uint32_t>();
      }
      if (body.contains("deletion_allowed")) {
        if (!body["deletion_allowed"].is_boolean())
          co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                                   "\"deletion_allowed\" must be true or false");
        deletion = body["deletion_allowed"].get<bool>();
      }
      k = co_await transit->configure(name, minv, deletion);
      change = "config";
    } else if (action.empty() && (put || post)) {
      tr::KeyType type = tr::KeyType::kAes256Gcm;
      if (body.contains("type")) {
        auto t = body["type"].is_string() ? tr::parse_type(body["type"].get<std::string>())
                                          : Result<tr::KeyType>(std::unexpected(Error{Errc::kInvalidArgument, "\"type\" must be a string"}));
        if (!t) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", t.error().message);
        type = *t;
      }
      k = co_await transit->create(name, type, req.self);
      change = "create";
    } else if (action.empty() && get) {
      auto key = co_await transit->find_fresh(name);
      if (!key)
        co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("no transit key named '{}'", name));
      co_return json_response(req, bhttp::status::ok, transit_key_json(*key));
    } else if (action.empty() && del) {
      auto st = co_await transit->remove(name);
      if (!st) co_return transit_error(req, st.error());
      for_request(req, [&] { security::audit::emit(security::audit::kTransitKey,
                            {{"transit_key", name}, {"change", "delete"}, {"by", http_caller(req)}, {"door", "http"}}); });
      co_return json_response(req, bhttp::status::ok, json{{"name", name}, {"deleted", true}});
    } else {
      co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                               "transit keys: GET, PUT or DELETE /v1/transit/keys/{name}; POST .../rotate; POST .../config");
    }
    if (!k) co_return transit_error(req, k.error());
    for_request(req, [&] { security::audit::emit(security::audit::kTransitKey, {{"transit_key", name},
                                                         {"change", change},
                                                         {"version", std::to_string((*k)->latest())},
                                                         {"by", http_caller(req)},
                                                         {"door", "http"}}); });
    co_return json_response(req, change == "create" ? bhttp::status::created : bhttp::status::ok, transit_key_json(**k));
  }
  if (!post)
    co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                             "use POST /v1/transit/{encrypt|decrypt|rewrap|sign|verify}/{name}");
  std::string name;
  if (!url_decode(tail, name, false) || name.empty())
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "name the key: /v1/transit/" +
                                                                                      std::string(first) + "/{name}");
  uint32_t need = 0;  // the version a ciphertext or signature names (read fresh if this node is behind)
  for (const char* f : {"ciphertext", "signature"})
    if (body.contains(f) && body[f].is_string())
      if (auto v = tr::output_version(body[f].get<std::string>())) need = *v;
  auto key = co_await transit->find_fresh(name, need);
  if (!key)
    co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("no transit key named '{}'", name));
  std::string context;
  if (auto e = bytes_field("context", false, context)) co_return *e;
  Result<std::string> out = std::string();
  const char* field = "ciphertext";
  if (first == "encrypt") {
    std::string plain;
    if (auto e = bytes_field("plaintext", true, plain)) co_return *e;
    out = tr::encrypt(*key, plain, context);
  } else if (first == "decrypt") {
    std::string ct;
    if (auto e = text_field("ciphertext", ct)) co_return *e;
    out = tr::decrypt(*key, ct, context);
    if (out) co_return json_response(req, bhttp::status::ok, json{{"plaintext", keel::base64_encode(*out)}});
  } else if (first == "rewrap") {
    std::string ct;
    if (auto e = text_field("ciphertext", ct)) co_return *e;
    out = tr::rewrap(*key, ct, context);
  } else if (first == "sign") {
    std::string input;
    if (auto e = bytes_field("input", true, input)) co_return *e;
    out = tr::sign(*key, input);
    field = "signature";
  } else if (first == "verify") {
    std::string input, sig;
    if (auto e = bytes_field("input", true, input)) co_return *e;
    if (auto e = text_field("signature", sig)) co_return *e;
    auto ok = tr::verify(*key, input, sig);
    if (!ok) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", ok.error().message);
    co_return json_response(req, bhttp::status::ok, json{{"valid", *ok}});
  } else {
    co_return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                             fmt::format("no transit operation '{}'; allowed: keys, encrypt, decrypt, rewrap, sign, verify",
                                         first.substr(0, 40)));
  }
  if (!out) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", out.error().message);
  co_return json_response(req, bhttp::status::ok, json{{field, *out}});
}

namespace {

// A key and its value as /v1/meta shows them; the security domain's secrets redacted
// (security/meta_redact.h), for every caller.
json kv_json(std::string_view domain, const cluster::KeyValue& kv) {
  json j{{"key", kv.key}, {"version", kv.version}, {"create_revision", kv.create_revision},
         {"mod_revision", kv.mod_revision}};
  if (!valid_utf8(kv.key)) {
    j.erase("key");
    j["key_base64"] = base64(kv.key);
  }
  if (auto shown = security::redact_meta_value(domain, kv.key, kv.value)) {
    put_bytes(j, "value", *shown);
    j["redacted"] = true;
  } else {
    put_bytes(j, "value", kv.value);
  }
  return j;
}

// Parses an unsigned integer query parameter; returns false (and sets err) on bad input.
bool query_u64(const Query& q, std::string_view name, uint64_t lo, uint64_t hi, std::optional<uint64_t>& out, std::string& err) {
  auto* v = q.get(name);
  if (!v) return true;
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size() || n < lo || n > hi) {
    err = fmt::format("{} must be an integer from {} to {}, got '{}'", name, lo, hi, *v);
    return false;
  }
  out = n;
  return true;
}

bool query_bool(const Query& q, std::string_view name) {
  auto* v = q.get(name);
  return v && (*v == "true" || *v == "1" || *v == "yes");
}

}  // namespace

awaitable<Response> Server::Impl::handle_meta(const Request& req, std::string_view path, const Query& q) {
  if (!meta)
    co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE",
                             "cluster metadata is off on this node: start it with cluster.node_id (--node-id) "
                             "and cluster.peers (--peers), e.g. `keel cluster up --nodes 3`");
  auto& lim = meta->limits();
  std::string err;
  bool stale = query_bool(q, "stale");
  std::string domain = q.get("domain") ? *q.get("domain") : std::string(cluster::kDefaultDomain);
  auto bad = [&](std::string m) { return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", std::move(m)); };

  if (path == "/v1/meta/watch") {
    if (req.method() != bhttp::verb::get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET on /v1/meta/watch");
    std::optional<uint64_t> from, timeout;
    if (!query_u64(q, "from_revision", 0, UINT64_MAX, from, err)) co_return bad(err);
    if (!query_u64(q, "timeout_ms", 0, static_cast<uint64_t>(lim.max_watch_timeout_ms), timeout, err)) co_return bad(err);
    std::string prefix = q.get("prefix") ? *q.get("prefix") : std::string();
    uint64_t f = from.value_or(0);
    int64_t t = static_cast<int64_t>(timeout.value_or(30000));
    auto start = [&](auto cb) { meta->watch(domain, prefix, f, t, cb); };
    auto r = co_await cluster::meta_call<cluster::WatchResult>(start);
    if (!r) co_return meta_error(req, r.error());
    json events = json::array();
    for (auto& e : r->events) {
      json j{{"type", e.deleted ? "delete" : "put"}, {"revision", e.kv.mod_revision}};
      j["kv"] = kv_json(domain, e.kv);
      events.push_back(std::move(j));
    }
    co_return json_response(req, bhttp::status::ok, json{{"events", events}, {"revision", r->revision}});
  }

  if (path == "/v1/meta" || path == "/v1/meta/") {
    if (req.method() != bhttp::verb::get)
      co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET to list; PUT and DELETE take /v1/meta/{key}");
    std::optional<uint64_t> limit;
    if (!query_u64(q, "limit", 1, lim.max_list, limit, err)) co_return bad(err);
    std::string prefix = q.get("prefix") ? *q.get("prefix") : std::string();
    size_t l = limit.value_or(1000);
    auto start = [&](auto cb) { meta->list(domain, prefix, l, stale, cb); };
    auto r = co_await cluster::meta_call<cluster::ListResult>(start);
    if (!r) co_return meta_error(req, r.error());
    json items = json::array();
    for (auto& kv : r->items) items.push_back(kv_json(domain, kv));
    co_return json_response(req, bhttp::status::ok, json{{"items", items}, {"revision", r->revision}, {"more", r->more}});
  }

  std::string key;
  if (!url_decode(path.substr(9), key, false)) co_return bad("malformed percent-escape in the key");
  if (key.empty()) co_return bad("the key must not be empty: use /v1/meta/{key}");
  if (key.size() > lim.max_key_bytes) co_return bad(fmt::format("key of {} bytes exceeds the limit of {} bytes", key.size(), lim.max_key_bytes));
  std::optional<uint64_t> prev;
  if (!query_u64(q, "prev_version", 0, UINT64_MAX, prev, err)) co_return bad(err);

  if (req.method() == bhttp::verb::get || req.method() == bhttp::verb::head) {
    auto start = [&](auto cb) { meta->get(domain, key, stale, cb); };
    auto r = co_await cluster::meta_call<cluster::KeyValue>(start);
    if (!r) co_return meta_error(req, r.error());
    co_return json_response(req, bhttp::status::ok, kv_json(domain, *r));
  }
  if (req.method() == bhttp::verb::put || req.method() == bhttp::verb::post || req.method() == bhttp::verb::delete_) {
    if (auto why = security::generic_write_refusal(domain); !why.empty())
      co_return error_response(req, bhttp::status::forbidden, "FORBIDDEN", std::move(why));
  }
  if (req.method() == bhttp::verb::put || req.method() == bhttp::verb::post) {
    if (req.body().size() > lim.max_value_bytes)
      co_return error_response(req, bhttp::status::payload_too_large, "LIMIT_EXCEEDED",
                               fmt::format("value of {} bytes exceeds the limit of {} bytes", req.body().size(), lim.max_value_bytes));
    // A traced request's wait for the Rabia decision is its child span (cluster/driver.h).
    auto start = [&](auto cb) { meta->put(domain, key, req.body(), prev, cb, req.self); };
    auto r = co_await cluster::meta_call<cluster::WriteResult>(start);
    if (!r) co_return meta_error(req, r.error());
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"version", r->version}, {"revision", r->revision}});
  }
  if (req.method() == bhttp::verb::delete_) {
    auto start = [&](auto cb) { meta->del(domain, key, prev, cb, req.self); };
    auto r = co_await cluster::meta_call<cluster::WriteResult>(start);
    if (!r) co_return meta_error(req, r.error());
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"deleted", r->existed}, {"revision", r->revision}});
  }
  auto res = error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                            fmt::format("{} is not allowed on /v1/meta/{{key}}; allowed: GET, PUT, DELETE", std::string(req.method_string())));
  res.set(bhttp::field::allow, "GET, PUT, DELETE");
  co_return res;
}

awaitable<Response> Server::Impl::handle_cluster_status(const Request& req) {
  if (!meta)
    co_return json_response(req, bhttp::status::ok, json{{"enabled", false},
                                                         {"message", "this node is not in a cluster (cluster.node_id = 0)"}});
  auto start = [&](auto cb) { meta->status(cb); };
  auto sr = co_await cluster::meta_call<cluster::DriverStatus>(start);
  if (!sr) co_return meta_error(req, sr.error());
  auto& s = *sr;
  json members = json::array();
  for (auto& m : s.members) {
    members.push_back(json{{"id", m.id}, {"address", m.address}, {"self", m.self}, {"connected", m.connected},
                           {"status", std::string(cluster::member_status_name(m.status))},
                           {"silence_ms", m.silence_ms}, {"next_slot", m.last_decided_slot}});
    if (!m.link_error.empty()) members.back()["link_error"] = m.link_error;
  }
  double fast = s.decided_by_vote ? static_cast<double>(s.decided_phase1) / static_cast<double>(s.decided_by_vote) : 0.0;
  double phases = s.decided_by_vote ? static_cast<double>(s.phases_total) / static_cast<double>(s.decided_by_vote) : 0.0;
  json body{{"enabled", true},
            {"node_id", s.node_id},
            {"cluster_id", s.cluster_id},
            {"health", s.quorum ? "ok" : "no_quorum"},
            {"quorum", s.quorum},
            {"config_epoch", s.config_epoch},
            {"config_members", s.config_members},
            {"members", members},
            {"last_decided_slot", s.next_slot == 0 ? json(nullptr) : json(s.next_slot - 1)},
            {"next_slot", s.next_slot},
            {"decisions_per_s", s.decisions_per_s},
            {"applied_commands", s.applied_commands},
            {"pending", s.pending},
            {"in_flight", s.in_flight},
            {"rabia", {{"slots_decided", s.slots_decided}, {"decided_by_vote", s.decided_by_vote},
                       {"decided_by_transfer", s.decided_by_transfer}, {"decided_phase1", s.decided_phase1},
                       {"fast_path_share", fast}, {"phases_per_decision", phases},
                       {"null_decisions", s.null_decisions}, {"coin_flips", s.coin_flips},
                       {"rebroadcasts", s.rebroadcasts}, {"snapshots_installed", s.snapshots_installed}}},
            {"log", {{"bytes", s.log_bytes}, {"syncs", s.log_syncs}, {"snapshots_written", s.snapshots_written},
                     {"commands_per_sync", static_cast<double>(s.commands_per_sync_x100) / 100.0}}},
            {"snapshot_transfer", {{"snapshots_sent", s.snapshots_sent}, {"chunks_sent", s.snapshot_chunks_sent},
                                   {"chunks_received", s.snapshot_chunks_received},
                                   {"transfers_discarded", s.snapshot_transfers_discarded},
                                   {"transfers_failed", s.snapshot_transfers_failed}}},
            {"messages_oversized", s.messages_oversized},
            {"commands_too_large", s.commands_too_large},
            {"requests_no_quorum", s.requests_no_quorum},
            {"requests_timed_out", s.requests_timed_out}};
  if (dht) {
    auto d = dht->status();
    json per = json::array();
    for (auto& [id, n] : d.nodes) per.push_back(json{{"id", id}, {"primaries", n.primaries}, {"replicas", n.replicas}});
    body["partitions"] = json{{"map_version", d.map_version}, {"count", d.partitions}, {"copies", d.copies},
                              {"write_quorum", d.write_quorum}, {"nodes", per},
                              {"under_replicated", d.under_replicated},
                              {"forwarded", d.forwarded}, {"forward_errors", d.forward_errors},
                              {"replicated_entries", d.replicated_entries}, {"failovers", d.failovers}};
    json moving = json::array();
    for (auto& t : d.transfers)
      moving.push_back(json{{"partition", t.partition}, {"from", t.from}, {"to", t.to}, {"caught_up", t.caught_up}});
    body["partitions"]["rebalance"] =
        json{{"remaining", d.rebalance_remaining}, {"total", d.rebalance_total},
             {"eta_s", d.rebalance_eta_s < 0 ? json(nullptr) : json(d.rebalance_eta_s)},
             {"transfers", moving}, {"partitions_moved", d.partitions_moved},
             {"snapshot_bytes_sent", d.snapshot_bytes_sent}};
  }
  co_return json_response(req, bhttp::status::ok, body);
}

namespace {
// The route a path matched, as a template: a span name with a bounded set of values.
std::string_view http_route(std::string_view path) {
  if (path == "/v1/kv" || path == "/v1/kv/") return "/v1/kv";
  if (path.starts_with("/v1/kv/")) return "/v1/kv/{key}";
  if (path.starts_with("/v1/pubsub/")) return "/v1/pubsub/{channel}";
  if (path == "/v1/caches") return "/v1/caches";
  if (path.starts_with("/v1/caches/")) return "/v1/caches/{name}";
  if (path == "/v1/meta/watch") return "/v1/meta/watch";
  if (path == "/v1/meta") return "/v1/meta";
  if (path.starts_with("/v1/meta/")) return "/v1/meta/{key}";
  if (path == "/v1/cluster/members") return "/v1/cluster/members";
  if (path.starts_with("/v1/config/")) return "/v1/config/{name}";
  if (path == "/v1/signals") return "/v1/signals";
  if (path == "/v1/auth/lockouts") return "/v1/auth/lockouts";
  if (path.starts_with("/v1/auth/lockouts/")) return "/v1/auth/lockouts/{subject}";
  if (path == "/v1/auth/revocations") return "/v1/auth/revocations";
  if (path == "/v1/keys") return "/v1/keys";
  if (path == "/v1/keys/rotate") return "/v1/keys/rotate";
  if (path == "/v1/keys/master") return "/v1/keys/master";
  if (path.starts_with("/v1/keys/")) return "/v1/keys/{version}/retire";
  if (path == "/v1/secrets" || path == "/v1/secrets/") return "/v1/secrets";
  if (path.starts_with("/v1/secrets/")) return "/v1/secrets/{path}";
  if (path == "/v1/transit" || path == "/v1/transit/") return "/v1/transit";
  if (path == "/v1/transit/keys" || path == "/v1/transit/keys/") return "/v1/transit/keys";
  if (path.starts_with("/v1/transit/keys/")) return "/v1/transit/keys/{name}";
  if (path.starts_with("/v1/transit/")) return "/v1/transit/{action}/{name}";
  if (path == "/v1/streams" || path.starts_with("/v1/streams/")) return "/v1/streams/{name}";
  if (path == "/v1/routes" || path.starts_with("/v1/routes/")) return "/v1/routes";
  if (path == "/v1/slowlog") return "/v1/slowlog";
  if (path == "/v1/traces") return "/v1/traces";
  if (path.starts_with("/v1/traces/")) return "/v1/traces/{trace_id}";
  if (path.starts_with("/v1/cluster/members/")) return "/v1/cluster/members/{id}";
  for (std::string_view r : {"/v1/cluster/status", "/metrics", "/health/live", "/health/ready", "/ui/"})
    if (path == r) return r;
  if (path.starts_with("/health/ready/")) return "/health/ready/{check}";
  return "unmatched";
}
}  // namespace

// W3C Trace Context on HTTP: a valid `traceparent` makes the request's span its child (and
// `tracestate` is carried on); the answer names the recorded span in `traceresponse` (Trace
// Context Level 2) when the span is kept. 5xx answers are errors (kept when trace.keep_errors).
// Before the request is handled: its parent, head decision and (traced) its span's ids, which
// the commands it runs carry as their parent (run_command).
void Server::Impl::begin_trace(Request& req) {
  if (auto it = req.find("traceparent"); it != req.end()) {
    req.parent = observe::parse_traceparent(std::string_view(it->value().data(), it->value().size()));
    if (req.parent) {
      if (auto ts = req.find("tracestate"); ts != req.end())
        req.parent->trace_state = observe::parse_tracestate(std::string_view(ts->value().data(), ts->value().size()));
    }
  }
  if (req.parent) {
    req.head = observe::Sampler::head_parent(req.parent->sampled());
    req.self = observe::TraceParent{req.parent->trace_id, observe::span_id_from(tracer->random(0)),
                                    static_cast<uint8_t>(req.head ? observe::kFlagSampled : 0), req.parent->trace_state};
  } else {
    req.head = tracer->sampler().head_root(req.low = tracer->random(0));
    if (req.head)
      req.self = observe::TraceParent{observe::trace_id_from(tracer->random(0), req.low),
                                      observe::span_id_from(tracer->random(0)), observe::kFlagSampled, {}};
  }
}

std::optional<observe::TraceId> Server::Impl::trace_request(const Request& req, Response& res, int64_t t0_ns) {
  int64_t end_mono = SystemClock::instance().monotonic_ns();
  int64_t dt = end_mono - t0_ns;
  const auto& parent = req.parent;
  int status = static_cast<int>(res.result_int());
  bool error = status >= 500;
  if (!tracer->sampler().keep(req.head, error, dt)) return std::nullopt;
  observe::SpanData s;
  if (parent) {
    s.trace_id = parent->trace_id;
    s.parent_span_id = parent->span_id;
    s.trace_state = parent->trace_state;
  } else if (req.self) {
    s.trace_id = req.self->trace_id;
  } else {  // kept by a tail rule (a 5xx, or slow)
    s.trace_id = observe::trace_id_from(tracer->random(0), req.low);
  }
  s.span_id = req.self ? req.self->span_id : observe::span_id_from(tracer->random(0));
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  auto route = http_route(path);
  std::string method(req.method_string());
  s.name = method + " " + std::string(route);
  s.end_unix_ns = observe::Tracer::now_unix_ns() - (SystemClock::instance().monotonic_ns() - end_mono);
  s.start_unix_ns = s.end_unix_ns - dt;
  s.attributes.push_back({"http.request.method", method});
  s.attributes.push_back({"http.route", std::string(route)});
  s.attributes.push_back({"url.path", std::string(path.substr(0, 256))});
  s.attributes.push_back({"http.response.status_code", static_cast<int64_t>(status)});
  if (error) {
    s.status_code = observe::kStatusError;
    s.attributes.push_back({"error.type", std::to_string(status)});
  }
  res.set("traceresponse", observe::format_traceparent(s.trace_id, s.span_id, observe::kFlagSampled));
  const auto id = s.trace_id;
  tracer->record(0, std::move(s));
  return id;
}

// A request at least slowlog.slower_than_us long goes to the node's slow log (as a RESP
// command does): its method and path (no query string: it may carry credentials), the client's
// address and user, and the trace its span went to.
void Server::Impl::log_slow(const Request& req, const Response& res, int64_t t0_ns, const std::string& client_ip,
                            const std::optional<observe::TraceId>& traced) {
  const int64_t us = (SystemClock::instance().monotonic_ns() - t0_ns) / 1000;
  if (!slow->wants(us)) return;
  std::string_view target(req.target().data(), req.target().size());
  std::string method(req.method_string());
  std::string status = std::to_string(res.result_int());
  const std::string_view argv[] = {method, target.substr(0, target.find('?')), status};
  slow->add(SystemClock::instance().now_ms(), us, argv, client_ip, http_caller(req), "http",
            traced ? observe::to_hex(*traced) : std::string());
  if (traced && tracer) tracer->keep(*traced);  // its spans here stay in memory for the admin page
}

namespace {
// An argument as JSON text: bytes that are not UTF-8 shown as \xNN (as redis-cli shows them).
std::string printable(const std::string& arg) {
  if (valid_utf8(arg)) return arg;
  std::string out;
  for (unsigned char ch : arg) {
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') out.push_back(static_cast<char>(ch));
    else out += fmt::format("\\x{:02x}", ch);
  }
  return out;
}
}  // namespace

Response Server::Impl::handle_slowlog(const Request& req, const Query& q) {
  if (!slow) return error_response(req, bhttp::status::not_found, "NOT_FOUND", "this node keeps no slow log");
  if (req.method() == bhttp::verb::delete_) {
    slow->reset();
    return json_response(req, bhttp::status::ok, json{{"len", 0}});
  }
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head)
    return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET (or DELETE to empty it)");
  uint64_t count = UINT64_MAX;
  if (const auto* c = q.get("count")) {
    int64_t n = 0;
    if (!resp::parse_int64(*c, n) || n < 0)
      return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            fmt::format("count is '{}'; allowed: an integer of 0 or more (no count: every entry kept)", *c));
    count = static_cast<uint64_t>(n);
  }
  json entries = json::array();
  for (const auto& e : slow->get(count)) {
    json args = json::array();
    for (const auto& a : e.args) args.push_back(printable(a));
    entries.push_back({{"id", e.id},
                       {"unix_ms", e.unix_ms},
                       {"duration_us", e.duration_us},
                       {"door", e.door},
                       {"args", std::move(args)},
                       {"client", printable(e.client)},
                       {"client_name", printable(e.client_name)},
                       {"trace_id", e.trace_id.empty() ? json(nullptr) : json(e.trace_id)}});
  }
  return json_response(req, bhttp::status::ok,
                       json{{"slower_than_us", slow->slower_than_us()},
                            {"max_len", slow->max_len()},
                            {"len", slow->len()},
                            {"entries", std::move(entries)}});
}

namespace {
json attribute_value(const observe::Attribute& a) {
  return std::visit([](const auto& v) { return json(v); }, a.value);
}

json span_json(const observe::SpanData& s, uint32_t node) {
  json attrs = json::object();
  for (auto& a : s.attributes) attrs[a.key] = attribute_value(a);
  json events = json::array();
  for (auto& e : s.events) {
    json ea = json::object();
    for (auto& a : e.attributes) ea[a.key] = attribute_value(a);
    events.push_back({{"name", e.name}, {"unix_us", e.time_unix_ns / 1000}, {"attributes", std::move(ea)}});
  }
  return {{"trace_id", observe::to_hex(s.trace_id)},
          {"span_id", observe::to_hex(s.span_id)},
          {"parent_span_id", observe::is_zero(s.parent_span_id) ? json(nullptr) : json(observe::to_hex(s.parent_span_id))},
          {"name", s.name},
          {"kind", s.kind == observe::kSpanKindServer ? "server" : "internal"},
          {"node", node},
          // Microseconds as JSON numbers (exact in a browser); nanoseconds as strings.
          {"start_unix_us", s.start_unix_ns / 1000},
          {"duration_us", (s.end_unix_ns - s.start_unix_ns) / 1000},
          {"start_unix_ns", std::to_string(s.start_unix_ns)},
          {"end_unix_ns", std::to_string(s.end_unix_ns)},
          {"status", s.status_code == observe::kStatusError ? "error" : "unset"},
          {"status_message", s.status_message},
          {"attributes", std::move(attrs)},
          {"events", std::move(events)}};
}
}  // namespace

Response Server::Impl::handle_traces(const Request& req, std::string_view path, const Query& q) {
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head)
    return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                          fmt::format("{} is not allowed on {}; allowed: GET", std::string(req.method_string()), http_route(path)));
  if (path == "/v1/traces") {
    uint64_t count = 50;
    if (const auto* c = q.get("count")) {
      int64_t n = 0;
      if (!resp::parse_int64(*c, n) || n < 0)
        return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              fmt::format("count is '{}'; allowed: an integer of 0 or more (default 50)", *c));
      count = static_cast<uint64_t>(n);
    }
    json body{{"node", opt.node_id}, {"enabled", tracer && tracer->recent_options().max_spans > 0}};
    json traces = json::array();
    if (tracer) {
      auto st = tracer->recent_stats();
      body["recent_spans"] = tracer->recent_options().max_spans;
      body["recent_bytes"] = tracer->recent_options().max_bytes;
      body["spans"] = st.spans;
      body["bytes"] = st.bytes;
      body["evicted_traces"] = st.evicted_traces;
      body["dropped_spans"] = st.dropped_spans;
      for (auto& t : tracer->recent_traces(count))
        traces.push_back({{"trace_id", observe::to_hex(t.trace_id)},
                          {"name", t.root_name},
                          {"spans", t.spans},
                          {"start_unix_us", t.start_unix_ns / 1000},
                          {"duration_us", (t.end_unix_ns - t.start_unix_ns) / 1000},
                          {"error", t.error}});
    }
    body["traces"] = std::move(traces);
    return json_response(req, bhttp::status::ok, body);
  }
  std::string_view hex = path.substr(11);
  auto id = observe::parse_trace_id(hex);
  if (!id)
    return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                          fmt::format("'{}' is not a trace id; allowed: 32 lower-case hex digits, not all zero",
                                      hex.substr(0, 64)));
  if (!tracer)
    return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                          "tracing is off on this node (trace.endpoint is empty): it keeps no spans");
  auto spans = tracer->recent_spans(*id);
  if (spans.empty())
    return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                          fmt::format("this node holds no spans of trace {}: it keeps those of recent slow requests "
                                      "(trace.recent_spans = {}) and the newest few others; older ones are in the trace "
                                      "backend (trace.endpoint)",
                                      hex, tracer->recent_options().max_spans));
  json list = json::array();
  for (auto& s : spans) list.push_back(span_json(s, opt.node_id));
  return json_response(req, bhttp::status::ok, json{{"trace_id", std::string(hex)}, {"node", opt.node_id}, {"spans", std::move(list)}});
}

Response Server::Impl::handle_signals(const Request& req) {
  auto& hub = observe::SignalHub::instance();
  auto st = hub.file_status();
  auto routes = hub.routes();
  json list = json::array();
  for (size_t i = 0; i < observe::kSignalCount; ++i) {
    const auto& info = observe::signal_catalogue()[i];
    list.push_back({{"name", info.name},
                    {"component", observe::kComponentNames[static_cast<size_t>(info.component)]},
                    {"level", observe::level_name(info.level)},
                    {"meaning", info.meaning},
                    {"logs", routes.logs.test(i)},
                    {"metrics", routes.metrics.test(i)},
                    {"span_events", routes.span_events.test(i)},
                    {"count", hub.count(static_cast<observe::Signal>(i))}});
  }
  json file = {{"path", st.path}, {"state", st.state}, {"version", st.version}};
  file["error"] = st.error.empty() ? json(nullptr) : json(st.error);
  return json_response(req, bhttp::status::ok, json{{"file", file}, {"signals", list}});
}

// GET /v1/config/{name} answers {"name", "value"}; PUT with {"value": "..."} changes it as
// CONFIG SET does (the same names, rules and errors), on this node only.
awaitable<Response> Server::Impl::handle_config(const Request& req, std::string_view raw_name) {
  std::string name;
  if (!url_decode(raw_name, name, false) || name.empty() || name.find_first_of("/*?[") != std::string::npos)
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                             "expected /v1/config/{name}: one setting's name (no glob pattern), e.g. /v1/config/loglevel");
  const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
  if (!get && req.method() != bhttp::verb::put)
    co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET or PUT");
  std::vector<std::string> argv{"CONFIG", "GET", name};
  if (!get) {
    auto body = json::parse(req.body(), nullptr, false);
    const json* v = body.is_object() && body.contains("value") ? &body["value"] : nullptr;
    if (!v || !v->is_string())
      co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                               "expected a JSON body {\"value\": \"<new value>\"} (the value as a string)");
    argv = {"CONFIG", "SET", name, v->get<std::string>()};
  }
  auto r = parse_resp2(co_await run_command(req, argv));
  if (r.kind == '-' && !get && r.text.starts_with("ERR CONFIG SET failed")) {
    // A refused value or setting: the reason, without Redis's wording around it.
    auto at = r.text.find(") - ");
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT",
                             at == std::string::npos ? r.text : r.text.substr(at + 4));
  }
  if (r.kind == '-') co_return resp_error_response(req, r.text);
  if (!get) argv = {"CONFIG", "GET", name};
  if (!get) r = parse_resp2(co_await run_command(req, argv));
  if (r.kind == '-') co_return resp_error_response(req, r.text);
  if (r.items.size() < 2)
    co_return error_response(req, bhttp::status::not_found, "NOT_FOUND", fmt::format("no setting '{}'", name));
  if (!valid_utf8(r.items[1]))
    co_return error_response(req, bhttp::status::not_acceptable, "NOT_ACCEPTABLE",
                             fmt::format("the value of '{}' is not UTF-8 text; read it with CONFIG GET", name));
  co_return json_response(req, bhttp::status::ok, json{{"name", r.items[0]}, {"value", r.items[1]}});
}

// /health/live: 200 while the HTTP loop answers. /health/ready: 200 when every check passes,
// else 503 (observe/health.h says what each check means); JSON by default, Kubernetes' plain
// text with ?verbose; /health/ready/<check> answers for one check.
Response Server::Impl::handle_health(const Request& req, std::string_view path, const Query& q) {
  bool verbose = q.get("verbose") != nullptr;
  auto text = [&](bhttp::status st, std::string body) {
    Response res{st, req.version()};
    res.set(bhttp::field::server, "keel");
    res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = std::move(body);
    return res;
  };
  std::vector<observe::CheckResult> checks;
  std::string what = "livez";
  if (path == "/health/live") {
    checks.push_back({"ping", true, "the HTTP event loop answers"});
  } else {
    what = "readyz";
    if (stopping) checks.push_back({"shutdown", false, "the node is stopping"});
    if (health) {
      for (auto& c : health->readiness(SystemClock::instance().monotonic_ns() / 1000000,
                                       SystemClock::instance().now_ms() / 1000))
        checks.push_back(std::move(c));
    }
    if (path.starts_with("/health/ready/")) {
      auto name = path.substr(14);
      std::vector<observe::CheckResult> one;
      std::string names;
      for (auto& c : checks) {
        if (c.name == name) one.push_back(c);
        names += (names.empty() ? "" : ", ") + c.name;
      }
      if (one.empty())
        return error_response(req, bhttp::status::not_found, "NOT_FOUND",
                              fmt::format("no health check '{}'; checks: {}", name, names));
      checks = std::move(one);
    }
  }
  bool ok = observe::all_ok(checks);
  auto st = ok ? bhttp::status::ok : bhttp::status::service_unavailable;
  if (verbose) return text(st, observe::render_verbose(checks, what));
  json jc = json::object();
  for (auto& c : checks) jc[c.name] = json{{"ok", c.ok}, {"detail", c.detail}};
  if (path == "/health/live") return json_response(req, st, json{{"status", "live"}});
  std::string status = ok ? "ready" : stopping ? "stopping" : "not_ready";
  auto res = json_response(req, st, json{{"status", status}, {"checks", jc}});
  res.set(bhttp::field::cache_control, "no-store");
  return res;
}

// POST /v1/cluster/members {"id": N, "address": "HOST:PORT"} adds a member; DELETE
// /v1/cluster/members/{id} removes one. Both are decided reconfigurations.
awaitable<Response> Server::Impl::handle_cluster_members(const Request& req, std::string_view path) {
  if (!meta)
    co_return error_response(req, bhttp::status::service_unavailable, "UNAVAILABLE", "this node is not in a cluster (cluster.node_id = 0)");
  auto bad = [&](std::string m) { return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", std::move(m)); };
  auto reply = [&](const Result<cluster::DriverStatus>& r) {
    if (!r) return meta_error(req, r.error());
    return json_response(req, bhttp::status::ok, json{{"config_epoch", r->config_epoch}, {"config_members", r->config_members}});
  };
  if (path == "/v1/cluster/members" && req.method() == bhttp::verb::post) {
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("id") || !body["id"].is_number_unsigned() ||
        !body.contains("address") || !body["address"].is_string())
      co_return bad(R"(expected a JSON body {"id": <member id 1..65535>, "address": "HOST:PORT"})");
    uint64_t id = body["id"].get<uint64_t>();
    if (id == 0 || id > cluster::kMaxNodeId) co_return bad(fmt::format("id {} is out of range; allowed: 1..{}", id, cluster::kMaxNodeId));
    std::string address = body["address"].get<std::string>();
    auto start = [&](auto cb) { meta->join(static_cast<uint32_t>(id), address, cb); };
    auto r = co_await cluster::meta_call<cluster::DriverStatus>(start);
    co_return reply(r);
  }
  if (path.starts_with("/v1/cluster/members/") && req.method() == bhttp::verb::delete_) {
    auto idtext = path.substr(20);
    uint64_t id = 0;
    auto [p, ec] = std::from_chars(idtext.data(), idtext.data() + idtext.size(), id);
    if (idtext.empty() || ec != std::errc() || p != idtext.data() + idtext.size() || id == 0 || id > cluster::kMaxNodeId)
      co_return bad(fmt::format("'{}' is not a member id; allowed: 1..{}", idtext, cluster::kMaxNodeId));
    auto start = [&](auto cb) { meta->leave(static_cast<uint32_t>(id), cb); };
    auto r = co_await cluster::meta_call<cluster::DriverStatus>(start);
    co_return reply(r);
  }
  co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                           "use POST /v1/cluster/members to add a member, DELETE /v1/cluster/members/{id} to remove one");
}

uint64_t Server::Impl::gateway_stream_above() const {
  return gateway ? gateway->impl().opt.stream_above_bytes : std::numeric_limits<uint64_t>::max();
}

void Server::set_transit(security::TransitService* transit) { impl_->transit = transit; }
void Server::set_secrets(security::SecretsService* secrets) { impl_->secrets = secrets; }
void Server::set_client_limits(std::shared_ptr<security::ClientLimits> limits) {
  impl_->connection_limits = limits && limits->limits_connections() ? limits : nullptr;
  impl_->client_limits = limits && limits->enabled() ? std::move(limits) : nullptr;
}

void Server::set_acl(security::AclService* acl) {
  impl_->acl_service = acl;
  impl_->acl = acl ? &acl->acl() : nullptr;
}
void Server::set_dht(dht::Service* d) { impl_->dht = d; }
void Server::set_health(observe::HealthBoard* board) { impl_->health = board; }
void Server::set_tracer(observe::Tracer* tracer) { impl_->tracer = tracer; }
void Server::set_slowlog(observe::SlowLog* slow) { impl_->slow = slow; }
void Server::set_log_exporter(observe::LogExporter* logs) { impl_->log_exporter = logs; }
void Server::set_meta(cluster::MetaService* meta) { impl_->meta = meta; }
void Server::set_caches(cache::Service* caches) { impl_->caches = caches; }
void Server::set_gateway(Gateway* gateway) { impl_->gateway = gateway; }

Server::Server(runtime::ShardSet& shards, resp::Server& resp, ServerOptions options)
    : impl_(std::make_unique<Impl>(shards, resp, std::move(options))) {}
Server::~Server() = default;

Result<int> Server::start() {
  auto& im = *impl_;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(im.opt.bind, ec);
  if (ec) return make_error(Errc::kInvalidArgument, fmt::format("server.bind: '{}' is not an IP address", im.opt.bind));
  int port = 0;
  if (im.opt.plaintext) {
    im.acceptor = std::make_unique<tcp::acceptor>(im.shards.shard(0).io);
    tcp::endpoint ep(addr, static_cast<unsigned short>(im.opt.port));
    im.acceptor->open(ep.protocol(), ec);
    if (!ec) im.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) im.acceptor->bind(ep, ec);
    if (!ec) im.acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return make_error(Errc::kIoError, fmt::format("cannot listen for HTTP on {}:{}: {}", im.opt.bind, im.opt.port, ec.message()));
    port = im.acceptor->local_endpoint().port();
  }
  if (im.opt.tls) {
    im.tls_acceptor = std::make_unique<tcp::acceptor>(im.shards.shard(0).io);
    tcp::endpoint tep(addr, static_cast<unsigned short>(im.opt.tls_port));
    im.tls_acceptor->open(tep.protocol(), ec);
    if (!ec) im.tls_acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) im.tls_acceptor->bind(tep, ec);
    if (!ec) im.tls_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return make_error(Errc::kIoError, fmt::format("cannot listen for HTTPS on {}:{} (tls.http_port): {}", im.opt.bind,
                                                    im.opt.tls_port, ec.message()));
    im.bound_tls_port = im.tls_acceptor->local_endpoint().port();
    asio::co_spawn(im.shards.shard(0).io, im.accept_loop(true), asio::detached);
  }
  if (im.acceptor) asio::co_spawn(im.shards.shard(0).io, im.accept_loop(false), asio::detached);
  return port;
}

int Server::tls_port() const { return impl_->bound_tls_port; }

void Server::shutdown() {
  auto& im = *impl_;
  im.stopping = true;
  std::promise<void> done;
  asio::post(im.shards.shard(0).io, [&] {
    boost::system::error_code ec;
    if (im.acceptor) im.acceptor->close(ec);
    if (im.tls_acceptor) im.tls_acceptor->close(ec);
    for (auto* s : im.sessions) s->socket().shutdown(tcp::socket::shutdown_receive, ec);
    done.set_value();
  });
  done.get_future().wait();
}

}  // namespace keel::http
