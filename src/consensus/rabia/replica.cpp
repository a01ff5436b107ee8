#include "consensus/rabia/replica.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"
#include "base/codec.h"
#include "base/random.h"
#include "consensus/rabia/codec.h"

namespace keel::rabia {

bool Config::contains(NodeId id) const {
  return std::binary_search(members.begin(), members.end(), id);
}

size_t max_message_bytes(const Options& o) {
  return kMessageOverheadBytes + std::max(o.max_batch_bytes + kDecisionOverheadBytes,
                                          o.snapshot_chunk_bytes + kChunkOverheadBytes);
}

Bit common_coin(uint64_t cluster_id, uint64_t epoch, Slot slot, Phase phase) {
  uint64_t h = mix64(cluster_id ^ 0x52616269612d636fULL);  // "Rabia-co"
  h = mix64(h ^ epoch);
  h = mix64(h ^ slot);
  h = mix64(h ^ phase);
  return (h >> 17) & 1 ? Bit::k1 : Bit::k0;
}

std::string encode_members(const std::vector<NodeId>& members) {
  std::string out;
  Writer w(out);
  w.varint(members.size());
  for (NodeId m : members) w.varint(m);
  return out;
}

Result<std::vector<NodeId>> decode_members(std::string_view payload) {
  Reader rd(payload);
  auto n = rd.varint();
  if (!n) return std::unexpected(n.error());
  if (*n == 0 || *n > 64)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("reconfig: {} members (allowed 1..64)", *n));
  std::vector<NodeId> out;
  for (uint64_t i = 0; i < *n; ++i) {
    auto m = rd.varint();
    if (!m) return std::unexpected(m.error());
    if (*m > UINT32_MAX) return make_error(Errc::kInvalidArgument, "reconfig: member id > 2^32-1");
    if (!out.empty() && *m <= out.back())
      return make_error(Errc::kInvalidArgument, "reconfig: members must be sorted and unique");
    out.push_back(static_cast<NodeId>(*m));
  }
  if (!rd.done()) return make_error(Errc::kInvalidArgument, "reconfig: trailing bytes");
  return out;
}

