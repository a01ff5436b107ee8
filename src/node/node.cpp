#include "node/node.h"

#include <cstdlib>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/random.h"
#include "dht/effect.h"
#include "dht/service.h"
#include "runtime/cluster/meta_service.h"
#include "services/cache/service.h"
#include "cluster/peer_address.h"
#include "frontends/http/gateway.h"
#include "frontends/http/server.h"
#include "gateway/route.h"
#include "services/routing/service.h"
#include "frontends/resp/command.h"
#include "frontends/resp/server.h"
#include "security/acl.h"
#include "security/acl_service.h"
#include "security/audit_stream.h"
#include "security/client_limits.h"
#include "security/secrets_service.h"
#include "security/transit_service.h"
#include "security/token.h"
#include "security/pki.h"
#include "security/tls.h"
#include "node/at_rest_admin.h"
#include "node/logging.h"
#include "observe/health_board.h"
#include "observe/log_export.h"
#include "observe/slowlog.h"
#include "observe/tracer.h"
#include "observe/log_context.h"
#include "keel/capacitor.h"
#include "keel/config_file_watcher.h"
#include "keel/signals.h"
#include "runtime/shards.h"
#include "observe/log.h"
#include "observe/signal_hub.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kNode); }
}  // namespace

namespace keel::node {

namespace asio = boost::asio;

namespace {

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "K", "M", "G", "T"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{}B", n) : fmt::format("{:.2f}{}", v, units[u]);
}

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// The node id: random, and for the persistent engine kept in data_dir/NODE_ID so that a
// restarted node is the same node to cluster clients.
std::string load_or_create_node_id(const Config& cfg) {
  bool persistent = cfg.storage.kind == storage::EngineConfig::Kind::kPersistent;
  std::string path = cfg.storage.data_dir + "/NODE_ID";
  if (persistent) {
    std::ifstream in(path);
    std::string id;
    if (in >> id && id.size() == 40) return id;
  }
  uint64_t a = system_seed(), b = system_seed(), c = system_seed();
  std::string id = fmt::format("{:016x}{:016x}{:08x}", a, b, static_cast<uint32_t>(c));
  if (persistent) {
    std::error_code ec;
    std::filesystem::create_directories(cfg.storage.data_dir, ec);
    std::ofstream(path) << id << "\n";
  }
  return id;
}

}  // namespace

struct Node::Impl final : resp::NodeView {
  Config cfg;
  std::vector<std::unique_ptr<storage::Engine>> engines;
  std::unique_ptr<runtime::ShardSet> shards;
  std::unique_ptr<resp::Server> resp;
  std::unique_ptr<http::Server> http;
  std::unique_ptr<routing::Service> routes;     // the gateway's route table (registrations in `meta`)
  std::unique_ptr<http::Gateway> gateway;       // the proxy, when gateway.enabled
  std::unique_ptr<http::Server> gateway_http;   // the dedicated gateway listener, when gateway.port
  int gateway_port = 0;
  std::unique_ptr<cluster::MetaService> meta;  // cluster metadata (Rabia), when node_id != 0
  std::unique_ptr<cache::Service> caches;      // named caches (definitions in `meta`)
  std::unique_ptr<dht::Service> dht;           // the distributed hash map, when node_id != 0
  std::unique_ptr<security::Acl> acl;          // users and access rules (kept in `meta`)
  std::unique_ptr<security::AclService> acl_service;
  std::unique_ptr<security::TransitService> transit;
  std::unique_ptr<security::SecretsService> secrets;
  std::shared_ptr<security::ClientLimits> client_limits;  // per user / address, both doors
  std::atomic<uint32_t> live_members{1};  // members reachable (self included), by the health poller
  std::atomic<int64_t> tls_not_after{0};  // the served certificate (tls.cert_file): unix seconds (0: no TLS listener)
  // TLS: the listeners' contexts (replaced on reload) and peer links' mutual TLS.
  std::shared_ptr<security::TlsContextSlot> resp_tls, http_tls;
  std::shared_ptr<security::PeerTls> peer_tls;
  std::thread tls_thread;  // watches the certificate files (tls.reload_interval_ms)
  std::atomic<uint64_t> tls_reloads{0}, tls_reload_failures{0}, tls_renewals{0}, tls_renewal_failures{0};
  int https_port = 0;
  std::unique_ptr<observe::HealthBoard> health;  // facts for /health/ready (health_poller, maintenance)
  std::thread health_thread;
  std::unique_ptr<observe::Tracer> tracer;     // when trace.endpoint is set
  std::unique_ptr<observe::LogExporter> log_exporter;  // when log.otlp_endpoint is set
  // Signals (observe/signal_hub.h): their routes from signals.file, reloaded by a Capacitor
  // whose file watcher has a thread of its own; its applied/rejected events come through
  // config_signals and are signals themselves.
  sdk::SignalBus config_signals;
  std::unique_ptr<sdk::Capacitor<observe::SignalRoutes>> signal_routes;
  std::unique_ptr<sdk::ConfigFileWatcher> signal_watcher;
  std::mutex signal_span_mu;
  SeededRandom signal_span_rng{system_seed()};  // guarded by signal_span_mu
  std::mutex health_mu;
  std::condition_variable health_cv;
  bool health_stop = false;
  int resp_port = 0;
  int tls_port = 0;  // bound RESP-over-TLS port (0: off)
  int peer_port = 0;
  int http_port = 0;
  int64_t started_ms = SystemClock::instance().now_ms();
  asio::io_context main_io;
  std::atomic<bool> stopped{false};
  bool running = false;  // shard threads started

  explicit Impl(Config c)
      : cfg(std::move(c)), slow(std::make_shared<observe::SlowLog>(cfg.slowlog_slower_than_us, cfg.slowlog_max_len)) {}
  // CONFIG GET/SET run on any shard thread; cfg is read and written under this lock.
  mutable std::mutex config_mu;
  // Redis's encoding knobs: clients and test suites set them; keel's collections have one
  // encoding each, so they are accepted, kept and reported by CONFIG GET, and change nothing.
  // The *-ziplist-* names are aliases of the *-listpack-* ones, as in Redis 7.
  std::map<std::string, std::string, std::less<>> encoding_knobs = {
      {"hash-max-listpack-entries", "128"}, {"hash-max-listpack-value", "64"},
      {"list-max-listpack-size", "-2"},     {"list-compress-depth", "0"},
      {"set-max-intset-entries", "512"},    {"set-max-listpack-entries", "128"},
      {"set-max-listpack-value", "64"},     {"zset-max-listpack-entries", "128"},
      {"zset-max-listpack-value", "64"},    {"stream-node-max-bytes", "4096"},
      {"stream-node-max-entries", "100"}};
  static std::string knob_name(std::string_view name) {
    std::string n(name);
    if (auto at = n.find("-ziplist-"); at != std::string::npos) n.replace(at, 9, "-listpack-");
    return n;
  }

