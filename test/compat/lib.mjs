// Helpers shared by the compat tests: the official phoenix.js client (npm
// "phoenix", pinned in package.json) driven from Node against a presenced
// that the Go harness (compat_test.go) started. Nothing here waits without a
// bound: every wait has a deadline and fails with a description.

import assert from "node:assert/strict"
import {randomBytes} from "node:crypto"
import WebSocket from "ws"
import {Socket, Presence, LongPoll} from "phoenix"

export {Socket, Presence, LongPoll, WebSocket}

// PRESENCE_URL is presenced's base URL, e.g. http://127.0.0.1:41234.
// PRESENCE_URLS (cluster tests) lists every node's, comma-separated.
const trim = (u) => u.trim().replace(/\/+$/, "")
export const URLS = (process.env.PRESENCE_URLS || "").split(",").map(trim).filter(Boolean)
export const BASE = trim(process.env.PRESENCE_URL || "") || URLS[0] || ""
if (!BASE) throw new Error("PRESENCE_URL is not set: run these tests through `go test ./test/compat/`")
if (!URLS.length) URLS.push(BASE)
export const socketURL = (base) => base.replace(/^http/, "ws") + "/socket"
export const SOCKET_URL = socketURL(BASE)

// A unique room per test, so tests never see each other's presences.
export function room(name) {
  return `room:compat-${name}-${randomBytes(3).toString("hex")}`
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// waitFor polls fn (every 10 ms) until it returns a truthy value, which it
// returns; after ms it throws, naming what it waited for and, when given,
// what the state was.
export async function waitFor(what, fn, ms = 5000, state) {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) {
      const detail = state ? `; state: ${JSON.stringify(state())}` : ""
      throw new Error(`timed out after ${ms} ms waiting for ${what}${detail}`)
    }
    await sleep(10)
  }
}

// V1 (vsn 1.0.0) speaks JSON objects: phoenix.js sends its message object
// as is and takes the server's object as the message.
export const v1Codec = {
  vsn: "1.0.0",
  encode: (msg, callback) => callback(JSON.stringify(msg)),
  decode: (raw, callback) => callback(JSON.parse(raw)),
}

// The sockets a test opened; closeAll disconnects them (tests call it in
// afterEach so that a failed test leaves nothing connected).
const open = new Set()

// connect opens a phoenix.js Socket as user (dev mode: socket param
// user_id). opts are Socket options; the transport defaults to ws's
// WebSocket (Node 20 has no global WebSocket). Resolves once it is open.
export async function connect(user, opts = {}) {
  return connectTo(BASE, user, opts)
}

// connectTo is connect to the presenced at base (one of URLS).
export async function connectTo(base, user, opts = {}) {
  const socket = new Socket(socketURL(base), {
    transport: WebSocket,
    params: {user_id: user},
    timeout: 5000,
    heartbeatIntervalMs: 5000,
    ...opts,
  })
  socket.user = user
  const errors = []
  socket.onError((e) => errors.push(String(e && e.message ? e.message : e)))
  open.add(socket)
  socket.connect()
  await waitFor(`${user}'s socket to open`, () => socket.isConnected(), 5000, () => ({errors}))
  return socket
}

export async function closeAll() {
  const sockets = [...open]
  open.clear()
  await Promise.all(sockets.map((s) => new Promise((resolve) => {
    const t = setTimeout(resolve, 2000)
    s.disconnect(() => { clearTimeout(t); resolve() })
  })))
}

