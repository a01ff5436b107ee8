// The pure observability cores read no clock, socket, file, thread or OS randomness: time and
// inputs are handed in (STYLE.md "Cores without I/O"). The files listed here are those cores.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

TEST(ObservePurity, CoresUseNoClockThreadSocketFileOrEntropy) {
  const std::vector<std::string> forbidden = {
      "steady_clock",  "system_clock", "high_resolution_clock", "<thread>",
      "random_device", "this_thread",  "<condition_variable>",  "<mutex>",
      "time(nullptr)", "gettimeofday", "clock_gettime",         "<asio",
      "<beast",        "<fstream>",    "<cstdio>",              "<sys/socket.h>",
      "fopen(",        "<random>",     "SystemClock",           "system_seed"};
  const std::vector<std::string> cores = {"health.h", "health.cpp", "trace_context.h", "trace_context.cpp",
                                          "sampler.h", "export_core.h", "export_core.cpp", "otlp_json.h",
                                          "otlp_json.cpp", "log_levels.h", "log_levels.cpp", "signals.h", "signals.cpp",
                                          "trace_ring.h", "trace_ring.cpp"};
  size_t checked = 0;
  for (const auto& name : cores) {
    auto path = fs::path(KEEL_SOURCE_DIR) / "src/observe" / name;
    if (!fs::exists(path)) continue;
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    for (const auto& word : forbidden) EXPECT_EQ(text.find(word), std::string::npos) << name << " uses " << word;
    ++checked;
  }
  EXPECT_EQ(checked, cores.size());
}

}  // namespace
