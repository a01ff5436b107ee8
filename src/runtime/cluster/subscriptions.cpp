#include "runtime/cluster/subscriptions.h"

#include <fmt/format.h>

#include "meta/store.h"

namespace keel::cluster {

namespace {
KeyValue convert(const meta::KeyValue& kv) {
  return KeyValue{kv.key, kv.value, kv.version, kv.create_revision, kv.mod_revision};
}

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 64) return false;
  for (char c : d)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

void invoke(detail::SubscriptionState& s, const MetaUpdate& u) {
  std::lock_guard l(s.mu);
  if (!s.cancelled) s.cb(u);
}
}  // namespace

void Subscription::cancel() {
  if (!state_) return;
  std::lock_guard l(state_->mu);
  state_->cancelled = true;
}

bool Subscription::active() const {
  if (!state_) return false;
  std::lock_guard l(state_->mu);
  return !state_->cancelled;
}

Result<std::shared_ptr<detail::SubscriptionState>> SubscriptionHub::make(std::string domain,
                                                                         std::string prefix,
                                                                         uint64_t from_revision,
                                                                         SubscribeCallback cb) {
  if (!valid_domain(domain))
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("domain '{}' is not allowed; allowed: 1 to 64 characters of a-z, 0-9, _ and -",
                    domain));
  if (!cb) return make_error(Errc::kInvalidArgument, "a subscription needs a callback");
  if (count_.fetch_add(1) >= max_) {
    count_.fetch_sub(1);
    return make_error(Errc::kLimitExceeded,
                      fmt::format("too many metadata subscriptions on this node (limit {})", max_));
  }
  auto s = std::make_shared<detail::SubscriptionState>();
  s->domain = std::move(domain);
  s->prefix = std::move(prefix);
  s->cb = std::move(cb);
  s->next = from_revision;
  s->needs_reset = from_revision == 0;
  return s;
}

void SubscriptionHub::attach(std::shared_ptr<detail::SubscriptionState> s) {
  subs_.push_back(std::move(s));
}

void SubscriptionHub::reset_all() {
  for (auto& s : subs_) s->needs_reset = true;
}

void SubscriptionHub::drop(const std::shared_ptr<detail::SubscriptionState>& s) {
  (void)s;
  count_.fetch_sub(1);
}

void SubscriptionHub::deliver(const meta::Store& store) {
  const uint64_t rev = store.revision();
  // Index loop: a callback may subscribe (attach runs later, posted) but never erases here.
  size_t kept = 0;
  for (size_t i = 0; i < subs_.size(); ++i) {
    auto s = subs_[i];
    bool cancelled;
    {
      std::lock_guard l(s->mu);
      cancelled = s->cancelled;
    }
    if (cancelled) {
      drop(s);
      continue;
    }
    subs_[kept++] = s;
    MetaUpdate u;
    if (!s->needs_reset) {
      if (s->next > rev) continue;  // nothing new for anyone
      auto ev = store.changes_since(s->domain, s->prefix, s->next);
      if (!ev) {
        s->needs_reset = true;  // fell behind the kept history
      } else if (ev->empty()) {
        s->next = rev + 1;
        continue;
      } else {
        u.events.reserve(ev->size());
        for (auto& e : *ev) {
          WatchEvent w;
          w.deleted = e.type == meta::Event::Type::kDelete;
          w.kv = convert(e.kv);
          w.kv.mod_revision = e.revision;
          if (w.deleted) w.kv.value.clear();
          u.events.push_back(std::move(w));
        }
      }
    }
    if (s->needs_reset) {
      u.reset = true;
      for (auto& kv : store.list_all(s->domain, s->prefix)) u.contents.push_back(convert(kv));
    }
    u.revision = rev;
    s->next = rev + 1;
    s->needs_reset = false;
    invoke(*s, u);
  }
  subs_.resize(kept);
}

void SubscriptionHub::clear() {
  for (auto& s : subs_) {
    std::lock_guard l(s->mu);
    s->cancelled = true;
  }
  count_.fetch_sub(subs_.size());
  subs_.clear();
}

}  // namespace keel::cluster
