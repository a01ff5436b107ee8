// A tiny RESP server for client tests: runs on its own thread, parses each request with the
// SDK's parser and answers with whatever raw bytes the test's handler returns. Used to script
// MOVED/ASK, slow replies, malformed replies and dropped connections.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "keel/client/reply.h"

namespace keel::testing {

class FakeRespServer {
 public:
  // Returns the raw reply bytes; an empty string sends nothing (the reply never comes).
  using Handler = std::function<std::string(const std::vector<std::string>& args)>;

  // port 0: any free port. A given port lets a test bring a "node" back where it was.
  explicit FakeRespServer(Handler h, uint16_t port = 0) : handler_(std::move(h)), acceptor_(io_) {
    namespace ip = boost::asio::ip;
    ip::tcp::endpoint ep(ip::make_address("127.0.0.1"), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeRespServer() {
    boost::asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      for (auto& s : sessions_) s->sock.close(ec);
    });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  uint16_t port() const { return port_; }
  size_t connections_accepted() const { return accepted_.load(); }
  size_t requests() const { return requests_.load(); }
  // Closes every open connection (the client sees EOF).
  void drop_connections() {
    std::promise<void> done;
    boost::asio::post(io_, [this, &done] {
      boost::system::error_code ec;
      for (auto& s : sessions_) s->sock.close(ec);
      sessions_.clear();
      done.set_value();
    });
    done.get_future().wait();
  }

  static std::string simple(std::string_view s) { return "+" + std::string(s) + "\r\n"; }
  static std::string error(std::string_view s) { return "-" + std::string(s) + "\r\n"; }
  static std::string bulk(std::string_view s) { return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n"; }
  static std::string integer(int64_t v) { return ":" + std::to_string(v) + "\r\n"; }
  static std::string null() { return "_\r\n"; }

 private:
  struct Session {
    explicit Session(boost::asio::io_context& io) : sock(io) {}
    boost::asio::ip::tcp::socket sock;
    client::ReplyParser parser;
    char buf[16384];
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket sock) {
      if (ec) return;
      ++accepted_;
      auto s = std::make_shared<Session>(io_);
      s->sock = std::move(sock);
      s->sock.set_option(boost::asio::ip::tcp::no_delay(true));
      sessions_.push_back(s);
      read(s);
      accept();
    });
  }

  void read(std::shared_ptr<Session> s) {
    s->sock.async_read_some(boost::asio::buffer(s->buf), [this, s](boost::system::error_code ec, size_t n) {
      if (ec) return;
      s->parser.append(std::string_view(s->buf, n));
      std::string out;
      client::Reply req;
      while (s->parser.next(req) == client::ReplyParser::Status::kReply) {
        std::vector<std::string> args;
        for (auto& e : req.elements) args.push_back(e.str);
        ++requests_;
        out += handler_(args);
      }
      if (!out.empty()) {
        auto data = std::make_shared<std::string>(std::move(out));
        boost::asio::async_write(s->sock, boost::asio::buffer(*data), [data](boost::system::error_code, size_t) {});
      }
      read(s);
    });
  }

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{io_.get_executor()};
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<Session>> sessions_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::atomic<size_t> accepted_{0}, requests_{0};
};

}  // namespace keel::testing