  // --- NodeView (read by CONFIG, AUTH, HELLO on any shard: fields read here are immutable
  // after start except through config_set, which only touches run-time-safe settings).
  std::string config_get(std::string_view name) const override {
    for (auto& [k, v] : config_matching(name)) return v;
    return "";
  }
  std::vector<std::pair<std::string, std::string>> config_matching(std::string_view pattern) const override {
    std::lock_guard lock(config_mu);
    std::vector<std::pair<std::string, std::string>> out;
    // Redis names first (what redis-benchmark and clients ask for), then keel's own keys.
    std::vector<std::pair<std::string, std::string>> all = {
        {"port", std::to_string(resp_port)},
        {"bind", cfg.bind},
        {"maxclients", std::to_string(cfg.max_clients)},
        {"timeout", std::to_string(cfg.timeout_s)},
        {"loglevel", cfg.log_level},
        {"maxmemory", std::to_string(cfg.storage.max_memory_bytes)},
        {"maxmemory-policy", std::string(storage::eviction_policy_name(cfg.storage.eviction))},
        {"maxmemory-samples", std::to_string(cfg.storage.eviction_samples)},
        {"proto-max-bulk-len", std::to_string(cfg.proto_max_bulk_len)},
        {"client-query-buffer-limit", std::to_string(cfg.query_buffer_limit)},
        {"client-output-buffer-limit",
         fmt::format("normal {} slave {} pubsub {} {} {}", obuf_normal, obuf_replica, cfg.pubsub_output_hard,
                     cfg.pubsub_output_soft, cfg.pubsub_output_soft_s)},
        {"databases", "1"},
        {"save", ""},
        {"appendonly", cfg.storage.kind == storage::EngineConfig::Kind::kPersistent ? "yes" : "no"},
        {"appendfsync", std::string(storage::fsync_policy_name(cfg.storage.fsync))},
        {"dir", cfg.storage.data_dir},
        {"tls-port", std::to_string(tls_port)},
        {"tls-cert-file", cfg.tls_cert_file},
        {"tls-key-file", cfg.tls_key_file},
        {"tls-ca-cert-file", cfg.tls_ca_cert_file},
        {"tls-auth-clients", cfg.tls_auth_clients},
        {"slowlog-log-slower-than", std::to_string(cfg.slowlog_slower_than_us)},
        {"slowlog-max-len", std::to_string(cfg.slowlog_max_len)},
    };
    for (auto& kv : encoding_knobs) {
      all.push_back(kv);
      if (auto at = kv.first.find("-listpack-"); at != std::string::npos && kv.first[0] != 's')
        all.emplace_back(kv.first.substr(0, at) + "-ziplist-" + kv.first.substr(at + 10), kv.second);
    }
    for (auto& kv : describe(cfg)) {
      // Only a hash of the password is kept (ACL GETUSER default shows it).
      if (kv.first == "server.requirepass") kv.second.clear();
      all.push_back(kv);
    }
    all.emplace_back("requirepass", "");
    for (auto& kv : all)
      if (resp::glob_match(pattern, kv.first, true)) out.push_back(kv);
    return out;
  }
  // CONFIG SET: the settings that can change while serving. Everything else is refused with
  // the reason. Values are validated by the same rules as keel.toml.
  std::string config_set(std::string_view name, std::string_view value) override {
    static const std::map<std::string, std::string, std::less<>> kAliases = {
        {"maxclients", "server.max_clients"}, {"timeout", "server.timeout_s"},
        {"loglevel", "log.level"},           {"server.max_clients", "server.max_clients"},
        {"server.timeout_s", "server.timeout_s"}, {"log.level", "log.level"},
        {"slowlog-log-slower-than", "slowlog.slower_than_us"}, {"slowlog-max-len", "slowlog.max_len"},
        {"slowlog.slower_than_us", "slowlog.slower_than_us"}, {"slowlog.max_len", "slowlog.max_len"}};
    if (auto knob = encoding_knobs.find(knob_name(name)); knob != encoding_knobs.end()) {
      int64_t n = 0;
      if (!resp::parse_int64(value, n)) return "argument couldn't be parsed into an integer";
      std::lock_guard lock(config_mu);
      knob->second = std::to_string(n);
      klog().info("CONFIG SET {} {}: accepted, no effect (keel has one encoding per type)", name, value);
      return "";
    }
    if (resp::iequals(name, "client-output-buffer-limit")) return set_output_buffer_limit(value);
    auto it = kAliases.find(name);
    if (it == kAliases.end())
      return fmt::format("'{}' cannot be changed at run time (allowed: maxclients, timeout, loglevel, "
                         "client-output-buffer-limit, requirepass, slowlog-log-slower-than, slowlog-max-len); "
                         "set it in keel.toml, a KEEL_* variable or a flag and restart",
                         name);
    std::string v(value);
    if (it->second == "log.level" && v == "warning") v = "warn";  // Redis's spelling
    if (it->second == "log.level" && v == "notice") v = "info";
    std::lock_guard lock(config_mu);
    Config next = cfg;
    std::vector<Problem> problems;
    apply(next, it->second, v, problems);
    if (!problems.empty()) return problems.front().message;
    cfg = next;
    if (resp) {
      resp->set_max_clients(cfg.max_clients);
      resp->set_timeout_s(cfg.timeout_s);
    }
    slow->configure(cfg.slowlog_slower_than_us, cfg.slowlog_max_len);
    std::string level_error;
    if (auto levels = observe::parse_log_levels(cfg.log_level, level_error)) observe::apply_log_levels(*levels);
    observe::signal(observe::Signal::kConfigChanged, fmt::format("CONFIG SET {} {}", name, value));
    return "";
  }
  // CONFIG SET client-output-buffer-limit "<class> <hard> <soft> <soft seconds> ...", Redis's
  // syntax. The pubsub class is enforced (limits.pubsub_output_*); keel has no replica
  // clients and does not cut off normal clients, so those classes are kept only to be
  // reported back, as Redis's encoding knobs are.
  std::string set_output_buffer_limit(std::string_view value) {
    std::vector<std::string> words;
    for (size_t i = 0; i < value.size();) {
      size_t j = value.find(' ', i);
      if (j == std::string_view::npos) j = value.size();
      if (j > i) words.emplace_back(value.substr(i, j - i));
      i = j + 1;
    }
    if (words.empty() || words.size() % 4 != 0) return "Wrong number of arguments in buffer limit configuration.";
    std::lock_guard lock(config_mu);
    Config next = cfg;
    std::string normal = obuf_normal, replica = obuf_replica;
    for (size_t i = 0; i < words.size(); i += 4) {
      const std::string cls = resp::to_lower(words[i]);
      uint64_t hard = 0, soft = 0;
      int64_t secs = 0;
      if (cls != "normal" && cls != "slave" && cls != "replica" && cls != "pubsub")
        return fmt::format("Invalid client class specified in buffer limit configuration: '{}' (allowed: normal, replica, slave, pubsub)", words[i]);
      if (!parse_size(words[i + 1], hard) || !parse_size(words[i + 2], soft) ||
          !resp::parse_int64(words[i + 3], secs) || secs < 0 || secs > 31536000)
        return "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
      const std::string triple = fmt::format("{} {} {}", hard, soft, secs);
      if (cls == "normal") {
        normal = triple;
      } else if (cls == "pubsub") {
        next.pubsub_output_hard = hard;
        next.pubsub_output_soft = soft;
        next.pubsub_output_soft_s = static_cast<uint64_t>(secs);
      } else {
        replica = triple;
      }
    }
    cfg = next;
    obuf_normal = normal;
    obuf_replica = replica;
    if (resp) resp->set_pubsub_limits({cfg.pubsub_output_hard, cfg.pubsub_output_soft, cfg.pubsub_output_soft_s});
    klog().info("CONFIG SET client-output-buffer-limit {}", value);
    return "";
  }
  std::string obuf_normal = "0 0 0", obuf_replica = "268435456 67108864 60";
  bool auth(std::string_view user, std::string_view password) const override {
    return user == "default" && !cfg.requirepass.empty() && password == cfg.requirepass;
  }
  bool auth_required() const override { return !cfg.requirepass.empty(); }
  std::string_view version() const override { return kRedisCompatVersion; }
  std::string node_id() const override { return id; }
  std::string announce_ip() const override { return cfg.bind == "0.0.0.0" ? "127.0.0.1" : cfg.bind; }
  // Where clients are sent (MOVED, CLUSTER SLOTS): the TLS port when the plaintext one is off.
  int announce_port() const override { return resp_port ? resp_port : tls_port; }
  std::shared_ptr<const dht::Topology> topology() const override { return dht ? dht->latest() : nullptr; }
  bool clustered() const override { return dht != nullptr; }
  observe::SlowLog* slowlog() const override { return slow.get(); }
  // Slow requests of both doors (SLOWLOG, GET /v1/slowlog, the admin page).
  std::shared_ptr<observe::SlowLog> slow;
  // The audit stream (audit.stream; null when off) and its handle as audit::emit()'s sink.
  std::shared_ptr<security::AuditStream> audit_stream;
  uint64_t audit_sink = 0;
  void start_audit_stream();
  void stop_audit_stream();
  std::string audit_stream_metrics() const;
  std::string id;  // 40 hex characters, kept in the data directory for the persistent engine

