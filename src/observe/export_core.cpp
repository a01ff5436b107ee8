#include "observe/export_core.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <type_traits>

#include <fmt/format.h>

namespace keel::observe {

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool num(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<int64_t> parse_retry_after_ms(std::string_view v, int64_t now_unix_s) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  int64_t secs = 0;
  if (!v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (v.size() > 12 || !num(v, secs)) return std::nullopt;
    return secs * 1000;
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters).
  if (v.size() != 29 || v[3] != ',' || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' ||
      v[19] != ':' || v[22] != ':' || v.substr(25) != " GMT")
    return std::nullopt;
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  unsigned mon = 0;
  for (unsigned i = 0; i < 12; ++i)
    if (v.substr(8, 3) == months[i]) mon = i + 1;
  int64_t day, year, hh, mm, ss;
  if (!mon || !num(v.substr(5, 2), day) || !num(v.substr(12, 4), year) || !num(v.substr(17, 2), hh) ||
      !num(v.substr(20, 2), mm) || !num(v.substr(23, 2), ss))
    return std::nullopt;
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  int64_t at = days_from_civil(year, mon, static_cast<unsigned>(day)) * 86400 + hh * 3600 + mm * 60 + ss;
  return std::max<int64_t>(0, at - now_unix_s) * 1000;
}

std::optional<HttpUrl> parse_http_url(const std::string& url, std::string& why, std::string_view default_path) {
  std::string_view v(url);
  if (v.starts_with("https://")) {
    why = fmt::format("https is not supported yet; allowed: an http:// URL such as http://127.0.0.1:4318{} "
                      "(a local collector or agent)", default_path);
    return std::nullopt;
  }
  if (!v.starts_with("http://")) {
    why = fmt::format("allowed: an http:// URL such as http://127.0.0.1:4318{}", default_path);
    return std::nullopt;
  }
  v.remove_prefix(7);
  auto slash = v.find('/');
  auto hostport = v.substr(0, slash);
  HttpUrl u;
  u.path = slash == std::string_view::npos ? std::string(default_path) : std::string(v.substr(slash));
  std::string_view port_text;
  bool has_port = false;
  if (hostport.starts_with("[")) {  // [IPv6]:port
    auto close = hostport.find(']');
    if (close == std::string_view::npos) {
      why = "unbalanced '[' in the host; allowed: http://[IPV6]:PORT/PATH";
      return std::nullopt;
    }
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') {
        why = "expected ':' after ']'; allowed: http://[IPV6]:PORT/PATH";
        return std::nullopt;
      }
      port_text = hostport.substr(close + 2);
      has_port = true;
    }
    hostport = hostport.substr(1, close - 1);
  } else if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    port_text = hostport.substr(colon + 1);
    hostport = hostport.substr(0, colon);
    has_port = true;
  }
  if (has_port) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      why = fmt::format("'{}' is not a port; allowed: http://HOST:PORT/PATH with PORT 1..65535", port_text);
      return std::nullopt;
    }
    u.port = static_cast<uint16_t>(port);
  }
  if (hostport.empty()) {
    why = "the URL has no host; allowed: http://HOST:PORT/PATH";
    return std::nullopt;
  }
  u.host = std::string(hostport);
  return u;
}

bool retryable_status(int status) {
  return status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
}

namespace {
// What a log line and a partial success call the records.
struct Names {
  const char* what;      // "trace export"
  const char* records;   // "spans"
  const char* rejected;  // partialSuccess's field
};
template <class Record>
constexpr Names names() {
  if constexpr (std::is_same_v<Record, LogData>) return {"log export", "log records", "rejectedLogRecords"};
  else return {"trace export", "spans", "rejectedSpans"};
}
}  // namespace

template <class Record>
BasicExportCore<Record>::BasicExportCore(ExportOptions opt, Resource resource) : opt_(opt), resource_(std::move(resource)) {
  opt_.max_batch_spans = std::max<size_t>(1, std::min(opt_.max_batch_spans, opt_.max_queue_spans));
}