// member is one channel with a phoenix.js Presence and a record of every
// callback it fired, in order.
export class Member {
  constructor(socket, topic, params = {}) {
    this.socket = socket
    this.user = socket.user
    this.topic = topic
    this.channel = socket.channel(topic, params)
    this.presence = new Presence(this.channel)
    this.events = [] // {kind: "join"|"leave"|"sync", key, current, pres, list}
    this.raw = [] // raw presence_state / presence_diff payloads: {event, payload, joinRef}
    this.broadcasts = []
    this.presence.onJoin((key, current, pres) => this.events.push({kind: "join", key, current: clone(current), pres: clone(pres)}))
    this.presence.onLeave((key, current, pres) => this.events.push({kind: "leave", key, current: clone(current), pres: clone(pres)}))
    this.presence.onSync(() => this.events.push({kind: "sync", list: this.view()}))
    this.channel.on("presence_state", (p) => this.raw.push({event: "presence_state", payload: clone(p), joinRef: this.channel.joinRef()}))
    this.channel.on("presence_diff", (p) => this.raw.push({event: "presence_diff", payload: clone(p), joinRef: this.channel.joinRef()}))
    this.channel.on("broadcast", (p) => this.broadcasts.push(clone(p)))
  }

  // join resolves with the join reply once it is ok and the first
  // presence_state has been applied (onSync fired).
  async join() {
    const reply = await new Promise((resolve, reject) => {
      this.channel.join()
        .receive("ok", resolve)
        .receive("error", (r) => reject(new Error(`${this.user} join ${this.topic} refused: ${JSON.stringify(r)}`)))
        .receive("timeout", () => reject(new Error(`${this.user} join ${this.topic} timed out`)))
    })
    await waitFor(`${this.user}'s first presence_state on ${this.topic}`, () => this.events.some((e) => e.kind === "sync"), 5000)
    return reply
  }

  // push sends event and resolves with the reply {status, response}.
  push(event, payload) {
    return new Promise((resolve) => {
      this.channel.push(event, payload)
        .receive("ok", (response) => resolve({status: "ok", response}))
        .receive("error", (response) => resolve({status: "error", response}))
        .receive("timeout", () => resolve({status: "timeout"}))
    })
  }

  // view is the Presence list as {key: metas sorted by phx_ref}.
  // (Object.fromEntries: keys such as "__proto__" stay own properties.)
  view() {
    return Object.fromEntries(this.presence.list((key, {metas}) => [key, sortMetas(metas)]))
  }

  keys() {
    return this.presence.list((key) => key).sort()
  }

  metas(key) {
    return this.view()[key] || []
  }

  // since returns the events recorded after mark (an index from mark()).
  mark() { return this.events.length }
  since(mark, kind) { return this.events.slice(mark).filter((e) => !kind || e.kind === kind) }

  async waitView(what, pred, ms = 5000) {
    return waitFor(`${this.user} to see ${what}`, () => pred(this.view()), ms, () => this.view())
  }

  // ownJoin waits for the presence_diff of this member's own join (a
  // tracked member gets it after its presence_state, about when the others
  // get theirs): a test that counts the diffs after a mark must not start
  // counting before it came.
  async ownJoin(ms = 5000) {
    return waitFor(`${this.user}'s own join diff`,
      () => this.raw.some((r) => r.event === "presence_diff" && this.user in r.payload.joins), ms)
  }
}

export async function member(socket, topic, params) {
  const m = new Member(socket, topic, params)
  await m.join()
  return m
}

// serverView is the presence_state presenced (at base, default BASE) holds
// for topic (its loopback-only /api/v1/topics endpoint), normalised like
// Member.view.
export async function serverView(topic, base = BASE) {
  const res = await fetch(`${base}/api/v1/topics/${encodeURIComponent(topic)}`, {signal: AbortSignal.timeout(5000)})
  assert.equal(res.status, 200, `GET /api/v1/topics/${topic}`)
  const state = await res.json()
  return Object.fromEntries(Object.entries(state || {}).map(([key, {metas}]) => [key, sortMetas(metas)]))
}

export function sortMetas(metas) {
  return clone(metas).sort((a, b) => (a.phx_ref < b.phx_ref ? -1 : a.phx_ref > b.phx_ref ? 1 : 0))
}

export function clone(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v))
}

// fields projects a view onto some meta fields: {key: [{device, status}]}
// sorted, for comparisons that ignore refs.
export function fields(view, names = ["device", "status"]) {
  return Object.fromEntries(Object.entries(view).map(([key, metas]) => [key,
    metas.map((m) => Object.fromEntries(names.map((n) => [n, m[n]])))
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))]))
}
