// Pub/sub transports for ChannelPublisher/ChannelSubscriber (keel/messaging/channels.h): RESP
// (a subscription is a blocking socket of its own in RESP2 subscribed mode, read with poll())
// and in-process.
#include "keel/messaging/channels.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>

namespace keel::messaging {
namespace {

using client::make_error;
using client::Reply;
using client::ReplyParser;
using client::ReplyType;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kEnvelopeMagic{"\x00KM1", 4};

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

bool get_bytes(std::string_view& in, std::string& out) {
  uint64_t n = 0;
  if (!get_varint(in, n) || n > in.size()) return false;
  out.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

// Redis's glob syntax (* ? [abc] [^a] [a-z] \\x) for the in-process transport's patterns;
// single-star backtracking, so never exponential.
bool class_match(std::string_view p, size_t& i, char c) {
  // p[i] is just past '['; leaves i on the closing ']' (or the end).
  bool negate = i < p.size() && p[i] == '^';
  if (negate) ++i;
  bool match = false;
  while (i < p.size() && p[i] != ']') {
    if (p[i] == '\\' && i + 1 < p.size()) {
      match |= p[i + 1] == c;
      i += 2;
    } else if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
      char lo = p[i], hi = p[i + 2];
      if (lo > hi) std::swap(lo, hi);
      match |= c >= lo && c <= hi;
      i += 3;
    } else {
      match |= p[i] == c;
      ++i;
    }
  }
  return negate ? !match : match;
}

bool glob(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
      continue;
    }
    bool ok = false;
    size_t next = pi;
    if (pi < p.size()) {
      if (p[pi] == '?') {
        ok = true;
        next = pi + 1;
      } else if (p[pi] == '[') {
        size_t j = pi + 1;
        ok = class_match(p, j, s[si]);
        next = j < p.size() ? j + 1 : j;
      } else if (p[pi] == '\\' && pi + 1 < p.size()) {
        ok = p[pi + 1] == s[si];
        next = pi + 2;
      } else {
        ok = p[pi] == s[si];
        next = pi + 1;
      }
    }
    if (ok) {
      pi = next;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

// ---- RESP ------------------------------------------------------------------------------

class RespSubscription final : public Subscription {
 public:
  RespSubscription(int fd, client::ParserLimits limits) : fd_(fd), parser_(limits) {}
  ~RespSubscription() override { ::close(fd_); }

  // Sends AUTH (if asked), SUBSCRIBE and PSUBSCRIBE, and waits for every confirmation.
  client::Status start(const client::ConnectionOptions& o, const std::vector<std::string>& channels,
                       const std::vector<std::string>& patterns) {
    const auto deadline = Clock::now() + o.connect_timeout;
    if (!o.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!o.username.empty()) auth.push_back(o.username);
      auth.push_back(o.password);
      if (auto st = send(auth, deadline); !st) return st;
      auto r = read_reply(deadline);
      if (!r) return std::unexpected(r.error());
      if (r->is_error()) return make_error(client::Errc::kServerError, "AUTH refused: " + r->str);
    }
    size_t expected = 0;
    if (!channels.empty()) {
      std::vector<std::string> cmd{"SUBSCRIBE"};
      cmd.insert(cmd.end(), channels.begin(), channels.end());
      if (auto st = send(cmd, deadline); !st) return st;
      expected += channels.size();
    }
    if (!patterns.empty()) {
      std::vector<std::string> cmd{"PSUBSCRIBE"};
      cmd.insert(cmd.end(), patterns.begin(), patterns.end());
      if (auto st = send(cmd, deadline); !st) return st;
      expected += patterns.size();
    }
    while (expected > 0) {
      auto r = read_reply(deadline);
      if (!r) return std::unexpected(r.error());
      if (r->is_error()) return make_error(client::Errc::kServerError, "subscription refused: " + r->str);
      auto kind = classify(*r);
      if (!kind) return std::unexpected(kind.error());
      if (*kind == Kind::kConfirmation) --expected;
    }
    return {};
  }

  Result<std::optional<ChannelMessage>> next(std::chrono::milliseconds timeout) override {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (!ready_.empty()) {
        auto m = std::move(ready_.front());
        ready_.pop_front();
        return std::optional<ChannelMessage>(std::move(m));
      }
      auto r = read_reply(deadline);
      if (!r) {
        if (r.error().code == client::Errc::kTimeout) return std::optional<ChannelMessage>();
        return std::unexpected(r.error());
      }
      if (r->is_error()) return make_error(client::Errc::kServerError, "the server ended the subscription: " + r->str);
      if (auto kind = classify(*r); !kind) return std::unexpected(kind.error());
    }
  }

 private:
  enum class Kind { kMessage, kConfirmation };

