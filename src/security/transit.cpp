#include "security/transit.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "base/codec.h"
#include "security/at_rest_codec.h"
#include "security/token.h"

namespace keel::security::transit {

namespace {

using json = nlohmann::json;

constexpr std::string_view kPrefix = "keel:v";
constexpr size_t kMaxNameBytes = 128;

std::unexpected<Error> invalid(std::string message) { return make_error(Errc::kInvalidArgument, std::move(message)); }

Result<std::string> random_material() {
  std::string m(kMaterialBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(m.data()), static_cast<int>(m.size())) != 1)
    return make_error(Errc::kInternal, "cannot draw key material: OpenSSL RAND_bytes failed");
  return m;
}

// The additional data AES-GCM authenticates besides the version: the key's name and the context.
std::string aad_of(const Key& k, std::string_view context) {
  std::string a = "keel-transit|";
  a += k.name;
  a += '|';
  a.append(context);
  return a;
}

// Splits "keel:v<N>:<base64>" into the version and the decoded bytes.
Result<std::pair<uint32_t, std::string>> split_output(std::string_view out, std::string_view what) {
  if (!out.starts_with(kPrefix))
    return invalid(fmt::format("{} must look like 'keel:v<version>:<base64>', got '{}'", what, out.substr(0, 40)));
  std::string_view rest = out.substr(kPrefix.size());
  auto colon = rest.find(':');
  uint32_t v = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      std::from_chars(rest.data(), rest.data() + colon, v).ptr != rest.data() + colon || v == 0)
    return invalid(fmt::format("{} must look like 'keel:v<version>:<base64>' with a version from 1, got '{}'", what,
                               out.substr(0, 40)));
  auto bytes = base64_decode(rest.substr(colon + 1));
  if (!bytes) return invalid(fmt::format("{} is not base64 after its 'keel:v{}:' prefix", what, v));
  return std::pair<uint32_t, std::string>{v, std::move(*bytes)};
}

std::string output(uint32_t version, std::string_view bytes) {
  return fmt::format("{}{}:{}", kPrefix, version, base64_encode(bytes));
}

Status usable(const Key& k, uint32_t v, std::string_view what) {
  if (!k.versions.count(v))
    return invalid(fmt::format("{} names version {} of key '{}', which has versions 1 to {}", what, v, k.name,
                               k.latest()));
  if (v < k.min_decryption_version)
    return invalid(fmt::format("{} names version {} of key '{}', below its min_decryption_version {}: that version "
                               "is retired",
                               what, v, k.name, k.min_decryption_version));
  return {};
}

Status need_type(const Key& k, KeyType t, std::string_view op) {
  if (k.type == t) return {};
  return invalid(fmt::format("key '{}' is of type {}; {} needs a key of type {}", k.name, type_name(k.type), op, type_name(t)));
}

at_rest::DataKey data_key(const Key& k, uint32_t v) {
  at_rest::DataKey d;
  d.version = v;
  const std::string& m = k.versions.at(v);
  std::memcpy(d.bytes.data(), m.data(), d.bytes.size());
  return d;
}

Result<TokenKey> signing_key(const Key& k, uint32_t v) {
  const std::string& m = k.versions.at(v);
  return TokenKey::ed25519_from_seed(std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(m.data()), m.size()));
}

}  // namespace

std::string_view type_name(KeyType t) { return t == KeyType::kEd25519 ? "ed25519" : "aes256-gcm"; }

Result<KeyType> parse_type(std::string_view text) {
  if (text == "aes256-gcm" || text == "aes256-gcm96") return KeyType::kAes256Gcm;
  if (text == "ed25519") return KeyType::kEd25519;
  return invalid(fmt::format("key type '{}' is not allowed; allowed: aes256-gcm, ed25519", text.substr(0, 40)));
}

Status check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes)
    return invalid(fmt::format("a transit key name has 1 to {} characters, got {}", kMaxNameBytes, name.size()));
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return invalid(fmt::format("transit key name '{}' has '{}'; allowed: letters, digits, '_', '-', '.'",
                                 name.substr(0, 64), c));
  return {};
}

Result<Key> create(std::string name, KeyType type, int64_t now_ms) {
  if (auto st = check_name(name); !st) return std::unexpected(st.error());
  auto m = random_material();
  if (!m) return std::unexpected(m.error());
  Key k;
  k.name = std::move(name);
  k.type = type;
  k.versions.emplace(1, std::move(*m));
  k.created_ms = now_ms;
  return k;
}

Status rotate(Key& k) {
  if (k.versions.size() >= kMaxVersions)
    return make_error(Errc::kLimitExceeded, fmt::format("key '{}' has {} versions, the most kept; raise its "
                                                        "min_decryption_version and trim before rotating again",
                                                        k.name, k.versions.size()));
  auto m = random_material();
  if (!m) return std::unexpected(m.error());
  k.versions.emplace(k.latest() + 1, std::move(*m));
  return {};
}

Status set_min_decryption_version(Key& k, uint32_t v) {
  if (v < 1 || v > k.latest())
    return invalid(fmt::format("min_decryption_version of key '{}' must be from 1 to its latest version {}, got {}",
                               k.name, k.latest(), v));
  k.min_decryption_version = v;
  return {};
}

std::string encode(const Key& k) {
  json versions = json::object();
  for (const auto& [v, m] : k.versions) versions[std::to_string(v)] = base64_encode(m);
  json j{{"name", k.name},
         {"type", std::string(type_name(k.type))},
         {"versions", versions},
         {"min_decryption_version", k.min_decryption_version},
         {"deletion_allowed", k.deletion_allowed},
         {"created_ms", k.created_ms}};
  return j.dump();
}

