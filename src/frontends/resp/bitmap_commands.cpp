// Bitmap commands on strings: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO. Bit 0 is the most
// significant bit of the first byte, as in Redis. Replies, errors and the order in which
// arguments are checked follow Redis 7.2's bitops.c. SETBIT changes the string through
// Engine::update (its TTL stays), so the effect recorder replicates the resulting string.
#include <bit>

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

constexpr int64_t kMaxBitmapBytes = 512ll << 20;  // Redis's default proto-max-bulk-len

bool parse_bit_offset(std::string_view s, int64_t& out, Reply& r) {
  if (!parse_int64(s, out) || out < 0 || (out >> 3) >= kMaxBitmapBytes) {
    r.error("ERR bit offset is not an integer or out of range");
    return false;
  }
  return true;
}

// The string at `key` (absent: nullopt). Replies WRONGTYPE and returns false for another type.
bool string_lookup(CmdCtx& c, std::string_view key, std::optional<ValueRef>& out, Reply& r) {
  out = lookup(c, key);
  if (out && out->type != ValueType::kString) {
    r.wrong_type();
    return false;
  }
  return true;
}

bool bit_at(std::string_view s, int64_t bit) {
  return (static_cast<unsigned char>(s[static_cast<size_t>(bit >> 3)]) >> (7 - (bit & 7))) & 1;
}

void cmd_setbit(CmdCtx& c, Args a, Reply& r) {
  int64_t offset;
  if (!parse_bit_offset(a[2], offset, r)) return;
  int64_t on;
  if (!parse_int64(a[3], on) || (on & ~1)) return r.error("ERR bit is not an integer or out of range");
  bool wrong = false, old = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    Value* v = cur ? cur : scratch;
    v->type = ValueType::kString;
    const auto byte = static_cast<size_t>(offset >> 3);
    if (v->str.size() <= byte) v->str.resize(byte + 1, '\0');
    const auto mask = static_cast<unsigned char>(1u << (7 - (offset & 7)));
    auto& ch = reinterpret_cast<unsigned char&>(v->str[byte]);
    old = ch & mask;
    if (on) ch |= mask;
    else ch &= static_cast<unsigned char>(~mask);
    return UpdateAction::kWrite;
  });
  if (wrong) return r.wrong_type();
  if (!st) return reply_status_error(r, st.error());
  r.integer(old ? 1 : 0);
}

void cmd_getbit(CmdCtx& c, Args a, Reply& r) {
  int64_t offset;
  if (!parse_bit_offset(a[2], offset, r)) return;
  std::optional<ValueRef> v;
  if (!string_lookup(c, a[1], v, r)) return;
  if (!v || (offset >> 3) >= static_cast<int64_t>(v->str.size())) return r.integer(0);
  r.integer(bit_at(v->str, offset) ? 1 : 0);
}

// Resolves [start, end] (bytes, or bits with `isbit`; negative from the end) against a string of
// `len` bytes into an inclusive bit range. False if empty.
bool bit_range(int64_t start, int64_t end, bool isbit, int64_t len, int64_t& first, int64_t& last) {
  int64_t total = isbit ? len * 8 : len;
  if (start < 0) start = total + start;
  if (end < 0) end = total + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= total) end = total - 1;
  if (start > end) return false;
  first = isbit ? start : start * 8;
  last = isbit ? end : end * 8 + 7;
  return true;
}

bool parse_unit(std::string_view s, bool& isbit) {
  if (iequals(s, "bit")) isbit = true;
  else if (iequals(s, "byte")) isbit = false;
  else return false;
  return true;
}

