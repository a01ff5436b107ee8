// SECRET.*: the command table entries of secrets (docs/security.md, "Secrets"); the server runs
// them as coroutines (transit_admin.h). Category @secret.
#include "frontends/resp/command.h"

namespace keel::resp {

void register_secret_commands(std::vector<CommandSpec>& t) {
  constexpr auto L = Routing::kLocal;
  t.push_back({"secret.put", -3, kWrite, 1, 1, 1, L, nullptr, "secret",
               "Stores a new version of a secret: path value [CAS version]; answers the version.", "0.1.0"});
  t.push_back({"secret.get", -2, kReadonly, 1, 1, 1, L, nullptr, "secret",
               "Reads a secret (its latest version, or VERSION n): path [VERSION n].", "0.1.0"});
  t.push_back({"secret.versions", 2, kReadonly, 1, 1, 1, L, nullptr, "secret",
               "Lists the kept versions of a secret (never their values): path.", "0.1.0"});
  t.push_back({"secret.delete", -2, kWrite, 1, 1, 1, L, nullptr, "secret",
               "Deletes a secret with all its versions (path; answers 1, or 0 if there was none), or soft-deletes "
               "some (path VERSIONS v [v ...]; answers how many changed).", "0.1.0"});
  t.push_back({"secret.undelete", -4, kWrite, 1, 1, 1, L, nullptr, "secret",
               "Restores soft-deleted versions: path VERSIONS v [v ...]; answers how many changed.", "0.1.0"});
  t.push_back({"secret.destroy", -4, kWrite, 1, 1, 1, L, nullptr, "secret",
               "Erases versions' values for good: path VERSIONS v [v ...]; answers how many changed.", "0.1.0"});
  t.push_back({"secret.list", -1, kReadonly, 0, 0, 0, L, nullptr, "secret",
               "Lists the paths of secrets: [prefix].", "0.1.0"});
}

}  // namespace keel::resp
