// Connection: one socket, a coalescing writer, a reader that matches replies to commands in
// order, and a watchdog timer for command deadlines. The reader and writer are plain completion
// handlers (not coroutines) so a reply can resume its waiting coroutine inline.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/connect.hpp>
#include <algorithm>
#include <deque>
#include <unordered_map>

#include "keel/client/async.h"

namespace keel::client {

using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Connection::Impl : std::enable_shared_from_this<Connection::Impl> {
  Impl(asio::any_io_executor e, Endpoint endpoint, ConnectionOptions o)
      : ex(e), sock(e), timer(e), ep(std::move(endpoint)), opts(std::move(o)), parser(opts.limits) {}

  struct Pending {
    uint64_t seq;
    ReplyHandler handler;
    bool has_handler = false;
    Clock::time_point deadline;
  };

  asio::any_io_executor ex;
  tcp::socket sock;
  asio::steady_timer timer;
  Endpoint ep;
  ConnectionOptions opts;
  ReplyParser parser;
  std::string wbuf, wout;
  bool writing = false, write_scheduled = false, timer_armed = false, open = false, in_read = false;
  bool flush_after_read = false;
  Clock::time_point read_time;
  std::deque<Pending> pending;
  std::unordered_map<uint64_t, Result<Reply>> unclaimed;  // finished before a handler attached
  uint64_t next_seq = 1;
  Error close_reason{Errc::kClosed, "connection closed"};
  int protocol = 2;
  Reply hello;
  std::function<void(Reply)> push_fn;

  static constexpr size_t kReadChunk = 64 * 1024;

  // From the read handler a reply's handler is invoked directly: the read handler runs on the
  // connection's executor, where (by the threading contract in async.h) every handler of this
  // connection belongs. From anywhere else (an initiation, close() inside a coroutine) it is
  // posted, because resuming a coroutine from inside another one's initiation corrupts both.
  void deliver(ReplyHandler h, Result<Reply> r, bool from_read = false) {
    if (from_read) return std::move(h)(std::move(r));
    auto hex = asio::get_associated_executor(h, ex);
    auto fn = [h = std::move(h), r = std::move(r)]() mutable { std::move(h)(std::move(r)); };
    asio::post(ex, [hex, fn = std::move(fn)]() mutable { asio::dispatch(hex, std::move(fn)); });
  }

  uint64_t fail_ticket(Error e) {
    uint64_t seq = next_seq++;
    unclaimed.emplace(seq, std::unexpected(std::move(e)));
    return seq;
  }

  uint64_t enqueue(std::span<const std::string_view> args) {
    if (!open) return fail_ticket(close_reason);
    if (args.empty()) return fail_ticket(Error{Errc::kInvalidArgument, "empty command: give at least the command name"});
    if (pending.size() >= opts.max_pending)
      return fail_ticket(Error{Errc::kUnavailable, "more than " + std::to_string(opts.max_pending) +
                                                       " commands in flight on " + ep.to_string() + " (max_pending)"});
    encode_command(wbuf, args);
    uint64_t seq = next_seq++;
    // Inside the read handler the time of that read stands in for now (microseconds apart).
    Clock::time_point deadline = opts.command_timeout.count() <= 0 ? Clock::time_point::max()
                                 : (in_read ? read_time : Clock::now()) + opts.command_timeout;
    pending.push_back(Pending{seq, ReplyHandler(), false, deadline});
    schedule_write();
    arm_timer();
    return seq;
  }

  void attach(uint64_t seq, ReplyHandler h) {
    if (auto it = unclaimed.find(seq); it != unclaimed.end()) {
      auto r = std::move(it->second);
      unclaimed.erase(it);
      return deliver(std::move(h), std::move(r));
    }
    if (!pending.empty() && seq >= pending.front().seq && seq - pending.front().seq < pending.size()) {
      auto& p = pending[seq - pending.front().seq];
      p.handler.swap(h);  // not operator=: Boost 1.81's move assignment recurses forever
      p.has_handler = true;
      return;
    }
    deliver(std::move(h), std::unexpected(Error{Errc::kInvalidArgument, "a command's reply was awaited twice"}));
  }

  // Writes are deferred so that commands issued together leave in one write: to the end of the
  // read handler when issued while replies are handed out (the pipelined hot path), else to the
  // end of the current handler (one post).
  void schedule_write() {
    if (writing || write_scheduled) return;
    if (in_read) {  // issued while replies are handed out: written once the batch is done
      flush_after_read = true;
      return;
    }
    write_scheduled = true;
    asio::post(ex, [self = shared_from_this()] {
      self->write_scheduled = false;
      self->start_write();
    });
  }

  void start_write() {
    if (writing || wbuf.empty() || !open) return;
    writing = true;
    std::swap(wbuf, wout);
    asio::async_write(sock, asio::buffer(wout), [self = shared_from_this()](boost::system::error_code ec, size_t) {
      self->writing = false;
      self->wout.clear();
      if (ec) return self->fail_all(Error{Errc::kIoError, "write to " + self->ep.to_string() + " failed: " + ec.message()});
      self->start_write();
    });
  }

  // The parser restarts an incomplete reply from its first byte, so a reply of B bytes read in
  // fixed chunks would cost O(B^2). While a large reply is incomplete, reads grow with it and
  // parsing waits until the buffered bytes grew by half (or the socket has nothing more).
  size_t incomplete_bytes = 0;
  static constexpr size_t kMaxReadChunk = 4u << 20;

  void start_read() {
    size_t chunk = std::clamp(incomplete_bytes, kReadChunk, kMaxReadChunk);
    char* p = parser.prepare(chunk);
    sock.async_read_some(asio::buffer(p, chunk), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      self->on_read(ec, n);
    });
  }

