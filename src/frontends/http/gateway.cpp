#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <limits>
#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <set>
#include <spdlog/spdlog.h>

#include "base/assert.h"
#include "base/clock.h"
#include "frontends/http/gateway_impl.h"
#include "frontends/http/server.h"
#include "frontends/http/write_plain.h"
#include "observe/log_context.h"
#include "observe/trace_context.h"
#include "runtime/shards.h"
#include "services/routing/service.h"
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kHttp); }
// The access log (gateway.access_log): the routing component's, event "gateway.access".
spdlog::logger& alog() { return keel::observe::logger(keel::observe::Component::kRouting); }
constexpr std::string_view kAccessEvent = "gateway.access";
}  // namespace

namespace keel::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

GwResponse json_answer(unsigned version, bhttp::status st, const json& body) {
  GwResponse res{st, version};
  res.set(bhttp::field::server, "keel");
  res.set(bhttp::field::content_type, "application/json");
  res.body() = body.dump() + "\n";
  return res;
}

GwResponse error_answer(unsigned version, bhttp::status st, std::string_view code, std::string message,
                        json extra = json::object()) {
  json e{{"code", code}, {"message", std::move(message)}};
  for (auto& [k, v] : extra.items()) e[k] = v;
  return json_answer(version, st, json{{"error", e}});
}

bhttp::status status_for(Errc c) {
  switch (c) {
    case Errc::kInvalidArgument:
      return bhttp::status::bad_request;
    case Errc::kNotFound:
      return bhttp::status::not_found;
    case Errc::kConflict:
      return bhttp::status::conflict;
    case Errc::kLimitExceeded:
      return bhttp::status::payload_too_large;
    case Errc::kUnavailable:
      return bhttp::status::service_unavailable;
    case Errc::kTimeout:
      return bhttp::status::gateway_timeout;
    default:
      return bhttp::status::internal_server_error;
  }
}

bool idempotent(bhttp::verb v) {
  return v == bhttp::verb::get || v == bhttp::verb::head || v == bhttp::verb::put || v == bhttp::verb::delete_ ||
         v == bhttp::verb::options;
}

// The protocol a request asks to switch to (its Upgrade header, when its Connection header
// names "upgrade"), or "" for an ordinary request.
template <class Fields>
std::string upgrade_of(const Fields& f) {
  auto up = f.find(bhttp::field::upgrade);
  if (up == f.end()) return {};
  for (auto it = f.find(bhttp::field::connection); it != f.end() && it->name() == bhttp::field::connection; ++it) {
    std::string v(it->value().data(), it->value().size());
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (v.find("upgrade") != std::string::npos) return std::string(up->value().data(), up->value().size());
  }
  return {};
}

// Hop-by-hop headers (RFC 9110 7.6.1) and those a Connection header names.
template <class Fields>
void strip_hop_by_hop(Fields& f) {
  std::vector<std::string> named;
  for (auto it = f.find(bhttp::field::connection); it != f.end() && it->name() == bhttp::field::connection; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    while (!v.empty()) {
      auto comma = v.find(',');
      auto tok = v.substr(0, comma);
      while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
      while (!tok.empty() && tok.back() == ' ') tok.remove_suffix(1);
      if (!tok.empty()) named.emplace_back(tok);
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    }
  }
  for (auto& n : named) f.erase(n);
  for (auto h : {bhttp::field::connection, bhttp::field::keep_alive, bhttp::field::proxy_connection, bhttp::field::te,
                 bhttp::field::trailer, bhttp::field::transfer_encoding, bhttp::field::upgrade})
    f.erase(h);
}

std::string_view sv(beast::string_view s) { return std::string_view(s.data(), s.size()); }

// The request's headers as the matcher asks for them (Beast's lookup is case-insensitive).
class RequestHeaders final : public gateway::HeaderLookup {
 public:
  explicit RequestHeaders(const GwRequest& req) : req_(req) {}
  std::optional<std::string_view> get(std::string_view lower_name) const override {
    auto it = req_.find(beast::string_view(lower_name.data(), lower_name.size()));
    if (it == req_.end()) return std::nullopt;
    return sv(it->value());
  }

 private:
  const GwRequest& req_;
};

}  // namespace

namespace {

// Live instances of `service` in the table at `now`: the whole a share of ejections is taken of.
size_t service_size(const gateway::RouteTable& t, std::string_view service, int64_t now) {
  size_t n = 0;
  for (auto& i : t.instances())
    if (i.service == service && i.expires_at_ms > now) ++n;
  return n;
}

// The endpoints of an instance's "host:port": a numeric address as is, a name resolved. Empty,
// with `why` set, when resolving failed. `address` lives in the caller's frame.
awaitable<std::vector<tcp::endpoint>> endpoints_of(const std::string& address, std::string& why) {
  auto colon = address.rfind(':');
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  std::vector<tcp::endpoint> eps;
  boost::system::error_code aec;
  auto ip = asio::ip::make_address(host, aec);
  if (!aec) {
    unsigned p = 0;
    std::from_chars(port.data(), port.data() + port.size(), p);
    eps.emplace_back(ip, static_cast<unsigned short>(p));
    co_return eps;
  }
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto [rec, results] = co_await resolver.async_resolve(host, port, asio::as_tuple(use_awaitable));
  if (rec) why = fmt::format("resolving '{}' failed: {}", host, rec.message());
  for (auto& r : results) eps.push_back(r.endpoint());
  co_return eps;
}

}  // namespace

Gateway::Impl::Impl(routing::Service& r, GatewayOptions o)
    : routes(r), opt(o), outliers(o.outlier), rng(system_seed()) {}

Gateway::Gateway(routing::Service& routes, GatewayOptions opt) : impl_(std::make_unique<Impl>(routes, opt)) {}
Gateway::~Gateway() = default;
routing::Service& Gateway::routes() { return impl_->routes; }

void Gateway::start(runtime::ShardSet& shards) {
  asio::co_spawn(shards.shard(0).io, impl_->health_loop(), asio::detached);
}

void Gateway::stop() { impl_->stopping = true; }

