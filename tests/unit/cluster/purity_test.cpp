// The pure cluster pieces read no clock, socket, file, thread or OS randomness (DESIGN.md §2).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

TEST(ClusterPurity, CoreFilesUseNoClockThreadSocketFileOrEntropy) {
  const std::vector<std::string> forbidden = {
      "steady_clock",  "system_clock", "high_resolution_clock", "<thread>",
      "random_device", "this_thread",  "<condition_variable>",  "<mutex>",
      "time(nullptr)", "gettimeofday", "clock_gettime",         "<asio",
      "<fstream>",     "<cstdio>",     "<sys/socket.h>",        "fopen(",
      "<random>"};
  size_t checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(KEEL_SOURCE_DIR) / "src/cluster")) {
    if (e.path().extension() != ".cpp" && e.path().extension() != ".h") continue;
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    for (const auto& word : forbidden)
      EXPECT_EQ(text.find(word), std::string::npos) << e.path().filename() << " uses " << word;
    ++checked;
  }
  EXPECT_GE(checked,
            12u);  // wire, peer_address, failure_detector, partition_map, placement, planner
}

}  // namespace
