// `keel token init|issue|attenuate|inspect`: certificate-bound tokens (docs/security.md).
#pragma once

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
