// The deciding parts of the SDK pieces documented in docs/sdk-config.md read no clock, start no
// thread, open no file and draw no randomness: time and text arrive as arguments. This test
// fails when one of their sources names such an API, so the rule cannot erode quietly.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SdkPurity, CoresUseNoClockThreadFileOrRandomDevice) {
  const std::vector<std::string> cores{
      "include/keel/peers.h",     "sdk/peers/peers.cpp",         "include/keel/epoch_cache.h",
      "include/keel/capacitor.h", "sdk/capacitor/capacitor.cpp",
  };
  const std::vector<std::string> forbidden{
      "steady_clock", "system_clock", "high_resolution_clock", "SteadyClock", "<thread>",
      "std::thread",  "sleep_for",    "<random>",              "random_device", "<fstream>",
      "<filesystem>", "inotify",      "<sys/",                 "fopen",
  };
  for (const auto& file : cores) {
    const std::string text = read(std::string(KEEL_SOURCE_DIR) + "/" + file);
    ASSERT_FALSE(text.empty()) << file << " is missing";
    for (const auto& word : forbidden) {
      EXPECT_EQ(text.find(word), std::string::npos)
          << file << " uses " << word << "; pure cores take time and input as arguments";
    }
  }
}

}  // namespace