  std::string info(std::string_view section, const resp::Snapshot& s) const {
    std::lock_guard lock(config_mu);
    bool all = section == "all" || section == "everything";
    bool def = section == "default" || all;
    auto want = [&](std::string_view name) { return def || section == name; };
    std::string o;
    auto line = [&](std::string_view k, auto v) { o += fmt::format("{}:{}\r\n", k, v); };
    int64_t now = SystemClock::instance().now_ms();
    if (want("server")) {
      o += "# Server\r\n";
      line("redis_version", kRedisCompatVersion);
      line("keel_version", kVersion);
      line("redis_mode", "standalone");
      line("os", "Linux");
      line("arch_bits", 64);
      line("process_id", getpid());
      line("tcp_port", resp_port);
      line("tls_port", tls_port);
      line("https_port", https_port);
      line("http_port", http_port);
      line("shards", s.shards);
      line("uptime_in_seconds", (now - started_ms) / 1000);
      line("uptime_in_days", (now - started_ms) / 86400000);
      o += "\r\n";
    }
    if (want("clients")) {
      o += "# Clients\r\n";
      line("connected_clients", s.stats.connections_current);
      line("maxclients", cfg.max_clients);
      o += "\r\n";
    }
    if (want("memory")) {
      o += "# Memory\r\n";
      line("used_memory", s.engine.used_memory_bytes);
      line("used_memory_human", human_bytes(s.engine.used_memory_bytes));
      uint64_t rss = rss_bytes();
      line("used_memory_rss", rss);
      line("used_memory_rss_human", human_bytes(rss));
      line("maxmemory", cfg.storage.max_memory_bytes);
      line("maxmemory_human", human_bytes(cfg.storage.max_memory_bytes));
      line("maxmemory_policy", storage::eviction_policy_name(cfg.storage.eviction));
      o += "\r\n";
    }
    if (want("persistence")) {
      bool persistent = cfg.storage.kind == storage::EngineConfig::Kind::kPersistent;
      o += "# Persistence\r\n";
      line("loading", 0);
      line("engine", persistent ? "persistent" : "memory");
      line("aof_enabled", persistent ? 1 : 0);
      line("fsync", storage::fsync_policy_name(cfg.storage.fsync));
      line("wal_syncs", s.engine.syncs_total);
      line("disk_bytes", s.engine.disk_bytes);
      if (s.disk) {
        // Redis's names where they fit (a refused write is like a failed background save),
        // then keel's own.
        line("rdb_last_bgsave_status", s.disk->writable ? "ok" : "err");
        line("aof_last_write_status", s.disk->writable ? "ok" : "err");
        line("disk_write_status", s.disk->state);
        line("disk_writable", s.disk->writable ? 1 : 0);
        line("disk_read_only_open", s.disk->read_only ? 1 : 0);
        line("disk_free_bytes", s.disk->free_bytes);
        line("disk_min_free_bytes", cfg.storage.min_free_bytes);
        line("disk_write_errors", s.disk->write_errors_total);
        line("disk_refused_writes", s.disk->refused_writes_total);
        line("disk_error", s.disk->error);
      }
      o += "\r\n";
    }
    if (want("cpu")) {
      // getrusage: this process's CPU time, and that of children it waited for.
      rusage self{}, children{};
      getrusage(RUSAGE_SELF, &self);
      getrusage(RUSAGE_CHILDREN, &children);
      auto secs = [](const timeval& t) { return fmt::format("{}.{:06}", t.tv_sec, t.tv_usec); };
      o += "# CPU\r\n";
      line("used_cpu_sys", secs(self.ru_stime));
      line("used_cpu_user", secs(self.ru_utime));
      line("used_cpu_sys_children", secs(children.ru_stime));
      line("used_cpu_user_children", secs(children.ru_utime));
      o += "\r\n";
    }
    if (want("stats")) {
      uint64_t calls = 0;
      for (auto& c : s.stats.commands) calls += c.calls;
      o += "# Stats\r\n";
      line("total_connections_received", s.stats.connections_total);
      line("total_commands_processed", calls);
      line("total_net_input_bytes", s.stats.net_input_bytes);
      line("total_net_output_bytes", s.stats.net_output_bytes);
      line("rejected_connections", s.stats.rejected_connections);
      line("expired_keys", s.engine.expired_keys_total);
      line("evicted_keys", s.engine.evicted_keys_total);
      line("protocol_errors", s.stats.protocol_errors);
      line("tls_handshake_failures", s.stats.tls_handshake_failures);
      line("tls_peer_refused_handshakes", peer_tls ? peer_tls->refused_handshake.load() : 0);
      line("tls_peer_refused_identities", peer_tls ? peer_tls->refused_identity.load() : 0);
      line("tls_reloads", tls_reloads.load());
      line("tls_reload_failures", tls_reload_failures.load());
      line("tls_renewals", tls_renewals.load());
      line("rate_limited_user", client_limits ? client_limits->refused_by_user() : 0);
      line("rate_limited_address", client_limits ? client_limits->refused_by_address() : 0);
      line("tls_renewal_failures", tls_renewal_failures.load());
      line("cross_shard_hops", s.stats.cross_shard_hops);
      // Summed over shards: a channel subscribed to on two shards counts twice here (PUBSUB
      // CHANNELS and NUMPAT give the distinct names).
      line("pubsub_channels", s.stats.pubsub_channels);
      line("pubsub_patterns", s.stats.pubsub_patterns);
      line("pubsubshard_channels", s.stats.pubsub_shard_channels);
      line("client_output_buffer_limit_disconnections", s.stats.client_output_buffer_limit_disconnections);
      line("pubsub_messages_delivered", s.stats.pubsub_messages_delivered);
      line("pubsub_fanout_dropped", s.stats.pubsub_fanout_dropped);
      if (acl) {
        auto d = acl->denials();
        line("acl_access_denied_auth", d.auth);
        line("acl_access_denied_cmd", d.command);
        line("acl_access_denied_key", d.key);
        line("acl_access_denied_channel", d.channel);
        line("auth_lockout_refusals", acl->lockout_refusals());
        line("auth_lockouts", acl->lockouts_started());
        line("token_refusals", acl->token_refusals());
      }
      o += "\r\n";
    }
    if (all || section == "commandstats") {
      o += "# Commandstats\r\n";
      auto& cmds = resp::all_commands();
      for (size_t i = 0; i < s.stats.commands.size() && i < cmds.size(); ++i) {
        auto& c = s.stats.commands[i];
        if (!c.calls) continue;
        o += fmt::format("cmdstat_{}:calls={},usec={},usec_per_call={:.2f},rejected_calls=0,failed_calls={}\r\n",
                         cmds[i]->name, c.calls, c.usec_sum,
                         static_cast<double>(c.usec_sum) / static_cast<double>(c.calls), c.failed);
      }
      o += "\r\n";
    }
    if (want("cluster")) {
      // keel always answers CLUSTER SLOTS/SHARDS, so Redis Cluster clients may use it.
      o += "# Cluster\r\ncluster_enabled:1\r\n\r\n";
    }
    if (want("keyspace")) {
      o += "# Keyspace\r\n";
      if (s.engine.keys)
        o += fmt::format("db0:keys={},expires={},avg_ttl=0\r\n", s.engine.keys, s.engine.keys_with_expiry);
    }
    while (o.size() >= 2 && o.compare(o.size() - 2, 2, "\r\n") == 0 &&
           o.size() >= 4 && o.compare(o.size() - 4, 4, "\r\n\r\n") == 0)
      o.resize(o.size() - 2);
    return o;
  }

