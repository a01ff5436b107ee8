// `keel cert init|issue`: the cluster CA and the certificates it issues (docs/security.md).
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace keel::tools {

struct CertCli {
  CLI::App* init = nullptr;
  CLI::App* issue = nullptr;
  std::string dir = ".keel-pki";
  std::string cluster = "keel";
  bool fips = false;
  std::string node;
  std::string client;
  std::string ttl = "30d";
  std::vector<std::string> hosts;
  std::string out;
};

void add_cert_commands(CLI::App& app, CertCli& c);
// Runs whichever cert subcommand was parsed; returns the exit code, or -1 if none was.
int run_cert_commands(CertCli& c);

}  // namespace keel::tools
