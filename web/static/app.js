// Presence demo page: a small, hand-written client of the Phoenix channels
// protocol (V2 JSON: [join_ref, ref, topic, event, payload]) with the same
// presence bookkeeping as phoenix.js's Presence (state, then diffs by phx_ref).
//
// Presence keys are user names, chosen by the users: they are kept in a Map
// and looked up in the server's objects with Object.hasOwn only, so that a
// user called "constructor", "__proto__" or "toString" is a user like any
// other, not a property every plain object inherits.
//
// In token mode (config.json says {"identity": "token"}) the page asks for
// a JWT instead of a name, since the server takes the name from the token's
// sub and ignores user_id.
"use strict";

const $ = (id) => document.getElementById(id);
let sock = null, topic = null, joinRef = null, refSeq = 0, heartbeat = null;
let presences = new Map(), pending = [], synced = false, myStatus = "online", reconnectTimer = null;
let tries = 0, wanted = false, tokenMode = false, me = "", credential = "", everOpened = false;

// deviceName names this browser as a person recognises it: "Firefox on
// Linux", "Safari on iPhone".
function deviceName(ua) {
  const browser = /Edg\//.test(ua) ? "Edge" : /OPR\//.test(ua) ? "Opera" : /Firefox\//.test(ua) ? "Firefox"
    : /Chrom(e|ium)\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /iPhone/.test(ua) ? "iPhone" : /iPad/.test(ua) ? "iPad" : /Android/.test(ua) ? "Android"
    : /Windows/.test(ua) ? "Windows" : /Mac OS X|Macintosh/.test(ua) ? "macOS" : /CrOS/.test(ua) ? "ChromeOS"
    : /Linux/.test(ua) ? "Linux" : "";
  return os ? browser + " on " + os : browser;
}
const device = deviceName(navigator.userAgent || "");
// tab tells this tab's meta from the user's other devices of the same name.
const tab = Math.random().toString(36).slice(2, 8);
const myMeta = () => ({device, tab, status: myStatus});

function log(text) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, text);
  $("log").prepend(li);
}

function send(event, payload, t) {
  if (!sock || sock.readyState !== 1) return null;
  const ref = String(++refSeq);
  sock.send(JSON.stringify([t === "phoenix" ? null : joinRef, ref, t || topic, event, payload]));
  return ref;
}

function setConn(text, cls) { $("conn").textContent = text; $("conn").className = "conn" + (cls ? " " + cls : ""); }

function connect() {
  const param = tokenMode ? "token=" : "user_id=";
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
    "/socket/websocket?vsn=2.0.0&" + param + encodeURIComponent(credential);
  // Events of a socket that is no longer the current one (closed by Leave,
  // or replaced) are ignored: it must neither reconnect nor touch the page.
  const ws = new WebSocket(url);
  let opened = false;
  sock = ws;
  setConn("connecting…");
  ws.onopen = () => {
    if (ws !== sock) return;
    opened = everOpened = true;
    tries = 0;
    setConn("connected", "up");
    joinRef = String(++refSeq);
    presences = new Map(); pending = []; synced = false;
    ws.send(JSON.stringify([joinRef, joinRef, topic, "phx_join", {meta: myMeta()}]));
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
  ws.onclose = (ev) => {
    if (ws !== sock) return;
    clearInterval(heartbeat);
    if (ev && ev.reason === "token expired") return backToForm("Your token expired: mint a new one and enter again.");
    if (tokenMode && !opened && !everOpened) return refused();
    setConn(opened ? "disconnected, reconnecting…" : "cannot connect, retrying…", "bad");
    if (wanted) {
      const wait = [100, 500, 1000, 2000, 5000][Math.min(tries++, 4)];
      reconnectTimer = setTimeout(connect, wait);
    }
  };
}

// refused tells a token the server refused from a server that is down: a
// browser shows neither the HTTP status of a refused upgrade nor its body,
// so the page asks for config.json.
function refused() {
  fetch("config.json", {cache: "no-store"}).then(
    (r) => backToForm(r.ok ? "The server refused this token: it may be expired, not yet valid, or signed with another secret." : "The server answered " + r.status + "."),
    () => backToForm("Cannot reach the server: is presenced running?"));
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

const isMine = (key, m) => key === me && m.tab === tab;
function describe(m) { return (m.device || "a device") + " · " + (m.status || "online"); }

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
    li.append(b);
    if (key === me) {
      li.className = "you";
      const you = document.createElement("span");
      you.className = "you-mark";
      you.textContent = " (you)";
      b.append(you);
    }
    li.append(" — " + metas.length + (metas.length === 1 ? " device" : " devices"));
    const d = document.createElement("div");
    d.className = "devices";
    for (const m of metas) {
      const span = document.createElement("span");
      span.className = "device";
      span.dataset.status = m.status || "online";
      const dot = document.createElement("span");
      dot.className = "dot " + (m.status || "online");
      span.append(dot, describe(m) + (isMine(key, m) ? " (you, this tab)" : ""));
      if (isMine(key, m)) span.dataset.mine = "true";
      d.append(span);
    }
    li.append(d);
    ul.append(li);
  }
  for (const btn of document.querySelectorAll("button.st")) btn.classList.toggle("current", btn.dataset.status === myStatus);
}

// tokenSubject reads the sub of a JWT (without checking it: the server
// does), or throws a message for the form.
function tokenSubject(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) throw new Error("This is not a JWT: it has three parts separated by dots.");
  let claims;
  try { claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"))); }
  catch { throw new Error("This is not a JWT: its middle part is not base64url JSON."); }
  if (typeof claims.sub !== "string" || claims.sub === "") throw new Error("This token has no sub: mint it with --sub NAME.");
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) throw new Error("This token expired at " + new Date(claims.exp * 1000).toLocaleString() + ": mint a new one.");
  return claims.sub;
}

function formError(text) { $("formerror").textContent = text; $("formerror").hidden = !text; }

function backToForm(error) {
  wanted = false;
  clearTimeout(reconnectTimer);
  clearInterval(heartbeat);
  if (sock) { const ws = sock; sock = null; ws.close(1000); }
  $("join").hidden = false; $("inroom").hidden = true;
  $("users").textContent = ""; $("log").textContent = "";
  formError(error || "");
}

function setTokenMode(on) {
  tokenMode = on;
  $("namefield").hidden = on;
  $("tokenfield").hidden = !on;
  if (on) $("hint").textContent = "Who is online, where, on how many devices. Open this page in a second tab and paste the same token: it shows as a second device of yours.";
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = $("room").value.trim();
  try {
    if (tokenMode) { credential = $("token").value.trim(); me = tokenSubject(credential); }
    else { credential = me = $("name").value.trim(); }
    if (!me) throw new Error("Enter your name.");
    if (!room) throw new Error("Enter a room.");
  } catch (err) { formError(err.message); return; }
  formError("");
  topic = "room:" + room;
  $("roomname").textContent = room;
  $("me").textContent = me;
  $("mydevice").textContent = device;
  $("join").hidden = true; $("inroom").hidden = false;
  wanted = true; everOpened = false; tries = 0;
  connect();
});

for (const btn of document.querySelectorAll("button.st")) {
  btn.addEventListener("click", () => {
    myStatus = btn.dataset.status;
    send("presence:update", {meta: myMeta()});
    render();
  });
}

$("leave").addEventListener("click", () => backToForm(""));

if (typeof fetch === "function") {
  fetch("config.json", {cache: "no-store"}).then((r) => r.json()).then((c) => setTokenMode(c.identity === "token"), () => {});
}
