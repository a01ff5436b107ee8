#include "keys_cli.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cluster_cli.h"

namespace keel::tools {

void add_keys_commands(CLI::App& app, KeysCli& k) {
  auto* keys = app.add_subcommand("keys", "encryption at rest: the data keys of a running node (over HTTP /v1/keys)");
  keys->require_subcommand(1);
  k.status = keys->add_subcommand("status", "the key versions and the background rewrap's progress");
  k.rotate = keys->add_subcommand("rotate", "make a new key version current; older values are rewrapped in the background");
  k.retire = keys->add_subcommand("retire", "forget an old key version (refused while data is stored under it)");
  k.retire->add_option("version", k.version, "the key version to retire (0 = plaintext)")->required();
  k.master = keys->add_subcommand(
      "change-master", "wrap the data keys under a new master key (the node needs that key from then on)");
  auto* kf = k.master->add_option("--key-file", k.key_file,
                                  "a file the node can read holding the new key (64 hex digits, mode 0600)");
  auto* ke = k.master->add_option("--key-env", k.key_env, "a variable in the node's environment holding the new key");
  kf->excludes(ke);
  for (auto* c : {k.status, k.rotate, k.retire, k.master})
    c->add_option("--http", k.http, "the node's HTTP door as HOST:PORT (default 127.0.0.1:8380)");
}

int run_keys_commands(KeysCli& k) {
  std::string method, target, request;
  if (k.status && k.status->parsed()) {
    method = "GET";
    target = "/v1/keys";
  } else if (k.rotate && k.rotate->parsed()) {
    method = "POST";
    target = "/v1/keys/rotate";
  } else if (k.retire && k.retire->parsed()) {
    method = "POST";
    target = fmt::format("/v1/keys/{}/retire", k.version);
  } else if (k.master && k.master->parsed()) {
    if (k.key_file.empty() && k.key_env.empty()) {
      std::fprintf(stderr, "keel keys change-master: give the new master key's place: --key-file PATH or --key-env VARIABLE\n");
      return 2;
    }
    method = "POST";
    target = "/v1/keys/master";
    request = k.key_file.empty() ? nlohmann::json{{"key_env", k.key_env}}.dump()
                                 : nlohmann::json{{"key_file", k.key_file}}.dump();
  } else {
    return -1;
  }
  int status = 0;
  std::string body, err;
  if (!http_request(method, k.http, target, request, status, body, err)) {
    std::fprintf(stderr, "keel keys: %s\n", err.c_str());
    return 1;
  }
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (status != 200) {
    std::string msg = body;
    if (!doc.is_discarded() && doc.contains("error")) msg = doc["error"].value("message", body);
    std::fprintf(stderr, "keel keys: %s\n", msg.c_str());
    return 1;
  }
  if (doc.is_discarded()) {
    std::fprintf(stderr, "keel keys: the node answered something that is not JSON: %s\n", body.c_str());
    return 1;
  }
  if (doc.contains("restart_with"))
    for (const auto& [name, value] : doc["restart_with"].items())
      std::printf("master key changed: the data keys are wrapped under the key from %s; set %s = \"%s\" in the "
                  "node's configuration before it restarts\n",
                  doc.value("master_key", "").c_str(), name.c_str(), value.get<std::string>().c_str());
  std::printf("current key version: %u\n", doc.value("current", 0u));
  for (const auto& v : doc["versions"])
    std::printf("  version %u: %s%s%s\n", v.value("version", 0u), v.value("state", "").c_str(),
                v.value("plaintext", false) ? " (plaintext)" : "", v.value("current", false) ? " (current)" : "");
  const auto& r = doc["rewrap"];
  std::printf("rewrap to version %u: %s, %llu partitions pending, %llu values rewritten, %llu unreadable\n",
              r.value("target", 0u), r.value("complete", false) ? "complete" : "in progress",
              static_cast<unsigned long long>(r.value("partitions_pending", 0ull)),
              static_cast<unsigned long long>(r.value("keys_total", 0ull)),
              static_cast<unsigned long long>(r.value("unreadable_total", 0ull)));
  return 0;
}

}  // namespace keel::tools
