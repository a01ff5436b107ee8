#include "runtime/cluster/peers.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <tuple>
#include <utility>
#include <map>
#include <set>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "base/assert.h"
#include "base/random.h"
#include "security/identity.h"
#include "security/tls.h"
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kPeers); }
}  // namespace

namespace keel::cluster {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kTok = asio::as_tuple(use_awaitable);

// Peer sockets fail on their own when the other side stops acknowledging: TCP_USER_TIMEOUT
// bounds how long sent data may stay unacknowledged, keepalive probes an idle link (an inbound
// link carries nothing back to its dialer after the handshake).
void tune_peer_socket(tcp::socket& s, int64_t user_timeout_ms) {
  boost::system::error_code ig;
  s.set_option(tcp::no_delay(true), ig);
  if (user_timeout_ms <= 0) return;
  s.set_option(asio::socket_base::keep_alive(true), ig);
  int idle_s = static_cast<int>(std::max<int64_t>(1, user_timeout_ms / 5000));
  int count = 4;
  int interval_s = static_cast<int>(std::max<int64_t>(1, user_timeout_ms / 1000 / count));
  s.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPIDLE>(idle_s), ig);
  s.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPINTVL>(interval_s), ig);
  s.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPCNT>(count), ig);
  s.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_USER_TIMEOUT>(static_cast<int>(user_timeout_ms)), ig);
}

// One peer connection: a TCP socket, and over it a TLS stream when tls.peer is on. Timers
// and close() act on the socket in both cases. The TLS stream keeps the context it was made
// with (a reload gives later connections a new one).
struct Conn {
  tcp::socket sock;
  std::shared_ptr<asio::ssl::context> ctx;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
  explicit Conn(asio::io_context& io) : sock(io) {}
  explicit Conn(tcp::socket s) : sock(std::move(s)) {}
  bool is_open() const { return sock.is_open(); }
  void close() {
    boost::system::error_code ig;
    sock.close(ig);
  }
  awaitable<std::tuple<boost::system::error_code, size_t>> read_some(asio::mutable_buffer b) {
    if (tls) co_return co_await tls->async_read_some(b, kTok);
    co_return co_await sock.async_read_some(b, kTok);
  }
  awaitable<std::tuple<boost::system::error_code, size_t>> write(asio::const_buffer b) {
    if (tls) co_return co_await asio::async_write(*tls, b, kTok);
    co_return co_await asio::async_write(sock, b, kTok);
  }
};

std::string tls_reason(const boost::system::error_code& ec) {
  std::string r = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    // OpenSSL's reason alone ("certificate verify failed", "tlsv1 alert unknown ca", ...).
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
    const char* last = std::strrchr(buf, ':');
    if (last && last[1]) r = last + 1;
  }
  return r;
}
}  // namespace

struct PeerTransport::Impl : std::enable_shared_from_this<Impl> {
  struct Peer {
    PeerAddress addr;
    // Encoded frames, whole and in order, appended where they are encoded (no copy per frame):
    // the writer takes all of it at once and hands back its emptied buffer.
    std::string queue;
    size_t queue_frames = 0;
    std::shared_ptr<Conn> sock;  // outbound, when connected
    std::unique_ptr<asio::steady_timer> wake;
    bool connected = false;
    bool removed = false;
    int inbound = 0;
    PeerLinkStats st;
  };

  asio::io_context& io;
  TransportOptions opt;
  MessageHandler on_message;
  LinkHandler on_link;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::map<uint32_t, std::shared_ptr<Peer>> peers;
  std::set<tcp::socket*> inbound_socks;
  bool stopping = false;
  SeededRandom rng{system_seed()};

  Impl(asio::io_context& i, TransportOptions o, MessageHandler m, LinkHandler l)
      : io(i), opt(std::move(o)), on_message(std::move(m)), on_link(std::move(l)) {}

  std::string hello_frame() const {
    Hello h{opt.cluster_id, opt.node_id, kWireVersion, opt.config_epoch, opt.initial_members};
    return encode_frame(MsgType::kHello, encode_hello(h), opt.limits);
  }