namespace {
Config normalized(Config c) {
  std::sort(c.members.begin(), c.members.end());
  c.members.erase(std::unique(c.members.begin(), c.members.end()), c.members.end());
  return c;
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and restart

Replica::Replica(Options opts, const std::vector<Record>& durable)
    : opts_(std::move(opts)), config_(normalized(opts_.initial)) {
  KEEL_ASSERT(opts_.max_batch > 0);
  KEEL_ASSERT(opts_.catchup_batch > 0);
  KEEL_ASSERT_MSG(opts_.max_request_bytes + kRequestOverheadBytes + kBatchOverheadBytes <=
                      opts_.max_batch_bytes,
                  "max_batch_bytes must hold one request of max_request_bytes");
  KEEL_ASSERT(opts_.snapshot_chunk_bytes > 0);
  // Own slot records (proposal/state/vote) by slot; only those of the first undecided slot
  // survive replay: they are what this replica already said and must keep saying (R1).
  std::map<Slot, std::vector<const Record*>> own;
  for (const Record& r : durable) {
    switch (r.kind) {
      case Record::Kind::kSnapshot:
        if (r.snapshot.next_slot >= next_slot_) apply_snapshot(r.snapshot, /*from_peer=*/false);
        break;
      case Record::Kind::kDecision:
        if (r.decision.slot == next_slot_) {
          // Re-commit without persisting again: it is already durable.
          Decision d = r.decision;
          log_[d.slot] = d;
          // commit path shared with live decisions, minus the persist.
          finish_slot(std::move(d), /*by_vote=*/false);
        }
        break;
      default:
        own[r.slot].push_back(&r);
        break;
    }
  }
  // Restore what this replica said in its current slot.
  if (auto it = own.find(next_slot_); it != own.end()) {
    for (const Record* r : it->second) {
      switch (r->kind) {
        case Record::Kind::kProposal:
          if (!cur_.my_proposal) {
            cur_.my_proposal = r->requests;
            cur_.proposals[opts_.self] = r->requests;
            // Its requests are still pending (the queue itself is volatile).
            for (const auto& q : r->requests) enqueue(q);
          }
          break;
        case Record::Kind::kState: {
          auto& ps = cur_.phases[r->phase];
          ps.my_state = r->bit;
          ps.states[opts_.self] = r->bit;
          if (r->phase >= cur_.phase) {
            cur_.phase = r->phase;
            cur_.state_sent = true;
            cur_.vote_sent = false;
          }
          break;
        }
        case Record::Kind::kVote: {
          auto& ps = cur_.phases[r->phase];
          ps.my_vote = r->bit;
          ps.votes[opts_.self] = r->bit;
          if (r->phase == cur_.phase) cur_.vote_sent = true;
          break;
        }
        default:
          break;
      }
    }
  }
  // Replay produced no new durable records and no messages: only install/apply for the
  // application, which rebuilds its state from the snapshot and the decided log.
  out_.persist.clear();
  out_.messages.clear();
  stats_ = Stats{};
}

// ---------------------------------------------------------------------------------------------
// Inputs

Status Replica::propose(Request r) {
  if (r.payload.size() > opts_.max_request_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("request of {} bytes exceeds the limit of {} bytes",
                                  r.payload.size(), opts_.max_request_bytes));
  if (r.kind == Request::Kind::kReconfig) {
    auto m = decode_members(r.payload);
    if (!m) return std::unexpected(m.error());
  }
  if (r.seq == 0) return make_error(Errc::kInvalidArgument, "request seq must be >= 1");
  if (executed(r) || queued_keys_.contains(Key{r.client_id, r.seq}))
    return make_error(
        Errc::kAlreadyExists,
        fmt::format("request (client {}, seq {}) already executed or pending", r.client_id, r.seq));
  if (queue_.size() >= opts_.max_pending)
    return make_error(Errc::kLimitExceeded,
                      fmt::format("pending queue full ({} requests)", opts_.max_pending));
  r.origin = opts_.self;
  r.timestamp_ms = now_ms_;
  enqueue(r);
  Message m;
  m.type = MsgType::kForward;
  m.requests.push_back(std::move(r));
  broadcast(std::move(m));
  progress();
  return {};
}

void Replica::step(const Message& m) {
  if (m.to != opts_.self || m.from == opts_.self) return;  // misaddressed: drop
  switch (m.type) {
    case MsgType::kForward:
      for (const auto& r : m.requests) {
        if (r.payload.size() > opts_.max_request_bytes || r.seq == 0) continue;
        if (queue_.size() >= opts_.max_pending) break;
        enqueue(r);
      }
      break;
    case MsgType::kProposal:
    case MsgType::kState:
    case MsgType::kVote:
      if (m.type == MsgType::kProposal) {
        // Learn the requests of every proposal: it spreads requests whose forward was lost.
        for (const auto& r : m.requests) {
          if (r.payload.size() > opts_.max_request_bytes || r.seq == 0) continue;
          if (queue_.size() >= opts_.max_pending) break;
          enqueue(r);
        }
      }
      if (m.slot < next_slot_) {
        // The sender lags: answer with the decision (or a snapshot if compacted). Only a
        // proposal is answered: a stalled replica re-sends its proposal with its votes, while
        // STATEs and VOTEs that merely arrive after we decided need no answer.
        if (m.type != MsgType::kProposal) break;
        Message q;
        q.type = MsgType::kCatchUp;
        q.from = m.from;
        q.to = opts_.self;
        q.slot = m.slot;
        handle_catchup(q);
      } else if (m.slot == next_slot_) {
        handle_slot_message(m);
      } else {
        // The sender decided next_slot_ already. Keep a bounded window of its messages and
        // ask it for the decisions we lack.
        if (m.slot < next_slot_ + opts_.future_window) {
          auto& b = buffered_[m.slot];
          if (b.size() < 64 * std::max<size_t>(config_.n(), 1)) b.push_back(m);
        }
        request_catchup(m.from);
      }
      break;
    case MsgType::kDecided:
      handle_decided(m);
      break;
    case MsgType::kCatchUp:
      handle_catchup(m);
      break;
    case MsgType::kSnapshot:
      if (m.snapshot) install_from_peer(*m.snapshot, m.from);
      break;
    case MsgType::kSnapshotChunk:
      handle_chunk(m);
      break;
    case MsgType::kSnapshotPull:
      handle_pull(m);
      break;
  }
  progress();
}

void Replica::tick(int64_t now_ms) {
  KEEL_ASSERT(now_ms >= now_ms_);
  now_ms_ = now_ms;
  if (incoming_) {
    if (incoming_->slot <= next_slot_) {
      incoming_.reset();  // caught up another way: the transfer is of no use any more
    } else if (now_ms_ - incoming_->last_ms >= stale_ms()) {
      ++stats_.snapshot_transfers_discarded;  // the sender went quiet: ask anyone again
      incoming_.reset();
    } else if (now_ms_ - std::max(incoming_->last_ms, incoming_->pull_ms) >=
               opts_.rebroadcast_interval_ms) {
      send_pull();  // the chunk (or our pull) was lost: ask for the same offset again
    }
  }
  const bool in_flight = cur_.my_proposal.has_value() || cur_.decided.has_value() ||
                         !queue_.empty() || !future_decisions_.empty();
  if (in_flight && now_ms_ - last_progress_ms_ >= opts_.rebroadcast_interval_ms) {
    rebroadcast();
    last_progress_ms_ = now_ms_;
  } else if (!in_flight && now_ms_ - last_catchup_ms_ >= 10 * opts_.rebroadcast_interval_ms &&
             config_.n() > 0) {
    // Idle: ask one member whether we lag behind, a different one each time (two lagging
    // replicas must not keep asking only each other).
    NodeId to = config_.members[idle_probe_++ % config_.n()];
    if (to == opts_.self) to = config_.members[idle_probe_++ % config_.n()];
    if (to != opts_.self) request_catchup(to);
  }
  may_start_ = true;
  progress();
  may_start_ = false;
}

// ---------------------------------------------------------------------------------------------
// Outputs

bool Replica::has_ready() const { return !out_.empty() || start_deferred_; }

Ready Replica::ready() {
  KEEL_ASSERT_MSG(!outstanding_, "ready() called twice without advance()");
  if (start_deferred_) {
    start_deferred_ = false;
    may_start_ = true;
    progress();
    may_start_ = false;
  }
  outstanding_ = true;
  Ready r = std::move(out_);
  out_ = Ready{};
  return r;
}

void Replica::advance() {
  KEEL_ASSERT_MSG(outstanding_, "advance() without ready()");
  outstanding_ = false;
}

Status Replica::compact(Slot next_slot, std::string app_state) {
  if (next_slot != next_slot_)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("compact at slot {}: only the first undecided slot {} is allowed",
                                  next_slot, next_slot_));
  if (!out_.apply.empty() || out_.install)
    return make_error(Errc::kInvalidArgument,
                      "compact: the application has not applied the pending Ready yet");
  if (snapshot_ && snapshot_->next_slot >= next_slot) return {};
  Snapshot s;
  s.next_slot = next_slot;
  s.config = config_;
  for (auto& [c, e] : dedup_) s.dedup.push_back(DedupEntry{c, e.seq, e.slot});
  s.app_state = std::move(app_state);
  Record rec;
  rec.kind = Record::Kind::kSnapshot;
  rec.slot = next_slot;
  rec.snapshot = s;
  persist(std::move(rec));
  snapshot_ = std::move(s);
  // Keep a tail of decisions so slightly lagging peers get decisions instead of a snapshot.
  while (log_.size() > opts_.log_retain) log_.erase(log_.begin());
  return {};
}

uint64_t Replica::executed_seq(uint64_t client_id) const {
  auto it = dedup_.find(client_id);
  return it == dedup_.end() ? 0 : it->second.seq;
}

// ---------------------------------------------------------------------------------------------
// The slot state machine

void Replica::progress() {
  for (int guard = 0; guard < 1'000'000; ++guard) {
    if (!progress_once()) return;
    last_progress_ms_ = now_ms_;
  }
  KEEL_UNREACHABLE();
}

bool Replica::progress_once() {
  // Decisions learned from peers, in slot order.
  while (!future_decisions_.empty() && future_decisions_.begin()->first < next_slot_)
    future_decisions_.erase(future_decisions_.begin());
  if (auto it = future_decisions_.find(next_slot_); it != future_decisions_.end()) {
    Decision d = std::move(it->second);
    future_decisions_.erase(it);
    if (cur_.decided && (*cur_.decided == Bit::k0) != d.null) {
      // Weak-MVC agreement says this cannot happen among correct replicas; a peer that broke
      // the durability rules can cause it. Report it; the peer's decision is not taken.
      ++stats_.protocol_violations;
      return true;
    }
    persist(Record{.kind = Record::Kind::kDecision, .slot = d.slot, .decision = d});
    ++stats_.decided_by_transfer;
    finish_slot(std::move(d), false);
    return true;
  }
  if (!is_member()) return false;
  if (cur_.decided) {
    if (*cur_.decided == Bit::k1) {
      if (auto mp = majority_proposal()) {
        Decision d{.slot = next_slot_, .null = false, .batch = std::move(*mp)};
        persist(Record{.kind = Record::Kind::kDecision, .slot = d.slot, .decision = d});
        finish_slot(std::move(d), true);
        return true;
      }
    }
    return false;
  }
  if (!cur_.my_proposal) {
    if (cur_.proposals.empty()) {
      if (queue_.empty()) return false;
      if (opts_.propose_delay_ms > 0 &&
          queue_.begin()->timestamp_ms > now_ms_ - opts_.propose_delay_ms)
        return false;  // tick() starts the slot once the oldest request is old enough
      if (!my_turn_to_start()) return false;  // the slot's starter proposes first
    }
    if (!may_start_) {
      start_deferred_ = true;
      return false;
    }
    make_proposal();
    return true;
  }
  const size_t quorum = config_.quorum();
  if (cur_.phase == 0) {
    if (cur_.proposals.size() < quorum) return false;
    Bit state = majority_proposal() ? Bit::k1 : Bit::k0;
    cur_.phase = 1;
    auto& ps = cur_.phases[1];
    ps.my_state = state;
    ps.states[opts_.self] = state;
    cur_.state_sent = true;
    cur_.vote_sent = false;
    persist(Record{.kind = Record::Kind::kState, .slot = next_slot_, .phase = 1, .bit = state});
    Message m{.type = MsgType::kState, .slot = next_slot_, .phase = 1, .bit = state};
    broadcast(std::move(m));
    return true;
  }
  auto& ps = cur_.phases[cur_.phase];
  if (!cur_.vote_sent) {
    if (ps.states.size() < quorum) return false;
    size_t c0 = 0, c1 = 0;
    for (auto& [_, b] : ps.states) (b == Bit::k0 ? c0 : c1)++;
    Bit vote = c1 >= config_.majority()   ? Bit::k1
               : c0 >= config_.majority() ? Bit::k0
                                          : Bit::kQuestion;
    ps.my_vote = vote;
    ps.votes[opts_.self] = vote;
    cur_.vote_sent = true;
    persist(
        Record{.kind = Record::Kind::kVote, .slot = next_slot_, .phase = cur_.phase, .bit = vote});
    broadcast(
        Message{.type = MsgType::kVote, .slot = next_slot_, .phase = cur_.phase, .bit = vote});
    return true;
  }
  if (ps.votes.size() < quorum) return false;
  size_t c0 = 0, c1 = 0;
  for (auto& [_, b] : ps.votes) {
    if (b == Bit::k0) ++c0;
    if (b == Bit::k1) ++c1;
  }
  // Two majorities of STATEs in one phase intersect, so correct replicas never send opposite
  // non-? votes. Only a peer that broke the durability rules (two different STATEs for one
  // phase) can; report it and wait (the phase cannot be decided safely).
  if (c0 > 0 && c1 > 0) {
    if (!cur_.violation_reported) ++stats_.protocol_violations;
    cur_.violation_reported = true;
    return false;
  }
  const size_t f1 = config_.f() + 1;
  if (c0 >= f1 || c1 >= f1) {
    on_decided_bit(c1 >= f1 ? Bit::k1 : Bit::k0);
    return true;
  }
  Bit next;
  if (c1 > 0) {
    next = Bit::k1;
  } else if (c0 > 0) {
    next = Bit::k0;
  } else {
    next = common_coin(config_.cluster_id, config_.epoch, next_slot_, cur_.phase);
    ++stats_.coin_flips;
  }
  cur_.phase += 1;
  auto& np = cur_.phases[cur_.phase];
  np.my_state = next;
  np.states[opts_.self] = next;
  cur_.state_sent = true;
  cur_.vote_sent = false;
  persist(
      Record{.kind = Record::Kind::kState, .slot = next_slot_, .phase = cur_.phase, .bit = next});
  broadcast(Message{.type = MsgType::kState, .slot = next_slot_, .phase = cur_.phase, .bit = next});
  return true;
}

void Replica::on_decided_bit(Bit b) {
  KEEL_ASSERT(b != Bit::kQuestion);
  cur_.decided = b;
  ++stats_.decided_by_vote;
  stats_.phases_total += cur_.phase;
  if (cur_.phase == 1) ++stats_.decided_phase1;
  if (b == Bit::k0) {
    Decision d{.slot = next_slot_, .null = true};
    persist(Record{.kind = Record::Kind::kDecision, .slot = d.slot, .decision = d});
    finish_slot(std::move(d), true);
    return;
  }
  // Decided 1: a proposal was held by a majority. If we do not see it yet, it arrives with
  // more proposals (re-broadcast) or a peer's kDecided (progress_once retries).
  if (!majority_proposal()) {
    ++stats_.fetches;
    for (NodeId m : config_.members)
      if (m != opts_.self) send(Message{.type = MsgType::kCatchUp, .to = m, .slot = next_slot_});
  }
}

// Commit decision `d` for next_slot_. REQUIRES: its kDecision record is already queued for
// persistence (or was replayed from disk).
void Replica::finish_slot(Decision d, bool by_vote) {
  KEEL_ASSERT(d.slot == next_slot_);
  (void)by_vote;
  Entry e{.slot = d.slot, .null = d.null};
  if (d.null) {
    ++stats_.null_decisions;
  } else {
    for (const Request& r : d.batch) {
      if (executed(r)) {
        ++stats_.duplicates_dropped;
        continue;
      }
      record_executed(r.client_id, r.seq, d.slot);
      if (r.kind == Request::Kind::kReconfig) {
        // Deterministic on every replica: an invalid member list is ignored by all.
        if (auto members = decode_members(r.payload); members) {
          config_.members = *members;
          config_.epoch += 1;
        }
      }
      e.requests.push_back(r);
    }
  }
  e.config_after = config_;
  ++stats_.slots_decided;
  log_[d.slot] = std::move(d);
  out_.apply.push_back(std::move(e));
  next_slot_ += 1;
  cur_ = SlotState{};
  drop_executed_from_queue();
  // Messages that arrived early for the new current slot.
  buffered_.erase(buffered_.begin(), buffered_.lower_bound(next_slot_));
  if (auto it = buffered_.find(next_slot_); it != buffered_.end()) {
    auto msgs = std::move(it->second);
    buffered_.erase(it);
    for (const auto& m : msgs) handle_slot_message(m);
  }
}

std::optional<std::vector<Request>> Replica::majority_proposal() const {
  for (auto it = cur_.proposals.begin(); it != cur_.proposals.end(); ++it) {
    size_t count = 0;
    for (auto& [_, p] : cur_.proposals) count += (p == it->second);
    if (count >= config_.majority()) return it->second;
  }
  return std::nullopt;
}

bool Replica::my_turn_to_start() {
  if (opts_.start_timeout_ms <= 0 || config_.n() <= 1) return true;
  NodeId starter = config_.members[next_slot_ % config_.n()];
  // A starter that let its last turn time out (down or cut off) is not waited for again until
  // a proposal of it arrives.
  if (starter == opts_.self || silent_starters_.contains(starter)) return true;
  if (wait_slot_ != next_slot_) {
    wait_slot_ = next_slot_;
    wait_since_ms_ = now_ms_;
  }
  if (now_ms_ - wait_since_ms_ < opts_.start_timeout_ms) return false;  // checked again on tick()
  silent_starters_.insert(starter);
  return true;
}

void Replica::make_proposal() {
  KEEL_ASSERT(!cur_.my_proposal);
  start_deferred_ = false;
  // Joining a slot: propose the batch a peer proposed (the slot starter's if it came, else the
  // first non-empty one). Its requests are pending here too (step() queues the requests of
  // every proposal), so this is still "pending requests, oldest first", cut where the peer cut:
  // the proposals match and the slot is decided on the fast path instead of NULL.
  auto can_follow = [&](const std::vector<Request>& p) {
    return !p.empty() && p.size() <= opts_.max_batch &&
           batch_wire_bytes(p) <= opts_.max_batch_bytes;
  };
  const std::vector<Request>* follow = nullptr;
  if (config_.n() > 0) {
    auto it = cur_.proposals.find(config_.members[next_slot_ % config_.n()]);
    if (it != cur_.proposals.end() && can_follow(it->second)) follow = &it->second;
  }
  for (auto it = cur_.proposals.begin(); !follow && it != cur_.proposals.end(); ++it)
    if (can_follow(it->second)) follow = &it->second;
  std::vector<Request> batch;
  if (follow) {
    batch = *follow;
  } else {
    // Otherwise the oldest pending requests. Joining a slot a peer started: cut where the
    // peers' proposals end, so that requests that reached this replica after the peer proposed
    // do not make the batches differ. Starting a slot: everything pending, or
    // (propose_delay_ms) what is old enough by our clock.
    int64_t peers = INT64_MIN;
    for (auto& [_, p] : cur_.proposals)
      for (auto& r : p) peers = std::max(peers, r.timestamp_ms);
    int64_t cutoff = peers != INT64_MIN ? peers
                     : opts_.propose_delay_ms > 0 ? now_ms_ - opts_.propose_delay_ms
                                                  : INT64_MAX;
    // The queue is ordered by timestamp first, so the eligible requests are a prefix; it is
    // cut at max_batch requests or max_batch_bytes (one request always fits).
    size_t bytes = kBatchOverheadBytes;
    for (auto it = queue_.begin();
         it != queue_.end() && batch.size() < opts_.max_batch && it->timestamp_ms <= cutoff; ++it) {
      if (!batch.empty() && bytes + request_wire_bytes(*it) > opts_.max_batch_bytes) break;
      bytes += request_wire_bytes(*it);
      batch.push_back(*it);
    }
  }
  cur_.my_proposal = batch;
  cur_.proposals[opts_.self] = batch;
  persist(Record{.kind = Record::Kind::kProposal, .slot = next_slot_, .requests = batch});
  broadcast(Message{.type = MsgType::kProposal, .slot = next_slot_, .requests = std::move(batch)});
}

void Replica::handle_slot_message(const Message& m) {
  KEEL_ASSERT(m.slot == next_slot_);
  if (!config_.contains(m.from)) return;  // quorums come from the configuration only
  switch (m.type) {
    case MsgType::kProposal:
      cur_.proposals.try_emplace(m.from, m.requests);  // first message per sender counts
      silent_starters_.erase(m.from);
      break;
    case MsgType::kState:
      if (m.phase == 0 || m.bit == Bit::kQuestion) return;
      cur_.phases[m.phase].states.try_emplace(m.from, m.bit);
      break;
    case MsgType::kVote:
      if (m.phase == 0) return;
      cur_.phases[m.phase].votes.try_emplace(m.from, m.bit);
      break;
    default:
      break;
  }
}

void Replica::handle_catchup(const Message& m) {
  if (m.slot >= next_slot_) return;  // we do not know more than the asker
  const bool compacted = snapshot_ && (log_.empty() || m.slot < log_.begin()->first);
  if (compacted || !log_.contains(m.slot)) {
    offer_snapshot(m.from);
    return;
  }
  Message out{.type = MsgType::kDecided, .to = m.from};
  size_t bytes = 0;
  for (auto it = log_.find(m.slot); it != log_.end() && out.decisions.size() < opts_.catchup_batch;
       ++it) {
    if (!out.decisions.empty() && it->first != out.decisions.back().slot + 1) break;
    // Bounded in bytes too (at least one decision; a decision is at most one batch).
    if (!out.decisions.empty() && bytes + decision_wire_bytes(it->second) > opts_.max_batch_bytes)
      break;
    bytes += decision_wire_bytes(it->second);
    out.decisions.push_back(it->second);
  }
  send(std::move(out));
}

void Replica::handle_decided(const Message& m) {
  const Slot horizon = next_slot_ + std::max<size_t>(opts_.catchup_batch, opts_.future_window) * 4;
  for (const auto& d : m.decisions) {
    if (d.slot < next_slot_ || d.slot >= horizon) continue;
    future_decisions_.try_emplace(d.slot, d);
  }
  // A full batch (by count, or past half the byte budget: the sender may have cut it there)
  // means the sender may have more. Other cuts are continued by the regular catch-up.
  size_t bytes = 0;
  for (const auto& d : m.decisions) bytes += decision_wire_bytes(d);
  if ((m.decisions.size() >= opts_.catchup_batch || bytes >= opts_.max_batch_bytes / 2) &&
      !m.decisions.empty() && m.decisions.back().slot + 1 >= next_slot_)
    send(Message{.type = MsgType::kCatchUp, .to = m.from, .slot = m.decisions.back().slot + 1});
}

void Replica::apply_snapshot(const Snapshot& s, bool from_peer) {
  snapshot_ = s;
  config_ = normalized(s.config);
  dedup_.clear();
  dedup_by_slot_.clear();
  for (const auto& e : s.dedup) record_executed(e.client_id, e.seq, e.slot);
  next_slot_ = s.next_slot;
  log_.clear();
  cur_ = SlotState{};
  buffered_.erase(buffered_.begin(), buffered_.lower_bound(next_slot_));
  // Entries not yet handed out are covered by the snapshot.
  out_.apply.clear();
  out_.install = s;
  if (from_peer) ++stats_.snapshots_installed;
  drop_executed_from_queue();
}

// ---------------------------------------------------------------------------------------------
// Snapshot transfer

int64_t Replica::stale_ms() const {
  return opts_.snapshot_stale_ms > 0 ? opts_.snapshot_stale_ms : 20 * opts_.rebroadcast_interval_ms;
}

bool Replica::transfer_active() const {
  return incoming_ && incoming_->slot > next_slot_ && now_ms_ - incoming_->last_ms < stale_ms();
}

const Replica::Encoded& Replica::latest_encoding() {
  KEEL_ASSERT(snapshot_);
  if (serving_.empty() || serving_.back().slot != snapshot_->next_slot) {
    Encoded e;
    e.slot = snapshot_->next_slot;
    e.bytes = encode(*snapshot_);
    e.checksum = snapshot_checksum(e.bytes);
    serving_.push_back(std::move(e));
    if (serving_.size() > 2) serving_.erase(serving_.begin());
  }
  return serving_.back();
}

void Replica::offer_snapshot(NodeId to) {
  if (!snapshot_) return;
  const Encoded& e = latest_encoding();
  if (e.bytes.size() <= opts_.snapshot_chunk_bytes) {
    ++stats_.snapshots_sent;
    send(Message{.type = MsgType::kSnapshot, .to = to, .snapshot = *snapshot_});
    return;
  }
  // A peer that is pulling this snapshot keeps asking for catch-up now and then (its proposals
  // for old slots, idle probes): do not start its transfer over with chunk 0 each time.
  auto it = offered_.find(to);
  if (it != offered_.end() && it->second.first == e.checksum &&
      now_ms_ - it->second.second < 4 * opts_.rebroadcast_interval_ms)
    return;
  if (offered_.size() >= 256) offered_.clear();  // bounded (ids come from the network)
  offered_[to] = {e.checksum, now_ms_};
  ++stats_.snapshots_sent;
  send_chunk(to, e, 0);
}

void Replica::send_chunk(NodeId to, const Encoded& e, uint64_t offset) {
  KEEL_ASSERT(offset < e.bytes.size());
  SnapshotChunk c{.total = e.bytes.size(),
                  .offset = offset,
                  .checksum = e.checksum,
                  .data = e.bytes.substr(offset, opts_.snapshot_chunk_bytes)};
  ++stats_.snapshot_chunks_sent;
  send(Message{.type = MsgType::kSnapshotChunk, .to = to, .slot = e.slot, .chunk = std::move(c)});
}

void Replica::send_pull() {
  KEEL_ASSERT(incoming_);
  incoming_->pull_ms = now_ms_;
  SnapshotChunk c{.total = incoming_->total,
                  .offset = incoming_->bytes.size(),
                  .checksum = incoming_->checksum};
  send(Message{.type = MsgType::kSnapshotPull,
               .to = incoming_->from,
               .slot = incoming_->slot,
               .chunk = std::move(c)});
}

void Replica::handle_pull(const Message& m) {
  if (!m.chunk) return;
  for (const Encoded& e : serving_) {
    if (e.slot == m.slot && e.checksum == m.chunk->checksum && e.bytes.size() == m.chunk->total) {
      if (m.chunk->offset < e.bytes.size()) send_chunk(m.from, e, m.chunk->offset);
      return;
    }
  }
  // That encoding is gone here (two compactions since): offer the current snapshot; the puller
  // discards its partial transfer when chunk 0 of a newer snapshot arrives.
  offered_.erase(m.from);
  offer_snapshot(m.from);
}

void Replica::handle_chunk(const Message& m) {
  if (!m.chunk || m.chunk->data.empty()) return;
  const SnapshotChunk& c = *m.chunk;
  if (m.slot <= next_slot_) return;  // nothing to learn from it
  if (c.total > opts_.max_snapshot_bytes) {
    ++stats_.snapshot_transfers_failed;  // refused: larger than this replica accepts
    return;
  }
  const bool same = incoming_ && incoming_->slot == m.slot && incoming_->checksum == c.checksum &&
                    incoming_->total == c.total;
  if (!same) {
    if (c.offset != 0) return;  // a piece of a transfer this replica does not run
    // Keep a live transfer of a snapshot at least as new; a newer snapshot or a stale transfer
    // gives way.
    if (incoming_ && incoming_->slot >= m.slot && transfer_active()) return;
    if (incoming_) ++stats_.snapshot_transfers_discarded;
    incoming_ = Incoming{.from = m.from, .slot = m.slot, .total = c.total, .checksum = c.checksum};
  } else if (incoming_->from != m.from) {
    // The same snapshot from another member: continue from whoever answers.
    incoming_->from = m.from;
  }
  if (c.offset != incoming_->bytes.size()) return;  // duplicate or reordered: the pull repeats
  incoming_->bytes += c.data;
  incoming_->last_ms = now_ms_;
  ++stats_.snapshot_chunks_received;
  if (incoming_->bytes.size() < incoming_->total) {
    send_pull();
    return;
  }
  Incoming in = std::move(*incoming_);
  incoming_.reset();
  if (snapshot_checksum(in.bytes) != in.checksum) {
    ++stats_.snapshot_transfers_failed;
    return;  // the next catch-up starts a new transfer
  }
  Limits limits;
  limits.max_app_state_bytes = opts_.max_snapshot_bytes;
  auto s = decode_snapshot(in.bytes, limits);
  if (!s || s->next_slot != in.slot) {
    ++stats_.snapshot_transfers_failed;
    return;
  }
  install_from_peer(*s, in.from);
}

void Replica::install_from_peer(const Snapshot& snap, NodeId from) {
  if (snap.config.cluster_id != config_.cluster_id || snap.next_slot <= next_slot_ ||
      snap.config.members.empty())
    return;
  Record rec;
  rec.kind = Record::Kind::kSnapshot;
  rec.slot = snap.next_slot;
  rec.snapshot = snap;
  persist(std::move(rec));
  apply_snapshot(snap, /*from_peer=*/true);
  if (incoming_ && incoming_->slot <= next_slot_) incoming_.reset();
  // The sender may have decided slots after its snapshot: ask for them at once.
  send(Message{.type = MsgType::kCatchUp, .to = from, .slot = next_slot_});
}

// ---------------------------------------------------------------------------------------------
// Helpers

void Replica::rebroadcast() {
  ++stats_.rebroadcasts;
  if (is_member() && cur_.my_proposal) {
    if (!opts_.testing_votes_only_rebroadcast)
      broadcast(
          Message{.type = MsgType::kProposal, .slot = next_slot_, .requests = *cur_.my_proposal});
    for (auto& [p, ps] : cur_.phases) {
      if (ps.my_state)
        broadcast(
            Message{.type = MsgType::kState, .slot = next_slot_, .phase = p, .bit = *ps.my_state});
      if (ps.my_vote)
        broadcast(
            Message{.type = MsgType::kVote, .slot = next_slot_, .phase = p, .bit = *ps.my_vote});
    }
  }
  if (!is_member() && !queue_.empty()) {
    // Not a member: hand pending requests to the members again (their forward may be lost).
    Message m{.type = MsgType::kForward};
    size_t bytes = kBatchOverheadBytes;
    for (auto it = queue_.begin(); it != queue_.end() && m.requests.size() < opts_.max_batch;
         ++it) {
      if (!m.requests.empty() && bytes + request_wire_bytes(*it) > opts_.max_batch_bytes) break;
      bytes += request_wire_bytes(*it);
      m.requests.push_back(*it);
    }
    broadcast(std::move(m));
  }
  if ((cur_.decided || !future_decisions_.empty() || !is_member()) && !transfer_active()) {
    for (NodeId m : config_.members)
      if (m != opts_.self) send(Message{.type = MsgType::kCatchUp, .to = m, .slot = next_slot_});
  }
}

void Replica::request_catchup(NodeId to) {
  if (transfer_active()) return;  // a snapshot is on its way: its pulls drive the catch-up
  if (now_ms_ - last_catchup_ms_ < opts_.rebroadcast_interval_ms / 2 + 1) return;
  last_catchup_ms_ = now_ms_;
  send(Message{.type = MsgType::kCatchUp, .to = to, .slot = next_slot_});
}

void Replica::send(Message m) {
  m.from = opts_.self;
  KEEL_ASSERT(m.to != opts_.self);
  out_.messages.push_back(std::move(m));
}

void Replica::broadcast(Message m) {
  for (NodeId to : config_.members) {
    if (to == opts_.self) continue;
    Message c = m;
    c.to = to;
    send(std::move(c));
  }
}

void Replica::persist(Record r) { out_.persist.push_back(std::move(r)); }

bool Replica::executed(const Request& r) const {
  auto it = dedup_.find(r.client_id);
  return it != dedup_.end() && r.seq <= it->second.seq;
}

void Replica::record_executed(uint64_t client_id, uint64_t seq, Slot slot) {
  auto [it, fresh] = dedup_.try_emplace(client_id, Executed{seq, slot});
  if (!fresh) {
    dedup_by_slot_.erase({it->second.slot, client_id});
    it->second = Executed{seq, slot};
  }
  dedup_by_slot_.insert({slot, client_id});
  while (dedup_.size() > kMaxDedupClients) {
    auto oldest = dedup_by_slot_.begin();
    dedup_.erase(oldest->second);
    dedup_by_slot_.erase(oldest);
  }
  KEEL_ASSERT(dedup_.size() == dedup_by_slot_.size());
}

void Replica::enqueue(const Request& r) {
  if (executed(r)) return;
  auto [it, fresh] = queued_keys_.try_emplace(Key{r.client_id, r.seq}, r);
  if (!fresh) {
    // The same request reached several replicas (a client retry): every replica keeps the
    // smallest copy in queue order, so their queue heads converge and proposals match.
    if (!(r < it->second)) return;
    queue_.erase(it->second);
    it->second = r;
  }
  queue_.insert(r);
}

void Replica::drop_executed_from_queue() {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (executed(*it)) {
      queued_keys_.erase(Key{it->client_id, it->seq});
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace keel::rabia
