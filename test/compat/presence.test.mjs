// The official phoenix.js client (1.8.16) against presenced's built-in
// room:* channel. Several scenarios are those of phoenix.js's own Presence
// tests (list, list with a chooser, onJoin/onLeave, metas by device),
// here played against a real server.
// Run through `go test ./test/compat/` (it starts presenced and sets
// PRESENCE_URL).

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {
  connect, closeAll, member, room, sleep, waitFor, serverView, fields, v1Codec,
  LongPoll, WebSocket, Socket, SOCKET_URL,
} from "./lib.mjs"

afterEach(closeAll)

const meta = (device, status = "online") => ({meta: {device, status}})

test("three sockets join with metas and all see the same Presence.list", async () => {
  const topic = room("three")
  const a = await member(await connect("alice"), topic, meta("laptop"))
  const b = await member(await connect("bob"), topic, meta("phone", "away"))
  const c = await member(await connect("carol"), topic, meta("tablet", "busy"))
  const all = [a, b, c]
  for (const m of all) await m.waitView("alice, bob and carol", (v) => Object.keys(v).length === 3)

  const want = {
    alice: [{device: "laptop", status: "online"}],
    bob: [{device: "phone", status: "away"}],
    carol: [{device: "tablet", status: "busy"}],
  }
  assert.deepEqual(fields(a.view()), want)
  assert.deepEqual(b.view(), a.view(), "bob's list equals alice's (phx_refs included)")
  assert.deepEqual(c.view(), a.view(), "carol's list equals alice's")
  assert.deepEqual(await serverView(topic), a.view(), "the clients' list equals the server's presence_state")

  const refs = Object.values(a.view()).flat().map((m) => m.phx_ref)
  assert.equal(new Set(refs).size, 3, `every meta has its own phx_ref: ${refs}`)
  for (const r of refs) assert.ok(typeof r === "string" && r.length > 0, `phx_ref ${JSON.stringify(r)}`)

  // list() returns the presences; list(chooser) maps them.
  const listed = a.presence.list()
  assert.equal(listed.length, 3)
  for (const p of listed) assert.ok(Array.isArray(p.metas) && p.metas.length === 1, JSON.stringify(p))
  assert.deepEqual(a.presence.list((key, {metas}) => `${key}:${metas[0].device}`).sort(),
    ["alice:laptop", "bob:phone", "carol:tablet"])

  // The first joiner got one presence_state (itself) and diffs: its
  // own join (the track's broadcast reaches the joiner too, as in Phoenix),
  // then bob's and carol's; every diff carries both joins and leaves.
  const states = a.raw.filter((r) => r.event === "presence_state")
  assert.equal(states.length, 1)
  assert.deepEqual(Object.keys(states[0].payload), ["alice"])
  const diffs = a.raw.filter((r) => r.event === "presence_diff")
  for (const r of diffs) {
    assert.ok("joins" in r.payload && "leaves" in r.payload, `presence_diff carries joins and leaves: ${JSON.stringify(r.payload)}`)
    assert.deepEqual(r.payload.leaves, {})
  }
  assert.deepEqual(diffs.map((r) => Object.keys(r.payload.joins).join()), ["alice", "bob", "carol"])
  assert.deepEqual(diffs[0].payload.joins, states[0].payload, "the joiner's own join diff repeats what the state held")
  console.log(`# alice's presence events: ${a.raw.map((r) => r.event === "presence_state" ? "state" : "diff(" + Object.keys(r.payload.joins) + ")").join(", ")}`)
  // onJoin for bob and carol came with current undefined (first appearance).
  const joins = a.events.filter((e) => e.kind === "join" && e.key !== "alice")
  assert.deepEqual(joins.map((e) => [e.key, e.current, e.pres.metas.length]), [["bob", undefined, 1], ["carol", undefined, 1]])
})

