#include "consensus/rabia/codec.h"

#include <fmt/format.h>

#include "base/codec.h"
#include "base/random.h"

namespace keel::rabia {
namespace {

std::unexpected<Error> bad(std::string what) {
  return make_error(Errc::kCorruption, "rabia codec: " + what);
}

#define KEEL_TRY_ASSIGN(var, expr)                       \
  auto var##_r = (expr);                                 \
  if (!var##_r) return std::unexpected(var##_r.error()); \
  auto var = *var##_r

void put_request(Writer& w, const Request& r) {
  w.varint(r.client_id);
  w.varint(r.seq);
  w.svarint(r.timestamp_ms);
  w.varint(r.origin);
  w.u8(static_cast<uint8_t>(r.kind));
  w.bytes(r.payload);
}

Result<Request> get_request(Reader& rd, const Limits& l) {
  Request r;
  KEEL_TRY_ASSIGN(client, rd.varint());
  KEEL_TRY_ASSIGN(seq, rd.varint());
  KEEL_TRY_ASSIGN(ts, rd.svarint());
  KEEL_TRY_ASSIGN(origin, rd.varint());
  KEEL_TRY_ASSIGN(kind, rd.u8());
  if (origin > UINT32_MAX) return bad("request origin exceeds 32 bits");
  if (kind > 1)
    return bad(fmt::format("request kind {} unknown (allowed: 0 command, 1 reconfig)", kind));
  KEEL_TRY_ASSIGN(payload, rd.bytes(l.max_payload_bytes));
  r.client_id = client;
  r.seq = seq;
  r.timestamp_ms = ts;
  r.origin = static_cast<NodeId>(origin);
  r.kind = static_cast<Request::Kind>(kind);
  r.payload = std::string(payload);
  return r;
}

void put_requests(Writer& w, const std::vector<Request>& v) {
  w.varint(v.size());
  for (const auto& r : v) put_request(w, r);
}

Result<std::vector<Request>> get_requests(Reader& rd, const Limits& l) {
  KEEL_TRY_ASSIGN(n, rd.varint());
  if (n > l.max_requests)
    return bad(fmt::format("{} requests exceed the limit of {}", n, l.max_requests));
  // Each request takes at least 6 bytes: refuse counts the input cannot hold.
  if (n > rd.remaining() / 6) return bad("request count larger than the input");
  std::vector<Request> v;
  v.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    KEEL_TRY_ASSIGN(r, get_request(rd, l));
    v.push_back(std::move(r));
  }
  return v;
}

void put_decision(Writer& w, const Decision& d) {
  w.varint(d.slot);
  w.u8(d.null ? 1 : 0);
  if (!d.null) put_requests(w, d.batch);
}

Result<Decision> get_decision(Reader& rd, const Limits& l) {
  Decision d;
  KEEL_TRY_ASSIGN(slot, rd.varint());
  KEEL_TRY_ASSIGN(null, rd.u8());
  if (null > 1) return bad("decision null flag must be 0 or 1");
  d.slot = slot;
  d.null = null == 1;
  if (!d.null) {
    KEEL_TRY_ASSIGN(b, get_requests(rd, l));
    d.batch = std::move(b);
  }
  return d;
}

void put_config(Writer& w, const Config& c) {
  w.varint(c.cluster_id);
  w.varint(c.epoch);
  w.varint(c.members.size());
  for (NodeId m : c.members) w.varint(m);
}

Result<Config> get_config(Reader& rd, const Limits& l) {
  Config c;
  KEEL_TRY_ASSIGN(cid, rd.varint());
  KEEL_TRY_ASSIGN(epoch, rd.varint());
  KEEL_TRY_ASSIGN(n, rd.varint());
  if (n > l.max_members)
    return bad(fmt::format("{} members exceed the limit of {}", n, l.max_members));
  c.cluster_id = cid;
  c.epoch = epoch;
  for (uint64_t i = 0; i < n; ++i) {
    KEEL_TRY_ASSIGN(m, rd.varint());
    if (m > UINT32_MAX) return bad("member id exceeds 32 bits");
    if (!c.members.empty() && m <= c.members.back())
      return bad("members must be sorted and unique");
    c.members.push_back(static_cast<NodeId>(m));
  }
  return c;
}

void put_snapshot(Writer& w, const Snapshot& s) {
  w.varint(s.next_slot);
  put_config(w, s.config);
  w.varint(s.dedup.size());
  for (const auto& e : s.dedup) {
    w.varint(e.client_id);
    w.varint(e.seq);
    w.varint(e.slot);
  }
  w.bytes(s.app_state);
}

Result<Snapshot> get_snapshot(Reader& rd, const Limits& l) {
  Snapshot s;
  KEEL_TRY_ASSIGN(next, rd.varint());
  KEEL_TRY_ASSIGN(cfg, get_config(rd, l));
  KEEL_TRY_ASSIGN(n, rd.varint());
  if (n > l.max_dedup || n > rd.remaining() / 3)
    return bad(fmt::format("dedup table of {} entries exceeds the limit or the input", n));
  s.next_slot = next;
  s.config = std::move(cfg);
  s.dedup.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    KEEL_TRY_ASSIGN(c, rd.varint());
    KEEL_TRY_ASSIGN(q, rd.varint());
    KEEL_TRY_ASSIGN(sl, rd.varint());
    if (!s.dedup.empty() && c <= s.dedup.back().client_id)
      return bad("dedup table must be sorted by client id, without repeats");
    s.dedup.push_back(DedupEntry{c, q, sl});
  }
  KEEL_TRY_ASSIGN(app, rd.bytes(l.max_app_state_bytes));
  s.app_state = std::string(app);
  return s;
}

void put_chunk(Writer& w, const SnapshotChunk& c) {
  w.varint(c.total);
  w.varint(c.offset);
  w.u64be(c.checksum);
  w.bytes(c.data);
}

Result<SnapshotChunk> get_chunk(Reader& rd, const Limits& l, bool with_data) {
  SnapshotChunk c;
  KEEL_TRY_ASSIGN(total, rd.varint());
  KEEL_TRY_ASSIGN(offset, rd.varint());
  KEEL_TRY_ASSIGN(sum, rd.u64be());
  KEEL_TRY_ASSIGN(data, rd.bytes(l.max_chunk_bytes));
  // The whole snapshot is bounded like a snapshot record: its app state plus the dedup table
  // and configuration (a few MiB at most).
  const uint64_t max_total = l.max_app_state_bytes + l.max_dedup * 30 + (1u << 20);
  if (total > max_total)
    return bad(fmt::format("snapshot of {} bytes exceeds the limit of {} bytes", total, max_total));
  if (offset > total || data.size() > total - offset)
    return bad(fmt::format("chunk [{}, +{}) lies outside the snapshot of {} bytes", offset,
                           data.size(), total));
  if (!with_data && !data.empty()) return bad("a snapshot pull carries no data");
  if (with_data && data.empty()) return bad("a snapshot chunk carries no data");
  c.total = total;
  c.offset = offset;
  c.checksum = sum;
  c.data = std::string(data);
  return c;
}

Result<Bit> get_bit(Reader& rd, bool allow_question) {
  KEEL_TRY_ASSIGN(b, rd.u8());
  if (b > 2 || (b == 2 && !allow_question))
    return bad(fmt::format("bit value {} not allowed (0, 1{})", b, allow_question ? ", 2=?" : ""));
  return static_cast<Bit>(b);
}

Status check_version(Reader& rd) {
  auto v = rd.u8();
  if (!v) return std::unexpected(v.error());
  if (*v != kCodecVersion)
    return bad(fmt::format("version {} unsupported (this build speaks {})", *v, kCodecVersion));
  return {};
}

}  // namespace

