#include "cluster_cli.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace keel::tools {

namespace fs = std::filesystem;
using json = nlohmann::json;

void add_cluster_commands(CLI::App& app, ClusterCli& c) {
  auto* cl = app.add_subcommand("cluster", "a local cluster for trying keel, and cluster status");
  cl->require_subcommand(1);
  c.up = cl->add_subcommand("up", "start a local cluster in the background (RESP, HTTP and peer ports from --base-port)");
  c.up->add_option("--nodes", c.nodes, "number of nodes (1..9)")->check(CLI::Range(1, 9));
  c.up->add_option("--dir", c.dir, "directory for the nodes' data, logs and pid files");
  c.up->add_option("--base-port", c.base_port,
                   "node i gets RESP base+i-1, HTTP base+100+i-1, peers base+200+i-1")
      ->check(CLI::Range(1024, 65000));
  c.up->add_option("--engine", c.engine, "storage engine of the nodes: persistent or memory");
  c.down = cl->add_subcommand("down", "stop the local cluster started by `keel cluster up`");
  c.down->add_option("--dir", c.dir, "the directory given to `keel cluster up`");
  c.status = cl->add_subcommand("status", "members and their health, configuration epoch, last decided slot, decisions/s");
  c.status->add_option("--http", c.http, "HTTP address of any member (default: the first node of --dir, else 127.0.0.1:8380)");
  c.status->add_option("--dir", c.dir, "the directory given to `keel cluster up`");
  c.status->add_flag("--json", c.json, "print the raw JSON");
  c.join = cl->add_subcommand("join", "add a member (a decided reconfiguration); start it first with --join yes");
  c.join->add_option("--http", c.http, "HTTP address of a current member")->required();
  c.join->add_option("--id", c.member_id, "the new member's id")->required()->check(CLI::Range(1, 65535));
  c.join->add_option("--address", c.address, "the new member's peer address HOST:PORT")->required();
  c.leave = cl->add_subcommand("leave", "remove a member (a decided reconfiguration)");
  c.leave->add_option("--http", c.http, "HTTP address of a current member")->required();
  c.leave->add_option("--id", c.member_id, "the member to remove")->required()->check(CLI::Range(1, 65535));
}

namespace {

using beast_verb_t = boost::beast::http::verb;

struct NodeInfo {
  int id = 0;
  int resp = 0, http = 0, peer = 0;
  std::string dir;
  pid_t pid = 0;
};

bool alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// The pid still belongs to that node (a recycled pid never gets our signals): its command line
// names the node's data directory.
bool is_node(const NodeInfo& n) {
  if (!alive(n.pid)) return false;
  std::ifstream f("/proc/" + std::to_string(n.pid) + "/cmdline", std::ios::binary);
  std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::string state;
  std::ifstream st("/proc/" + std::to_string(n.pid) + "/stat");
  std::getline(st, state);
  auto close = state.rfind(')');
  if (close != std::string::npos && close + 2 < state.size() && state[close + 2] == 'Z') return false;  // zombie
  return cmd.find(n.dir) != std::string::npos && cmd.find("serve") != std::string::npos;
}

std::vector<NodeInfo> read_manifest(const std::string& dir) {
  std::vector<NodeInfo> out;
  std::ifstream f(dir + "/cluster.json");
  if (!f) return out;
  json j = json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.contains("nodes")) return out;
  for (auto& n : j["nodes"]) {
    NodeInfo i;
    i.id = n.value("id", 0);
    i.resp = n.value("resp_port", 0);
    i.http = n.value("http_port", 0);
    i.peer = n.value("peer_port", 0);
    i.dir = n.value("data_dir", "");
    i.pid = n.value("pid", 0);
    out.push_back(i);
  }
  return out;
}

// A tiny blocking HTTP request; returns false with `err` when the server cannot be reached.
bool http_call(beast_verb_t verb, const std::string& hostport, const std::string& target, const std::string& req_body,
               int& status, std::string& body, std::string& err, const std::string& authorization = "") {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    err = fmt::format("--http '{}' is not HOST:PORT", hostport);
    return false;
  }
  try {
    asio::io_context io;
    asio::ip::tcp::resolver r(io);
    beast::tcp_stream s(io);
    s.expires_after(std::chrono::seconds(5));
    s.connect(r.resolve(hostport.substr(0, colon), hostport.substr(colon + 1)));
    s.expires_after(std::chrono::seconds(30));
    beast::http::request<beast::http::string_body> req{verb, target, 11};
    req.set(beast::http::field::host, hostport);
    if (!authorization.empty()) req.set(beast::http::field::authorization, authorization);
    if (!req_body.empty()) {
      req.set(beast::http::field::content_type, "application/json");
      req.body() = req_body;
    }
    req.prepare_payload();
    beast::http::write(s, req);
    beast::flat_buffer buf;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(s, buf, res);
    status = res.result_int();
    body = res.body();
    return true;
  } catch (const boost::system::system_error& e) {
    err = fmt::format("cannot reach {}: {}; is a node running there? (pass --http HOST:PORT or --dir DIR)", hostport,
                      e.code().message());
    return false;
  } catch (const std::exception& e) {
    err = fmt::format("cannot reach {}: {}", hostport, e.what());
    return false;
  }
}

