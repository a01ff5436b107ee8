#include "frontends/resp/cache_admin.h"

#include <fmt/format.h>

#include "frontends/resp/family_util.h"
#include "services/cache/service.h"

namespace keel::resp {

namespace {

void reply_error(Reply& r, const Error& e) { reply_metadata_error(r, e, "check with CACHE.INFO"); }

void reply_info(Reply& r, const cache::Info& info) {
  const auto& d = info.active.def;
  auto opt_text = [&](bool set, const std::string& v) { set ? r.bulk(v) : r.null(); };
  r.map(15);
  r.bulk("name");
  r.bulk(d.name);
  r.bulk("replicas");
  r.integer(d.replicas);
  r.bulk("writeQuorum");
  r.integer(d.write_quorum);
  r.bulk("defaultTtl");
  opt_text(d.default_ttl_ms != 0, cache::format_duration(d.default_ttl_ms));
  r.bulk("eviction");
  r.bulk(cache::eviction_name(d.eviction));
  r.bulk("maxMemory");
  opt_text(d.max_memory_bytes != 0, cache::format_size(d.max_memory_bytes));
  r.bulk("maxEntries");
  d.max_entries ? r.integer(static_cast<int64_t>(d.max_entries)) : r.null();
  r.bulk("readFrom");
  r.bulk(cache::read_from_name(d.read_from));
  r.bulk("engine");
  r.bulk(d.engine ? cache::engine_name(*d.engine) : "");
  r.bulk("generation");
  r.integer(static_cast<int64_t>(info.active.generation));
  r.bulk("entries");
  r.integer(static_cast<int64_t>(info.entries));
  r.bulk("bytes");
  r.integer(static_cast<int64_t>(info.bytes));
  r.bulk("partitions");
  r.integer(info.partitions);
  r.bulk("partitionMaxEntries");
  d.max_entries
      ? r.integer(static_cast<int64_t>(cache::per_partition(d.max_entries, info.partitions)))
      : r.null();
  r.bulk("partitionMaxMemory");
  d.max_memory_bytes
      ? r.integer(static_cast<int64_t>(cache::per_partition(d.max_memory_bytes, info.partitions)))
      : r.null();
}

}  // namespace

boost::asio::awaitable<void> execute_cache_admin(cache::Service& caches, const CommandSpec& spec,
                                                 Args a, Reply& r, std::optional<observe::TraceParent> trace) {
  std::string_view name = spec.name;
  if (name == "cache.create") {
    auto d = cache::parse_options(a[1], a.subspan(2));
    if (!d) co_return r.error("ERR " + d.error().message);
    auto res = co_await caches.create(std::move(*d), std::move(trace));
    if (!res) co_return reply_error(r, res.error());
    co_return r.ok();
  }
  if (name == "cache.list") {
    auto res = co_await caches.list();
    if (!res) co_return reply_error(r, res.error());
    r.array(res->size());
    for (auto& c : *res) r.bulk(c.def.name);
    co_return;
  }
  std::string cname(a[1]);
  if (cname == cache::kDefaultCache)
    co_return r.error(
        fmt::format("ERR '{}' is the plain keyspace, not a named cache; {} does not apply to it "
                    "(use INFO keyspace, FLUSHALL)",
                    cname, spec.name));
  if (name == "cache.info") {
    auto res = co_await caches.info(cname);
    if (!res) co_return reply_error(r, res.error());
    co_return reply_info(r, *res);
  }
  if (name == "cache.drop" || name == "cache.clear") {
    // Two statements, not a conditional expression: GCC 12 destroys a co_await's result in
    // `?:` twice.
    Result<uint64_t> res = uint64_t{0};
    if (name == "cache.drop") res = co_await caches.drop(cname);
    else res = co_await caches.clear(cname);
    if (!res) co_return reply_error(r, res.error());
    co_return r.integer(static_cast<int64_t>(*res));
  }
  r.error(fmt::format("ERR unknown cache command '{}'", spec.name));
}

}  // namespace keel::resp
