// The audit log's pure parts (security/audit.h): the fields as JSON, the text line, rules with
// their passwords redacted, and the once-a-minute success throttle.
#include "security/audit.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace keel::security::audit {
namespace {

TEST(Audit, FieldsAreOneJsonObjectEscapedAndCut) {
  Fields f{{"user", "al\"ice"}, {"addr", "127.0.0.1"}, {"reason", std::string(1000, 'x')}, {"ctl", "a\nb"}};
  auto j = nlohmann::json::parse(fields_json(f));
  EXPECT_EQ(j["user"], "al\"ice");
  EXPECT_EQ(j["ctl"], "a\nb");
  EXPECT_EQ(j["reason"].get<std::string>().size(), kMaxFieldBytes + 3);
  // Invalid UTF-8 never breaks the line.
  auto bad = nlohmann::json::parse(fields_json({{"user", std::string("\xff\xfe", 2)}}));
  EXPECT_TRUE(bad["user"].is_string());
}

TEST(Audit, TextQuotesWhatNeedsIt) {
  EXPECT_EQ(text(kAuthFailure, {{"door", "resp"}, {"user", "a b"}, {"reason", ""}}),
            "auth.failure door=resp user=\"a b\" reason=\"\"");
  EXPECT_EQ(text(kUserSet, {{"rules", "say \"hi\""}}), "acl.setuser rules=\"say \\\"hi\\\"\"");
}

TEST(Audit, RulesLoseTheirPasswordsAndHashes) {
  std::vector<std::string> rules = {"on", ">s3cret", "<old", "#" + std::string(64, 'a'), "!abc", "~orders:*", "+@all"};
  std::string r = redact_rules(rules);
  EXPECT_EQ(r, "on ><redacted> <<redacted> #<redacted> !<redacted> ~orders:* +@all");
  EXPECT_EQ(r.find("s3cret"), std::string::npos);
}

TEST(Audit, SuccessIsDueOncePerIntervalPerKey) {
  EXPECT_TRUE(success_due("test|a", 1000));
  EXPECT_FALSE(success_due("test|a", 1000 + kSuccessIntervalMs - 1));
  EXPECT_TRUE(success_due("test|b", 1000));
  EXPECT_TRUE(success_due("test|a", 1000 + kSuccessIntervalMs));
}

}  // namespace
}  // namespace keel::security::audit
