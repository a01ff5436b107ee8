// keel::Client: one io_context on one thread runs the ClusterClient; blocking calls co_spawn
// onto it and wait on a future.
#include "keel/client/client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cctype>
#include <charconv>
#include <random>
#include <thread>

#include "keel/client/async.h"

namespace keel {

using namespace client;

struct Client::Impl {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
  std::shared_ptr<ClusterClient> cc;

  Impl() : thread([this] { io.run(); }) {}
  ~Impl() {
    if (cc) {
      run([](std::shared_ptr<ClusterClient> c) -> asio::awaitable<int> {
        c->close();
        co_return 0;
      }(cc));
      // Drop the last reference on the I/O thread, where the pools live.
      asio::co_spawn(io, [](std::shared_ptr<ClusterClient>) -> asio::awaitable<void> { co_return; }(std::move(cc)),
                     asio::use_future).get();
    }
    work.reset();
    io.stop();
    thread.join();
  }

  template <class T>
  T run(asio::awaitable<T> a) {
    return asio::co_spawn(io, std::move(a), asio::use_future).get();
  }

  SpanSink on_span;  // ClusterOptions::on_span

  Result<Reply> send(std::vector<std::string> args, std::string traceparent) {
    return run([](std::shared_ptr<ClusterClient> c, std::vector<std::string> a,
                  std::string tp) -> asio::awaitable<Result<Reply>> {
      co_return co_await c->command(std::move(a), std::move(tp));
    }(cc, std::move(args), std::move(traceparent)));
  }

