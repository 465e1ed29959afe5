// phoenix.js's own browser bundle (node_modules/phoenix/priv/static/
// phoenix.js, the script that defines window.Phoenix) on a page in Debian's
// chromium, driven by playwright-core. The page and the bundle come from a
// small HTTP server of this test on another loopback port than presenced's,
// as with an app whose pages are served apart from presenced (dev mode
// accepts pages on any loopback origin). Each browser context is one person:
// the page connects with `new Phoenix.Socket(url, {params: {user_id}})`,
// joins room:<name> with {meta: {device, status}} and keeps a
// `new Phoenix.Presence(channel)`, whose onSync list the test reads.
// LongPoll, twice: a page without window.WebSocket, where phoenix.js picks
// LongPoll by itself (its Socket's default transport is window.WebSocket,
// else LongPoll); and a page with longPollFallbackMs whose "/socket" goes
// through the test's server, which forwards it to presenced but refuses
// WebSocket upgrades, like a proxy not set up for them. Screenshots go to
// $PRESENCE_COMPAT_OUT. Run through `go test ./test/compat/`.

import {test, before, after} from "node:test"
import assert from "node:assert/strict"
import http from "node:http"
import fs from "node:fs"
import path from "node:path"
import {fileURLToPath} from "node:url"
import {launchChromium} from "./chromium.mjs"
import {BASE, SOCKET_URL, serverView, sortMetas} from "./lib.mjs"

const OUT = process.env.PRESENCE_COMPAT_OUT || path.resolve("out")
const UI_MS = 10000 // bound of every wait on a page (slow shared machine, -race server)

// The official bundle, as a browser app would load it.
const PHOENIX_DIR = fileURLToPath(new URL("node_modules/phoenix/", import.meta.url))
const PHOENIX_VERSION = JSON.parse(fs.readFileSync(path.join(PHOENIX_DIR, "package.json"), "utf8")).version
const BUNDLE = fs.readFileSync(path.join(PHOENIX_DIR, "priv", "static", "phoenix.js"))

// pageMain is the page's own script (served as /app.js, run in the
// browser, after /phoenix.js): what an app built on the bundle does. Its
// settings come from the query string; what it saw goes to window.state.
function pageMain() {
  const q = new URLSearchParams(location.search)
  const user = q.get("user")
  const device = q.get("device")
  const state = window.state = {
    phoenix: typeof Phoenix === "undefined" ? null : Object.keys(Phoenix).sort(),
    hasWebSocket: typeof WebSocket !== "undefined",
    transport: null, // the Socket's transport class, by name
    opened: 0,
    socketErrors: [],
    joined: null, // the join reply
    joinError: null,
    channelState: null,
    syncs: 0,
    list: {}, // the Presence list at the last onSync: key -> metas
    joins: [],
    leaves: [],
  }
  const transportName = (t) => (t === Phoenix.LongPoll ? "LongPoll" : t === window.WebSocket ? "WebSocket" : String(t && t.name))
  const opts = {params: {user_id: user}, timeout: 5000}
  if (q.has("fallback")) opts.longPollFallbackMs = Number(q.get("fallback"))
  const socket = new Phoenix.Socket(q.get("socket"), opts)
  socket.onOpen(() => { state.opened++; state.transport = transportName(socket.transport) })
  socket.onError((e) => state.socketErrors.push(String(e && e.type ? e.type : e)))
  const channel = socket.channel("room:" + q.get("room"), {meta: {device, status: "online"}})
  const presence = new Phoenix.Presence(channel)
  const copy = (v) => JSON.parse(JSON.stringify(v))
  presence.onJoin((key, current, pres) => state.joins.push({key, current: current ? copy(current) : null, metas: copy(pres.metas)}))
  presence.onLeave((key, current, pres) => state.leaves.push({key, metas: copy(pres.metas)}))
  presence.onSync(() => {
    state.syncs++
    state.list = Object.fromEntries(presence.list((key, {metas}) => [key, copy(metas)]))
    render()
  })
  socket.connect()
  channel.join()
    .receive("ok", (r) => { state.joined = copy(r); state.channelState = channel.state; render() })
    .receive("error", (r) => { state.joinError = copy(r) })
    .receive("timeout", () => { state.joinError = "timeout" })

  function render() {
    document.querySelector("#who").textContent = `${user} on ${device}, via ${state.transport}`
    const ul = document.querySelector("#list")
    ul.replaceChildren(...Object.entries(state.list).sort().map(([key, metas]) => {
      const li = document.createElement("li")
      li.dataset.user = key
      li.textContent = `${key}: ${metas.map((m) => `${m.device} (${m.status})`).join(", ")}`
      return li
    }))
  }

  // setStatus pushes the status update (presence:update with the new meta)
  // and resolves with the reply.
  window.setStatus = (status) => new Promise((resolve) => {
    channel.push("presence:update", {meta: {device, status}})
      .receive("ok", (r) => resolve({status: "ok", response: r}))
      .receive("error", (r) => resolve({status: "error", response: r}))
      .receive("timeout", () => resolve({status: "timeout"}))
  })
  window.app = {socket, channel, presence}
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>phoenix.js presence</title><link rel="icon" href="data:,">
<style>body{font:16px system-ui,sans-serif;margin:2em} li{margin:.3em 0}</style>
</head><body>
<h1>phoenix.js ${PHOENIX_VERSION} in Chromium</h1>
<p id="who">connecting…</p>
<ul id="list"></ul>
<script src="/phoenix.js"></script>
<script src="/app.js"></script>
</body></html>
`

// The page's origin: a node:http server on its own loopback port. It also
// forwards /socket/* to presenced, like a reverse proxy in front of it,
// except that it refuses WebSocket upgrades, as a proxy not set up for
// them does: a page that uses "/socket" there can only long-poll.
let site, SITE
const served = [] // paths the site answered itself
const refusedUpgrades = [] // WebSocket upgrades it refused
const UPSTREAM = new URL(BASE)
let browser
before(async () => {
  site = http.createServer((req, res) => {
    const {pathname} = new URL(req.url, "http://x")
    if (pathname.startsWith("/socket/")) return forward(req, res)
    served.push(pathname)
    const send = (type, body) => {
      res.writeHead(200, {"Content-Type": type, "Cache-Control": "no-store"})
      res.end(body)
    }
    if (pathname === "/") send("text/html; charset=utf-8", PAGE)
    else if (pathname === "/phoenix.js") send("text/javascript; charset=utf-8", BUNDLE)
    else if (pathname === "/app.js") send("text/javascript; charset=utf-8", `(${pageMain})()\n`)
    else { res.writeHead(404); res.end() }
  })
  site.on("upgrade", (req, sock) => {
    refusedUpgrades.push(req.url)
    sock.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
  })
  await new Promise((resolve, reject) => { site.once("error", reject); site.listen(0, "127.0.0.1", resolve) })
  SITE = `http://127.0.0.1:${site.address().port}`
  browser = await launchChromium()
})
after(async () => {
  await browser?.close()
  site?.closeAllConnections()
  await new Promise((resolve) => (site ? site.close(resolve) : resolve()))
})

