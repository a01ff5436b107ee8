#include "keel/client/reply.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace keel::client {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::kInvalidArgument: return "invalid_argument";
    case Errc::kNotFound: return "not_found";
    case Errc::kServerError: return "server_error";
    case Errc::kProtocol: return "protocol_error";
    case Errc::kIoError: return "io_error";
    case Errc::kTimeout: return "timeout";
    case Errc::kClosed: return "closed";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kRedirectLimit: return "redirect_limit";
    case Errc::kUnexpectedReply: return "unexpected_reply";
  }
  return "unknown";
}

std::string_view reply_type_name(ReplyType t) {
  switch (t) {
    case ReplyType::kSimpleString: return "simple-string";
    case ReplyType::kError: return "error";
    case ReplyType::kInteger: return "integer";
    case ReplyType::kBulkString: return "bulk-string";
    case ReplyType::kNull: return "null";
    case ReplyType::kArray: return "array";
    case ReplyType::kMap: return "map";
    case ReplyType::kSet: return "set";
    case ReplyType::kPush: return "push";
    case ReplyType::kDouble: return "double";
    case ReplyType::kBoolean: return "boolean";
    case ReplyType::kBigNumber: return "big-number";
    case ReplyType::kVerbatim: return "verbatim";
  }
  return "unknown";
}

const Reply* Reply::find(std::string_view key) const {
  if (type != ReplyType::kMap && type != ReplyType::kArray) return nullptr;
  for (size_t i = 0; i + 1 < elements.size(); i += 2)
    if (elements[i].is_string() && elements[i].str == key) return &elements[i + 1];
  return nullptr;
}

std::string Reply::debug_string() const {
  switch (type) {
    case ReplyType::kSimpleString: return str;
    case ReplyType::kError: return "(error) " + str;
    case ReplyType::kInteger: return "(integer) " + std::to_string(integer);
    case ReplyType::kBulkString: return "\"" + str + "\"";
    case ReplyType::kNull: return "(nil)";
    case ReplyType::kDouble: return "(double) " + std::to_string(dbl);
    case ReplyType::kBoolean: return boolean ? "(true)" : "(false)";
    case ReplyType::kBigNumber: return "(big) " + str;
    case ReplyType::kVerbatim: return "(" + format + ") " + str;
    default: break;
  }
  std::string out = std::string(reply_type_name(type)) + "[";
  for (size_t i = 0; i < elements.size(); ++i) {
    if (i) out += type == ReplyType::kMap && i % 2 ? ": " : ", ";
    out += elements[i].debug_string();
  }
  return out + "]";
}

Reply Reply::simple(std::string s) { Reply r; r.type = ReplyType::kSimpleString; r.str = std::move(s); return r; }
Reply Reply::error(std::string s) { Reply r; r.type = ReplyType::kError; r.str = std::move(s); return r; }
Reply Reply::bulk(std::string s) { Reply r; r.type = ReplyType::kBulkString; r.str = std::move(s); return r; }
Reply Reply::integer_value(int64_t v) { Reply r; r.type = ReplyType::kInteger; r.integer = v; return r; }
Reply Reply::null() { return Reply{}; }
Reply Reply::array(std::vector<Reply> e) { Reply r; r.type = ReplyType::kArray; r.elements = std::move(e); return r; }

bool operator==(const Reply& a, const Reply& b) {
  if (a.type != b.type || a.str != b.str || a.integer != b.integer || a.boolean != b.boolean ||
      a.format != b.format || a.elements != b.elements)
    return false;
  if (a.type == ReplyType::kDouble) return a.dbl == b.dbl || (std::isnan(a.dbl) && std::isnan(b.dbl));
  return true;
}

// ---- parser ----------------------------------------------------------------------------------

void ReplyParser::append(std::string_view bytes) {
  char* p = prepare(bytes.size());
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  commit(bytes.size());
}

char* ReplyParser::prepare(size_t n) {
  if (pos_ == size_) pos_ = size_ = 0;
  if (buf_.size() - size_ < n) {
    if (pos_ > 0) {  // slide unparsed bytes to the front before growing
      std::memmove(buf_.data(), buf_.data() + pos_, size_ - pos_);
      size_ -= pos_;
      pos_ = 0;
    }
    if (buf_.size() - size_ < n) buf_.resize(std::max(size_ + n, buf_.size() * 2));
  }
  return buf_.data() + size_;
}

