#include "node/at_rest_admin.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <filesystem>

#include "observe/log.h"
#include "security/audit.h"

namespace keel::node {
namespace {

spdlog::logger& klog() { return observe::logger(observe::Component::kStorage); }

using security::at_rest::Keyring;
using json = nlohmann::json;

std::string_view state_name(Keyring::State s) {
  switch (s) {
    case Keyring::State::kReadable: return "readable";
    case Keyring::State::kRetired: return "retired";
    case Keyring::State::kUnknown: break;
  }
  return "unknown";
}

json status_json(const Keyring& k) {
  json versions = json::array();
  for (const auto& v : k.versions())
    versions.push_back({{"version", v.version},
                        {"state", std::string(state_name(v.state))},
                        {"current", v.current},
                        {"plaintext", v.version == 0}});
  auto p = k.rewrap_progress();
  return json{{"current", k.current_version()},
              {"keyring", k.path()},
              {"master_key", k.master_source()},
              {"versions", versions},
              {"rewrap",
               {{"target", p.target},
                {"complete", p.complete},
                {"partitions_pending", p.partitions_pending},
                {"keys_total", p.keys_total},
                {"unreadable_total", p.unreadable_total}}}};
}

// Records of the metadata log per key version: {"0": 12, "2": 40} (0: in the clear).
json versions_json(const std::map<uint32_t, uint64_t>& v) {
  json by = json::object();
  for (const auto& [version, n] : v) by[std::to_string(version)] = n;
  return json{{"records_by_key_version", std::move(by)}};
}

std::pair<int, std::string> error(int status, std::string_view code, std::string message) {
  return {status, json{{"error", {{"code", code}, {"message", std::move(message)}}}}.dump() + "\n"};
}

}  // namespace

Status open_at_rest(Config& cfg) {
  if (cfg.storage.kind != storage::EngineConfig::Kind::kPersistent) return {};
  const std::string& dir = cfg.storage.data_dir;
  if (!cfg.at_rest_enabled()) {
    if (Keyring::exists(dir))
      return make_error(Errc::kInvalidArgument,
                        fmt::format("storage.data_dir '{}' holds an at-rest keyring ({}/{}): its data is encrypted; set "
                                    "security.at_rest.key_file or security.at_rest.key_env to its master key",
                                    dir, dir, Keyring::kFileName));
    return {};
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return make_error(Errc::kIoError, fmt::format("storage.data_dir: cannot create '{}': {}", dir, ec.message()));
  auto provider = cfg.at_rest_key_file.empty() ? security::at_rest::env_provider(cfg.at_rest_key_env)
                                               : security::at_rest::key_file_provider(cfg.at_rest_key_file);
  auto kr = Keyring::open(dir, *provider);
  if (!kr) return std::unexpected(kr.error());
  cfg.storage.keyring = *kr;
  cfg.storage.rewrap_keys_per_s = static_cast<double>(cfg.at_rest_rewrap_keys_per_s);
  klog().info("storage: encryption at rest on: values sealed with AES-256-GCM under key version {} ({}), master key "
              "from {}",
              (*kr)->current_version(), (*kr)->path(), (*kr)->master_source());
  return {};
}

std::pair<int, std::string> keys_admin(Keyring& keyring, storage::Engine& engine, const MetaLogReseal& meta_log,
                                       std::string_view method, std::string_view rest, std::string_view body,
                                       int64_t now_ms) {
  if (rest.empty() || rest == "/") {
    if (method != "GET") return error(405, "METHOD_NOT_ALLOWED", "use GET /v1/keys");
    return {200, status_json(keyring).dump() + "\n"};
  }
  if (method != "POST")
    return error(405, "METHOD_NOT_ALLOWED",
                 "use POST /v1/keys/rotate, POST /v1/keys/{version}/retire or POST /v1/keys/master");
  if (rest == "/master") {
    auto doc = json::parse(body, nullptr, false);
    const bool file = doc.is_object() && doc.contains("key_file") && doc["key_file"].is_string();
    const bool env = doc.is_object() && doc.contains("key_env") && doc["key_env"].is_string();
    if (file == env || doc.size() != 1)
      return error(400, "INVALID_ARGUMENT",
                   "expected a JSON body {\"key_file\": \"<path of the new master key>\"} or {\"key_env\": "
                   "\"<variable holding it>\"}: exactly one of them");
    const std::string where = file ? doc["key_file"].get<std::string>() : doc["key_env"].get<std::string>();
    if (where.empty() || where.size() > 4096)
      return error(400, "INVALID_ARGUMENT", "the key_file or key_env is empty or longer than 4096 characters");
    auto provider = file ? security::at_rest::key_file_provider(where) : security::at_rest::env_provider(where);
    if (auto st = keyring.change_master(*provider); !st)
      return error(st.error().code == Errc::kIoError ? 500 : 400,
                   st.error().code == Errc::kIoError ? "INTERNAL" : "INVALID_ARGUMENT", st.error().message);
    klog().warn("storage: the at-rest master key changed: the data keys in {} are now wrapped under the key from {}; "
                "give the node that key from now on (security.at_rest.{} = {})",
                keyring.path(), provider->describe(), file ? "key_file" : "key_env", where);
    security::audit::emit(security::audit::kMasterKeyChanged, {{"source", provider->describe()}, {"door", "http"}});
    auto out = status_json(keyring);
    out["restart_with"] = json{{file ? "security.at_rest.key_file" : "security.at_rest.key_env", where}};
    return {200, out.dump() + "\n"};
  }
  if (rest == "/rotate") {
    auto v = keyring.rotate();
    if (!v) return error(500, "INTERNAL", v.error().message);
    klog().info("storage: at-rest key rotated: version {} is current; older values are rewrapped in the background",
                *v);
    security::audit::emit(security::audit::kKeyRotated, {{"version", std::to_string(*v)}, {"door", "http"}});
    auto body = status_json(keyring);
    if (meta_log) {
      // The metadata log is small (compacted by its snapshots): resealed now, not in the background.
      auto resealed = meta_log();
      if (resealed) {
        body["metadata_log"] = versions_json(*resealed);
      } else {
        klog().warn("storage: the cluster metadata log was not resealed under key version {}: {} (retried when "
                    "a version is retired)",
                    *v, resealed.error().message);
        body["metadata_log"] = json{{"error", resealed.error().message}};
      }
    }
    return {200, body.dump() + "\n"};
  }
  constexpr std::string_view kRetire = "/retire";
  if (rest.size() > kRetire.size() + 1 && rest.ends_with(kRetire)) {
    std::string_view num = rest.substr(1, rest.size() - 1 - kRetire.size());
    uint32_t version = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), version);
    if (ec != std::errc() || p != num.data() + num.size())
      return error(400, "INVALID_ARGUMENT",
                   fmt::format("'{}' is not a key version; allowed: 0..{}", num, keyring.current_version()));
    if (keyring.state(version) != Keyring::State::kReadable || version == keyring.current_version()) {
      auto st = keyring.retire(version);  // refused: says why
      return error(409, "CONFLICT", st ? "" : st.error().message);
    }
    auto progress = keyring.rewrap_progress();
    if (!progress.complete)
      return error(409, "CONFLICT",
                   fmt::format("version {} cannot be retired yet: the background rewrap to version {} is not "
                               "complete ({} partitions pending); retry when GET /v1/keys shows rewrap.complete",
                               version, progress.target, progress.partitions_pending));
    auto census = engine.at_rest_census(now_ms);
    if (!census) return error(503, "UNAVAILABLE", census.error().message);
    if (auto it = census->find(version); it != census->end() && it->second > 0)
      return error(409, "CONFLICT",
                   fmt::format("version {} cannot be retired: {} live values are still stored under it (values the "
                               "rewrap could not read so far: {}); retry after the rewrap, or DEL those keys",
                               version, it->second, progress.unreadable_total));
    if (meta_log) {
      auto resealed = meta_log();
      if (!resealed)
        return error(503, "UNAVAILABLE",
                     fmt::format("version {} cannot be retired now: the cluster metadata log could not be resealed "
                                 "under version {}: {}",
                                 version, keyring.current_version(), resealed.error().message));
      if (auto it = resealed->find(version); it != resealed->end() && it->second > 0)
        return error(409, "CONFLICT",
                     fmt::format("version {} cannot be retired: {} records of the cluster metadata log are still "
                                 "sealed under it",
                                 version, it->second));
    }
    if (auto st = keyring.retire(version); !st) return error(409, "CONFLICT", st.error().message);
    klog().info("storage: at-rest key version {} retired (no live value was stored under it)", version);
    security::audit::emit(security::audit::kKeyRetired, {{"version", std::to_string(version)}, {"door", "http"}});
    return {200, status_json(keyring).dump() + "\n"};
  }
  return error(404, "NOT_FOUND",
               fmt::format("no route /v1/keys{}; routes: GET /v1/keys, POST /v1/keys/rotate, POST "
                           "/v1/keys/{{version}}/retire, POST /v1/keys/master",
                           rest));
}