// forward passes a request on to presenced as is (the Host header
// included, as a proxy that keeps it does) and streams the answer back.
function forward(req, res) {
  const up = http.request({host: UPSTREAM.hostname, port: UPSTREAM.port, method: req.method, path: req.url, headers: req.headers}, (ur) => {
    res.writeHead(ur.statusCode, ur.headers)
    ur.pipe(res)
  })
  up.on("error", () => { if (!res.headersSent) res.writeHead(502); res.end() })
  res.on("close", () => up.destroy())
  req.pipe(up)
}

function roomName(tag) {
  return `compat-pjs-${tag}-${Math.random().toString(36).slice(2, 7)}`
}

// person opens the page in a fresh browser context (its own storage, its
// own connection) as user on device in room. noWebSocket removes
// window.WebSocket before any script of the page runs. Every page error,
// console error, failed request and HTTP error is recorded in problems; the
// WebSockets the page opened and the long-poll requests it made are
// recorded too.
async function person(user, device, room, {noWebSocket = false, fallback, socket = SOCKET_URL} = {}) {
  const context = await browser.newContext({viewport: {width: 900, height: 420}})
  if (noWebSocket) await context.addInitScript(() => { delete window.WebSocket })
  const page = await context.newPage()
  page.setDefaultTimeout(UI_MS)
  const p = {user, device, context, page, problems: [], websockets: [], longpolls: [], closing: false}
  page.on("pageerror", (e) => p.problems.push(`pageerror: ${e.message}`))
  page.on("console", (m) => { if (m.type() === "error") p.problems.push(`console: ${m.text()} (${m.location().url})`) })
  page.on("response", (r) => { if (r.status() >= 400) p.problems.push(`HTTP ${r.status()} ${r.url()}`) })
  page.on("requestfailed", (r) => { if (!p.closing) p.problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`) })
  page.on("websocket", (ws) => p.websockets.push(ws.url()))
  page.on("request", (r) => {
    const u = new URL(r.url())
    if (u.pathname.endsWith("/socket/longpoll")) p.longpolls.push(r.method())
  })
  const q = new URLSearchParams({socket, user, device, room})
  if (fallback) q.set("fallback", String(fallback))
  const res = await page.goto(`${SITE}/?${q}`)
  assert.equal(res.status(), 200)
  await waitPage(p, "the page's script", () => true)
  assert.ok((await state(p)).phoenix, `window.Phoenix is not defined on ${user}'s page: ${JSON.stringify(p.problems)}`)
  return p
}

async function close(...people) {
  for (const p of people) {
    p.closing = true
    await p.context.close()
  }
}

const state = (p) => bounded(p.page.evaluate(() => window.state), `${p.user}'s page state`)

// bounded fails after UI_MS if promise has not settled (page.evaluate
// itself has no deadline).
function bounded(promise, what, ms = UI_MS) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms) }),
  ]).finally(() => clearTimeout(timer))
}

