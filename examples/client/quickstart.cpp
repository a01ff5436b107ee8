// quickstart: the blocking keel::Client and a typed Cache.
//   client_quickstart [host] [port]      (default 127.0.0.1 6380)
// The cache part needs a node with cluster metadata (a one-member cluster will do: docs/caches.md).
#include <keel/client/cache.h>
#include <keel/client/client.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  std::string host = argc > 1 ? argv[1] : "127.0.0.1";
  auto port = static_cast<uint16_t>(argc > 2 ? std::atoi(argv[2]) : 6380);

  // doc:begin client-basics
  auto client = keel::Client::connect(host, port);
  if (!client) {
    std::fprintf(stderr, "connect: %s\n", client.error().to_string().c_str());
    return 1;
  }
  using namespace std::chrono_literals;
  if (auto st = client->set("greeting", "hello", 60s); !st) {
    std::fprintf(stderr, "set: %s\n", st.error().to_string().c_str());
    return 1;
  }
  auto value = client->get("greeting");  // Result<std::optional<std::string>>
  auto visits = client->incr("visits");  // Result<int64_t>
  if (!value || !*value || !visits) return 1;
  std::printf("greeting=%s visits=%lld\n", (*value)->c_str(), static_cast<long long>(*visits));
  // doc:end

  // doc:begin client-cache
  // A named cache on the server (defined once, idempotently): entries expire after 30 min
  // unless a put says otherwise; at most ~100000 entries, least recently used go first.
  auto sessions = keel::Cache<std::string, std::string>::open(
      *client, "sessions", {.default_ttl = 30min, .eviction = "lru", .max_entries = 100000});
  if (!sessions) {
    std::fprintf(stderr, "cache: %s\n", sessions.error().to_string().c_str());
    return 1;
  }
  if (!sessions->put("s-42", "user=ada") || !sessions->put_with_ttl("s-43", "user=bob", 5min)) return 1;
  auto s = sessions->get("s-42");
  if (!s || !*s) return 1;
  std::printf("session=%s\n", (*s)->c_str());
  // doc:end
  return 0;
}