// BITCOUNT key [start end [BYTE|BIT]]
void cmd_bitcount(CmdCtx& c, Args a, Reply& r) {
  int64_t start = 0, end = -1;
  bool isbit = false;
  if (a.size() == 4 || a.size() == 5) {
    if (!parse_int64(a[2], start) || !parse_int64(a[3], end)) return r.not_integer();
    if (a.size() == 5 && !parse_unit(a[4], isbit)) return r.syntax_error();
  } else if (a.size() != 2) {
    return r.syntax_error();
  }
  std::optional<ValueRef> v;
  if (!string_lookup(c, a[1], v, r)) return;
  if (!v) return r.integer(0);
  if (start < 0 && end < 0 && start > end) return r.integer(0);
  int64_t first, last;
  if (!bit_range(start, end, isbit, static_cast<int64_t>(v->str.size()), first, last)) return r.integer(0);
  int64_t n = 0;
  int64_t b = first;
  for (; b <= last && (b & 7); ++b) n += bit_at(v->str, b);
  for (; b + 7 <= last; b += 8) n += std::popcount(static_cast<unsigned char>(v->str[static_cast<size_t>(b >> 3)]));
  for (; b <= last; ++b) n += bit_at(v->str, b);
  r.integer(n);
}

// BITPOS key bit [start [end [BYTE|BIT]]]
void cmd_bitpos(CmdCtx& c, Args a, Reply& r) {
  int64_t bit;
  if (!parse_int64(a[2], bit)) return r.not_integer();
  if (bit != 0 && bit != 1) return r.error("ERR The bit argument must be 1 or 0.");
  int64_t start = 0, end = -1;
  bool isbit = false, end_given = false;
  if (a.size() >= 4 && a.size() <= 6) {
    if (!parse_int64(a[3], start)) return r.not_integer();
    if (a.size() == 6 && !parse_unit(a[5], isbit)) return r.syntax_error();
    if (a.size() >= 5) {
      if (!parse_int64(a[4], end)) return r.not_integer();
      end_given = true;
    }
  } else if (a.size() != 3) {
    return r.syntax_error();
  }
  std::optional<ValueRef> v;
  if (!string_lookup(c, a[1], v, r)) return;
  // A missing key is an infinite run of zeros.
  if (!v) return r.integer(bit ? -1 : 0);
  int64_t first, last;
  if (!bit_range(start, end, isbit, static_cast<int64_t>(v->str.size()), first, last)) return r.integer(-1);
  for (int64_t b = first; b <= last; ++b) {
    if (!(b & 7) && b + 7 <= last) {
      const auto byte = static_cast<unsigned char>(v->str[static_cast<size_t>(b >> 3)]);
      if (byte == (bit ? 0x00 : 0xff)) {
        b += 7;
        continue;
      }
    }
    if (bit_at(v->str, b) == (bit == 1)) return r.integer(b);
  }
  // Looking for a clear bit with no end given: the string continues with zeros after it.
  if (bit == 0 && !end_given) return r.integer(last + 1);
  r.integer(-1);
}

// BITOP AND|OR|XOR|NOT destkey key [key ...]
void cmd_bitop(CmdCtx& c, Args a, Reply& r) {
  enum { kAnd, kOr, kXor, kNot } op;
  if (iequals(a[1], "and")) op = kAnd;
  else if (iequals(a[1], "or")) op = kOr;
  else if (iequals(a[1], "xor")) op = kXor;
  else if (iequals(a[1], "not")) op = kNot;
  else return r.syntax_error();
  if (op == kNot && a.size() != 4) return r.error("ERR BITOP NOT must be called with a single source key.");
  std::vector<std::string> srcs;
  size_t maxlen = 0;
  for (size_t i = 3; i < a.size(); ++i) {
    std::optional<ValueRef> v;
    if (!string_lookup(c, a[i], v, r)) return;
    srcs.emplace_back(v ? std::string(v->str) : std::string());
    maxlen = std::max(maxlen, srcs.back().size());
  }
  std::string out(maxlen, '\0');
  for (size_t j = 0; j < maxlen; ++j) {
    auto at = [&](size_t k) { return j < srcs[k].size() ? static_cast<unsigned char>(srcs[k][j]) : 0u; };
    unsigned x = at(0);
    if (op == kNot) x = ~x;
    for (size_t k = 1; k < srcs.size(); ++k) {
      if (op == kAnd) x &= at(k);
      else if (op == kOr) x |= at(k);
      else x ^= at(k);
    }
    out[j] = static_cast<char>(x & 0xff);
  }
  const uint32_t part = c.partition(a[2]);
  if (maxlen == 0) {
    if (auto e = c.engine->erase(part, a[2], c.now_ms); !e) return reply_status_error(r, e.error());
    return r.integer(0);
  }
  if (auto st = c.engine->set_string(part, a[2], out, 0, c.now_ms); !st) return reply_status_error(r, st.error());
  r.integer(static_cast<int64_t>(maxlen));
}