// waitPage waits (bounded) until pred(window.state, arg) holds on p's page;
// on timeout the error carries the page's state.
async function waitPage(p, what, pred, arg) {
  try {
    await p.page.waitForFunction(({src, arg}) => window.state && new Function("s", "arg", `return (${src})(s, arg)`)(window.state, arg),
      {src: pred.toString(), arg}, {timeout: UI_MS, polling: 20})
  } catch (e) {
    let s
    try { s = JSON.stringify(await state(p)) } catch (e2) { s = `(unreadable: ${e2.message})` }
    throw new Error(`${p.user}'s page: timed out waiting for ${what}: ${e.message.split("\n")[0]}; state: ${s}; problems: ${JSON.stringify(p.problems)}`)
  }
}

// view is a page's Presence list as {key: metas sorted by phx_ref}, like
// lib.mjs's Member.view and serverView.
async function view(p) {
  const list = (await state(p)).list
  return Object.fromEntries(Object.entries(list).map(([k, metas]) => [k, sortMetas(metas)]))
}

// brief is a list as {key: ["device/status", …]}.
const brief = (v) => Object.fromEntries(Object.entries(v).sort().map(([k, ms]) => [k, ms.map((m) => `${m.device}/${m.status}`).sort()]))

async function joined(p) {
  await waitPage(p, "the join reply and the first presence_state", (s) => s.joinError || (s.joined && s.syncs > 0))
  const s = await state(p)
  assert.equal(s.joinError, null, `${p.user}'s join was refused: ${JSON.stringify(s.joinError)}`)
  assert.equal(s.channelState, "joined")
  return s
}

test(`phoenix.js ${PHOENIX_VERSION} browser bundle: two contexts join, Presence syncs both, a status update reaches the other`, async () => {
  const r = roomName("sync")
  const topic = "room:" + r
  const a = await person("alice", "laptop", r)
  const sa = await joined(a)
  assert.deepEqual(sa.phoenix, ["Channel", "LongPoll", "Presence", "Serializer", "Socket"], "window.Phoenix is the bundle's export")
  assert.ok(served.includes("/phoenix.js"), "the page loaded /phoenix.js from the test's server")
  assert.equal(sa.hasWebSocket, true)
  assert.equal(sa.transport, "WebSocket")
  assert.deepEqual(sa.joined, {}, "the join reply")
  // Her own presence, as her Presence list shows it.
  assert.deepEqual(brief(sa.list), {alice: ["laptop/online"]})
  const aliceRef = sa.list.alice[0].phx_ref
  assert.ok(typeof aliceRef === "string" && aliceRef.length > 0, `phx_ref ${JSON.stringify(aliceRef)}`)

  const b = await person("bob", "phone", r)
  await joined(b)
  const both = {alice: ["laptop/online"], bob: ["phone/online"]}
  for (const p of [a, b]) {
    await waitPage(p, "alice and bob", (s) => s.list.alice && s.list.bob)
    assert.deepEqual(brief(await view(p)), both, `${p.user}'s Presence list`)
  }
  assert.deepEqual(await view(a), await view(b), "both lists are equal, phx_refs included")
  assert.deepEqual(await view(a), await serverView(topic), "and equal the server's presence_state")
  assert.equal((await view(b)).alice[0].phx_ref, aliceRef)
  const sa2 = await state(a)
  assert.deepEqual(sa2.joins.filter((j) => j.key === "bob").map((j) => [j.current, j.metas.map((m) => m.device)]), [[null, ["phone"]]],
    "alice's onJoin for bob: a first join")

  // bob changes his status: alice's list shows it, same key, one meta.
  const bobRef = (await view(a)).bob[0].phx_ref
  assert.deepEqual(await bounded(b.page.evaluate(() => window.setStatus("away")), "bob's presence:update"), {status: "ok", response: {}})
  await waitPage(a, "bob away", (s) => s.list.bob?.[0]?.status === "away")
  await waitPage(b, "himself away", (s) => s.list.bob?.[0]?.status === "away")
  const va = await view(a)
  assert.deepEqual(brief(va), {alice: ["laptop/online"], bob: ["phone/away"]})
  assert.equal(va.bob[0].phx_ref_prev, bobRef, "the new meta names the old phx_ref")
  assert.notEqual(va.bob[0].phx_ref, bobRef)
  assert.deepEqual(va, await view(b))
  assert.deepEqual(va, await serverView(topic))
  await a.page.waitForSelector('#list li[data-user="bob"]:has-text("phone (away)")')
  await a.page.screenshot({path: path.join(OUT, "phoenixjs-two-people.png"), fullPage: true})

  for (const p of [a, b]) {
    assert.deepEqual(p.websockets.map((u) => new URL(u).pathname), ["/socket/websocket"], `${p.user}'s page opened one WebSocket`)
    assert.deepEqual(p.longpolls, [], `${p.user}'s page did not long-poll`)
    assert.deepEqual((await state(p)).socketErrors, [])
  }

  // bob closes his tab: alice's list drops him.
  await close(b)
  await waitPage(a, "bob gone", (s) => !s.list.bob)
  assert.deepEqual(brief(await view(a)), {alice: ["laptop/online"]})
  assert.deepEqual(a.problems, [], "no page errors on alice's page")
  assert.deepEqual(b.problems, [], "no page errors on bob's page")
  await close(a)
})

