#include "replication/copy.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace keel::replication {

namespace {
// Bytes counted per entry beside its effect (LSN, epoch, framing), so that back-pressure and
// the log bound also hold for many tiny effects.
constexpr size_t kEntryOverhead = 16;
}  // namespace

uint32_t fence_quorum(const Config& c) {
  const int64_t replicas = static_cast<int64_t>(c.replicas.size());
  const int64_t copies = replicas + 1;
  const int64_t q = std::min(replicas, copies - static_cast<int64_t>(c.write_quorum) + 1);
  return static_cast<uint32_t>(std::max<int64_t>(q, 1));
}

std::optional<NodeId> choose_new_primary(const Config& c,
                                         const std::vector<std::pair<NodeId, FenceAck>>& acks) {
  // Members in preference order for ties: replicas in order, then the old primary.
  std::vector<NodeId> order = c.replicas;
  order.push_back(c.primary);
  std::vector<const FenceAck*> by_member(order.size(), nullptr);
  for (const auto& [from, ack] : acks) {
    if (ack.new_epoch != c.epoch + 1) continue;
    auto it = std::find(order.begin(), order.end(), from);
    if (it == order.end()) continue;
    const FenceAck*& slot = by_member[static_cast<size_t>(it - order.begin())];
    if (!slot) slot = &ack;  // the first answer of a member counts
  }
  size_t configured = 0, answered = 0;
  for (const FenceAck* a : by_member) {
    if (!a) continue;
    ++answered;
    if (a->epoch == c.epoch && a->in_sync) ++configured;
  }
  if (configured < fence_quorum(c) && answered < order.size()) return std::nullopt;
  std::optional<size_t> best;
  for (size_t i = 0; i < order.size(); ++i) {
    const FenceAck* a = by_member[i];
    if (!a) continue;
    if (!best || std::pair(a->last_epoch, a->last_lsn) >
                     std::pair(by_member[*best]->last_epoch, by_member[*best]->last_lsn))
      best = i;
  }
  return order[*best];
}

Copy::Copy(NodeId self, Options opt) : self_(self), opt_(opt) {}

void Copy::see(int64_t now_ms) {
  if (clock_seen_) return;
  clock_seen_ = true;
  // This copy may have granted a lease just before a crash it does not remember.
  promise_until_ms_ = now_ms + opt_.lease_ms;
}

void Copy::recover(uint64_t lsn, uint64_t epoch) {
  ++log_generation_;
  settling_ = false;
  last_ = durable_ = lsn;
  last_epoch_ = epoch;
  base_lsn_ = lsn;
  base_epoch_ = epoch;
  log_first_ = lsn + 1;
  log_.clear();
  cum_bytes_.clear();
}

void Copy::recover_partial(uint64_t lsn, uint64_t epoch, uint64_t source, std::string next_key) {
  recover(0, 0);
  partial_ = true;
  partial_source_ = source;
  partial_announced_ = false;
  partial_lsn_ = lsn;
  partial_epoch_ = epoch;
  partial_key_ = std::move(next_key);
}

uint64_t Copy::epoch_at(uint64_t lsn, bool* known) const {
  *known = true;
  if (lsn == 0) return 0;
  if (lsn == base_lsn_) return base_epoch_;
  if (lsn >= log_first_ && lsn < log_first_ + log_.size()) return log_[lsn - log_first_].epoch;
  *known = false;
  return 0;
}

size_t Copy::bytes_between(uint64_t from_lsn, uint64_t to_lsn) const {
  // Effect bytes of the entries with from_lsn < lsn <= to_lsn that are in the log.
  auto upto = [&](uint64_t lsn) -> uint64_t {
    if (lsn < log_first_ || log_.empty()) return base_cum_;
    uint64_t i = std::min<uint64_t>(lsn - log_first_, log_.size() - 1);
    return cum_bytes_[i];
  };
  if (to_lsn <= from_lsn) return 0;
  return upto(to_lsn) - upto(from_lsn);
}

void Copy::push_entry(Entry e) {
  uint64_t before = cum_bytes_.empty() ? base_cum_ : cum_bytes_.back();
  cum_bytes_.push_back(before + e.effect.size() + kEntryOverhead);
  last_ = e.lsn;
  last_epoch_ = e.epoch;
  log_.push_back(std::move(e));
}