Result<Key> decode(std::string_view text) {
  auto bad = [](std::string what) { return make_error(Errc::kCorruption, "stored transit key: " + what); };
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  Key k;
  if (!j.contains("name") || !j["name"].is_string()) return bad("no name");
  k.name = j["name"].get<std::string>();
  if (!j.contains("type") || !j["type"].is_string()) return bad("no type");
  auto t = parse_type(j["type"].get<std::string>());
  if (!t) return bad(t.error().message);
  k.type = *t;
  if (!j.contains("versions") || !j["versions"].is_object() || j["versions"].empty()) return bad("no versions");
  if (j["versions"].size() > kMaxVersions) return bad("too many versions");
  for (auto& [vs, mv] : j["versions"].items()) {
    uint32_t v = 0;
    if (std::from_chars(vs.data(), vs.data() + vs.size(), v).ptr != vs.data() + vs.size() || v == 0)
      return bad("version '" + vs + "' is not a number from 1");
    if (!mv.is_string()) return bad("version " + vs + " has no material");
    auto m = base64_decode(mv.get<std::string>());
    if (!m || m->size() != kMaterialBytes) return bad("version " + vs + " has material that is not 32 base64 bytes");
    k.versions.emplace(v, std::move(*m));
  }
  if (j.contains("min_decryption_version") && j["min_decryption_version"].is_number_unsigned())
    k.min_decryption_version = j["min_decryption_version"].get<uint32_t>();
  if (j.contains("deletion_allowed") && j["deletion_allowed"].is_boolean())
    k.deletion_allowed = j["deletion_allowed"].get<bool>();
  if (j.contains("created_ms") && j["created_ms"].is_number_integer()) k.created_ms = j["created_ms"].get<int64_t>();
  return k;
}

Result<std::string> encrypt(const Key& k, std::string_view plaintext, std::string_view context) {
  if (auto st = need_type(k, KeyType::kAes256Gcm, "encrypt"); !st) return std::unexpected(st.error());
  if (plaintext.size() > kMaxInputBytes)
    return invalid(fmt::format("plaintext of {} bytes is larger than the {} allowed", plaintext.size(), kMaxInputBytes));
  const uint32_t v = k.latest();
  std::string sealed;
  if (auto st = at_rest::seal(data_key(k, v), aad_of(k, context), {}, plaintext, sealed); !st)
    return std::unexpected(st.error());
  return output(v, sealed);
}

Result<std::string> decrypt(const Key& k, std::string_view ciphertext, std::string_view context) {
  if (auto st = need_type(k, KeyType::kAes256Gcm, "decrypt"); !st) return std::unexpected(st.error());
  if (ciphertext.size() > kMaxInputBytes * 2)
    return invalid(fmt::format("ciphertext of {} bytes is larger than allowed", ciphertext.size()));
  auto parts = split_output(ciphertext, "a ciphertext");
  if (!parts) return std::unexpected(parts.error());
  auto& [v, bytes] = *parts;
  if (auto st = usable(k, v, "the ciphertext"); !st) return std::unexpected(st.error());
  auto sealed = at_rest::parse_sealed(bytes);
  if (!sealed) return invalid("the ciphertext is too short to be one");
  if (sealed->version != v)
    return invalid(fmt::format("the ciphertext says version {} outside and {} inside", v, sealed->version));
  std::string plain;
  if (auto st = at_rest::open_sealed(data_key(k, v), *sealed, aad_of(k, context), {}, plain); !st)
    return invalid(fmt::format("authentication failed: the ciphertext was changed, or is not of key '{}' (or not "
                               "with this context)",
                               k.name));
  return plain;
}

Result<std::string> rewrap(const Key& k, std::string_view ciphertext, std::string_view context) {
  auto plain = decrypt(k, ciphertext, context);
  if (!plain) return std::unexpected(plain.error());
  return encrypt(k, *plain, context);
}

Result<std::string> sign(const Key& k, std::string_view message) {
  if (auto st = need_type(k, KeyType::kEd25519, "sign"); !st) return std::unexpected(st.error());
  if (message.size() > kMaxInputBytes)
    return invalid(fmt::format("message of {} bytes is larger than the {} allowed", message.size(), kMaxInputBytes));
  const uint32_t v = k.latest();
  auto key = signing_key(k, v);
  if (!key) return std::unexpected(key.error());
  auto sig = key->sign(message);
  if (!sig) return std::unexpected(sig.error());
  return output(v, *sig);
}

Result<bool> verify(const Key& k, std::string_view message, std::string_view signature) {
  if (auto st = need_type(k, KeyType::kEd25519, "verify"); !st) return std::unexpected(st.error());
  if (message.size() > kMaxInputBytes)
    return invalid(fmt::format("message of {} bytes is larger than the {} allowed", message.size(), kMaxInputBytes));
  auto parts = split_output(signature, "a signature");
  if (!parts) return std::unexpected(parts.error());
  auto& [v, bytes] = *parts;
  if (auto st = usable(k, v, "the signature"); !st) return std::unexpected(st.error());
  auto key = signing_key(k, v);
  if (!key) return std::unexpected(key.error());
  return key->verify(message, bytes);
}

Result<uint32_t> output_version(std::string_view out) {
  auto parts = split_output(out, "the value");
  if (!parts) return std::unexpected(parts.error());
  return parts->first;
}

std::map<uint32_t, std::string> public_keys(const Key& k) {
  std::map<uint32_t, std::string> out;
  if (k.type != KeyType::kEd25519) return out;
  for (const auto& [v, m] : k.versions) {
    (void)m;
    if (auto key = signing_key(k, v)) out.emplace(v, key->raw_public());
  }
  return out;
}

}  // namespace keel::security::transit