bool http_get(const std::string& hostport, const std::string& target, std::string& body, std::string& err) {
  int status = 0;
  return http_call(boost::beast::http::verb::get, hostport, target, "", status, body, err);
}

int cluster_change(ClusterCli& c, bool join) {
  std::string body, err;
  int status = 0;
  bool ok = join ? http_call(boost::beast::http::verb::post, c.http, "/v1/cluster/members",
                             json{{"id", c.member_id}, {"address", c.address}}.dump(), status, body, err)
                 : http_call(boost::beast::http::verb::delete_, c.http, fmt::format("/v1/cluster/members/{}", c.member_id), "",
                             status, body, err);
  if (!ok) {
    std::fprintf(stderr, "keel cluster %s: %s\n", join ? "join" : "leave", err.c_str());
    return 1;
  }
  auto j = json::parse(body, nullptr, false);
  if (status != 200) {
    std::string msg = !j.is_discarded() && j.contains("error") ? j["error"].value("message", body) : body;
    std::fprintf(stderr, "keel cluster %s: %s\n", join ? "join" : "leave", msg.c_str());
    return 1;
  }
  std::printf("node %d %s; configuration epoch %llu, members %s\n", c.member_id, join ? "joined" : "left",
              static_cast<unsigned long long>(j.value("config_epoch", 0ull)), j["config_members"].dump().c_str());
  return 0;
}