bool Gateway::Impl::healthy(const std::string& service, const std::string& id) const {
  auto it = health.find({service, id});
  return it == health.end() || it->second.state.healthy();
}

const gateway::HashRing& Gateway::Impl::ring_for(const std::shared_ptr<const routing::Snapshot>& snap, uint32_t entry) {
  if (snap != rings_of) {
    rings.clear();
    rings_of = snap;
  }
  const auto& table = snap->table;
  auto it = rings.find(entry);
  if (it == rings.end()) {
    std::vector<gateway::RingMember> ms;
    for (uint32_t i : table.targets(entry)) {
      const auto& in = table.instances()[i];
      ms.push_back(gateway::RingMember{in.service + "/" + in.id, std::max<uint32_t>(in.meta.weight, 1)});
    }
    it = rings.emplace(entry, gateway::HashRing::build(ms)).first;
  }
  return it->second;
}

namespace {
std::string limiter_key(const gateway::RouteSpec& r) { return r.service + " " + r.text(); }
}  // namespace

uint32_t Gateway::Impl::rate_share(const gateway::RouteSpec& route) const {
  if (!route.rate.cluster || !opt.cluster_size) return 1;
  return std::max<uint32_t>(1, opt.cluster_size());
}

resilience::KeyedRateLimiter& Gateway::Impl::limiter_for(const gateway::RouteSpec& route) {
  // rate_scope=cluster: this node admits 1/N of the rate (N live members); a new N starts a
  // new limiter (the old one's state is dropped with it).
  const uint32_t n = rate_share(route);
  auto& l = limiters[limiter_key(route) + (n > 1 ? fmt::format(" /{}", n) : std::string())];
  if (!l) {
    resilience::KeyedLimiterOptions o;
    o.name = "gateway " + limiter_key(route);
    o.limit.count = std::max<uint64_t>(1, (route.rate.count + n - 1) / n);
    o.limit.period = std::chrono::milliseconds(route.rate.period_ms);
    o.limit.burst = static_cast<uint32_t>(std::max<uint64_t>(1, (route.rate.effective_burst() + n - 1) / n));
    o.max_keys = kRateKeys;
    l = std::make_unique<resilience::KeyedRateLimiter>(std::move(o));  // bounds checked by parse_route
  }
  return *l;
}

void Gateway::Impl::prune(const gateway::RouteTable& table) {
  std::vector<std::pair<std::string, std::string>> live;
  for (auto& i : table.instances()) live.emplace_back(i.service, i.id);
  outliers.retain(live);
  // The limiters of routes no longer in the table go (and start afresh if the route returns).
  std::set<std::string> routes_now;
  for (auto& e : table.matcher().entries())
    if (e.route.rate.enabled()) {
      const uint32_t n = rate_share(e.route);  // a cluster route's limiter for the current share only
      routes_now.insert(limiter_key(e.route) + (n > 1 ? fmt::format(" /{}", n) : std::string()));
    }
  std::erase_if(limiters, [&](const auto& kv) { return !routes_now.count(kv.first); });
}

awaitable<void> Gateway::Impl::health_loop() {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  while (!stopping) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(use_awaitable));
    if (stopping || ec == asio::error::operation_aborted) break;
    auto snap = routes.snapshot();
    int64_t now = SystemClock::instance().now_ms();
    // The state of an instance that left (or no longer asks for checks) goes with it.
    std::set<std::pair<std::string_view, std::string_view>> checked;
    for (auto& in : snap->table.instances())
      if (!in.health.path.empty()) checked.emplace(in.service, in.id);
    std::erase_if(health, [&](const auto& kv) { return !checked.count({kv.first.first, kv.first.second}); });
    for (auto& in : snap->table.instances()) {
      if (in.health.path.empty() || in.expires_at_ms <= now) continue;
      auto& h = health[{in.service, in.id}];
      if (h.probing || h.next_probe_ms > now) continue;
      h.probing = true;
      h.next_probe_ms = now + in.health.interval_ms;
      asio::co_spawn(ex, probe(in.service, in.id, in.address, in.health), asio::detached);
    }
  }
}

awaitable<void> Gateway::Impl::probe(std::string service, std::string id, std::string address,
                                     gateway::HealthCheckOptions hc) {
  auto ex = co_await asio::this_coro::executor;
  bool good = false;
  std::string why;
  {
    beast::tcp_stream stream(ex);
    stream.expires_after(std::chrono::milliseconds(hc.timeout_ms));  // the whole probe
    std::vector<tcp::endpoint> eps = co_await endpoints_of(address, why);
    if (!eps.empty()) {
      auto [cec, ep] = co_await stream.async_connect(eps, asio::as_tuple(use_awaitable));
      if (cec) {
        why = "connect failed: " + cec.message();
      } else {
        GwRequest req{bhttp::verb::get, hc.path, 11};
        req.set(bhttp::field::host, address);
        req.set(bhttp::field::user_agent, "keel-health-check");
        req.keep_alive(false);
        auto [wec, wn] = co_await bhttp::async_write(stream, req, asio::as_tuple(use_awaitable));
        if (wec) {
          why = "sending failed: " + wec.message();
        } else {
          beast::flat_buffer buf;
          bhttp::response_parser<bhttp::string_body> parser;
          parser.body_limit(64 * 1024);
          auto [rec, rn] = co_await bhttp::async_read(stream, buf, parser, asio::as_tuple(use_awaitable));
          if (rec) {
            why = rec == beast::error::timeout ? fmt::format("no answer within {} ms", hc.timeout_ms)
                                               : "reading the answer failed: " + rec.message();
          } else {
            unsigned code = parser.get().result_int();
            good = code >= 200 && code < 300;
            if (!good) why = fmt::format("answered {}", code);
          }
        }
      }
    }
  }
  if (stopping) co_return;
  auto it = health.find({service, id});
  if (it == health.end()) co_return;  // deregistered meanwhile
  it->second.probing = false;
  if (it->second.state.record(good, hc)) {
    if (good)
      klog().info("gateway: {}/{} ({}) is healthy again", service, id, address);
    else
      klog().warn("gateway: {}/{} ({}) is unhealthy: GET {} {}", service, id, address, hc.path, why);
  }
}

