// The peer transport: keel nodes talk over TCP in frames (cluster/wire.h).
//
// With TransportOptions::tls, every connection is mutual TLS first (the handshake inside the
// same deadlines), and the certificate at the other end must name the peer's node id.
//
// Each node keeps ONE outbound connection per peer and sends only on it; it receives on the
// connections peers opened to it (the acceptor on cluster.peer_port). A connection starts with
// a handshake: the dialer sends Hello (cluster id, its node id); the acceptor answers Hello or
// Reject (wrong cluster id, unknown wire version, its own id) and closes on Reject. A broken
// outbound connection is redialled with exponential backoff (backoff_min_ms doubling up to
// backoff_max_ms, with jitter from the runtime's random source).
//
// A partition that silently drops packets breaks nothing TCP can see: writes keep landing in
// the socket buffer and the kernel retransmits with a doubling backoff, so after the heal the
// old connection could stay mute for as long as the partition lasted. Three things bound that:
//   - reconnect(peer): the owner (the driver, when its failure detector suspects the peer)
//     closes the outbound link and redials it with the usual backoff;
//   - every dial (resolve, connect, Hello exchange) has a deadline, connect_timeout_ms, so a
//     SYN into a black hole is retried within ~connect_timeout_ms + backoff_max_ms of a heal;
//   - peer sockets set TCP_USER_TIMEOUT (unacknowledged data older than user_timeout_ms
//     breaks the connection) and TCP keepalive, so a link that is blackholed in one direction
//     only, or an inbound connection whose FIN was lost, fails on its own. (A new inbound
//     connection does not close older ones from the same peer: after a heal, a dial the peer
//     gave up on can arrive later than its live one, and would then replace the live link.)
//
// Send queues are bounded (frames and bytes). When a peer's queue is full, new frames to it
// are dropped and counted: the consensus core tolerates loss (it re-broadcasts while stalled),
// and an unbounded queue to a dead peer would grow without limit. Frames queued while a peer
// is disconnected are sent once it is back.
//
// Threading: every method must be called on the io_context's thread (the cluster driver's);
// handlers are invoked there too. Include only from .cpp files (pulls in Asio).
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "cluster/peer_address.h"
#include "cluster/wire.h"

namespace keel::security {
class PeerTls;
}

namespace keel::cluster {

struct TransportOptions {
  std::string cluster_id = "keel";
  uint32_t node_id = 1;
  std::string bind = "127.0.0.1";
  int port = 9380;                    // 0 = any free port
  std::vector<PeerAddress> peers;     // the other members (self excluded)
  size_t max_queue_frames = 16384;    // per peer
  size_t max_queue_bytes = 64u << 20; // per peer
  int64_t backoff_min_ms = 50;
  int64_t backoff_max_ms = 1000;
  int64_t handshake_timeout_ms = 3000;  // an inbound connection must send its Hello within this
  int64_t connect_timeout_ms = 500;     // a dial: resolve + connect + Hello exchange
  int64_t user_timeout_ms = 5000;       // TCP_USER_TIMEOUT and keepalive bound; 0 = kernel default
  uint64_t config_epoch = 0;
  std::vector<uint32_t> initial_members;  // Hello::initial_members (empty: joining)
  WireLimits limits;
  // Mutual TLS on every link (tls.peer = yes), null = plaintext. Each connection, both ways,
  // is TLS with a certificate from the cluster CA naming the node at the other end
  // (spiffe://<cluster_id>/node/<id>): the node dialled, or the node the dialler's Hello
  // claims to be. Refusals are logged and counted in `tls`.
  std::shared_ptr<security::PeerTls> tls;
};

struct PeerLinkStats {
  uint32_t id = 0;
  std::string address;
  bool connected = false;      // our outbound link is up (handshake done)
  bool inbound = false;        // the peer has a link to us
  uint64_t frames_sent = 0;
  uint64_t frames_received = 0;
  uint64_t frames_dropped = 0; // queue full
  uint64_t frames_oversized = 0;  // payload above limits.max_payload_bytes (logged once per peer)
  uint64_t connects = 0;       // successful handshakes on the outbound link
  uint64_t connect_failures = 0;
  uint64_t redials = 0;        // links closed by reconnect() (peer suspected)
  size_t queue_frames = 0;
  size_t queue_bytes = 0;
  std::string last_error;
};

class PeerTransport {
 public:
  // `from` is the handshaken node id of the connection the frame arrived on.
  using MessageHandler = std::function<void(uint32_t from, MsgType type, std::string payload)>;
  // Called when an outbound link goes up (true) or down (false).
  using LinkHandler = std::function<void(uint32_t peer, bool up)>;

  PeerTransport(boost::asio::io_context& io, TransportOptions opt, MessageHandler on_message,
                LinkHandler on_link = {});
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Binds the acceptor and starts dialling. Returns the bound peer port.
  Result<int> start();
  // Queues a frame to `to`. Returns false (and counts a drop) if the queue is full or `to` is
  // not a configured peer; a payload above the frame limit is refused, counted as oversized
  // and logged (once per peer) with its size.
  bool send(uint32_t to, MsgType type, std::string_view payload);
  // Adds a peer at run time (reconfiguration). No-op if known at this address; a known peer
  // at another address (it restarted elsewhere) is redialled there.
  void add_peer(const PeerAddress& p);
  void remove_peer(uint32_t id);
  // Closes the outbound link to `peer` if it is up (recording `why` as its last error) and
  // redials it after the backoff. A dial in progress is left alone (it has its own deadline).
  // Returns whether a link was closed.
  bool reconnect(uint32_t peer, std::string why);
  // Closes every connection and stops dialling. Idempotent.
  void stop();

  std::vector<PeerLinkStats> stats() const;
  bool connected(uint32_t peer) const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::cluster
