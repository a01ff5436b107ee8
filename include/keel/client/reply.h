// RESP3 values, the bounded reply parser and the command encoder. No I/O here: the parser is fed
// bytes and hands back complete replies, so it is tested (and fuzzed) without a socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keel/client/error.h"

namespace keel::client {

enum class ReplyType : uint8_t {
  kSimpleString,  // +OK
  kError,         // -ERR ... and !<len> blob errors
  kInteger,       // :42
  kBulkString,    // $3 foo
  kNull,          // _ , and RESP2 $-1 / *-1
  kArray,         // *
  kMap,           // % (elements hold key, value, key, value, ...)
  kSet,           // ~
  kPush,          // > (out-of-band: pub/sub messages, invalidations)
  kDouble,        // , (inf, -inf and nan included)
  kBoolean,       // #t / #f
  kBigNumber,     // ( digits kept as text in `str`
  kVerbatim,      // = format in `format` (e.g. "txt"), text in `str`
};

std::string_view reply_type_name(ReplyType t);

// One RESP3 value. Aggregates own their elements; a map stores 2*n elements (k0, v0, k1, v1...).
struct Reply {
  ReplyType type = ReplyType::kNull;
  std::string str;  // simple/bulk/verbatim/error text, big number digits
  int64_t integer = 0;
  double dbl = 0;
  bool boolean = false;
  std::string format;  // verbatim format, three characters
  std::vector<Reply> elements;
  // Attributes (|) that preceded this value, flattened like a map; usually empty.
  std::vector<Reply> attributes;

  bool is_error() const { return type == ReplyType::kError; }
  bool is_null() const { return type == ReplyType::kNull; }
  bool is_string() const {
    return type == ReplyType::kBulkString || type == ReplyType::kSimpleString ||
           type == ReplyType::kVerbatim;
  }
  bool is_aggregate() const {
    return type == ReplyType::kArray || type == ReplyType::kMap || type == ReplyType::kSet ||
           type == ReplyType::kPush;
  }
  // For a map (or a RESP2 flat key/value array): the value whose key equals `key`, or nullptr.
  const Reply* find(std::string_view key) const;
  // A compact human-readable rendering, for logs and test failures.
  std::string debug_string() const;

  static Reply simple(std::string s);
  static Reply error(std::string s);
  static Reply bulk(std::string s);
  static Reply integer_value(int64_t v);
  static Reply null();
  static Reply array(std::vector<Reply> e);
};

bool operator==(const Reply& a, const Reply& b);

// Bounds on what one reply may contain. A reply that exceeds one is a protocol error: the
// connection that received it is closed, because the stream cannot be resynchronised.
struct ParserLimits {
  size_t max_bulk_bytes = 512u << 20;    // one bulk/verbatim/blob error
  size_t max_aggregate_elements = 1u << 24;  // one array/map/set/push (a map counts pairs)
  size_t max_depth = 64;                 // nesting of aggregates
  size_t max_line_bytes = 64u << 10;     // simple strings, numbers, headers
};

// Incremental parser: append() bytes as they arrive, then call next() until it returns
// kNeedMore. After kError the parser stays failed (error() says why).
class ReplyParser {
 public:
  enum class Status { kReply, kNeedMore, kError };

  explicit ReplyParser(ParserLimits limits = {}) : limits_(limits) {}

  void append(std::string_view bytes);
  // Parses one complete reply from the buffered bytes into `out`.
  Status next(Reply& out);
  const std::string& error() const { return error_; }
  size_t buffered_bytes() const { return size_ - pos_; }
  // Direct access to the receive buffer (for zero-copy reads): reserve `n` bytes at the end,
  // write into them, then commit(written).
  char* prepare(size_t n);
  void commit(size_t written);

 private:
  enum class Step { kDone, kNeedMore, kError };
  Step parse(size_t& pos, Reply& out, size_t depth);
  Step parse_line(size_t& pos, std::string_view& line);
  std::string_view data(size_t from) const { return {buf_.data() + from, size_ - from}; }
  Step fail(std::string msg);

  ParserLimits limits_;
  std::vector<char> buf_;  // capacity; bytes [pos_, size_) are received and not yet parsed
  size_t pos_ = 0;
  size_t size_ = 0;
  std::string error_;
};

// Encodes one command as a RESP array of bulk strings (what every server accepts), appended to out.
void encode_command(std::string& out, std::span<const std::string_view> args);
void encode_command(std::string& out, std::span<const std::string> args);
std::string encode_command(std::span<const std::string_view> args);

// The text of an error reply as an Error (code kServerError), or kUnexpectedReply when `r` is
// not what the caller wanted.
Error reply_error(const Reply& r);

}  // namespace keel::client
