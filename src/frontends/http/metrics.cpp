#include "frontends/http/metrics.h"

#include <limits>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "frontends/resp/command.h"

namespace keel::http {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily single(std::string name, std::string help, MetricType type, double value) {
  MetricFamily f{std::move(name), std::move(help), type, {}};
  ClientMetric m;
  if (type == MetricType::Counter) m.counter.value = value;
  else m.gauge.value = value;
  f.metric.push_back(m);
  return f;
}

}  // namespace

std::string render_metrics(const resp::Snapshot& s, uint64_t rss_bytes, uint64_t http_requests) {
  std::vector<MetricFamily> fams;
  MetricFamily calls{"keel_commands_total", "RESP commands executed, by command", MetricType::Counter, {}};
  MetricFamily failed{"keel_command_errors_total", "RESP commands answered with an error, by command",
                      MetricType::Counter, {}};
  MetricFamily lat{"keel_command_duration_seconds", "RESP command execution time, by command",
                   MetricType::Histogram, {}};
  auto& cmds = resp::all_commands();
  for (size_t i = 0; i < s.stats.commands.size() && i < cmds.size(); ++i) {
    auto& c = s.stats.commands[i];
    if (!c.calls) continue;
    prometheus::ClientMetric::Label label{"cmd", std::string(cmds[i]->name)};
    ClientMetric m;
    m.label = {label};
    m.counter.value = static_cast<double>(c.calls);
    calls.metric.push_back(m);
    m.counter.value = static_cast<double>(c.failed);
    failed.metric.push_back(m);
    ClientMetric h;
    h.label = {label};
    h.histogram.sample_count = c.calls;
    h.histogram.sample_sum = static_cast<double>(c.usec_sum) / 1e6;
    uint64_t cum = 0;
    for (size_t b = 0; b < observe::kLatencyBoundsUs.size(); ++b) {
      cum += c.buckets[b];
      h.histogram.bucket.push_back(prometheus::ClientMetric::Bucket{cum, observe::kLatencyBoundsUs[b] / 1e6});
    }
    cum += c.buckets.back();
    h.histogram.bucket.push_back(prometheus::ClientMetric::Bucket{cum, std::numeric_limits<double>::infinity()});
    lat.metric.push_back(h);
  }
  fams.push_back(std::move(calls));
  fams.push_back(std::move(failed));
  fams.push_back(std::move(lat));
  auto& st = s.stats;
  auto& e = s.engine;
  fams.push_back(single("keel_connected_clients", "Open RESP client connections", MetricType::Gauge, static_cast<double>(st.connections_current)));
  fams.push_back(single("keel_connections_total", "RESP connections accepted", MetricType::Counter, static_cast<double>(st.connections_total)));
  fams.push_back(single("keel_rejected_connections_total", "RESP connections refused at max_clients", MetricType::Counter, static_cast<double>(st.rejected_connections)));
  fams.push_back(single("keel_protocol_errors_total", "RESP connections closed for a protocol error", MetricType::Counter, static_cast<double>(st.protocol_errors)));
  fams.push_back(single("keel_tls_handshake_failures_total", "RESP over TLS connections whose handshake failed (no or a bad client certificate, plaintext, timeout)", MetricType::Counter, static_cast<double>(st.tls_handshake_failures)));
  fams.push_back(single("keel_net_input_bytes_total", "Bytes read from RESP clients", MetricType::Counter, static_cast<double>(st.net_input_bytes)));
  fams.push_back(single("keel_net_output_bytes_total", "Bytes written to RESP clients", MetricType::Counter, static_cast<double>(st.net_output_bytes)));
  fams.push_back(single("keel_cross_shard_hops_total", "Commands executed on a shard other than their connection's", MetricType::Counter, static_cast<double>(st.cross_shard_hops)));
  fams.push_back(single("keel_pubsub_messages_delivered_total", "Pub/sub messages delivered to subscribers on this node (one per receiving subscription)", MetricType::Counter, static_cast<double>(st.pubsub_messages_delivered)));
  fams.push_back(single("keel_client_output_buffer_limit_disconnections_total", "Subscribers disconnected for exceeding the pubsub output-buffer limit (client-output-buffer-limit)", MetricType::Counter, static_cast<double>(st.client_output_buffer_limit_disconnections)));
  fams.push_back(single("keel_pubsub_fanout_dropped_total", "Cluster pub/sub messages not sent to a peer because its queue was full or it was unreachable", MetricType::Counter, static_cast<double>(st.pubsub_fanout_dropped)));
  fams.push_back(single("keel_pubsub_clients", "Connections and SSE streams in subscribed mode", MetricType::Gauge, static_cast<double>(st.pubsub_clients)));
  fams.push_back(single("keel_keys", "Keys stored", MetricType::Gauge, static_cast<double>(e.keys)));
  fams.push_back(single("keel_keys_with_expiry", "Keys with a TTL", MetricType::Gauge, static_cast<double>(e.keys_with_expiry)));
  fams.push_back(single("keel_memory_used_bytes", "Bytes accounted by the storage engines", MetricType::Gauge, static_cast<double>(e.used_memory_bytes)));
  fams.push_back(single("keel_process_resident_memory_bytes", "Resident set size of the process", MetricType::Gauge, static_cast<double>(rss_bytes)));
  fams.push_back(single("keel_expired_keys_total", "Keys removed because their TTL passed", MetricType::Counter, static_cast<double>(e.expired_keys_total)));
  fams.push_back(single("keel_evicted_keys_total", "Keys evicted to stay under maxmemory", MetricType::Counter, static_cast<double>(e.evicted_keys_total)));
  fams.push_back(single("keel_disk_bytes", "Persistent engine size on disk", MetricType::Gauge, static_cast<double>(e.disk_bytes)));
  fams.push_back(single("keel_wal_syncs_total", "Write-ahead log fsyncs", MetricType::Counter, static_cast<double>(e.syncs_total)));
  {
    // The memory engine has no disk: always writable, never an error.
    const storage::DiskState d = s.disk.value_or(storage::DiskState{});
    fams.push_back(single("keel_storage_writable", "1 while the persistent engine takes writes, 0 while it refuses them (disk full or failing; see INFO persistence)", MetricType::Gauge, d.writable ? 1.0 : 0.0));
    fams.push_back(single("keel_storage_write_errors_total", "Failed writes, flushes and syncs of the persistent engine's database", MetricType::Counter, static_cast<double>(d.write_errors_total)));
    fams.push_back(single("keel_storage_refused_writes_total", "Writes refused (MISCONF / 507) while the disk was full or failing", MetricType::Counter, static_cast<double>(d.refused_writes_total)));
  }
  fams.push_back(single("keel_http_requests_total", "HTTP requests served", MetricType::Counter, static_cast<double>(http_requests)));
  prometheus::TextSerializer ser;
  return ser.Serialize(fams);
}

}  // namespace keel::http
