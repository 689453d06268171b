/* Masa ledger dashboard: reads the read API's JSON (same origin), draws SVG charts itself (no
 * library, no CDN) and refreshes whenever /v1/stream says the read models moved. */
"use strict";

const STATUS_COLORS = {
  staked: "#16a34a", unstaking: "#d97706", unstaked: "#94a3b8", slashed: "#dc2626",
  never_staked: "#cbd5e1",
};
const PALETTE = ["#4f46e5", "#0ea5e9", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#0d9488",
  "#ea580c", "#65a30d", "#e11d48"];
const FEE_PARTS = [["worker_part", "workers", "#4f46e5"], ["data_part", "data", "#0ea5e9"],
  ["protocol_part", "protocol", "#d97706"]];
const WEI = 10n ** 18n;
const HEATMAP_NODES = 40;

const state = { asOf: "", updates: 0, loading: null, again: false, epochs: [], data: null };
const $ = (id) => document.getElementById(id);
/* charts are drawn at their box's pixel width, so text stays 11 px at every screen size */
const widthOf = (id) => Math.max(260, Math.floor($(id).clientWidth || 560));

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" })[c]);
}
function short(address) {
  return address && address.length > 12 ? `${address.slice(0, 6)}…${address.slice(-4)}` : String(address);
}
function tokens(wei) {
  /* wei (decimal string) as a MASA figure, two decimals, thousands separated */
  const value = BigInt(wei || "0");
  const whole = value / WEI;
  const cents = (value % WEI) * 100n / WEI;
  return `${whole.toLocaleString("en-US")}.${cents.toString().padStart(2, "0")}`;
}
function tokenNumber(wei) { return Number(BigInt(wei || "0") / 10n ** 14n) / 10_000; }
function compact(n) {
  if (n === null || n === undefined) return "–";
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(1);
}
function ms(v) { return v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"); }
function duration(v) { if (!v) return "0"; return v >= 1000 ? `${(v / 1000).toFixed(v % 1000 ? 1 : 0)} s` : `${Math.round(v)} ms`; }
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}
function empty(text) { return `<p class="empty">${esc(text)}</p>`; }
function legend(items) {
  return `<div class="legend">${items.map(([label, color]) =>
    `<span><i style="background:${color}"></i>${esc(label)}</span>`).join("")}</div>`;
}

async function get(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}
async function getAll(path, maxPages = 10) {
  /* follow next_cursor (bounded) and return every item */
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const sep = path.includes("?") ? "&" : "?";
    const body = await get(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return items;
}

/* --- charts --------------------------------------------------------------------------- */

function columns(values, { width = 560, height = 190, color = "#4f46e5", labels = [], unit = "" } = {}) {
  /* vertical bars, one per value, with a y axis and some x labels */
  const left = 36, bottom = 22, top = 8;
  const max = niceMax(Math.max(0, ...values.map((v) => v.value)));
  const plotW = width - left - 6, plotH = height - top - bottom;
  const step = plotW / Math.max(1, values.length);
  const bar = Math.max(1, step * 0.72);
  let svg = `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img">`;
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    svg += `<line x1="${left}" x2="${width - 6}" y1="${y}" y2="${y}" stroke="#e2e8f0"/>`;
    svg += `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${compact(max * f)}${unit}</text>`;
  }
  values.forEach((v, i) => {
    const h = plotH * (v.value / max);
    const x = left + i * step + (step - bar) / 2;
    svg += `<rect x="${x.toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${bar.toFixed(1)}" height="${h.toFixed(1)}" rx="2" fill="${v.color || color}"><title>${esc(v.title || `${v.label}: ${v.value}`)}</title></rect>`;
  });
  labels.forEach(([i, text]) => {
    const x = left + i * step + step / 2;
    svg += `<text x="${x.toFixed(1)}" y="${height - 6}" text-anchor="middle">${esc(text)}</text>`;
  });
  return `${svg}</svg>`;
}