test("without window.WebSocket phoenix.js uses LongPoll: it joins, syncs with a WebSocket page, and status updates cross both ways", async () => {
  const r = roomName("lp")
  const topic = "room:" + r
  const a = await person("alice", "laptop", r)
  await joined(a)
  const c = await person("carol", "old-browser", r, {noWebSocket: true})
  const sc = await joined(c)
  // The transport: the page had no WebSocket, phoenix.js chose LongPoll
  // (Socket's default transport is window.WebSocket, else LongPoll), and
  // the page only ever talked to /socket/longpoll.
  assert.equal(sc.hasWebSocket, false, "window.WebSocket was removed before phoenix.js loaded")
  assert.equal(sc.transport, "LongPoll")
  assert.equal(await bounded(c.page.evaluate(() => window.app.socket.transport === Phoenix.LongPoll &&
    window.app.socket.connection.transport instanceof Phoenix.LongPoll), "carol's transport"), true,
  "carol's socket.transport is Phoenix.LongPoll")
  assert.deepEqual(c.websockets, [], "carol's page opened no WebSocket")
  assert.ok(c.longpolls.includes("GET") && c.longpolls.includes("POST"), `carol's page long-polled (GET) and posted (POST): ${c.longpolls}`)
  assert.deepEqual(sc.joined, {})

  // Sync: each sees both.
  const both = {alice: ["laptop/online"], carol: ["old-browser/online"]}
  for (const p of [a, c]) {
    await waitPage(p, "alice and carol", (s) => s.list.alice && s.list.carol)
    assert.deepEqual(brief(await view(p)), both, `${p.user}'s Presence list`)
  }
  assert.deepEqual(await view(c), await view(a))
  assert.deepEqual(await view(c), await serverView(topic))

  // alice (WebSocket) goes busy: carol (LongPoll) sees it.
  const aliceRef = (await view(c)).alice[0].phx_ref
  assert.deepEqual(await bounded(a.page.evaluate(() => window.setStatus("busy")), "alice's presence:update"), {status: "ok", response: {}})
  await waitPage(c, "alice busy", (s) => s.list.alice?.[0]?.status === "busy")
  const vc = await view(c)
  assert.equal(vc.alice.length, 1)
  assert.equal(vc.alice[0].phx_ref_prev, aliceRef)

  // carol (LongPoll: the push is a POST) goes away: alice sees it.
  const posts = c.longpolls.filter((m) => m === "POST").length
  assert.deepEqual(await bounded(c.page.evaluate(() => window.setStatus("away")), "carol's presence:update"), {status: "ok", response: {}})
  assert.ok(c.longpolls.filter((m) => m === "POST").length > posts, "carol's update went out as a long-poll POST")
  await waitPage(a, "carol away", (s) => s.list.carol?.[0]?.status === "away")
  await waitPage(c, "herself away", (s) => s.list.carol?.[0]?.status === "away")
  const after = {alice: ["laptop/busy"], carol: ["old-browser/away"]}
  assert.deepEqual(brief(await view(a)), after)
  assert.deepEqual(await view(c), await view(a))
  assert.deepEqual(await view(c), await serverView(topic))
  await c.page.waitForSelector('#list li[data-user="alice"]:has-text("laptop (busy)")')
  await c.page.screenshot({path: path.join(OUT, "phoenixjs-longpoll.png"), fullPage: true})

  assert.deepEqual(c.websockets, [], "still no WebSocket on carol's page")
  assert.deepEqual((await state(c)).socketErrors, [])
  assert.deepEqual(a.problems, [], "no page errors on alice's page")
  assert.deepEqual(c.problems, [], "no page errors on carol's page")
  console.log(`# carol's long-poll requests: ${c.longpolls.filter((m) => m === "GET").length} GET, ${c.longpolls.filter((m) => m === "POST").length} POST`)
  await close(a, c)
})