std::string Gateway::Impl::metrics_text() const {
  auto snap = routes.snapshot();
  int64_t now = SystemClock::instance().now_ms();
  std::set<std::string> services;
  for (auto& i : snap->table.instances()) services.insert(i.service);
  for (auto& s : outliers.services()) services.insert(s);
  std::string out =
      "# HELP keel_gateway_ejections_total Upstream instances ejected by outlier detection (consecutive failures), per service.\n"
      "# TYPE keel_gateway_ejections_total counter\n";
  for (auto& s : services)
    out += fmt::format("keel_gateway_ejections_total{{service=\"{}\"}} {}\n", s, outliers.ejections_total(s));
  out += "# HELP keel_gateway_instances_ejected Upstream instances ejected now, per service.\n"
         "# TYPE keel_gateway_instances_ejected gauge\n";
  for (auto& s : services)
    out += fmt::format("keel_gateway_instances_ejected{{service=\"{}\"}} {}\n", s, outliers.ejected_count(s, now));
  out += "# HELP keel_gateway_instances_unhealthy Upstream instances failing their active health check, per service.\n"
         "# TYPE keel_gateway_instances_unhealthy gauge\n";
  for (auto& s : services) {
    size_t n = 0;
    for (auto& [key, h] : health)
      if (key.first == s && !h.state.healthy()) ++n;
    out += fmt::format("keel_gateway_instances_unhealthy{{service=\"{}\"}} {}\n", s, n);
  }
  out += fmt::format(
      "# HELP keel_gateway_tunnels_total Upgraded connections (WebSocket) relayed to an upstream.\n"
      "# TYPE keel_gateway_tunnels_total counter\nkeel_gateway_tunnels_total {}\n"
      "# HELP keel_gateway_tunnels_open Upgraded connections (WebSocket) being relayed now.\n"
      "# TYPE keel_gateway_tunnels_open gauge\nkeel_gateway_tunnels_open {}\n",
      tunnels_total, tunnels_open);
  out += stats_text();
  return out;
}

std::string Gateway::Impl::stats_text() const {
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  using prometheus::MetricType;
  MetricFamily requests{"keel_gateway_requests_total",
                        "Requests that matched a gateway route, by route template, service and status class of the "
                        "answer (the gateway's own errors included)",
                        MetricType::Counter,
                        {}};
  MetricFamily latency{"keel_gateway_request_duration_seconds",
                       "Time from a request's match to its answer through the gateway, by route template and service",
                       MetricType::Histogram,
                       {}};
  MetricFamily limited{"keel_gateway_rate_limited_total",
                       "Requests answered 429 by a route's rate limit, by route template and service", MetricType::Counter,
                       {}};
  MetricFamily upstream{"keel_gateway_upstream_responses_total",
                        "Answers of upstream instances to the gateway (every attempt that got one), by service and "
                        "status class",
                        MetricType::Counter,
                        {}};
  MetricFamily failures{"keel_gateway_upstream_failures_total",
                        "Upstream attempts that got no answer, by service and reason (connect, broken, timeout, "
                        "too_large)",
                        MetricType::Counter,
                        {}};
  MetricFamily retries_f{"keel_gateway_retries_total", "Upstream attempts after the first for one request, by service",
                         MetricType::Counter, {}};
  auto label = [](std::string k, std::string v) { return ClientMetric::Label{std::move(k), std::move(v)}; };
  for (auto& [key, r] : stats.routes()) {
    for (size_t c = 0; c < r.by_class.size(); ++c) {
      if (!r.by_class[c]) continue;
      ClientMetric m;
      m.label = {label("route", key.first), label("service", key.second),
                 label("status_class", std::string(gateway::status_class_name(c)))};
      m.counter.value = static_cast<double>(r.by_class[c]);
      requests.metric.push_back(std::move(m));
    }
    ClientMetric h;
    h.label = {label("route", key.first), label("service", key.second)};
    h.histogram.sample_count = r.count;
    h.histogram.sample_sum = r.seconds_sum;
    uint64_t cum = 0;
    for (size_t b = 0; b < gateway::kLatencyBoundsSeconds.size(); ++b) {
      cum += r.buckets[b];
      h.histogram.bucket.push_back(ClientMetric::Bucket{cum, gateway::kLatencyBoundsSeconds[b]});
    }
    cum += r.buckets.back();
    h.histogram.bucket.push_back(ClientMetric::Bucket{cum, std::numeric_limits<double>::infinity()});
    latency.metric.push_back(std::move(h));
    ClientMetric l;
    l.label = {label("route", key.first), label("service", key.second)};
    l.counter.value = static_cast<double>(r.rate_limited);
    limited.metric.push_back(std::move(l));
  }
  for (auto& [svc, s] : stats.services()) {
    for (size_t c = 0; c < s.answers_by_class.size(); ++c) {
      if (!s.answers_by_class[c]) continue;
      ClientMetric m;
      m.label = {label("service", svc), label("status_class", std::string(gateway::status_class_name(c)))};
      m.counter.value = static_cast<double>(s.answers_by_class[c]);
      upstream.metric.push_back(std::move(m));
    }
    for (size_t f = 0; f < s.failures.size(); ++f) {
      ClientMetric m;
      m.label = {label("service", svc), label("reason", std::string(gateway::kUpstreamFailureNames[f]))};
      m.counter.value = static_cast<double>(s.failures[f]);
      failures.metric.push_back(std::move(m));
    }
    ClientMetric r;
    r.label = {label("service", svc)};
    r.counter.value = static_cast<double>(s.retries);
    retries_f.metric.push_back(std::move(r));
  }
  std::vector<MetricFamily> fams;
  for (auto* f : {&requests, &latency, &limited, &upstream, &failures, &retries_f})
    if (!f->metric.empty()) fams.push_back(std::move(*f));
  prometheus::TextSerializer ser;
  return ser.Serialize(fams);
}