int cluster_up(ClusterCli& c, const char* argv0) {
  std::error_code ec;
  fs::create_directories(c.dir, ec);
  if (ec) {
    std::fprintf(stderr, "keel cluster up: cannot create %s: %s\n", c.dir.c_str(), ec.message().c_str());
    return 1;
  }
  for (auto& n : read_manifest(c.dir))
    if (is_node(n)) {
      std::fprintf(stderr, "keel cluster up: a cluster is already running in %s (node %d, pid %d); "
                           "stop it with `keel cluster down --dir %s`\n", c.dir.c_str(), n.id, n.pid, c.dir.c_str());
      return 1;
    }
  std::string self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) self = argv0;
  std::string abs_dir = fs::absolute(c.dir).string();
  std::vector<NodeInfo> nodes;
  std::string peers;
  for (int i = 1; i <= c.nodes; ++i) {
    NodeInfo n;
    n.id = i;
    n.resp = c.base_port + i - 1;
    n.http = c.base_port + 100 + i - 1;
    n.peer = c.base_port + 200 + i - 1;
    n.dir = abs_dir + "/n" + std::to_string(i);
    peers += (peers.empty() ? "" : ",") + fmt::format("{}@127.0.0.1:{}", i, n.peer);
    nodes.push_back(n);
  }
  for (auto& n : nodes) {
    fs::create_directories(n.dir, ec);
    std::string log = n.dir + "/keel.log";
    std::vector<std::string> args = {self, "serve", "--port", std::to_string(n.resp), "--http-port", std::to_string(n.http),
                                     "--data-dir", n.dir, "--engine", c.engine, "--node-id", std::to_string(n.id),
                                     "--peer-port", std::to_string(n.peer), "--peers", peers};
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("keel cluster up: fork");
      return 1;
    }
    if (pid == 0) {
      ::setsid();
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      int nul = ::open("/dev/null", O_RDONLY);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      if (nul >= 0) ::dup2(nul, 0);
      std::vector<char*> av;
      for (auto& a : args) av.push_back(a.data());
      av.push_back(nullptr);
      ::execv(self.c_str(), av.data());
      _exit(127);
    }
    n.pid = pid;
  }
  json manifest;
  for (auto& n : nodes)
    manifest["nodes"].push_back({{"id", n.id}, {"resp_port", n.resp}, {"http_port", n.http}, {"peer_port", n.peer},
                                 {"data_dir", n.dir}, {"pid", n.pid}});
  std::ofstream(c.dir + "/cluster.json") << manifest.dump(2) << "\n";
  // Wait for every node to say it is ready (bounded), then for the cluster to have a quorum.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (auto& n : nodes) {
    for (;;) {
      std::ifstream f(n.dir + "/keel.log");
      std::stringstream ss;
      ss << f.rdbuf();
      if (ss.str().find("ready: RESP on") != std::string::npos) break;
      int st = 0;
      if (::waitpid(n.pid, &st, WNOHANG) == n.pid || std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr, "keel cluster up: node %d did not start; its log (%s/keel.log):\n%s\n", n.id, n.dir.c_str(),
                     ss.str().c_str());
        for (auto& m : nodes)
          if (is_node(m)) ::kill(m.pid, SIGTERM);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  bool quorum = false;
  while (!quorum && std::chrono::steady_clock::now() < deadline) {
    std::string body, err;
    if (http_get(fmt::format("127.0.0.1:{}", nodes[0].http), "/v1/cluster/status", body, err)) {
      auto j = json::parse(body, nullptr, false);
      quorum = !j.is_discarded() && j.value("quorum", false);
    }
    if (!quorum) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("keel cluster of %d node(s) is %s (data in %s)\n", c.nodes, quorum ? "up" : "started but has no quorum yet",
              abs_dir.c_str());
  std::printf("  %-4s %-7s %-6s %-6s %-6s %s\n", "node", "pid", "resp", "http", "peer", "data dir");
  for (auto& n : nodes)
    std::printf("  %-4d %-7d %-6d %-6d %-6d %s\n", n.id, n.pid, n.resp, n.http, n.peer, n.dir.c_str());
  std::printf("try:  curl -X PUT --data-binary hello http://127.0.0.1:%d/v1/meta/greeting\n", nodes[0].http);
  std::printf("      keel cluster status --dir %s\n      keel cluster down --dir %s\n", c.dir.c_str(), c.dir.c_str());
  return quorum ? 0 : 1;
}

int cluster_down(ClusterCli& c) {
  auto nodes = read_manifest(c.dir);
  if (nodes.empty()) {
    std::fprintf(stderr, "keel cluster down: no cluster in %s (no cluster.json); nothing to stop\n", c.dir.c_str());
    return 1;
  }
  int stopped = 0;
  for (auto& n : nodes)
    if (is_node(n)) {
      ::kill(n.pid, SIGTERM);
      ++stopped;
    }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (auto& n : nodes) {
    while (is_node(n) && std::chrono::steady_clock::now() < deadline) {
      ::waitpid(n.pid, nullptr, WNOHANG);  // reaps it if it is our child
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (is_node(n)) {
      std::fprintf(stderr, "keel cluster down: node %d (pid %d) did not stop within 15 s; sending SIGKILL\n", n.id, n.pid);
      ::kill(n.pid, SIGKILL);
    }
  }
  std::printf("stopped %d node(s) of the cluster in %s (data kept; `keel cluster up --dir %s` starts it again)\n",
              stopped, c.dir.c_str(), c.dir.c_str());
  return 0;
}

int cluster_status(ClusterCli& c) {
  std::string addr = c.http;
  if (addr.empty()) {
    auto nodes = read_manifest(c.dir);
    for (auto& n : nodes)
      if (is_node(n)) {
        addr = fmt::format("127.0.0.1:{}", n.http);
        break;
      }
    if (addr.empty()) addr = "127.0.0.1:8380";
  }
  std::string body, err;
  if (!http_get(addr, "/v1/cluster/status", body, err)) {
    std::fprintf(stderr, "keel cluster status: %s\n", err.c_str());
    return 1;
  }
  if (c.json) {
    std::printf("%s", body.c_str());
    return 0;
  }
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "keel cluster status: %s did not answer JSON: %s\n", addr.c_str(), body.c_str());
    return 1;
  }
  if (!j.value("enabled", false)) {
    std::printf("%s: %s\n", addr.c_str(), j.value("message", std::string("not in a cluster")).c_str());
    return 1;
  }
  auto last = j["last_decided_slot"];
  std::printf("cluster '%s' seen from node %d (%s)\n", j.value("cluster_id", std::string()).c_str(), j.value("node_id", 0), addr.c_str());
  std::printf("  health: %s   config epoch: %llu   last decided slot: %s   decisions/s: %.1f\n",
              j.value("health", std::string()).c_str(), static_cast<unsigned long long>(j.value("config_epoch", 0ull)),
              last.is_null() ? "none" : std::to_string(last.get<uint64_t>()).c_str(), j.value("decisions_per_s", 0.0));
  std::printf("  %-4s %-22s %-8s %-10s %-10s %s\n", "id", "address", "status", "connected", "silence", "next slot");
  for (auto& m : j["members"])
    std::printf("  %-4d %-22s %-8s %-10s %-10s %llu%s\n", m.value("id", 0), m.value("address", std::string()).c_str(),
                m.value("status", std::string()).c_str(), m.value("connected", false) ? "yes" : "no",
                fmt::format("{} ms", m.value("silence_ms", 0ll)).c_str(),
                static_cast<unsigned long long>(m.value("next_slot", 0ull)), m.value("self", false) ? "  (this node)" : "");
  for (auto& m : j["members"])
    if (m.contains("link_error"))
      std::printf("  link to %d: %s\n", m.value("id", 0), m.value("link_error", std::string()).c_str());
  auto r = j["rabia"];
  std::printf("  rabia: %llu slots decided, fast path %.0f%%, %llu NULL, %.2f phases/decision; log %llu syncs, %.1f commands/sync\n",
              static_cast<unsigned long long>(r.value("slots_decided", 0ull)), 100 * r.value("fast_path_share", 0.0),
              static_cast<unsigned long long>(r.value("null_decisions", 0ull)), r.value("phases_per_decision", 0.0),
              static_cast<unsigned long long>(j["log"].value("syncs", 0ull)), j["log"].value("commands_per_sync", 0.0));
  if (j.contains("partitions")) {
    auto& p = j["partitions"];
    unsigned total = p.value("count", 0u);
    std::printf("  partitions: %u, %u copies each (write quorum %u), map version %llu; %u under-replicated; "
                "%llu failovers decided here\n",
                total, p.value("copies", 0u), p.value("write_quorum", 0u),
                static_cast<unsigned long long>(p.value("map_version", 0ull)), p.value("under_replicated", 0u),
                static_cast<unsigned long long>(p.value("failovers", 0ull)));
    std::printf("  %-4s %-10s %-10s %s\n", "node", "primaries", "replicas", "share of primaries");
    for (auto& n : p["nodes"]) {
      unsigned prim = n.value("primaries", 0u);
      int bar = total ? static_cast<int>(40.0 * prim / total + 0.5) : 0;
      std::printf("  %-4u %-10u %-10u %s\n", n.value("id", 0u), prim, n.value("replicas", 0u),
                  std::string(static_cast<size_t>(bar), '#').c_str());
    }
    auto& rb = p["rebalance"];
    unsigned remaining = rb.value("remaining", 0u), all = rb.value("total", 0u);
    if (remaining == 0) {
      std::printf("  moves: none (every partition is where placement puts it)\n");
    } else {
      unsigned done = all > remaining ? all - remaining : 0;
      int bar = all ? static_cast<int>(30.0 * done / all + 0.5) : 0;
      std::string eta = rb["eta_s"].is_null() ? "unknown" : fmt::format("{} s", rb["eta_s"].get<int64_t>());
      std::printf("  moves: %u of %u partitions switched [%s%s] %.0f%%, %u to go, ETA %s\n", done, all,
                  std::string(static_cast<size_t>(bar), '#').c_str(), std::string(static_cast<size_t>(30 - bar), '.').c_str(),
                  all ? 100.0 * done / all : 0.0, remaining, eta.c_str());
      for (auto& t : rb["transfers"])
        std::printf("    partition %-5u node %u -> node %u  %s\n", t.value("partition", 0u), t.value("from", 0u),
                    t.value("to", 0u), t.value("caught_up", false) ? "caught up, switching" : "copying");
    }
  }
  return j.value("quorum", false) ? 0 : 3;
}

}  // namespace

int run_cluster_commands(ClusterCli& c, const char* argv0) {
  if (c.up && c.up->parsed()) {
    if (c.engine != "persistent" && c.engine != "memory") {
      std::fprintf(stderr, "keel cluster up: --engine '%s' is not allowed; allowed: persistent, memory\n", c.engine.c_str());
      return 2;
    }
    return cluster_up(c, argv0);
  }
  if (c.down && c.down->parsed()) return cluster_down(c);
  if (c.status && c.status->parsed()) return cluster_status(c);
  if (c.join && c.join->parsed()) return cluster_change(c, true);
  if (c.leave && c.leave->parsed()) return cluster_change(c, false);
  return -1;
}

bool http_request(const std::string& method, const std::string& hostport, const std::string& target,
                  const std::string& body, int& status, std::string& response, std::string& err,
                  const std::string& authorization) {
  auto verb = method == "POST"     ? boost::beast::http::verb::post
              : method == "DELETE" ? boost::beast::http::verb::delete_
                                   : boost::beast::http::verb::get;
  return http_call(verb, hostport, target, body, status, response, err, authorization);
}

}  // namespace keel::tools
