// `keel cluster up|down|status`: a local cluster for trying keel, and its status.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace keel::tools {

struct ClusterCli {
  CLI::App* up = nullptr;
  CLI::App* down = nullptr;
  CLI::App* status = nullptr;
  CLI::App* join = nullptr;
  CLI::App* leave = nullptr;
  int member_id = 0;
  std::string address;
  int nodes = 3;
  std::string dir = ".keel-cluster";
  int base_port = 16380;
  std::string engine = "persistent";
  std::string http;  // host:port for status
  bool json = false;
};

// A blocking HTTP request to a node (`keel keys` and `keel token revoke` use it too): `method` is
// GET, POST or DELETE; `authorization`, when not empty, is sent as the Authorization header.
// False with `err` when the node cannot be reached.
bool http_request(const std::string& method, const std::string& hostport, const std::string& target,
                  const std::string& body, int& status, std::string& response, std::string& err,
                  const std::string& authorization = "");

// Adds the `cluster` subcommand and its children to `app`.
void add_cluster_commands(CLI::App& app, ClusterCli& c);
// Runs whichever cluster subcommand was parsed; returns the exit code, or -1 if none was.
int run_cluster_commands(ClusterCli& c, const char* argv0);

}  // namespace keel::tools