std::unique_ptr<Gateway::Impl::Conn> Gateway::Impl::take_idle(Upstream& up) {
  const auto now = std::chrono::steady_clock::now();
  while (!up.idle.empty()) {
    auto c = std::move(up.idle.back());
    up.idle.pop_back();
    // A kept-alive connection the upstream closed (or that carries unexpected bytes) is not
    // reused: a non-blocking peek tells without consuming anything. One back in the pool for
    // less than a second is taken without the system call (under load, every request would
    // pay it); should the upstream have closed it all the same, forward() sends again on a
    // fresh connection when nothing of the answer came (idempotent methods).
    if (now - c->idle_since < std::chrono::seconds(1)) return c;
    char byte;
    ssize_t n = ::recv(c->stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return c;
  }
  return nullptr;
}

// Streams an upload's body from `body` to `c` (chunked framing when `chunked`), at most
// `limit` bytes. "" when it all went; otherwise why not (the connection is then unusable).
awaitable<std::string> send_body(beast::tcp_stream& s, Gateway::Impl::BodyReader& body, bool chunked, uint64_t limit,
                                 int64_t timeout_ms) {
  uint64_t sent = 0;
  for (;;) {
    auto piece = co_await body();
    if (!piece) co_return "the client's request body broke off";
    sent += piece->size();
    if (sent > limit) co_return fmt::format("the request body passed gateway.max_body ({} bytes)", limit);
    std::string frame;
    std::array<asio::const_buffer, 3> bufs;
    size_t nbufs = 0;
    if (chunked) {
      frame = piece->empty() ? "0\r\n\r\n" : fmt::format("{:x}\r\n", piece->size());
      bufs[nbufs++] = asio::buffer(frame);
    }
    if (!piece->empty()) {
      bufs[nbufs++] = asio::buffer(piece->data(), piece->size());
      if (chunked) bufs[nbufs++] = asio::buffer("\r\n", 2);
    }
    if (nbufs) {
      s.expires_after(std::chrono::milliseconds(timeout_ms));
      auto [ec, n] = co_await asio::async_write(s, std::span<const asio::const_buffer>(bufs.data(), nbufs),
                                                asio::as_tuple(use_awaitable));
      if (ec) co_return "sending the request body failed: " + ec.message();
    }
    if (piece->empty()) co_return std::string();
  }
}

awaitable<Gateway::Impl::Attempt> Gateway::Impl::forward(const std::string& address, Upstream& up, GwRequest& out,
                                                         bool can_retry, BodyReader* body, bool upgrade) {
  auto ex = co_await asio::this_coro::executor;
  for (int pass = 0; pass < 2; ++pass) {
    auto c = upgrade ? nullptr : take_idle(up);  // an upgrade takes its connection for good
    bool reused = c != nullptr;
    if (!c) {
      c = std::make_unique<Conn>(ex);
      std::string why;
      std::vector<tcp::endpoint> eps = co_await endpoints_of(address, why);
      if (!why.empty()) {
        Attempt a;
        a.fail = Fail::kConnect;
        a.why = std::move(why);
        co_return a;
      }
      c->stream.expires_after(std::chrono::milliseconds(opt.connect_timeout_ms));
      auto [cec, ep] = co_await c->stream.async_connect(eps, asio::as_tuple(use_awaitable));
      if (cec) {
        Attempt a;
        a.fail = Fail::kConnect;
        a.why = cec == beast::error::timeout ? fmt::format("connect timed out after {} ms", opt.connect_timeout_ms)
                                             : "connect failed: " + cec.message();
        co_return a;
      }
      boost::system::error_code nec;
      c->stream.socket().set_option(tcp::no_delay(true), nec);
    }
    c->stream.expires_after(std::chrono::milliseconds(opt.request_timeout_ms));
    boost::system::error_code wec;
    if (body) {  // the header as it is (its framing kept), then the body as it comes
      std::string head;
      render_header(out, head);
      auto [hec, hn] = co_await asio::async_write(c->stream, asio::buffer(head), asio::as_tuple(use_awaitable));
      wec = hec;
    } else {
      wec = co_await write_plain(c->stream, out);
    }
    if (!wec && body) {
      std::string why = co_await send_body(c->stream, *body, out.chunked(), opt.max_body_bytes, opt.request_timeout_ms);
      if (!why.empty()) {
        Attempt a;
        a.fail = Fail::kBroken;
        a.why = std::move(why);
        co_return a;
      }
    }
    if (wec) {
      // A kept-alive connection closed under us: the request did not get through; once more
      // on a fresh connection.
      if (reused && wec != beast::error::timeout) continue;
      Attempt a;
      a.fail = wec == beast::error::timeout ? Fail::kTimeout : Fail::kBroken;
      a.why = wec == beast::error::timeout ? fmt::format("no answer within {} ms", opt.request_timeout_ms)
                                           : "sending the request failed: " + wec.message();
      co_return a;
    }
    // The header first: a large answer, or one of unknown length, is relayed as it arrives.
    bhttp::response_parser<bhttp::empty_body> head;
    head.body_limit(std::numeric_limits<uint64_t>::max());  // the length is judged below
    if (out.method() == bhttp::verb::head) head.skip(true);
    auto [hec, hn] = co_await bhttp::async_read_header(c->stream, c->buf, head, asio::as_tuple(use_awaitable));
    const auto length = hec ? boost::optional<uint64_t>() : head.content_length();
    if (!hec && !head.is_done() && !(upgrade && head.get().result() == bhttp::status::switching_protocols) &&
        (!length || *length > opt.stream_above_bytes)) {
      if (opt.max_response_bytes && length && *length > opt.max_response_bytes) {
        Attempt a;
        a.fail = Fail::kTooLarge;
        a.why = fmt::format("the answer ({} bytes) is larger than gateway.max_response ({} bytes)", *length,
                            opt.max_response_bytes);
        co_return a;
      }
      Attempt a;
      a.res.base() = head.get().base();
      a.streamed = std::make_unique<Streamed>(std::move(head), std::move(c), address);
      a.streamed->parser.body_limit(opt.max_response_bytes ? opt.max_response_bytes : std::numeric_limits<uint64_t>::max());
      co_return a;
    }
    boost::system::error_code rec = hec;
    bool got_some = head.got_some();
    std::optional<bhttp::response_parser<bhttp::string_body>> parser;
    if (!rec) {
      parser.emplace(std::move(head));
      parser->body_limit(opt.max_response_bytes ? opt.max_response_bytes : std::numeric_limits<uint64_t>::max());
      if (!parser->is_done()) {
        auto [bec, bn] = co_await bhttp::async_read(c->stream, c->buf, *parser, asio::as_tuple(use_awaitable));
        rec = bec;
      }
      got_some = true;
    }
    if (rec) {
      Attempt a;
      if (rec == beast::error::timeout) {
        a.fail = Fail::kTimeout;
        a.why = fmt::format("no answer within {} ms (gateway.request_timeout_ms)", opt.request_timeout_ms);
        co_return a;
      }
      // Closed before a byte of the answer on a reused connection: the upstream dropped an idle
      // connection as we sent; it did not take the request. Idempotent requests go again.
      if (reused && !got_some && can_retry && !body) continue;
      a.fail = rec == bhttp::error::body_limit ? Fail::kTooLarge : Fail::kBroken;
      a.why = rec == bhttp::error::body_limit
                  ? fmt::format("the answer is larger than gateway.max_response ({} bytes)", opt.max_response_bytes)
                  : "reading the answer failed: " + rec.message();
      co_return a;
    }
    Attempt a;
    a.res = parser->release();
    if (upgrade && a.res.result() == bhttp::status::switching_protocols) {
      c->stream.expires_never();  // the relay keeps its own idle timer
      a.upgraded = std::move(c);
      co_return a;
    }
    if (a.res.keep_alive() && up.idle.size() < opt.pool_max_idle) {
      c->stream.expires_never();
      c->idle_since = std::chrono::steady_clock::now();
      up.idle.push_back(std::move(c));
    }
    co_return a;
  }
  Attempt a;
  a.fail = Fail::kBroken;
  a.why = "the upstream closed the connection before answering";
  co_return a;
}

void Gateway::Impl::give_back(Streamed& s) {
  auto it = upstreams.find(s.address);
  if (it == upstreams.end() || it->second.idle.size() >= opt.pool_max_idle || !s.conn) return;
  s.conn->stream.expires_never();
  s.conn->idle_since = std::chrono::steady_clock::now();
  it->second.idle.push_back(std::move(s.conn));
}

bool Gateway::Impl::routes_request(const GwRequest& req) const {
  auto snap = routes.snapshot();
  auto segs = gateway::split_path(sv(req.target()), routes.options().routes);
  if (!segs) return false;
  std::string host;
  if (auto h = req.find(bhttp::field::host); h != req.end()) host = gateway::normalize_host(sv(h->value()));
  return snap->table.matcher().find(sv(req.method_string()), host, *segs, RequestHeaders(req)).has_value();
}

awaitable<std::optional<GwResponse>> Gateway::Impl::proxy(GwRequest& req, const std::string& client_ip,
                                                          bool answer_unmatched, Handoff* handoff, BodyReader* body) {
  unsigned ver = req.version();
  auto snap = routes.snapshot();
  const auto& table = snap->table;
  std::string_view target = sv(req.target());
  std::string_view method = sv(req.method_string());
  auto segs = gateway::split_path(target, routes.options().routes);
  if (!segs) {
    if (!answer_unmatched) co_return std::nullopt;
    co_return error_answer(ver, bhttp::status::bad_request, "INVALID_ARGUMENT", segs.error().message);
  }
  std::string host;
  if (auto h = req.find(bhttp::field::host); h != req.end()) host = gateway::normalize_host(sv(h->value()));
  auto entry = table.matcher().find(method, host, *segs, RequestHeaders(req));
  if (!entry) {
    if (!answer_unmatched) co_return std::nullopt;
    co_return error_answer(ver, bhttp::status::not_found, "NOT_FOUND",
                           fmt::format("no route matches {} {}; GET /v1/routes on keel's HTTP port lists the routes",
                                       method, target.substr(0, target.find('?')).substr(0, 200)));
  }
  // Every answer to a request that matched a route counts for the route (gateway/stats.h).
  auto t0 = std::chrono::steady_clock::now();
  std::string method_s(method), path_s(target.substr(0, 1024));  // req changes on the way
  Outcome outcome;
  GwResponse res = co_await proxy_route(req, client_ip, snap, *entry, *segs, host, outcome, body);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& route = table.matcher().entries()[*entry].route;
  stats.request(route, res.result_int(), secs);
  if (opt.access_log) {
    json line{{"method", method_s},
              {"path", path_s},
              {"route", route.text()},
              {"service", route.service},
              {"status", res.result_int()},
              {"duration_ms", std::round(secs * 1e6) / 1e3},
              {"client", client_ip},
              {"upstream", outcome.upstream},
              {"attempts", outcome.attempts}};
    // The line carries the request's trace (the client's traceparent, or the one started).
    std::optional<observe::LogScope> scope;
    observe::LogContext ctx;
    if (auto tp = observe::parse_traceparent(outcome.traceparent)) {
      ctx.trace_id = tp->trace_id;
      ctx.span_id = tp->span_id;
      scope.emplace(&ctx);
    }
    observe::LogEventScope ev(kAccessEvent);
    alog().info("{}", line.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  if (handoff) *handoff = std::move(outcome.handoff);
  co_return res;
}

awaitable<GwResponse> Gateway::Impl::proxy_route(GwRequest& req, const std::string& client_ip,
                                                 const std::shared_ptr<const routing::Snapshot>& snap,
                                                 uint32_t entry_index, const std::vector<std::string_view>& path_segs,
                                                 const std::string& host, Outcome& outcome, BodyReader* body) {
  unsigned ver = req.version();
  const auto& table = snap->table;
  const uint64_t revision = snap->revision;
  const uint32_t* entry = &entry_index;
  const std::vector<std::string_view>* segs = &path_segs;
  const auto& route = table.matcher().entries()[entry_index].route;
  const uint64_t body_size = body && req.has_content_length()
                                 ? std::strtoull(std::string(sv(req[bhttp::field::content_length])).c_str(), nullptr, 10)
                                 : req.body().size();
  if (body_size > opt.max_body_bytes)
    co_return error_answer(ver, bhttp::status::payload_too_large, "LIMIT_EXCEEDED",
                           fmt::format("request body of {} bytes exceeds gateway.max_body ({})", body_size,
                                       opt.max_body_bytes));

  // The route's rate limit, before any work for an upstream.
  if (route.rate.enabled()) {
    std::string key = "c:" + client_ip;
    if (!route.rate.header.empty())
      if (auto it = req.find(route.rate.header); it != req.end())
        key = "h:" + std::string(sv(it->value()).substr(0, 256));
    auto d = limiter_for(route).try_acquire(key, sdk::SteadyClock::instance().now());
    if (auto* no = std::get_if<resilience::Denied>(&d)) {
      ++rate_limited;
      stats.rate_limited(route);
      using std::chrono::duration_cast;
      int64_t ms = duration_cast<std::chrono::milliseconds>(no->retry_after).count();
      int64_t secs = std::max<int64_t>(1, (ms + 999) / 1000);
      auto res = error_answer(
          ver, bhttp::status::too_many_requests, "RATE_LIMITED",
          fmt::format("rate limit of route '{}' (service '{}') exceeded: it allows {} per {}, {} at once{}; retry "
                      "after {} s",
                      route.text(), route.service, route.rate.text(), route.rate.key_text(),
                      route.rate.effective_burst(),
                      route.rate.cluster ? fmt::format(" across the cluster (1/{} of it on each node)", rate_share(route))
                                         : std::string(),
                      secs),
          json{{"route", route.text()},
               {"service", route.service},
               {"limit", route.rate.text()},
               {"burst", route.rate.effective_burst()},
               {"key", route.rate.header.empty() ? "client" : "header:" + route.rate.header},
               {"retry_after_s", secs}});
      res.set(bhttp::field::retry_after, std::to_string(secs));
      co_return res;
    }
  }

  // Drop pools of instances no longer in the table (none in use).
  if (revision != pruned_at_revision) {
    pruned_at_revision = revision;
    std::set<std::string_view> live;
    for (auto& i : table.instances()) live.insert(i.address);
    std::erase_if(upstreams, [&](const auto& kv) { return kv.second.inflight == 0 && !live.count(kv.first); });
    prune(table);
  }

  int64_t now = SystemClock::instance().now_ms();
  std::vector<uint32_t> candidates;
  size_t n_live = 0, n_unhealthy = 0, n_ejected = 0;
  for (uint32_t i : table.targets(*entry)) {
    const auto& in = table.instances()[i];
    if (in.expires_at_ms <= now) continue;
    ++n_live;
    if (!healthy(in.service, in.id)) {
      ++n_unhealthy;
    } else if (outliers.ejected(in.service, in.id, now)) {
      ++n_ejected;
    } else {
      candidates.push_back(i);
    }
  }
  if (candidates.empty()) {
    ++errors_503;
    std::string why = table.targets(*entry).empty() ? "none is registered"
                      : n_live == 0                 ? "every registered instance's lease has ended"
                                                    : fmt::format("all {} live instances are out: {} unhealthy (active "
                                                                  "health check failing), {} ejected (outlier detection)",
                                                                  n_live, n_unhealthy, n_ejected);
    co_return error_answer(ver, bhttp::status::service_unavailable, "UNAVAILABLE",
                           fmt::format("no live instance of service '{}' for route '{}': {}", route.service,
                                       route.text(), why),
                           n_live == 0 ? json{{"service", route.service}, {"route", route.text()}}
                                       : json{{"service", route.service},
                                              {"route", route.text()},
                                              {"live", n_live},
                                              {"unhealthy", n_unhealthy},
                                              {"ejected", n_ejected}});
  }

  // consistent_hash: the request's key (absent: least request decides).
  std::optional<uint64_t> key_hash;
  if (opt.policy == gateway::Policy::kConsistentHash) {
    const auto& hk = opt.hash_key;
    std::optional<std::string> key;
    if (hk.kind == gateway::HashKeySpec::Kind::kHeader) {
      if (auto it = req.find(hk.name); it != req.end()) key = std::string(sv(it->value()));
    } else if (hk.kind == gateway::HashKeySpec::Kind::kCookie) {
      if (auto it = req.find(bhttp::field::cookie); it != req.end())
        if (auto v = gateway::cookie_value(sv(it->value()), hk.name)) key = std::string(*v);
    } else {
      for (auto& [name, value] : gateway::captures(route, *segs))
        if (name == hk.name) key = value;
    }
    if (key) key_hash = gateway::stable_hash(*key);
  }

  // What the upstream sees: hop-by-hop headers gone, X-Forwarded-*, a trace parent.
  std::string orig_host = host.empty() ? std::string() : std::string(sv(req[bhttp::field::host]));
  const std::string upgrade = upgrade_of(req);  // a WebSocket handshake, passed on
  strip_hop_by_hop(req);
  req.erase(bhttp::field::expect);  // the door answered "100 Continue" itself (as nginx does)
  if (auto xff = req.find("X-Forwarded-For"); xff != req.end())
    req.set("X-Forwarded-For", fmt::format("{}, {}", sv(xff->value()), client_ip));
  else
    req.set("X-Forwarded-For", client_ip);
  req.set("X-Forwarded-Proto", "http");
  if (!orig_host.empty()) req.set("X-Forwarded-Host", orig_host);
  bool started_trace = false;
  if (auto tp = req.find("traceparent"); tp == req.end() || !observe::parse_traceparent(sv(tp->value()))) {
    req.set("traceparent", observe::format_traceparent(observe::trace_id_from(rng.next_u64(), rng.next_u64()),
                                                       observe::span_id_from(rng.next_u64()), 0));
    req.erase("tracestate");
    started_trace = true;
  }
  if (opt.access_log) outcome.traceparent = std::string(sv(req["traceparent"]));
  req.keep_alive(true);
  if (body) {  // streamed: the client's length stays; without one the body goes chunked
    if (!req.has_content_length()) req.set(bhttp::field::transfer_encoding, "chunked");
  } else {
    req.prepare_payload();
  }
  if (!upgrade.empty()) {
    req.set(bhttp::field::connection, "Upgrade");
    req.set(bhttp::field::upgrade, upgrade);
  }
  bool may_retry = idempotent(req.method());

  std::vector<std::string> failures;
  std::set<uint32_t> tried;
  std::optional<GwResponse> answer;
  for (uint32_t attempt = 0; attempt <= opt.retries; ++attempt) {
    std::vector<uint32_t> left;
    for (uint32_t i : candidates)
      if (!tried.count(i)) left.push_back(i);
    if (left.empty()) break;
    uint32_t chosen;
    if (key_hash) {
      // The key's owner on the ring, or the next usable instance clockwise.
      const auto& targets = table.targets(*entry);
      auto m = ring_for(snap, *entry).pick(*key_hash, [&](size_t j) {
        return std::find(left.begin(), left.end(), targets[j]) != left.end();
      });
      KEEL_ASSERT(m.has_value());  // every instance in `left` is a target of the entry
      chosen = targets[*m];
    } else if (opt.policy == gateway::Policy::kRoundRobin) {
      chosen = left[gateway::pick_round_robin(left.size(), rr_cursor)];
    } else {
      std::vector<gateway::Load> loads;
      for (uint32_t i : left) {
        auto it = upstreams.find(table.instances()[i].address);
        loads.push_back(gateway::Load{it == upstreams.end() ? 0u : it->second.inflight, table.instances()[i].meta.weight});
      }
      chosen = left[gateway::pick_least_request(loads, rng)];
    }
    const auto& inst = table.instances()[chosen];
    tried.insert(chosen);
    outcome.upstream = inst.service + "/" + inst.id;
    ++outcome.attempts;
    auto& up = upstreams[inst.address];
    ++up.inflight;
    if (attempt > 0) {
      ++retries;
      stats.retry(inst.service);
    }
    auto a = co_await forward(inst.address, up, req, may_retry, body, !upgrade.empty());
    --up.inflight;
    std::string who = fmt::format("{}/{} ({})", inst.service, inst.id, inst.address);
    switch (a.fail) {
      case Fail::kNone:
        stats.upstream_answer(inst.service, a.res.result_int());
        break;
      case Fail::kConnect:
        stats.upstream_failure(inst.service, gateway::UpstreamFailure::kConnect);
        break;
      case Fail::kBroken:
        stats.upstream_failure(inst.service, gateway::UpstreamFailure::kBroken);
        break;
      case Fail::kTimeout:
        stats.upstream_failure(inst.service, gateway::UpstreamFailure::kTimeout);
        break;
      case Fail::kTooLarge:
        stats.upstream_failure(inst.service, gateway::UpstreamFailure::kTooLarge);
        break;
    }
    {
      // Passive outlier detection: 5xx answers and failures to get one count against the instance.
      bool failed = a.fail == Fail::kConnect || a.fail == Fail::kBroken || a.fail == Fail::kTimeout ||
                    (a.fail == Fail::kNone && a.res.result_int() >= 500);
      int64_t at = SystemClock::instance().now_ms();
      if (outliers.record(inst.service, inst.id, failed, service_size(table, inst.service, at), at)) {
        ++ejections;
        klog().warn("gateway: ejected {} for {} ms after {} failures in a row (ejection {})", who,
                     outliers.ejected_until_ms(inst.service, inst.id, at) - at, opt.outlier.consecutive_failures,
                     outliers.times_ejected(inst.service, inst.id));
      }
    }
    if (a.fail == Fail::kNone) {
      const std::string accepted = a.upgraded ? std::string(sv(a.res[bhttp::field::upgrade])) : std::string();
      strip_hop_by_hop(a.res);
      if (a.upgraded) {  // the switch, answered as the upstream did; the caller relays the bytes
        a.res.set(bhttp::field::connection, "Upgrade");
        a.res.set(bhttp::field::upgrade, accepted);
        outcome.handoff.tunnel = std::move(a.upgraded);
        ++tunnels_total;
      }
      if (a.streamed) {
        outcome.handoff.streamed = std::move(a.streamed);
        ++streamed_total;
      }
      a.res.version(ver);
      ++proxied;
      answer = std::move(a.res);
      break;
    }
    failures.push_back(fmt::format("{}: {}", who, a.why));
    if (a.fail == Fail::kTimeout) {
      ++errors_504;
      answer = error_answer(ver, bhttp::status::gateway_timeout, "UPSTREAM_TIMEOUT",
                            fmt::format("upstream {} of route '{}': {}", who, route.text(), a.why),
                            json{{"upstream", inst.service + "/" + inst.id}, {"address", inst.address}});
      break;
    }
    if (a.fail != Fail::kConnect || !may_retry) break;  // reached the upstream, or not idempotent
    // (a streamed body is read only once the request reached an instance: a failed connect
    // consumed none of it, so trying another instance is safe)
  }
  if (!answer) {
    ++errors_502;
    std::string tried_text;
    for (auto& f : failures) tried_text += (tried_text.empty() ? "" : "; ") + f;
    json ups = json::array();
    for (uint32_t i : tried) ups.push_back(table.instances()[i].service + "/" + table.instances()[i].id);
    json extra{{"attempts", failures.size()}, {"upstreams", ups}};
    answer = error_answer(ver, bhttp::status::bad_gateway, "BAD_GATEWAY",
                          fmt::format("route '{}' of service '{}': {}{}", route.text(), route.service, tried_text,
                                      may_retry ? "" : " (not retried: the method is not idempotent)"),
                          extra);
  }
  if (started_trace) req.erase("traceparent");
  co_return std::move(*answer);
}

awaitable<GwResponse> Gateway::Impl::handle_api(const GwRequest& req, std::string_view path, std::string_view query) {
  unsigned ver = req.version();
  auto method = req.method();
  if (path == "/v1/routes" || path == "/v1/routes/") {
    if (method != bhttp::verb::get && method != bhttp::verb::head)
      co_return error_answer(ver, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                             "use GET /v1/routes; register with PUT /v1/routes/services/{service}/instances/{id}");
    auto snap = routes.snapshot();
    const auto& t = snap->table;
    int64_t now = SystemClock::instance().now_ms();
    json instances = json::array();
    for (auto& i : t.instances()) {
      json rs = json::array();
      for (auto& r : i.routes) rs.push_back(r.text());
      instances.push_back(json{{"service", i.service},
                               {"id", i.id},
                               {"address", i.address},
                               {"routes", rs},
                               {"lease_ms", i.lease_ms},
                               {"expires_in_ms", std::max<int64_t>(0, i.expires_at_ms - now)},
                               {"metadata", {{"version", i.meta.version}, {"zone", i.meta.zone}, {"weight", i.meta.weight}}},
                               {"healthy", healthy(i.service, i.id)},
                               {"ejected_until_ms", outliers.ejected_until_ms(i.service, i.id, now)},
                               {"times_ejected", outliers.times_ejected(i.service, i.id)}});
      if (!i.health.path.empty())
        instances.back()["health"] = json{{"path", i.health.path},
                                          {"interval_ms", i.health.interval_ms},
                                          {"timeout_ms", i.health.timeout_ms},
                                          {"unhealthy_after", i.health.unhealthy_after},
                                          {"healthy_after", i.health.healthy_after}};
    }
    json rts = json::array();
    for (uint32_t e = 0; e < t.matcher().size(); ++e) {
      json ids = json::array();
      for (uint32_t i : t.targets(e)) ids.push_back(t.instances()[i].id);
      rts.push_back(json{{"route", t.matcher().entries()[e].route.text()},
                         {"service", t.matcher().entries()[e].route.service},
                         {"instances", ids}});
    }
    co_return json_answer(ver, bhttp::status::ok,
                          json{{"revision", snap->revision},
                               {"routes", rts},
                               {"instances", instances},
                               {"balancer", gateway::policy_name(opt.policy)},
                               {"hash_key", opt.policy == gateway::Policy::kConsistentHash ? json(opt.hash_key.text()) : json()},
                               {"stats", {{"proxied", proxied}, {"retries", retries}, {"errors_502", errors_502},
                                          {"errors_503", errors_503}, {"errors_504", errors_504},
                                          {"ejections", ejections}, {"rate_limited", rate_limited},
                                          {"tunnels", tunnels_total}, {"tunnels_open", tunnels_open},
                                          {"streamed", streamed_total}}}});
  }
  if (path == "/v1/routes/match") {
    std::string m = "GET", p, h;
    std::vector<std::pair<std::string, std::string>> hv;
    while (!query.empty()) {
      auto amp = query.find('&');
      auto part = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      auto eq = part.find('=');
      std::string v;
      if (eq == std::string_view::npos || !url_decode(part.substr(eq + 1), v, true)) continue;
      auto k = part.substr(0, eq);
      if (k == "method") m = v;
      else if (k == "path") p = v;
      else if (k == "host") h = v;
      else if (k == "header" && hv.size() < 32) {
        auto colon = v.find(':');
        hv.emplace_back(v.substr(0, colon), colon == std::string::npos ? std::string() : v.substr(colon + 1));
      }
    }
    if (p.empty())
      co_return error_answer(ver, bhttp::status::bad_request, "INVALID_ARGUMENT",
                             "give the request to match: /v1/routes/match?method=GET&path=/api/orders/7[&host=HOST]"
                             "[&header=NAME:VALUE]...");
    auto snap = routes.snapshot();
    auto r = snap->table.matcher().match(m, h, p, gateway::HeaderList(std::move(hv)));
    if (!r)
      co_return error_answer(ver, bhttp::status::not_found, "NOT_FOUND", fmt::format("no route matches {} {}", m, p));
    json params = json::object();
    for (auto& [k, v] : r->params) params[k] = v;
    json ids = json::array();
    for (uint32_t i : snap->table.targets(r->entry)) ids.push_back(snap->table.instances()[i].id);
    const auto& rt = snap->table.matcher().entries()[r->entry].route;
    co_return json_answer(ver, bhttp::status::ok,
                          json{{"route", rt.text()}, {"service", rt.service}, {"params", params}, {"instances", ids}});
  }
  constexpr std::string_view kPrefix = "/v1/routes/services/";
  auto usage = [&] {
    return error_answer(ver, bhttp::status::not_found, "NOT_FOUND",
                        fmt::format("no route for {} {}; gateway routes: GET /v1/routes, GET /v1/routes/match, "
                                    "PUT|DELETE /v1/routes/services/{{service}}/instances/{{id}}",
                                    sv(req.method_string()), path.substr(0, 200)));
  };
  if (!path.starts_with(kPrefix)) co_return usage();
  auto rest = path.substr(kPrefix.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || !rest.substr(slash).starts_with("/instances/")) co_return usage();
  std::string service, id;
  if (!url_decode(rest.substr(0, slash), service, false) ||
      !url_decode(rest.substr(slash + std::string_view("/instances/").size()), id, false))
    co_return error_answer(ver, bhttp::status::bad_request, "INVALID_ARGUMENT", "malformed percent-escape in the path");
  if (method == bhttp::verb::put || method == bhttp::verb::post) {
    auto r = co_await routes.register_instance(service, id, req.body());
    if (!r) co_return error_answer(ver, status_for(r.error().code), errc_name(r.error().code), r.error().message);
    json rs = json::array();
    for (auto& x : r->routes) rs.push_back(x.text());
    co_return json_answer(ver, bhttp::status::ok,
                          json{{"service", r->service},
                               {"id", r->id},
                               {"address", r->address},
                               {"routes", rs},
                               {"lease_ms", r->lease_ms},
                               {"expires_at_ms", r->expires_at_ms}});
  }
  if (method == bhttp::verb::delete_) {
    auto r = co_await routes.deregister(service, id);
    if (!r) co_return error_answer(ver, status_for(r.error().code), errc_name(r.error().code), r.error().message);
    co_return json_answer(ver, bhttp::status::ok, json{{"service", service}, {"id", id}, {"deregistered", *r}});
  }
  auto res = error_answer(ver, bhttp::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                          fmt::format("{} is not allowed on /v1/routes/services/{{service}}/instances/{{id}}; "
                                      "allowed: PUT (register or renew), DELETE",
                                      sv(req.method_string())));
  res.set(bhttp::field::allow, "PUT, POST, DELETE");
  co_return res;
}

}  // namespace keel::http
