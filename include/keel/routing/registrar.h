// keel::routing::Registrar: a service instance registers its routes with keel's HTTP gateway
// (docs/gateway.md) and keeps them while it lives. It registers at once (ROUTE.REGISTER over a
// keel::Client), renews the lease on a thread of its own every third of the lease (sooner, once
// a second, after a failed renewal), and deregisters when closed or destroyed. If the process
// dies, the lease runs out and every node drops the instance.
//
//   keel::Client client = ...;
//   auto reg = keel::routing::Registrar::start(client, {
//       .service = "orders", .id = "orders-1", .address = "127.0.0.1:9000",
//       .routes = {Route::post("/api/orders"), Route::get("/api/orders/{orderId}")},
//       .lease = std::chrono::seconds(5)});
//   if (!reg) ...;  // the server's message says which field was wrong and what is allowed
//
// The client must outlive the Registrar. Thread-safe: stats() and close() from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "keel/client/client.h"

namespace keel::routing {

// One route: a method and a path template ("/api/orders/{orderId}", "/static/{rest=**}").
class Route {
 public:
  Route(std::string method, std::string path) : method_(std::move(method)), path_(std::move(path)) {}
  static Route get(std::string path) { return {"GET", std::move(path)}; }
  static Route post(std::string path) { return {"POST", std::move(path)}; }
  static Route put(std::string path) { return {"PUT", std::move(path)}; }
  static Route patch(std::string path) { return {"PATCH", std::move(path)}; }
  static Route del(std::string path) { return {"DELETE", std::move(path)}; }
  // Only requests whose header `name` has exactly `value` (docs/gateway.md, "Routes").
  Route& header(std::string name, std::string value) {
    options_ += " header=" + std::move(name) + ":" + std::move(value);
    return *this;
  }
  // Only requests that carry header `name`, whatever its value.
  Route& header_present(std::string name) {
    options_ += " header=" + std::move(name);
    return *this;
  }
  // Any other route option in its text form, such as "host=api.example.com" or "rate=100/s".
  Route& option(std::string text) {
    options_ += " " + std::move(text);
    return *this;
  }
  const std::string& method() const { return method_; }
  const std::string& path() const { return path_; }
  // "POST /api/orders header=x-canary:1": the form ROUTE.REGISTER and the HTTP door take.
  std::string text() const { return method_ + " " + path_ + options_; }

 private:
  std::string method_, path_, options_;
};

struct Instance {
  std::string service;   // the service the routes point at
  std::string id;        // this instance, unique within the service
  std::string address;   // host:port the gateway proxies to
  std::vector<Route> routes;
  std::chrono::milliseconds lease{5000};
  uint32_t weight = 0;   // 0: the server's default
  std::string zone, version;
};

class Registrar {
 public:
  struct Stats {
    uint64_t renewals = 0;  // successful registrations, the first one included
    uint64_t failures = 0;  // registrations or renewals that failed
    std::string last_error;
    bool registered = false;  // the last attempt succeeded and close() was not called
  };

  // Registers the instance (an error if the server refuses it: nothing is left registered)
  // and starts renewing it.
  static client::Result<std::unique_ptr<Registrar>> start(keel::Client& client, Instance instance);
  ~Registrar();  // close()
  Registrar(const Registrar&) = delete;
  Registrar& operator=(const Registrar&) = delete;

  // Stops renewing and deregisters (ROUTE.DEREGISTER). Idempotent: later calls return OK.
  client::Status close();
  Stats stats() const;
  const Instance& instance() const;

  // The ROUTE.REGISTER command for an instance (exposed for tests and tools).
  static std::vector<std::string> register_command(const Instance& instance);

  struct Impl;

 private:
  explicit Registrar(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::routing
