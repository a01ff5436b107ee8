// TRANSIT.*: the command table entries of transit keys (docs/security.md, "Transit keys"); the
// server runs them as coroutines (transit_admin.h). Category @transit; the key management
// commands are @admin too.
#include "frontends/resp/command.h"

namespace keel::resp {

void register_transit_commands(std::vector<CommandSpec>& t) {
  constexpr auto L = Routing::kLocal;
  t.push_back({"transit.create", -2, kWrite, 1, 1, 1, L, nullptr, "transit",
               "Creates a named transit key: name [TYPE aes256-gcm|ed25519].", "0.1.0"});
  t.push_back({"transit.rotate", 2, kWrite, 1, 1, 1, L, nullptr, "transit",
               "Adds a new version to a transit key (new work uses it; older versions still decrypt): name.", "0.1.0"});
  t.push_back({"transit.config", -4, kWrite, 1, 1, 1, L, nullptr, "transit",
               "Changes a transit key: name [MIN_DECRYPTION_VERSION n] [DELETION_ALLOWED yes|no].", "0.1.0"});
  t.push_back({"transit.delete", 2, kWrite, 1, 1, 1, L, nullptr, "transit",
               "Deletes a transit key that allows deletion: name.", "0.1.0"});
  t.push_back({"transit.info", 2, kReadonly, 1, 1, 1, L, nullptr, "transit",
               "Shows a transit key (never its material): name.", "0.1.0"});
  t.push_back({"transit.list", 1, kReadonly, 0, 0, 0, L, nullptr, "transit", "Lists the transit keys.", "0.1.0"});
  t.push_back({"transit.encrypt", -3, kReadonly, 1, 1, 1, L, nullptr, "transit",
               "Encrypts with the key's latest version: name plaintext [CONTEXT c]; answers keel:v<N>:<base64>.",
               "0.1.0"});
  t.push_back({"transit.decrypt", -3, kReadonly, 1, 1, 1, L, nullptr, "transit",
               "Decrypts a ciphertext of the key: name ciphertext [CONTEXT c].", "0.1.0"});
  t.push_back({"transit.rewrap", -3, kReadonly, 1, 1, 1, L, nullptr, "transit",
               "Encrypts a ciphertext again under the key's latest version, without answering the plaintext: name "
               "ciphertext [CONTEXT c].",
               "0.1.0"});
  t.push_back({"transit.sign", 3, kReadonly, 1, 1, 1, L, nullptr, "transit",
               "Signs a message with the key's latest version (ed25519 keys): name message.", "0.1.0"});
  t.push_back({"transit.verify", 4, kReadonly, 1, 1, 1, L, nullptr, "transit",
               "Checks a signature of the key: name message signature; answers 1 or 0.", "0.1.0"});
}

}  // namespace keel::resp