void Copy::trim_log() {
  // Every uncommitted entry stays; committed ones are kept up to log_keep_bytes (trimmed with
  // hysteresis: only once they take twice that, so the front is erased rarely).
  uint64_t keep_above = role_ == Role::kReplica ? std::min(commit_, durable_) : commit_;
  if (role_ == Role::kPrimary && opt_.lag_keep_bytes > 0) {
    // Keep what a live copy still has to receive (within lag_keep_bytes).
    uint64_t slowest = keep_above;
    for (const auto& p : peers_)
      if (p.heard && !p.snapshotting && !p.want_snapshot) slowest = std::min(slowest, p.received);
    if (slowest < keep_above && slowest >= base_lsn_ && bytes_between(slowest, keep_above) <= opt_.lag_keep_bytes)
      keep_above = slowest;
  }
  if (keep_above < log_first_) return;
  if (bytes_between(log_first_ - 1, keep_above) <= 2 * opt_.log_keep_bytes) return;
  size_t drop = 0;
  while (drop < log_.size() && log_first_ + drop <= keep_above &&
         bytes_between(log_first_ + drop - 1, keep_above) > opt_.log_keep_bytes)
    ++drop;
  if (drop == 0) return;
  base_lsn_ = log_first_ + drop - 1;
  base_epoch_ = log_[drop - 1].epoch;
  base_cum_ = cum_bytes_[drop - 1];
  log_.erase(log_.begin(), log_.begin() + static_cast<ptrdiff_t>(drop));
  cum_bytes_.erase(cum_bytes_.begin(), cum_bytes_.begin() + static_cast<ptrdiff_t>(drop));
  log_first_ += drop;
}

Copy::Peer* Copy::peer(NodeId id) {
  for (auto& p : peers_)
    if (p.id == id) return &p;
  return nullptr;
}

size_t Copy::lease_grants_needed() const {
  // Grants from enough replicas that every fence quorum contains one of them.
  if (cfg_.replicas.empty()) return 0;
  return cfg_.replicas.size() - fence_quorum(cfg_) + 1;
}

Status Copy::configure(const Config& c, int64_t now_ms) {
  see(now_ms);
  const size_t copies = c.replicas.size() + 1;
  if (c.write_quorum == 0 || c.write_quorum > copies)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("replication config epoch {}: write_quorum {} is not allowed "
                                  "(allowed: 1..{}, the number of copies)",
                                  c.epoch, c.write_quorum, copies));
  for (size_t i = 0; i < c.learners.size(); ++i) {
    NodeId l = c.learners[i];
    bool twice = std::find(c.learners.begin(), c.learners.begin() + static_cast<ptrdiff_t>(i), l) !=
                 c.learners.begin() + static_cast<ptrdiff_t>(i);
    if (l == c.primary || twice ||
        std::find(c.replicas.begin(), c.replicas.end(), l) != c.replicas.end())
      return make_error(Errc::kInvalidArgument,
                        fmt::format("replication config epoch {}: learner {} is also the primary, "
                                    "a replica or listed twice (learners are other nodes)",
                                    c.epoch, l));
  }
  for (size_t i = 0; i < c.replicas.size(); ++i) {
    if (c.replicas[i] == c.primary)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("replication config epoch {}: primary {} is also listed as "
                                    "a replica (replicas exclude the primary)",
                                    c.epoch, c.primary));
    for (size_t j = 0; j < i; ++j)
      if (c.replicas[j] == c.replicas[i])
        return make_error(Errc::kInvalidArgument,
                          fmt::format("replication config epoch {}: replica {} is listed twice",
                                      c.epoch, c.replicas[i]));
  }
  if (c.epoch <= cfg_.epoch) return {};
  cfg_ = c;
  peers_.clear();
  fresh_as_of_ms_ = INT64_MIN;
  handover_to_ = 0;
  last_append_sent_ms_ = 0;
  if (snap_in_progress_) {
    // A transfer of the old epoch will not complete: drop what the engine got of it, so the
    // engine holds exactly what this copy claims (nothing).
    out_.apply_snapshot.clear();
    out_.snapshot_progress.reset();
    out_.reset_partition = true;
  }
  snap_in_progress_ = false;
  snap_done_lsn_ = 0;
  // Settling: the data may hold writes the new primary never had; nothing would correct them.
  if (settling_) hold_nothing();
  pending_fences_.erase(std::remove_if(pending_fences_.begin(), pending_fences_.end(),
                                       [&](const auto& f) { return f.second <= c.epoch; }),
                        pending_fences_.end());
  if (c.primary == self_) {
    role_ = Role::kPrimary;
    for (NodeId r : c.replicas) peers_.push_back(new_peer(r, false, now_ms));
    for (NodeId l : c.learners) peers_.push_back(new_peer(l, true, now_ms));
    // The barrier: the first entry of the epoch; committing it commits everything before it.
    Entry b{.lsn = last_ + 1, .epoch = c.epoch, .effect = {}};
    epoch_start_ = b.lsn;
    out_.apply.push_back(b);
    push_entry(std::move(b));
    flush(now_ms, false);
  } else if (std::find(c.replicas.begin(), c.replicas.end(), self_) != c.replicas.end() ||
             std::find(c.learners.begin(), c.learners.end(), self_) != c.learners.end()) {
    role_ = Role::kReplica;
  } else {
    role_ = Role::kNone;
  }
  return {};
}

