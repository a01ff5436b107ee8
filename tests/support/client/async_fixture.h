// An io_context on its own thread, and run() to wait for a coroutine's result from the test.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <thread>

#include "keel/client/async.h"

namespace keel::testing {

class AsyncFixture {
 public:
  AsyncFixture() : thread_([this] { io_.run(); }) {}
  ~AsyncFixture() {
    work_.reset();
    io_.stop();
    thread_.join();
  }
  template <class T>
  T run(boost::asio::awaitable<T> a) {
    return boost::asio::co_spawn(io_, std::move(a), boost::asio::use_future).get();
  }
  boost::asio::any_io_executor ex() { return io_.get_executor(); }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread thread_;
};

}  // namespace keel::testing