size_t batch_wire_bytes(const std::vector<Request>& batch) {
  size_t n = kBatchOverheadBytes;
  for (const auto& r : batch) n += request_wire_bytes(r);
  return n;
}

size_t decision_wire_bytes(const Decision& d) {
  return kDecisionOverheadBytes + (d.null ? 0 : batch_wire_bytes(d.batch));
}

uint64_t snapshot_checksum(std::string_view b) {
  uint64_t h = mix64(0x736e61702d73756dULL ^ b.size());  // "snap-sum"
  size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    uint64_t v = 0;  // little-endian whatever the host: every member computes the same sum
    for (size_t k = 0; k < 8; ++k) v |= uint64_t{static_cast<unsigned char>(b[i + k])} << (8 * k);
    h = mix64(h ^ v) + i;
  }
  uint64_t tail = 0;
  for (size_t k = 0; i + k < b.size(); ++k)
    tail |= uint64_t{static_cast<unsigned char>(b[i + k])} << (8 * k);
  return mix64(h ^ tail);
}

std::string encode(const Message& m) {
  std::string out;
  Writer w(out);
  w.u8(kCodecVersion);
  w.u8(static_cast<uint8_t>(m.type));
  w.varint(m.from);
  w.varint(m.to);
  switch (m.type) {
    case MsgType::kForward:
      put_requests(w, m.requests);
      break;
    case MsgType::kProposal:
      w.varint(m.slot);
      put_requests(w, m.requests);
      break;
    case MsgType::kState:
    case MsgType::kVote:
      w.varint(m.slot);
      w.varint(m.phase);
      w.u8(static_cast<uint8_t>(m.bit));
      break;
    case MsgType::kDecided:
      w.varint(m.decisions.size());
      for (const auto& d : m.decisions) put_decision(w, d);
      break;
    case MsgType::kCatchUp:
      w.varint(m.slot);
      break;
    case MsgType::kSnapshot:
      put_snapshot(w, m.snapshot ? *m.snapshot : Snapshot{});
      break;
    case MsgType::kSnapshotChunk:
    case MsgType::kSnapshotPull:
      w.varint(m.slot);
      put_chunk(w, m.chunk ? *m.chunk : SnapshotChunk{});
      break;
  }
  return out;
}

