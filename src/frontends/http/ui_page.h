// The admin page (/ui/): see ui_page.cpp.
#pragma once

#include <string_view>

namespace keel::http {

// The whole page: HTML with its style and script inline (no other request but the node's own
// /v1/cluster/status, /v1/caches, /v1/routes and /metrics).
std::string_view ui_page();

}  // namespace keel::http
