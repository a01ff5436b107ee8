// The effectful half of OTLP/HTTP export: a thread of its own that takes records handed off by
// any thread (bounded: beyond the queue's bound they are dropped and counted, never waited
// for), applies the policy of export_core.h, and sends one POST at a time (JSON encoding) over
// Beast. The tracer exports spans through one, the log exporter (log_export.h) log records.
// Asio/Beast stay in exporter.cpp.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "observe/export_core.h"

namespace keel::observe {

struct ExporterOptions {
  HttpUrl endpoint;
  Resource resource;
  ExportOptions policy;
  int64_t timeout_ms = 10000;  // one export request, connect to last byte
};

struct ExporterStats {
  ExportCounters export_counters;
  uint64_t dropped_handoff = 0;  // records dropped before reaching the exporter's queue
  uint64_t queued = 0;           // waiting to be exported now
};

// The node's OTLP resource: service.name, service.instance.id and service.version (the last two
// when not empty), scope "keel" of that version.
Resource node_resource(const std::string& service_name, const std::string& instance_id, const std::string& version);

// Whether the calling thread is an exporter's: what it logs is not exported again (a failing
// collector would otherwise feed the log exporter its own complaints).
bool on_export_thread();

template <class Record>
class Exporter {
 public:
  explicit Exporter(ExporterOptions opt) : opt_(std::move(opt)) {}
  ~Exporter() { stop(); }
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  void start();
  // Sends what is queued (waiting at most timeout_ms past the last batch) and joins the thread.
  void stop();
  // Any thread: moves the records to the exporter (the vector is left empty); returns how many
  // were dropped because the hand-off was full.
  size_t hand_off(std::vector<Record>& records);
  // Any thread: one record; false when it was dropped.
  bool hand_off(Record record);
  ExporterStats stats() const;

 private:
  void run();

  ExporterOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Record> inbox_;  // guarded by mu_
  bool stop_ = false;          // guarded by mu_
  std::thread thread_;
  std::atomic<uint64_t> dropped_handoff_{0};
  ExportCounters published_;      // guarded by mu_: the policy's counters as of its last round
  uint64_t published_queue_ = 0;  // guarded by mu_
};

extern template class Exporter<SpanData>;
extern template class Exporter<LogData>;

}  // namespace keel::observe
