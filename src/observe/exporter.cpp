#include "observe/exporter.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <chrono>
#include <type_traits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kTrace); }
thread_local bool t_export_thread = false;
}  // namespace

namespace keel::observe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

bool on_export_thread() { return t_export_thread; }

Resource node_resource(const std::string& service_name, const std::string& instance_id, const std::string& version) {
  Resource r;
  r.attributes.push_back({"service.name", service_name});
  if (!instance_id.empty()) r.attributes.push_back({"service.instance.id", instance_id});
  if (!version.empty()) r.attributes.push_back({"service.version", version});
  r.scope_name = "keel";
  r.scope_version = version;
  return r;
}

namespace {

int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int64_t unix_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One POST, connect to last byte within `timeout_ms`. Runs on the exporter thread's own
// io_context (never a shard's).
asio::awaitable<ExportResult> post_once(const HttpUrl& url, const std::string& body, int64_t timeout_ms) {
  ExportResult out;
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  beast::tcp_stream stream(ex);
  stream.expires_after(std::chrono::milliseconds(timeout_ms));
  auto [rec, eps] = co_await resolver.async_resolve(url.host, std::to_string(url.port), asio::as_tuple(asio::use_awaitable));
  if (rec) {
    out.error = fmt::format("cannot resolve {}: {}", url.host, rec.message());
    co_return out;
  }
  auto [cec, ep] = co_await stream.async_connect(eps, asio::as_tuple(asio::use_awaitable));
  if (cec) {
    out.error = fmt::format("cannot connect to {}:{}: {}", url.host, url.port, cec.message());
    co_return out;
  }
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, url.path, 11};
  req.set(bhttp::field::host, url.port == 80 ? url.host : fmt::format("{}:{}", url.host, url.port));
  req.set(bhttp::field::user_agent, "keel-otlp-exporter");
  req.set(bhttp::field::content_type, "application/json");
  req.keep_alive(false);
  req.body() = body;
  req.prepare_payload();
  auto [wec, wn] = co_await bhttp::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
  if (wec) {
    out.error = fmt::format("sending to {}:{} failed: {}", url.host, url.port, wec.message());
    co_return out;
  }
  beast::flat_buffer buf;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1 << 20);
  auto [rdec, rn] = co_await bhttp::async_read(stream, buf, parser, asio::as_tuple(asio::use_awaitable));
  if (rdec) {
    out.error = fmt::format("reading the answer of {}:{} failed: {}", url.host, url.port, rdec.message());
    co_return out;
  }
  auto res = parser.release();
  out.status = static_cast<int>(res.result_int());
  if (auto it = res.find(bhttp::field::retry_after); it != res.end()) out.retry_after = std::string(it->value());
  out.body = std::move(res.body());
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  co_return out;
}

}  // namespace

template <class Record>
void Exporter<Record>::start() {
  thread_ = std::thread([this] {
    t_export_thread = true;
    run();
  });
}

template <class Record>
void Exporter<Record>::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

template <class Record>
size_t Exporter<Record>::hand_off(std::vector<Record>& records) {
  size_t dropped = 0;
  {
    std::lock_guard lk(mu_);
    for (auto& r : records) {
      if (inbox_.size() >= opt_.policy.max_queue_spans) ++dropped;
      else inbox_.push_back(std::move(r));
    }
  }
  records.clear();
  if (dropped) dropped_handoff_.fetch_add(dropped, std::memory_order_relaxed);
  cv_.notify_one();
  return dropped;
}

template <class Record>
bool Exporter<Record>::hand_off(Record record) {
  {
    std::lock_guard lk(mu_);
    if (inbox_.size() >= opt_.policy.max_queue_spans) {
      dropped_handoff_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    inbox_.push_back(std::move(record));
  }
  cv_.notify_one();
  return true;
}

template <class Record>
ExporterStats Exporter<Record>::stats() const {
  std::lock_guard lk(mu_);
  ExporterStats s;
  s.export_counters = published_;
  s.dropped_handoff = dropped_handoff_.load(std::memory_order_relaxed);
  s.queued = published_queue_ + inbox_.size();
  return s;
}

template <class Record>
void Exporter<Record>::run() {
  constexpr const char* what = std::is_same_v<Record, LogData> ? "log export" : "trace export";
  constexpr const char* records = std::is_same_v<Record, LogData> ? "log records" : "spans";
  BasicExportCore<Record> core(opt_.policy, opt_.resource);
  asio::io_context io;
  int64_t stop_deadline = INT64_MAX;
  std::unique_lock lk(mu_);
  for (;;) {
    std::vector<Record> in;
    in.swap(inbox_);
    bool stopping = stop_;
    lk.unlock();
    int64_t now = mono_ms();
    if (stopping && stop_deadline == INT64_MAX) stop_deadline = now + opt_.timeout_ms;
    if (!in.empty()) core.offer(now, in);
    const ExportRequest* req = core.poll(now, stopping);
    if (req) {
      // While stopping, no request outlives the stop deadline.
      int64_t timeout = stopping ? std::clamp<int64_t>(stop_deadline - now, 1, opt_.timeout_ms) : opt_.timeout_ms;
      auto fut = asio::co_spawn(io, post_once(opt_.endpoint, req->body, timeout), asio::use_future);
      io.restart();
      io.run();
      ExportResult r = fut.get();
      auto msg = core.on_result(mono_ms(), unix_s(), r);
      if (!msg.empty()) klog().warn("{}", msg);
      else if (r.status < 200 || r.status >= 300)
        klog().debug("{}: {} (will retry)", what, r.status ? fmt::format("HTTP {}", r.status) : r.error);
    }
    lk.lock();
    published_ = core.counters();
    published_queue_ = core.queued_spans();
    if (req) continue;
    if (stopping && (core.idle() || mono_ms() >= stop_deadline)) break;
    int64_t wake = core.next_wakeup_ms();
    int64_t wait = std::clamp<int64_t>(wake == INT64_MAX ? 1000 : wake - mono_ms(), 1, 1000);
    if (stopping) wait = std::min<int64_t>(wait, std::max<int64_t>(1, stop_deadline - mono_ms()));
    cv_.wait_for(lk, std::chrono::milliseconds(wait), [&] { return !inbox_.empty() || stop_ != stopping; });
  }
  if (!core.idle()) klog().warn("{}: {} still queued at shutdown were not exported", what, records);
}

template class Exporter<SpanData>;
template class Exporter<LogData>;

}  // namespace keel::observe