Result<uint64_t> Copy::append(Effect effect, int64_t now_ms) {
  see(now_ms);
  if (role_ != Role::kPrimary)
    return make_error(Errc::kUnavailable,
                      fmt::format("not the primary of this partition (epoch {}, primary {})",
                                  cfg_.epoch, cfg_.primary));
  if (fenced())
    return make_error(Errc::kUnavailable,
                      fmt::format("primary of epoch {} is fenced for epoch {} (failover under "
                                  "way)",
                                  cfg_.epoch, fenced_epoch_));
  if (handover_to_ == self_)
    return make_error(Errc::kUnavailable,
                      fmt::format("primary of epoch {} is switching the partition to its new copies",
                                  cfg_.epoch));
  if (handover_to_)
    return make_error(Errc::kUnavailable,
                      fmt::format("primary of epoch {} is handing the partition over to node {}",
                                  cfg_.epoch, handover_to_));
  if (effect.empty())
    return make_error(Errc::kInvalidArgument,
                      "empty effect (reserved for epoch barriers; a write has an effect)");
  size_t backlog = bytes_between(commit_, last_);
  if (backlog + effect.size() + kEntryOverhead > opt_.max_backlog_bytes)
    return make_error(Errc::kUnavailable,
                      fmt::format("replication backlog full ({} bytes not yet committed, limit "
                                  "{})",
                                  backlog, opt_.max_backlog_bytes));
  Entry e{.lsn = last_ + 1, .epoch = cfg_.epoch, .effect = std::move(effect)};
  uint64_t lsn = e.lsn;
  push_entry(std::move(e));
  flush(now_ms, true);
  return lsn;
}

void Copy::durable(uint64_t lsn, int64_t now_ms) {
  see(now_ms);
  lsn = std::min(lsn, last_);
  if (snap_in_progress_ || lsn <= durable_) return;
  durable_ = lsn;
  if (role_ == Role::kPrimary) {
    advance_commit();
    flush(now_ms, true);
  } else if (role_ == Role::kReplica && !fenced()) {
    send_ack(false, now_ms);
  }
}

void Copy::apply_failed(uint64_t lsn, int64_t now_ms) {
  see(now_ms);
  if (role_ != Role::kReplica || snap_in_progress_ || lsn == 0 || lsn > last_ || lsn <= durable_)
    return;
  // Entries above durable_ are never trimmed (trim_log keeps everything above it), so the
  // entry at `lsn` is in the log.
  if (lsn < log_first_) return;
  const size_t keep = lsn - log_first_;
  ++log_generation_;
  log_.resize(keep);
  cum_bytes_.resize(keep);
  last_ = lsn - 1;
  bool known = false;
  last_epoch_ = epoch_at(last_, &known);
  commit_ = std::min(commit_, last_);
}

bool Copy::is_primary() const { return role_ == Role::kPrimary && !fenced(); }

bool Copy::can_serve_reads(int64_t now_ms) const {
  if (!is_primary() || handover_to_) return false;
  size_t need = lease_grants_needed();
  if (need == 0) return true;
  size_t held = 0;
  for (const auto& p : peers_)
    if (!p.learner && p.lease_until_ms > now_ms) ++held;
  return held >= need;
}

Status Copy::set_learners(std::vector<NodeId> learners, int64_t now_ms) {
  see(now_ms);
  if (role_ != Role::kPrimary)
    return make_error(Errc::kUnavailable, "set_learners: this copy is not the primary");
  Config c = cfg_;
  c.learners = std::move(learners);
  for (size_t i = 0; i < c.learners.size(); ++i) {
    NodeId l = c.learners[i];
    if (l == c.primary || std::count(c.learners.begin(), c.learners.end(), l) > 1 ||
        std::find(c.replicas.begin(), c.replicas.end(), l) != c.replicas.end())
      return make_error(Errc::kInvalidArgument,
                        fmt::format("learner {} is the primary, a replica or listed twice", l));
  }
  std::erase_if(peers_, [&](const Peer& p) {
    return p.learner && std::find(c.learners.begin(), c.learners.end(), p.id) == c.learners.end() &&
           p.id != handover_to_;
  });
  for (NodeId l : c.learners) {
    if (peer(l)) continue;
    peers_.push_back(new_peer(l, true, now_ms));
    if (!fenced()) send_to(peers_.back(), now_ms);  // its answer says where it is
  }
  cfg_.learners = std::move(c.learners);
  return {};
}

Status Copy::hand_over(NodeId to, int64_t now_ms) {
  see(now_ms);
  if (role_ != Role::kPrimary || fenced())
    return make_error(Errc::kUnavailable, "hand_over: this copy is not a serving primary");
  if (to != self_ && !peer(to))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("hand_over: node {} is neither this primary, a replica nor a learner", to));
  if (handover_to_ && handover_to_ != to)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("hand_over: already handing over to node {}", handover_to_));
  handover_to_ = to;
  flush(now_ms, false);
  return {};
}

bool Copy::handover_done() const {
  if (!handover_to_ || role_ != Role::kPrimary || fenced() || durable_ < last_) return false;
  bool target = handover_to_ == self_;
  for (const auto& p : peers_) {
    if (!p.learner && p.id != handover_to_) continue;
    if (p.snapshotting || p.want_snapshot || p.acked < last_) return false;
    target |= p.id == handover_to_;
  }
  return target;
}

