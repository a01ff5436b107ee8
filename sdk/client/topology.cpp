#include "keel/client/topology.h"

#include <algorithm>
#include <charconv>
#include <string>

namespace keel::client {

Result<Endpoint> parse_endpoint(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size())
    return make_error(Errc::kInvalidArgument, "endpoint '" + std::string(text) + "' is not host:port");
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto ps = text.substr(colon + 1);
  auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || p != ps.data() + ps.size() || port == 0 || port > 65535)
    return make_error(Errc::kInvalidArgument, "endpoint '" + std::string(text) + "' has no valid port (1..65535)");
  return Endpoint{std::string(host), static_cast<uint16_t>(port)};
}

Topology::Topology() : slot_owner_(kSlotCount, kNone) {}

Topology Topology::single(const Endpoint& ep) {
  Topology t;
  Shard s;
  s.slots.push_back({0, kSlotCount - 1});
  s.primary = ep;
  uint16_t idx = t.intern(ep);
  std::fill(t.slot_owner_.begin(), t.slot_owner_.end(), idx);
  t.shards_.push_back(std::move(s));
  return t;
}

uint16_t Topology::intern(const Endpoint& ep) {
  for (size_t i = 0; i < endpoints_.size(); ++i)
    if (endpoints_[i] == ep) return static_cast<uint16_t>(i);
  endpoints_.push_back(ep);
  return static_cast<uint16_t>(endpoints_.size() - 1);
}

namespace {
Result<int64_t> as_int(const Reply* r, std::string_view what) {
  if (!r) return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: missing '" + std::string(what) + "'");
  if (r->type == ReplyType::kInteger) return r->integer;
  if (r->is_string()) {
    int64_t v;
    auto [p, ec] = std::from_chars(r->str.data(), r->str.data() + r->str.size(), v);
    if (ec == std::errc() && p == r->str.data() + r->str.size()) return v;
  }
  return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: '" + std::string(what) + "' is not an integer");
}
std::string as_text(const Reply* r) { return r && r->is_string() ? r->str : std::string(); }
}  // namespace

Result<Topology> Topology::from_cluster_shards(const Reply& reply) {
  if (reply.is_error()) return make_error(Errc::kServerError, reply.str);
  if (reply.type != ReplyType::kArray && reply.type != ReplyType::kSet)
    return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: expected an array of shards, got " +
                                                  std::string(reply_type_name(reply.type)));
  Topology t;
  for (const auto& shard : reply.elements) {
    const Reply* slots = shard.find("slots");
    const Reply* nodes = shard.find("nodes");
    if (!slots || !slots->is_aggregate() || slots->elements.size() % 2 != 0)
      return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: a shard has no even 'slots' list");
    if (!nodes || !nodes->is_aggregate())
      return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: a shard has no 'nodes' list");
    Shard s;
    for (size_t i = 0; i < slots->elements.size(); i += 2) {
      auto a = as_int(&slots->elements[i], "slots");
      auto b = as_int(&slots->elements[i + 1], "slots");
      if (!a) return std::unexpected(a.error());
      if (!b) return std::unexpected(b.error());
      if (*a < 0 || *b < *a || *b >= kSlotCount)
        return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: slot range " + std::to_string(*a) +
                                                      "-" + std::to_string(*b) + " is outside 0-16383");
      s.slots.push_back({static_cast<uint32_t>(*a), static_cast<uint32_t>(*b)});
    }
    bool have_primary = false;
    for (const auto& node : nodes->elements) {
      auto port = as_int(node.find("port"), "port");
      if (!port) port = as_int(node.find("tls-port"), "port");
      if (!port) return std::unexpected(port.error());
      if (*port <= 0 || *port > 65535)
        return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: port " + std::to_string(*port) + " is out of range");
      std::string host = as_text(node.find("endpoint"));
      if (host.empty() || host == "?") host = as_text(node.find("ip"));
      if (host.empty()) host = as_text(node.find("hostname"));
      if (host.empty()) return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: a node has no endpoint or ip");
      Endpoint ep{host, static_cast<uint16_t>(*port)};
      std::string role = as_text(node.find("role"));
      std::string health = as_text(node.find("health"));
      if ((role == "master" || role == "primary") && health != "fail" && !have_primary) {
        s.primary = ep;
        have_primary = true;
      } else {
        s.replicas.push_back(ep);
      }
    }
    if (!have_primary) continue;  // a shard without a usable primary serves nothing
    uint16_t idx = t.intern(s.primary);
    for (auto r : s.slots) std::fill(t.slot_owner_.begin() + r.first, t.slot_owner_.begin() + r.last + 1, idx);
    t.shards_.push_back(std::move(s));
  }
  return t;
}

