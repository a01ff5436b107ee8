#include "token_cli.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/base64.h"
#include "cluster_cli.h"
#include "security/pki.h"
#include "security/token.h"

namespace keel::tools {

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Creates `path` (refusing to overwrite) with `mode`.
bool write_new(const std::string& path, const std::string& text, mode_t mode, std::string& why) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) {
    why = path + ": " + std::strerror(errno);
    return false;
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) why = path + ": write failed";
  return ok;
}

std::array<unsigned char, 32> seed() {
  std::array<unsigned char, 32> s{};
  if (RAND_bytes(s.data(), static_cast<int>(s.size())) != 1) {
    std::fprintf(stderr, "keel token: the system's random source failed\n");
    std::exit(1);
  }
  return s;
}

// "+@read -del,+get" and repeated flags -> one rule per entry; keys and channels get their
// '~' / '&' when given bare.
std::vector<std::string> split_rules(const std::vector<std::string>& in, char prefix) {
  std::vector<std::string> out;
  for (auto& s : in) {
    std::string cur;
    for (char ch : s + " ") {
      if (ch == ' ' || ch == ',') {
        if (!cur.empty()) {
          if (prefix && cur[0] != prefix && cur != "allkeys" && cur != "allchannels") cur.insert(cur.begin(), prefix);
          out.push_back(cur);
        }
        cur.clear();
      } else {
        cur.push_back(ch);
      }
    }
  }
  return out;
}

int fail(const char* what, const std::string& msg, int rc = 1) {
  std::fprintf(stderr, "keel token %s: %s\n", what, msg.c_str());
  return rc;
}

}  // namespace

void add_token_commands(CLI::App& app, TokenCli& t) {
  auto* tok = app.add_subcommand("token", "certificate-bound tokens: a signing key, issuing, attenuating");
  tok->require_subcommand(1);
  t.init = tok->add_subcommand("init", "create the token signing key (DIR/token.key, DIR/token.pub)");
  t.init->add_option("--dir", t.dir, "directory (the CA's): token.key stays there, token.pub goes to the nodes")
      ->capture_default_str();
  t.init->add_flag("--fips", t.fips, "ECDSA P-256 instead of Ed25519");
  t.issue = tok->add_subcommand("issue", "issue a token for a user, bound to a client certificate (prints it)");
  t.issue->add_option("--dir", t.dir, "directory of token.key")->capture_default_str();
  t.issue->add_option("--user", t.user, "the ACL user the token authenticates as")->required();
  t.issue->add_option("--cert", t.cert, "the holder's client certificate (PEM): the token works only with it")->required();
  t.issue->add_option("--ttl", t.ttl, "lifetime: a number with s, m, h or d (1m..3650d; default 1h)");
  t.attenuate = tok->add_subcommand("attenuate", "derive a narrower token offline (prints it)");
  t.attenuate->add_option("--token", t.token, "the token, or - to read it from stdin")->required();
  t.attenuate->add_option("--ttl", t.ttl, "expire sooner: a number with s, m, h or d");
  for (auto* sub : {t.issue, t.attenuate}) {
    sub->add_option("--commands", t.commands, "ACL command rules, e.g. '+@read -keys +set' (repeatable)");
    sub->add_option("--keys", t.keys, "key patterns, e.g. 'orders:*' (repeatable; Redis glob)");
    sub->add_option("--channels", t.channels, "pub/sub channel patterns (repeatable)");
  }
  t.inspect = tok->add_subcommand("inspect", "print a token's blocks and revocation ids (not verified)");
  t.inspect->add_option("--token", t.token, "the token, or - to read it from stdin")->required();
  t.revoke = tok->add_subcommand(
      "revoke", "revoke a token, and every token attenuated from it, on every node of the cluster (over HTTP)");
  auto* by_token = t.revoke->add_option("--token", t.token, "the token, or - to read it from stdin");
  auto* by_id = t.revoke->add_option("--id", t.id, "a revocation id (keel token inspect) instead of the token");
  auto* exp = t.revoke->add_option("--expires", t.expires_s, "with --id: the unix time in seconds its token expires");
  by_token->excludes(by_id);
  exp->needs(by_id);
  t.revoke->add_option("--http", t.http, "a node's HTTP door as HOST:PORT")->capture_default_str();
  t.revoke->add_option("--user", t.http_user,
                       "authenticate as this user (HTTP Basic; the password from the environment variable KEEL_PASSWORD)");
}

