// The metered-realtime web console: plain DOM and SVG, no library, no build step.
// Everything shown comes from the admin API with the token kept in sessionStorage; data is
// only ever written with textContent (channel names and metadata are client-controlled).
"use strict";

const TOKEN_KEY = "metered-realtime-admin-token";
const REFRESH_MS = 2000;
const WINDOW_S = 300; // the charts show the last five minutes
const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#4b5563"];

const $ = (id) => document.getElementById(id);
const state = { timer: null, keysApp: null, members: null };

class Unauthorized extends Error {}

async function api(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Unauthorized("the admin token was refused");
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function button(label, className, onClick) {
  const node = el("button", label, { type: "button", class: className });
  node.addEventListener("click", () => act(onClick));
  return node;
}

function row(cells, attrs) {
  const tr = el("tr", null, attrs);
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === undefined || cell === null ? "" : String(cell);
    tr.append(td);
  }
  return tr;
}

function fill(tableId, rows) {
  $(tableId).querySelector("tbody").replaceChildren(...rows);
}

// An action from a button or a form: run it, show its error, refresh what is shown.
async function act(fn) {
  try {
    await fn();
    $("status").textContent = "";
  } catch (err) {
    if (err instanceof Unauthorized) return logout(err.message);
    $("status").textContent = err.message;
  }
  await refresh();
}

// --- charts -------------------------------------------------------------------------------