test("onJoin and onLeave as Phoenix fires them, metas by device", async () => {
  const topic = room("callbacks")
  // A join without meta only watches.
  const w = await member(await connect("watcher"), topic, {})
  assert.deepEqual(w.view(), {}, "a watcher is not present")
  assert.deepEqual(await serverView(topic), {})

  // First device: onJoin(key, undefined, {metas: [a1]}).
  let mark = w.mark()
  const s1 = await connect("alice")
  await member(s1, topic, meta("a1"))
  await w.waitView("alice on a1", (v) => v.alice?.length === 1)
  let ev = w.since(mark)
  assert.deepEqual(ev.map((e) => e.kind), ["join", "sync"])
  assert.equal(ev[0].key, "alice")
  assert.equal(ev[0].current, undefined, "onJoin: current is undefined for a first join")
  assert.deepEqual(ev[0].pres.metas.map((m) => m.device), ["a1"])
  const ref1 = ev[0].pres.metas[0].phx_ref

  // A second device of the same key: onJoin reports only the new meta.
  mark = w.mark()
  const s2 = await connect("alice")
  await member(s2, topic, meta("a2"))
  await w.waitView("alice on a1 and a2", (v) => v.alice?.length === 2)
  ev = w.since(mark)
  assert.deepEqual(ev.map((e) => e.kind), ["join", "sync"])
  assert.deepEqual(ev[0].current.metas.map((m) => m.device), ["a1"], "onJoin: current is the presence before the join")
  assert.deepEqual(ev[0].pres.metas.map((m) => m.device), ["a2"], "onJoin: newPres holds only the joined meta")
  // Joined metas are appended after the existing ones.
  assert.deepEqual(w.presence.list((k, {metas}) => metas.map((m) => m.device))[0], ["a1", "a2"])
  assert.deepEqual(await serverView(topic), w.view())

  // One device leaves, the key stays.
  mark = w.mark()
  let t0 = Date.now()
  s1.disconnect()
  await w.waitView("alice on a2 only", (v) => v.alice?.length === 1, 2000)
  const firstLeaveMs = Date.now() - t0
  ev = w.since(mark)
  assert.deepEqual(ev.map((e) => e.kind), ["leave", "sync"])
  assert.deepEqual(ev[0].current.metas.map((m) => m.device), ["a2"], "onLeave: current is the presence after the removal")
  assert.deepEqual(ev[0].pres.metas.map((m) => [m.device, m.phx_ref]), [["a1", ref1]])

  // The last meta leaves, onLeave gets current {metas: []}, the key is gone.
  mark = w.mark()
  t0 = Date.now()
  s2.disconnect()
  await w.waitView("alice gone", (v) => !("alice" in v), 2000)
  const lastLeaveMs = Date.now() - t0
  ev = w.since(mark)
  assert.deepEqual(ev.map((e) => e.kind), ["leave", "sync"])
  assert.deepEqual(ev[0].current.metas, [], "onLeave: current has no metas when the key is gone")
  assert.deepEqual(ev[0].pres.metas.map((m) => m.device), ["a2"])
  assert.deepEqual(await serverView(topic), {})
  console.log(`# disconnect → leave seen by the watcher: ${firstLeaveMs} ms, ${lastLeaveMs} ms`)
})

