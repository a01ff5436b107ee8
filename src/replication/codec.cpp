// Binary codec of the replication messages (copy.h): version byte, type byte, then the fields
// as varints and length-prefixed bytes. Decoding checks every count against what the input
// can hold and against kMaxDecodeEntries / kMaxEffectBytes before allocating.
#include <fmt/format.h>

#include "base/codec.h"
#include "replication/copy.h"

namespace keel::replication {
namespace {

// 2: resumable snapshot transfers; 3: settle_lsn; 4: the effects inside changed (dht/effect.h:
// patches, op 4; a whole list carries its change number; list patches, delta op 22), so an
// older node refuses them by version instead of misreading them.
constexpr uint8_t kVersion = 4;
enum Type : uint8_t {
  kAppend = 1,
  kAppendAck = 2,
  kSnapshotBegin = 3,
  kSnapshotChunk = 4,
  kFence = 5,
  kFenceAck = 6,
};

std::unexpected<Error> bad(std::string what) {
  return make_error(Errc::kCorruption, "replication codec: " + what);
}

#define KEEL_REPL_TRY(var, expr)                         \
  auto var##_r = (expr);                                 \
  if (!var##_r) return std::unexpected(var##_r.error()); \
  auto var = *var##_r

Result<uint64_t> get_count(Reader& rd, const char* what, size_t min_bytes_each) {
  KEEL_REPL_TRY(n, rd.varint());
  if (n > kMaxDecodeEntries)
    return bad(fmt::format("{} count {} exceeds the limit of {}", what, n, kMaxDecodeEntries));
  if (n > rd.remaining() / min_bytes_each)
    return bad(fmt::format("{} count {} is larger than the input can hold", what, n));
  return n;
}

Result<int64_t> get_ms(Reader& rd) { return rd.svarint(); }

}  // namespace

void Effect::free_buf(Buf* b) {
  b->~Buf();
  std::free(b);
}

std::string encode(const Message& m) {
  std::string out;
  encode_to(out, m);
  return out;
}

void encode_to(std::string& out, const Message& m) {
  Writer w(out);
  w.u8(kVersion);
  std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, Append>) {
          w.u8(kAppend);
          w.varint(msg.epoch);
          w.varint(msg.prev_lsn);
          w.varint(msg.prev_epoch);
          w.varint(msg.commit_lsn);
          w.svarint(msg.sent_ms);
          w.varint(msg.entries.size());
          for (const Entry& e : msg.entries) {
            w.varint(e.lsn);
            w.varint(e.epoch);
            w.bytes(e.effect);
          }
        } else if constexpr (std::is_same_v<T, AppendAck>) {
          w.u8(kAppendAck);
          w.varint(msg.epoch);
          w.varint(msg.durable_lsn);
          w.varint(msg.last_lsn);
          w.varint(msg.last_epoch);
          w.u8(msg.mismatch ? 1 : 0);
          w.svarint(msg.echo_sent_ms);
          w.u8(msg.resumable ? 1 : 0);
          if (msg.resumable) {
            w.varint(msg.resume_lsn);
            w.varint(msg.resume_epoch);
            w.bytes(msg.resume_key);
            w.varint(msg.resume_source);
          }
        } else if constexpr (std::is_same_v<T, SnapshotBegin>) {
          w.u8(kSnapshotBegin);
          w.varint(msg.epoch);
          w.varint(msg.snapshot_lsn);
          w.varint(msg.snapshot_epoch);
          w.varint(msg.source);
          w.u8(msg.resume ? 1 : 0);
          if (msg.resume) w.bytes(msg.resume_key);
        } else if constexpr (std::is_same_v<T, SnapshotChunk>) {
          w.u8(kSnapshotChunk);
          w.varint(msg.epoch);
          w.varint(msg.snapshot_lsn);
          w.varint(msg.seq);
          w.u8(msg.last ? 1 : 0);
          w.varint(msg.effects.size());
          for (const auto& e : msg.effects) w.bytes(e);
          w.bytes(msg.next_key);
          w.varint(msg.settle_lsn);
        } else if constexpr (std::is_same_v<T, Fence>) {
          w.u8(kFence);
          w.varint(msg.new_epoch);
        } else {
          w.u8(kFenceAck);
          w.varint(msg.new_epoch);
          w.varint(msg.last_lsn);
          w.varint(msg.epoch);
          w.varint(msg.last_epoch);
          w.u8(msg.in_sync ? 1 : 0);
        }
      },
      m);
}

