// Pub/sub: SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE PUBLISH SPUBLISH
// PUBSUB. Subscriptions are per-connection state and messages are delivered across shards and
// nodes, so the server runs these (server.cpp, "Pub/sub"); the table here gives COMMAND its
// metadata, and the frame builders are shared by the server and the tests.
#include "frontends/resp/family_util.h"
#include "frontends/resp/pubsub_registry.h"

namespace keel::resp {
namespace {

void cmd_run_by_server(CmdCtx&, Args a, Reply& r) {
  r.error("ERR '" + to_lower(a[0]) + "' is run by the server, not by a handler");
}

}  // namespace

void push_header(Reply& r, size_t n) {
  if (r.protocol() >= 3) r.buffer().append(">" + std::to_string(n) + "\r\n");
  else r.array(n);
}

void reply_subscription(Reply& r, std::string_view kind, const std::string_view* name, size_t count) {
  push_header(r, 3);
  r.bulk(kind);
  if (name) r.bulk(*name);
  else r.null();
  r.integer(static_cast<int64_t>(count));
}

void reply_message(Reply& r, PubKind kind, const std::string* pattern, std::string_view channel,
                   std::string_view payload) {
  if (pattern) {
    push_header(r, 4);
    r.bulk("pmessage");
    r.bulk(*pattern);
  } else {
    push_header(r, 3);
    r.bulk(kind == PubKind::kShard ? "smessage" : "message");
  }
  r.bulk(channel);
  r.bulk(payload);
}

void register_pubsub_commands(std::vector<CommandSpec>& t) {
  constexpr auto L = Routing::kLocal;
  const uint32_t PS = kNoScript | kLoading | kStale;
  t.push_back({"subscribe", -2, PS, 0, 0, 0, L, cmd_run_by_server, "pubsub", "Listens for messages published to channels.", "2.0.0"});
  t.push_back({"psubscribe", -2, PS, 0, 0, 0, L, cmd_run_by_server, "pubsub", "Listens for messages published to channels that match one or more patterns.", "2.0.0"});
  t.push_back({"unsubscribe", -1, PS, 0, 0, 0, L, cmd_run_by_server, "pubsub", "Stops listening to messages posted to channels.", "2.0.0"});
  t.push_back({"punsubscribe", -1, PS, 0, 0, 0, L, cmd_run_by_server, "pubsub", "Stops listening to messages published to channels that match one or more patterns.", "2.0.0"});
  t.push_back({"publish", 3, kLoading | kStale | kFast, 0, 0, 0, L, cmd_run_by_server, "pubsub", "Posts a message to a channel.", "2.0.0"});
  t.push_back({"pubsub", -2, 0, 0, 0, 0, L, cmd_run_by_server, "pubsub", "A container for Pub/Sub commands.", "2.8.0"});
  // Shard channels are bound to a slot like keys (CLUSTER KEYSLOT of the name): COMMAND
  // reports them as keys, as Redis does, so cluster clients route them.
  t.push_back({"ssubscribe", -2, PS, 1, -1, 1, L, cmd_run_by_server, "pubsub", "Listens for messages published to shard channels.", "7.0.0"});
  t.push_back({"sunsubscribe", -1, PS, 1, -1, 1, L, cmd_run_by_server, "pubsub", "Stops listening to messages posted to shard channels.", "7.0.0"});
  t.push_back({"spublish", 3, kLoading | kStale | kFast, 1, 1, 1, L, cmd_run_by_server, "pubsub", "Post a message to a shard channel", "7.0.0"});
}

}  // namespace keel::resp
