// The `keel` command line: serve a node, check a configuration file, print the version.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cert_cli.h"
#include "token_cli.h"
#include "cluster_cli.h"
#include "keys_cli.h"
#include "node/config.h"
#include "node/node.h"

extern char** environ;

namespace {

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string s(*e);
    auto eq = s.find('=');
    if (eq != std::string::npos && s.rfind("KEEL_", 0) == 0) env[s.substr(0, eq)] = s.substr(eq + 1);
  }
  return env;
}

void print_problems(const std::vector<keel::node::Problem>& problems) {
  for (auto& p : problems) std::fprintf(stderr, "  %s: %s\n", p.key.c_str(), p.message.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keel: the infrastructure layer of a backend, as one program"};
  app.require_subcommand(1);

  // keel serve
  auto* serve = app.add_subcommand("serve", "run a node (RESP on 6380, HTTP on 8380, data in ./data)");
  std::string config_file;
  std::map<std::string, std::string> flags;
  std::vector<std::string> sets;
  serve->add_option("-c,--config", config_file, "keel.toml to load")->check(CLI::ExistingFile);
  struct Flag {
    const char* name;
    const char* key;
    const char* help;
  };
  static const Flag kFlags[] = {
      {"--bind", "server.bind", "address to listen on"},
      {"--port", "server.resp_port", "RESP port (0 = any free port)"},
      {"--http-port", "server.http_port", "HTTP port (0 = any free port)"},
      {"--shards", "server.shards", "event loops (0 = one per core)"},
      {"--max-clients", "server.max_clients", "maximum client connections"},
      {"--requirepass", "server.requirepass", "password clients must AUTH with"},
      {"--engine", "storage.engine", "memory or persistent"},
      {"--data-dir", "storage.data_dir", "directory of the persistent engine"},
      {"--fsync", "storage.fsync", "always, everysec or no"},
      {"--maxmemory", "storage.maxmemory", "memory engine limit, e.g. 100mb"},
      {"--maxmemory-policy", "storage.maxmemory_policy", "eviction policy"},
      {"--node-id", "cluster.node_id", "this node's cluster member id (1..65535)"},
      {"--peer-port", "cluster.peer_port", "port for other cluster members"},
      {"--peers", "cluster.peers", "members as ID@HOST:PORT,... (this node may be listed)"},
      {"--cluster-id", "cluster.cluster_id", "cluster name shared by every member"},
      {"--join", "cluster.join", "yes: start as a learner and wait for `keel cluster join`"},
      {"--log-level", "log.level", "trace, debug, info, warn, error, off"},
      {"--log-format", "log.format", "text or json"},
  };
  for (auto& f : kFlags) serve->add_option(f.name, flags[f.key], f.help);
  serve->add_option("--set", sets, "any setting as section.key=value (repeatable)");

  // keel config check FILE
  auto* config = app.add_subcommand("config", "configuration tools");
  config->require_subcommand(1);
  auto* check = config->add_subcommand("check", "validate a keel.toml and print every problem");
  std::string check_file;
  check->add_option("file", check_file, "the file to check")->required();

  auto* version = app.add_subcommand("version", "print the version");

  keel::tools::ClusterCli cluster_cli;
  keel::tools::add_cluster_commands(app, cluster_cli);
  keel::tools::CertCli cert_cli;
  keel::tools::add_cert_commands(app, cert_cli);
  keel::tools::TokenCli token_cli;
  keel::tools::add_token_commands(app, token_cli);
  keel::tools::KeysCli keys_cli;
  keel::tools::add_keys_commands(app, keys_cli);

  CLI11_PARSE(app, argc, argv);

  if (int rc = keel::tools::run_cluster_commands(cluster_cli, argv[0]); rc >= 0) return rc;
  if (int rc = keel::tools::run_cert_commands(cert_cli); rc >= 0) return rc;
  if (int rc = keel::tools::run_token_commands(token_cli); rc >= 0) return rc;
  if (int rc = keel::tools::run_keys_commands(keys_cli); rc >= 0) return rc;

  if (version->parsed()) {
    std::printf("keel %s (Redis protocol %s)\n", keel::node::kVersion, keel::node::kRedisCompatVersion);
    return 0;
  }

  if (check->parsed()) {
    keel::node::Config c;
    std::vector<keel::node::Problem> problems;
    if (access(check_file.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "%s: cannot read the file\n", check_file.c_str());
      return 2;
    }
    keel::node::load_toml_file(c, check_file, problems);
    keel::node::validate(c, problems);
    std::vector<keel::node::Problem> warnings;
    keel::node::warnings(c, warnings);
    auto print_warnings = [&] {
      for (auto& w : warnings) std::fprintf(stderr, "  warning: %s: %s\n", w.key.c_str(), w.message.c_str());
    };
    if (problems.empty()) {
      std::string tail = warnings.empty() ? "" : ", " + std::to_string(warnings.size()) + " warning(s)";
      std::printf("%s: OK%s\n", check_file.c_str(), tail.c_str());
      print_warnings();
      return 0;
    }
    std::fprintf(stderr, "%s: %zu problem(s)\n", check_file.c_str(), problems.size());
    print_problems(problems);
    print_warnings();
    return 1;
  }

  keel::node::Config c;
  std::vector<keel::node::Problem> problems;
  if (!config_file.empty()) keel::node::load_toml_file(c, config_file, problems);
  keel::node::load_env(c, environment(), problems);
  for (auto& [key, value] : flags)
    if (!value.empty()) keel::node::apply(c, key, value, problems);
  for (auto& s : sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos) {
      problems.push_back({s, "expected section.key=value"});
      continue;
    }
    keel::node::apply(c, s.substr(0, eq), s.substr(eq + 1), problems);
  }
  keel::node::validate(c, problems);
  if (!problems.empty()) {
    std::fprintf(stderr, "keel: the configuration has %zu problem(s):\n", problems.size());
    print_problems(problems);
    return 2;
  }
  keel::node::Node node(c);
  if (auto st = node.start(); !st) {
    std::fprintf(stderr, "keel: cannot start: %s\n", st.error().message.c_str());
    return 1;
  }
  node.run_until_signal();
  return 0;
}