function stacked(groups, keys, { width = 560, height = 200, format = compact } = {}) {
  /* one stacked column per group; keys: [[key, label, color]] */
  const left = 48, bottom = 22, top = 8;
  const totals = groups.map((g) => keys.reduce((s, [k]) => s + (g.parts[k] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const plotW = width - left - 6, plotH = height - top - bottom;
  const step = plotW / Math.max(1, groups.length);
  const bar = Math.min(56, Math.max(2, step * 0.6));
  let svg = `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img">`;
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    svg += `<line x1="${left}" x2="${width - 6}" y1="${y}" y2="${y}" stroke="#e2e8f0"/>`;
    svg += `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${format(max * f)}</text>`;
  }
  const every = Math.max(1, Math.ceil(groups.length / 12));
  groups.forEach((g, i) => {
    const x = left + i * step + (step - bar) / 2;
    let y = top + plotH;
    for (const [k, label, color] of keys) {
      const h = plotH * ((g.parts[k] || 0) / max);
      if (h <= 0) continue;
      y -= h;
      svg += `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${bar.toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>${esc(`${g.label} · ${label}: ${format(g.parts[k])}`)}</title></rect>`;
    }
    if (i % every === 0) {
      svg += `<text x="${(x + bar / 2).toFixed(1)}" y="${height - 6}" text-anchor="middle">${esc(g.label)}</text>`;
    }
  });
  return `${svg}</svg>`;
}

function statusBars(byStatus, byRole, width) {
  const entries = Object.entries(byStatus).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return empty("No nodes yet");
  const roles = Object.entries(byRole).map(([r, n]) => [r === "None" ? "no role" : r, n])
    .sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((s, [, n]) => s + n, 0);
  const row = 28, height = 30 + (entries.length + roles.length) * row + 34;
  let svg = `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img">`;
  let x = 0;
  for (const [status, n] of entries) {
    const w = (width * n) / total;
    svg += `<rect x="${x.toFixed(1)}" y="0" width="${w.toFixed(1)}" height="12" fill="${STATUS_COLORS[status] || "#64748b"}"><title>${esc(status)}: ${n}</title></rect>`;
    x += w;
  }
  const bars = (list, y0, color) => list.forEach(([name, n], i) => {
    const y = y0 + i * row;
    const w = Math.max(2, ((width - 190) * n) / total);
    svg += `<text class="label" x="0" y="${y + 13}">${esc(name.replace("_", " "))}</text>`;
    svg += `<rect x="110" y="${y}" width="${w.toFixed(1)}" height="18" rx="3" fill="${color(name)}"/>`;
    svg += `<text x="${(116 + w).toFixed(1)}" y="${y + 13}">${n} · ${Math.round((100 * n) / total)}%</text>`;
  });
  svg += `<text x="0" y="28">by status</text>`;
  bars(entries, 36, (name) => STATUS_COLORS[name] || "#64748b");
  const y1 = 36 + entries.length * row + 18;
  svg += `<text x="0" y="${y1 - 8}">by role</text>`;
  bars(roles, y1, (name) => (name === "worker" ? "#4f46e5" : name === "oracle" ? "#0ea5e9" : "#cbd5e1"));
  return `${svg}</svg>`;
}

function heatmap(rows) {
  /* node x epoch cells coloured by uptime ppm (red 0 → green 1,000,000) */
  if (!rows.length) return empty("No uptime yet: it needs the governor's parameters and heartbeats");
  const epochs = [...new Set(rows.map((r) => r.epoch))].sort((a, b) => a - b);
  const nodes = [...new Set(rows.map((r) => r.node))].sort().slice(0, HEATMAP_NODES);
  const cell = new Map(rows.map((r) => [`${r.node}:${r.epoch}`, r]));
  const left = 104, top = 20, ch = 22;
  const cw = Math.max(30, Math.min(110, (widthOf("chart-uptime") - left - 4) / Math.max(1, epochs.length)));
  const width = left + cw * epochs.length + 4, height = top + ch * nodes.length + 4;
  let svg = `<svg class="fixed" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img">`;
  epochs.forEach((e, j) => {
    svg += `<text x="${left + j * cw + cw / 2}" y="13" text-anchor="middle">e${e}</text>`;
  });
  nodes.forEach((node, i) => {
    const y = top + i * ch;
    svg += `<text class="label" x="0" y="${y + 15}">${esc(short(node))}</text>`;
    epochs.forEach((e, j) => {
      const r = cell.get(`${node}:${e}`);
      const x = left + j * cw;
      if (!r) {
        svg += `<rect x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}" rx="3" fill="#f1f5f9"/>`;
        return;
      }
      const f = Math.max(0, Math.min(1, r.uptime_ppm / 1e6));
      const fill = `hsl(${Math.round(f * 130)}, 62%, ${Math.round(58 - f * 12)}%)`;
      svg += `<rect x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}" rx="3" fill="${fill}"><title>${esc(`${node} · epoch ${e}: ${(r.uptime_ppm / 1e4).toFixed(1)}% (${r.covered_s}/${r.expected_s} s, ${r.heartbeats} heartbeats)`)}</title></rect>`;
      if (cw >= 40) {
        svg += `<text x="${x + cw / 2}" y="${y + 15}" text-anchor="middle" style="fill:#fff">${Math.round(f * 100)}</text>`;
      }
    });
  });
  const more = new Set(rows.map((r) => r.node)).size - nodes.length;
  return `${svg}</svg>${more > 0 ? `<p class="hint">and ${more} more nodes (GET /v1/uptime)</p>` : ""}`;
}

/* --- panels ----------------------------------------------------------------------------- */

function drawOverview(o) {
  $("kpi-nodes").textContent = o.nodes.total.toLocaleString("en-US");
  const staked = o.nodes.by_status.staked || 0;
  $("kpi-nodes-note").textContent = `${staked} staked · ${o.nodes.by_role.worker || 0} workers · ${o.nodes.by_role.oracle || 0} oracles`;
  $("kpi-stake").textContent = tokens(o.stake.active_stake);
  $("kpi-stake-note").textContent = `MASA active · ${tokens(o.stake.locked_stake)} locked`;
  $("kpi-rpm").textContent = compact(o.requests.per_minute);
  $("kpi-rpm-note").textContent = `${o.requests.total.toLocaleString("en-US")} requests · ${o.requests.last_minute} this minute`;
  $("kpi-lag").textContent = `${o.projection.lag_events.toLocaleString("en-US")}`;
  $("kpi-lag-note").textContent = `events behind · last batch ${o.projection.lag_seconds.toFixed(2)} s`;
  $("position").textContent = o.projection.position;
  $("chart-status").innerHTML = statusBars(o.nodes.by_status, o.nodes.by_role, widthOf("chart-status"));
  const series = o.requests.throughput;
  const width = widthOf("chart-rpm");
  const every = width < 420 ? 20 : 10;
  const labels = series.map((p, i) => [i, p.minute.slice(11, 16)]).filter((_, i) => i % every === 0);
  $("chart-rpm").innerHTML = series.length
    ? columns(series.map((p) => ({ label: p.minute, value: p.requests,
      title: `${p.minute.slice(11, 16)} UTC: ${p.requests} requests` })), { labels, width })
    : empty("No requests yet");
}

function drawLatency(items) {
  const body = $("table-latency").querySelector("tbody");
  body.innerHTML = items.map((k) => `<tr><td>${esc(k.kind)}</td><td>${k.requests}</td><td>${k.closed}</td>` +
    `<td>${ms(k.p50_ms)}</td><td>${ms(k.p95_ms)}</td><td>${ms(k.max_ms)}</td></tr>`).join("") ||
    `<tr><td colspan="6">no requests</td></tr>`;
  const groups = items.map((k) => ({ label: k.kind, parts: { p50: k.p50_ms || 0, p95: Math.max(0, (k.p95_ms || 0) - (k.p50_ms || 0)) } }));
  $("chart-latency").innerHTML = items.length
    ? stacked(groups, [["p50", "p50", "#4f46e5"], ["p95", "p95 (above p50)", "#a5b4fc"]],
      { height: 150, format: duration, width: widthOf("chart-latency") }) +
      legend([["p50", "#4f46e5"], ["p95", "#a5b4fc"]])
    : empty("No closed requests yet");
}

function drawFees(items) {
  if (!items.length) { $("chart-fees").innerHTML = empty("No fees yet"); return; }
  const groups = items.map((f) => ({ label: `e${f.epoch}`, parts: Object.fromEntries(
    FEE_PARTS.map(([k]) => [k, tokenNumber(f[k])])) }));
  const total = items.reduce((s, f) => s + BigInt(f.fees_paid || "0"), 0n);
  $("chart-fees").innerHTML = stacked(groups, FEE_PARTS, { format: (v) => compact(v), width: widthOf("chart-fees") }) +
    legend(FEE_PARTS.map(([, label, color]) => [label, color])) +
    `<p class="hint">paid ${tokens(total.toString())} MASA in ${items.reduce((s, f) => s + f.paid_requests, 0)} requests</p>`;
}

function drawAttribution(items) {
  if (!items.length) { $("chart-attribution").innerHTML = empty("No credited data use yet"); return; }
  const contributors = [...new Set(items.map((a) => a.contributor))].sort();
  const keys = contributors.map((c, i) => [c, short(c), PALETTE[i % PALETTE.length]]);
  const epochs = [...new Set(items.map((a) => a.epoch))].sort((a, b) => a - b);
  const groups = epochs.map((e) => ({ label: `e${e}`, parts: Object.fromEntries(
    items.filter((a) => a.epoch === e).map((a) => [a.contributor, a.units])) }));
  $("chart-attribution").innerHTML = stacked(groups, keys, { width: widthOf("chart-attribution"), height: 220 }) +
    legend(keys.map(([c, label, color]) => [`${label} ${compact(items.filter((a) => a.contributor === c).reduce((s, a) => s + a.units, 0))}`, color]));
}

function drawEpochs(epochs) {
  const select = $("as-of");
  const numbers = epochs.map((e) => e.epoch);
  if (numbers.join(",") === state.epochs.join(",")) return;
  state.epochs = numbers;
  const chosen = select.value;
  select.innerHTML = `<option value="">latest</option>` + numbers.slice().reverse()
    .map((n) => `<option value="${n}">epoch ${n}</option>`).join("");
  select.value = numbers.includes(Number(chosen)) ? chosen : "";
}

function draw() {
  const d = state.data;
  if (!d) return;
  drawOverview(d.overview);
  drawLatency(d.latency);
  $("chart-uptime").innerHTML = heatmap(d.uptime);
  drawAttribution(d.attribution);
  drawFees(d.fees);
}

async function refresh() {
  /* one refresh at a time; an update arriving meanwhile runs one more after it */
  if (state.loading) { state.again = true; return state.loading; }
  const q = state.asOf === "" ? "" : `as_of_epoch=${state.asOf}`;
  const qs = q ? `?${q}` : "";
  state.loading = (async () => {
    try {
      const [overview, epochs, latency, uptime, attribution, fees] = await Promise.all([
        get("/v1/overview"), get("/v1/epochs"), get(`/v1/stats/latency${qs}`),
        getAll(`/v1/uptime?limit=500${q ? `&${q}` : ""}`), get(`/v1/attribution${qs}`), get(`/v1/fees${qs}`),
      ]);
      drawEpochs(epochs.items);
      state.data = { overview, latency: latency.items, uptime, attribution: attribution.items, fees: fees.items };
      draw();
      $("updated-at").textContent = new Date().toISOString().slice(11, 19) + " UTC";
      document.body.dataset.loaded = "true";
    } catch (error) {
      console.error(error);
      $("live-text").textContent = "API error";
    } finally {
      state.loading = null;
      if (state.again) { state.again = false; refresh(); }
    }
  })();
  return state.loading;
}

function listen() {
  const live = $("live");
  const source = new EventSource("/v1/stream");
  source.addEventListener("open", () => { live.className = "live on"; $("live-text").textContent = "live"; });
  source.addEventListener("error", () => { live.className = "live off"; $("live-text").textContent = "reconnecting"; });
  source.addEventListener("position", () => {
    state.updates += 1;
    $("updates").textContent = state.updates;
    refresh();
  });
}

let resizing = null;
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(draw, 80); });
$("as-of").addEventListener("change", (event) => { state.asOf = event.target.value; refresh(); });
refresh();
listen();