Result<std::vector<sdk::ClusterNode>> cluster_nodes_from_shards(const Reply& reply) {
  if (reply.is_error()) return make_error(Errc::kServerError, reply.str);
  if (reply.type != ReplyType::kArray && reply.type != ReplyType::kSet)
    return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: expected an array of shards, got " +
                                                  std::string(reply_type_name(reply.type)));
  std::vector<sdk::ClusterNode> out;
  for (const auto& shard : reply.elements) {
    const Reply* nodes = shard.find("nodes");
    if (!nodes || !nodes->is_aggregate())
      return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: a shard has no 'nodes' list");
    for (const auto& node : nodes->elements) {
      sdk::ClusterNode n;
      n.id = as_text(node.find("id"));
      if (n.id.empty()) return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: a node has no 'id'");
      auto port = as_int(node.find("port"), "port");
      if (!port) port = as_int(node.find("tls-port"), "port");
      if (!port) return std::unexpected(port.error());
      if (*port <= 0 || *port > 65535)
        return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: port " + std::to_string(*port) + " is out of range");
      n.port = static_cast<uint16_t>(*port);
      n.endpoint = as_text(node.find("endpoint"));
      if (n.endpoint.empty() || n.endpoint == "?") n.endpoint = as_text(node.find("ip"));
      if (n.endpoint.empty()) n.endpoint = as_text(node.find("hostname"));
      if (n.endpoint.empty()) return make_error(Errc::kUnexpectedReply, "CLUSTER SHARDS: node " + n.id + " has no endpoint or ip");
      n.role = as_text(node.find("role"));
      n.health = as_text(node.find("health"));
      out.push_back(std::move(n));
    }
  }
  return out;
}

const Endpoint* Topology::endpoint_for_slot(uint32_t slot) const {
  uint16_t idx = slot_owner_[slot & (kSlotCount - 1)];
  return idx == kNone ? nullptr : &endpoints_[idx];
}

void Topology::move_slot(uint32_t slot, const Endpoint& ep) {
  slot_owner_[slot & (kSlotCount - 1)] = intern(ep);
}

size_t Topology::covered_slots() const {
  return static_cast<size_t>(std::count_if(slot_owner_.begin(), slot_owner_.end(), [](uint16_t i) { return i != kNone; }));
}

std::optional<Redirect> parse_redirect(std::string_view text) {
  Redirect r;
  if (text.starts_with("MOVED ")) {
    r.kind = Redirect::Kind::kMoved;
    text.remove_prefix(6);
  } else if (text.starts_with("ASK ")) {
    r.kind = Redirect::Kind::kAsk;
    text.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  auto sp = text.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  auto slot_text = text.substr(0, sp);
  auto [p, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), r.slot);
  if (ec != std::errc() || p != slot_text.data() + slot_text.size() || r.slot >= kSlotCount) return std::nullopt;
  auto ep = parse_endpoint(text.substr(sp + 1));
  if (!ep) return std::nullopt;
  r.target = *ep;
  return r;
}

namespace {
bool ieq(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}
}  // namespace

std::optional<uint32_t> command_slot(std::span<const std::string> args) {
  if (args.size() < 2) return std::nullopt;
  static constexpr std::string_view kNoKey[] = {
      "ping", "echo", "hello", "auth", "info", "cluster", "scan", "dbsize", "flushall", "flushdb",
      "config", "time", "command", "client", "select", "quit", "reset", "readonly", "readwrite",
      "asking", "keys", "randomkey", "publish", "subscribe", "unsubscribe", "psubscribe", "debug",
      "memory", "lastsave", "save", "bgsave", "shutdown", "wait", "multi", "exec", "discard",
      "script", "function", "acl", "latency", "slowlog", "monitor", "swapdb", "role", "lolwut"};
  for (auto n : kNoKey)
    if (ieq(args[0], n)) return std::nullopt;
  // Named caches: CACHE.GET/PUT/DEL name key ... are routed by the user's key (the server keeps
  // the entry in that key's slot); the other CACHE.* commands have no key.
  if (args[0].size() > 6 && ieq(args[0].substr(0, 6), "cache.")) {
    auto sub = std::string_view(args[0]).substr(6);
    if ((ieq(sub, "get") || ieq(sub, "put") || ieq(sub, "del")) && args.size() >= 3) return key_slot(args[2]);
    return std::nullopt;
  }
  // EVAL/EVALSHA/FCALL: script numkeys key...
  if (ieq(args[0], "eval") || ieq(args[0], "evalsha") || ieq(args[0], "fcall")) {
    if (args.size() < 4 || args[2] == "0") return std::nullopt;
    return key_slot(args[3]);
  }
  return key_slot(args[1]);
}

}  // namespace keel::client