  // Reads one frame with a deadline; used only during the handshake.
  awaitable<Result<Frame>> read_one(std::shared_ptr<Conn> sp, FrameDecoder& dec) {
    Conn& s = *sp;
    asio::steady_timer deadline(io);
    deadline.expires_after(std::chrono::milliseconds(opt.handshake_timeout_ms));
    // The timer's handler may run after this coroutine returned: it holds its state by value.
    auto fired = std::make_shared<int>(0);  // 0 pending, 1 timed out, 2 finished
    deadline.async_wait([sp, fired](const boost::system::error_code& ec) {
      if (!ec && *fired == 0) {
        *fired = 1;
        sp->close();
      }
    });
    char buf[4096];
    for (;;) {
      auto f = dec.next();
      if (!f) co_return std::unexpected(f.error());
      if (*f) {
        if (*fired == 0) *fired = 2;
        deadline.cancel();
        co_return std::move(**f);
      }
      auto [ec, n] = co_await s.read_some(asio::buffer(buf));
      if (ec) {
        bool timed_out = *fired == 1;
        *fired = 2;
        deadline.cancel();
        co_return make_error(timed_out ? Errc::kTimeout : Errc::kIoError,
                             timed_out ? fmt::format("handshake timed out after {} ms", opt.handshake_timeout_ms)
                                       : "connection closed during handshake: " + ec.message());
      }
      dec.feed(std::string_view(buf, n));
    }
  }

  int64_t backoff_ms(int attempt) {
    int64_t b = opt.backoff_min_ms;
    for (int i = 0; i < attempt && b < opt.backoff_max_ms; ++i) b *= 2;
    b = std::min(b, opt.backoff_max_ms);
    return b / 2 + static_cast<int64_t>(rng.uniform(static_cast<uint64_t>(b / 2 + 1)));
  }

  void set_connected(Peer& p, bool up) {
    if (p.connected == up) return;
    p.connected = up;
    p.st.connected = up;
    if (up) ++p.st.connects;
    if (on_link && !stopping) on_link(p.addr.id, up);
  }