  // Under a sampled TraceScope the call carries the context to keel and, with a sink, is a span
  // of its own (the node's span its child); otherwise nothing is added to the call.
  Result<Reply> command(std::vector<std::string> args) {
    const TraceContext* scope = TraceScope::current();
    if (!scope || !scope->sampled || args.empty()) return send(std::move(args), std::string());
    if (!on_span) return send(std::move(args), scope->traceparent());
    ClientSpan span;
    span.context = *scope;
    span.parent_span_id = scope->span_id;
    thread_local std::mt19937_64 rng{std::random_device{}()};
    do {
      uint64_t r = rng();
      for (size_t i = 0; i < 8; ++i) span.context.span_id[i] = static_cast<uint8_t>(r >> (8 * i));
    } while (span.context.span_id == std::array<uint8_t, 8>{});
    span.name = args[0];
    for (auto& ch : span.name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    auto unix_ns = [] {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
    span.start_unix_ns = unix_ns();
    auto r = send(std::move(args), span.context.traceparent());
    span.end_unix_ns = unix_ns();
    if (!r) {
      span.error = true;
      span.error_message = r.error().to_string();
    } else if (r->is_error()) {
      span.error = true;
      span.error_message = r->str;
    }
    on_span(span);
    return r;
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Client::Result<Client> Client::connect(ClientOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->on_span = options.on_span;
  auto cc = impl->run(ClusterClient::connect(impl->io.get_executor(), std::move(options)));
  if (!cc) return std::unexpected(cc.error());
  impl->cc = std::move(*cc);
  return Client(std::move(impl));
}

Client::Result<Client> Client::connect(std::string host, uint16_t port) {
  ClientOptions o;
  o.seeds = {Endpoint{std::move(host), port}};
  return connect(std::move(o));
}

Client::Result<Reply> Client::command(std::vector<std::string> args) { return impl_->command(std::move(args)); }

Client::Result<Reply> Client::checked(std::vector<std::string> args) {
  auto r = impl_->command(std::move(args));
  if (r && r->is_error()) return std::unexpected(reply_error(*r));
  return r;
}

namespace {
using OptString = std::optional<std::string>;

Result<OptString> as_opt_string(Result<Reply> r) {
  if (!r) return std::unexpected(r.error());
  if (r->is_null()) return OptString{};
  if (r->is_string()) return OptString{std::move(r->str)};
  return std::unexpected(reply_error(*r));
}
Result<int64_t> as_int(Result<Reply> r) {
  if (!r) return std::unexpected(r.error());
  if (r->type == ReplyType::kInteger) return r->integer;
  return std::unexpected(reply_error(*r));
}
Status as_ok(Result<Reply> r) {
  if (!r) return std::unexpected(r.error());
  if (r->type == ReplyType::kSimpleString || r->type == ReplyType::kBulkString) return {};
  return std::unexpected(reply_error(*r));
}
std::string str(std::string_view s) { return std::string(s); }

// A counting command over many keys (DEL, EXISTS): with several nodes each slot's keys go to
// that slot's node and the counts are summed; with one node it is one command.
Result<int64_t> sum_per_slot(Client& c, const char* name, const std::vector<std::string>& keys,
                             size_t nodes) {
  if (keys.empty()) return int64_t{0};
  std::map<uint32_t, std::vector<std::string>> by_slot;
  if (nodes <= 1) by_slot = {{0, keys}};
  else for (auto& k : keys) by_slot[key_slot(k)].push_back(k);
  int64_t total = 0;
  for (auto& [slot, ks] : by_slot) {
    std::vector<std::string> args = {name};
    args.insert(args.end(), ks.begin(), ks.end());
    auto n = as_int(c.command(std::move(args)));
    if (!n) return n;
    total += *n;
  }
  return total;
}

}  // namespace

Client::Result<std::optional<std::string>> Client::get(std::string_view key) {
  return as_opt_string(command({"GET", str(key)}));
}

Client::Status Client::set(std::string_view key, std::string_view value, Ttl ttl) {
  std::vector<std::string> args = {"SET", str(key), str(value)};
  if (ttl) {
    if (ttl->count() <= 0)
      return make_error(Errc::kInvalidArgument, "ttl must be positive (got " + std::to_string(ttl->count()) + " ms)");
    args.insert(args.end(), {"PX", std::to_string(ttl->count())});
  }
  return as_ok(command(std::move(args)));
}

Client::Result<int64_t> Client::del(const std::vector<std::string>& keys) {
  return sum_per_slot(*this, "DEL", keys, impl_->cc->node_count());
}

Client::Result<int64_t> Client::exists(const std::vector<std::string>& keys) {
  return sum_per_slot(*this, "EXISTS", keys, impl_->cc->node_count());
}

Client::Result<bool> Client::exists(std::string_view key) {
  auto n = as_int(command({"EXISTS", str(key)}));
  if (!n) return std::unexpected(n.error());
  return *n > 0;
}

Client::Result<int64_t> Client::incr(std::string_view key, int64_t by) {
  if (by == 1) return as_int(command({"INCR", str(key)}));
  return as_int(command({"INCRBY", str(key), std::to_string(by)}));
}

Client::Result<std::vector<std::optional<std::string>>> Client::mget(const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> out(keys.size());
  if (keys.empty()) return out;
  std::map<uint32_t, std::vector<size_t>> by_slot;  // slot -> positions in keys
  if (impl_->cc->node_count() <= 1) {
    for (size_t i = 0; i < keys.size(); ++i) by_slot[0].push_back(i);
  } else {
    for (size_t i = 0; i < keys.size(); ++i) by_slot[key_slot(keys[i])].push_back(i);
  }
  for (auto& [slot, idx] : by_slot) {
    std::vector<std::string> args = {"MGET"};
    for (auto i : idx) args.push_back(keys[i]);
    auto r = command(std::move(args));
    if (!r) return std::unexpected(r.error());
    if (r->type != ReplyType::kArray || r->elements.size() != idx.size()) return std::unexpected(reply_error(*r));
    for (size_t j = 0; j < idx.size(); ++j) {
      auto& e = r->elements[j];
      if (e.is_string()) out[idx[j]] = std::move(e.str);
      else if (!e.is_null()) return std::unexpected(reply_error(e));
    }
  }
  return out;
}

Client::Status Client::mset(const std::vector<std::pair<std::string, std::string>>& pairs) {
  if (pairs.empty()) return make_error(Errc::kInvalidArgument, "mset needs at least one key/value pair");
  std::map<uint32_t, std::vector<std::string>> by_slot;
  bool single = impl_->cc->node_count() <= 1;
  for (auto& [k, v] : pairs) {
    auto& args = by_slot[single ? 0 : key_slot(k)];
    if (args.empty()) args.push_back("MSET");
    args.push_back(k);
    args.push_back(v);
  }
  for (auto& [slot, args] : by_slot) {
    auto st = as_ok(command(std::move(args)));
    if (!st) return st;
  }
  return {};
}

Client::Result<int64_t> Client::hset(std::string_view key, std::string_view field, std::string_view value) {
  return as_int(command({"HSET", str(key), str(field), str(value)}));
}

Client::Result<std::optional<std::string>> Client::hget(std::string_view key, std::string_view field) {
  return as_opt_string(command({"HGET", str(key), str(field)}));
}

Client::Result<std::map<std::string, std::string>> Client::hgetall(std::string_view key) {
  auto r = command({"HGETALL", str(key)});
  if (!r) return std::unexpected(r.error());
  if ((r->type != ReplyType::kMap && r->type != ReplyType::kArray) || r->elements.size() % 2 != 0)
    return std::unexpected(reply_error(*r));
  std::map<std::string, std::string> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2)
    out.emplace(std::move(r->elements[i].str), std::move(r->elements[i + 1].str));
  return out;
}

Client::Result<bool> Client::expire(std::string_view key, std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0)
    return make_error(Errc::kInvalidArgument, "ttl must be positive (got " + std::to_string(ttl.count()) + " ms); use del() to remove");
  auto n = as_int(command({"PEXPIRE", str(key), std::to_string(ttl.count())}));
  if (!n) return std::unexpected(n.error());
  return *n == 1;
}

Client::Result<Client::Ttl> Client::ttl(std::string_view key) {
  auto n = as_int(command({"PTTL", str(key)}));
  if (!n) return std::unexpected(n.error());
  if (*n == -2) return make_error(Errc::kNotFound, "key '" + str(key).substr(0, 100) + "' does not exist");
  if (*n == -1) return Ttl{};
  return Ttl{std::chrono::milliseconds(*n)};
}

Client::Result<ScanPage> Client::scan(std::string_view cursor, std::string_view match, size_t count) {
  std::vector<std::string> args = {"SCAN", str(cursor)};
  if (!match.empty()) args.insert(args.end(), {"MATCH", str(match)});
  args.insert(args.end(), {"COUNT", std::to_string(count == 0 ? 10 : count)});
  auto r = command(std::move(args));
  if (!r) return std::unexpected(r.error());
  if (r->type != ReplyType::kArray || r->elements.size() != 2 || !r->elements[0].is_string() ||
      !r->elements[1].is_aggregate())
    return std::unexpected(reply_error(*r));
  ScanPage page;
  page.cursor = std::move(r->elements[0].str);
  for (auto& k : r->elements[1].elements) page.keys.push_back(std::move(k.str));
  return page;
}

client::Topology Client::topology() const {
  return impl_->run([](std::shared_ptr<ClusterClient> c) -> asio::awaitable<Topology> { co_return c->topology(); }(impl_->cc));
}

std::map<Endpoint, PoolStats> Client::pool_stats() const {
  return impl_->run([](std::shared_ptr<ClusterClient> c) -> asio::awaitable<std::map<Endpoint, PoolStats>> {
    co_return c->pool_stats();
  }(impl_->cc));
}

uint64_t Client::redirects_followed() const {
  return impl_->run([](std::shared_ptr<ClusterClient> c) -> asio::awaitable<uint64_t> {
    co_return c->redirects_followed();
  }(impl_->cc));
}

}  // namespace keel