test("behind a proxy that refuses WebSocket upgrades, longPollFallbackMs falls back to LongPoll: join, sync, status updates", async () => {
  const r = roomName("fallback")
  const topic = "room:" + r
  const a = await person("alice", "laptop", r)
  await joined(a)
  // dan's page uses the site's own /socket, as an app behind the proxy
  // would, with the fallback Phoenix's docs suggest.
  const refused = refusedUpgrades.length
  const t0 = Date.now()
  const d = await person("dan", "office-pc", r, {socket: "/socket", fallback: 2500})
  const sd = await joined(d)
  const fellBackMs = Date.now() - t0
  assert.equal(sd.hasWebSocket, true, "the browser has WebSocket")
  assert.ok(refusedUpgrades.length > refused, "the page tried a WebSocket first, and the proxy refused it")
  assert.equal(d.websockets.length, 1, `one WebSocket attempt: ${d.websockets}`)
  assert.equal(new URL(d.websockets[0]).origin, SITE.replace(/^http/, "ws"), "to the page's own origin")
  assert.equal(sd.transport, "LongPoll", "the socket opened on LongPoll")
  assert.equal(await bounded(d.page.evaluate(() => window.app.socket.transport === Phoenix.LongPoll &&
    window.app.socket.connection.transport instanceof Phoenix.LongPoll), "dan's transport"), true)
  assert.ok(d.longpolls.includes("GET") && d.longpolls.includes("POST"), `dan's page long-polled: ${d.longpolls}`)
  assert.equal(await bounded(d.page.evaluate(() => sessionStorage.getItem("phx:fallback:LongPoll")), "dan's sessionStorage"), "true",
    "phoenix.js memorized the fallback for the session")
  assert.deepEqual(sd.socketErrors.length, 1, `one transport error, the refused WebSocket: ${sd.socketErrors}`)

  for (const p of [a, d]) {
    await waitPage(p, "alice and dan", (s) => s.list.alice && s.list.dan)
    assert.deepEqual(brief(await view(p)), {alice: ["laptop/online"], dan: ["office-pc/online"]}, `${p.user}'s Presence list`)
  }
  assert.deepEqual(await view(d), await view(a))
  assert.deepEqual(await view(d), await serverView(topic))

  assert.deepEqual(await bounded(a.page.evaluate(() => window.setStatus("away")), "alice's presence:update"), {status: "ok", response: {}})
  await waitPage(d, "alice away", (s) => s.list.alice?.[0]?.status === "away")
  assert.deepEqual(await bounded(d.page.evaluate(() => window.setStatus("busy")), "dan's presence:update"), {status: "ok", response: {}})
  await waitPage(a, "dan busy", (s) => s.list.dan?.[0]?.status === "busy")
  await waitPage(d, "himself busy", (s) => s.list.dan?.[0]?.status === "busy")
  assert.deepEqual(brief(await view(a)), {alice: ["laptop/away"], dan: ["office-pc/busy"]})
  assert.deepEqual(await view(d), await view(a))
  assert.deepEqual(await view(d), await serverView(topic))
  await d.page.screenshot({path: path.join(OUT, "phoenixjs-longpoll-fallback.png"), fullPage: true})

  // The refused handshake is the one console error Chromium logs on dan's page.
  const handshake = d.problems.filter((m) => /^console: WebSocket connection to .* failed/.test(m))
  assert.equal(handshake.length, 1, `Chromium's console error for the refused WebSocket: ${d.problems}`)
  assert.deepEqual(d.problems.filter((m) => !handshake.includes(m)), [], "no other problems on dan's page")
  assert.deepEqual(a.problems, [], "no page errors on alice's page")
  console.log(`# refused WebSocket -> LongPoll joined and synced after ${fellBackMs} ms (page load included)`)
  await close(a, d)
})
