// The admin page served at /ui/: one self-contained HTML document (no build step, no CDN, works
// offline) that reads the node's own JSON and Prometheus endpoints and refreshes in place.
#include "frontends/http/ui_page.h"

namespace keel::http {

std::string_view ui_page() {
  return R"KEELUI(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keel admin</title>
<style>
  :root { --fg: #1d232a; --muted: #5b6570; --line: #d8dde3; --bg: #f6f7f9; --ok: #17663a; --warn: #8a5a00; --bad: #a3202a; --accent: #1f5fa8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px 24px; padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 20px; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 24px 32px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { margin: 0 0 8px; font-size: 16px; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  caption { text-align: left; color: var(--muted); font-size: 13px; padding-bottom: 4px; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); }
  th { font-weight: 600; color: var(--muted); font-size: 13px; }
  td.num, th.num { text-align: right; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; border: 1px solid currentColor; }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
  .muted { color: var(--muted); }
  .figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 8px; margin: 0; }
  .figures div { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
  .figures dt { color: var(--muted); font-size: 13px; }
  .figures dd { margin: 0; font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
  button { font: inherit; padding: 4px 12px; border: 1px solid var(--accent); color: var(--accent); background: #fff; border-radius: 6px; cursor: pointer; }
  button:focus-visible { outline: 3px solid #9cc3f0; outline-offset: 1px; }
  #error { color: var(--bad); font-weight: 600; }
  progress { width: 220px; height: 12px; vertical-align: middle; }
  a { color: var(--accent); }
  a:focus-visible, h2:focus-visible { outline: 3px solid #9cc3f0; outline-offset: 1px; }
  .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
  #trace-spans td, #trace-spans th { vertical-align: top; }
  #trace-spans tr > *:not(:last-child) { white-space: nowrap; }
  .wf { position: relative; width: 240px; height: 12px; background: var(--bg); border: 1px solid var(--line); border-radius: 2px; }
  .wf > div { position: absolute; top: 1px; bottom: 1px; min-width: 2px; background: var(--accent); border-radius: 1px; }
  .wf > div.bad { background: var(--bad); }
  .details { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
</style>
</head>
<body>
<header>
  <h1>keel <span id="who" class="muted"></span></h1>
  <span>cluster <strong id="cluster">…</strong></span>
  <span>health <span id="health" class="badge">…</span></span>
  <span>quorum <span id="quorum" class="badge">…</span></span>
  <span class="muted" id="updated" aria-live="polite"></span>
  <button id="pause" type="button" aria-pressed="false">Pause updates</button>
  <span id="error" role="alert"></span>
</header>
<main>
  <section aria-labelledby="h-figures" class="wide">
    <h2 id="h-figures">This node, live</h2>
    <dl class="figures" aria-live="polite">
      <div><dt>commands/s</dt><dd id="f-ops">–</dd></div>
      <div><dt>errors/s</dt><dd id="f-errors">–</dd></div>
      <div><dt>latency p99</dt><dd id="f-p99">–</dd></div>
      <div><dt>clients</dt><dd id="f-clients">–</dd></div>
      <div><dt>keys</dt><dd id="f-keys">–</dd></div>
      <div><dt>data memory</dt><dd id="f-mem">–</dd></div>
      <div><dt>process memory</dt><dd id="f-rss">–</dd></div>
      <div><dt>disk free</dt><dd id="f-disk">–</dd></div>
    </dl>
  </section>
  <section aria-labelledby="h-members">
    <h2 id="h-members">Members</h2>
    <table id="members">
      <caption>As this node's failure detector sees them, with the partitions each holds</caption>
      <thead><tr><th scope="col">node</th><th scope="col">peer address</th><th scope="col">state</th><th scope="col" class="num">last heard</th><th scope="col" class="num">primaries</th><th scope="col" class="num">replicas</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section aria-labelledby="h-partitions">
    <h2 id="h-partitions">Partitions</h2>
    <table id="partitions">
      <caption>The partition map this node routes by</caption>
      <tbody></tbody>
    </table>
    <div id="moves"></div>
  </section>
  <section aria-labelledby="h-caches">
    <h2 id="h-caches">Named caches</h2>
    <table id="caches">
      <caption>Definitions kept in cluster metadata</caption>
      <thead><tr><th scope="col">name</th><th scope="col" class="num">replicas</th><th scope="col" class="num">write quorum</th><th scope="col">default TTL</th><th scope="col">eviction</th><th scope="col">reads from</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section aria-labelledby="h-routes">
    <h2 id="h-routes">Gateway routes</h2>
    <table id="routes">
      <caption>Self-registered routes and their live instances</caption>
      <thead><tr><th scope="col">method</th><th scope="col">path</th><th scope="col">service</th><th scope="col" class="num">instances</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section aria-labelledby="h-slow" class="wide">
    <h2 id="h-slow">Slow requests</h2>
    <table id="slow">
      <caption id="slow-caption">This node's slow log (SLOWLOG), newest first</caption>
      <thead><tr><th scope="col">ended</th><th scope="col" class="num">took</th><th scope="col">door</th><th scope="col">request</th><th scope="col">client</th><th scope="col">trace</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section aria-labelledby="h-trace" class="wide" id="trace-section" hidden>
    <h2 id="h-trace" tabindex="-1">Trace</h2>
    <p><a href="#" id="trace-close">Close this trace</a></p>
    <table id="trace-spans">
      <caption id="trace-caption"></caption>
      <thead><tr><th scope="col">span</th><th scope="col">node</th><th scope="col" class="num">starts at</th><th scope="col" class="num">took</th><th scope="col">status</th><th scope="col">timeline</th><th scope="col">details</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let paused = false, last = null;

function text(el, s, cls) { el.textContent = s; if (cls !== undefined) el.className = cls; }
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement(c.head ? "th" : "td");
    if (c.head) td.scope = "row";
    if (c.num) td.className = "num";
    if (c.node) td.appendChild(c.node); else td.textContent = c.v === undefined || c.v === null ? "–" : String(c.v);
    tr.appendChild(td);
  }
  return tr;
}
function fill(id, rows, empty) {
  const tb = $(id).tBodies[0];
  tb.replaceChildren(...rows);
  if (!rows.length) {
    const r = row([{v: empty}]);
    const head = $(id).tHead;
    if (head) r.cells[0].colSpan = head.rows[0].cells.length;
    tb.appendChild(r);
  }
}
function badge(s, good) { const b = document.createElement("span"); b.className = "badge " + (good ? "ok" : (s === "suspect" ? "warn" : "bad")); b.textContent = s; return b; }
function bytes(n) {
  if (n === undefined || isNaN(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
}
function micros(us) { return us < 1000 ? us + " µs" : (us < 1e6 ? (us / 1000).toFixed(1) + " ms" : (us / 1e6).toFixed(2) + " s"); }
function num(n) { return n === undefined || isNaN(n) ? "–" : Math.round(n).toLocaleString("en-US"); }

// The trace open below the slow log (#trace=<32 hex> in the address: a link can be shared), and
// what /v1/traces/{id} answered for it.
let openTrace = null, traceBody = null;
function traceFromHash() {
  const m = location.hash.match(/^#trace=([0-9a-f]{32})$/);
  return m ? m[1] : null;
}
function traceLink(id) {
  const a = document.createElement("a");
  a.href = "#trace=" + id;
  a.className = "mono";
  a.dataset.trace = id;
  a.textContent = id;
  a.setAttribute("aria-controls", "trace-section");
  a.setAttribute("aria-label", "show the spans of trace " + id);
  return a;
}
async function loadTrace(id) {
  try {
    const r = await fetch("/v1/traces/" + id, {cache: "no-store"});
    const body = await r.json().catch(() => null);
    traceBody = r.ok ? body : {error: body && body.error ? body.error.message : "HTTP " + r.status};
  } catch (e) {
    traceBody = {error: "cannot reach the node: " + e.message};
  }
}
const SHOWN = /^(keel\.|error\.type|http\.route|http\.response\.status_code|db\.operation\.name)/;
function renderTrace() {
  const sec = $("trace-section");
  sec.hidden = !openTrace;
  if (!openTrace) return;
  text($("h-trace"), "Trace " + openTrace);
  if (!traceBody || traceBody.error) {
    text($("trace-caption"), "");
    fill("trace-spans", [], traceBody ? traceBody.error : "loading…");
    return;
  }
  const spans = traceBody.spans || [];
  text($("trace-caption"), spans.length + " spans node " + traceBody.node + " recorded for this trace, as a tree (a child under " +
       "its parent). Only this node's spans: a command forwarded to another node, and the copies a write " +
       "replicated, have their spans on those nodes and in the trace backend.");
  const byId = new Map(spans.map(s => [s.span_id, s]));
  const kids = new Map(), roots = [];
  for (const s of spans) {
    if (s.parent_span_id && byId.has(s.parent_span_id)) {
      if (!kids.has(s.parent_span_id)) kids.set(s.parent_span_id, []);
      kids.get(s.parent_span_id).push(s);
    } else roots.push(s);
  }
  const t0 = Math.min(...spans.map(s => s.start_unix_us));
  const t1 = Math.max(...spans.map(s => s.start_unix_us + s.duration_us));
  const width = Math.max(1, t1 - t0);
  const rows = [];
  const byStart = (a, b) => a.start_unix_us - b.start_unix_us;
  const walk = (s, depth) => {
    const name = document.createElement("span");
    name.style.paddingLeft = (depth * 20) + "px";
    name.textContent = (depth ? "└ " : "") + s.name;
    const bad = s.status === "error";
    const wf = document.createElement("div");
    wf.className = "wf";
    wf.setAttribute("aria-hidden", "true");
    const bar = document.createElement("div");
    if (bad) bar.className = "bad";
    bar.style.left = ((s.start_unix_us - t0) / width * 100) + "%";
    bar.style.width = (s.duration_us / width * 100) + "%";
    wf.appendChild(bar);
    const details = document.createElement("span");
    details.className = "details";
    const shown = Object.entries(s.attributes || {}).filter(([k]) => SHOWN.test(k)).map(([k, v]) => k + "=" + v);
    if (s.attributes && s.attributes["keel.forwarded_to"])
      shown.unshift("continued on node " + s.attributes["keel.forwarded_to"] + " (its spans are there)");
    for (const e of s.events || []) shown.push("event " + e.name + " at +" + micros(e.unix_us - t0));
    details.textContent = shown.join(" · ");
    rows.push(row([{node: name, head: true}, {v: "node " + s.node}, {v: "+" + micros(s.start_unix_us - t0), num: true},
                   {v: micros(s.duration_us), num: true},
                   {node: badge(bad ? "error" + (s.status_message ? ": " + s.status_message : "") : "ok", !bad)},
                   {node: wf}, {node: details}]));
    for (const k of (kids.get(s.span_id) || []).sort(byStart)) walk(k, depth + 1);
  };
  for (const r of roots.sort(byStart)) walk(r, 0);
  fill("trace-spans", rows, "no spans");
}
async function showTrace(focus) {
  openTrace = traceFromHash();
  traceBody = null;
  renderTrace();
  if (!openTrace) return;
  await loadTrace(openTrace);
  renderTrace();
  if (focus) $("h-trace").focus();
}
window.addEventListener("hashchange", () => showTrace(true));

// Prometheus text: {name: [{labels, value}]}.
function parseMetrics(body) {
  const out = {};
  for (const line of body.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const kv of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    (out[m[1]] = out[m[1]] || []).push({labels, value: parseFloat(m[4])});
  }
  return out;
}
const sum = (m, name, f) => (m[name] || []).filter(s => !f || f(s.labels)).reduce((a, s) => a + s.value, 0);

function p99(prev, cur) {
  // From the change of the histogram's cumulative buckets since the last poll, all commands:
  // the smallest bucket bound that 99% of the commands run meanwhile stayed under.
  const per = new Map();
  const add = (series, sign) => { for (const s of series || []) per.set(s.labels.le, (per.get(s.labels.le) || 0) + sign * s.value); };
  add(cur.keel_command_duration_seconds_bucket, 1);
  add(prev.keel_command_duration_seconds_bucket, -1);
  const total = per.get("+Inf") || 0;
  if (total <= 0) return null;
  const bounds = [...per.keys()].filter(l => l !== "+Inf").sort((a, b) => Number(a) - Number(b));
  for (const le of bounds) if (per.get(le) >= 0.99 * total) return Number(le);
  return Infinity;
}

async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

async function refresh() {
  if (paused) return;
  try {
    const [st, metricsText, caches, routes, slow] = await Promise.all([
      getJSON("/v1/cluster/status"),
      fetch("/metrics", {cache: "no-store"}).then(r => r.text()),
      getJSON("/v1/caches").catch(() => ({caches: []})),
      getJSON("/v1/routes").catch(() => ({routes: [], instances: []})),
      getJSON("/v1/slowlog?count=20").catch(() => null),
    ]);
    const now = Date.now();
    text($("who"), st.node_id ? "· node " + st.node_id : "");
    text($("cluster"), st.cluster_id || "–");
    text($("health"), st.health || "–", "badge " + (st.health === "ok" ? "ok" : "bad"));
    text($("quorum"), st.quorum ? "yes" : "no", "badge " + (st.quorum ? "ok" : "bad"));

    const parts = st.partitions || {};
    const held = {};
    for (const n of parts.nodes || []) held[n.id] = n;
    fill("members", (st.members || []).map(m => row([
      {v: m.id + (m.self ? " (this node)" : ""), head: true}, {v: m.address},
      {node: badge(m.status, m.status === "alive")},
      {v: m.self ? "–" : m.silence_ms + " ms", num: true},
      {v: held[m.id] ? held[m.id].primaries : 0, num: true},
      {v: held[m.id] ? held[m.id].replicas : 0, num: true}])), "no members: this node is not in a cluster");

    const rb = parts.rebalance || {};
    fill("partitions", parts.count ? [
      row([{v: "partitions", head: true}, {v: parts.count, num: true}]),
      row([{v: "copies of each", head: true}, {v: parts.copies, num: true}]),
      row([{v: "write quorum", head: true}, {v: parts.write_quorum, num: true}]),
      row([{v: "under-replicated", head: true}, {node: badge(String(parts.under_replicated), !parts.under_replicated), num: true}]),
      row([{v: "map version", head: true}, {v: parts.map_version, num: true}]),
      row([{v: "failovers run here", head: true}, {v: parts.failovers, num: true}]),
      row([{v: "commands forwarded", head: true}, {v: num(parts.forwarded), num: true}]),
    ] : [], "no partition map yet");
    const moves = $("moves");
    moves.replaceChildren();
    if (rb.remaining) {
      const p = document.createElement("p");
      const pr = document.createElement("progress");
      pr.max = rb.total || rb.remaining; pr.value = (rb.total || rb.remaining) - rb.remaining;
      pr.setAttribute("aria-label", "rebalancing progress");
      p.append("Rebalancing: " + rb.remaining + " of " + (rb.total || rb.remaining) + " partitions left ", pr,
               rb.eta_s !== null && rb.eta_s !== undefined ? " about " + rb.eta_s + " s" : "");
      moves.appendChild(p);
    } else if (parts.under_replicated) {
      const p = document.createElement("p"); p.className = "warn";
      p.textContent = parts.under_replicated + " partitions have fewer than " + parts.copies +
          " copies: the lost copies are re-created on the live members (if there are enough).";
      moves.appendChild(p);
    } else if (parts.count) {
      const p = document.createElement("p"); p.className = "muted";
      p.textContent = "Every partition is where placement puts it.";
      moves.appendChild(p);
    }

    fill("caches", (caches.caches || []).map(c => row([{v: c.name, head: true}, {v: c.replicas, num: true},
      {v: c.writeQuorum, num: true}, {v: c.defaultTtl || "none"}, {v: c.eviction}, {v: c.readFrom}])), "no named caches");
    const inst = {};
    for (const i of routes.instances || []) inst[i.service] = (inst[i.service] || 0) + 1;
    fill("routes", (routes.routes || []).map(r => row([{v: r.method || "any", head: true}, {v: r.path},
      {v: r.service}, {v: inst[r.service] || 0, num: true}])), "no routes registered");

    if (slow) {
      text($("slow-caption"), "This node's slow log (SLOWLOG): requests of at least " + micros(slow.slower_than_us) +
           ", newest first; " + slow.len + " kept of at most " + slow.max_len);
      // Rebuilding the rows must not take the keyboard focus away from a trace link.
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.trace : null;
      fill("slow", (slow.entries || []).map(e => row([
        {v: new Date(e.unix_ms).toLocaleTimeString("en-GB"), head: true}, {v: micros(e.duration_us), num: true},
        {v: e.door}, {v: e.args.join(" ")}, {v: e.client + (e.client_name ? " (" + e.client_name + ")" : "")},
        e.trace_id ? {node: traceLink(e.trace_id)} : {v: "not traced"}])), slow.slower_than_us < 0 ? "the slow log is off (slowlog-log-slower-than < 0)" : "no slow requests");
      if (focused) {
        const again = $("slow").querySelector('a[data-trace="' + focused + '"]');
        if (again) again.focus();
      }
    } else {
      fill("slow", [], "the slow log is not readable by this user");
    }

    if (openTrace) {  // spans recorded since (a write's quorum wait) show up
      await loadTrace(openTrace);
      renderTrace();
    }

    const m = parseMetrics(metricsText);
    if (last) {
      const dt = (now - last.t) / 1000;
      text($("f-ops"), num((sum(m, "keel_commands_total") - sum(last.m, "keel_commands_total")) / dt));
      text($("f-errors"), num((sum(m, "keel_command_errors_total") - sum(last.m, "keel_command_errors_total")) / dt));
      const q = p99(last.m, m);
      text($("f-p99"), q === null ? "idle" : (q === Infinity ? "> 1 s" : "≤ " + (q < 0.001 ? (q * 1e6).toFixed(0) + " µs" : (q * 1000).toFixed(q < 0.01 ? 1 : 0) + " ms")));
    }
    text($("f-clients"), num(sum(m, "keel_connected_clients")));
    text($("f-keys"), num(sum(m, "keel_keys")));
    text($("f-mem"), bytes(sum(m, "keel_memory_used_bytes")));
    text($("f-rss"), bytes(sum(m, "keel_process_resident_memory_bytes")));
    text($("f-disk"), m.keel_disk_free_bytes ? bytes(sum(m, "keel_disk_free_bytes")) : "–");
    last = {t: now, m};
    text($("updated"), "updated " + new Date(now).toLocaleTimeString("en-GB"));
    text($("error"), "");
    document.body.dataset.loaded = "yes";
  } catch (e) {
    text($("error"), "cannot reach the node: " + e.message);
  }
}
$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").setAttribute("aria-pressed", String(paused));
  $("pause").textContent = paused ? "Resume updates" : "Pause updates";
  if (!paused) refresh();
});
// A link to a trace (/ui/#trace=<id>) opens it, scrolled to, once the page is filled in.
showTrace(false).then(refresh).then(() => { if (openTrace) $("h-trace").focus(); });
setInterval(refresh, 2000);
</script>
</body>
</html>
)KEELUI";
}

}  // namespace keel::http