// One polyline per series over the last WINDOW_S seconds; y from 0 to the largest value.
function drawChart(svgId, series, now) {
  const svg = $(svgId);
  const W = 400, H = 140, left = 34, top = 8, bottom = 20;
  const names = Object.keys(series).sort();
  let max = 0;
  for (const name of names) for (const [, v] of series[name]) max = Math.max(max, v);
  const top_value = max > 0 ? niceCeil(max) : 1;
  const x = (t) => left + ((t - (now - WINDOW_S)) / WINDOW_S) * (W - left - 4);
  const y = (v) => H - bottom - (v / top_value) * (H - bottom - top);
  const ns = "http://www.w3.org/2000/svg";
  const parts = [];
  const line = (x1, y1, x2, y2) => {
    const node = document.createElementNS(ns, "line");
    for (const [k, v] of Object.entries({ x1, y1, x2, y2, class: "axis" })) node.setAttribute(k, v);
    return node;
  };
  const text = (tx, ty, value, anchor) => {
    const node = document.createElementNS(ns, "text");
    node.setAttribute("x", tx);
    node.setAttribute("y", ty);
    node.setAttribute("text-anchor", anchor || "end");
    node.textContent = value;
    return node;
  };
  parts.push(line(left, top, left, H - bottom), line(left, H - bottom, W - 4, H - bottom));
  parts.push(text(left - 3, top + 8, formatRate(top_value)), text(left - 3, H - bottom, "0"));
  parts.push(text(left, H - 4, `-${WINDOW_S / 60} min`, "start"), text(W - 4, H - 4, "now"));
  let latest = 0;
  names.forEach((name, i) => {
    const points = series[name].filter(([t]) => t >= now - WINDOW_S);
    const poly = document.createElementNS(ns, "polyline");
    poly.setAttribute("points", points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
    poly.setAttribute("stroke", COLORS[i % COLORS.length]);
    poly.setAttribute("data-series", name);
    parts.push(poly);
    const legend = text(W - 6, top + 10 + 11 * i, name);
    legend.setAttribute("fill", COLORS[i % COLORS.length]);
    parts.push(legend);
    if (points.length) latest += points[points.length - 1][1];
  });
  svg.replaceChildren(...parts);
  svg.setAttribute("data-latest", String(latest));
}

function niceCeil(v) {
  const step = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function formatRate(v) {
  return v >= 100 ? v.toFixed(0) : String(Math.round(v * 10) / 10);
}

// Rates per node; closes per code summed over the nodes (samples matched by interval).
function drawCharts(nodes) {
  const now = Date.now() / 1000;
  const into = {}, out = {}, closes = {};
  const short = (id) => (nodes.length > 1 ? `node ${id.slice(0, 6)}` : "this node");
  for (const node of nodes) {
    into[short(node.node)] = node.samples.map((s) => [s.t, s.in]);
    out[short(node.node)] = node.samples.map((s) => [s.t, s.out]);
    for (const s of node.samples) {
      for (const [code, n] of Object.entries(s.closes)) {
        const slot = Math.round(s.t / node.interval) * node.interval;
        const byTime = (closes[code] = closes[code] || new Map());
        byTime.set(slot, (byTime.get(slot) || 0) + n);
      }
    }
  }
  const closeSeries = {};
  for (const [code, byTime] of Object.entries(closes)) {
    closeSeries[code] = [...byTime.entries()].sort((a, b) => a[0] - b[0]);
  }
  drawChart("chart-in", into, now);
  drawChart("chart-out", out, now);
  drawChart("chart-closes", closeSeries, now);
}

// --- tables ---------------------------------------------------------------------------------

function showNodes(stats, nodes) {
  let connections = 0, channels = 0, apps = 0;
  for (const node of stats.nodes) {
    connections += node.connections;
    channels += node.channels;
    apps += node.apps;
  }
  $("count-connections").textContent = connections;
  $("count-channels").textContent = channels;
  $("count-apps").textContent = apps;
  fill("nodes", nodes.nodes.map((n) => row([
    n.id + (n.id === nodes.self ? " (this node)" : ""), n.pid, n.port, n.connections,
    n.draining ? "draining" : "serving",
    button("Drain", "danger", () => api("POST", `/admin/nodes/${encodeURIComponent(n.id)}/drain`)),
  ], { "data-node": n.id })));
}

function showApps(apps) {
  fill("apps", apps.apps.map((a) => {
    const seg = encodeURIComponent(a.id);
    const toggle = a.suspended
      ? button("Resume", "resume", () => api("POST", `/admin/apps/${seg}/resume`))
      : button("Suspend", "danger suspend", () => api("POST", `/admin/apps/${seg}/suspend`));
    const keys = button("Keys", "keys", async () => { state.keysApp = a.id; });
    const actions = el("span");
    actions.append(keys, " ", toggle);
    return row([a.id, a.name, a.connections, a.suspended ? "suspended" : "active", actions],
      { "data-app": a.id });
  }));
}

async function showKeys() {
  $("keys").hidden = state.keysApp === null;
  if (state.keysApp === null) return;
  $("keys-app").textContent = state.keysApp;
  const keys = await api("GET", `/admin/apps/${encodeURIComponent(state.keysApp)}/keys`);
  const revoke = (id) => button("Revoke", "danger revoke",
    () => api("DELETE", `/admin/keys/${encodeURIComponent(id)}`));
  const rows = keys.publishable.map((k) => row([
    el("code", k.key), k.permissions.join(", "), k.channels.join(", "), k.label,
    k.revoked ? "revoked" : "active", k.revoked ? "" : revoke(k.ref),
  ], { "data-key": k.key, "data-label": k.label }));
  for (const s of keys.secret) {
    rows.push(row([el("code", s.id), "(secret key: signs tokens)", "", "",
      s.revoked ? "revoked" : "active", s.revoked ? "" : revoke(s.id)], { "data-key": s.id }));
  }
  fill("keys-table", rows);
}

function showChannels(channels) {
  fill("channels", channels.channels.map((c) => row([
    c.app, c.channel, c.subscribers, c.members,
    button("Members", "members", async () => { state.members = { app: c.app, channel: c.channel }; }),
  ], { "data-channel": c.channel })));
}

async function showMembers() {
  $("members").hidden = state.members === null;
  if (state.members === null) return;
  const { app, channel } = state.members;
  $("members-channel").textContent = `${channel} (${app})`;
  const query = new URLSearchParams({ app, channel });
  const members = await api("GET", `/admin/members?${query}`);
  fill("members-table", members.members.map((m) => row([
    m.peerId, m.node, el("code", JSON.stringify(m.metadata === undefined ? null : m.metadata)),
  ], { "data-peer": m.peerId })));
}

function showConnections(connections) {
  fill("connections", connections.connections.map((c) => row([
    el("code", c.peerId), c.app, c.node, c.channels.join(", "),
    button("Disconnect", "danger disconnect",
      () => api("POST", `/admin/peers/${encodeURIComponent(c.peerId)}/disconnect`)),
  ], { "data-peer": c.peerId })));
}

// --- the loop ---------------------------------------------------------------------------------

let refreshing = null;

async function refresh() {
  // One refresh at a time: an action's refresh waits for the periodic one.
  if (refreshing) await refreshing;
  refreshing = (async () => {
    try {
      const [stats, nodes, apps, channels, connections] = await Promise.all([
        api("GET", "/admin/stats"), api("GET", "/admin/nodes"), api("GET", "/admin/apps"),
        api("GET", "/admin/channels"), api("GET", "/admin/connections"),
      ]);
      showNodes(stats, nodes);
      drawCharts(stats.nodes);
      showApps(apps);
      showChannels(channels);
      showConnections(connections);
      await showKeys();
      await showMembers();
      document.body.dataset.refreshed = String(Date.now());
    } catch (err) {
      if (err instanceof Unauthorized) logout(err.message);
      else $("status").textContent = `refresh failed: ${err.message}`;
    }
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

function showDashboard(on) {
  $("login").hidden = on;
  $("dashboard").hidden = !on;
  $("counts").hidden = !on;
  $("logout").hidden = !on;
}

function logout(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  state.timer = null;
  showDashboard(false);
  $("login-error").textContent = reason || "";
}

async function start() {
  showDashboard(true);
  await refresh();
  if (sessionStorage.getItem(TOKEN_KEY) && state.timer === null) {
    state.timer = setInterval(refresh, REFRESH_MS);
  }
}

function wire() {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("login-error").textContent = "";
    start();
  });
  $("logout").addEventListener("click", () => logout(""));
  $("drain-self").addEventListener("click", () => act(() => api("POST", "/admin/drain")));
  $("new-app").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", "/admin/apps", { name: $("new-app-name").value }));
  });
  $("new-key").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const list = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean);
    act(async () => {
      const created = await api("POST", `/admin/apps/${encodeURIComponent(state.keysApp)}/keys`, {
        permissions: list("new-key-permissions"),
        channels: list("new-key-channels"),
        label: $("new-key-label").value,
      });
      showSecretOnce(created.key);
    });
  });
  $("new-secret-key").addEventListener("click", () => act(async () => {
    const created = await api("POST", `/admin/apps/${encodeURIComponent(state.keysApp)}/keys`,
      { type: "secret" });
    showSecretOnce(`${created.id}  ${created.secret}`);
  }));
  $("secret-dismiss").addEventListener("click", () => {
    $("secret-value").textContent = "";
    $("secret-once").hidden = true;
  });
  if (sessionStorage.getItem(TOKEN_KEY)) start();
}

function showSecretOnce(value) {
  $("secret-value").textContent = value;
  $("secret-once").hidden = false;
}

wire();