std::optional<Copy::PeerProgress> Copy::progress(NodeId id) const {
  for (const auto& p : peers_)
    if (p.id == id) return PeerProgress{p.acked, p.snapshotting || p.want_snapshot};
  return std::nullopt;
}

void Copy::advance_commit() {
  if (role_ != Role::kPrimary) return;
  uint64_t candidate = kth_held(cfg_.write_quorum);
  // Only an entry of this epoch is committed by counting (Raft's rule); it commits all before.
  if (candidate > commit_ && candidate >= epoch_start_) {
    commit_ = candidate;
    trim_log();
  }
  out_.committed_lsn = commit_;
}

uint64_t Copy::kth_held(uint32_t k) const {
  // The k-th highest durable LSN over the primary and its (non-learner) replicas: 0 if fewer
  // than k copies. Called for every write: a small array on the stack, not a vector.
  constexpr size_t kInline = 16;
  uint64_t inline_buf[kInline];
  std::vector<uint64_t> heap;
  size_t n = 1 + peers_.size();
  uint64_t* d = inline_buf;
  if (n > kInline) {
    heap.resize(n);
    d = heap.data();
  }
  size_t m = 0;
  d[m++] = durable_;
  for (const auto& p : peers_)
    if (!p.learner) d[m++] = p.acked;
  if (k == 0 || k > m) return 0;
  std::nth_element(d, d + (k - 1), d + m, std::greater<>());
  return d[k - 1];
}

Copy::Peer Copy::new_peer(NodeId id, bool learner, int64_t now_ms) const {
  Peer p;
  p.id = id;
  p.next = last_ + 1;  // a mismatch answer says where it really is
  p.last_progress_ms = now_ms;
  p.learner = learner;
  return p;
}

uint64_t Copy::held_by(uint32_t k) const {
  if (role_ != Role::kPrimary) return 0;
  if (k == 0 || k == cfg_.write_quorum) return commit_;
  size_t copies = 1;
  for (const auto& p : peers_) copies += p.learner ? 0 : 1;
  k = std::min<uint32_t>(k, static_cast<uint32_t>(copies));
  uint64_t held = kth_held(k);
  return k > cfg_.write_quorum ? std::min(held, commit_) : held;
}

void Copy::send_to(Peer& p, int64_t now_ms) {
  if (p.snapshotting || p.want_snapshot) return;
  bool known = false;
  uint64_t prev_epoch = epoch_at(p.next - 1, &known);
  if (!known || p.next < log_first_) {
    // The log no longer reaches back to where this replica is.
    p.want_snapshot = true;
    out_.snapshot_needed.push_back(p.id);
    return;
  }
  Append a;
  a.epoch = cfg_.epoch;
  a.prev_lsn = p.next - 1;
  a.prev_epoch = prev_epoch;
  a.commit_lsn = commit_;
  a.sent_ms = now_ms;
  if (p.next == p.received + 1) p.last_progress_ms = now_ms;  // nothing was in flight
  size_t bytes = 0;
  while (p.next <= last_) {
    const Entry& e = log_[p.next - log_first_];
    const size_t cost = e.effect.size() + kEntryOverhead;
    if (!a.entries.empty() && bytes + cost > opt_.max_batch_bytes) break;
    if (p.next > p.received + 1 &&
        bytes_between(p.received, p.next - 1) + cost > opt_.max_inflight_bytes)
      break;  // back-pressure: wait for acks
    bytes += cost;
    a.entries.push_back(e);
    ++p.next;
  }
  p.last_send_ms = now_ms;
  out_.send.emplace_back(p.id, std::move(a));
}

void Copy::ship(int64_t now_ms) { flush(now_ms, false); }

void Copy::flush(int64_t now_ms, bool only_idle) {
  if (role_ != Role::kPrimary || fenced()) return;
  for (auto& p : peers_) {
    if (p.snapshotting || p.want_snapshot) continue;
    bool has_new = p.next <= last_;
    bool idle = p.next == p.received + 1;  // nothing unacknowledged in flight
    if (has_new && (idle || !only_idle)) pump(p, now_ms);
  }
}

void Copy::pump(Peer& p, int64_t now_ms) {
  // Send as many batches as the in-flight window allows.
  for (int i = 0; i < 64 && p.next <= last_; ++i) {
    uint64_t before = p.next;
    send_to(p, now_ms);
    if (p.next == before) break;
  }
}