Result<Message> decode_message(std::string_view in, const Limits& l) {
  Reader rd(in);
  if (auto s = check_version(rd); !s) return std::unexpected(s.error());
  Message m;
  KEEL_TRY_ASSIGN(type, rd.u8());
  if (type < 1 || type > 9) return bad(fmt::format("message type {} unknown (allowed 1..9)", type));
  m.type = static_cast<MsgType>(type);
  KEEL_TRY_ASSIGN(from, rd.varint());
  KEEL_TRY_ASSIGN(to, rd.varint());
  if (from > UINT32_MAX || to > UINT32_MAX) return bad("node id exceeds 32 bits");
  m.from = static_cast<NodeId>(from);
  m.to = static_cast<NodeId>(to);
  switch (m.type) {
    case MsgType::kForward: {
      KEEL_TRY_ASSIGN(reqs, get_requests(rd, l));
      m.requests = std::move(reqs);
      break;
    }
    case MsgType::kProposal: {
      KEEL_TRY_ASSIGN(slot, rd.varint());
      KEEL_TRY_ASSIGN(reqs, get_requests(rd, l));
      m.slot = slot;
      m.requests = std::move(reqs);
      break;
    }
    case MsgType::kState:
    case MsgType::kVote: {
      KEEL_TRY_ASSIGN(slot, rd.varint());
      KEEL_TRY_ASSIGN(phase, rd.varint());
      if (phase == 0 || phase > UINT32_MAX) return bad("phase must be in 1..2^32-1");
      KEEL_TRY_ASSIGN(bit, get_bit(rd, m.type == MsgType::kVote));
      m.slot = slot;
      m.phase = static_cast<Phase>(phase);
      m.bit = bit;
      break;
    }
    case MsgType::kDecided: {
      KEEL_TRY_ASSIGN(n, rd.varint());
      if (n > l.max_decisions || n > rd.remaining() / 2)
        return bad(
            fmt::format("{} decisions exceed the limit of {} or the input", n, l.max_decisions));
      for (uint64_t i = 0; i < n; ++i) {
        KEEL_TRY_ASSIGN(d, get_decision(rd, l));
        if (!m.decisions.empty() && d.slot != m.decisions.back().slot + 1)
          return bad("decisions must cover consecutive slots");
        m.decisions.push_back(std::move(d));
      }
      break;
    }
    case MsgType::kCatchUp: {
      KEEL_TRY_ASSIGN(slot, rd.varint());
      m.slot = slot;
      break;
    }
    case MsgType::kSnapshot: {
      KEEL_TRY_ASSIGN(s, get_snapshot(rd, l));
      m.snapshot = std::move(s);
      break;
    }
    case MsgType::kSnapshotChunk:
    case MsgType::kSnapshotPull: {
      KEEL_TRY_ASSIGN(slot, rd.varint());
      KEEL_TRY_ASSIGN(c, get_chunk(rd, l, m.type == MsgType::kSnapshotChunk));
      m.slot = slot;
      m.chunk = std::move(c);
      break;
    }
  }
  if (!rd.done()) return bad(fmt::format("{} trailing bytes after the message", rd.remaining()));
  return m;
}

