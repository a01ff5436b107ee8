#include "observe/log_levels.h"

#include <gtest/gtest.h>

namespace keel::observe {
namespace {

LogLevels parse_ok(std::string_view spec) {
  std::string error;
  auto l = parse_log_levels(spec, error);
  EXPECT_TRUE(l.has_value()) << spec << ": " << error;
  return l.value_or(LogLevels{});
}

std::string parse_error(std::string_view spec) {
  std::string error;
  auto l = parse_log_levels(spec, error);
  EXPECT_FALSE(l.has_value()) << spec;
  return error;
}

TEST(LogLevels, BareLevelSetsEveryComponent) {
  auto l = parse_ok("warn");
  EXPECT_EQ(l.base, Level::kWarn);
  for (size_t c = 0; c < kComponentCount; ++c)
    EXPECT_EQ(l.of(static_cast<Component>(c)), Level::kWarn);
  EXPECT_EQ(format_log_levels(l), "warn");
  // Redis's spellings, any case.
  EXPECT_EQ(parse_ok("WARNING").base, Level::kWarn);
  EXPECT_EQ(parse_ok("notice").base, Level::kInfo);
  EXPECT_EQ(parse_ok("Verbose").base, Level::kDebug);
  EXPECT_EQ(parse_ok("off").base, Level::kOff);
}

TEST(LogLevels, ComponentOverridesAndCanonicalText) {
  auto l = parse_ok("info, resp=warn  dht=DEBUG");
  EXPECT_EQ(l.of(Component::kDht), Level::kDebug);
  EXPECT_EQ(l.of(Component::kResp), Level::kWarn);
  EXPECT_EQ(l.of(Component::kNode), Level::kInfo);
  EXPECT_EQ(l.of(Component::kCluster), Level::kInfo);
  // Components in their fixed order, whatever the input's.
  EXPECT_EQ(format_log_levels(l), "info resp=warn dht=debug");
  EXPECT_EQ(parse_ok(format_log_levels(l)), l);
  // An override alone keeps the default (info).
  auto only = parse_ok("cluster=trace");
  EXPECT_EQ(only.base, Level::kInfo);
  EXPECT_EQ(only.of(Component::kCluster), Level::kTrace);
  // Later items win; a later bare level resets the overrides before it.
  EXPECT_EQ(parse_ok("dht=debug dht=error").of(Component::kDht), Level::kError);
  EXPECT_EQ(format_log_levels(parse_ok("dht=debug error")), "error");
}

TEST(LogLevels, BadInputNamesTheProblemAndWhatIsAllowed) {
  auto e = parse_error("loud");
  EXPECT_NE(e.find("'loud' is not a log level"), std::string::npos) << e;
  EXPECT_NE(e.find("trace, debug, info, warn, error, off"), std::string::npos) << e;
  e = parse_error("info dhtt=debug");
  EXPECT_NE(e.find("unknown log component 'dhtt'"), std::string::npos) << e;
  EXPECT_NE(e.find("node, resp, http, dht"), std::string::npos) << e;
  e = parse_error("dht=");
  EXPECT_NE(e.find("'' is not a log level"), std::string::npos) << e;
  e = parse_error("=debug");
  EXPECT_NE(e.find("unknown log component ''"), std::string::npos) << e;
  e = parse_error(" , ");
  EXPECT_NE(e.find("empty"), std::string::npos) << e;
  std::string many;
  for (int i = 0; i < 65; ++i) many += "info ";
  e = parse_error(many);
  EXPECT_NE(e.find("more than 64 items"), std::string::npos) << e;
}

}  // namespace
}  // namespace keel::observe
