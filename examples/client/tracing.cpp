// tracing: keel calls made for a traced request join its trace (docs/sdk.md, "Tracing calls").
//   client_tracing [host] [port]      (default 127.0.0.1 6380)
#include <keel/client/client.h>
#include <keel/client/trace.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string host = argc > 1 ? argv[1] : "127.0.0.1";
  auto port = static_cast<uint16_t>(argc > 2 ? std::atoi(argv[2]) : 6380);
  // The traceparent of the request this program would be serving.
  const std::string incoming_traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::vector<keel::client::ClientSpan> recorded;  // stands for the application's own tracer

  // doc:begin client-tracing
  keel::ClientOptions o;
  o.seeds = {{host, port}};
  o.on_span = [&](const keel::client::ClientSpan& s) { recorded.push_back(s); };  // optional
  auto client = keel::Client::connect(o);
  if (!client) return 1;

  auto ctx = keel::client::TraceContext::parse(incoming_traceparent);
  if (!ctx) return 1;
  {
    keel::client::TraceScope scope(*ctx);    // this thread's calls, until the scope ends
    if (!client->set("order:42", "paid")) return 1;  // a ClientSpan "SET", child of ctx's span;
  }                                          // keel's span for the SET is its child
  // doc:end
  for (const auto& s : recorded)
    std::printf("span=%s trace=%s parent_is_incoming=%s error=%s\n", s.name.c_str(), s.context.trace_id_hex().c_str(),
                s.parent_span_id == ctx->span_id ? "yes" : "no", s.error ? "yes" : "no");
  return 0;
}
