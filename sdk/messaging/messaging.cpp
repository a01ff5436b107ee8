#include <chrono>
#include <random>

#include "keel/messaging/messaging.h"

namespace keel::messaging {

Fields encode_fields(std::string payload, const Headers& headers) {
  Fields f;
  f.reserve(headers.size() + 1);
  f.emplace_back("payload", std::move(payload));
  for (const auto& [k, v] : headers) f.emplace_back("h:" + k, v);
  return f;
}

bool decode_fields(const Fields& fields, std::string& payload, Headers& headers) {
  bool found = false;
  for (const auto& [k, v] : fields) {
    if (k == "payload") {
      payload = v;
      found = true;
    } else if (k.starts_with("h:")) {
      headers.emplace_back(k.substr(2), v);
    }
  }
  return found;
}

std::string new_message_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t v = rng();
    for (int i = 0; i < 16; ++i) s[static_cast<size_t>(half * 16 + i)] = hex[(v >> (i * 4)) & 15];
  }
  return s;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace keel::messaging