  asio::awaitable<void> maintenance(unsigned sid) {
    auto& s = shards->shard(sid);
    asio::steady_timer t(s.io);
    for (;;) {
      t.expires_after(std::chrono::milliseconds(100));
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec || stopped) co_return;
      s.engine->maintenance(SystemClock::instance().now_ms(), 2000);
      if (tracer) tracer->flush(sid);
      if (health) {
        observe::ShardReport r;
        if (dht) {
          auto h = dht->shard_health(sid);
          r = {h.has_map, h.primaries, h.fenced, h.lease_lapsed, h.replicas};
        }
        health->shard_report(sid, SystemClock::instance().monotonic_ns() / 1000000, r);
      }
    }
  }

  // Writes, syncs and removes a probe file in the data directory: "" if that worked. Fails as
  // well while the persistent engine refuses writes (disk full or failing), with its reason.
  std::string probe_storage() const {
    if (shards && shards->size() > 0)
      if (auto d = shards->shard(0).engine->disk_state(); d && !d->writable) return d->error;
    std::string path = cfg.storage.data_dir + "/.keel-health-probe";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return fmt::format("cannot create {}: {}", path, std::strerror(errno));
    std::string err;
    if (::write(fd, "ok\n", 3) != 3) err = fmt::format("cannot write {}: {}", path, std::strerror(errno));
    else if (::fsync(fd) != 0) err = fmt::format("cannot sync {}: {}", path, std::strerror(errno));
    ::close(fd);
    ::unlink(path.c_str());
    return err;
  }

  // The files and client-certificate rules of the TLS doors, fixed at start (the reload
  // thread reads these, never `cfg`, which CONFIG SET may rewrite meanwhile).
  security::TlsServerFiles resp_files, https_files;
  uint64_t tls_min_days = 3;  // health.tls_min_days

  Status set_tls_files() {
    security::TlsServerFiles tf;
    tf.cert_file = cfg.tls_cert_file;
    tf.key_file = cfg.tls_key_file;
    tf.ca_cert_file = cfg.tls_ca_cert_file;
    resp_files = https_files = tf;
    auto auth = security::parse_client_auth(cfg.tls_auth_clients);
    if (!auth) return make_error(Errc::kInvalidArgument, "tls.auth_clients: " + auth.error().message);
    resp_files.auth = *auth;
    auto hauth = security::parse_client_auth(cfg.tls_http_auth_clients);
    if (!hauth) return make_error(Errc::kInvalidArgument, "tls.http_auth_clients: " + hauth.error().message);
    https_files.auth = *hauth;
    https_files.door = "https";
    return {};
  }

  // The served certificate's expiry, for /metrics and the `certificates` readiness check.
  void read_cert_expiry() {
    std::ifstream f(resp_files.cert_file, std::ios::binary);
    std::string pem((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (auto info = security::inspect(pem)) tls_not_after = info->not_after;
  }

  void update_certificate_health() {
    if (!health || !tls_not_after) return;
    std::vector<observe::CertificateFacts> certs;
    if (resp_tls) certs.push_back({"resp", tls_not_after});
    if (http_tls) certs.push_back({"https", tls_not_after});
    if (peer_tls) certs.push_back({"peer", tls_not_after});
    health->set_certificates(std::move(certs), static_cast<int64_t>(tls_min_days));
  }

  std::string tls_metrics() const {
    std::string o;
    if (client_limits && client_limits->enabled())
      o += fmt::format(
          "# HELP keel_rate_limited_total Requests refused by the rate limits per user and per client address "
          "(limits.user_rate, limits.address_rate).\n"
          "# TYPE keel_rate_limited_total counter\nkeel_rate_limited_total{{by=\"user\"}} {}\n"
          "keel_rate_limited_total{{by=\"address\"}} {}\n",
          client_limits->refused_by_user(), client_limits->refused_by_address());
    if (client_limits && cfg.address_connections)
      o += fmt::format(
          "# HELP keel_connections_refused_total Connections refused because their client address held "
          "limits.address_connections open connections already (RESP and HTTP).\n"
          "# TYPE keel_connections_refused_total counter\nkeel_connections_refused_total{{reason=\"address_limit\"}} {}\n",
          client_limits->connections_refused());
    if (peer_tls)
      o += fmt::format(
          "# HELP keel_peer_tls_refusals_total Peer connections refused under tls.peer = yes: the TLS handshake failed "
          "(no certificate, another CA, expired, plaintext) or the certificate names another node than the peer claims.\n"
          "# TYPE keel_peer_tls_refusals_total counter\n"
          "keel_peer_tls_refusals_total{{reason=\"handshake\"}} {}\nkeel_peer_tls_refusals_total{{reason=\"identity\"}} {}\n",
          peer_tls->refused_handshake.load(), peer_tls->refused_identity.load());
    if (resp_tls || http_tls || peer_tls) {
      o += fmt::format(
          "# HELP keel_tls_reloads_total Times the changed certificate files were loaded and put in use for new connections.\n"
          "# TYPE keel_tls_reloads_total counter\nkeel_tls_reloads_total {}\n"
          "# HELP keel_tls_reload_failures_total Times changed certificate files could not be loaded (the previous ones stay in use).\n"
          "# TYPE keel_tls_reload_failures_total counter\nkeel_tls_reload_failures_total {}\n"
          "# HELP keel_tls_renewals_total Times this node renewed its own certificate from the CA (tls.ca_key_file).\n"
          "# TYPE keel_tls_renewals_total counter\nkeel_tls_renewals_total {}\n"
          "# HELP keel_tls_renewal_failures_total Attempts to renew this node's certificate that failed (retried a minute later).\n"
          "# TYPE keel_tls_renewal_failures_total counter\nkeel_tls_renewal_failures_total {}\n",
          tls_reloads.load(), tls_reload_failures.load(), tls_renewals.load(), tls_renewal_failures.load());
      if (int64_t t = tls_not_after.load()) {
        o += "# HELP keel_tls_certificate_expiry_timestamp_seconds When the certificate a TLS listener serves expires (unix time).\n"
             "# TYPE keel_tls_certificate_expiry_timestamp_seconds gauge\n";
        if (resp_tls) o += fmt::format("keel_tls_certificate_expiry_timestamp_seconds{{listener=\"resp\"}} {}\n", t);
        if (http_tls) o += fmt::format("keel_tls_certificate_expiry_timestamp_seconds{{listener=\"https\"}} {}\n", t);
        if (peer_tls) o += fmt::format("keel_tls_certificate_expiry_timestamp_seconds{{listener=\"peer\"}} {}\n", t);
      }
    }
    return o;
  }

  // Reloads the certificate, key and CA files when they change (tls.reload_interval_ms): new
  // connections use the new ones, connections already open keep theirs. Every context is
  // built before any is replaced, so a bad file changes nothing: it is logged and counted,
  // and the files are tried again when they change next.
  void watch_certificates(int64_t interval_ms) {
    const auto& f = resp_files;
    security::FileWatch watch({f.cert_file, f.key_file, f.ca_cert_file});
    // Renewal (tls.ca_key_file): a jitter drawn once, so members issued together spread out.
    const double jitter01 = std::uniform_real_distribution<double>(0.0, 1.0)(*std::make_unique<std::random_device>());
    int64_t next_renewal_try_s = 0;
    for (;;) {
      {
        std::unique_lock lk(health_mu);
        if (health_cv.wait_for(lk, std::chrono::milliseconds(interval_ms), [&] { return health_stop; })) return;
      }
      if (!cfg.tls_ca_key_file.empty()) maybe_renew_certificate(jitter01, next_renewal_try_s);
      if (!watch.changed()) continue;
      std::string error;
      std::shared_ptr<boost::asio::ssl::context> resp_ctx, http_ctx;
      if (resp_tls) {
        auto c = security::make_server_context(resp_files);
        if (c) resp_ctx = std::move(*c);
        else error = c.error().message;
      }
      if (error.empty() && http_tls) {
        auto c = security::make_server_context(https_files);
        if (c) http_ctx = std::move(*c);
        else error = c.error().message;
      }
      if (error.empty() && peer_tls) {
        if (auto st = peer_tls->reload(); !st) error = st.error().message;
      }
      if (!error.empty()) {
        ++tls_reload_failures;
        klog().error("TLS: the changed certificate files were not loaded, the previous ones stay in use: {}", error);
        continue;
      }
      if (resp_ctx) resp_tls->set(std::move(resp_ctx));
      if (http_ctx) http_tls->set(std::move(http_ctx));
      read_cert_expiry();
      update_certificate_health();
      ++tls_reloads;
      klog().info("TLS: reloaded {} (and its key and CA): new connections use it", f.cert_file);
    }
  }

  // Renews this node's certificate from the CA (tls.ca_key_file) once renewal_due_s says so:
  // the same identity, names and lifetime with a new key, written next to the files and moved
  // over them (key first), so the reload that follows picks them up. A failure is logged and
  // counted and tried again a minute later; the current certificate stays in use.
  void maybe_renew_certificate(double jitter01, int64_t& next_try_s) {
    const int64_t now_s = SystemClock::instance().now_ms() / 1000;
    if (now_s < next_try_s) return;
    auto fail = [&](const std::string& why) {
      ++tls_renewal_failures;
      next_try_s = now_s + 60;
      klog().error("TLS: renewing {} failed, the current certificate stays in use (next try in 60 s): {}",
                   cfg.tls_cert_file, why);
    };
    auto due = security::renewal_due_for_file(cfg.tls_cert_file, cfg.tls_renew_fraction, jitter01);
    if (!due) return fail(due.error().message);
    if (now_s < *due) return;
    auto not_after = security::renew_files(
        {cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_cert_file, cfg.tls_ca_key_file});
    if (!not_after) return fail(not_after.error().message);
    ++tls_renewals;
    next_try_s = now_s + 30;  // never more often, whatever the lifetime
    observe::signal(observe::Signal::kCertificateRenewed,
                    fmt::format("TLS: renewed {} from the CA (valid until unix {}); the reload puts it in use",
                                cfg.tls_cert_file, *not_after));
  }

  // The health poller thread: every 500 ms, probes storage and asks the metadata service for
  // its status (waiting at most 1 s), and posts both to the health board.
  void health_poller() {
    for (;;) {
      std::string storage_error = probe_storage();
      observe::MetadataFacts mf;
      if (meta) {
        auto p = std::make_shared<std::promise<Result<cluster::DriverStatus>>>();
        auto f = p->get_future();
        meta->status([p](Result<cluster::DriverStatus> s) { p->set_value(std::move(s)); });
        if (f.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
          mf.error = "no answer to a status request within 1000 ms";
        } else if (auto r = f.get(); !r) {
          mf.error = r.error().message;
        } else {
          auto& s = *r;
          mf.answered = true;
          mf.quorum = s.quorum;
          mf.members = static_cast<uint32_t>(s.config_members.size());
          for (auto& m : s.members) {
            bool member = std::find(s.config_members.begin(), s.config_members.end(), m.id) != s.config_members.end();
            if (member && (m.self || (m.connected && (m.status == cluster::MemberStatus::kAlive ||
                                                      m.status == cluster::MemberStatus::kSuspect))))
              ++mf.reachable;
          }
        }
      } else {
        mf.error = "this node runs no metadata service";
      }
      uint64_t map_version = dht ? dht->status().map_version : 0;
      if (mf.answered) live_members.store(std::max<uint32_t>(1, mf.reachable), std::memory_order_relaxed);
      health->poller_report(SystemClock::instance().monotonic_ns() / 1000000, std::move(storage_error), mf, map_version);
      std::unique_lock lk(health_mu);
      if (health_cv.wait_for(lk, std::chrono::milliseconds(500), [&] { return health_stop; })) return;
    }
  }
};

namespace {
// Signals by name (observe/signals.h): with tracing on, a signal routed to span events becomes
// an event on a zero-length INTERNAL span named after it, the child of the request in scope on
// the emitting thread if there is one (observe/log_context.h); then the routes from
// signals.file, watched and reloaded by a Capacitor (keel/capacitor.h). A file refused (an
// unknown name, a bad key) keeps the routes in force and says why, in the log and in
// GET /v1/signals.
Status start_signals(Node::Impl& im) {
  auto& hub = observe::SignalHub::instance();
  if (im.tracer) {
    hub.set_span_sink([&im, tracer = im.tracer.get()](observe::Signal sig, std::string_view detail) {
      const auto& info = observe::signal_info(sig);
      observe::SpanData span;
      {
        std::lock_guard lock(im.signal_span_mu);
        auto& rng = im.signal_span_rng;
        if (auto* ctx = observe::current_log_context()) {
          span.trace_id = ctx->trace_id;
          span.parent_span_id = ctx->span_id;
        } else {
          span.trace_id = observe::trace_id_from(rng.next_u64(), rng.next_u64());
        }
        span.span_id = observe::span_id_from(rng.next_u64());
      }
      span.name.assign(info.name);
      span.kind = observe::kSpanKindInternal;
      span.start_unix_ns = span.end_unix_ns = observe::Tracer::now_unix_ns();
      span.attributes.push_back({"keel.signal", std::string(info.name)});
      span.attributes.push_back({"keel.component", std::string(observe::kComponentNames[static_cast<size_t>(info.component)])});
      span.events.push_back({span.start_unix_ns, std::string(info.name),
                             {{"message", std::string(detail.substr(0, 1024))}}});
      tracer->record_any_thread(std::move(span));
    });
  }
  if (im.cfg.signals_file.empty()) {
    hub.set_routes(observe::default_signal_routes());
    hub.set_file_status_provider({});
    return {};
  }
  im.config_signals.subscribe([path = im.cfg.signals_file](const sdk::Signal& s) {
    if (auto* a = std::get_if<sdk::ConfigApplied>(&s))
      observe::signal(observe::Signal::kSignalsApplied,
                      fmt::format("signals: {} (version {}) is in force", path, a->version));
    else if (auto* r = std::get_if<sdk::ConfigRejected>(&s))
      observe::signal(observe::Signal::kSignalsRejected,
                      fmt::format("signals: {} was refused, the routes in force stay: {}", path,
                                  std::string(r->reason)));
  });
  sdk::CapacitorCore::Options o;
  o.source = im.cfg.signals_file;
  o.format = sdk::ConfigFormat::kToml;
  o.debounce = std::chrono::milliseconds(50);
  o.max_bytes = 64 << 10;
  o.signals = &im.config_signals;
  im.signal_routes = std::make_unique<sdk::Capacitor<observe::SignalRoutes>>(
      o, [](const nlohmann::json& doc) { return observe::parse_signal_routes(doc); },
      sdk::Capacitor<observe::SignalRoutes>::Validator{});
  im.signal_routes->on_change([](const auto&, const auto& next) {
    if (next) observe::SignalHub::instance().set_routes(*next);
  });
  hub.set_file_status_provider([cap = im.signal_routes.get(), path = im.cfg.signals_file] {
    observe::SignalFileStatus st;
    st.path = path;
    st.state = std::string(sdk::config_state_name(cap->state()));
    for (auto& c : st.state) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    st.version = cap->version();
    if (auto e = cap->last_error()) st.error = e->message;
    return st;
  });
  // Loaded here first, so that the node serves with the file's routes (the watcher's own first
  // load then finds the same text: no change).
  {
    sdk::FileSource source(im.cfg.signals_file, o.max_bytes);
    im.signal_routes->load(source.read(), sdk::SteadyClock::instance().now());
  }
  auto w = sdk::ConfigFileWatcher::start(*im.signal_routes, im.cfg.signals_file);
  if (!w)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("signals.file: cannot watch '{}': {}", im.cfg.signals_file, w.error().message));
  im.signal_watcher = std::move(*w);
  return {};
}

// Before the tracer and the node go away: no span events, no watcher thread.
void stop_signals(Node::Impl& im) {
  auto& hub = observe::SignalHub::instance();
  hub.set_span_sink({});
  if (im.signal_watcher) im.signal_watcher->stop();
  hub.set_file_status_provider({});
}
}  // namespace