  awaitable<void> outbound(std::shared_ptr<Peer> p) {
    auto self = shared_from_this();
    int attempt = 0;
    asio::steady_timer backoff(io);
    while (!stopping && !p->removed) {
      if (attempt > 0) {
        backoff.expires_after(std::chrono::milliseconds(backoff_ms(attempt - 1)));
        co_await backoff.async_wait(kTok);
        if (stopping || p->removed) break;
      }
      ++attempt;
      auto sock = std::make_shared<Conn>(io);
      auto resolver = std::make_shared<tcp::resolver>(io);
      // One deadline for the whole dial: a SYN or a Hello into a black hole must not wait on
      // the kernel's connect timeout (minutes) or its retransmission backoff.
      auto deadline = std::make_shared<asio::steady_timer>(io);
      auto state = std::make_shared<int>(0);  // 0 dialling, 1 timed out, 2 finished
      deadline->expires_after(std::chrono::milliseconds(opt.connect_timeout_ms));
      deadline->async_wait([sock, resolver, state](const boost::system::error_code& ec) {
        if (ec || *state != 0) return;
        *state = 1;
        boost::system::error_code ignore;
        resolver->cancel();
        sock->close();
        (void)ignore;
      });
      auto fail = [&](std::string what) {
        ++p->st.connect_failures;
        p->st.last_error = *state == 1 ? fmt::format("no connection to {}:{} within {} ms (connect_timeout_ms)", p->addr.host,
                                                     p->addr.port, opt.connect_timeout_ms)
                                       : std::move(what);
        *state = 2;
        deadline->cancel();
      };
      auto [rec, results] = co_await resolver->async_resolve(p->addr.host, std::to_string(p->addr.port), kTok);
      if (rec) {
        fail(fmt::format("cannot resolve {}: {}", p->addr.host, rec.message()));
        continue;
      }
      auto [cec, ep] = co_await asio::async_connect(sock->sock, results, kTok);
      if (cec) {
        fail(fmt::format("connect to {}:{}: {}", p->addr.host, p->addr.port, cec.message()));
        continue;
      }
      boost::system::error_code ig;
      tune_peer_socket(sock->sock, opt.user_timeout_ms);
      if (opt.tls) {
        // Mutual TLS: the peer's certificate must chain to the cluster CA (checked in the
        // handshake) and name the node we dialled.
        sock->ctx = opt.tls->client();
        sock->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(sock->sock, *sock->ctx);
        auto [hec] = co_await sock->tls->async_handshake(asio::ssl::stream_base::client, kTok);
        if (hec) {
          if (*state != 1) ++opt.tls->refused_handshake;
          std::string why = fmt::format("TLS handshake with peer {}:{} failed: {}", p->addr.host, p->addr.port, tls_reason(hec));
          if (*state != 1 && why != p->st.last_error) klog().warn("cluster: {}", why);
          fail(std::move(why));
          continue;
        }
        auto id = security::check_node_identity(security::peer_certificate_uris(sock->tls->native_handle()),
                                                opt.cluster_id, p->addr.id);
        if (!id) {
          ++opt.tls->refused_identity;
          std::string why = fmt::format("refused peer {}:{}, dialled as node {}: {}", p->addr.host, p->addr.port,
                                        p->addr.id, id.error().message);
          if (why != p->st.last_error) klog().warn("cluster: {}", why);
          fail(std::move(why));
          continue;
        }
      }
      std::string hello = hello_frame();
      auto [wec, wn] = co_await sock->write(asio::buffer(hello));
      if (wec) {
        fail("handshake write: " + wec.message());
        continue;
      }
      FrameDecoder dec(opt.limits);
      auto reply = co_await read_one(sock, dec);
      if (!reply) {
        fail(reply.error().message);
        continue;
      }
      if (reply->type == MsgType::kReject) {
        fail("peer refused the handshake: " + reply->payload.substr(0, kMaxRejectReasonBytes));
        klog().warn("cluster: peer {} refused our handshake: {}", p->addr.to_string(), p->st.last_error);
        continue;
      }
      auto h = reply->type == MsgType::kHello ? decode_hello(reply->payload)
                                               : Result<Hello>(make_error(Errc::kCorruption, "expected hello"));
      if (!h || h->cluster_id != opt.cluster_id || h->node_id != p->addr.id) {
        fail(!h ? h.error().message
                : fmt::format("peer at {}:{} is node {} of cluster '{}', expected node {} of '{}'", p->addr.host,
                              p->addr.port, h->node_id, h->cluster_id, p->addr.id, opt.cluster_id));
        klog().warn("cluster: {}", p->st.last_error);
        continue;
      }
      if (*state == 1) {  // the deadline closed the socket just as the Hello arrived
        fail("");
        continue;
      }
      *state = 2;
      deadline->cancel();
      if (stopping || p->removed) break;
      int dials = attempt;
      attempt = 0;
      auto up_at = std::chrono::steady_clock::now();
      p->sock = std::move(sock);
      p->st.last_error.clear();
      set_connected(*p, true);
      klog().info("cluster: connected to peer {}", p->addr.to_string());
      // Watch for the peer closing: it never sends on this link after the handshake.
      asio::co_spawn(io, watch_close(p), asio::detached);
      co_await write_loop(*p);
      if (p->sock) p->sock->close();
      p->sock.reset();
      set_connected(*p, false);
      if (!stopping) klog().info("cluster: lost peer {}: {}", p->addr.to_string(), p->st.last_error);
      // A link that did not outlive one maximal backoff keeps the backoff growing: a peer that
      // accepts and drops us at once (or a flapping failure detector) is redialled at most
      // about once per backoff_max_ms, not in a loop.
      bool short_lived = std::chrono::steady_clock::now() - up_at < std::chrono::milliseconds(opt.backoff_max_ms);
      attempt = short_lived ? dials + 1 : 1;
    }
  }

  awaitable<void> watch_close(std::shared_ptr<Peer> p) {
    auto self = shared_from_this();
    std::shared_ptr<Conn> s = p->sock;
    char buf[512];
    for (;;) {
      auto [ec, n] = co_await s->read_some(asio::buffer(buf));
      if (ec) break;
    }
    if (p->sock == s && s->is_open()) {  // not closed by us (reconnect, stop)
      p->st.last_error = "peer closed the connection";
      s->close();
      if (p->wake) p->wake->cancel();
    }
  }

