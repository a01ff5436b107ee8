// ConfigMetaWatcher: keel's metadata watch as a Capacitor source. The parsing of the node's
// answers is pure (top of the file); the shell is one thread running an io_context with one
// coroutine that reads, long-polls and retries, over a small bounded HTTP/1.1 client (Beast).
#include "keel/config_meta_watcher.h"

// GCC 12 with -fsanitize=address reports a false "maybe uninitialized" inside Beast's
// basic_parser::body_limit(boost::optional<std::uint64_t>); the value is always set here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cctype>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace keel::sdk {

namespace {

std::unexpected<ConfigError> fail(ConfigErrc code, std::string message) {
  return std::unexpected(ConfigError{code, std::move(message)});
}

bool unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string percent_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (unreserved(c) || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::expected<nlohmann::json, ConfigError> parse_json(std::string_view body, std::string_view what) {
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return fail(ConfigErrc::kRead, std::string(what) + ": the node's answer is not a JSON object");
  return doc;
}

std::optional<uint64_t> get_u64(const nlohmann::json& o, const char* name) {
  auto it = o.find(name);
  if (it == o.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

// The value of a kv object: "value", or "value_base64" for bytes that are not UTF-8.
std::expected<std::string, ConfigError> kv_value(const nlohmann::json& kv, std::string_view key) {
  if (auto it = kv.find("value"); it != kv.end() && it->is_string()) return it->get<std::string>();
  if (auto it = kv.find("value_base64"); it != kv.end() && it->is_string()) {
    if (auto bytes = base64_decode(it->get_ref<const std::string&>())) return *bytes;
    return fail(ConfigErrc::kRead, "metadata key '" + std::string(key) + "': value_base64 is not base64");
  }
  return fail(ConfigErrc::kRead, "metadata key '" + std::string(key) + "': the answer has no value");
}

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 64) return false;
  return std::all_of(d.begin(), d.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::expected<void, ConfigError> check_options(const MetaWatchOptions& o) {
  auto bad = [](std::string m) { return fail(ConfigErrc::kInvalid, "MetaWatchOptions: " + std::move(m)); };
  if (o.key.empty()) return bad("key must not be empty");
  if (o.key.size() > 1024) return bad("key is longer than 1024 bytes");
  if (!valid_domain(o.domain)) return bad("domain '" + o.domain + "' is not [a-z0-9_-]{1,64}");
  if (o.host.empty()) return bad("host must not be empty");
  if (o.port == 0) return bad("port must be 1..65535");
  if (o.watch_timeout.count() < 1 || o.watch_timeout.count() > 60000)
    return bad("watch_timeout must be 1..60000 ms (the server's bound), not " +
               std::to_string(o.watch_timeout.count()));
  if (o.request_timeout.count() < 1) return bad("request_timeout must be positive");
  if (o.retry_initial.count() < 1 || o.retry_max < o.retry_initial)
    return bad("retry_initial must be positive and retry_max >= retry_initial");
  if (o.max_response_bytes < 1024) return bad("max_response_bytes must be at least 1024");
  auto printable = [](const std::string& v) {
    return std::all_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
  };
  if (!o.password.empty() && o.username.empty()) return bad("password is set without a username");
  if (!o.username.empty() && !o.bearer_token.empty())
    return bad("username and bearer_token are both set; allowed: one kind of credentials");
  if (o.username.find(':') != std::string::npos) return bad("username must not contain ':' (HTTP Basic)");
  if (!printable(o.username) || !printable(o.password) || !printable(o.bearer_token))
    return bad("username, password and bearer_token must not contain control characters");
  if (o.username.size() + o.password.size() > 4096 || o.bearer_token.size() > 8192)
    return bad("credentials longer than 4096 bytes (a token: 8192)");
  return {};
}

std::string base64_encode(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

// The Authorization header's value for the options' credentials ("" for none).
std::string authorization(const MetaWatchOptions& o) {
  if (!o.username.empty()) return "Basic " + base64_encode(o.username + ":" + o.password);
  if (!o.bearer_token.empty()) return "Bearer " + o.bearer_token;
  return {};
}

// "HTTP 503 UNAVAILABLE: no quorum ..." from keel's error body, or the status alone.
std::string describe_http_error(unsigned status, std::string_view body) {
  std::string out = "HTTP " + std::to_string(status);
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    if (auto e = doc.find("error"); e != doc.end() && e->is_object()) {
      if (auto c = e->find("code"); c != e->end() && c->is_string()) out += " " + c->get<std::string>();
      if (auto m = e->find("message"); m != e->end() && m->is_string()) out += ": " + m->get<std::string>();
    }
  }
  return out;
}

}  // namespace

std::expected<MetaValue, ConfigError> parse_meta_value(std::string_view body, std::string_view key) {
  auto doc = parse_json(body, "GET of metadata key '" + std::string(key) + "'");
  if (!doc) return std::unexpected(doc.error());
  auto value = kv_value(*doc, key);
  if (!value) return std::unexpected(value.error());
  auto mod = get_u64(*doc, "mod_revision");
  if (!mod) return fail(ConfigErrc::kRead, "metadata key '" + std::string(key) + "': the answer has no mod_revision");
  return MetaValue{std::move(*value), *mod};
}

std::expected<MetaWatchAnswer, ConfigError> parse_meta_watch(std::string_view body, std::string_view key) {
  auto doc = parse_json(body, "watch of metadata key '" + std::string(key) + "'");
  if (!doc) return std::unexpected(doc.error());
  MetaWatchAnswer out;
  auto rev = get_u64(*doc, "revision");
  auto events = doc->find("events");
  if (!rev || events == doc->end() || !events->is_array())
    return fail(ConfigErrc::kRead, "watch answer for '" + std::string(key) + "' lacks revision or events");
  out.revision = *rev;
  for (const auto& ev : *events) {
    if (!ev.is_object()) return fail(ConfigErrc::kRead, "watch answer: an event is not an object");
    auto kv = ev.find("kv");
    auto type = ev.find("type");
    if (kv == ev.end() || !kv->is_object() || type == ev.end() || !type->is_string())
      return fail(ConfigErrc::kRead, "watch answer: an event lacks kv or type");
    auto k = kv->find("key");
    if (k == kv->end() || !k->is_string()) return fail(ConfigErrc::kRead, "watch answer: an event lacks its key");
    if (k->get_ref<const std::string&>() != key) continue;  // a longer key under the same prefix
    ++out.events;
    const auto& t = type->get_ref<const std::string&>();
    if (t == "delete") {
      out.latest = std::optional<std::string>();
    } else if (t == "put") {
      auto v = kv_value(*kv, key);
      if (!v) return std::unexpected(v.error());
      out.latest = std::optional<std::string>(std::move(*v));
    } else {
      return fail(ConfigErrc::kRead, "watch answer: unknown event type '" + t + "'");
    }
    if (auto r = get_u64(ev, "revision")) out.revision = std::max(out.revision, *r);
  }
  return out;
}

std::expected<std::string, ConfigError> meta_value_target(const MetaWatchOptions& o) {
  if (auto ok = check_options(o); !ok) return std::unexpected(ok.error());
  if (!o.secret.empty()) return "/v1/secrets/" + percent_encode(o.secret, true);
  return "/v1/meta/" + percent_encode(o.key, true) + "?domain=" + o.domain;
}

std::expected<std::string, ConfigError> meta_watch_target(const MetaWatchOptions& o,
                                                          std::optional<uint64_t> from_revision,
                                                          std::chrono::milliseconds timeout) {
  if (auto ok = check_options(o); !ok) return std::unexpected(ok.error());
  std::string t = "/v1/meta/watch?domain=" + o.domain + "&prefix=" + percent_encode(o.key, false);
  if (from_revision) t += "&from_revision=" + std::to_string(*from_revision);
  t += "&timeout_ms=" + std::to_string(std::clamp<int64_t>(timeout.count(), 0, 60000));
  return t;
}

// ---- the shell ---------------------------------------------------------------------------------

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

struct HttpAnswer {
  unsigned status = 0;
  std::string body;
};

// One keep-alive connection; reconnects when needed. Every request is bounded in time and size.
class HttpClient {
 public:
  HttpClient(asio::any_io_executor ex, const MetaWatchOptions& o) : ex_(ex), o_(o) {}

  asio::awaitable<std::expected<HttpAnswer, ConfigError>> get(std::string target,
                                                               std::chrono::milliseconds timeout) {
    const std::string where = o_.host + ":" + std::to_string(o_.port);
    boost::system::error_code ec;
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool fresh = false;
      if (!stream_) {
        tcp::resolver resolver(ex_);
        auto results = co_await resolver.async_resolve(o_.host, std::to_string(o_.port),
                                                       asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return fail(ConfigErrc::kRead, "cannot resolve " + o_.host + ": " + ec.message());
        stream_.emplace(ex_);
        stream_->expires_after(o_.request_timeout);
        co_await stream_->async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          stream_.reset();
          co_return fail(ConfigErrc::kRead, "cannot connect to " + where + ": " + ec.message());
        }
        buffer_.clear();
        fresh = true;
      }
      stream_->expires_after(timeout);
      http::request<http::empty_body> req{http::verb::get, target, 11};
      req.set(http::field::host, where);
      req.set(http::field::user_agent, "keel-sdk");
      if (!auth_.empty()) req.set(http::field::authorization, auth_);
      req.keep_alive(true);
      co_await http::async_write(*stream_, req, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) {
        http::response_parser<http::string_body> parser;
        parser.body_limit(o_.max_response_bytes);
        parser.header_limit(16 * 1024);
        co_await http::async_read(*stream_, buffer_, parser, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) {
          auto res = parser.release();
          if (!res.keep_alive()) stream_.reset();
          co_return HttpAnswer{res.result_int(), std::move(res.body())};
        }
        if (ec == http::error::body_limit || ec == http::error::header_limit) {
          stream_.reset();
          co_return fail(ConfigErrc::kTooLarge, "GET " + target + " from " + where + ": the answer is larger than " +
                                                    std::to_string(o_.max_response_bytes) +
                                                    " bytes (max_response_bytes) or its headers than 16 KB");
        }
      }
      stream_.reset();
      // A kept-alive connection the server had closed: one more try on a new one (GET is safe).
      if (fresh || ec == beast::error::timeout) break;
    }
    co_return fail(ConfigErrc::kRead, "GET " + target + " from " + where + ": " +
                                          (ec == beast::error::timeout ? std::string("timed out") : ec.message()));
  }

  void close() { stream_.reset(); }

 private:
  asio::any_io_executor ex_;
  const MetaWatchOptions& o_;
  std::string auth_ = authorization(o_);
  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

}  // namespace

struct ConfigMetaWatcher::Impl {
  explicit Impl(ConfigMetaWatcher* watcher) : w(watcher) {}
  ConfigMetaWatcher* w;
  asio::io_context io{1};

  struct Read {
    std::expected<std::string, ConfigError> text;
    uint64_t next_revision;
  };

  // The store's revision, then the key's value: see the header for why in this order.
  asio::awaitable<std::expected<Read, ConfigError>> read(HttpClient& http) {
    const auto& o = w->options_;
    auto first = co_await http.get(*meta_watch_target(o, std::nullopt, std::chrono::milliseconds(0)), o.request_timeout);
    if (!first) co_return std::unexpected(first.error());
    if (first->status != 200) co_return fail(ConfigErrc::kRead, "watch of '" + o.key + "': " + describe_http_error(first->status, first->body));
    auto now_rev = parse_meta_watch(first->body, o.key);
    if (!now_rev) co_return std::unexpected(now_rev.error());
    auto got = co_await http.get(*meta_value_target(o), o.request_timeout);
    if (!got) co_return std::unexpected(got.error());
    if (got->status == 404) {
      // A secret whose latest version was deleted answers 404 too: the node's message says which.
      const bool deleted = got->body.find("is deleted") != std::string::npos ||
                           got->body.find("is destroyed") != std::string::npos;
      co_return Read{fail(ConfigErrc::kRead, !o.secret.empty()
                                                 ? (deleted ? "secret '" + o.secret + "': " + describe_http_error(got->status, got->body)
                                                            : "secret '" + o.secret + "' does not exist")
                                                 : "metadata key '" + o.key + "' (domain " + o.domain + ") does not exist"),
                     now_rev->revision + 1};
    }
    if (got->status != 200) co_return fail(ConfigErrc::kRead, "GET of '" + o.key + "': " + describe_http_error(got->status, got->body));
    auto value = parse_meta_value(got->body, o.key);
    if (!value) co_return std::unexpected(value.error());
    co_return Read{std::move(value->value), value->mod_revision + 1};
  }

  void load(std::expected<std::string, ConfigError> text) {
    w->target_.load(std::move(text), w->clock_.now());
    w->loads_.fetch_add(1, std::memory_order_acq_rel);
  }

  asio::awaitable<void> run() {
    const auto& o = w->options_;
    CapacitorCore& core = w->target_;
    const Clock& clock = w->clock_;
    auto ex = co_await asio::this_coro::executor;
    HttpClient http(ex, o);
    asio::steady_timer pause(ex);
    MemorySource latest;  // the newest text the node reported (what a debounced load reads)
    std::chrono::milliseconds backoff = o.retry_initial;
    bool need_read = true, failing = false;
    uint64_t next = 0;

    auto on_failure = [&](ConfigError error) {
      w->failures_.fetch_add(1, std::memory_order_acq_rel);
      http.close();
      need_read = true;  // whatever happened meanwhile, the next success starts from a fresh read
      if (!failing) {    // report an outage once, not at every retry
        failing = true;
        error.message = "metadata watch: " + error.message + " (keeping the last good value; retrying)";
        load(std::unexpected(std::move(error)));
      }
    };

    for (;;) {
      if (need_read) {
        auto r = co_await read(http);
        if (!r) {
          on_failure(std::move(r.error()));
          pause.expires_after(backoff);
          boost::system::error_code ec;
          co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          backoff = std::min(backoff * 2, o.retry_max);
          continue;
        }
        w->reads_.fetch_add(1, std::memory_order_acq_rel);
        need_read = failing = false;
        backoff = o.retry_initial;
        next = r->next_revision;
        w->revision_.store(next - 1, std::memory_order_release);
        if (r->text) latest.set(*r->text);
        else latest.set_error(r->text.error().message);
        load(std::move(r->text));  // not debounced: this is the state of the source now
      }

      auto timeout = o.watch_timeout;
      if (auto deadline = core.next_deadline()) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock.now());
        timeout = std::clamp(left, std::chrono::milliseconds(0), o.watch_timeout);
      }
      auto answer = co_await http.get(*meta_watch_target(o, next, timeout), timeout + o.request_timeout);
      if (answer && answer->status == 410) {  // history trimmed past `next`: read again
        need_read = true;
        continue;
      }
      std::expected<MetaWatchAnswer, ConfigError> parsed = std::unexpected(ConfigError{ConfigErrc::kRead, ""});
      if (!answer) {
        parsed = std::unexpected(answer.error());
      } else if (answer->status != 200) {
        parsed = fail(ConfigErrc::kRead, "watch of '" + o.key + "': " + describe_http_error(answer->status, answer->body));
      } else {
        parsed = parse_meta_watch(answer->body, o.key);
      }
      if (!parsed) {
        on_failure(std::move(parsed.error()));
        pause.expires_after(backoff);
        boost::system::error_code ec;
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        backoff = std::min(backoff * 2, o.retry_max);
        continue;
      }
      if (parsed->latest && *parsed->latest && !o.secret.empty()) {
        // A secret changed: the watch shows it redacted; read its value (loaded at once).
        need_read = true;
        continue;
      }
      if (parsed->latest) {
        if (*parsed->latest) latest.set(**parsed->latest);
        else if (!o.secret.empty()) latest.set_error("secret '" + o.secret + "' was deleted");
        else latest.set_error("metadata key '" + o.key + "' (domain " + o.domain + ") was deleted");
        core.notify_changed(clock.now());
      }
      next = std::max(next, parsed->revision + 1);
      w->revision_.store(next - 1, std::memory_order_release);
      if (core.poll(latest, clock.now())) w->loads_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
};

ConfigMetaWatcher::ConfigMetaWatcher(CapacitorCore& target, MetaWatchOptions options, const Clock& clock)
    : target_(target), options_(std::move(options)), clock_(clock), impl_(std::make_unique<Impl>(this)) {}

std::expected<std::unique_ptr<ConfigMetaWatcher>, ConfigError> ConfigMetaWatcher::start(
    CapacitorCore& target, MetaWatchOptions options, const Clock& clock) {
  if (!options.secret.empty()) {  // the secret's entry in metadata signals its changes
    if (options.secret.size() > 512 || options.secret.front() == '/' || options.secret.back() == '/')
      return fail(ConfigErrc::kInvalid, "MetaWatchOptions: secret '" + options.secret +
                                            "' is not a secret path (segments separated by '/', up to 512 bytes)");
    options.key = "data/" + options.secret;
    options.domain = "secrets";
  }
  if (auto ok = check_options(options); !ok) return std::unexpected(ok.error());
  std::unique_ptr<ConfigMetaWatcher> w(new ConfigMetaWatcher(target, std::move(options), clock));
  asio::co_spawn(w->impl_->io, w->impl_->run(), asio::detached);
  w->thread_ = std::thread([raw = w.get()] { raw->impl_->io.run(); });
  return w;
}

ConfigMetaWatcher::~ConfigMetaWatcher() { stop(); }

void ConfigMetaWatcher::stop() {
  if (!thread_.joinable()) return;
  impl_->io.stop();  // the coroutine is destroyed with the io_context, nothing more runs
  thread_.join();
}

}  // namespace keel::sdk