void Node::Impl::start_audit_stream() {
  if (cfg.audit_stream.empty()) return;
  security::AuditStreamOptions o;
  o.key = cfg.audit_stream;
  o.max_len = cfg.audit_stream_max_len;
  o.queue = static_cast<size_t>(cfg.audit_stream_queue);
  o.node = id;
  // The node's own command path (as the HTTP door's nonce records): routed to the stream's
  // primary, replicated there, as no user (no ACL check, no audit event, no rate limit).
  auto* r = resp.get();
  auto& io = shards->shard(0).io;
  audit_stream = security::AuditStream::create(
      std::move(o),
      [r](std::vector<std::string> argv, security::AuditStream::Done done) { r->run(std::move(argv), std::move(done)); },
      [&io](std::function<void()> fn) { asio::post(io, std::move(fn)); },
      [] { return SystemClock::instance().now_ms(); });
  audit_sink = security::audit::set_sink([s = audit_stream](security::audit::Record rec) { s->push(std::move(rec)); });
  klog().info("audit: every audit event is also appended to the stream '{}' (about {} entries kept; XRANGE {} - + on any node)",
              cfg.audit_stream, cfg.audit_stream_max_len, cfg.audit_stream);
}

// Before the front ends and the shards stop: no append starts any more (the shards' loops,
// where appends run, are joined before the RESP server they use is destroyed).
void Node::Impl::stop_audit_stream() {
  if (!audit_stream) return;
  security::audit::clear_sink(audit_sink);
  audit_stream->stop();
}

std::string Node::Impl::audit_stream_metrics() const {
  if (!audit_stream) return {};
  auto st = audit_stream->stats();
  return fmt::format(
      "# HELP keel_audit_stream_appended_total Audit events appended to the audit stream (audit.stream).\n"
      "# TYPE keel_audit_stream_appended_total counter\nkeel_audit_stream_appended_total {}\n"
      "# HELP keel_audit_stream_dropped_total Audit events not appended because the queue (audit.stream_queue) was full "
      "or the node was stopping; their log lines were written.\n"
      "# TYPE keel_audit_stream_dropped_total counter\nkeel_audit_stream_dropped_total {}\n"
      "# HELP keel_audit_stream_failed_total Appends to the audit stream refused or failed (no quorum, a key of another "
      "type, a timeout); their log lines were written.\n"
      "# TYPE keel_audit_stream_failed_total counter\nkeel_audit_stream_failed_total {}\n"
      "# HELP keel_audit_stream_queued Audit events waiting for their append.\n"
      "# TYPE keel_audit_stream_queued gauge\nkeel_audit_stream_queued {}\n",
      st.appended, st.dropped, st.failed, st.queued);
}

