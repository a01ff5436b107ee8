// co_await meta_call<T>(start) with start = [&](auto cb) { meta->put(..., cb); }: runs a
// MetaService call and resumes on the calling coroutine's executor with its result.
// `start` is held by reference and must capture only references: GCC 12 destroys non-trivial
// captures of an initiation object passed through use_awaitable's coroutine frame twice.
//
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>

#include "base/result.h"

namespace keel::cluster {

template <class T, class Start>
boost::asio::awaitable<Result<T>> meta_call(Start& start) {
  namespace asio = boost::asio;
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(Result<T>)>(
      [&start](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([h](Result<T> r) {
          auto ex = asio::get_associated_executor(*h);
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      asio::use_awaitable);
}

}  // namespace keel::cluster