  void on_read(boost::system::error_code ec, size_t n) {
    if (!open) return;
    if (ec) {
      std::string what = ec == asio::error::eof ? "the server closed the connection" : ec.message();
      return fail_all(Error{Errc::kIoError, "read from " + ep.to_string() + " failed: " + what});
    }
    parser.commit(n);
    if (incomplete_bytes > 0 && parser.buffered_bytes() < incomplete_bytes + incomplete_bytes / 2) {
      boost::system::error_code aec;
      if (sock.available(aec) > 0 && !aec) return start_read();  // more is already here
    }
    auto self = shared_from_this();  // a handler may drop the last Connection
    read_time = Clock::now();
    in_read = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{in_read};
    for (;;) {
      Reply r;
      auto st = parser.next(r);
      if (st == ReplyParser::Status::kNeedMore) {
        incomplete_bytes = parser.buffered_bytes() > kReadChunk ? parser.buffered_bytes() : 0;
        break;
      }
      incomplete_bytes = 0;
      if (st == ReplyParser::Status::kError)
        return fail_all(Error{Errc::kProtocol, "bad reply from " + ep.to_string() + ": " + parser.error()});
      if (r.type == ReplyType::kPush) {
        if (push_fn) push_fn(std::move(r));
        continue;
      }
      if (pending.empty())
        return fail_all(Error{Errc::kProtocol, "reply from " + ep.to_string() + " with no command in flight: " +
                                                   r.debug_string().substr(0, 100)});
      Pending p = std::move(pending.front());
      pending.pop_front();
      if (p.has_handler) deliver(std::move(p.handler), std::move(r), true);
      else unclaimed.emplace(p.seq, std::move(r));
      if (!open) return;
    }
    if (flush_after_read) {
      flush_after_read = false;
      start_write();
    }
    start_read();
  }

  void arm_timer() {
    if (timer_armed || pending.empty() || opts.command_timeout.count() <= 0) return;
    timer_armed = true;
    timer.expires_at(pending.front().deadline);
    timer.async_wait([self = shared_from_this()](boost::system::error_code) {
      self->timer_armed = false;
      if (!self->open || self->pending.empty()) return;
      if (Clock::now() >= self->pending.front().deadline)
        return self->fail_all(Error{Errc::kTimeout, "no reply from " + self->ep.to_string() + " within " +
                                                        std::to_string(self->opts.command_timeout.count()) +
                                                        " ms (command_timeout); connection closed"});
      self->arm_timer();
    });
  }

  void fail_all(Error e) {
    if (open) {
      open = false;
      close_reason = e;
      boost::system::error_code ignored;
      sock.shutdown(tcp::socket::shutdown_both, ignored);
      sock.close(ignored);
      timer.cancel();
    }
    auto self = shared_from_this();
    std::deque<Pending> failed;
    failed.swap(pending);
    for (auto& p : failed) {
      if (p.has_handler) deliver(std::move(p.handler), std::unexpected(e));
      else unclaimed.emplace(p.seq, std::unexpected(e));
    }
  }
};

Connection::Connection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() { close(); }

void Connection::close() {
  asio::dispatch(impl_->ex, [impl = impl_] { impl->fail_all(Error{Errc::kClosed, "connection to " + impl->ep.to_string() + " closed by the client"}); });
}
bool Connection::is_open() const { return impl_->open; }
const Endpoint& Connection::endpoint() const { return impl_->ep; }
int Connection::protocol() const { return impl_->protocol; }
const Reply& Connection::hello() const { return impl_->hello; }
size_t Connection::in_flight() const { return impl_->pending.size(); }
asio::any_io_executor Connection::get_executor() const { return impl_->ex; }
void Connection::on_push(std::function<void(Reply)> fn) { impl_->push_fn = std::move(fn); }

uint64_t Connection::enqueue(std::span<const std::string_view> args) { return impl_->enqueue(args); }
void Connection::complete_on(const std::shared_ptr<Impl>& impl, uint64_t ticket, ReplyHandler h) {
  impl->attach(ticket, std::move(h));
}