Node::Node(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Node::~Node() { stop(); }

Status Node::start() {
  auto& im = *impl_;
  setup_logging(im.cfg.log_level, im.cfg.log_format);
  unsigned n = im.cfg.effective_shards();
  im.id = load_or_create_node_id(im.cfg);
  if (auto st = open_at_rest(im.cfg); !st) return st;
  auto engines = storage::open_engines(im.cfg.storage, n, SystemClock::instance());
  if (!engines) return std::unexpected(engines.error());
  // Every shard's engine sits behind the effect recorder, the one hook every write passes
  // (it records nothing until a partition has replicas).
  std::vector<dht::EffectRecorder*> recorders;
  for (auto& e : *engines) {
    auto rec = std::make_unique<dht::EffectRecorder>(std::move(e), im.cfg.storage.partitions);
    // Tests check every element-by-element change against the value it produced.
    if (const char* v = std::getenv("KEEL_VERIFY_DELTAS"); v && std::string_view(v) == "1") rec->set_verify_deltas(true);
    recorders.push_back(rec.get());
    im.engines.push_back(std::move(rec));
  }
  im.shards = std::make_unique<runtime::ShardSet>(n, im.cfg.storage.partitions);
  for (unsigned i = 0; i < n; ++i) im.shards->shard(i).engine = im.engines[i].get();

  resp::ServerOptions ro;
  ro.bind = im.cfg.bind;
  ro.port = im.cfg.resp_port;
  ro.plaintext = im.cfg.tls_plaintext;
  ro.limits.max_bulk_len = im.cfg.proto_max_bulk_len;
  ro.limits.max_multibulk_len = im.cfg.max_multibulk_len;
  ro.limits.max_inline_len = im.cfg.max_inline_len;
  ro.max_clients = im.cfg.max_clients;
  ro.query_buffer_limit = im.cfg.query_buffer_limit;
  ro.timeout_s = im.cfg.timeout_s;
  ro.pubsub_limits = {im.cfg.pubsub_output_hard, im.cfg.pubsub_output_soft, im.cfg.pubsub_output_soft_s};
  if (auto st = im.set_tls_files(); !st) return st;
  im.tls_min_days = im.cfg.health_tls_min_days;
  if (im.cfg.tls_port != 0) {
    auto ctx = security::make_server_context(im.resp_files);
    if (!ctx) return std::unexpected(ctx.error());
    im.resp_tls = std::make_shared<security::TlsContextSlot>(std::move(*ctx));
    ro.tls = im.resp_tls;
    ro.tls_port = im.cfg.tls_port;
  }
  if (im.cfg.tls_http_port != 0) {
    auto ctx = security::make_server_context(im.https_files);
    if (!ctx) return std::unexpected(ctx.error());
    im.http_tls = std::make_shared<security::TlsContextSlot>(std::move(*ctx));
  }
  im.resp = std::make_unique<resp::Server>(
      *im.shards, im, ro, [&im](std::string_view sec, const resp::Snapshot& s) { return im.info(sec, s); });
  // Users: the default user is open (nopass) unless server.requirepass sets its password;
  // users in cluster metadata (ACL SETUSER, CONFIG SET requirepass) take precedence.
  im.acl = std::make_unique<security::Acl>(resp::acl_catalog());
  if (!im.cfg.requirepass.empty()) {
    security::User d = security::default_user();
    d.nopass = false;
    auto h = security::hash_password(im.cfg.requirepass);
    if (!h) return std::unexpected(h.error());
    d.passwords.push_back(std::move(*h));
    im.acl->set_builtin_default(std::move(d));
  }
  if (!im.cfg.auth_token_public_key_file.empty()) {
    std::ifstream f(im.cfg.auth_token_public_key_file, std::ios::binary);
    if (!f)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("auth.token_public_key_file: {}: cannot be read", im.cfg.auth_token_public_key_file));
    std::string pem((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto key = security::TokenKey::from_pem(pem);
    if (!key)
      return make_error(Errc::kInvalidArgument, fmt::format("auth.token_public_key_file: {}: {}",
                                                            im.cfg.auth_token_public_key_file, key.error().message));
    if (key->has_private())
      return make_error(Errc::kInvalidArgument,
                        fmt::format("auth.token_public_key_file: {}: this is a private key; give nodes only the public "
                                    "key (token.pub of `keel token init`), so that a node cannot issue tokens",
                                    im.cfg.auth_token_public_key_file));
    im.acl->set_token_key(std::make_shared<const security::TokenKey>(std::move(*key)));
  }
  im.acl->set_cert_users(im.cfg.auth_cert_users, im.cfg.cluster_id);
  im.acl->set_lockout_policy({im.cfg.auth_lockout_threshold, static_cast<int64_t>(im.cfg.auth_lockout_base_ms),
                              static_cast<int64_t>(im.cfg.auth_lockout_max_ms), 65536});
  im.acl_service = std::make_unique<security::AclService>(*im.acl);
  im.resp->set_acl(im.acl_service.get());
  im.transit = std::make_unique<security::TransitService>();
  im.resp->set_transit(im.transit.get());
  im.secrets = std::make_unique<security::SecretsService>(*im.transit);
  im.resp->set_secrets(im.secrets.get());
  im.client_limits = std::make_shared<security::ClientLimits>(
      security::ClientLimitsConfig{im.cfg.user_rate, im.cfg.user_burst, im.cfg.address_rate, im.cfg.address_burst,
                                   im.cfg.address_connections});
  im.resp->set_client_limits(im.client_limits);
  im.caches = std::make_unique<cache::Service>(
      *im.shards, im.cfg.storage.kind == storage::EngineConfig::Kind::kMemory ? cache::EngineKind::kMemory
                                                                             : cache::EngineKind::kPersistent);
  im.resp->set_caches(im.caches.get());
  if (!im.cfg.trace_endpoint.empty()) {
    observe::TracerOptions to;
    std::string why;
    to.endpoint = *observe::parse_http_url(im.cfg.trace_endpoint, why);  // validated with the config
    to.service_name = im.cfg.trace_service_name;
    to.instance_id = im.id;
    to.version = kVersion;
    to.sampler.ratio = im.cfg.trace_sample_ratio;
    to.sampler.slow_ns = static_cast<int64_t>(im.cfg.trace_slow_ms) * 1000000;
    to.sampler.keep_errors = im.cfg.trace_keep_errors;
    to.exporter.max_queue_spans = im.cfg.trace_queue_size;
    to.exporter.max_batch_spans = im.cfg.trace_batch_size;
    to.exporter.batch_delay_ms = static_cast<int64_t>(im.cfg.trace_batch_delay_ms);
    to.exporter.max_retries = static_cast<uint32_t>(im.cfg.trace_max_retries);
    to.export_timeout_ms = static_cast<int64_t>(im.cfg.trace_export_timeout_ms);
    to.recent.max_spans = im.cfg.trace_recent_spans;
    to.recent.max_bytes = im.cfg.trace_recent_bytes;
    im.tracer = std::make_unique<observe::Tracer>(to, n);
    im.tracer->start();
    im.resp->set_tracer(im.tracer.get());
    klog().info("tracing: OTLP/HTTP JSON to {}, sampling {} of new traces, keeping errors: {}, slow: {}",
                 im.cfg.trace_endpoint, im.cfg.trace_sample_ratio, im.cfg.trace_keep_errors ? "yes" : "no",
                 im.cfg.trace_slow_ms ? fmt::format(">= {} ms", im.cfg.trace_slow_ms) : std::string("off"));
  }
  if (!im.cfg.log_otlp_endpoint.empty()) {
    observe::LogExportOptions lo;
    std::string why;
    lo.endpoint = *observe::parse_http_url(im.cfg.log_otlp_endpoint, why, "/v1/logs");  // validated with the config
    lo.service_name = im.cfg.trace_service_name;
    lo.instance_id = im.id;
    lo.version = kVersion;
    lo.level = observe::parse_level(im.cfg.log_otlp_level).value_or(observe::Level::kInfo);
    lo.policy.max_queue_spans = im.cfg.trace_queue_size;
    lo.policy.max_batch_spans = im.cfg.trace_batch_size;
    lo.policy.batch_delay_ms = static_cast<int64_t>(im.cfg.trace_batch_delay_ms);
    lo.policy.max_retries = static_cast<uint32_t>(im.cfg.trace_max_retries);
    lo.timeout_ms = static_cast<int64_t>(im.cfg.trace_export_timeout_ms);
    im.log_exporter = std::make_unique<observe::LogExporter>(lo);
    im.log_exporter->start();
    klog().info("logs: OTLP/HTTP JSON to {} from level {}", im.cfg.log_otlp_endpoint, im.cfg.log_otlp_level);
  }
  if (auto st = start_signals(im); !st) return std::unexpected(st.error());
  auto port = im.resp->start();
  if (!port) return std::unexpected(port.error());
  im.resp_port = *port;
  im.tls_port = im.resp->tls_port();
  if (im.tls_port)
    klog().info("RESP over TLS on {}:{} (client certificates: {})", im.cfg.bind, im.tls_port, im.cfg.tls_auth_clients);

  http::ServerOptions ho;
  ho.node_id = im.cfg.cluster_node_id ? static_cast<uint32_t>(im.cfg.cluster_node_id) : 1;
  ho.bind = im.cfg.bind;
  ho.port = im.cfg.http_port;
  ho.plaintext = im.cfg.tls_plaintext;
  ho.max_body_bytes = im.cfg.http_max_body;
  ho.idle_timeout_s = static_cast<uint32_t>(im.cfg.http_idle_timeout_s);
  ho.header_timeout_ms = static_cast<uint32_t>(im.cfg.http_header_timeout_ms);
  ho.body_timeout_ms = static_cast<uint32_t>(im.cfg.http_body_timeout_ms);
  ho.signature_window_s = static_cast<int64_t>(im.cfg.auth_signature_window_s);
  ho.nonce_capacity = im.cfg.auth_nonce_capacity;
  ho.data_dir = im.cfg.storage.data_dir;
  if (im.resp_tls || im.http_tls || (im.cfg.tls_peer && im.cfg.cluster_node_id != 0)) im.read_cert_expiry();
  if (im.http_tls) {
    ho.tls = im.http_tls;
    ho.tls_port = im.cfg.tls_http_port;
  }
  ho.extra_metrics = [&im] {
    return im.tls_metrics() + (im.cfg.storage.keyring ? at_rest_metrics(*im.cfg.storage.keyring) : std::string()) +
           im.audit_stream_metrics();
  };
  if (im.cfg.storage.keyring)
    ho.keys_admin = [&im](std::string_view method, std::string_view rest, std::string_view body) {
      MetaLogReseal meta_log;
      if (im.meta) meta_log = [&im] { return im.meta->reseal_log(); };
      auto out = keys_admin(*im.cfg.storage.keyring, *im.engines[0], meta_log, method, rest, body,
                            SystemClock::instance().now_ms());
      if (rest == "/master" && out.first == 200) {
        // CONFIG GET shows where the master key now comes from (keel.toml is not rewritten).
        auto doc = nlohmann::json::parse(body, nullptr, false);
        std::lock_guard lock(im.config_mu);
        im.cfg.at_rest_key_file = doc.value("key_file", std::string());
        im.cfg.at_rest_key_env = doc.value("key_env", std::string());
      }
      return out;
    };
  im.http = std::make_unique<http::Server>(*im.shards, *im.resp, ho);
  im.http->set_caches(im.caches.get());
  im.http->set_acl(im.acl_service.get());
  im.http->set_transit(im.transit.get());
  im.http->set_secrets(im.secrets.get());
  im.http->set_client_limits(im.client_limits);
  {
    routing::Options rop;
    if (!im.cfg.gateway_routes_file.empty()) {
      std::ifstream f(im.cfg.gateway_routes_file, std::ios::binary);
      if (!f)
        return make_error(Errc::kInvalidArgument, fmt::format("gateway.routes_file: cannot read '{}'", im.cfg.gateway_routes_file));
      std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      auto routes = gateway::parse_routes_file(text);
      if (!routes)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("gateway.routes_file '{}': {}", im.cfg.gateway_routes_file, routes.error().message));
      rop.static_routes = std::move(*routes);
    }
    im.routes = std::make_unique<routing::Service>(*im.shards, std::move(rop));
    im.resp->set_routes(im.routes.get());
    http::GatewayOptions go;
    go.policy = *gateway::parse_policy(im.cfg.gateway_balancer);  // validated with the config
    if (!im.cfg.gateway_hash_key.empty()) go.hash_key = *gateway::parse_hash_key(im.cfg.gateway_hash_key);
    go.connect_timeout_ms = static_cast<int64_t>(im.cfg.gateway_connect_timeout_ms);
    go.request_timeout_ms = static_cast<int64_t>(im.cfg.gateway_request_timeout_ms);
    go.retries = static_cast<uint32_t>(im.cfg.gateway_retries);
    go.pool_max_idle = static_cast<uint32_t>(im.cfg.gateway_pool_max_idle);
    go.tunnel_idle_timeout_ms = static_cast<int64_t>(im.cfg.gateway_tunnel_idle_timeout_ms);
    go.max_body_bytes = im.cfg.gateway_max_body;
    go.access_log = im.cfg.gateway_access_log;
    go.max_response_bytes = im.cfg.gateway_max_response;
    go.stream_above_bytes = im.cfg.gateway_stream_above;
    go.outlier.consecutive_failures = static_cast<uint32_t>(im.cfg.gateway_outlier_failures);
    go.outlier.base_ejection_ms = static_cast<int64_t>(im.cfg.gateway_outlier_ejection_ms);
    go.outlier.max_ejection_ms = static_cast<int64_t>(im.cfg.gateway_outlier_max_ejection_ms);
    go.outlier.max_ejected_percent = static_cast<uint32_t>(im.cfg.gateway_outlier_max_ejected_percent);
    go.cluster_size = [&im] { return std::max<uint32_t>(1, im.live_members.load(std::memory_order_relaxed)); };
    im.gateway = std::make_unique<http::Gateway>(*im.routes, go);
    if (im.cfg.gateway_enabled) im.http->set_gateway(im.gateway.get());
  }
  if (im.tracer) im.http->set_tracer(im.tracer.get());
  im.http->set_slowlog(im.slow.get());
  if (im.log_exporter) im.http->set_log_exporter(im.log_exporter.get());
  // A node outside a configured cluster (cluster.node_id = 0) is the embedded default: a
  // one-member cluster on the same code path (metadata, partition map, routing), whose peer
  // and data ports are private (any free port, nobody dials them).
  bool embedded = im.cfg.cluster_node_id == 0;
  {
    auto peers = cluster::parse_peer_list(im.cfg.cluster_peers);
    if (!peers) return std::unexpected(peers.error());
    cluster::DriverOptions d;
    d.node_id = embedded ? 1 : im.cfg.cluster_node_id;
    d.cluster_id = im.cfg.cluster_id;
    d.peer_port = embedded ? 0 : im.cfg.cluster_peer_port;
    d.members = embedded ? std::vector<cluster::PeerAddress>{{1, im.cfg.bind, 0}}
                         : cluster::members_from(d.node_id, *peers, im.cfg.bind, im.cfg.cluster_peer_port);
    d.bind = im.cfg.bind;
    d.data_dir = im.cfg.storage.data_dir + "/cluster";
    d.keyring = im.cfg.storage.keyring;  // the metadata log is encrypted at rest too
    d.request_timeout_ms = static_cast<int64_t>(im.cfg.cluster_request_timeout_ms);
    d.heartbeat_ms = static_cast<int64_t>(im.cfg.cluster_heartbeat_ms);
    d.suspect_after_ms = static_cast<int64_t>(im.cfg.cluster_suspect_after_ms);
    d.dead_after_ms = static_cast<int64_t>(im.cfg.cluster_dead_after_ms);
    d.max_batch = im.cfg.cluster_max_batch;
    d.max_command_bytes = im.cfg.cluster_max_command_bytes;
    d.max_batch_bytes = im.cfg.cluster_max_batch_bytes;
    d.snapshot_chunk_bytes = im.cfg.cluster_snapshot_chunk_bytes;
    d.join = im.cfg.cluster_join;
    d.propose_delay_ms = static_cast<int64_t>(im.cfg.cluster_propose_delay_ms);
    d.start_timeout_ms = static_cast<int64_t>(im.cfg.cluster_start_timeout_ms);
    if (im.tracer)  // a traced request's wait for a Rabia decision is a span (driver.h, "Tracing")
      d.span_sink = [t = im.tracer.get()](observe::SpanData s) { t->record_any_thread(std::move(s)); };
    if (im.cfg.tls_peer && !embedded) {
      security::TlsServerFiles tf;
      tf.cert_file = im.cfg.tls_cert_file;
      tf.key_file = im.cfg.tls_key_file;
      tf.ca_cert_file = im.cfg.tls_ca_cert_file;
      auto pt = security::PeerTls::create(tf, d.cluster_id, d.node_id);
      if (!pt) return std::unexpected(pt.error());
      im.peer_tls = std::move(*pt);
      d.tls = im.peer_tls;
      klog().info("cluster: mutual TLS on peer links (certificate {}, CA {}): peers must present a certificate "
                   "naming spiffe://{}/node/<their id>",
                   im.cfg.tls_cert_file, im.cfg.tls_ca_cert_file, d.cluster_id);
    } else if (!embedded) {
      klog().warn("cluster: peer links are plaintext and unauthenticated (tls.peer = no): keep the peer ports "
                   "on a trusted network, or turn on mutual TLS (docs/security.md)");
    }
    im.meta = std::make_unique<cluster::MetaService>(d);
    auto pport = im.meta->start();
    if (!pport) return std::unexpected(pport.error());
    im.peer_port = *pport;
    im.http->set_meta(im.meta.get());
    dht::ServiceOptions so;
    so.self = d.node_id;
    so.cluster_id = d.cluster_id;
    so.bind = im.cfg.bind;
    so.data_port = im.cfg.cluster_data_port;
    so.resp_address = fmt::format("{}:{}", im.announce_ip(), im.announce_port());
    so.name = im.id;
    so.storage = im.cfg.cluster_storage;
    so.weight = static_cast<uint32_t>(im.cfg.cluster_weight);
    so.zone = im.cfg.cluster_zone;
    so.partitions = im.cfg.storage.partitions;
    so.copies = static_cast<uint32_t>(im.cfg.dht_replicas);
    so.write_quorum = static_cast<uint32_t>(im.cfg.dht_write_quorum);
    for (auto& m : d.members) so.initial_members.push_back(m.id);
    so.request_timeout_ms = static_cast<int64_t>(im.cfg.cluster_request_timeout_ms);
    so.rebalance = im.cfg.dht_rebalance;
    so.replica_read_max_lag_ms = static_cast<int64_t>(im.cfg.dht_replica_read_max_lag_ms);
    so.log_keep_bytes = im.cfg.dht_log_keep_mb << 20;
    so.rebalance_transfers = static_cast<uint32_t>(im.cfg.dht_rebalance_transfers);
    so.rebalance_bytes_per_s = im.cfg.dht_rebalance_mb_per_s << 20;
    so.lease_ms = static_cast<int64_t>(im.cfg.dht_lease_ms ? im.cfg.dht_lease_ms : im.cfg.cluster_dead_after_ms / 2);
    so.tls = im.peer_tls;
    im.dht = std::make_unique<dht::Service>(*im.shards, recorders, *im.meta, so);
    if (im.tracer)  // replicas record a span for each sampled write they apply
      im.dht->set_span_sink([t = im.tracer.get()](unsigned shard, observe::SpanData sp) { t->record(shard, std::move(sp)); });
    auto dport = im.dht->start();
    if (!dport) return std::unexpected(dport.error());
    im.resp->set_dht(im.dht.get());
    im.http->set_dht(im.dht.get());
    im.caches->set_meta(im.meta.get());
    im.caches->start();
    im.routes->set_meta(im.meta.get());
    im.routes->start();
    im.acl_service->set_meta(im.meta.get());
    if (!embedded) {
      // Brute-force lockout counted and decided cluster-wide: failures and locks are keys of the
      // keyspace (security::kLockoutKey), written through the node's command path.
      auto* r = im.resp.get();
      im.acl_service->set_command_runner([r](std::vector<std::string> argv, std::function<void(std::string)> done) {
        r->run(std::move(argv), std::move(done));
      });
    }
    im.acl_service->start();
    im.transit->set_meta(im.meta.get());
    im.transit->start();
    im.secrets->set_meta(im.meta.get());
    im.secrets->start();
    im.start_audit_stream();
    if (im.cfg.gateway_enabled) im.gateway->start(*im.shards);
    std::string list;
    for (auto& m : d.members) list += (list.empty() ? "" : ",") + m.to_string();
    if (embedded)
      klog().info("embedded: a one-member cluster (set cluster.node_id and cluster.peers to form a larger one)");
    else
      klog().info("cluster: node {} of cluster '{}' listening for peers on {}:{}, data plane on {}:{}; members {}",
                   d.node_id, d.cluster_id, im.cfg.bind, im.peer_port, im.cfg.bind, *dport, list);
  }
  // Every engine probes the data directory: it holds the cluster metadata log even when the
  // data itself lives in memory.
  im.health = std::make_unique<observe::HealthBoard>(n, true, static_cast<int64_t>(im.cfg.health_stall_after_ms));
  im.http->set_health(im.health.get());
  im.update_certificate_health();
  auto hport = im.http->start();
  if (!hport) return std::unexpected(hport.error());
  im.http_port = *hport;
  im.https_port = im.http->tls_port();
  if (im.https_port)
    klog().info("HTTPS on {}:{} (client certificates: {})", im.cfg.bind, im.https_port, im.cfg.tls_http_auth_clients);
  if (im.cfg.gateway_enabled && im.cfg.gateway_port != 0) {
    http::ServerOptions gho = ho;
    gho.port = im.cfg.gateway_port;
    gho.max_body_bytes = im.cfg.gateway_max_body;
    gho.gateway_only = true;
    gho.tls = nullptr;
    gho.tls_port = 0;
    im.gateway_http = std::make_unique<http::Server>(*im.shards, *im.resp, gho);
    im.gateway_http->set_gateway(im.gateway.get());
    auto gport = im.gateway_http->start();
    if (!gport) return std::unexpected(gport.error());
    im.gateway_port = *gport;
    klog().info("gateway: routing every request on {}:{} ({} balancing)", im.cfg.bind, im.gateway_port, im.cfg.gateway_balancer);
  }

  for (unsigned i = 0; i < n; ++i)
    asio::co_spawn(im.shards->shard(i).io, im.maintenance(i), asio::detached);
  im.shards->start();
  im.running = true;
  im.health_thread = std::thread([&im] { im.health_poller(); });
  if ((im.resp_tls || im.http_tls || im.peer_tls) && im.cfg.tls_reload_interval_ms > 0)
    im.tls_thread = std::thread([&im, ms = static_cast<int64_t>(im.cfg.tls_reload_interval_ms)] { im.watch_certificates(ms); });
  // The embedded node creates its partition map at once; it is ready when its shards route by
  // it. (A member of a larger cluster waits for the others; until then it answers
  // CLUSTERDOWN.)
  if (embedded && !im.dht->wait_installed(30000))
    return make_error(Errc::kUnavailable, "the embedded node did not create its partition map within 30 s");
  // An embedded node needs nobody else: it says it is ready once /health/ready agrees (its
  // shards and the health poller report within a few hundred ms).
  for (int i = 0; embedded && i < 100; ++i) {
    if (observe::all_ok(im.health->readiness(SystemClock::instance().monotonic_ns() / 1000000))) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  klog().info("keel {} ready: RESP on {}:{}, HTTP on {}:{}, {} shard(s), {} engine{}", kVersion,
               im.cfg.bind, im.resp_port, im.cfg.bind, im.http_port, n,
               im.cfg.storage.kind == storage::EngineConfig::Kind::kMemory ? "memory" : "persistent",
               im.cfg.storage.kind == storage::EngineConfig::Kind::kMemory
                   ? std::string()
                   : fmt::format(" in {} (fsync {})", im.cfg.storage.data_dir,
                                 storage::fsync_policy_name(im.cfg.storage.fsync)));
  if (!im.cfg.tls_plaintext)
    klog().info("plaintext ports off (tls.plaintext = no): clients connect only over TLS: RESP on {}, HTTPS on {}",
                im.tls_port ? fmt::format("{}:{}", im.cfg.bind, im.tls_port) : std::string("(off: no tls.port)"),
                im.https_port ? fmt::format("{}:{}", im.cfg.bind, im.https_port) : std::string("(off: no tls.http_port)"));
  return {};
}

void Node::run_until_signal() {
  auto& im = *impl_;
  asio::signal_set signals(im.main_io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (!ec) klog().info("received signal {}, shutting down", sig);
  });
  im.main_io.run();
  stop();
}

void Node::request_stop() {
  impl_->main_io.stop();
}

void Node::stop() {
  auto& im = *impl_;
  if (!im.shards || im.stopped.exchange(true)) return;
  im.stop_audit_stream();
  stop_signals(im);
  if (!im.running) {  // start() failed before the loops ran: nothing in flight
    if (im.dht) im.dht->stop();
    if (im.meta) im.meta->stop();
    if (im.tracer) im.tracer->stop();
    if (im.log_exporter) im.log_exporter->stop();
    im.dht.reset();
    im.meta.reset();
    im.gateway_http.reset();
    im.http.reset();
    im.gateway.reset();
    im.routes.reset();
    im.resp.reset();
    im.caches.reset();
    im.shards.reset();
    im.engines.clear();
    return;
  }
  if (im.http) im.http->shutdown();
  if (im.gateway_http) im.gateway_http->shutdown();
  if (im.health_thread.joinable()) {
    {
      std::lock_guard lk(im.health_mu);
      im.health_stop = true;
    }
    im.health_cv.notify_all();
    im.health_thread.join();
  }
  if (im.tls_thread.joinable()) im.tls_thread.join();  // woken by health_stop above
  if (im.resp) {
    im.resp->shutdown();
    for (int i = 0; i < 500 && im.resp->open_connections() > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Metadata after the front ends (no new requests), before the shards (HTTP handlers waiting
  // on it get their answer posted to shard 0).
  if (im.caches) im.caches->stop();
  if (im.routes) im.routes->stop();
  if (im.acl_service) im.acl_service->stop();
  if (im.secrets) im.secrets->stop();
  if (im.transit) im.transit->stop();
  if (im.gateway) im.gateway->stop();
  if (im.dht) im.dht->stop();
  if (im.meta) im.meta->stop();
  for (unsigned i = 0; i < im.shards->size(); ++i) {
    std::promise<Status> done;
    auto& s = im.shards->shard(i);
    asio::post(s.io, [&] { done.set_value(s.engine->flush()); });
    auto st = done.get_future().get();
    if (!st) klog().error("flushing shard {} failed: {}", i, st.error().message);
  }
  im.shards->stop_and_join();
  if (im.tracer) {  // the shards are gone: hand over what they buffered, then export it
    for (unsigned i = 0; i < im.shards->size(); ++i) im.tracer->flush(i);
    im.tracer->stop();
  }
  if (im.log_exporter) im.log_exporter->stop();  // what the node logged until now goes out
  im.gateway_http.reset();
  im.http.reset();
  im.gateway.reset();  // its pooled upstream sockets belong to shard 0's loop: before the shards
  im.routes.reset();
  im.resp.reset();
  im.caches.reset();
  im.dht.reset();
  im.meta.reset();
  im.shards.reset();
  im.engines.clear();
  klog().info("keel stopped");
}

int Node::resp_port() const { return impl_->resp_port; }
int Node::http_port() const { return impl_->http_port; }

}  // namespace keel::node
