// Builds RESP2 or RESP3 replies into an output buffer. Commands call these; they never format
// protocol bytes themselves, so the same handler answers a RESP2 and a RESP3 client correctly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace keel::resp {

class Reply {
 public:
  explicit Reply(std::string& out, int protocol = 2) : out_(out), proto_(protocol) {}

  int protocol() const { return proto_; }
  void set_protocol(int p) { proto_ = p; }
  std::string& buffer() { return out_; }

  void ok() { out_.append("+OK\r\n"); }
  void simple(std::string_view s);
  // `msg` carries its prefix ("ERR ...", "WRONGTYPE ...").
  void error(std::string_view msg);
  void integer(int64_t v);
  void bulk(std::string_view s);
  void null();        // RESP2 "$-1", RESP3 "_"
  void null_array();  // RESP2 "*-1", RESP3 "_"
  void array(size_t n);
  void map(size_t n);  // RESP2: array of 2n
  void set(size_t n);  // RESP2: array
  void dbl(double v);  // RESP2: bulk string
  void boolean(bool v);  // RESP2: integer 1/0
  void verbatim(std::string_view s);  // RESP3 "=txt:", RESP2 bulk

  // Redis's common errors.
  void wrong_type() { error("WRONGTYPE Operation against a key holding the wrong kind of value"); }
  void syntax_error() { error("ERR syntax error"); }
  void not_integer() { error("ERR value is not an integer or out of range"); }
  void not_float() { error("ERR value is not a valid float"); }

 private:
  void header(char c, int64_t n);
  std::string& out_;
  int proto_;
};

// Formats a double the way Redis prints INCRBYFLOAT results (%.17Lg, trailing zeros trimmed).
std::string format_double(long double v);

}  // namespace keel::resp
