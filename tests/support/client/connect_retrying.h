// A keel::Client to a node that may still be starting: connects again every 50 ms, up to 10 s,
// then fails the test. Header-only (C++ integration tests linking keel_client).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "keel/client/client.h"

namespace keel::testing {

inline keel::Client connect_retrying(uint16_t port) {
  for (int i = 0;; ++i) {
    auto c = keel::Client::connect("127.0.0.1", port);
    if (c) return std::move(*c);
    if (i == 200) {
      ADD_FAILURE() << c.error().to_string();
      std::abort();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace keel::testing
