// `keel token init|issue|attenuate|inspect|revoke`: certificate-bound tokens (docs/security.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace keel::tools {

struct TokenCli {
  CLI::App* init = nullptr;
  CLI::App* issue = nullptr;
  CLI::App* attenuate = nullptr;
  CLI::App* inspect = nullptr;
  CLI::App* revoke = nullptr;
  std::string id;            // revoke: a revocation id instead of the token
  int64_t expires_s = 0;     // revoke: with --id, when its token expires
  std::string http = "127.0.0.1:8380";
  std::string http_user;     // revoke: HTTP Basic user (password from KEEL_PASSWORD)
  std::string dir = ".keel-pki";
  bool fips = false;
  std::string user;
  std::string cert;
  std::string ttl;
  std::string token;
  std::vector<std::string> commands, keys, channels;
};

void add_token_commands(CLI::App& app, TokenCli& t);
// Runs whichever token subcommand was parsed; returns the exit code, or -1 if none was.
int run_token_commands(TokenCli& t);

}  // namespace keel::tools
