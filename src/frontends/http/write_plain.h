// Writes an HTTP/1.x message with a string body in one system call: the start line and fields
// rendered into one buffer (with the body behind it when it is small), instead of Beast's
// serializer, whose buffer-sequence machinery cost the gateway a tenth of its CPU per request.
// Messages Beast must frame (chunked) still go through Beast. Include only from .cpp files of
// frontends/http (it includes Asio and Beast).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <array>
#include <string>

namespace keel::http {

// The start line and fields of `m`, then the blank line, appended to `out`.
template <bool isRequest>
void render_header(const boost::beast::http::message<isRequest, boost::beast::http::string_body>& m,
                   std::string& out) {
  namespace bhttp = boost::beast::http;
  const char* version = m.version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
  if constexpr (isRequest) {
    auto method = m.method_string();
    auto target = m.target();
    out.append(method.data(), method.size());
    out += ' ';
    out.append(target.data(), target.size());
    out += ' ';
    out += version;
  } else {
    out += version;
    out += ' ';
    out += std::to_string(m.result_int());
    out += ' ';
    auto reason = m.reason();
    if (reason.empty()) reason = bhttp::obsolete_reason(m.result());
    out.append(reason.data(), reason.size());
  }
  out += "\r\n";
  for (const auto& f : m) {
    auto name = f.name_string();
    auto value = f.value();
    out.append(name.data(), name.size());
    out += ": ";
    out.append(value.data(), value.size());
    out += "\r\n";
  }
  out += "\r\n";
}

// Writes `m` (its body unless `header_only`) to `stream`. A chunked message goes through Beast.
template <class Stream, bool isRequest>
boost::asio::awaitable<boost::system::error_code> write_plain(
    Stream& stream, boost::beast::http::message<isRequest, boost::beast::http::string_body>& m,
    bool header_only = false) {
  namespace asio = boost::asio;
  if (m.chunked()) {
    auto [ec, n] = co_await boost::beast::http::async_write(stream, m, asio::as_tuple(asio::use_awaitable));
    co_return ec;
  }
  std::string out;
  const auto& body = m.body();
  const bool inline_body = !header_only && body.size() <= 16 * 1024;
  out.reserve(256 + (inline_body ? body.size() : 0));
  render_header(m, out);
  if (inline_body) out += body;
  if (header_only || inline_body || body.empty()) {
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    co_return ec;
  }
  std::array<asio::const_buffer, 2> bufs{asio::buffer(out), asio::buffer(body)};
  auto [ec, n] = co_await asio::async_write(stream, bufs, asio::as_tuple(asio::use_awaitable));
  co_return ec;
}

}  // namespace keel::http