void Copy::tick(int64_t now_ms) {
  see(now_ms);
  answer_fences(now_ms);
  if (role_ != Role::kPrimary || fenced()) return;
  for (auto& p : peers_) {
    if (p.snapshotting || p.want_snapshot) continue;
    if (p.next > p.received + 1 && now_ms - p.last_progress_ms >= opt_.resend_after_ms) {
      // Unacknowledged entries: resend from what the replica is known to have received. If it
      // has not answered once in this epoch, that is not known (a copy restarted with its data
      // may hold nearly everything): probe after the last entry, and its answer says where it
      // is, rather than start it over from the first LSN (a snapshot, once the log is trimmed).
      p.next = p.heard ? p.received + 1 : last_ + 1;
      p.last_progress_ms = now_ms;
      send_to(p, now_ms);
    } else if (p.next <= last_) {
      pump(p, now_ms);
    } else if (now_ms - p.last_send_ms >= opt_.heartbeat_ms) {
      send_to(p, now_ms);  // heartbeat: renews the lease, carries the commit LSN
    }
  }
}

void Copy::receive(NodeId from, const Message& m, int64_t now_ms) {
  see(now_ms);
  std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, Append>) on_append(from, msg, now_ms);
        else if constexpr (std::is_same_v<T, AppendAck>) on_ack(from, msg, now_ms);
        else if constexpr (std::is_same_v<T, SnapshotBegin>) on_snapshot_begin(from, msg, now_ms);
        else if constexpr (std::is_same_v<T, SnapshotChunk>) on_snapshot_chunk(from, msg, now_ms);
        else if constexpr (std::is_same_v<T, Fence>) on_fence(from, msg, now_ms);
        else {
          // FenceAck: answers go to the failover manager, never to a copy.
        }
      },
      m);
  answer_fences(now_ms);
}

void Copy::send_ack(bool mismatch, int64_t now_ms) {
  AppendAck a;
  a.epoch = cfg_.epoch;
  // Settling: what it received moves the primary's window on, but it vouches for nothing: no
  // durable LSN (counted for commits) and no lease (grantors must be in sync, see answer_fences).
  a.durable_lsn = settling_ ? 0 : std::min(durable_, last_);
  a.last_lsn = last_;
  a.last_epoch = last_epoch_;
  a.mismatch = mismatch;
  a.echo_sent_ms = settling_ ? 0 : last_append_sent_ms_;
  if (mismatch && partial_) {
    a.resumable = true;
    a.resume_lsn = partial_lsn_;
    a.resume_epoch = partial_epoch_;
    a.resume_key = partial_key_;
    a.resume_source = partial_source_;
  }
  if (!mismatch) promise_until_ms_ = std::max(promise_until_ms_, now_ms + opt_.lease_ms);
  out_.send.emplace_back(cfg_.primary, a);
}

void Copy::on_append(NodeId from, const Append& a, int64_t now_ms) {
  if (a.epoch < std::max(cfg_.epoch, fenced_epoch_)) {
    // A deposed primary: tell it the epoch it lost to (it stops serving). The answer says
    // truly where this copy is: by the time it arrives the sender may be the primary of that
    // epoch, and would otherwise take it for a copy that holds nothing (and send a snapshot).
    AppendAck nack;
    nack.epoch = std::max(cfg_.epoch, fenced_epoch_);
    nack.mismatch = true;
    nack.last_lsn = last_;
    nack.last_epoch = last_epoch_;
    nack.durable_lsn = std::min(durable_, last_);
    out_.send.emplace_back(from, nack);
    return;
  }
  if (role_ != Role::kReplica || a.epoch != cfg_.epoch || from != cfg_.primary || fenced())
    return;
  if (snap_in_progress_) {
    // The primary streams the log only after the last chunk: this transfer lost a chunk (or
    // its end). The keys received are kept; the mismatch asks the primary to resume.
    interrupt_snapshot(now_ms);
    return;
  }
  if (partial_) {
    if (a.prev_lsn != 0) {
      send_ack(true, now_ms);  // resume the transfer (or send a whole one)
      return;
    }
    drop_partial();  // the primary's log reaches back to the start: take it from there
  }
  last_append_sent_ms_ = std::max(last_append_sent_ms_, a.sent_ms);
  bool known = false;
  uint64_t mine = a.prev_lsn <= last_ ? epoch_at(a.prev_lsn, &known) : 0;
  if (a.prev_lsn > last_ || !known || mine != a.prev_epoch) {
    send_ack(true, now_ms);
    return;
  }
  for (const Entry& e : a.entries) {
    if (e.lsn <= last_) {
      bool k = false;
      uint64_t ep = epoch_at(e.lsn, &k);
      if (k && ep == e.epoch) continue;  // already held
      send_ack(true, now_ms);            // diverged (or unverifiable): the primary decides
      return;
    }
    if (e.lsn != last_ + 1) break;  // malformed batch: keep what is contiguous
    out_.apply.push_back(e);
    push_entry(e);
  }
  commit_ = std::max(commit_, std::min(a.commit_lsn, last_));
  if (settling_ && last_ >= settle_lsn_) settling_ = false;  // the data is its log's again
  if (last_ >= a.commit_lsn && !settling_) fresh_as_of_ms_ = now_ms;
  trim_log();
  send_ack(false, now_ms);
}