// ---- BITFIELD: integers of 1..64 bits (u1..u63, i1..i64) at any bit offset, MSB first.

enum class Overflow { kWrap, kSat, kFail };
struct FieldOp {
  enum Kind { kGet, kSet, kIncrBy } kind;
  bool sign;
  unsigned bits;
  uint64_t offset;
  int64_t value;  // SET's value or INCRBY's increment
  Overflow overflow;
};

uint64_t get_unsigned(const unsigned char* p, uint64_t offset, unsigned bits) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bits; ++i, ++offset) v = (v << 1) | ((p[offset >> 3] >> (7 - (offset & 7))) & 1u);
  return v;
}
int64_t get_signed(const unsigned char* p, uint64_t offset, unsigned bits) {
  uint64_t u = get_unsigned(p, offset, bits);
  if (bits < 64 && (u & (uint64_t{1} << (bits - 1)))) u |= ~uint64_t{0} << bits;  // sign-extend
  return static_cast<int64_t>(u);
}
void set_bits(unsigned char* p, uint64_t offset, unsigned bits, uint64_t v) {
  for (unsigned i = 0; i < bits; ++i, ++offset) {
    const bool bit = (v >> (bits - 1 - i)) & 1u;
    const auto mask = static_cast<unsigned char>(1u << (7 - (offset & 7)));
    if (bit) p[offset >> 3] |= mask;
    else p[offset >> 3] &= static_cast<unsigned char>(~mask);
  }
}

// Whether value + incr leaves an unsigned `bits`-bit integer; if so, *out is what the overflow
// policy makes of it (wrap: the low bits; sat: the bound). Redis 7.2's semantics.
bool unsigned_overflow(uint64_t value, int64_t incr, unsigned bits, Overflow ow, uint64_t* out) {
  const uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
  const auto maxincr = static_cast<int64_t>(max - value);
  const auto minincr = static_cast<int64_t>(-value);
  int dir = 0;
  if (value > max || (incr > 0 && incr > maxincr)) dir = 1;
  else if (incr < 0 && incr < minincr) dir = -1;
  if (dir == 0) return false;
  if (ow == Overflow::kWrap) *out = (value + static_cast<uint64_t>(incr)) & max;
  else if (ow == Overflow::kSat) *out = dir > 0 ? max : 0;
  return true;
}
bool signed_overflow(int64_t value, int64_t incr, unsigned bits, Overflow ow, int64_t* out) {
  const int64_t max = bits == 64 ? INT64_MAX : (int64_t{1} << (bits - 1)) - 1;
  const int64_t min = -max - 1;
  const auto maxincr = static_cast<int64_t>(static_cast<uint64_t>(max) - static_cast<uint64_t>(value));
  const auto minincr = static_cast<int64_t>(static_cast<uint64_t>(min) - static_cast<uint64_t>(value));
  int dir = 0;
  if (value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr)) dir = 1;
  else if (value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr)) dir = -1;
  if (dir == 0) return false;
  if (ow == Overflow::kWrap) {
    uint64_t c = static_cast<uint64_t>(value) + static_cast<uint64_t>(incr);
    if (bits < 64) {
      const uint64_t mask = ~uint64_t{0} << bits;
      c = (c & (uint64_t{1} << (bits - 1))) ? (c | mask) : (c & ~mask);
    }
    *out = static_cast<int64_t>(c);
  } else if (ow == Overflow::kSat) {
    *out = dir > 0 ? max : min;
  }
  return true;
}

