#include "security/secrets.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

namespace keel::security::secrets {

using json = nlohmann::json;

Status check_path(std::string_view path) {
  auto bad = [&](std::string why) {
    return make_error(Errc::kInvalidArgument, fmt::format("secret path '{}' {}; allowed: segments of letters, digits, "
                                                          "'_', '-', '.' separated by '/' (e.g. db/orders/password)",
                                                          path.substr(0, 80), why));
  };
  if (path.empty()) return bad("is empty");
  if (path.size() > kMaxPathBytes) return bad(fmt::format("is longer than {} bytes", kMaxPathBytes));
  if (path.front() == '/' || path.back() == '/') return bad("starts or ends with '/'");
  char prev = 0;
  for (char c : path) {
    if (c == '/' && prev == '/') return bad("has an empty segment");
    if (c != '/' && !std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return bad(fmt::format("has '{}'", c));
    prev = c;
  }
  return {};
}

Status add_version(Secret& s, std::string sealed, int64_t now_ms, std::optional<uint32_t> cas) {
  if (cas && *cas != s.current)
    return make_error(Errc::kConflict, fmt::format("secret '{}' is at version {}, not {} (CAS): read it again", s.path,
                                                   s.current, *cas));
  s.current += 1;
  s.versions[s.current] = Version{std::move(sealed), now_ms};
  while (s.versions.size() > s.max_versions) s.versions.erase(s.versions.begin());
  return {};
}

Result<uint32_t> change_versions(Secret& s, VersionOp op, const std::vector<uint32_t>& versions, int64_t now_ms) {
  if (versions.empty() || versions.size() > kMaxVersionsPerChange)
    return make_error(Errc::kInvalidArgument, fmt::format("name 1 to {} versions, got {}", kMaxVersionsPerChange,
                                                          versions.size()));
  for (size_t i = 0; i < versions.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (versions[j] == versions[i])
        return make_error(Errc::kInvalidArgument, fmt::format("version {} is named twice", versions[i]));
    if (!s.versions.count(versions[i]))
      return make_error(Errc::kNotFound, fmt::format("secret '{}' has no version {} (kept: {})", s.path, versions[i],
                                                     s.versions.empty() ? std::string("none")
                                                                        : fmt::format("{} to {}", s.versions.begin()->first,
                                                                                      s.versions.rbegin()->first)));
    if (op == VersionOp::kUndelete && s.versions[versions[i]].destroyed)
      return make_error(Errc::kConflict, fmt::format("version {} of secret '{}' is destroyed: its value is gone and "
                                                     "cannot be undeleted",
                                                     versions[i], s.path));
  }
  uint32_t changed = 0;
  for (uint32_t v : versions) {
    Version& ver = s.versions[v];
    switch (op) {
      case VersionOp::kDelete:
        if (ver.deleted_ms == 0 && !ver.destroyed) ver.deleted_ms = std::max<int64_t>(1, now_ms), ++changed;
        break;
      case VersionOp::kUndelete:
        if (ver.deleted_ms != 0) ver.deleted_ms = 0, ++changed;
        break;
      case VersionOp::kDestroy:
        if (!ver.destroyed) {
          std::fill(ver.sealed.begin(), ver.sealed.end(), '\0');
          ver.sealed.clear();
          ver.destroyed = true;
          ++changed;
        }
        break;
    }
  }
  return changed;
}

Status readable(const Secret& s, uint32_t v) {
  auto it = s.versions.find(v);
  if (it == s.versions.end())
    return make_error(Errc::kNotFound, fmt::format("secret '{}' has no version {} (kept: {} to {})", s.path, v,
                                                   s.versions.empty() ? 0 : s.versions.begin()->first, s.current));
  if (it->second.destroyed)
    return make_error(Errc::kNotFound, fmt::format("version {} of secret '{}' is destroyed (SECRET.DESTROY): its value "
                                                   "is gone; SECRET.VERSIONS lists the others",
                                                   v, s.path));
  if (it->second.deleted_ms != 0)
    return make_error(Errc::kNotFound, fmt::format("version {} of secret '{}' is deleted; SECRET.UNDELETE {} VERSIONS {} "
                                                   "restores it",
                                                   v, s.path, s.path, v));
  return {};
}

std::string encode(const Secret& s) {
  json versions = json::object();
  for (const auto& [v, ver] : s.versions) {
    json j{{"sealed", ver.sealed}, {"created_ms", ver.created_ms}};
    if (ver.deleted_ms) j["deleted_ms"] = ver.deleted_ms;
    if (ver.destroyed) j["destroyed"] = true;
    versions[std::to_string(v)] = std::move(j);
  }
  return json{{"path", s.path}, {"current", s.current}, {"max_versions", s.max_versions}, {"versions", versions}}.dump();
}

Result<Secret> decode(std::string_view text) {
  auto bad = [](std::string what) { return make_error(Errc::kCorruption, "stored secret: " + what); };
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  Secret s;
  if (!j.contains("path") || !j["path"].is_string()) return bad("no path");
  s.path = j["path"].get<std::string>();
  if (!j.contains("current") || !j["current"].is_number_unsigned()) return bad("no current version");
  s.current = j["current"].get<uint32_t>();
  if (j.contains("max_versions") && j["max_versions"].is_number_unsigned())
    s.max_versions = std::max<uint32_t>(1, j["max_versions"].get<uint32_t>());
  if (!j.contains("versions") || !j["versions"].is_object()) return bad("no versions");
  for (auto& [vs, vj] : j["versions"].items()) {
    uint32_t v = 0;
    if (std::from_chars(vs.data(), vs.data() + vs.size(), v).ptr != vs.data() + vs.size() || v == 0 || v > s.current)
      return bad("version '" + vs + "' is not a number from 1 to the current version");
    if (!vj.is_object() || !vj.contains("sealed") || !vj["sealed"].is_string()) return bad("version " + vs + " has no value");
    Version ver;
    ver.sealed = vj["sealed"].get<std::string>();
    if (vj.contains("created_ms") && vj["created_ms"].is_number_integer()) ver.created_ms = vj["created_ms"].get<int64_t>();
    if (vj.contains("deleted_ms") && vj["deleted_ms"].is_number_integer()) ver.deleted_ms = vj["deleted_ms"].get<int64_t>();
    if (vj.contains("destroyed") && vj["destroyed"].is_boolean()) ver.destroyed = vj["destroyed"].get<bool>();
    if (ver.sealed.empty() && !ver.destroyed) return bad("version " + vs + " has no value");
    s.versions.emplace(v, std::move(ver));
  }
  return s;
}

}  // namespace keel::security::secrets
