// Structured logs: text for people, JSON lines for log pipelines.
#pragma once

#include <string>

namespace keel::node {

// level: trace|debug|info|warn|error|off; format: text|json.
void setup_logging(const std::string& level, const std::string& format);

}  // namespace keel::node
