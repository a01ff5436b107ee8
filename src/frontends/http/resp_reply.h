// What the HTTP routes that run RESP commands (/v1/kv, /v1/caches entries) need to read the
// RESP2 replies back: one value, and how a data-path error becomes an HTTP answer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace keel::http {

bool valid_utf8(std::string_view s);

// One RESP2 reply: a simple string, an error, an integer, a bulk string or null, or an array
// of bulk strings (HGETALL).
struct Resp2 {
  char kind = 0;  // '+', '-', ':', '$' (null: is_null), '*'
  std::string text;
  bool is_null = false;
  int64_t number = 0;
  std::vector<std::string> items;
};
Resp2 parse_resp2(std::string_view s);

// A RESP2 reply of any depth (XRANGE, XREADGROUP: arrays of arrays). kind as Resp2's; a null
// bulk string or null array has is_null set. A malformed or truncated reply yields kind 0.
struct RespNode {
  char kind = 0;
  std::string text;
  bool is_null = false;
  int64_t number = 0;
  std::vector<RespNode> items;
};
RespNode parse_resp2_tree(std::string_view s);

// An error reply of the data path as an HTTP status and error code: a definite refusal
// (TRYAGAIN, CLUSTERDOWN: nothing applied) is 503 UNAVAILABLE; an unknown outcome (TIMEOUT) is
// 504 DEADLINE_EXCEEDED; WRONGTYPE 409, OOM 507; anything else 500 INTERNAL.
struct HttpError {
  unsigned status = 500;
  std::string code;
  std::string message;
};
HttpError resp_error_to_http(std::string_view err);

}  // namespace keel::http