asio::awaitable<Result<Reply>> Connection::command(std::vector<std::string> args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  co_return co_await async_command(views);
}

asio::awaitable<std::vector<Result<Reply>>> Connection::pipeline(std::vector<std::vector<std::string>> cmds) {
  std::vector<uint64_t> tickets;
  tickets.reserve(cmds.size());
  for (auto& c : cmds) {
    std::vector<std::string_view> views(c.begin(), c.end());
    tickets.push_back(enqueue(views));
  }
  std::vector<Result<Reply>> out;
  out.reserve(cmds.size());
  for (auto t : tickets) {
    // GCC 12 destroys temporaries of a co_await full-expression twice: keep non-trivial
    // temporaries (this lambda holds a shared_ptr) out of co_await expressions.
    auto op = asio::async_initiate<const asio::use_awaitable_t<>, void(Result<Reply>)>(
        [impl = impl_, t](auto handler) { complete_on(impl, t, ReplyHandler(std::move(handler))); }, asio::use_awaitable);
    auto r = co_await std::move(op);
    out.push_back(std::move(r));
  }
  co_return out;
}

namespace {
Error refused(const Reply& r, std::string what, const Endpoint& ep) {
  return Error{Errc::kServerError, what + " refused by " + ep.to_string() + ": " + r.str};
}
bool refuses_hello(const Reply& r) {
  return r.is_error() && (r.str.starts_with("NOPROTO") || r.str.find("unknown command") != std::string::npos);
}
}  // namespace

asio::awaitable<Result<std::shared_ptr<Connection>>> Connection::connect(asio::any_io_executor ex, Endpoint ep) {
  return connect(std::move(ex), std::move(ep), ConnectionOptions{});
}

asio::awaitable<Result<std::shared_ptr<Connection>>> Connection::connect(asio::any_io_executor ex, Endpoint ep,
                                                                         ConnectionOptions opts) {
  if (opts.protocol != 2 && opts.protocol != 3)
    co_return make_error(Errc::kInvalidArgument, "protocol " + std::to_string(opts.protocol) + " is not supported (allowed: 2, 3)");
  auto impl = std::make_shared<Impl>(ex, ep, opts);
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer guard(ex);
  guard.expires_after(opts.connect_timeout);
  guard.async_wait([impl, timed_out](boost::system::error_code ec) {
    if (ec) return;
    *timed_out = true;
    boost::system::error_code ignored;
    impl->sock.close(ignored);
  });
  boost::system::error_code ec;
  tcp::resolver resolver(ex);
  std::string service = std::to_string(ep.port);
  auto results = co_await resolver.async_resolve(ep.host, service, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec && !*timed_out) co_await asio::async_connect(impl->sock, results, asio::redirect_error(asio::use_awaitable, ec));
  guard.cancel();
  if (*timed_out)
    co_return make_error(Errc::kTimeout, "connecting to " + ep.to_string() + " took longer than " +
                                             std::to_string(opts.connect_timeout.count()) + " ms (connect_timeout)");
  if (ec) co_return make_error(Errc::kIoError, "cannot connect to " + ep.to_string() + ": " + ec.message());
  impl->sock.set_option(tcp::no_delay(true), ec);
  impl->open = true;
  impl->start_read();
  auto conn = std::make_shared<Connection>(impl);

  if (opts.protocol == 3) {
    std::vector<std::string> hello = {"HELLO", "3"};
    if (!opts.password.empty()) {
      hello.insert(hello.end(), {"AUTH", opts.username.empty() ? "default" : opts.username, opts.password});
    }
    if (!opts.client_name.empty()) hello.insert(hello.end(), {"SETNAME", opts.client_name});
    auto r = co_await conn->command(std::move(hello));
    if (!r) co_return std::unexpected(r.error());
    if (!r->is_error()) {
      impl->protocol = 3;
      impl->hello = std::move(*r);
      co_return conn;
    }
    if (!refuses_hello(*r)) co_return std::unexpected(refused(*r, std::string("HELLO"), ep));
  }
  // RESP2: AUTH and CLIENT SETNAME as separate commands.
  if (!opts.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!opts.username.empty()) auth.push_back(opts.username);
    auth.push_back(opts.password);
    auto r = co_await conn->command(std::move(auth));
    if (!r) co_return std::unexpected(r.error());
    if (r->is_error()) co_return std::unexpected(refused(*r, std::string("AUTH"), ep));
  }
  if (!opts.client_name.empty()) {
    std::vector<std::string> setname = {"CLIENT", "SETNAME", opts.client_name};
    auto r = co_await conn->command(std::move(setname));
    if (!r) co_return std::unexpected(r.error());
    if (r->is_error()) co_return std::unexpected(refused(*r, std::string("CLIENT SETNAME"), ep));
  }
  co_return conn;
}

}  // namespace keel::client