  awaitable<void> write_loop(Peer& p) {
    std::string batch;
    for (;;) {
      if (stopping || p.removed || !p.sock || !p.sock->is_open()) co_return;
      if (p.queue.empty()) {
        p.wake->expires_at(asio::steady_timer::time_point::max());
        co_await p.wake->async_wait(kTok);
        continue;
      }
      // A buffer that held a burst (a snapshot) is not kept once it has been written.
      if (batch.capacity() > (4u << 20)) batch = std::string();
      batch.clear();
      batch.swap(p.queue);
      const size_t frames = std::exchange(p.queue_frames, 0);
      // (GCC 12: no co_await inside a conditional expression.)
      boost::system::error_code ec;
      if (p.sock->tls) {
        auto [wec, n] = co_await asio::async_write(*p.sock->tls, asio::buffer(batch), kTok);
        ec = wec;
      } else {
        auto [wec, n] = co_await asio::async_write(p.sock->sock, asio::buffer(batch), kTok);
        ec = wec;
      }
      if (ec) {
        p.st.last_error = "write: " + ec.message();
        co_return;  // the frames of this batch are lost; consensus re-sends what matters
      }
      p.st.frames_sent += frames;
    }
  }

  // The TLS handshake of an inbound connection, within handshake_timeout_ms. Returns what
  // went wrong ("" when it succeeded).
  awaitable<std::string> accept_tls(std::shared_ptr<Conn> sp) {
    sp->ctx = opt.tls->server();
    sp->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(sp->sock, *sp->ctx);
    asio::steady_timer deadline(io);
    deadline.expires_after(std::chrono::milliseconds(opt.handshake_timeout_ms));
    auto fired = std::make_shared<int>(0);
    deadline.async_wait([sp, fired](const boost::system::error_code& ec) {
      if (!ec && *fired == 0) {
        *fired = 1;
        sp->close();
      }
    });
    auto [hec] = co_await sp->tls->async_handshake(asio::ssl::stream_base::server, kTok);
    const bool timed_out = *fired == 1;
    *fired = 2;
    deadline.cancel();
    if (!hec) co_return std::string();
    co_return timed_out ? fmt::format("no TLS handshake within {} ms", opt.handshake_timeout_ms)
                        : "TLS handshake failed: " + tls_reason(hec);
  }