test("presence:update gives phx_ref_prev on the wire and the same key with the new meta", async () => {
  const topic = room("update")
  const a = await member(await connect("alice"), topic, meta("laptop"))
  const b = await member(await connect("bob"), topic, meta("phone"))
  await a.waitView("bob", (v) => v.bob)
  // bob's own join diff reaches bob about when it reaches alice: wait for
  // it too, or it could land after the mark below.
  await b.ownJoin()
  const oldRef = b.metas("alice")[0].phx_ref

  const rawMark = b.raw.length
  const mark = b.mark()
  assert.deepEqual(await a.push("presence:update", meta("laptop", "away")), {status: "ok", response: {}})
  await b.waitView("alice away", (v) => v.alice?.[0]?.status === "away")

  // On the wire: one presence_diff with the new meta (phx_ref_prev = old ref) and the old meta's leave.
  const diffs = b.raw.slice(rawMark)
  assert.equal(diffs.length, 1, `one presence_diff for an update: ${JSON.stringify(diffs)}`)
  const d = diffs[0].payload
  assert.deepEqual(Object.keys(d.joins), ["alice"])
  assert.deepEqual(Object.keys(d.leaves), ["alice"])
  const [joined] = d.joins.alice.metas
  const [left] = d.leaves.alice.metas
  assert.equal(joined.phx_ref_prev, oldRef, "the joined meta carries phx_ref_prev = the old phx_ref")
  assert.notEqual(joined.phx_ref, oldRef, "an update gets a new phx_ref")
  assert.equal(left.phx_ref, oldRef)
  assert.deepEqual([joined.device, joined.status, left.status], ["laptop", "away", "online"])

  // The client: same key, one meta, the new one; onJoin(current=[old], new=[new]) then onLeave(current=[new], left=[old]).
  assert.deepEqual(b.metas("alice").map((m) => [m.phx_ref, m.status]), [[joined.phx_ref, "away"]])
  const ev = b.since(mark)
  assert.deepEqual(ev.map((e) => [e.kind, e.key]), [["join", "alice"], ["leave", "alice"], ["sync", undefined]])
  assert.deepEqual(ev[0].current.metas.map((m) => m.phx_ref), [oldRef])
  assert.deepEqual(ev[0].pres.metas.map((m) => m.phx_ref), [joined.phx_ref])
  assert.deepEqual(ev[1].current.metas.map((m) => m.phx_ref), [joined.phx_ref])
  assert.deepEqual(ev[1].pres.metas.map((m) => m.phx_ref), [oldRef])
  await a.waitView("its own update", (v) => v.alice?.[0]?.status === "away")
  assert.deepEqual(a.view(), b.view())
  assert.deepEqual(await serverView(topic), b.view())

  // presence:untrack: alice leaves but stays subscribed; presence:track brings her back as a first join.
  assert.equal((await a.push("presence:untrack", {})).status, "ok")
  await b.waitView("alice untracked", (v) => !("alice" in v))
  await a.waitView("itself untracked", (v) => !("alice" in v))
  const notTracked = await a.push("presence:update", meta("laptop", "busy"))
  assert.equal(notTracked.status, "error", `update after untrack: ${JSON.stringify(notTracked)}`)
  const m2 = b.mark()
  assert.equal((await a.push("presence:track", meta("laptop", "busy"))).status, "ok")
  await b.waitView("alice busy", (v) => v.alice?.[0]?.status === "busy")
  const rejoin = b.since(m2, "join")
  assert.equal(rejoin.length, 1)
  assert.equal(rejoin[0].current, undefined)
  assert.equal(rejoin[0].pres.metas[0].phx_ref_prev, undefined, "a fresh track has no phx_ref_prev")
})

test("a closed socket's presence leaves for the others at once (clean and abrupt close)", async () => {
  const topic = room("close")
  const sa = await connect("alice")
  // carol must not reconnect by herself after her connection is cut.
  const sc = await connect("carol", {reconnectAfterMs: () => 60000})
  await member(sa, topic, meta("laptop"))
  await member(sc, topic, meta("phone"))
  const b = await member(await connect("bob"), topic, meta("desk"))
  await b.waitView("alice and carol", (v) => v.alice && v.carol)

  let t0 = Date.now()
  sa.disconnect()
  await b.waitView("alice gone after disconnect()", (v) => !v.alice, 1000)
  const cleanMs = Date.now() - t0

  // No close frame: the TCP connection just ends.
  t0 = Date.now()
  sc.conn.terminate()
  await b.waitView("carol gone after the connection was cut", (v) => !v.carol, 1000)
  const abruptMs = Date.now() - t0
  assert.deepEqual(Object.keys(b.view()), ["bob"])
  assert.deepEqual(await serverView(topic), b.view())
  console.log(`# leave seen after disconnect(): ${cleanMs} ms; after a cut connection: ${abruptMs} ms`)
})