void ReplyParser::commit(size_t written) { size_ += written; }

ReplyParser::Step ReplyParser::fail(std::string msg) {
  error_ = std::move(msg);
  return Step::kError;
}

ReplyParser::Step ReplyParser::parse_line(size_t& pos, std::string_view& line) {
  std::string_view rest = data(pos);
  size_t scan = std::min(rest.size(), limits_.max_line_bytes + 2);
  auto cr = rest.substr(0, scan).find("\r\n");
  if (cr == std::string_view::npos) {
    if (rest.size() > limits_.max_line_bytes + 1)
      return fail("RESP line longer than " + std::to_string(limits_.max_line_bytes) +
                  " bytes without CRLF (limit max_line_bytes)");
    return Step::kNeedMore;
  }
  line = rest.substr(0, cr);
  pos += cr + 2;
  return Step::kDone;
}

namespace {

bool parse_i64(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7f) out += c;
    else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned char>(c));
      out += b;
    }
  }
  return out;
}

}  // namespace

ReplyParser::Step ReplyParser::parse(size_t& pos, Reply& out, size_t depth) {
  if (depth > limits_.max_depth)
    return fail("RESP reply nested deeper than " + std::to_string(limits_.max_depth) +
                " aggregates (limit max_depth)");
  if (pos >= size_) return Step::kNeedMore;
  char tag = buf_[pos];
  size_t p = pos + 1;
  std::string_view line;
  if (auto s = parse_line(p, line); s != Step::kDone) return s;
  out = Reply{};
  auto length_of = [&](int64_t& n, const char* what) -> Step {
    if (!parse_i64(line, n) || n < -1)
      return fail(std::string("invalid ") + what + " length '" + printable(line) + "'");
    return Step::kDone;
  };
  switch (tag) {
    case '+':
      out.type = ReplyType::kSimpleString;
      out.str = line;
      break;
    case '-':
      out.type = ReplyType::kError;
      out.str = line;
      break;
    case ':':
      out.type = ReplyType::kInteger;
      if (!parse_i64(line, out.integer)) return fail("invalid integer '" + printable(line) + "'");
      break;
    case '_':
      if (!line.empty()) return fail("null '_' followed by '" + printable(line) + "'");
      out.type = ReplyType::kNull;
      break;
    case '#':
      if (line != "t" && line != "f") return fail("invalid boolean '" + printable(line) + "' (allowed: t, f)");
      out.type = ReplyType::kBoolean;
      out.boolean = line == "t";
      break;
    case ',': {
      out.type = ReplyType::kDouble;
      if (line == "inf" || line == "+inf") out.dbl = HUGE_VAL;
      else if (line == "-inf") out.dbl = -HUGE_VAL;
      else if (line == "nan" || line == "-nan") out.dbl = std::nan("");
      else {
        std::string tmp(line);
        char* end = nullptr;
        errno = 0;
        out.dbl = std::strtod(tmp.c_str(), &end);
        if (tmp.empty() || end != tmp.c_str() + tmp.size() || std::isspace(static_cast<unsigned char>(tmp[0])))
          return fail("invalid double '" + printable(line) + "'");
      }
      break;
    }
    case '(': {
      out.type = ReplyType::kBigNumber;
      std::string_view digits = line;
      if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos)
        return fail("invalid big number '" + printable(line) + "'");
      out.str = line;
      break;
    }
    case '$':
    case '!':
    case '=': {
      int64_t n;
      if (auto s = length_of(n, "bulk"); s != Step::kDone) return s;
      if (n == -1) {
        if (tag != '$') return fail("negative length for a blob error or verbatim string");
        out.type = ReplyType::kNull;
        break;
      }
      if (static_cast<uint64_t>(n) > limits_.max_bulk_bytes)
        return fail("bulk string of " + std::to_string(n) + " bytes exceeds the limit of " +
                    std::to_string(limits_.max_bulk_bytes) + " (max_bulk_bytes)");
      if (size_ - p < static_cast<size_t>(n) + 2) return Step::kNeedMore;
      if (buf_[p + n] != '\r' || buf_[p + n + 1] != '\n')
        return fail("bulk string of " + std::to_string(n) + " bytes not followed by CRLF");
      std::string_view body(buf_.data() + p, static_cast<size_t>(n));
      p += n + 2;
      if (tag == '$') {
        out.type = ReplyType::kBulkString;
        out.str = body;
      } else if (tag == '!') {
        out.type = ReplyType::kError;
        out.str = body;
      } else {
        if (body.size() < 4 || body[3] != ':')
          return fail("verbatim string without a 'fmt:' prefix");
        out.type = ReplyType::kVerbatim;
        out.format = body.substr(0, 3);
        out.str = body.substr(4);
      }
      break;
    }
    case '*':
    case '%':
    case '~':
    case '>':
    case '|': {
      int64_t n;
      if (auto s = length_of(n, "aggregate"); s != Step::kDone) return s;
      if (n == -1) {
        if (tag != '*') return fail("negative length for a map, set, push or attribute");
        out.type = ReplyType::kNull;
        break;
      }
      if (static_cast<uint64_t>(n) > limits_.max_aggregate_elements)
        return fail("aggregate of " + std::to_string(n) + " elements exceeds the limit of " +
                    std::to_string(limits_.max_aggregate_elements) + " (max_aggregate_elements)");
      size_t count = static_cast<size_t>(n) * ((tag == '%' || tag == '|') ? 2 : 1);
      // The header is not trusted for the allocation: reserve a bounded amount.
      std::vector<Reply> elems;
      elems.reserve(std::min<size_t>(count, 1024));
      for (size_t i = 0; i < count; ++i) {
        Reply e;
        if (auto s = parse(p, e, depth + 1); s != Step::kDone) return s;
        elems.push_back(std::move(e));
      }
      if (tag == '|') {
        // An attribute precedes the value it describes: parse that value and attach it.
        Reply value;
        if (auto s = parse(p, value, depth); s != Step::kDone) return s;
        value.attributes = std::move(elems);
        out = std::move(value);
        break;
      }
      out.type = tag == '*' ? ReplyType::kArray
                 : tag == '%' ? ReplyType::kMap
                 : tag == '~' ? ReplyType::kSet
                              : ReplyType::kPush;
      out.elements = std::move(elems);
      break;
    }
    default:
      return fail("unknown RESP type byte '" + printable(std::string_view(&tag, 1)) +
                  "' (allowed: + - : $ * _ # , ( ! = % ~ > |)");
  }
  pos = p;
  return Step::kDone;
}

