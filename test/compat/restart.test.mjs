// Server restarts with the official phoenix.js client: presenced restarts
// under its clients (the Go harness does it on POST
// $PRESENCE_CONTROL_URL/restart), the clients reconnect by themselves,
// every channel rejoins with a new join_ref, gets a fresh presence_state and
// ends up with the same Presence.list as the server — with the new
// phx_refs only. WebSocket V2, WebSocket V1 and LongPoll clients together.

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {connect, closeAll, member, room, waitFor, serverView, fields, v1Codec, LongPoll} from "./lib.mjs"

afterEach(closeAll)

const CONTROL = (process.env.PRESENCE_CONTROL_URL || "").replace(/\/+$/, "")

async function restart(mode) {
  assert.ok(CONTROL, "PRESENCE_CONTROL_URL is not set: run through `go test ./test/compat/`")
  const t0 = Date.now()
  const res = await fetch(`${CONTROL}/restart?mode=${mode}`, {method: "POST", signal: AbortSignal.timeout(30000)})
  assert.equal(res.status, 200, `restart (${mode}): ${await res.text()}`)
  return Date.now() - t0
}

const meta = (device, status = "online") => ({meta: {device, status}})

async function scenario(mode) {
  const topic = room(`x10-${mode}`)
  const sockets = {
    alice: await connect("alice"),
    bob: await connect("bob", v1Codec),
    carol: await connect("carol", {transport: LongPoll}),
    watcher: await connect("watcher"),
  }
  const closes = {}
  const opens = {}
  for (const [name, s] of Object.entries(sockets)) {
    closes[name] = []
    opens[name] = 0
    s.onClose((e) => closes[name].push(e && e.code))
    s.onOpen(() => { opens[name]++ })
  }
  const members = {
    alice: await member(sockets.alice, topic, meta("ws-v2")),
    bob: await member(sockets.bob, topic, meta("ws-v1", "away")),
    carol: await member(sockets.carol, topic, meta("longpoll", "busy")),
    watcher: await member(sockets.watcher, topic, {}),
  }
  const all = Object.values(members)
  for (const m of all) await m.waitView("alice, bob and carol", (v) => Object.keys(v).length === 3)
  const before = await serverView(topic)
  assert.deepEqual(members.watcher.view(), before)
  const oldRefs = new Set(Object.values(before).flat().map((m) => m.phx_ref))
  const oldJoinRefs = Object.fromEntries(all.map((m) => [m.user, m.channel.joinRef()]))
  const rawMark = Object.fromEntries(all.map((m) => [m.user, m.raw.length]))

  const restartMs = await restart(mode)
  const t0 = Date.now()

  // Every channel rejoined (new join_ref), got a presence_state for that join,
  // and its list is the server's again, made of new phx_refs only.
  for (const m of all) {
    await waitFor(`${m.user} to rejoin with a new join_ref and re-sync`, () => {
      if (m.channel.state !== "joined" || m.channel.joinRef() === oldJoinRefs[m.user]) return false
      if (!m.raw.some((r) => r.event === "presence_state" && r.joinRef === m.channel.joinRef())) return false
      const v = m.view()
      const refs = Object.values(v).flat().map((x) => x.phx_ref)
      return Object.keys(v).length === 3 && refs.every((r) => !oldRefs.has(r))
    }, 15000, () => ({state: m.channel.state, joinRef: m.channel.joinRef(), old: oldJoinRefs[m.user], view: m.view(), closes}))
  }
  const resyncMs = Date.now() - t0
  const after = await serverView(topic)
  for (const m of all) assert.deepEqual(m.view(), after, `${m.user}'s list equals the server's after the restart`)
  assert.deepEqual(fields(after), fields(before), "same users, devices and statuses as before the restart")

  for (const m of all) {
    const raw = m.raw.slice(rawMark[m.user])
    const states = raw.filter((r) => r.event === "presence_state")
    // One presence_state per rejoin, carrying the new join_ref.
    assert.deepEqual(states.map((r) => r.joinRef), [m.channel.joinRef()], `${m.user}: presence_state after the rejoin`)
    assert.equal(m.presence.pendingDiffs.length, 0, `${m.user}: no diff left queued`)
    const queued = raw.filter((r) => r.event === "presence_diff" && r.joinRef === m.channel.joinRef() && raw.indexOf(r) < raw.indexOf(states[0]))
    console.log(`# ${mode}: ${m.user} rejoined as ${m.channel.joinRef()} (was ${oldJoinRefs[m.user]}), close codes ${JSON.stringify(closes[m.user])}, ` +
      `${raw.length} presence events since the restart, ${queued.length} diff(s) queued before its presence_state`)
    assert.ok(opens[m.user] >= 1, `${m.user}'s socket opened again`)
    assert.ok(closes[m.user].length >= 1, `${m.user}'s socket saw the connection close`)
  }
  // A server-initiated close must not use 1000: phoenix.js up to 1.8.15 takes it as final and
  // never reconnects. LongPoll reports its own codes.
  for (const name of ["alice", "bob", "watcher"]) {
    assert.ok(!closes[name].includes(1000), `${name}: WebSocket closed with ${closes[name]} (1000 would stop older clients from reconnecting)`)
  }

  // The rejoined channels work: an update and a broadcast reach everyone.
  assert.equal((await members.carol.push("presence:update", meta("longpoll", "online"))).status, "ok")
  for (const m of all) await m.waitView("carol online", (v) => v.carol?.[0]?.status === "online")
  assert.equal((await members.bob.push("broadcast", {after: mode})).status, "ok")
  for (const m of [members.alice, members.carol, members.watcher]) {
    await waitFor(`${m.user} to get bob's broadcast`, () => m.broadcasts.some((b) => b.after === mode))
  }
  console.log(`# ${mode}: restart took ${restartMs} ms; all clients re-synced ${resyncMs} ms later`)
}

test("graceful restart (SIGTERM): reconnect, rejoin with a new join_ref, re-sync from the fresh presence_state", async () => {
  await scenario("term")
})

test("crash restart (SIGKILL): reconnect, rejoin with a new join_ref, re-sync from the fresh presence_state", async () => {
  await scenario("kill")
})