int run_token_commands(TokenCli& t) {
  auto read_token = [&]() {
    if (t.token == "-") std::getline(std::cin, t.token);
    while (!t.token.empty() && (t.token.back() == '\n' || t.token.back() == '\r' || t.token.back() == ' '))
      t.token.pop_back();
  };
  if (t.init && t.init->parsed()) {
    EVP_PKEY* k = t.fips ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256") : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (!k) return fail("init", "key generation failed");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(n));
    BIO_free(bio);
    EVP_PKEY_free(k);
    auto key = security::TokenKey::from_pem(pem);
    if (!key) return fail("init", key.error().message);
    ::mkdir(t.dir.c_str(), 0700);
    std::string why;
    if (!write_new(t.dir + "/token.key", key->private_pem(), 0600, why)) return fail("init", why + " (an existing key is never replaced: every token it signed would stop working)");
    if (!write_new(t.dir + "/token.pub", key->public_pem(), 0644, why)) return fail("init", why);
    std::printf("created the token signing key (%s): %s/token.key (keep it with ca.key, off the nodes), %s/token.pub "
                "(give it to every node: auth.token_public_key_file)\n",
                t.fips ? "ECDSA P-256" : "Ed25519", t.dir.c_str(), t.dir.c_str());
    return 0;
  }
  if (t.issue && t.issue->parsed()) {
    auto pem = read_file(t.dir + "/token.key");
    if (!pem) return fail("issue", t.dir + "/token.key: cannot be read (create it with keel token init --dir " + t.dir + ")");
    auto key = security::TokenKey::from_pem(*pem);
    if (!key || !key->has_private()) return fail("issue", t.dir + "/token.key: not a private key");
    auto cert = read_file(t.cert);
    if (!cert) return fail("issue", t.cert + ": cannot be read", 2);
    auto fp = security::certificate_sha256_pem(*cert);
    if (!fp) return fail("issue", t.cert + ": " + fp.error().message, 2);
    auto ttl = security::parse_ttl(t.ttl.empty() ? "1h" : t.ttl);
    if (!ttl) return fail("issue", "--ttl " + ttl.error().message, 2);
    security::TokenBlock b;
    b.user = t.user;
    b.cert_sha256 = *fp;
    b.expires_s = static_cast<int64_t>(std::time(nullptr)) + *ttl;
    b.commands = split_rules(t.commands, 0);
    b.keys = split_rules(t.keys, '~');
    b.channels = split_rules(t.channels, '&');
    auto s = seed();
    auto tok = security::issue_token(*key, b, s);
    if (!tok) return fail("issue", tok.error().message, 2);
    std::printf("%s\n", tok->c_str());
    return 0;
  }
  if (t.attenuate && t.attenuate->parsed()) {
    read_token();
    security::TokenBlock b;
    if (!t.ttl.empty()) {
      auto ttl = security::parse_ttl(t.ttl);
      if (!ttl) return fail("attenuate", "--ttl " + ttl.error().message, 2);
      b.expires_s = static_cast<int64_t>(std::time(nullptr)) + *ttl;
    }
    b.commands = split_rules(t.commands, 0);
    b.keys = split_rules(t.keys, '~');
    b.channels = split_rules(t.channels, '&');
    auto s = seed();
    auto tok = security::attenuate_token(t.token, b, s);
    if (!tok) return fail("attenuate", tok.error().message, 2);
    std::printf("%s\n", tok->c_str());
    return 0;
  }
  if (t.inspect && t.inspect->parsed()) {
    read_token();
    auto p = security::parse_token(t.token);
    if (!p) return fail("inspect", p.error().message, 2);
    for (size_t i = 0; i < p->parts.size(); ++i)
      std::printf("block %zu: %s\nblock %zu revocation id: %s\n", i, p->parts[i].body.c_str(), i,
                  security::block_revocation_id(p->parts[i].signature).c_str());
    std::printf("proof key: %s\n", p->proof.empty() ? "absent (cannot be attenuated)" : "present");
    return 0;
  }
  if (t.revoke && t.revoke->parsed()) {
    nlohmann::json body;
    if (!t.token.empty()) {
      read_token();
      auto target = security::revocation_target(t.token);
      if (!target) return fail("revoke", "the token cannot be read: " + target.error().message, 2);
      body["token"] = t.token;
    } else if (!t.id.empty()) {
      if (t.expires_s <= 0)
        return fail("revoke", "--id needs --expires: the unix time in seconds its token expires (keel token inspect "
                              "shows exp), so that the entry can go after it", 2);
      body["id"] = t.id;
      body["expires_s"] = t.expires_s;
    } else {
      return fail("revoke", "give --token TOKEN (or - for stdin), or --id ID --expires UNIX_SECONDS", 2);
    }
    std::string auth;
    if (!t.http_user.empty()) {
      const char* pw = std::getenv("KEEL_PASSWORD");
      if (!pw) return fail("revoke", "--user needs the password in the environment variable KEEL_PASSWORD", 2);
      auth = "Basic " + base64_encode(t.http_user + ":" + pw);
    }
    int status = 0;
    std::string response, err;
    if (!http_request("POST", t.http, "/v1/auth/revocations", body.dump(), status, response, err, auth))
      return fail("revoke", err);
    auto doc = nlohmann::json::parse(response, nullptr, false);
    if (status != 200) {
      std::string msg = response;
      if (!doc.is_discarded() && doc.contains("error")) msg = doc["error"].value("message", response);
      if (status == 401 && t.http_user.empty())
        msg += " (pass --user NAME, with the password in the environment variable KEEL_PASSWORD)";
      return fail("revoke", msg);
    }
    if (doc.is_discarded()) return fail("revoke", "the node answered something that is not JSON: " + response);
    std::printf("revoked %s%s until %lld: it and every token attenuated from it are refused on every node\n",
                doc.value("id", "").c_str(),
                doc.value("user", "").empty() ? "" : (" (user " + doc.value("user", "") + ")").c_str(),
                static_cast<long long>(doc.value("expires_s", int64_t{0})));
    return 0;
  }
  return -1;
}

}  // namespace keel::tools