// Parses the subcommands; false once an error was replied (nothing is read or written then).
bool parse_bitfield(Args a, std::vector<FieldOp>& ops, Reply& r) {
  Overflow ow = Overflow::kWrap;
  for (size_t j = 2; j < a.size(); ++j) {
    const size_t rem = a.size() - j - 1;
    FieldOp op{};
    if (iequals(a[j], "get") && rem >= 2) op.kind = FieldOp::kGet;
    else if (iequals(a[j], "set") && rem >= 3) op.kind = FieldOp::kSet;
    else if (iequals(a[j], "incrby") && rem >= 3) op.kind = FieldOp::kIncrBy;
    else if (iequals(a[j], "overflow") && rem >= 1) {
      ++j;
      if (iequals(a[j], "wrap")) ow = Overflow::kWrap;
      else if (iequals(a[j], "sat")) ow = Overflow::kSat;
      else if (iequals(a[j], "fail")) ow = Overflow::kFail;
      else {
        r.error("ERR Invalid OVERFLOW type specified");
        return false;
      }
      continue;
    } else {
      r.syntax_error();
      return false;
    }
    std::string_view type = a[j + 1];
    int64_t bits = 0;
    if (type.empty() || (type[0] != 'i' && type[0] != 'u') || !parse_int64(type.substr(1), bits) || bits < 1 ||
        bits > (type[0] == 'i' ? 64 : 63)) {
      r.error("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.");
      return false;
    }
    op.sign = type[0] == 'i';
    op.bits = static_cast<unsigned>(bits);
    std::string_view off = a[j + 2];
    const bool hash = !off.empty() && off[0] == '#';
    int64_t offset = 0;
    bool ok = parse_int64(hash ? off.substr(1) : off, offset) && offset >= 0;
    if (ok && hash) {  // #n: the n-th field of this width
      ok = offset <= INT64_MAX / bits;
      offset *= ok ? bits : 1;
    }
    if (!ok || (offset >> 3) >= kMaxBitmapBytes) {
      r.error("ERR bit offset is not an integer or out of range");
      return false;
    }
    op.offset = static_cast<uint64_t>(offset);
    if (op.kind != FieldOp::kGet && !parse_int64(a[j + 3], op.value)) {
      r.not_integer();
      return false;
    }
    op.overflow = ow;
    ops.push_back(op);
    j += op.kind == FieldOp::kGet ? 2 : 3;
  }
  return true;
}

void reply_gets(const std::vector<FieldOp>& ops, std::string_view str, Reply& r) {
  r.array(ops.size());
  for (const auto& op : ops) {
    // Up to 9 bytes from the field's first byte, zero beyond the string's end.
    unsigned char buf[9] = {};
    const uint64_t byte = op.offset >> 3;
    for (uint64_t i = 0; i < 9 && byte + i < str.size(); ++i) buf[i] = static_cast<unsigned char>(str[byte + i]);
    const uint64_t at = op.offset - byte * 8;
    if (op.sign) r.integer(get_signed(buf, at, op.bits));
    else r.integer(static_cast<int64_t>(get_unsigned(buf, at, op.bits)));
  }
}

