// Prometheus exposition of a node snapshot (prometheus-cpp's text serializer).
#pragma once

#include <string>

#include "frontends/resp/server.h"

namespace keel::http {

std::string render_metrics(const resp::Snapshot& snapshot, uint64_t rss_bytes, uint64_t http_requests);

}  // namespace keel::http