namespace {
Result<Message> decode_fields(std::string_view bytes) {
  Reader rd(bytes);
  KEEL_REPL_TRY(version, rd.u8());
  if (version != kVersion)
    return bad(fmt::format("version {} unknown (this build reads version {})", version, kVersion));
  KEEL_REPL_TRY(type, rd.u8());
  Message result;
  switch (type) {
    case kAppend: {
      Append a;
      KEEL_REPL_TRY(epoch, rd.varint());
      KEEL_REPL_TRY(prev, rd.varint());
      KEEL_REPL_TRY(prev_epoch, rd.varint());
      KEEL_REPL_TRY(commit, rd.varint());
      KEEL_REPL_TRY(sent, get_ms(rd));
      KEEL_REPL_TRY(n, get_count(rd, "append entry", 3));
      a.epoch = epoch;
      a.prev_lsn = prev;
      a.prev_epoch = prev_epoch;
      a.commit_lsn = commit;
      a.sent_ms = sent;
      a.entries.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        Entry e;
        KEEL_REPL_TRY(lsn, rd.varint());
        KEEL_REPL_TRY(ep, rd.varint());
        KEEL_REPL_TRY(effect, rd.bytes(kMaxEffectBytes));
        uint64_t want = (a.entries.empty() ? prev : a.entries.back().lsn) + 1;
        if (lsn != want)
          return bad(fmt::format("append entry {} has lsn {}, expected {} (entries follow "
                                 "prev_lsn without gaps)",
                                 i, lsn, want));
        e.lsn = lsn;
        e.epoch = ep;
        e.effect = Effect(effect);
        a.entries.push_back(std::move(e));
      }
      result = std::move(a);
      break;
    }
    case kAppendAck: {
      AppendAck a;
      KEEL_REPL_TRY(epoch, rd.varint());
      KEEL_REPL_TRY(dur, rd.varint());
      KEEL_REPL_TRY(last, rd.varint());
      KEEL_REPL_TRY(last_epoch, rd.varint());
      KEEL_REPL_TRY(mm, rd.u8());
      KEEL_REPL_TRY(echo, get_ms(rd));
      if (mm > 1) return bad(fmt::format("ack mismatch flag {} (allowed: 0 or 1)", mm));
      if (dur > last)
        return bad(fmt::format("ack durable_lsn {} above last_lsn {}", dur, last));
      KEEL_REPL_TRY(res, rd.u8());
      if (res > 1) return bad(fmt::format("ack resumable flag {} (allowed: 0 or 1)", res));
      if (res == 1) {
        KEEL_REPL_TRY(rl, rd.varint());
        KEEL_REPL_TRY(re, rd.varint());
        KEEL_REPL_TRY(rk, rd.bytes(kMaxEffectBytes));
        KEEL_REPL_TRY(rs, rd.varint());
        a.resume_source = rs;
        if (mm != 1) return bad("ack asks to resume a transfer but is no mismatch (a resume rides a mismatch)");
        a.resumable = true;
        a.resume_lsn = rl;
        a.resume_epoch = re;
        a.resume_key = std::string(rk);
      }
      a.epoch = epoch;
      a.durable_lsn = dur;
      a.last_lsn = last;
      a.last_epoch = last_epoch;
      a.mismatch = mm == 1;
      a.echo_sent_ms = echo;
      result = a;
      break;
    }
    case kSnapshotBegin: {
      SnapshotBegin b;
      KEEL_REPL_TRY(epoch, rd.varint());
      KEEL_REPL_TRY(lsn, rd.varint());
      KEEL_REPL_TRY(ep, rd.varint());
      KEEL_REPL_TRY(src, rd.varint());
      b.source = src;
      KEEL_REPL_TRY(res, rd.u8());
      if (res > 1) return bad(fmt::format("snapshot begin resume flag {} (allowed: 0 or 1)", res));
      if (res == 1) {
        KEEL_REPL_TRY(rk, rd.bytes(kMaxEffectBytes));
        b.resume = true;
        b.resume_key = std::string(rk);
      }
      b.epoch = epoch;
      b.snapshot_lsn = lsn;
      b.snapshot_epoch = ep;
      result = b;
      break;
    }
    case kSnapshotChunk: {
      SnapshotChunk c;
      KEEL_REPL_TRY(epoch, rd.varint());
      KEEL_REPL_TRY(lsn, rd.varint());
      KEEL_REPL_TRY(seq, rd.varint());
      KEEL_REPL_TRY(last, rd.u8());
      if (seq > UINT32_MAX) return bad(fmt::format("chunk seq {} exceeds 32 bits", seq));
      if (last > 1) return bad(fmt::format("chunk last flag {} (allowed: 0 or 1)", last));
      KEEL_REPL_TRY(n, get_count(rd, "snapshot effect", 1));
      c.epoch = epoch;
      c.snapshot_lsn = lsn;
      c.seq = static_cast<uint32_t>(seq);
      c.last = last == 1;
      c.effects.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        KEEL_REPL_TRY(effect, rd.bytes(kMaxEffectBytes));
        c.effects.emplace_back(effect);
      }
      KEEL_REPL_TRY(nk, rd.bytes(kMaxEffectBytes));
      if (c.last && !nk.empty()) return bad("the last snapshot chunk names a next key (only earlier chunks do)");
      c.next_key = std::string(nk);
      KEEL_REPL_TRY(settle, rd.varint());
      if (!c.last && settle != 0) return bad("a snapshot chunk before the last names a settle lsn (only the last does)");
      if (c.last && settle != 0 && settle < lsn)
        return bad(fmt::format("the last snapshot chunk settles at lsn {}, before its snapshot lsn {} (allowed: 0 or at least it)", settle, lsn));
      c.settle_lsn = settle;
      result = std::move(c);
      break;
    }
    case kFence: {
      KEEL_REPL_TRY(epoch, rd.varint());
      result = Fence{.new_epoch = epoch};
      break;
    }
    case kFenceAck: {
      FenceAck a;
      KEEL_REPL_TRY(ne, rd.varint());
      KEEL_REPL_TRY(last, rd.varint());
      KEEL_REPL_TRY(epoch, rd.varint());
      KEEL_REPL_TRY(le, rd.varint());
      KEEL_REPL_TRY(sync, rd.u8());
      if (sync > 1) return bad(fmt::format("fence ack in_sync flag {} (allowed: 0 or 1)", sync));
      a.in_sync = sync == 1;
      a.new_epoch = ne;
      a.last_lsn = last;
      a.epoch = epoch;
      a.last_epoch = le;
      result = a;
      break;
    }
    default:
      return bad(fmt::format("message type {} unknown (allowed: 1..6)", type));
  }
  if (!rd.done())
    return bad(fmt::format("{} trailing bytes after the message", rd.remaining()));
  return result;
}
}  // namespace

Result<Message> decode(std::string_view bytes) {
  auto r = decode_fields(bytes);
  // The byte reader reports truncation and overlong varints with its own codes; to a caller
  // every one of them is a corrupt message.
  if (!r && r.error().code != Errc::kCorruption)
    return bad(r.error().message);
  return r;
}

}  // namespace keel::replication