  // A message goes to ready_; a (p)subscribe confirmation is reported; anything else is an error.
  Result<Kind> classify(Reply& r) {
    const bool array = r.type == ReplyType::kArray || r.type == ReplyType::kPush;
    if (!array || r.elements.empty() || !r.elements[0].is_string())
      return make_error(client::Errc::kProtocol, "pub/sub: expected a message, got " + r.debug_string());
    const std::string& what = r.elements[0].str;
    auto& e = r.elements;
    if (what == "message" && e.size() == 3) {
      ready_.push_back(ChannelMessage{std::move(e[1].str), std::string(), std::move(e[2].str)});
      return Kind::kMessage;
    }
    if (what == "pmessage" && e.size() == 4) {
      ready_.push_back(ChannelMessage{std::move(e[2].str), std::move(e[1].str), std::move(e[3].str)});
      return Kind::kMessage;
    }
    if ((what == "subscribe" || what == "psubscribe") && e.size() == 3) return Kind::kConfirmation;
    return make_error(client::Errc::kProtocol, "pub/sub: unexpected " + r.debug_string());
  }

  // Writes a command, waiting for room at most until `deadline` (kTimeout after it).
  client::Status send(const std::vector<std::string>& args, Clock::time_point deadline) {
    std::string out;
    client::encode_command(out, std::span<const std::string>(args));
    size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::send(fd_, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return make_error(client::Errc::kTimeout, "pub/sub: the server takes no more bytes (send timed out)");
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
        continue;
      }
      if (n <= 0) return make_error(client::Errc::kIoError, std::string("pub/sub: send: ") + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
    return {};
  }

  // One reply, reading until it is complete or `deadline` passes (kTimeout).
  Result<Reply> read_reply(Clock::time_point deadline) {
    for (;;) {
      Reply r;
      switch (parser_.next(r)) {
        case ReplyParser::Status::kReply: return r;
        case ReplyParser::Status::kError:
          return make_error(client::Errc::kProtocol, "pub/sub: " + parser_.error());
        case ReplyParser::Status::kNeedMore: break;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left, 1 << 30))));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) return make_error(client::Errc::kTimeout, "pub/sub: nothing arrived in time");
      char* buf = parser_.prepare(64 * 1024);
      ssize_t n = ::recv(fd_, buf, 64 * 1024, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        parser_.commit(0);
        continue;
      }
      if (n <= 0) {
        parser_.commit(0);
        return make_error(client::Errc::kIoError,
                          n == 0 ? std::string("pub/sub: the server closed the connection")
                                 : std::string("pub/sub: recv: ") + std::strerror(errno));
      }
      parser_.commit(static_cast<size_t>(n));
    }
  }

  int fd_;
  ReplyParser parser_;
  std::deque<ChannelMessage> ready_;
};