template <class Record>
size_t BasicExportCore<Record>::offer(int64_t now_ms, std::vector<Record>& spans) {
  size_t dropped = 0;
  for (auto& s : spans) {
    if (queue_.size() >= opt_.max_queue_spans) {
      ++dropped;
      continue;
    }
    if (queue_.empty()) oldest_ms_ = now_ms;
    queue_.push_back(std::move(s));
    ++c_.queued;
  }
  spans.clear();
  c_.dropped_queue_full += dropped;
  return dropped;
}

template <class Record>
const ExportRequest* BasicExportCore<Record>::poll(int64_t now_ms, bool flushing) {
  if (in_flight_) return nullptr;
  if (current_) {  // a batch waiting for its retry
    if (now_ms < retry_at_ms_) return nullptr;  // flushing never cuts a Retry-After short
    ++current_->attempt;
    ++c_.retries;
    ++c_.requests;
    in_flight_ = true;
    return &*current_;
  }
  if (queue_.empty()) return nullptr;
  if (queue_.size() < opt_.max_batch_spans && now_ms - oldest_ms_ < opt_.batch_delay_ms && !flushing) return nullptr;
  size_t n = std::min(queue_.size(), opt_.max_batch_spans);
  std::vector<Record> batch(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
  if (!queue_.empty()) oldest_ms_ = now_ms;
  current_ = ExportRequest{encode_export_request(resource_, batch), n, 0};
  ++c_.requests;
  in_flight_ = true;
  return &*current_;
}

template <class Record>
std::string BasicExportCore<Record>::on_result(int64_t now_ms, int64_t now_unix_s, const ExportResult& r) {
  constexpr Names nm = names<Record>();
  if (!in_flight_ || !current_) return "";
  in_flight_ = false;
  size_t n = current_->spans;
  if (r.status >= 200 && r.status < 300) {
    auto [rejected, msg] = parse_partial_success(r.body, nm.rejected);
    rejected = std::min<uint64_t>(rejected, n);
    c_.rejected += rejected;
    c_.exported += n - rejected;
    current_.reset();
    if (rejected || !msg.empty())
      return fmt::format("{}: the collector rejected {} of {} {}: {}", nm.what, rejected, n, nm.records,
                         msg.empty() ? "(no message)" : msg);
    return "";
  }
  std::string what = r.status ? fmt::format("HTTP {}", r.status) : r.error;
  if (!retryable_status(r.status)) {
    c_.dropped_failed += n;
    current_.reset();
    return fmt::format("{}: dropped {} {}: {} is not retryable{}", nm.what, n, nm.records, what,
                       r.body.empty() ? "" : ": " + r.body.substr(0, 200));
  }
  if (current_->attempt >= opt_.max_retries) {
    c_.dropped_failed += n;
    uint32_t tries = current_->attempt + 1;
    current_.reset();
    return fmt::format("{}: dropped {} {} after {} attempts, the last: {}", nm.what, n, nm.records, tries, what);
  }
  int64_t wait = std::min(opt_.max_backoff_ms, opt_.initial_backoff_ms << std::min<uint32_t>(current_->attempt, 20));
  if (!r.retry_after.empty()) {
    if (auto ra = parse_retry_after_ms(r.retry_after, now_unix_s)) wait = std::min(*ra, opt_.max_retry_after_ms);
  }
  retry_at_ms_ = now_ms + wait;
  return "";
}

template <class Record>
int64_t BasicExportCore<Record>::next_wakeup_ms() const {
  if (in_flight_) return INT64_MAX;
  if (current_) return retry_at_ms_;
  if (queue_.empty()) return INT64_MAX;
  if (queue_.size() >= opt_.max_batch_spans) return 0;
  return oldest_ms_ + opt_.batch_delay_ms;
}

template class BasicExportCore<SpanData>;
template class BasicExportCore<LogData>;

}  // namespace keel::observe
