// The audit stream (docs/security.md, "Audit stream"): every audit event (security/audit.h)
// is also appended, as the node itself, to a stream in the keyspace (audit.stream, default
// "keel:audit"), so that an operator reads the events of every node with XRANGE / XREAD /
// XREVRANGE on any node, or GET /v1/streams/{name}. The stream is an ordinary key: the
// distributed hash map replicates it, moves it and encrypts it at rest like any other; this
// class only queues events and issues XADDs through the node's command path (Runner).
//
// Never in the way of the request that caused the event: push() only queues (bounded by
// `queue`, the event being appended included; a full queue drops the event and counts it) and
// hands the work to `post`, which runs it later on the node's own thread. One XADD is in flight at
// a time, so entries keep the order the events were pushed in; each trims the stream to about
// `max_len` entries (MAXLEN ~). A refused or failed XADD (no quorum, a key of another type, a
// timeout) is counted and logged once per run of failures; the audit log line was written anyway.
//
// Each entry's fields: event, node (the node's id), ts_ms (when the event was emitted), then
// trace_id when the event belongs to a traced request, then the event's own fields, each value
// cut to audit::kMaxFieldBytes and never a secret (the callers' rule, security/audit.h).
//
// Thread-safe. Keep it in a shared_ptr (the callbacks it hands out hold one).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "security/audit.h"

namespace keel::security {

struct AuditStreamOptions {
  std::string key = "keel:audit";  // the stream's key; REQUIRES: not empty
  uint64_t max_len = 100000;       // XADD ... MAXLEN ~ max_len; REQUIRES: > 0
  size_t queue = 10000;            // events not appended yet (the one in flight included); more are
                                   // dropped. REQUIRES: > 0
  std::string node;                // the "node" field of every entry
};

class AuditStream : public std::enable_shared_from_this<AuditStream> {
 public:
  using Done = std::function<void(std::string reply)>;
  // Runs one command as the node itself (no user: no ACL check, no audit event, no rate
  // limit), routed and forwarded like a client's, and hands its RESP2 reply to `done`, on any
  // thread, possibly before returning.
  using Runner = std::function<void(std::vector<std::string> argv, Done done)>;
  // Runs `fn` later on a thread of the node's, never inline.
  using Post = std::function<void(std::function<void()> fn)>;
  // Milliseconds since the epoch (the ts_ms field).
  using Now = std::function<int64_t()>;

  static std::shared_ptr<AuditStream> create(AuditStreamOptions opt, Runner run, Post post,
                                             Now now);

  // Any thread, any locks held: queues the event (and schedules its XADD), or drops and counts
  // it when the queue is full or the stream is stopped. Never blocks on I/O.
  void push(audit::Record r);
  // No XADD starts after this; queued events are dropped (and counted). An XADD in flight may
  // still complete.
  void stop();

  struct Stats {
    uint64_t appended = 0;  // XADDs that succeeded
    uint64_t dropped = 0;   // events never sent: the queue was full, or the stream stopped
    uint64_t failed = 0;    // XADDs answered with an error
    uint64_t queued = 0;    // not appended yet: waiting, or in flight
  };
  Stats stats() const;
  const AuditStreamOptions& options() const { return opt_; }

  // Pure: the XADD for one event at `ts_ms`.
  static std::vector<std::string> command(const AuditStreamOptions& opt, const audit::Record& r,
                                          int64_t ts_ms);

 private:
  struct Item {
    audit::Record record;
    int64_t ts_ms = 0;
  };
  AuditStream(AuditStreamOptions opt, Runner run, Post post, Now now);
  void pump();                              // on a posted thread: sends the next queued event
  void finished(const std::string& reply);  // an XADD's reply

  const AuditStreamOptions opt_;
  const Runner run_;
  const Post post_;
  const Now now_;
  mutable std::mutex mu_;
  std::deque<Item> queue_;      // under mu_
  bool busy_ = false;           // under mu_: a pump is posted or an XADD is in flight
  size_t in_flight_ = 0;        // under mu_: 0 or 1
  bool stopped_ = false;        // under mu_
  bool failing_ = false;        // under mu_: the last XADD failed (log once per run of failures)
  uint64_t failed_in_run_ = 0;  // under mu_
  Stats stats_;                 // under mu_ (queued computed)
};

}  // namespace keel::security