ReplyParser::Status ReplyParser::next(Reply& out) {
  if (!error_.empty()) return Status::kError;
  size_t p = pos_;
  switch (parse(p, out, 0)) {
    case Step::kDone:
      pos_ = p;
      if (pos_ == size_) pos_ = size_ = 0;
      return Status::kReply;
    case Step::kNeedMore: return Status::kNeedMore;
    case Step::kError: return Status::kError;
  }
  return Status::kError;
}

// ---- encoder ---------------------------------------------------------------------------------

namespace {
template <class S>
void encode_impl(std::string& out, std::span<const S> args) {
  char num[24];
  out += '*';
  auto r = std::to_chars(num, num + sizeof num, args.size());
  out.append(num, r.ptr);
  out += "\r\n";
  for (const auto& a : args) {
    out += '$';
    r = std::to_chars(num, num + sizeof num, a.size());
    out.append(num, r.ptr);
    out += "\r\n";
    out.append(a.data(), a.size());
    out += "\r\n";
  }
}
}  // namespace

void encode_command(std::string& out, std::span<const std::string_view> args) { encode_impl(out, args); }
void encode_command(std::string& out, std::span<const std::string> args) { encode_impl(out, args); }
std::string encode_command(std::span<const std::string_view> args) {
  std::string out;
  encode_impl(out, args);
  return out;
}

Error reply_error(const Reply& r) {
  if (r.is_error()) return Error{Errc::kServerError, r.str};
  return Error{Errc::kUnexpectedReply, "unexpected reply " + r.debug_string().substr(0, 200)};
}

}  // namespace keel::client
