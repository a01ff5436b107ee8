// JsonCodec<T>: Cache values as JSON text through nlohmann::json. T needs to_json/from_json
// (e.g. NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE). Including this header needs nlohmann_json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "keel/client/error.h"

namespace keel::client {

template <class T>
struct JsonCodec {
  static std::string encode(const T& v) { return nlohmann::json(v).dump(); }
  static Result<T> decode(std::string_view bytes) {
    auto j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded())
      return make_error(Errc::kUnexpectedReply, "cached value is not valid JSON: '" + std::string(bytes.substr(0, 80)) + "'");
    try {
      return j.template get<T>();
    } catch (const nlohmann::json::exception& e) {
      return make_error(Errc::kUnexpectedReply, std::string("cached JSON does not match the type: ") + e.what());
    }
  }
};

}  // namespace keel::client
