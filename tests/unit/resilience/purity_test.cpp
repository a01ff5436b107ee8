// Lint-style checks, run as a test: the decision cores read no clock, sleep no thread and draw
// no OS randomness, and the SDK includes nothing from src/ (it ships on its own).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const fs::path kRoot = KEEL_SOURCE_DIR;

TEST(Purity, CoresUseNoClockThreadOrEntropy) {
  // The shell files (the only ones allowed to touch time and threads).
  const std::vector<std::string> shell = {"clock.cpp", "waiting_bulkhead.cpp", "waiting_bulkhead.h", "clock.h",
                                          "pipeline.h"};
  const std::vector<std::string> forbidden = {"steady_clock", "system_clock", "high_resolution_clock", "<thread>",
                                              "random_device", "this_thread", "<condition_variable>",
                                              "time(nullptr)", "gettimeofday", "clock_gettime", "<asio", "<fstream>"};
  size_t checked = 0;
  for (const fs::path& dir : {kRoot / "sdk/resilience", kRoot / "include/keel/resilience"}) {
    for (const auto& e : fs::directory_iterator(dir)) {
      std::string name = e.path().filename().string();
      if (std::find(shell.begin(), shell.end(), name) != shell.end()) continue;
      if (e.path().extension() != ".cpp" && e.path().extension() != ".h") continue;
      std::string text = read(e.path());
      for (const auto& f : forbidden) EXPECT_EQ(text.find(f), std::string::npos) << name << " uses " << f;
      ++checked;
    }
  }
  EXPECT_GE(checked, 15u);
}

TEST(Purity, SdkDoesNotIncludeSrc) {
  size_t checked = 0;
  for (const fs::path& dir : {kRoot / "sdk", kRoot / "include/keel"}) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::string text = read(e.path());
      for (const char* f : {"#include \"base/", "#include \"storage/", "#include \"runtime/", "#include \"frontends/",
                            "#include \"node/", "#include \"observe/", "keel_base"})
        EXPECT_EQ(text.find(f), std::string::npos) << e.path() << " depends on src/: " << f;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u);
}

}  // namespace