test("V1 (vsn 1.0.0) and V2 (vsn 2.0.0) clients in one room", async () => {
  const topic = room("vsn")
  const frames = []
  const v1 = await connect("alice", {
    ...v1Codec,
    decode: (raw, cb) => { frames.push(raw); v1Codec.decode(raw, cb) },
  })
  const a = await member(v1, topic, meta("v1-laptop"))
  const b = await member(await connect("bob"), topic, meta("v2-phone"))
  await a.waitView("bob", (v) => v.bob)
  await b.waitView("alice", (v) => v.alice)
  assert.deepEqual(a.view(), b.view())
  assert.deepEqual(await serverView(topic), a.view())

  // Updates both ways.
  assert.equal((await a.push("presence:update", meta("v1-laptop", "away"))).status, "ok")
  await b.waitView("alice away", (v) => v.alice[0].status === "away")
  assert.ok(b.metas("alice")[0].phx_ref_prev, "V2 sees phx_ref_prev of a V1 update")
  assert.equal((await b.push("presence:update", meta("v2-phone", "busy"))).status, "ok")
  await a.waitView("bob busy", (v) => v.bob[0].status === "busy")
  assert.ok(a.metas("bob")[0].phx_ref_prev, "V1 sees phx_ref_prev of a V2 update")
  assert.deepEqual(a.view(), b.view())

  // Broadcast from V1 to V2 and back.
  assert.equal((await a.push("broadcast", {text: "from v1"})).status, "ok")
  assert.equal((await b.push("broadcast", {text: "from v2"})).status, "ok")
  await waitFor("bob to get alice's broadcast", () => b.broadcasts.length === 1)
  await waitFor("alice to get bob's broadcast", () => a.broadcasts.length === 1)
  assert.deepEqual(b.broadcasts, [{text: "from v1"}])
  assert.deepEqual(a.broadcasts, [{text: "from v2"}])

  // Heartbeat over V1.
  const rtt = await new Promise((resolve) => v1.ping(resolve))
  assert.ok(rtt < 1000, `V1 heartbeat answered in ${rtt} ms`)

  // What V1 got on the wire: JSON objects, never a join_ref (the V1 serializer has no join_ref field).
  assert.ok(frames.length >= 6, `${frames.length} V1 frames`)
  for (const raw of frames) {
    const f = JSON.parse(raw)
    assert.ok(f && typeof f === "object" && !Array.isArray(f), `V1 frame is an object: ${raw}`)
    assert.deepEqual(Object.keys(f).sort(), ["event", "payload", "ref", "topic"], `V1 frame fields: ${raw}`)
  }
  const pushes = frames.map((r) => JSON.parse(r)).filter((f) => f.event !== "phx_reply")
  for (const f of pushes) assert.equal(f.ref, null, `pushes and broadcasts carry ref null: ${JSON.stringify(f)}`)

  // A V1 leave.
  a.channel.leave()
  await b.waitView("alice gone", (v) => !v.alice)
})

test("LongPoll and WebSocket clients in one room", async () => {
  const topic = room("longpoll")
  const lp = await connect("carol", {transport: LongPoll})
  assert.ok(lp.conn instanceof LongPoll, "carol's transport is LongPoll")
  const c = await member(lp, topic, meta("lp-laptop"))
  const b = await member(await connect("bob"), topic, meta("ws-phone"))
  assert.ok(b.socket.conn instanceof WebSocket, "bob's transport is a WebSocket")
  await c.waitView("bob", (v) => v.bob)
  await b.waitView("carol", (v) => v.carol)
  assert.deepEqual(c.view(), b.view())
  assert.deepEqual(await serverView(topic), b.view())

  assert.equal((await c.push("presence:update", meta("lp-laptop", "away"))).status, "ok")
  await b.waitView("carol away", (v) => v.carol[0].status === "away")
  assert.equal((await b.push("presence:update", meta("ws-phone", "busy"))).status, "ok")
  await c.waitView("bob busy", (v) => v.bob[0].status === "busy")
  assert.deepEqual(c.view(), b.view())

  assert.equal((await c.push("broadcast", {n: 1})).status, "ok")
  assert.equal((await b.push("broadcast", {n: 2})).status, "ok")
  await waitFor("bob to get carol's broadcast", () => b.broadcasts.length === 1)
  await waitFor("carol to get bob's broadcast", () => c.broadcasts.length === 1)
  assert.deepEqual([b.broadcasts, c.broadcasts], [[{n: 1}], [{n: 2}]])

  // A third member on a second LongPoll socket sees both.
  const d = await member(await connect("dave", {transport: LongPoll}), topic, meta("lp-2"))
  await d.waitView("bob and carol", (v) => v.bob && v.carol)
  assert.deepEqual(d.view(), await serverView(topic))

  // carol leaves the channel (the phx_leave goes out as a POST): bob and dave see it.
  c.channel.leave()
  await b.waitView("carol gone", (v) => !v.carol, 2000)
  await d.waitView("carol gone", (v) => !v.carol, 2000)
})