// BITFIELD key [GET type offset | SET type offset value | INCRBY type offset increment |
// OVERFLOW WRAP|SAT|FAIL]... (BITFIELD_RO: GET only). Every subcommand runs in one update of
// the key, so the string that results is what replicas receive.
void bitfield(CmdCtx& c, Args a, Reply& r, bool read_only_cmd) {
  std::vector<FieldOp> ops;
  if (!parse_bitfield(a, ops, r)) return;
  uint64_t highest = 0;
  bool writes = false;
  for (const auto& op : ops)
    if (op.kind != FieldOp::kGet) {
      writes = true;
      highest = std::max(highest, op.offset + op.bits - 1);
    }
  if (!writes) {
    std::optional<ValueRef> v;
    if (!string_lookup(c, a[1], v, r)) return;
    return reply_gets(ops, v ? std::string_view(v->str) : std::string_view(), r);
  }
  if (read_only_cmd) return r.error("ERR BITFIELD_RO only supports the GET subcommand");
  bool wrong = false;
  std::vector<std::optional<int64_t>> results;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    Value* v = cur ? cur : scratch;
    v->type = ValueType::kString;
    // The key is created (or zero-padded) up to the farthest bit written, as Redis does, even
    // when every write fails with OVERFLOW FAIL.
    if (v->str.size() < (highest >> 3) + 1) v->str.resize((highest >> 3) + 1, '\0');
    auto* p = reinterpret_cast<unsigned char*>(v->str.data());
    for (const auto& op : ops) {
      if (op.kind == FieldOp::kGet) {
        results.emplace_back(op.sign ? get_signed(p, op.offset, op.bits)
                                     : static_cast<int64_t>(get_unsigned(p, op.offset, op.bits)));
        continue;
      }
      bool failed = false;
      if (op.sign) {
        const int64_t old = get_signed(p, op.offset, op.bits);
        int64_t next = 0, wrapped = 0;
        if (op.kind == FieldOp::kIncrBy) {
          const bool of = signed_overflow(old, op.value, op.bits, op.overflow, &wrapped);
          next = of ? wrapped : static_cast<int64_t>(static_cast<uint64_t>(old) + static_cast<uint64_t>(op.value));
          failed = of && op.overflow == Overflow::kFail;
          if (!failed) results.emplace_back(next);
        } else {
          const bool of = signed_overflow(op.value, 0, op.bits, op.overflow, &wrapped);
          next = of ? wrapped : op.value;
          failed = of && op.overflow == Overflow::kFail;
          if (!failed) results.emplace_back(old);
        }
        if (!failed) set_bits(p, op.offset, op.bits, static_cast<uint64_t>(next));
      } else {
        const uint64_t old = get_unsigned(p, op.offset, op.bits);
        uint64_t next = 0, wrapped = 0;
        if (op.kind == FieldOp::kIncrBy) {
          const bool of = unsigned_overflow(old, op.value, op.bits, op.overflow, &wrapped);
          next = of ? wrapped : old + static_cast<uint64_t>(op.value);
          failed = of && op.overflow == Overflow::kFail;
          if (!failed) results.emplace_back(static_cast<int64_t>(next));
        } else {
          const bool of = unsigned_overflow(static_cast<uint64_t>(op.value), 0, op.bits, op.overflow, &wrapped);
          next = of ? wrapped : static_cast<uint64_t>(op.value);
          failed = of && op.overflow == Overflow::kFail;
          if (!failed) results.emplace_back(static_cast<int64_t>(old));
        }
        if (!failed) set_bits(p, op.offset, op.bits, next);
      }
      if (failed) results.emplace_back(std::nullopt);
    }
    return UpdateAction::kWrite;
  });
  if (wrong) return r.wrong_type();
  if (!st) return reply_status_error(r, st.error());
  r.array(results.size());
  for (const auto& v : results) {
    if (v) r.integer(*v);
    else r.null();
  }
}

void cmd_bitfield(CmdCtx& c, Args a, Reply& r) { bitfield(c, a, r, false); }
void cmd_bitfield_ro(CmdCtx& c, Args a, Reply& r) { bitfield(c, a, r, true); }

}  // namespace

void register_bitmap_commands(std::vector<CommandSpec>& t) {
  const auto R = Routing::kKey;
  t.push_back({"setbit", 4, kWrite | kDenyOom, 1, 1, 1, R, cmd_setbit, "bitmap", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", "2.2.0"});
  t.push_back({"getbit", 3, kReadonly | kFast, 1, 1, 1, R, cmd_getbit, "bitmap", "Returns a bit value by offset.", "2.2.0"});
  t.push_back({"bitcount", -2, kReadonly, 1, 1, 1, R, cmd_bitcount, "bitmap", "Counts the number of set bits (population counting) in a string.", "2.6.0"});
  t.push_back({"bitpos", -3, kReadonly, 1, 1, 1, R, cmd_bitpos, "bitmap", "Finds the first set (1) or clear (0) bit in a string.", "2.8.7"});
  t.push_back({"bitfield", -2, kWrite | kDenyOom, 1, 1, 1, R, cmd_bitfield, "bitmap", "Performs arbitrary bitfield integer operations on strings.", "3.2.0"});
  t.push_back({"bitfield_ro", -2, kReadonly | kFast, 1, 1, 1, R, cmd_bitfield_ro, "bitmap", "Performs arbitrary read-only bitfield integer operations on strings.", "6.0.0"});
  t.push_back({"bitop", -4, kWrite | kDenyOom, 2, -1, 1, R, cmd_bitop, "bitmap", "Performs bitwise operations on multiple strings, and stores the result.", "2.6.0"});
}

}  // namespace keel::resp
