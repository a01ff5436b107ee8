#include "frontends/resp/transit_admin.h"

#include <fmt/format.h>

#include <charconv>
#include <optional>
#include <string>

#include "base/base64.h"
#include "frontends/resp/family_util.h"
#include "security/audit.h"
#include "security/secrets_service.h"
#include "security/transit_service.h"

namespace keel::resp {

namespace {

using security::transit::Key;

void reply_error(Reply& r, const Error& e) {
  switch (e.code) {
    case Errc::kNotFound:
    case Errc::kInvalidArgument:
    case Errc::kAlreadyExists:
    case Errc::kLimitExceeded:
      return r.error("ERR " + e.message);
    default:
      return reply_metadata_error(r, e, "check TRANSIT.INFO");
  }
}

void reply_info(Reply& r, const Key& k) {
  const auto pub = security::transit::public_keys(k);
  r.map(pub.empty() ? 6 : 7);
  r.bulk("name");
  r.bulk(k.name);
  r.bulk("type");
  r.bulk(security::transit::type_name(k.type));
  r.bulk("latest_version");
  r.integer(k.latest());
  r.bulk("min_decryption_version");
  r.integer(k.min_decryption_version);
  r.bulk("deletion_allowed");
  r.integer(k.deletion_allowed ? 1 : 0);
  r.bulk("created_ms");
  r.integer(k.created_ms);
  if (!pub.empty()) {
    r.bulk("public_keys");
    r.map(pub.size());
    for (const auto& [v, raw] : pub) {
      r.bulk(std::to_string(v));
      r.bulk(base64_encode(raw));
    }
  }
}

// [CONTEXT c] after the fixed arguments; false after replying the error.
bool parse_context(Args a, size_t from, std::string_view& context, Reply& r) {
  for (size_t j = from; j < a.size(); ++j) {
    if (iequals(a[j], "context") && j + 1 < a.size()) {
      context = a[++j];
      continue;
    }
    r.error(fmt::format("ERR unknown or incomplete option '{}'; allowed: CONTEXT <bytes>", a[j].substr(0, 40)));
    return false;
  }
  return true;
}

bool parse_yes_no(std::string_view v, bool& out) {
  if (iequals(v, "yes") || iequals(v, "true") || v == "1") return out = true, true;
  if (iequals(v, "no") || iequals(v, "false") || v == "0") return out = false, true;
  return false;
}

}  // namespace

boost::asio::awaitable<void> execute_transit(security::TransitService& transit, const CommandSpec& spec, Args a,
                                             Reply& r, std::optional<observe::TraceParent> trace) {
  namespace tr = security::transit;
  const std::string_view cmd = spec.name;
  if (cmd == "transit.list") {
    auto names = transit.names();
    r.array(names.size());
    for (auto& n : names) r.bulk(n);
    co_return;
  }
  std::string name(a[1]);
  if (auto st = tr::check_name(name); !st) co_return r.error("ERR " + st.error().message);

  if (cmd == "transit.create") {
    tr::KeyType type = tr::KeyType::kAes256Gcm;
    for (size_t j = 2; j < a.size(); ++j) {
      if (iequals(a[j], "type") && j + 1 < a.size()) {
        auto t = tr::parse_type(to_lower(a[++j]));
        if (!t) co_return r.error("ERR " + t.error().message);
        type = *t;
        continue;
      }
      co_return r.error(fmt::format("ERR unknown or incomplete option '{}'; allowed: TYPE aes256-gcm|ed25519",
                                    a[j].substr(0, 40)));
    }
    auto k = co_await transit.create(name, type, std::move(trace));
    if (!k) co_return reply_error(r, k.error());
    security::audit::emit(security::audit::kTransitKey,
                          {{"transit_key", name}, {"change", "create"}, {"version", "1"}, {"door", "resp"}});
    co_return reply_info(r, **k);
  }
  if (cmd == "transit.rotate") {
    auto k = co_await transit.rotate(name);
    if (!k) co_return reply_error(r, k.error());
    security::audit::emit(security::audit::kTransitKey, {{"transit_key", name},
                                                         {"change", "rotate"},
                                                         {"version", std::to_string((*k)->latest())},
                                                         {"door", "resp"}});
    co_return r.integer((*k)->latest());
  }
  if (cmd == "transit.config") {
    std::optional<uint32_t> min_version;
    std::optional<bool> deletion;
    for (size_t j = 2; j < a.size(); ++j) {
      if (iequals(a[j], "min_decryption_version") && j + 1 < a.size()) {
        uint32_t v = 0;
        auto s = a[++j];
        if (std::from_chars(s.data(), s.data() + s.size(), v).ptr != s.data() + s.size())
          co_return r.error(fmt::format("ERR MIN_DECRYPTION_VERSION must be a version number, got '{}'", s.substr(0, 40)));
        min_version = v;
      } else if (iequals(a[j], "deletion_allowed") && j + 1 < a.size()) {
        bool b = false;
        if (!parse_yes_no(a[++j], b))
          co_return r.error(fmt::format("ERR DELETION_ALLOWED must be yes or no, got '{}'", a[j].substr(0, 40)));
        deletion = b;
      } else {
        co_return r.error(fmt::format(
            "ERR unknown or incomplete option '{}'; allowed: MIN_DECRYPTION_VERSION <n>, DELETION_ALLOWED yes|no",
            a[j].substr(0, 40)));
      }
    }
    auto k = co_await transit.configure(name, min_version, deletion);
    if (!k) co_return reply_error(r, k.error());
    security::audit::emit(security::audit::kTransitKey,
                          {{"transit_key", name},
                           {"change", "config"},
                           {"min_decryption_version", std::to_string((*k)->min_decryption_version)},
                           {"deletion_allowed", (*k)->deletion_allowed ? "yes" : "no"},
                           {"door", "resp"}});
    co_return r.ok();
  }
  if (cmd == "transit.delete") {
    auto st = co_await transit.remove(name);
    if (!st) co_return reply_error(r, st.error());
    security::audit::emit(security::audit::kTransitKey, {{"transit_key", name}, {"change", "delete"}, {"door", "resp"}});
    co_return r.ok();
  }

  // A ciphertext or signature names its version: a key this node holds behind it (rotated
  // through another node a moment ago) is read fresh.
  uint32_t need = 0;
  if ((cmd == "transit.decrypt" || cmd == "transit.rewrap") && a.size() > 2)
    if (auto v = tr::output_version(a[2])) need = *v;
  if (cmd == "transit.verify" && a.size() > 3)
    if (auto v = tr::output_version(a[3])) need = *v;
  auto key = co_await transit.find_fresh(name, need);
  if (!key) co_return r.error(fmt::format("ERR no transit key named '{}'", name));
  if (cmd == "transit.info") co_return reply_info(r, *key);
  std::string_view context;
  Result<std::string> out = std::string();
  if (cmd == "transit.encrypt" || cmd == "transit.decrypt" || cmd == "transit.rewrap") {
    if (!parse_context(a, 3, context, r)) co_return;
    if (cmd == "transit.encrypt") out = tr::encrypt(*key, a[2], context);
    else if (cmd == "transit.decrypt") out = tr::decrypt(*key, a[2], context);
    else out = tr::rewrap(*key, a[2], context);
  } else if (cmd == "transit.sign") {
    out = tr::sign(*key, a[2]);
  } else {  // transit.verify
    auto ok = tr::verify(*key, a[2], a[3]);
    if (!ok) co_return r.error("ERR " + ok.error().message);
    co_return r.integer(*ok ? 1 : 0);
  }
  if (!out) co_return r.error("ERR " + out.error().message);
  r.bulk(*out);
}

boost::asio::awaitable<void> execute_secret(security::SecretsService& secrets, const CommandSpec& spec, Args a,
                                            Reply& r, const std::string& caller) {
  namespace sc = security::secrets;
  const std::string_view cmd = spec.name;
  if (cmd == "secret.list") {
    if (a.size() > 2) co_return r.error("ERR wrong number of arguments for 'secret.list' command");
    auto paths = secrets.list(a.size() == 2 ? a[1] : std::string_view());
    r.array(paths.size());
    for (auto& p : paths) r.bulk(p);
    co_return;
  }
  std::string path(a[1]);
  if (auto st = sc::check_path(path); !st) co_return r.error("ERR " + st.error().message);
  auto parse_version = [&](std::string_view s, uint32_t& v, std::string_view what) {
    if (std::from_chars(s.data(), s.data() + s.size(), v).ptr == s.data() + s.size()) return true;
    r.error(fmt::format("ERR {} must be a version number, got '{}'", what, s.substr(0, 40)));
    return false;
  };
  if (cmd == "secret.put") {
    std::optional<uint32_t> cas;
    for (size_t j = 3; j < a.size(); ++j) {
      uint32_t v = 0;
      if (iequals(a[j], "cas") && j + 1 < a.size()) {
        if (!parse_version(a[++j], v, "CAS")) co_return;
        cas = v;
        continue;
      }
      co_return r.error(fmt::format("ERR unknown or incomplete option '{}'; allowed: CAS <version>", a[j].substr(0, 40)));
    }
    auto v = co_await secrets.put(path, std::string(a[2]), cas);
    if (!v) {
      if (v.error().code == Errc::kConflict) co_return r.error("ERR " + v.error().message);
      co_return reply_error(r, v.error());
    }
    security::audit::emit(security::audit::kSecretWrite,
                          {{"path", path}, {"version", std::to_string(*v)}, {"by", caller}, {"door", "resp"}});
    co_return r.integer(*v);
  }
  if (cmd == "secret.undelete" || cmd == "secret.destroy" || (cmd == "secret.delete" && a.size() > 2)) {
    if (a.size() < 4 || !iequals(a[2], "versions"))
      co_return r.error(fmt::format("ERR syntax error: expected {} path VERSIONS v [v ...]", cmd));
    std::vector<uint32_t> versions;
    for (size_t j = 3; j < a.size(); ++j) {
      uint32_t v = 0;
      if (!parse_version(a[j], v, "VERSIONS")) co_return;
      versions.push_back(v);
    }
    const auto op = cmd == "secret.delete" ? sc::VersionOp::kDelete
                    : cmd == "secret.undelete" ? sc::VersionOp::kUndelete
                                               : sc::VersionOp::kDestroy;
    auto changed = co_await secrets.change_versions(path, op, versions);
    if (!changed) {
      if (changed.error().code == Errc::kConflict) co_return r.error("ERR " + changed.error().message);
      co_return reply_error(r, changed.error());
    }
    std::string list;
    for (uint32_t v : versions) list += (list.empty() ? "" : ",") + std::to_string(v);
    if (*changed)
      security::audit::emit(security::audit::kSecretWrite, {{"path", path},
                                                            {"versions", list},
                                                            {std::string(cmd.substr(7)), "true"},
                                                            {"by", caller},
                                                            {"door", "resp"}});
    co_return r.integer(*changed);
  }
  if (cmd == "secret.delete") {
    auto gone = co_await secrets.remove(path);
    if (!gone) co_return reply_error(r, gone.error());
    if (*gone)
      security::audit::emit(security::audit::kSecretWrite,
                            {{"path", path}, {"deleted", "true"}, {"by", caller}, {"door", "resp"}});
    co_return r.integer(*gone ? 1 : 0);
  }
  if (cmd == "secret.versions") {
    auto s = co_await secrets.find_fresh(path);
    if (!s) co_return r.error(fmt::format("ERR no secret at '{}'", path));
    r.array(s->versions.size());
    for (const auto& [v, ver] : s->versions) {
      r.map(4);
      r.bulk("version");
      r.integer(v);
      r.bulk("created_ms");
      r.integer(ver.created_ms);
      r.bulk("deleted_ms");
      r.integer(ver.deleted_ms);
      r.bulk("destroyed");
      r.integer(ver.destroyed ? 1 : 0);
    }
    co_return;
  }
  // secret.get
  std::optional<uint32_t> version;
  for (size_t j = 2; j < a.size(); ++j) {
    uint32_t v = 0;
    if (iequals(a[j], "version") && j + 1 < a.size()) {
      if (!parse_version(a[++j], v, "VERSION")) co_return;
      version = v;
      continue;
    }
    co_return r.error(fmt::format("ERR unknown or incomplete option '{}'; allowed: VERSION <n>", a[j].substr(0, 40)));
  }
  auto got = co_await secrets.get(path, version);
  if (!got) {
    // No such secret: nil; its latest version deleted or destroyed: the error says so.
    if (got.error().code == Errc::kNotFound && !version && !secrets.find(path)) co_return r.null();
    co_return reply_error(r, got.error());
  }
  security::audit::emit(security::audit::kSecretRead,
                        {{"path", path}, {"version", std::to_string(got->version)}, {"by", caller}, {"door", "resp"}});
  r.bulk(got->value);
}

}  // namespace keel::resp