test("broadcast is relayed to the room's other members, not back to the sender", async () => {
  const topic = room("broadcast")
  const a = await member(await connect("alice"), topic, meta("laptop"))
  const b = await member(await connect("bob"), topic, meta("phone"))
  const w = await member(await connect("watcher"), topic, {})
  const other = await member(await connect("eve"), room("elsewhere"), meta("x"))
  const payload = {text: "hello ünïcode ✓", n: 42, nested: {list: [1, "two", null]}}
  assert.deepEqual(await a.push("broadcast", payload), {status: "ok", response: {}})
  await waitFor("bob and the watcher to get the broadcast", () => b.broadcasts.length && w.broadcasts.length)
  assert.deepEqual(b.broadcasts, [payload])
  assert.deepEqual(w.broadcasts, [payload])
  await sleep(200)
  assert.deepEqual(a.broadcasts, [], "the sender does not get its own broadcast")
  assert.deepEqual(other.broadcasts, [], "another room does not get it")
  assert.deepEqual(b.broadcasts, [payload], "delivered once")
})

test("keys named __proto__ and constructor are ordinary presences", async () => {
  const topic = room("proto")
  const w = await member(await connect("watcher"), topic, {})
  const p = await member(await connect("__proto__"), topic, meta("p"))
  await member(await connect("constructor"), topic, meta("c"))
  await w.waitView("both keys", (v) => Object.hasOwn(v, "__proto__") && Object.hasOwn(v, "constructor"))
  assert.deepEqual(w.keys(), ["__proto__", "constructor"])
  assert.deepEqual(await serverView(topic), w.view())
  assert.equal(({}).constructor, Object, "Object.prototype untouched")
  p.socket.disconnect()
  await w.waitView("__proto__ gone", (v) => !Object.hasOwn(v, "__proto__"))
  assert.deepEqual(w.keys(), ["constructor"])
})

test("a second channel object on the same topic replaces the first (one meta)", async () => {
  const topic = room("dup")
  const b = await member(await connect("bob"), topic, meta("phone"))
  const sa = await connect("alice")
  const first = await member(sa, topic, meta("first"))
  await b.waitView("alice (first)", (v) => v.alice?.[0]?.device === "first")
  // phoenix.js leaves the joined channel object of the same topic before the new join.
  const second = await member(sa, topic, meta("second"))
  await b.waitView("alice (second) only", (v) => v.alice?.length === 1 && v.alice[0].device === "second")
  await second.waitView("itself (second) only", (v) => v.alice?.length === 1 && v.alice[0].device === "second")
  assert.equal(first.channel.state, "closed")
  assert.deepEqual(await serverView(topic), b.view())
})

test("heartbeats are answered at once; a longPollFallbackMs client stays on WebSocket", async () => {
  const s = await connect("alice", {longPollFallbackMs: 2500})
  await waitFor("the primary transport's health check", () => s.primaryPassedHealthCheck, 3000)
  assert.ok(s.conn instanceof WebSocket, "no fallback to LongPoll")
  const rtts = []
  for (let i = 0; i < 5; i++) rtts.push(await new Promise((resolve) => s.ping(resolve)))
  assert.ok(Math.max(...rtts) < 500, `heartbeat round trips ${rtts} ms`)
  const topic = room("hb")
  const m = await member(s, topic, meta("laptop"))
  assert.deepEqual(Object.keys(m.view()), ["alice"])
})

test("a socket without user_id is refused (dev mode): phoenix.js errors and never opens", async () => {
  const bad = new Socket(SOCKET_URL, {transport: WebSocket, reconnectAfterMs: () => 60000})
  const errs = []
  bad.onError((e) => errs.push(e))
  bad.connect()
  try {
    await waitFor("the refused connection to error", () => errs.length > 0, 3000)
    assert.equal(bad.isConnected(), false)
  } finally {
    bad.disconnect()
  }
})
