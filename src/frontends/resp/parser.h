// A bounded, incremental RESP request parser (multibulk and inline), with Redis 7's error
// texts. It never allocates beyond its limits: argument positions are kept as offsets into the
// caller's buffer, relative to the start of the request being parsed, so the caller may grow
// or compact its buffer between calls as long as the unconsumed bytes keep their order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace keel::resp {

struct ParserLimits {
  uint64_t max_bulk_len = 512ull << 20;     // Redis proto-max-bulk-len
  uint64_t max_multibulk_len = 1024 * 1024; // arguments in one request
  size_t max_inline_len = 64 * 1024;        // Redis PROTO_INLINE_MAX_SIZE
};

class Parser {
 public:
  enum class Result { kNeedMore, kRequest, kEmpty, kError };

  explicit Parser(const ParserLimits& limits = {}) : limits_(limits) {}

  // Parses one request from `data` (which starts at the first unconsumed byte).
  // kRequest: a complete request; `consumed()` bytes belong to it and arg(i) gives views.
  // kEmpty: an empty line or a "*0"/"*-1" header was skipped; consumed() bytes to drop.
  // kNeedMore: feed the same bytes again with more appended; nothing is consumed.
  // kError: protocol error; error() is Redis's message (without the "ERR " prefix) and the
  //         connection must be closed after replying.
  Result parse(std::string_view data);

  size_t consumed() const { return consumed_; }
  // The arguments of the request just parsed (kRequest). Views point into `data` (the same
  // bytes given to parse) or, for inline requests, into the parser; valid until the next parse.
  void args(std::string_view data, std::vector<std::string_view>& out) const;
  const std::string& error() const { return error_; }
  // Total size the current request is known to need, for buffer pre-sizing (0 if unknown).
  size_t bytes_wanted() const { return wanted_; }

 private:
  Result parse_inline(std::string_view data);
  Result fail(std::string msg);
  void reset();

  ParserLimits limits_;
  // State kept across kNeedMore so that a large request is not re-scanned on every read.
  int64_t expected_ = -1;  // multibulk count; -1 = header not parsed yet
  size_t cursor_ = 0;      // resume offset inside the request
  std::vector<std::pair<size_t, size_t>> spans_;  // (offset, length) relative to the request
  std::vector<std::string> inline_args_;
  bool inline_ = false;
  size_t consumed_ = 0;
  size_t wanted_ = 0;
  std::string error_;
};

// Splits an inline command line as Redis's sdssplitargs does (quotes, \x escapes).
// Returns false on unbalanced quotes.
bool split_inline_args(std::string_view line, std::vector<std::string>& out);

}  // namespace keel::resp
