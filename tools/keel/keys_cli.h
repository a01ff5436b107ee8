// `keel keys status|rotate|retire VERSION|change-master --key-file F|--key-env V`: encryption at rest's keys on a running node, over
// its HTTP admin door (/v1/keys). docs/operations.md, "Rotating the at-rest key".
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace keel::tools {

struct KeysCli {
  CLI::App* status = nullptr;
  CLI::App* rotate = nullptr;
  CLI::App* retire = nullptr;
  CLI::App* master = nullptr;
  std::string key_file, key_env;  // change-master: where the new master key is
  std::string http = "127.0.0.1:8380";
  uint32_t version = 0;
};

void add_keys_commands(CLI::App& app, KeysCli& k);
// Runs whichever keys subcommand was parsed; returns the exit code, or -1 if none was.
int run_keys_commands(KeysCli& k);

}  // namespace keel::tools
