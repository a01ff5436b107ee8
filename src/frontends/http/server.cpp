#include "frontends/http/server.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <atomic>
#include <charconv>
#include <fstream>
#include <future>
#include <list>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/slots.h"
#include "frontends/http/metrics.h"
#include "frontends/resp/server_async.h"
#include "runtime/shards.h"

namespace keel::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

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

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

std::string base64(std::string_view s) {
  std::string out(4 * ((s.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

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
  ServerOptions opt;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> requests{0};
  std::list<beast::tcp_stream*> sessions;  // touched only on shard 0

  Impl(runtime::ShardSet& s, resp::Server& r, ServerOptions o) : shards(s), resp(r), opt(std::move(o)) {}

  runtime::Shard& owner_of(std::string_view key) {
    return shards.shard(shards.owner(key_partition(key, shards.partitions())));
  }

  awaitable<Response> handle(const Request& req);
  awaitable<Response> handle_kv(const Request& req, const std::string& key, const Query& q);
  awaitable<Response> handle_list(const Request& req, const Query& q);
  awaitable<void> session(tcp::socket sock);
  awaitable<void> accept_loop();
};

awaitable<Response> Server::Impl::handle_kv(const Request& req, const std::string& key, const Query& q) {
  if (key.empty()) co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "the key must not be empty: use /v1/kv/{key}");
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
      auto code = st.error().code == Errc::kOutOfMemory ? bhttp::status::insufficient_storage : bhttp::status::internal_server_error;
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
    if (!res) co_return error_response(req, bhttp::status::internal_server_error, errc_name(res.error().code), res.error().message);
    co_return json_response(req, bhttp::status::ok, json{{"key", key}, {"deleted", *res}});
  }

  auto res = error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                            fmt::format("{} is not allowed on /v1/kv/{{key}}; allowed: GET, PUT, DELETE", std::string(req.method_string())));
  res.set(bhttp::field::allow, "GET, PUT, DELETE");
  co_return res;
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

awaitable<Response> Server::Impl::handle(const Request& req) {
  std::string_view target(req.target().data(), req.target().size());
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  Query q;
  if (qpos != std::string_view::npos && !parse_query(target.substr(qpos + 1), q))
    co_return error_response(req, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the query string");
  bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;

  if (path == "/health/live") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    co_return json_response(req, bhttp::status::ok, json{{"status", "live"}});
  }
  if (path == "/health/ready") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    if (stopping) co_return json_response(req, bhttp::status::service_unavailable, json{{"status", "stopping"}});
    co_return json_response(req, bhttp::status::ok, json{{"status", "ready"}});
  }
  if (path == "/metrics") {
    if (!get) co_return error_response(req, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED", "use GET");
    auto snap = co_await resp::collect_snapshot(resp);
    Response res{bhttp::status::ok, req.version()};
    res.set(bhttp::field::server, "keel");
    res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = render_metrics(snap, rss_bytes(), requests.load());
    co_return res;
  }
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
                           fmt::format("no route for {} {}; routes: /v1/kv, /v1/kv/{{key}}, /metrics, /health/live, /health/ready",
                                       std::string(req.method_string()), std::string(path)));
}

awaitable<void> Server::Impl::session(tcp::socket sock) {
  beast::tcp_stream stream(std::move(sock));
  sessions.push_front(&stream);
  auto self = sessions.begin();
  beast::flat_buffer buf;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(opt.max_body_bytes);
    parser.header_limit(opt.max_header_bytes);
    stream.expires_after(std::chrono::seconds(opt.idle_timeout_s));
    auto [ec, n] = co_await bhttp::async_read(stream, buf, parser, asio::as_tuple(use_awaitable));
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
        stream.socket().shutdown(tcp::socket::shutdown_send, sec);
        stream.expires_after(std::chrono::seconds(2));
        std::vector<char> sink(64 * 1024);
        for (size_t drained = 0; drained < (256u << 20);) {
          auto [rec, rn] = co_await stream.async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
          if (rec) break;
          drained += rn;
        }
      }
      break;
    }
    auto req = parser.release();
    ++requests;
    Response res = co_await handle(req);
    bool keep = req.keep_alive() && !stopping;
    res.keep_alive(keep);
    if (req.method() == bhttp::verb::head) {
      res.prepare_payload();
      res.body().clear();
    } else {
      res.prepare_payload();
    }
    auto [wec, wn] = co_await bhttp::async_write(stream, res, asio::as_tuple(use_awaitable));
    if (wec || !keep) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  sessions.erase(self);
}

awaitable<void> Server::Impl::accept_loop() {
  for (;;) {
    auto [ec, sock] = co_await acceptor->async_accept(asio::as_tuple(use_awaitable));
    if (ec) {
      if (stopping || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(shards.shard(0).io, session(std::move(sock)), asio::detached);
  }
}

Server::Server(runtime::ShardSet& shards, resp::Server& resp, ServerOptions options)
    : impl_(std::make_unique<Impl>(shards, resp, std::move(options))) {}
Server::~Server() = default;

Result<int> Server::start() {
  auto& im = *impl_;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(im.opt.bind, ec);
  if (ec) return make_error(Errc::kInvalidArgument, fmt::format("server.bind: '{}' is not an IP address", im.opt.bind));
  im.acceptor = std::make_unique<tcp::acceptor>(im.shards.shard(0).io);
  tcp::endpoint ep(addr, static_cast<unsigned short>(im.opt.port));
  im.acceptor->open(ep.protocol(), ec);
  if (!ec) im.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor->bind(ep, ec);
  if (!ec) im.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::kIoError, fmt::format("cannot listen for HTTP on {}:{}: {}", im.opt.bind, im.opt.port, ec.message()));
  int port = im.acceptor->local_endpoint().port();
  asio::co_spawn(im.shards.shard(0).io, im.accept_loop(), asio::detached);
  return port;
}

void Server::shutdown() {
  auto& im = *impl_;
  im.stopping = true;
  std::promise<void> done;
  asio::post(im.shards.shard(0).io, [&] {
    boost::system::error_code ec;
    if (im.acceptor) im.acceptor->close(ec);
    for (auto* s : im.sessions) s->socket().shutdown(tcp::socket::shutdown_receive, ec);
    done.set_value();
  });
  done.get_future().wait();
}

}  // namespace keel::http
