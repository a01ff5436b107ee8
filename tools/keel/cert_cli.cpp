#include "cert_cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "security/pki.h"

namespace keel::tools {

void add_cert_commands(CLI::App& app, CertCli& c) {
  auto* cert = app.add_subcommand("cert", "PKI: a cluster CA and the certificates it issues");
  cert->require_subcommand(1);
  c.init = cert->add_subcommand("init", "create the cluster CA (DIR/ca.crt, DIR/ca.key)");
  c.init->add_option("--dir", c.dir, "directory of the CA and certificates")->capture_default_str();
  c.init->add_option("--cluster", c.cluster, "cluster name (the SPIFFE trust domain, like cluster.cluster_id)")
      ->capture_default_str();
  c.init->add_flag("--fips", c.fips, "ECDSA P-256 keys instead of Ed25519");
  c.issue = cert->add_subcommand("issue", "issue a node or client certificate signed by the CA in DIR");
  auto* node = c.issue->add_option("--node", c.node, "node id (1..65535): identity spiffe://<cluster>/node/<id>");
  auto* client = c.issue->add_option("--client", c.client, "client name: identity spiffe://<cluster>/client/<name>");
  node->excludes(client);
  c.issue->add_option("--ttl", c.ttl, "lifetime: a number with s, m, h or d (1m..3650d)")->capture_default_str();
  c.issue->add_option("--dir", c.dir, "directory of the CA; the certificate is written there")->capture_default_str();
  c.issue->add_option("--host", c.hosts, "DNS name or IP address clients dial (repeatable), e.g. localhost");
  c.issue->add_option("--out", c.out, "file name without extension (default: node-<id> or the client name)");
}

int run_cert_commands(CertCli& c) {
  if (c.init && c.init->parsed()) {
    auto type = c.fips ? security::KeyType::kP256 : security::KeyType::kEd25519;
    if (auto st = security::init_ca_dir(c.dir, c.cluster, type); !st) {
      std::fprintf(stderr, "keel cert init: %s\n", st.error().message.c_str());
      return 1;
    }
    std::printf("created the CA of cluster '%s' (%s): %s/ca.crt, %s/ca.key (keep ca.key secret)\n", c.cluster.c_str(),
                c.fips ? "ECDSA P-256" : "Ed25519", c.dir.c_str(), c.dir.c_str());
    return 0;
  }
  if (c.issue && c.issue->parsed()) {
    if (c.node.empty() == c.client.empty()) {
      std::fprintf(stderr, "keel cert issue: give one of --node ID or --client NAME\n");
      return 2;
    }
    auto ttl = security::parse_ttl(c.ttl);
    if (!ttl) {
      std::fprintf(stderr, "keel cert issue: --ttl %s\n", ttl.error().message.c_str());
      return 2;
    }
    security::IssueRequest req;
    req.kind = c.node.empty() ? security::IssueRequest::Kind::kClient : security::IssueRequest::Kind::kNode;
    req.name = c.node.empty() ? c.client : c.node;
    req.ttl_s = *ttl;
    req.hosts = c.hosts;
    auto id = security::issue_to_dir(c.dir, req, c.out);
    if (!id) {
      std::fprintf(stderr, "keel cert issue: %s\n", id.error().message.c_str());
      return 1;
    }
    std::string name = !c.out.empty() ? c.out : (c.node.empty() ? c.client : "node-" + c.node);
    std::printf("issued %s (valid %s): %s/%s.crt, %s/%s.key\n", id->c_str(), c.ttl.c_str(), c.dir.c_str(), name.c_str(),
                c.dir.c_str(), name.c_str());
    return 0;
  }
  return -1;
}

}  // namespace keel::tools
