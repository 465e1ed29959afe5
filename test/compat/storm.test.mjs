// A storm of presence changes in one topic, against presenced's coalesced
// presence diffs (--diff-window, PRESENCE_DIFF_WINDOW_MS): hundreds of
// phoenix.js sockets (ws transport) in one room, then bursts, each sent
// faster than the window, of double status updates, leaves, clean and
// abrupt disconnects, new joins, a leave and join again of the same device
// (a new channel object on the same socket, and a fresh socket of the same
// user), and join+leave ghosts; a watcher joins in the middle of a burst.
// After a quiet period every remaining Presence.list must equal the
// server's and the truth the test kept of who is joined with which meta.
// Run through `go test -run TestPhoenixJSStorm ./test/compat/` (storm_test.go).
// PRESENCE_STORM_SEED replays a storm (the seed is logged).

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {connect, closeAll, room, sleep, serverView, fields, sortMetas, Presence} from "./lib.mjs"

afterEach(closeAll)

const WINDOW_MS = Number(process.env.PRESENCE_DIFF_WINDOW_MS || 100)
// The channels that joined again on the same socket (a new channel object
// after channel.leave()) are held to be exact like the others: phoenix.js
// hands such a channel the presence_diffs the server sent to the old one
// that arrive after the leave, and presenced sends the rejoin the diffs it
// missed between its phx_leave and its phx_join first (phx/presencechannel
// leave.go). PRESENCE_STORM_STRICT=0 only reports them.
const STRICT = process.env.PRESENCE_STORM_STRICT !== "0"
const SEED = Number(process.env.PRESENCE_STORM_SEED || Math.floor(Math.random() * 2 ** 31))

// The shape of the storm.
const USERS = 120 // u000…u119, with 1 + i%4 devices each: 300 sockets
const SPARES = 110 // open sockets that join during the storm
const WATCHERS = 3 // joined without meta from the start
const BIG_BURST = 150 // devices that update twice at once: 300 changes
const BURSTS = 10
const OPS = 30 // operations a burst

// xorshift32: a small seeded generator, so that a failing storm replays.
function rng(seed) {
  let x = (seed >>> 0) || 0x9e3779b9
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x / 2 ** 32
  }
}