void Copy::on_ack(NodeId from, const AppendAck& a, int64_t now_ms) {
  if (a.epoch > cfg_.epoch) {
    fenced_epoch_ = std::max(fenced_epoch_, a.epoch);  // a newer epoch exists: stop serving
    return;
  }
  if (role_ != Role::kPrimary || a.epoch != cfg_.epoch || fenced()) return;
  Peer* p = peer(from);
  if (!p) return;
  p->heard = true;
  if (a.mismatch && a.resumable && resumable_from(a)) {
    // The replica holds part of a transfer this log can continue: resume it rather than send
    // it all again (also when a stream is under way: the replica is not taking it), unless
    // the stream under way already starts where it asks (the ask is stale).
    bool stale = p->snapshotting && p->snap_lsn == a.resume_lsn && p->snap_from_key == a.resume_key &&
                 p->snap_resumed;
    if (stale) return;
    p->snapshotting = false;
    p->resume = a;
    if (!p->want_snapshot) {
      p->want_snapshot = true;
      out_.snapshot_needed.push_back(p->id);
    }
    return;
  }
  if (a.mismatch) {
    if (p->snapshotting) return;
    bool known = false;
    uint64_t ep = a.last_lsn <= last_ ? epoch_at(a.last_lsn, &known) : 0;
    if (a.last_lsn <= last_ && known && ep == a.last_epoch) {
      p->next = a.last_lsn + 1;  // resend after what it holds
      p->received = a.last_lsn;
      p->acked = std::max(p->acked, std::min(a.durable_lsn, a.last_lsn));
      p->last_progress_ms = now_ms;
      send_to(*p, now_ms);
    } else if (!p->want_snapshot) {
      // Its last entry is not in this log (diverged) or the log no longer reaches back.
      p->want_snapshot = true;
      out_.snapshot_needed.push_back(p->id);
    }
    return;
  }
  {
    // The ack must name an entry of this log; else the replica diverged (it holds entries of a
    // deposed primary past this one's log): it needs a snapshot, and its acks count for nothing.
    bool known = false;
    uint64_t ep = a.last_lsn <= last_ ? epoch_at(a.last_lsn, &known) : 0;
    if (a.last_lsn > last_ || (known && ep != a.last_epoch)) {
      if (!p->want_snapshot && !p->snapshotting) {
        p->want_snapshot = true;
        out_.snapshot_needed.push_back(p->id);
      }
      return;
    }
  }
  if (a.echo_sent_ms > 0)  // 0: the replica has no Append of this epoch to vouch for
    p->lease_until_ms =
        std::max(p->lease_until_ms, a.echo_sent_ms + opt_.lease_ms - opt_.max_drift_ms);
  if (a.last_lsn > p->received || a.durable_lsn > p->acked) p->last_progress_ms = now_ms;
  p->received = std::max(p->received, std::min(a.last_lsn, last_));
  p->acked = std::max(p->acked, std::min(a.durable_lsn, p->received));
  if (p->next < p->received + 1) p->next = p->received + 1;
  advance_commit();
  trim_log();
  // Acks free in-flight room: send what waits.
  if (p->next <= last_) pump(*p, now_ms);
}

void Copy::on_snapshot_begin(NodeId from, const SnapshotBegin& b, int64_t now_ms) {
  if (role_ != Role::kReplica || b.epoch != cfg_.epoch || from != cfg_.primary || fenced())
    return;
  if (snap_in_progress_ && snap_lsn_ == b.snapshot_lsn && snap_next_seq_ == 0) return;  // dup
  if (b.resume) {
    if (partial_ && b.snapshot_lsn == partial_lsn_ && b.snapshot_epoch == partial_epoch_ &&
        b.resume_key == partial_key_ && b.source == partial_source_) {
      // Go on where the interrupted transfer stopped: the keys before resume_key stay.
      partial_ = false;
      snap_in_progress_ = true;
      fresh_as_of_ms_ = INT64_MIN;
      snap_lsn_ = b.snapshot_lsn;
      snap_epoch_ = b.snapshot_epoch;
      snap_next_seq_ = 0;
      snap_next_key_ = b.resume_key;
      snap_source_ = b.source;
      snap_resumed_ = true;
      return;
    }
    // Not what this copy holds (a stale resume): drop it all; the mismatch brings a whole one.
    if (snap_in_progress_) abort_snapshot(now_ms);
    else {
      drop_partial();
      send_ack(true, now_ms);
    }
    return;
  }
  partial_ = false;
  // A late duplicate of a transfer already installed would wipe the copy for nothing.
  if (!snap_in_progress_ && snap_done_lsn_ == b.snapshot_lsn && last_ >= b.snapshot_lsn &&
      b.snapshot_lsn > 0)
    return;
  snap_in_progress_ = true;
  fresh_as_of_ms_ = INT64_MIN;
  snap_lsn_ = b.snapshot_lsn;
  snap_epoch_ = b.snapshot_epoch;
  snap_next_seq_ = 0;
  snap_next_key_.clear();
  snap_source_ = b.source;
  snap_resumed_ = false;
  // Drop everything: until the snapshot completes this copy holds nothing it can vouch for.
  hold_nothing();
}

