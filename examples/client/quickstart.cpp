// quickstart: the blocking keel::Client and a typed Cache.
//   client_quickstart [host] [port]      (default 127.0.0.1 6380)
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
  // A named cache keeps its entries under "cache:<name>:<key>".
  auto sessions = keel::client::Cache<std::string, std::string>::open(*client, "sessions");
  if (!sessions || !sessions->put("s-42", "user=ada", 30min)) return 1;
  auto s = sessions->get("s-42");
  if (!s || !*s) return 1;
  std::printf("session=%s\n", (*s)->c_str());
  // doc:end
  return 0;
}