// canon is JSON with object keys sorted: two views compare as strings.
function canon(v) {
  if (v === undefined) return "undefined"
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`
  }
  return JSON.stringify(v)
}

// mismatch names the keys on which two views ({key: metas}) differ.
function mismatch(got, want) {
  const out = []
  for (const k of new Set([...Object.keys(got), ...Object.keys(want)])) {
    const g = canon(got[k]), w = canon(want[k])
    if (g !== w) out.push(`${k}: got ${g}, want ${w}`)
  }
  return out.slice(0, 8).join("; ") + (out.length > 8 ? `; … ${out.length} keys differ` : "")
}

function within(ms, what, promise) {
  let timer
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// push sends event and resolves with "ok", or what went wrong.
function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel.push(event, payload)
      .receive("ok", () => resolve("ok"))
      .receive("error", (r) => resolve(`error ${JSON.stringify(r)}`))
      .receive("timeout", () => resolve("timeout"))
  })
}

// kill ends socket's connection without a close handshake (the TCP
// connection is destroyed, as when a network drops), then disconnects the
// phoenix.js socket so that it does not reconnect.
function kill(socket) {
  socket.conn.terminate()
  socket.disconnect()
}

// Peer is one channel of the topic with a phoenix.js Presence, lighter
// than lib.mjs's Member (hundreds of them take every diff): it counts the
// diffs and, when record is set, keeps their payloads.
class Peer {
  constructor(socket, topic, device, status, how, record = false) {
    this.how = how // how it came: "initial", "join", "rejoin"… and when
    this.socket = socket
    this.user = socket.user
    this.device = device
    this.name = device || `${socket.user} (watcher)`
    this.channel = socket.channel(topic, device ? {meta: {device, status}} : {})
    this.presence = new Presence(this.channel)
    this.diffs = 0
    this.pending = [] // replies to wait for, while joined
    this.log = record ? [] : null
    this.early = 0 // diffs that came before the presence_state: phoenix.js applies them after it
    this.states = 0
    this.channel.on("presence_state", () => this.states++)
    this.channel.on("presence_diff", (d) => {
      if (this.states === 0) this.early++
      this.diffs++
      if (this.log) this.log.push(d)
    })
  }

  // join resolves with "ok" or what went wrong.
  join() {
    return new Promise((resolve) => {
      this.channel.join()
        .receive("ok", () => resolve("ok"))
        .receive("error", (r) => resolve(`${this.name}: join refused: ${JSON.stringify(r)}`))
        .receive("timeout", () => resolve(`${this.name}: join timed out`))
    })
  }

  view() {
    return Object.fromEntries(this.presence.list((key, {metas}) => [key, sortMetas(metas)]))
  }
}

test("a storm in one topic of 300 phoenix.js sockets: coalesced diffs leave every Presence.list exact", async (t) => {
  const t0 = Date.now()
  const rand = rng(SEED)
  const int = (n) => Math.floor(rand() * n)
  const shuffle = (a) => { for (let i = a.length - 1; i > 0; i--) { const j = int(i + 1); [a[i], a[j]] = [a[j], a[i]] } return a }
  const topic = room("storm")
  console.log(`# seed ${SEED} (PRESENCE_STORM_SEED replays it), window ${WINDOW_MS} ms, topic ${topic}`)

  // The truth: device → {user, status} of every meta that must be there.
  const truth = new Map()
  const live = new Map() // device → its Peer
  const watchers = []
  const seq = new Map() // user → next device number
  const newDevice = (user) => { const n = seq.get(user) || 0; seq.set(user, n + 1); return `${user}-d${n}` }
  let statuses = 0
  const newStatus = (tag) => `${tag}${statuses++}`
  const expected = () => {
    const v = {}
    for (const [device, {user, status}] of truth) (v[user] ||= []).push({device, status})
    return fields(v)
  }
  const members = () => [...watchers, ...live.values()]
  // The members held to be exact; see STRICT.
  const checked = () => members().filter((p) => STRICT || !p.how.startsWith("rejoin"))

  // converge waits (bounded) until the server holds the truth and every
  // member's Presence.list is the server's, phx_refs included.
  async function converge(what, ms = 10000) {
    const start = Date.now()
    for (;;) {
      const server = await serverView(topic)
      const sv = canon(server)
      let bad = null
      if (canon(fields(server)) !== canon(expected())) {
        bad = `the server is not the truth: ${mismatch(fields(server), expected())}`
      } else {
        const off = checked().filter((p) => canon(p.view()) !== sv)
        if (off.length) {
          const p = off[0]
          bad = `${off.length} members' Presence.list is not the server's (${off.slice(0, 10).map((q) => `${q.name}: ${q.how}, ${q.early} diffs before its state`).join(", ")}); ` +
            `${p.name}'s: ${mismatch(p.view(), server)}`
        }
      }
      if (!bad) return {server, ms: Date.now() - start}
      if (Date.now() - start > ms) assert.fail(`${what}: not exact within ${ms} ms: ${bad}`)
      await sleep(50)
    }
  }
  const settle = async (what, promises) => {
    const got = await within(15000, what, Promise.all(promises))
    const bad = got.filter((r) => r !== "ok")
    assert.deepEqual(bad, [], `${what}: ${bad.length} of ${got.length} failed`)
  }

  // Sockets: the initial devices, the watchers, the spares (new users and
  // further devices or reconnects of existing ones) and the late watcher.
  const users = Array.from({length: USERS}, (_, i) => `u${String(i).padStart(3, "0")}`)
  const initial = users.flatMap((u, i) => Array(1 + (i % 4)).fill(u))
  const spareUsers = Array.from({length: SPARES}, (_, i) => (i % 3 === 0 ? `n${String(i).padStart(3, "0")}` : users[int(USERS)]))
  const names = [...Array.from({length: WATCHERS}, (_, i) => `watcher${i}`), "latewatcher", ...initial, ...spareUsers]
  const sockets = []
  for (let i = 0; i < names.length; i += 100) {
    sockets.push(...await Promise.all(names.slice(i, i + 100).map((u) => connect(u))))
  }
  const watcherSockets = sockets.slice(0, WATCHERS)
  const lateSocket = sockets[WATCHERS]
  const initialSockets = sockets.slice(WATCHERS + 1, WATCHERS + 1 + initial.length)
  const spares = shuffle(sockets.slice(WATCHERS + 1 + initial.length))
  const tOpen = Date.now()

  for (const s of watcherSockets) watchers.push(new Peer(s, topic, null, null, "watcher", true))
  await settle("the watchers' joins", watchers.map((w) => w.join()))
  const joins = []
  for (const s of initialSockets) {
    const device = newDevice(s.user), status = newStatus("init")
    const p = new Peer(s, topic, device, status, "initial")
    truth.set(device, {user: s.user, status})
    live.set(device, p)
    joins.push(p.join())
  }
  await settle("the initial joins", joins)
  const c0 = await converge("the initial joins")
  const metasIn = (view) => Object.values(view).reduce((n, ms) => n + ms.length, 0)
  console.log(`# ${sockets.length} sockets open in ${tOpen - t0} ms; ${initial.length} devices of ${USERS} users joined, ` +
    `all exact ${Date.now() - tOpen} ms later (${metasIn(c0.server)} metas)`)

  // 1. One burst of BIG_BURST × 2 updates, sent at once into a quiet topic:
  // it must go as far fewer diffs than changes.
  await sleep(2 * WINDOW_MS)
  let mark = new Map(members().map((p) => [p, p.diffs]))
  const bigStart = Date.now()
  const replies = []
  const firsts = new Set()
  for (const device of shuffle([...live.keys()]).slice(0, BIG_BURST)) {
    const p = live.get(device)
    const s1 = newStatus("big"), s2 = newStatus("big")
    replies.push(push(p.channel, "presence:update", {meta: {device, status: s1}}))
    replies.push(push(p.channel, "presence:update", {meta: {device, status: s2}}))
    firsts.add(s1)
    truth.get(device).status = s2
  }
  const bigSent = Date.now() - bigStart
  await settle("the burst's updates", replies)
  await converge("the burst of updates")
  const bigChanges = 2 * BIG_BURST
  const bigDiffs = members().map((p) => p.diffs - mark.get(p))
  const interim = watchers[0].log.slice(mark.get(watchers[0])).flatMap((d) => Object.values(d.joins).flatMap((e) => e.metas))
    .filter((m) => firsts.has(m.status)).length
  console.log(`# burst: ${bigChanges} changes (${BIG_BURST} double updates) sent in ${bigSent} ms, exact after ${Date.now() - bigStart} ms; ` +
    `presence_diffs per member: ${Math.min(...bigDiffs)}..${Math.max(...bigDiffs)}; first updates a watcher saw: ${interim} of ${BIG_BURST}`)
  assert.ok(Math.max(...bigDiffs) < bigChanges / 2,
    `${bigChanges} changes within ${bigSent} ms went as up to ${Math.max(...bigDiffs)} presence_diffs: not coalesced`)

  // 2. The storm.
  mark = new Map(members().map((p) => [p, p.diffs]))
  const watcherMark = watchers.map((w) => w.log.length)
  const kinds = {update2: 7, leave: 3, disconnect: 2, kill: 3, join: 4, rejoin: 3, reconnect: 4, ghost: 2}
  const bag = Object.entries(kinds).flatMap(([k, n]) => Array(n).fill(k))
  const did = Object.fromEntries(Object.keys(kinds).map((k) => [k, 0]))
  const replaced = [] // {kind, device, status}: a meta replaced by another of the device
  const ghosts = new Set()
  let changes = 0
  let late = null
  const burstMs = []
  const stormStart = Date.now()
  for (let b = 0; b < BURSTS; b++) {
    const touched = new Set()
    const bStart = Date.now()
    const device = () => {
      const free = [...live.keys()].filter((d) => !touched.has(d))
      if (free.length === 0) return null
      const d = free[int(free.length)]
      touched.add(d)
      return d
    }
    for (let i = 0; i < OPS; i++) {
      if (b === BURSTS >> 1 && i === OPS >> 1) {
        late = new Peer(lateSocket, topic, null, null, `late watcher, burst ${b}`, true)
        late.pending.push(late.join())
      }
      const kind = bag[int(bag.length)]
      switch (kind) {
        case "update2": {
          const d = device()
          if (!d) continue
          const p = live.get(d)
          const s1 = newStatus("u"), s2 = newStatus("u")
          p.pending.push(push(p.channel, "presence:update", {meta: {device: d, status: s1}}))
          p.pending.push(push(p.channel, "presence:update", {meta: {device: d, status: s2}}))
          truth.get(d).status = s2
          replaced.push({kind, device: d, status: s2})
          changes += 2
          break
        }
        case "leave":
        case "disconnect":
        case "kill": {
          const d = device()
          if (!d) continue
          const p = live.get(d)
          if (kind === "leave") p.channel.leave()
          else if (kind === "disconnect") p.socket.disconnect()
          else kill(p.socket)
          live.delete(d)
          truth.delete(d)
          changes += 1
          break
        }
        case "join": {
          const s = spares.pop()
          if (!s) continue
          const d = newDevice(s.user), status = newStatus("j")
          const p = new Peer(s, topic, d, status, `join, burst ${b}`)
          touched.add(d)
          truth.set(d, {user: s.user, status})
          live.set(d, p)
          p.pending.push(p.join())
          changes += 1
          break
        }
        case "rejoin": { // phoenix.js: a second channel object of the topic, on the same socket
          const d = device()
          if (!d) continue
          const old = live.get(d)
          old.channel.leave()
          const status = newStatus("rj")
          const p = new Peer(old.socket, topic, d, status, `rejoin, burst ${b}`)
          truth.get(d).status = status
          live.set(d, p)
          p.pending.push(p.join())
          replaced.push({kind, device: d, status})
          changes += 2
          break
        }
        case "reconnect": { // the device's connection drops, a fresh socket of the user joins as it
          const at = spares.findIndex((s) => [...live.keys()].some((d) => live.get(d).user === s.user && !touched.has(d)))
          if (at < 0) continue
          const [s] = spares.splice(at, 1)
          const mine = [...live.keys()].filter((d) => live.get(d).user === s.user && !touched.has(d))
          const d = mine[int(mine.length)]
          touched.add(d)
          const old = live.get(d)
          if (rand() < 0.5) kill(old.socket)
          else old.socket.disconnect()
          const status = newStatus("rc")
          const p = new Peer(s, topic, d, status, `reconnect, burst ${b}`)
          truth.get(d).status = status
          live.set(d, p)
          p.pending.push(p.join())
          replaced.push({kind, device: d, status})
          changes += 2
          break
        }
        case "ghost": { // joins and leaves at once: inside one window, never sent
          const s = spares.pop()
          if (!s) continue
          const g = `${s.user}-ghost${ghosts.size}`
          const p = new Peer(s, topic, g, "ghost", "ghost")
          p.channel.join()
          p.channel.leave()
          ghosts.add(g)
          changes += 2
          break
        }
      }
      did[kind]++
    }
    burstMs.push(Date.now() - bStart)
    await sleep(10 + int(WINDOW_MS / 2))
  }
  const stormMs = Date.now() - stormStart
  // The replies of the channels still joined (a channel left or whose
  // socket closed gets none of those still on their way).
  watchers.push(late)
  await settle("the storm's joins and updates", members().flatMap((p) => p.pending))
  await converge("after the storm")
  const exactMs = Date.now() - stormStart - stormMs

  // Quiet: nothing more comes, nothing moves.
  const before = members().map((p) => p.diffs)
  await sleep(3 * WINDOW_MS)
  const c2 = await converge("after the quiet period", 0)
  assert.deepEqual(members().map((p) => p.diffs), before, "presence_diffs came after the views were exact")

  // Each user's device count, from the server's view, is the truth's.
  const devices = (view) => Object.fromEntries(Object.entries(view).map(([k, ms]) => [k, ms.length]).sort())
  const want = {}
  for (const {user} of truth.values()) want[user] = (want[user] || 0) + 1
  assert.deepEqual(devices(c2.server), Object.fromEntries(Object.entries(want).sort()), "devices per user")
  for (const g of ghosts) assert.ok(!Object.values(c2.server).flat().some((m) => m.device === g), `ghost ${g} stayed`)

  // What the diffs were: counts, and what they held (logged, not asserted:
  // where a window ends is up to timing).
  const stormDiffs = members().filter((p) => mark.has(p)).map((p) => p.diffs - mark.get(p))
  const w0 = watchers[0].log.slice(watcherMark[0])
  const seenJoins = w0.flatMap((d) => Object.entries(d.joins).flatMap(([key, e]) => e.metas.map((m) => ({key, m, d}))))
  const ghostSeen = seenJoins.filter(({m}) => ghosts.has(m.device)).length
  const oneDiff = {}
  for (const r of replaced) {
    const hit = seenJoins.find(({m}) => m.device === r.device && m.status === r.status)
    const o = (oneDiff[r.kind] ||= {ops: 0, oneDiff: 0})
    o.ops++
    if (hit && (hit.d.leaves[hit.key]?.metas || []).some((m) => m.device === r.device)) o.oneDiff++
  }
  console.log(`# storm: ${changes} changes in ${BURSTS} bursts of ${OPS} operations (${JSON.stringify(did)}), each burst sent in ` +
    `${Math.min(...burstMs)}..${Math.max(...burstMs)} ms, ${stormMs} ms in all; exact ${exactMs} ms after the last burst, ` +
    `${live.size} devices of ${Object.keys(c2.server).length} users remain`)
  console.log(`# storm: presence_diffs per member ${Math.min(...stormDiffs)}..${Math.max(...stormDiffs)} for ${changes} changes ` +
    `(watchers: ${watchers.slice(0, WATCHERS).map((w) => w.diffs - mark.get(w)).join(", ")}; ` +
    `the late watcher, joined mid-burst: ${late.diffs}); ghosts joined in a diff: ${ghostSeen} of ${ghosts.size}; ` +
    `old and new meta of a device in one diff: ${JSON.stringify(oneDiff)}`)

  // The channels that joined again on the same socket (see STRICT).
  const rejoined = members().filter((p) => p.how.startsWith("rejoin"))
  const off = rejoined.filter((p) => canon(p.view()) !== canon(c2.server))
  console.log(`# channels joined again on the same socket: ${off.length} of ${rejoined.length} hold a list that is not the server's` +
    (off.length ? ` (${off.map((p) => `${p.name}, ${p.how}, ${p.early} diffs before its state`).join("; ")})` : ""))
  console.log(`# whole test ${Date.now() - t0} ms`)
  if (!STRICT) {
    await t.test("the channels joined again on the same socket end exact too", {todo: "PRESENCE_STORM_STRICT=0: reported only"}, () => {
      assert.deepEqual(off.map((p) => `${p.name}: ${mismatch(p.view(), c2.server)}`), [])
    })
  }
})
