#include "frontends/resp/pubsub_registry.h"

#include "base/assert.h"

#include "frontends/resp/command.h"

namespace keel::resp {

bool PubSubRegistry::subscribe(ClientId client, PubKind kind, std::string_view name) {
  auto& names = by_client_[client].names[static_cast<int>(kind)];
  if (!names.emplace(name).second) return false;
  bool added = index(kind)[std::string(name)].insert(client).second;
  KEEL_ASSERT(added);  // the two maps agree
  (void)added;
  return true;
}

bool PubSubRegistry::unsubscribe(ClientId client, PubKind kind, std::string_view name) {
  auto c = by_client_.find(client);
  if (c == by_client_.end()) return false;
  auto& names = c->second.names[static_cast<int>(kind)];
  auto n = names.find(name);
  if (n == names.end()) return false;
  names.erase(n);
  auto& idx = index(kind);
  auto it = idx.find(std::string(name));
  KEEL_ASSERT(it != idx.end());
  it->second.erase(client);
  // An empty entry is dropped, so subscribing to millions of channels once costs nothing later.
  if (it->second.empty()) idx.erase(it);
  if (total(client) == 0) by_client_.erase(client);
  return true;
}

std::vector<std::string> PubSubRegistry::unsubscribe_all(ClientId client, PubKind kind) {
  std::vector<std::string> out;
  out = names(client, kind);
  for (const auto& n : out) unsubscribe(client, kind, n);
  return out;
}

void PubSubRegistry::remove_client(ClientId client) {
  for (auto kind : {PubKind::kChannel, PubKind::kPattern, PubKind::kShard}) unsubscribe_all(client, kind);
  by_client_.erase(client);
}

std::vector<std::string> PubSubRegistry::names(ClientId client, PubKind kind) const {
  auto c = by_client_.find(client);
  if (c == by_client_.end()) return {};
  const auto& n = c->second.names[static_cast<int>(kind)];
  return {n.begin(), n.end()};
}

size_t PubSubRegistry::count(ClientId client, PubKind kind) const {
  auto c = by_client_.find(client);
  return c == by_client_.end() ? 0 : c->second.names[static_cast<int>(kind)].size();
}

size_t PubSubRegistry::publish(bool shard, std::string_view channel,
                               const std::function<void(ClientId, const std::string*)>& deliver) const {
  size_t receivers = 0;
  const std::string key(channel);
  const auto& exact = index(shard ? PubKind::kShard : PubKind::kChannel);
  if (auto it = exact.find(key); it != exact.end()) {
    for (ClientId c : it->second) {
      deliver(c, nullptr);
      ++receivers;
    }
  }
  // Redis's stringmatchlen never matches an empty string, even with "*".
  if (shard || channel.empty()) return receivers;
  for (const auto& [pattern, subscribers] : index(PubKind::kPattern)) {
    if (!glob_match(pattern, channel)) continue;
    for (ClientId c : subscribers) {
      deliver(c, &pattern);
      ++receivers;
    }
  }
  return receivers;
}

size_t PubSubRegistry::numsub(PubKind kind, std::string_view channel) const {
  const auto& idx = index(kind);
  auto it = idx.find(std::string(channel));
  return it == idx.end() ? 0 : it->second.size();
}

void PubSubRegistry::channels(PubKind kind, const std::string* pattern, std::vector<std::string>& out) const {
  for (const auto& [name, subscribers] : index(kind)) {
    KEEL_ASSERT(!subscribers.empty());
    if (!pattern || (!name.empty() && glob_match(*pattern, name))) out.push_back(name);
  }
}

void PubSubRegistry::patterns(std::vector<std::string>& out) const {
  for (const auto& [pattern, subscribers] : index(PubKind::kPattern)) out.push_back(pattern);
}

}  // namespace keel::resp
