#include "gateway/outlier.h"

#include <algorithm>
#include <set>

#include "base/assert.h"

namespace keel::gateway {

const OutlierDetector::State* OutlierDetector::find(std::string_view service, std::string_view id) const {
  auto s = services_.find(service);
  if (s == services_.end()) return nullptr;
  auto i = s->second.instances.find(id);
  return i == s->second.instances.end() ? nullptr : &i->second;
}

bool OutlierDetector::record(const std::string& service, const std::string& id, bool failure, size_t service_size,
                             int64_t now_ms) {
  if (opt_.consecutive_failures == 0) return false;
  auto& svc = services_[service];
  auto& st = svc.instances[id];
  // Back in for long enough: earlier ejections no longer lengthen the next one.
  if (st.times_ejected > 0 && st.ejected_until_ms <= now_ms && now_ms - st.ejected_until_ms >= opt_.max_ejection_ms)
    st.times_ejected = 0;
  if (!failure) {
    st.failures = 0;
    return false;
  }
  if (st.ejected_until_ms > now_ms) return false;  // already out (an answer that was in flight)
  if (st.failures < opt_.consecutive_failures) ++st.failures;
  if (st.failures < opt_.consecutive_failures) return false;
  // The share cap: never more than max_ejected_percent of the service, never all of it.
  size_t out = ejected_count(service, now_ms);
  if (out + 1 >= service_size || (out + 1) * 100 > uint64_t{opt_.max_ejected_percent} * service_size) return false;
  ++st.times_ejected;
  int64_t dur = std::min<int64_t>(opt_.max_ejection_ms, opt_.base_ejection_ms * st.times_ejected);
  st.ejected_until_ms = now_ms + dur;
  st.failures = 0;
  ++svc.ejections_total;
  KEEL_ASSERT(ejected(service, id, now_ms));
  return true;
}

bool OutlierDetector::ejected(std::string_view service, std::string_view id, int64_t now_ms) const {
  auto* st = find(service, id);
  return st && st->ejected_until_ms > now_ms;
}

int64_t OutlierDetector::ejected_until_ms(std::string_view service, std::string_view id, int64_t now_ms) const {
  auto* st = find(service, id);
  return st && st->ejected_until_ms > now_ms ? st->ejected_until_ms : 0;
}

size_t OutlierDetector::ejected_count(std::string_view service, int64_t now_ms) const {
  auto s = services_.find(service);
  if (s == services_.end()) return 0;
  size_t n = 0;
  for (auto& [id, st] : s->second.instances)
    if (st.ejected_until_ms > now_ms) ++n;
  return n;
}

uint32_t OutlierDetector::times_ejected(std::string_view service, std::string_view id) const {
  auto* st = find(service, id);
  return st ? st->times_ejected : 0;
}

uint64_t OutlierDetector::ejections_total(std::string_view service) const {
  auto s = services_.find(service);
  return s == services_.end() ? 0 : s->second.ejections_total;
}

std::vector<std::string> OutlierDetector::services() const {
  std::vector<std::string> out;
  for (auto& [name, s] : services_) out.push_back(name);
  return out;
}

void OutlierDetector::retain(const std::vector<std::pair<std::string, std::string>>& live) {
  std::set<std::pair<std::string_view, std::string_view>> keep;
  for (auto& [s, i] : live) keep.emplace(s, i);
  for (auto& [name, svc] : services_)
    std::erase_if(svc.instances, [&](const auto& kv) { return !keep.count({name, kv.first}); });
  // A service's ejection total stays (a counter never goes back), even with no instance left;
  // a service that has neither instances nor ejections goes.
  std::erase_if(services_, [](const auto& kv) { return kv.second.instances.empty() && kv.second.ejections_total == 0; });
}

bool HealthState::record(bool good, const HealthCheckOptions& opt) {
  if (good) {
    fails_ = 0;
    if (oks_ < opt.healthy_after) ++oks_;
    if (!healthy_ && oks_ >= opt.healthy_after) {
      healthy_ = true;
      return true;
    }
    return false;
  }
  oks_ = 0;
  if (fails_ < opt.unhealthy_after) ++fails_;
  if (healthy_ && fails_ >= opt.unhealthy_after) {
    healthy_ = false;
    return true;
  }
  return false;
}

}  // namespace keel::gateway