void Copy::hold_nothing() {
  ++log_generation_;
  settling_ = false;
  log_.clear();
  cum_bytes_.clear();
  last_ = durable_ = commit_ = 0;
  last_epoch_ = 0;
  base_lsn_ = base_epoch_ = 0;
  log_first_ = 1;
  out_.reset_partition = true;
  out_.apply.clear();
  out_.apply_snapshot.clear();
  out_.snapshot_progress.reset();
  out_.snapshot_done_lsn = 0;
}

void Copy::on_snapshot_chunk(NodeId from, SnapshotChunk c, int64_t now_ms) {
  if (role_ != Role::kReplica || c.epoch != cfg_.epoch || from != cfg_.primary || fenced())
    return;
  if (partial_ && !snap_in_progress_ && !partial_announced_) {
    // The primary streams a transfer this copy is not taking (it restarted, or lost a chunk
    // and its ask was lost): ask again, once, to resume instead.
    partial_announced_ = true;
    send_ack(true, now_ms);
    return;
  }
  if (!snap_in_progress_ || c.snapshot_lsn != snap_lsn_) return;
  if (c.seq < snap_next_seq_) return;  // duplicate
  if (c.seq > snap_next_seq_) {
    // A chunk was lost: keep what came before it and ask the primary to resume.
    interrupt_snapshot(now_ms);
    return;
  }
  ++snap_next_seq_;
  for (auto& e : c.effects) out_.apply_snapshot.push_back(std::move(e));
  if (c.last) settle_key_ = snap_next_key_;  // where this chunk's scan began
  if (!c.last) {
    snap_next_key_ = std::move(c.next_key);
    out_.snapshot_progress = Output::SnapshotProgress{snap_lsn_, snap_epoch_, snap_source_, snap_next_key_};
    return;
  }
  out_.snapshot_progress.reset();
  snap_in_progress_ = false;
  last_ = snap_lsn_;
  last_epoch_ = snap_epoch_;
  base_lsn_ = snap_lsn_;
  base_epoch_ = snap_epoch_;
  log_first_ = snap_lsn_ + 1;
  durable_ = 0;
  out_.snapshot_done_lsn = snap_lsn_;
  snap_done_lsn_ = snap_lsn_;
  settle_lsn_ = c.settle_lsn;
  settling_ = settle_lsn_ > snap_lsn_;
  send_ack(false, now_ms);
}

void Copy::abort_snapshot(int64_t now_ms) {
  // The engine holds part of a snapshot that matches no LSN: drop it, so what the engine holds
  // is again exactly what this copy claims (nothing), whatever the primary sends next.
  snap_in_progress_ = false;
  partial_ = false;
  out_.apply_snapshot.clear();
  out_.snapshot_progress.reset();
  out_.reset_partition = true;
  send_ack(true, now_ms);
}

void Copy::interrupt_snapshot(int64_t now_ms) {
  // Nothing received worth keeping (a resumed transfer keeps what it had before).
  if (snap_next_seq_ == 0 && !snap_resumed_) return abort_snapshot(now_ms);
  // Every key before snap_next_key_ is in the engine (or in the output being applied): keep
  // them, and ask the primary to go on from there.
  snap_in_progress_ = false;
  partial_ = true;
  partial_announced_ = false;
  partial_lsn_ = snap_lsn_;
  partial_epoch_ = snap_epoch_;
  partial_key_ = snap_next_key_;
  partial_source_ = snap_source_;
  send_ack(true, now_ms);
}

void Copy::snapshot_failed(int64_t now_ms) {
  if (role_ != Role::kReplica) return;
  snap_in_progress_ = false;
  partial_ = false;
  snap_done_lsn_ = 0;
  hold_nothing();
  send_ack(true, now_ms);
}

void Copy::drop_partial() {
  if (!partial_) return;
  partial_ = false;
  out_.apply_snapshot.clear();
  out_.snapshot_progress.reset();
  out_.reset_partition = true;
}

void Copy::on_fence(NodeId from, const Fence& f, int64_t now_ms) {
  if (f.new_epoch <= cfg_.epoch) return;  // already configured past it
  fenced_epoch_ = std::max(fenced_epoch_, f.new_epoch);
  for (const auto& pf : pending_fences_)
    if (pf.first == from && pf.second == f.new_epoch) return;
  pending_fences_.emplace_back(from, f.new_epoch);
  (void)now_ms;
}

