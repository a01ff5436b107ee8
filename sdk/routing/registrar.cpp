#include "keel/routing/registrar.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace keel::routing {

struct Registrar::Impl {
  keel::Client& client;
  Instance instance;
  std::vector<std::string> command;
  mutable std::mutex mu;
  std::condition_variable cv;
  bool closing = false;  // guarded by mu
  bool closed = false;   // guarded by mu
  Stats stats;           // guarded by mu
  std::thread thread;

  Impl(keel::Client& c, Instance i) : client(c), instance(std::move(i)), command(register_command(instance)) {}

  client::Status register_once() {
    auto r = client.checked(command);
    std::lock_guard lk(mu);
    if (r) {
      ++stats.renewals;
      stats.registered = !closing;
      return {};
    }
    ++stats.failures;
    stats.last_error = r.error().to_string();
    stats.registered = false;
    return std::unexpected(r.error());
  }

  void run() {
    using namespace std::chrono;
    const milliseconds period = std::max<milliseconds>(instance.lease / 3, milliseconds(10));
    const milliseconds after_failure = std::min<milliseconds>(period, seconds(1));
    milliseconds wait = period;
    std::unique_lock lk(mu);
    for (;;) {
      if (cv.wait_for(lk, wait, [&] { return closing; })) return;
      lk.unlock();
      bool ok = register_once().has_value();
      lk.lock();
      wait = ok ? period : after_failure;
    }
  }
};

std::vector<std::string> Registrar::register_command(const Instance& i) {
  std::vector<std::string> c{"ROUTE.REGISTER", i.service, i.id, i.address, "LEASE", std::to_string(i.lease.count())};
  for (const auto& r : i.routes) {
    c.emplace_back("ROUTE");
    c.push_back(r.text());
  }
  if (i.weight) {
    c.emplace_back("WEIGHT");
    c.push_back(std::to_string(i.weight));
  }
  if (!i.zone.empty()) {
    c.emplace_back("ZONE");
    c.push_back(i.zone);
  }
  if (!i.version.empty()) {
    c.emplace_back("VERSION");
    c.push_back(i.version);
  }
  return c;
}

client::Result<std::unique_ptr<Registrar>> Registrar::start(keel::Client& client, Instance instance) {
  auto impl = std::make_unique<Impl>(client, std::move(instance));
  if (auto st = impl->register_once(); !st) return std::unexpected(st.error());
  Impl* raw = impl.get();
  raw->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<Registrar>(new Registrar(std::move(impl)));
}

Registrar::Registrar(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Registrar::~Registrar() { (void)close(); }

client::Status Registrar::close() {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->closed) return {};
    impl_->closed = impl_->closing = true;
    impl_->stats.registered = false;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  auto r = impl_->client.checked({"ROUTE.DEREGISTER", impl_->instance.service, impl_->instance.id});
  if (!r) return std::unexpected(r.error());
  return {};
}

Registrar::Stats Registrar::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats;
}

const Instance& Registrar::instance() const { return impl_->instance; }

}  // namespace keel::routing
