// meta_config: a configuration that lives in keel's cluster metadata. A Capacitor follows the
// key through a ConfigMetaWatcher; the program prints the live value once it is loaded (or why
// it could not be) and exits.
//   sdk_meta_config HOST HTTP_PORT KEY
#include <keel/capacitor.h>
#include <keel/config_meta_watcher.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using namespace keel::sdk;
using namespace std::chrono_literals;

struct Limits {
  int max_connections = 0;
  std::string mode;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Limits, max_connections, mode)

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s HOST HTTP_PORT KEY\n", argv[0]);
    return 2;
  }
  Capacitor<Limits> limits({.source = argv[3], .format = ConfigFormat::kJson},
                           [](const Limits& l) -> std::vector<std::string> {
                             if (l.max_connections < 1) return {"max_connections must be >= 1"};
                             return {};
                           });
  auto watcher = ConfigMetaWatcher::start(
      limits, {.host = argv[1], .port = static_cast<uint16_t>(std::atoi(argv[2])), .key = argv[3],
               .retry_initial = 50ms, .retry_max = 500ms});
  if (!watcher) {
    std::fprintf(stderr, "watch: %s\n", watcher.error().message.c_str());
    return 2;
  }
  for (int i = 0; i < 1000 && limits.state() == ConfigState::kLoading; ++i) std::this_thread::sleep_for(10ms);
  std::printf("state=%s", std::string(config_state_name(limits.state())).c_str());
  if (auto live = limits.get()) {
    std::printf(" max_connections=%d mode=%s", live->max_connections, live->mode.c_str());
  }
  if (auto err = limits.last_error()) std::printf(" error=%s", err->message.c_str());
  std::printf("\n");
  (*watcher)->stop();
  return limits.get() ? 0 : 1;
}