// A non-blocking TCP connection to `ep` within `timeout`.
Result<int> dial(const client::Endpoint& ep, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(ep.port);
  if (int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return make_error(client::Errc::kIoError, "pub/sub: cannot resolve " + ep.host + ": " + ::gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        rc = 0;
      } else {
        why = rc == 0 ? "connect timed out" : std::strerror(err ? err : errno);
        rc = -1;
      }
    } else if (rc < 0) {
      why = std::strerror(errno);
    }
    if (rc == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return make_error(client::Errc::kIoError, "pub/sub: cannot connect to " + ep.to_string() + ": " + why);
}

class RespChannels final : public Channels {
 public:
  RespChannels(keel::Client& c, client::Endpoint ep, client::ConnectionOptions o)
      : client_(c), ep_(std::move(ep)), o_(std::move(o)) {}

  Result<int64_t> publish(const std::string& channel, std::string_view message) override {
    auto r = client_.checked({"PUBLISH", channel, std::string(message)});
    if (!r) return std::unexpected(r.error());
    if (r->type != ReplyType::kInteger) return std::unexpected(client::reply_error(*r));
    return r->integer;
  }

  Result<std::unique_ptr<Subscription>> subscribe(const std::vector<std::string>& channels,
                                                  const std::vector<std::string>& patterns) override {
    if (channels.empty() && patterns.empty())
      return make_error(client::Errc::kInvalidArgument, "pub/sub: subscribe to at least one channel or pattern");
    auto fd = dial(ep_, o_.connect_timeout);
    if (!fd) return std::unexpected(fd.error());
    auto s = std::make_unique<RespSubscription>(*fd, o_.limits);
    if (auto st = s->start(o_, channels, patterns); !st) return std::unexpected(st.error());
    return std::unique_ptr<Subscription>(std::move(s));
  }

 private:
  keel::Client& client_;
  client::Endpoint ep_;
  client::ConnectionOptions o_;
};

// ---- in process -------------------------------------------------------------------------

struct LocalHub;

class LocalSubscription final : public Subscription {
 public:
  LocalSubscription(std::shared_ptr<LocalHub> hub, std::vector<std::string> channels, std::vector<std::string> patterns)
      : hub_(std::move(hub)), channels_(std::move(channels)), patterns_(std::move(patterns)) {}
  ~LocalSubscription() override;
  Result<std::optional<ChannelMessage>> next(std::chrono::milliseconds timeout) override;

  // Called by the hub under its lock.
  void offer(const std::string& channel, std::string_view data, size_t max_buffered, int64_t& received);
  uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  std::shared_ptr<LocalHub> hub_;
  std::vector<std::string> channels_, patterns_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ChannelMessage> queue_;
  uint64_t dropped_ = 0;
};

struct LocalHub {
  std::mutex mu;
  std::vector<LocalSubscription*> subs;
  size_t max_buffered;
};

LocalSubscription::~LocalSubscription() {
  std::lock_guard lock(hub_->mu);
  std::erase(hub_->subs, this);
}

void LocalSubscription::offer(const std::string& channel, std::string_view data, size_t max_buffered,
                              int64_t& received) {
  std::string pattern;
  bool match = std::find(channels_.begin(), channels_.end(), channel) != channels_.end();
  for (const auto& p : patterns_)
    if (!match && glob(p, channel)) {
      match = true;
      pattern = p;
    }
  if (!match) return;
  ++received;
  std::lock_guard lock(mu_);
  if (queue_.size() >= max_buffered) {
    ++dropped_;
    return;
  }
  queue_.push_back(ChannelMessage{channel, std::move(pattern), std::string(data)});
  cv_.notify_one();
}

Result<std::optional<ChannelMessage>> LocalSubscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); });
  if (queue_.empty()) return std::optional<ChannelMessage>();
  auto m = std::move(queue_.front());
  queue_.pop_front();
  return std::optional<ChannelMessage>(std::move(m));
}

class LocalChannels final : public Channels {
 public:
  explicit LocalChannels(size_t max_buffered) : hub_(std::make_shared<LocalHub>()) { hub_->max_buffered = max_buffered; }

  Result<int64_t> publish(const std::string& channel, std::string_view message) override {
    std::lock_guard lock(hub_->mu);
    int64_t received = 0;
    for (auto* s : hub_->subs) s->offer(channel, message, hub_->max_buffered, received);
    return received;
  }

  Result<std::unique_ptr<Subscription>> subscribe(const std::vector<std::string>& channels,
                                                  const std::vector<std::string>& patterns) override {
    if (channels.empty() && patterns.empty())
      return make_error(client::Errc::kInvalidArgument, "pub/sub: subscribe to at least one channel or pattern");
    auto s = std::make_unique<LocalSubscription>(hub_, channels, patterns);
    std::lock_guard lock(hub_->mu);
    hub_->subs.push_back(s.get());
    return std::unique_ptr<Subscription>(std::move(s));
  }

 private:
  std::shared_ptr<LocalHub> hub_;
};

}  // namespace

std::string encode_envelope(std::string_view payload, const Headers& headers) {
  std::string out(kEnvelopeMagic);
  put_varint(out, headers.size());
  for (const auto& [k, v] : headers) {
    put_varint(out, k.size());
    out += k;
    put_varint(out, v.size());
    out += v;
  }
  out += payload;
  return out;
}

bool decode_envelope(std::string_view message, std::string& payload, Headers& headers) {
  headers.clear();
  if (!message.starts_with(kEnvelopeMagic)) {
    payload.assign(message);
    return true;
  }
  message.remove_prefix(kEnvelopeMagic.size());
  uint64_t n = 0;
  if (!get_varint(message, n) || n > message.size() / 2) return false;
  for (uint64_t i = 0; i < n; ++i) {
    std::string k, v;
    if (!get_bytes(message, k) || !get_bytes(message, v)) return false;
    headers.emplace_back(std::move(k), std::move(v));
  }
  payload.assign(message);
  return true;
}

std::unique_ptr<Channels> resp_channels(keel::Client& client, client::Endpoint subscribe_to,
                                        client::ConnectionOptions connection) {
  return std::make_unique<RespChannels>(client, std::move(subscribe_to), std::move(connection));
}

std::unique_ptr<Channels> local_channels(size_t max_buffered) {
  return std::make_unique<LocalChannels>(max_buffered == 0 ? 1 : max_buffered);
}

uint64_t local_dropped(const Subscription& s) {
  auto* l = dynamic_cast<const LocalSubscription*>(&s);
  return l ? l->dropped() : 0;
}

}  // namespace keel::messaging
