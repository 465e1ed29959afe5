// Presence demo page: a small, hand-written client of the Phoenix channels
// protocol (V2 JSON: [join_ref, ref, topic, event, payload]) with the same
// presence bookkeeping as phoenix.js's Presence (state, then diffs by phx_ref).
//
// Presence keys are user names, chosen by the users: they are kept in a Map
// and looked up in the server's objects with Object.hasOwn only, so that a
// user called "constructor", "__proto__" or "toString" is a user like any
// other, not a property every plain object inherits.
"use strict";

const $ = (id) => document.getElementById(id);
let sock = null, topic = null, joinRef = null, refSeq = 0, heartbeat = null;
let presences = new Map(), pending = [], synced = false, myStatus = "online", reconnectTimer = null;
let tries = 0, wanted = false;
const device = (() => {
  const ua = navigator.userAgent;
  const kind = /Mobi/.test(ua) ? "phone" : "desktop";
  return kind + "-" + Math.random().toString(36).slice(2, 6);
})();

function log(text) {
  const li = document.createElement("li");
  li.textContent = new Date().toLocaleTimeString() + "  " + text;
  $("log").prepend(li);
}

function send(event, payload, t) {
  if (!sock || sock.readyState !== 1) return null;
  const ref = String(++refSeq);
  sock.send(JSON.stringify([t === "phoenix" ? null : joinRef, ref, t || topic, event, payload]));
  return ref;
}

function connect() {
  const name = $("name").value.trim();
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
    "/socket/websocket?vsn=2.0.0&user_id=" + encodeURIComponent(name);
  // Events of a socket that is no longer the current one (closed by Leave,
  // or replaced) are ignored: it must neither reconnect nor touch the page.
  const ws = new WebSocket(url);
  sock = ws;
  $("conn").textContent = "connecting…"; $("conn").className = "conn";
  ws.onopen = () => {
    if (ws !== sock) return;
    tries = 0;
    $("conn").textContent = "connected"; $("conn").className = "conn up";
    joinRef = String(++refSeq);
    presences = new Map(); pending = []; synced = false;
    ws.send(JSON.stringify([joinRef, joinRef, topic, "phx_join", {meta: {device, status: myStatus}}]));
    clearInterval(heartbeat);
    heartbeat = setInterval(() => send("heartbeat", {}, "phoenix"), 30000);
  };
  ws.onmessage = (ev) => {
    if (ws !== sock) return;
    const [jref, ref, t, event, payload] = JSON.parse(ev.data);
    if (t !== topic) return;
    if (event === "presence_state") { presences = toMap(payload); synced = true; pending.forEach(applyDiff); pending = []; render(); }
    else if (event === "presence_diff") { if (synced) { applyDiff(payload); render(); } else pending.push(payload); }
    else if (event === "phx_reply" && ref === jref && payload.status !== "ok") log("join refused: " + JSON.stringify(payload.response));
  };
  ws.onclose = () => {
    if (ws !== sock) return;
    clearInterval(heartbeat);
    $("conn").textContent = "disconnected"; $("conn").className = "conn";
    if (wanted) {
      const wait = [100, 500, 1000, 2000, 5000][Math.min(tries++, 4)];
      reconnectTimer = setTimeout(connect, wait);
    }
  };
}

// own is obj[key] if obj has it as its own property, else undefined.
function own(obj, key) { return obj && Object.hasOwn(obj, key) ? obj[key] : undefined; }

// toMap copies a presence_state into a Map of key → {metas}.
function toMap(state) {
  const m = new Map();
  for (const [key, {metas}] of Object.entries(state)) m.set(key, {metas: metas.slice()});
  return m;
}

function applyDiff(diff) {
  for (const [key, {metas}] of Object.entries(diff.joins || {})) {
    const cur = presences.get(key);
    const newRefs = new Set(metas.map((m) => m.phx_ref));
    // Metas already shown (e.g. our own join, which the state held) are not news.
    const fresh = metas.filter((m) => !cur || !cur.metas.some((c) => c.phx_ref === m.phx_ref));
    if (!cur) log(key + " came online (" + fresh.map(describe).join(", ") + ")");
    else if (fresh.length && fresh.every((m) => m.phx_ref_prev)) log(key + " is now " + fresh.map(describe).join(", "));
    else if (fresh.length) log(key + " joined on another device (" + fresh.map(describe).join(", ") + ")");
    const kept = cur ? cur.metas.filter((m) => !newRefs.has(m.phx_ref)) : [];
    presences.set(key, {metas: kept.concat(metas)});
  }
  for (const [key, {metas}] of Object.entries(diff.leaves || {})) {
    const cur = presences.get(key);
    if (!cur) continue;
    const gone = new Set(metas.map((m) => m.phx_ref));
    const joinedPrev = new Set((own(diff.joins, key) || {metas: []}).metas.map((m) => m.phx_ref_prev));
    cur.metas = cur.metas.filter((m) => !gone.has(m.phx_ref));
    if (cur.metas.length === 0) { presences.delete(key); log(key + " went offline"); }
    else if (!metas.every((m) => joinedPrev.has(m.phx_ref))) log(key + " left on one device");
  }
}

function describe(m) { return (m.device || "?") + " " + (m.status || "online"); }

function render() {
  const ul = $("users");
  ul.textContent = "";
  const keys = [...presences.keys()].sort();
  $("count").textContent = keys.length;
  for (const key of keys) {
    const li = document.createElement("li");
    li.dataset.user = key;
    const metas = presences.get(key).metas;
    const b = document.createElement("strong");
    b.textContent = key;
    li.append(b, " — " + metas.length + (metas.length === 1 ? " device" : " devices"));
    const d = document.createElement("div");
    d.className = "devices";
    for (const m of metas) {
      const span = document.createElement("span");
      span.className = "device";
      span.dataset.status = m.status || "online";
      const dot = document.createElement("span");
      dot.className = "dot " + (m.status || "online");
      span.append(dot, describe(m));
      d.append(span);
    }
    li.append(d);
    ul.append(li);
  }
  for (const btn of document.querySelectorAll("button.st")) btn.classList.toggle("current", btn.dataset.status === myStatus);
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  topic = "room:" + $("room").value.trim();
  $("roomname").textContent = $("room").value.trim();
  $("me").textContent = $("name").value.trim();
  $("join").hidden = true; $("inroom").hidden = false;
  wanted = true;
  connect();
});

for (const btn of document.querySelectorAll("button.st")) {
  btn.addEventListener("click", () => {
    myStatus = btn.dataset.status;
    send("presence:update", {meta: {device, status: myStatus}});
    render();
  });
}

$("leave").addEventListener("click", () => {
  wanted = false;
  clearTimeout(reconnectTimer);
  clearInterval(heartbeat);
  if (sock) { const ws = sock; sock = null; ws.close(1000); }
  $("join").hidden = false; $("inroom").hidden = true;
  $("users").textContent = ""; $("log").textContent = "";
});