  awaitable<void> inbound(std::shared_ptr<Conn> sp) {
    auto self = shared_from_this();
    Conn& sock = *sp;
    inbound_socks.insert(&sock.sock);
    boost::system::error_code ig;
    tune_peer_socket(sock.sock, opt.user_timeout_ms);
    std::string remote = "?";
    if (auto ep = sock.sock.remote_endpoint(ig); !ig) remote = fmt::format("{}:{}", ep.address().to_string(), ep.port());
    if (opt.tls) {
      std::string why = co_await accept_tls(sp);
      if (!why.empty()) {
        ++opt.tls->refused_handshake;
        klog().warn("cluster: refused a peer connection from {}: {} (tls.peer = yes: peers need a certificate "
                     "from tls.ca_cert_file naming their node)",
                     remote, why);
        sock.close();
        inbound_socks.erase(&sock.sock);
        co_return;
      }
    }
    FrameDecoder dec(opt.limits);
    auto first = co_await read_one(sp, dec);
    uint32_t from = 0;
    std::shared_ptr<Peer> peer;
    if (first) {
      std::string reject;
      auto h = first->type == MsgType::kHello ? decode_hello(first->payload)
                                               : Result<Hello>(make_error(Errc::kInvalidArgument, fmt::format("expected hello as the first frame, got {}", msg_type_name(first->type))));
      Status identity;
      if (h && opt.tls)
        identity = security::check_node_identity(security::peer_certificate_uris(sock.tls->native_handle()),
                                                 opt.cluster_id, h->node_id);
      if (!h) reject = h.error().message;
      else if (!identity) {
        ++opt.tls->refused_identity;
        reject = fmt::format("node {} is refused, its Hello and its certificate disagree: {}", h->node_id,
                             identity.error().message);
      } else if (h->cluster_id != opt.cluster_id)
        reject = fmt::format("cluster id '{}' does not match this node's cluster id '{}'", h->cluster_id, opt.cluster_id);
      else if (h->node_id == opt.node_id)
        reject = fmt::format("node id {} is this node's own id; every member needs its own id", h->node_id);
      else if (h->wire_version != kWireVersion)
        reject = fmt::format("wire version {} is not supported (this node speaks {})", h->wire_version, kWireVersion);
      else if (h->config_epoch == 0 && opt.config_epoch == 0 && !h->initial_members.empty() &&
               !opt.initial_members.empty() && h->initial_members != opt.initial_members)
        reject = fmt::format(
            "node {} was started with members {} but this node (node {}) with members {}; every member of a new "
            "cluster must list the same cluster.peers (a node joining later starts with cluster.join = yes)",
            h->node_id, fmt::join(h->initial_members, ","), opt.node_id, fmt::join(opt.initial_members, ","));
      if (!reject.empty()) {
        klog().warn("cluster: refused a peer connection from {}: {}", remote, reject);
        std::string f = encode_frame(MsgType::kReject, reject.substr(0, kMaxRejectReasonBytes), opt.limits);
        co_await sock.write(asio::buffer(f));
      } else {
        from = h->node_id;
        std::string f = hello_frame();
        auto [wec, wn] = co_await sock.write(asio::buffer(f));
        if (wec) from = 0;
      }
    }
    if (from != 0) {
      auto it = peers.find(from);
      if (it != peers.end()) {
        peer = it->second;
        ++peer->inbound;
        peer->st.inbound = true;
      }
      char buf[64 * 1024];
      bool ok = true;
      while (ok && !stopping) {
        for (;;) {
          auto f = dec.next();
          if (!f) {
            klog().warn("cluster: closing the link from node {}: {}", from, f.error().message);
            ok = false;
            break;
          }
          if (!*f) break;
          if (peer) ++peer->st.frames_received;
          if ((*f)->type == MsgType::kHello || (*f)->type == MsgType::kReject) continue;
          if (on_message) on_message(from, (*f)->type, std::move((*f)->payload));
        }
        if (!ok) break;
        // (GCC 12: no co_await inside a conditional expression.)
        boost::system::error_code ec;
        size_t n = 0;
        if (sock.tls) {
          auto [rec, rn] = co_await sock.tls->async_read_some(asio::buffer(buf), kTok);
          ec = rec;
          n = rn;
        } else {
          auto [rec, rn] = co_await sock.sock.async_read_some(asio::buffer(buf), kTok);
          ec = rec;
          n = rn;
        }
        if (ec) break;
        dec.feed(std::string_view(buf, n));
      }
      if (peer && --peer->inbound == 0) peer->st.inbound = false;
    }
    sock.close();
    inbound_socks.erase(&sock.sock);
  }

  awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, sock] = co_await acceptor->async_accept(kTok);
      if (stopping) co_return;
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        continue;
      }
      asio::co_spawn(io, inbound(std::make_shared<Conn>(std::move(sock))), asio::detached);
    }
  }

  void start_peer(const PeerAddress& a) {
    auto p = std::make_shared<Peer>();
    p->addr = a;
    p->st.id = a.id;
    p->st.address = fmt::format("{}:{}", a.host, a.port);
    p->wake = std::make_unique<asio::steady_timer>(io);
    peers[a.id] = p;
    asio::co_spawn(io, outbound(p), asio::detached);
  }
};

PeerTransport::PeerTransport(asio::io_context& io, TransportOptions opt, MessageHandler on_message, LinkHandler on_link)
    : impl_(std::make_shared<Impl>(io, std::move(opt), std::move(on_message), std::move(on_link))) {}

PeerTransport::~PeerTransport() { stop(); }