std::string at_rest_metrics(const Keyring& k) {
  auto p = k.rewrap_progress();
  std::string o;
  o += "# HELP keel_at_rest_key_version The current at-rest data key version (values are sealed under it)\n";
  o += fmt::format("# TYPE keel_at_rest_key_version gauge\nkeel_at_rest_key_version {}\n", k.current_version());
  o += "# HELP keel_at_rest_rewrap_keys_total Values rewritten under a newer at-rest key by the background rewrap\n";
  o += fmt::format("# TYPE keel_at_rest_rewrap_keys_total counter\nkeel_at_rest_rewrap_keys_total {}\n", p.keys_total);
  o += "# HELP keel_at_rest_rewrap_unreadable_total Values the rewrap could not read (retired or unknown key)\n";
  o += fmt::format("# TYPE keel_at_rest_rewrap_unreadable_total counter\nkeel_at_rest_rewrap_unreadable_total {}\n",
                   p.unreadable_total);
  o += "# HELP keel_at_rest_rewrap_partitions_pending Partitions the rewrap to the current key has still to visit\n";
  o += fmt::format("# TYPE keel_at_rest_rewrap_partitions_pending gauge\nkeel_at_rest_rewrap_partitions_pending {}\n",
                   p.partitions_pending);
  o += "# HELP keel_at_rest_rewrap_complete 1 once every shard finished its pass to the current key\n";
  o += fmt::format("# TYPE keel_at_rest_rewrap_complete gauge\nkeel_at_rest_rewrap_complete {}\n", p.complete ? 1 : 0);
  return o;
}

}  // namespace keel::node
