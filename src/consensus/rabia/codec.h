// Binary codec for the Rabia core's messages and durable records (src/base Writer/Reader).
// Layout: a version byte, a type byte, then the fields as varints and length-prefixed bytes.
// Decoding is bounded: counts and sizes are checked against Limits before anything is
// allocated; bad input returns kCorruption/kInvalidArgument naming the field, never crashes.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "consensus/rabia/types.h"

namespace keel::rabia {

inline constexpr uint8_t kCodecVersion = 1;

struct Limits {
  size_t max_requests = 4096;   // requests in one message or record
  size_t max_decisions = 1024;  // decisions in one kDecided
  size_t max_payload_bytes = 1 << 20;
  size_t max_app_state_bytes = 256u << 20;
  size_t max_members = 64;
  size_t max_dedup = kMaxDedupClients;
};

std::string encode(const Message& m);
Result<Message> decode_message(std::string_view in, const Limits& limits = {});

std::string encode(const Record& r);
Result<Record> decode_record(std::string_view in, const Limits& limits = {});

std::string encode(const Snapshot& s);
Result<Snapshot> decode_snapshot(std::string_view in, const Limits& limits = {});

}  // namespace keel::rabia
