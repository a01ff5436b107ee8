// keel::Transit: the server's transit keys (docs/security.md, "Transit keys") from C++ —
// encrypt, decrypt, rewrap, sign and verify with keys that never leave keel, and manage them
// (create, rotate, retire versions, delete). Each call is one TRANSIT.* command through a
// keel::Client (any node serves every key). Server refusals come back as kServerError with
// the server's message ("ERR authentication failed: ...", "... below its
// min_decryption_version 2 ...").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keel/client/client.h"

namespace keel::client {

class Transit {
 public:
  enum class Type { kAes256Gcm, kEd25519 };

  explicit Transit(keel::Client& client) : c_(&client) {}

  // Creates a key (version 1). A name in use: kServerError "... exists ...".
  Status create(std::string_view name, Type type = Type::kAes256Gcm) {
    return done(c_->checked({"TRANSIT.CREATE", std::string(name), "TYPE",
                             type == Type::kEd25519 ? "ed25519" : "aes256-gcm"}));
  }
  // Adds a version; returns the new latest version.
  Result<uint32_t> rotate(std::string_view name) {
    auto r = c_->checked({"TRANSIT.ROTATE", std::string(name)});
    if (!r) return std::unexpected(r.error());
    if (r->type != ReplyType::kInteger) return std::unexpected(reply_error(*r));
    return static_cast<uint32_t>(r->integer);
  }
  // Versions below `v` no longer decrypt or verify.
  Status set_min_decryption_version(std::string_view name, uint32_t v) {
    return done(c_->checked({"TRANSIT.CONFIG", std::string(name), "MIN_DECRYPTION_VERSION", std::to_string(v)}));
  }
  Status allow_deletion(std::string_view name, bool allowed) {
    return done(c_->checked({"TRANSIT.CONFIG", std::string(name), "DELETION_ALLOWED", allowed ? "yes" : "no"}));
  }
  Status remove(std::string_view name) { return done(c_->checked({"TRANSIT.DELETE", std::string(name)})); }
  Result<std::vector<std::string>> list() {
    auto r = c_->checked({"TRANSIT.LIST"});
    if (!r) return std::unexpected(r.error());
    std::vector<std::string> out;
    for (auto& e : r->elements) out.push_back(e.str);
    return out;
  }

  // "keel:v<N>:<base64>" under the key's latest version; `context` is authenticated too.
  Result<std::string> encrypt(std::string_view name, std::string_view plaintext, std::string_view context = {}) {
    return text(with_context({"TRANSIT.ENCRYPT", std::string(name), std::string(plaintext)}, context));
  }
  Result<std::string> decrypt(std::string_view name, std::string_view ciphertext, std::string_view context = {}) {
    return text(with_context({"TRANSIT.DECRYPT", std::string(name), std::string(ciphertext)}, context));
  }
  // The same plaintext under the latest version, without it leaving the server.
  Result<std::string> rewrap(std::string_view name, std::string_view ciphertext, std::string_view context = {}) {
    return text(with_context({"TRANSIT.REWRAP", std::string(name), std::string(ciphertext)}, context));
  }
  Result<std::string> sign(std::string_view name, std::string_view message) {
    return text({"TRANSIT.SIGN", std::string(name), std::string(message)});
  }
  Result<bool> verify(std::string_view name, std::string_view message, std::string_view signature) {
    auto r = c_->checked({"TRANSIT.VERIFY", std::string(name), std::string(message), std::string(signature)});
    if (!r) return std::unexpected(r.error());
    if (r->type != ReplyType::kInteger) return std::unexpected(reply_error(*r));
    return r->integer == 1;
  }

 private:
  static std::vector<std::string> with_context(std::vector<std::string> args, std::string_view context) {
    if (!context.empty()) {
      args.emplace_back("CONTEXT");
      args.emplace_back(context);
    }
    return args;
  }
  Result<std::string> text(std::vector<std::string> args) {
    auto r = c_->checked(std::move(args));
    if (!r) return std::unexpected(r.error());
    if (!r->is_string()) return std::unexpected(reply_error(*r));
    return std::move(r->str);
  }
  static Status done(Result<Reply> r) {
    if (!r) return std::unexpected(r.error());
    return {};
  }
  keel::Client* c_;
};

}  // namespace keel::client

namespace keel {
using Transit = client::Transit;
}  // namespace keel