bool Copy::in_sync() const {
  if (cfg_.epoch == 0 || snap_in_progress_ || settling_ || partial_) return false;
  if (last_epoch_ == cfg_.epoch) return true;  // it holds the epoch's barrier
  // A partition's first epoch (epoch 1: it was created with the partition map, every copy
  // empty) has nothing before its barrier. A copy that holds nothing and never lost anything
  // (log_generation_ 0: no restart, snapshot or reset emptied it, so it never acknowledged an
  // entry) holds that empty prefix completely; it counts as in sync. Without this, a primary
  // lost before its first barrier reached the replicas (a cluster that loses a node in its
  // first second) left partitions that no copy could vouch for, unavailable until that node
  // returned. (A restarted copy is configured only in a later epoch anyway.)
  return cfg_.epoch == 1 && last_ == 0 && log_generation_ == 0;
}

void Copy::answer_fences(int64_t now_ms) {
  if (pending_fences_.empty()) return;
  // A replica answers only once every lease it granted has run out (by its own clock).
  if (role_ != Role::kPrimary && now_ms < promise_until_ms_) return;
  for (const auto& [to, epoch] : pending_fences_) {
    FenceAck a;
    a.new_epoch = epoch;
    std::tie(a.last_lsn, a.last_epoch) = held();
    a.epoch = cfg_.epoch;
    a.in_sync = in_sync();
    out_.send.emplace_back(to, a);
  }
  pending_fences_.clear();
}

bool Copy::resumable_from(const AppendAck& a) const {
  // The log holds every entry after resume_lsn, and the entry there is the one the transfer
  // began at.
  bool known = false;
  uint64_t ep = a.resume_lsn <= last_ ? epoch_at(a.resume_lsn, &known) : 0;
  return a.resume_source == source_token() && a.resume_lsn <= last_ && known && a.resume_lsn >= base_lsn_ &&
         ep == a.resume_epoch;
}

SnapshotBegin Copy::begin_snapshot(NodeId to, int64_t now_ms) {
  see(now_ms);
  SnapshotBegin b;
  b.epoch = cfg_.epoch;
  b.snapshot_lsn = last_;
  b.snapshot_epoch = last_epoch_;
  b.source = source_token();
  if (Peer* p = peer(to); p && role_ == Role::kPrimary) {
    if (p->resume && resumable_from(*p->resume)) {
      b.snapshot_lsn = p->resume->resume_lsn;
      b.snapshot_epoch = p->resume->resume_epoch;
      b.resume = true;
      b.resume_key = p->resume->resume_key;
    }
    p->resume.reset();
    p->want_snapshot = false;
    p->snapshotting = true;
    p->snap_lsn = b.snapshot_lsn;
    p->snap_from_key = b.resume_key;
    p->snap_resumed = b.resume;
    p->snap_seq = 0;
    ++p->snap_id;
    p->last_progress_ms = now_ms;
  }
  return b;
}

std::optional<uint64_t> Copy::snapshot_id(NodeId to) const {
  for (const auto& p : peers_)
    if (p.id == to && p.snapshotting) return p.snap_id;
  return std::nullopt;
}

void Copy::abandon_snapshot(NodeId to, int64_t now_ms) {
  see(now_ms);
  Peer* p = peer(to);
  if (!p || !p->snapshotting) return;
  p->snapshotting = false;
  p->heard = false;
  p->next = last_ + 1;
  p->last_progress_ms = now_ms;
}

bool Copy::snapshot_wanted(NodeId to) const {
  for (const auto& p : peers_)
    if (p.id == to) return p.want_snapshot;
  return false;
}

SnapshotChunk Copy::snapshot_chunk(NodeId to, std::vector<std::string> effects, bool last,
                                   int64_t now_ms, std::string next_key) {
  see(now_ms);
  SnapshotChunk c;
  c.epoch = cfg_.epoch;
  c.effects = std::move(effects);
  c.last = last;
  if (!last) c.next_key = std::move(next_key);
  Peer* p = peer(to);
  if (!p || !p->snapshotting) return c;  // not a transfer in progress: seq 0 of lsn 0 (ignored)
  c.snapshot_lsn = p->snap_lsn;
  c.seq = p->snap_seq++;
  if (last) {
    c.settle_lsn = last_;  // the keys scanned hold no write past this one
    p->snapshotting = false;
    p->next = p->snap_lsn + 1;
    p->received = p->snap_lsn;  // assumed; a mismatch answer corrects it
    p->acked = 0;
    p->last_progress_ms = now_ms;
  }
  return c;
}

Output Copy::take_output() {
  Output o = std::move(out_);
  out_ = Output{};
  o.committed_lsn = commit_;
  return o;
}

CopyStatus Copy::status(int64_t now_ms) const {
  CopyStatus s;
  s.role = role_;
  s.epoch = cfg_.epoch;
  s.last_lsn = last_;
  s.last_epoch = last_epoch_;
  s.durable_lsn = durable_;
  s.committed_lsn = commit_;
  s.fenced_epoch = fenced_epoch_;
  s.lease = can_serve_reads(now_ms);
  for (const auto& p : peers_)
    s.replicas.push_back({.id = p.id, .acked_lsn = p.acked, .snapshotting = p.snapshotting});
  s.backlog_bytes = bytes_between(commit_, last_);
  return s;
}

}  // namespace keel::replication