std::string encode(const Record& r) {
  std::string out;
  Writer w(out);
  w.u8(kCodecVersion);
  w.u8(static_cast<uint8_t>(r.kind));
  switch (r.kind) {
    case Record::Kind::kProposal:
      w.varint(r.slot);
      put_requests(w, r.requests);
      break;
    case Record::Kind::kState:
    case Record::Kind::kVote:
      w.varint(r.slot);
      w.varint(r.phase);
      w.u8(static_cast<uint8_t>(r.bit));
      break;
    case Record::Kind::kDecision:
      put_decision(w, r.decision);
      break;
    case Record::Kind::kSnapshot:
      put_snapshot(w, r.snapshot);
      break;
  }
  return out;
}

Result<Record> decode_record(std::string_view in, const Limits& l) {
  Reader rd(in);
  if (auto s = check_version(rd); !s) return std::unexpected(s.error());
  Record r;
  KEEL_TRY_ASSIGN(kind, rd.u8());
  if (kind < 1 || kind > 5) return bad(fmt::format("record kind {} unknown (allowed 1..5)", kind));
  r.kind = static_cast<Record::Kind>(kind);
  switch (r.kind) {
    case Record::Kind::kProposal: {
      KEEL_TRY_ASSIGN(slot, rd.varint());
      KEEL_TRY_ASSIGN(reqs, get_requests(rd, l));
      r.slot = slot;
      r.requests = std::move(reqs);
      break;
    }
    case Record::Kind::kState:
    case Record::Kind::kVote: {
      KEEL_TRY_ASSIGN(slot, rd.varint());
      KEEL_TRY_ASSIGN(phase, rd.varint());
      if (phase == 0 || phase > UINT32_MAX) return bad("phase must be in 1..2^32-1");
      KEEL_TRY_ASSIGN(bit, get_bit(rd, r.kind == Record::Kind::kVote));
      r.slot = slot;
      r.phase = static_cast<Phase>(phase);
      r.bit = bit;
      break;
    }
    case Record::Kind::kDecision: {
      KEEL_TRY_ASSIGN(d, get_decision(rd, l));
      r.slot = d.slot;
      r.decision = std::move(d);
      break;
    }
    case Record::Kind::kSnapshot: {
      KEEL_TRY_ASSIGN(s, get_snapshot(rd, l));
      r.slot = s.next_slot;
      r.snapshot = std::move(s);
      break;
    }
  }
  if (!rd.done()) return bad(fmt::format("{} trailing bytes after the record", rd.remaining()));
  return r;
}

std::string encode(const Snapshot& s) {
  std::string out;
  Writer w(out);
  w.u8(kCodecVersion);
  put_snapshot(w, s);
  return out;
}

Result<Snapshot> decode_snapshot(std::string_view in, const Limits& l) {
  Reader rd(in);
  if (auto s = check_version(rd); !s) return std::unexpected(s.error());
  KEEL_TRY_ASSIGN(s, get_snapshot(rd, l));
  if (!rd.done()) return bad("trailing bytes after the snapshot");
  return s;
}

}  // namespace keel::rabia