Result<int> PeerTransport::start() {
  auto& im = *impl_;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(im.opt.bind, ec);
  if (ec) return make_error(Errc::kInvalidArgument, fmt::format("cluster: bind address '{}' is not an IP address", im.opt.bind));
  im.acceptor = std::make_unique<tcp::acceptor>(im.io);
  tcp::endpoint ep(addr, static_cast<unsigned short>(im.opt.port));
  im.acceptor->open(ep.protocol(), ec);
  if (!ec) im.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor->bind(ep, ec);
  if (!ec) im.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::kIoError, fmt::format("cannot listen for peers on {}:{}: {}", im.opt.bind, im.opt.port, ec.message()));
  int port = im.acceptor->local_endpoint().port();
  asio::co_spawn(im.io, im.accept_loop(), asio::detached);
  for (auto& a : im.opt.peers) {
    KEEL_ASSERT(a.id != im.opt.node_id);
    im.start_peer(a);
  }
  return port;
}

bool PeerTransport::send(uint32_t to, MsgType type, std::string_view payload) {
  auto& im = *impl_;
  auto it = im.peers.find(to);
  if (it == im.peers.end() || im.stopping) return false;
  auto& p = *it->second;
  size_t size = kFrameHeaderBytes + payload.size() + kFrameTrailerBytes;
  if (payload.size() > im.opt.limits.max_payload_bytes) {
    // Never silent: a frame this large would be refused by every receiver.
    if (p.st.frames_oversized++ == 0)
      klog().error("cluster: a {} frame of {} bytes to peer {} exceeds the frame limit of {} bytes; not sent "
                    "(logged once per peer, counted in frames_oversized)",
                    msg_type_name(type), payload.size(), to, im.opt.limits.max_payload_bytes);
    return false;
  }
  if (p.queue_frames >= im.opt.max_queue_frames || p.queue.size() + size > im.opt.max_queue_bytes) {
    ++p.st.frames_dropped;
    return false;
  }
  const bool was_empty = p.queue.empty();
  append_frame(p.queue, type, payload, im.opt.limits);
  ++p.queue_frames;
  if (was_empty && p.wake) p.wake->cancel();
  return true;
}

void PeerTransport::add_peer(const PeerAddress& p) {
  if (p.id == impl_->opt.node_id || impl_->stopping) return;
  if (auto it = impl_->peers.find(p.id); it != impl_->peers.end()) {
    if (it->second->addr == p) return;
    // The peer restarted on another port (a data plane listening on port 0): frames queued
    // for the old address are dropped with the old link, as if it had been lost.
    remove_peer(p.id);
  }
  impl_->start_peer(p);
}

void PeerTransport::remove_peer(uint32_t id) {
  auto it = impl_->peers.find(id);
  if (it == impl_->peers.end()) return;
  auto p = it->second;
  impl_->peers.erase(it);
  p->removed = true;
  boost::system::error_code ig;
  if (p->sock) p->sock->close();
  if (p->wake) p->wake->cancel();
}

bool PeerTransport::reconnect(uint32_t peer, std::string why) {
  auto it = impl_->peers.find(peer);
  if (it == impl_->peers.end() || impl_->stopping) return false;
  auto& p = *it->second;
  if (!p.connected || !p.sock) return false;
  p.st.last_error = std::move(why);
  ++p.st.redials;
  boost::system::error_code ig;
  p.sock->close();
  if (p.wake) p.wake->cancel();
  impl_->set_connected(p, false);  // down from now on; the outbound loop redials after the backoff
  return true;
}

void PeerTransport::stop() {
  auto& im = *impl_;
  if (im.stopping) return;
  im.stopping = true;
  boost::system::error_code ig;
  if (im.acceptor) im.acceptor->close(ig);
  for (auto& [id, p] : im.peers) {
    if (p->sock) p->sock->close();
    if (p->wake) p->wake->cancel();
  }
  for (auto* s : im.inbound_socks) s->close(ig);
}

std::vector<PeerLinkStats> PeerTransport::stats() const {
  std::vector<PeerLinkStats> out;
  for (auto& [id, p] : impl_->peers) {
    auto s = p->st;
    s.queue_frames = p->queue_frames;
    s.queue_bytes = p->queue.size();
    out.push_back(std::move(s));
  }
  return out;
}

bool PeerTransport::connected(uint32_t peer) const {
  auto it = impl_->peers.find(peer);
  return it != impl_->peers.end() && it->second->connected;
}

}  // namespace keel::cluster
