// Properties of Capacitor's pure part, on random histories (manual time, in-memory text).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "keel/capacitor.h"

namespace keel::sdk {
namespace {

using namespace std::chrono_literals;

struct Conf {
  int n = 0;
};
void from_json(const nlohmann::json& j, Conf& c) { j.at("n").get_to(c.n); }

// Debounce: polled every step, a reload is due exactly when the burst has been quiet for
// `debounce` or has lasted `max_delay`; no change is ever left without a reload.
RC_GTEST_PROP(CapacitorProps, DebounceNeverLosesAChangeAndRespectsItsBounds, ()) {
  const auto debounce = std::chrono::milliseconds(*rc::gen::inRange(0, 50));
  const auto max_delay = debounce + std::chrono::milliseconds(*rc::gen::inRange(0, 200));
  CapacitorCore::Options o;
  o.debounce = debounce;
  o.max_delay = max_delay;
  Capacitor<Conf> c(o);
  bool pending = false;  // the pending burst, as the model sees it
  Instant first{}, last{};
  Instant now{};
  const int steps = *rc::gen::inRange(1, 300);
  for (int i = 0; i < steps; ++i) {
    now += std::chrono::milliseconds(*rc::gen::inRange(0, 20));
    if (*rc::gen::inRange(0, 3) == 0) {
      c.notify_changed(now);
      if (!pending) first = now;
      pending = true;
      last = now;
    }
    const bool due = c.reload_due(now);
    const bool model_due = pending && (now >= last + debounce || now >= first + max_delay);
    RC_ASSERT(due == model_due);
    if (due) {
      RC_ASSERT(now - first <= max_delay + 20ms);  // polled at most 20 ms late
      pending = false;
    }
  }
  // Quiet from here on: the pending change (if any) becomes due by last + debounce.
  if (pending) {
    RC_ASSERT(c.next_deadline().has_value());
    RC_ASSERT(*c.next_deadline() <= last + debounce);
    RC_ASSERT(c.reload_due(last + debounce));
  } else {
    RC_ASSERT(!c.next_deadline().has_value());
  }
}

// State machine against a model: the live value is the last accepted one; the state is
// Empty until something is accepted, then Healthy after an accepted (or unchanged) load and
// Degraded after a refused one; the version counts accepted swaps.
RC_GTEST_PROP(CapacitorProps, StateMachineMatchesTheModel, ()) {
  CapacitorCore::Options o;
  o.format = ConfigFormat::kJson;
  Capacitor<Conf> c(o, [](const Conf& v) {
    return v.n >= 0 ? std::vector<std::string>{} : std::vector<std::string>{"n: negative"};
  });
  std::optional<int> live;
  std::optional<std::string> live_text;
  uint64_t version = 0;
  int swaps_seen = 0;
  c.on_change([&](const auto& prev, const auto& next) {
    ++swaps_seen;
    RC_ASSERT(next != nullptr);
    RC_ASSERT((prev == nullptr) == (swaps_seen == 1));
  });
  const int steps = *rc::gen::inRange(1, 60);
  for (int i = 0; i < steps; ++i) {
    const int kind = *rc::gen::inRange(0, 5);
    const int n = *rc::gen::inRange(-2, 4);
    std::expected<std::string, ConfigError> text = "{\"n\": " + std::to_string(n) + "}";
    if (kind == 0) text = std::unexpected(ConfigError{ConfigErrc::kRead, "gone"});
    if (kind == 1) text = std::string("{\"n\": ");
    if (kind == 2) text = std::string("{\"m\": 1}");
    const bool good = kind >= 3 && n >= 0;
    const auto report = c.load(text, Instant{});
    if (good) {
      if (live_text && *live_text == *text) {
        RC_ASSERT(report.outcome == CapacitorCore::Outcome::kUnchanged);
      } else {
        RC_ASSERT(report.outcome == CapacitorCore::Outcome::kApplied);
        ++version;
        live = n;
        live_text = *text;
      }
      RC_ASSERT(c.state() == ConfigState::kHealthy);
      RC_ASSERT(!c.last_error().has_value());
    } else {
      RC_ASSERT(report.outcome == CapacitorCore::Outcome::kRejected);
      RC_ASSERT(c.state() == (live ? ConfigState::kDegraded : ConfigState::kEmpty));
      RC_ASSERT(c.last_error().has_value());
    }
    RC_ASSERT(c.version() == version);
    RC_ASSERT(static_cast<uint64_t>(swaps_seen) == version);
    if (live) {
      RC_ASSERT(c.get() != nullptr);
      RC_ASSERT(c.get()->n == *live);
    } else {
      RC_ASSERT(c.get() == nullptr);
    }
  }
}

}  // namespace
}  // namespace keel::sdk
