// The official phoenix.js client against a cluster of three presenced nodes
// (embedded NATS servers routed to each other), one client per node: they
// all see one presence set; updates and leaves cross nodes; a node killed
// with SIGKILL makes its users leave for the others after the down period
// (1 s here), and when it is back its clients reconnect and rejoin by
// themselves and everyone sees them again.
// Run through `go test -run TestPhoenixJSCluster ./test/compat/`: it starts
// the nodes, sets PRESENCE_URLS (the nodes' URLs, in order n1,n2,n3) and
// PRESENCE_CONTROL_URL (POST /stop?node=I&mode=kill, POST /start?node=I).

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {connectTo, closeAll, member, room, sleep, waitFor, serverView, fields, URLS} from "./lib.mjs"

afterEach(closeAll)

const CONTROL = (process.env.PRESENCE_CONTROL_URL || "").replace(/\/+$/, "")
const meta = (device, status = "online") => ({meta: {device, status}})

// How long a change may take to reach every client of the cluster, and how
// long a killed node's presences may take to leave (down period: 1 s).
const CONVERGE_MS = 5000
const DOWN_MS = 5000
// An idle spell longer than twice the down period.
const IDLE_MS = 2500

async function control(op, node, mode) {
  assert.ok(CONTROL, "PRESENCE_CONTROL_URL is not set: run through `go test ./test/compat/`")
  const q = new URLSearchParams({node: String(node), ...(mode ? {mode} : {})})
  const t0 = Date.now()
  const res = await fetch(`${CONTROL}/${op}?${q}`, {method: "POST", signal: AbortSignal.timeout(30000)})
  assert.equal(res.status, 200, `${op} node ${node} (${mode || ""}): ${await res.text()}`)
  return Date.now() - t0
}

const refsOf = (view) => Object.values(view).flat().map((m) => m.phx_ref)

// canon is JSON with object keys sorted at every level, so that lists built
// in different orders (clients see joins in different orders) compare equal.
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`
  return JSON.stringify(v)
}

// timeline is what a member received, one line per presence event with
// its time since the test file started, for failure messages.
const T0 = Date.now()
const timeline = (m) => `${m.user}@${m.node}: ` + m.tl.join("; ")
const keysDevices = (ps) => Object.entries(ps).map(([k, {metas}]) => `${k}:${metas.map((x) => x.device)}`).join(",")

// converged waits until every member's Presence.list is want (if given)
// and all lists are equal, phx_refs included; returns the common list.
async function converged(what, members, want, ms = CONVERGE_MS) {
  await waitFor(what, () => {
    const views = members.map((m) => m.view())
    if (want && !views.every((v) => canon(fields(v)) === canon(want))) return false
    return views.every((v) => canon(v) === canon(views[0]))
  }, ms, () => Object.fromEntries(members.map((m) => [`${m.user}@${m.node}`, m.view()])))
  return members[0].view()
}

// nodesAgree waits until every node's presence_state for topic equals view.
async function nodesAgree(topic, view, ms = CONVERGE_MS) {
  const got = {}
  await waitFor(`every node to list ${JSON.stringify(fields(view))}`, async () => {
    for (const [i, url] of URLS.entries()) got[`n${i + 1}`] = await serverView(topic, url)
    return Object.values(got).every((v) => canon(v) === canon(view))
  }, ms, () => got)
}

// on joins user, connected to node i (0-based), to topic with params.
async function on(i, user, topic, params, opts) {
  const m = await member(await connectTo(URLS[i], user, opts), topic, params)
  m.node = `n${i + 1}`
  m.tl = []
  m.channel.on("presence_state", (p) => m.tl.push(`${Date.now() - T0}ms state ${keysDevices(p)}`))
  m.channel.on("presence_diff", (p) => m.tl.push(`${Date.now() - T0}ms diff +[${keysDevices(p.joins)}] -[${keysDevices(p.leaves)}]`))
  return m
}

test("cluster: the harness gave three nodes", () => {
  assert.equal(URLS.length, 3, `PRESENCE_URLS: ${JSON.stringify(URLS)}`)
})

test("cluster: clients on three nodes converge to one presence set, metas and phx_refs included", async () => {
  const topic = room("cluster-one")
  const t0 = Date.now()
  const ms = [
    await on(0, "alice", topic, meta("n1-laptop")),
    await on(1, "bob", topic, meta("n2-phone", "away")),
    await on(2, "carol", topic, meta("n3-tablet", "busy")),
  ]
  const want = {
    alice: [{device: "n1-laptop", status: "online"}],
    bob: [{device: "n2-phone", status: "away"}],
    carol: [{device: "n3-tablet", status: "busy"}],
  }
  const view = await converged("all three clients to list alice, bob and carol alike", ms, want)
  console.log(`# one presence set on every client ${Date.now() - t0} ms after the first join`)
  const refs = refsOf(view)
  assert.equal(new Set(refs).size, 3, `every meta has its own phx_ref: ${refs}`)
  for (const m of ms) assert.deepEqual(m.keys(), ["alice", "bob", "carol"], `${m.user}@${m.node}: Presence.list keys`)
  await nodesAgree(topic, view)

  // A quiet cluster stays one set: no node holds a live, idle peer as down
  // (idle heartbeats must come more often than the down period, 1 s).
  const marks = ms.map((m) => m.mark())
  await sleep(IDLE_MS)
  for (const [i, m] of ms.entries()) {
    assert.deepEqual(m.since(marks[i]), [], `${m.user}@${m.node}: no presence event while the cluster is idle for ${IDLE_MS} ms; ${timeline(m)}`)
  }
  await nodesAgree(topic, view)
})

test("cluster: presence:update on one node reaches the other nodes' clients with phx_ref_prev, in one presence_diff", async () => {
  const topic = room("cluster-update")
  const ms = [
    await on(0, "alice", topic, meta("n1-laptop")),
    await on(1, "bob", topic, meta("n2-phone")),
    await on(2, "carol", topic, meta("n3-tablet")),
  ]
  await converged("alice, bob and carol everywhere", ms, {
    alice: [{device: "n1-laptop", status: "online"}],
    bob: [{device: "n2-phone", status: "online"}],
    carol: [{device: "n3-tablet", status: "online"}],
  })

  // Each client's own join diff has come (it would otherwise count as one
  // of the diffs after a mark below).
  for (const m of ms) await m.ownJoin(CONVERGE_MS)

  // Each client in turn updates its meta; the clients on the two other nodes see it.
  for (const [i, updater] of ms.entries()) {
    const key = updater.user
    const others = ms.filter((m) => m !== updater)
    const oldRef = others[0].metas(key)[0].phx_ref
    const rawMark = others.map((m) => m.raw.length)
    const mark = others.map((m) => m.mark())
    const status = `away-${i}`
    assert.deepEqual(await updater.push("presence:update", meta(updater.metas(key)[0].device, status)), {status: "ok", response: {}})
    for (const [j, m] of others.entries()) {
      await waitFor(`${m.user}@${m.node} to see ${key}@${updater.node} ${status}`, () => m.metas(key)[0]?.status === status, CONVERGE_MS, () => m.view())
      const [now] = m.metas(key)
      assert.equal(m.metas(key).length, 1, `${m.user}@${m.node}: ${key} has one meta: ${JSON.stringify(m.metas(key))}`)
      assert.equal(now.phx_ref_prev, oldRef, `${m.user}@${m.node}: the new meta carries phx_ref_prev = the old phx_ref`)
      assert.notEqual(now.phx_ref, oldRef, "an update gets a new phx_ref")
      // On the wire: one presence_diff joining the new meta and leaving the old one.
      const diffs = m.raw.slice(rawMark[j])
      assert.equal(diffs.length, 1, `${m.user}@${m.node}: one presence_diff for ${key}'s update: ${JSON.stringify(diffs)}`)
      const d = diffs[0].payload
      assert.deepEqual([Object.keys(d.joins), Object.keys(d.leaves)], [[key], [key]])
      assert.deepEqual(d.joins[key].metas.map((x) => [x.phx_ref, x.phx_ref_prev, x.status]), [[now.phx_ref, oldRef, status]])
      assert.deepEqual(d.leaves[key].metas.map((x) => x.phx_ref), [oldRef])
      // phoenix.js: onJoin (current = the old meta), onLeave (current = the new one); the key never left.
      const ev = m.since(mark[j])
      assert.deepEqual(ev.map((e) => [e.kind, e.key]), [["join", key], ["leave", key], ["sync", undefined]])
      assert.deepEqual(ev[0].current.metas.map((x) => x.phx_ref), [oldRef])
      assert.deepEqual(ev[1].current.metas.map((x) => x.phx_ref), [now.phx_ref])
    }
    const view = await converged(`every client to agree after ${key}'s update`, ms)
    await nodesAgree(topic, view)
  }
})

test("cluster: a client that disconnects (cleanly or by a cut connection) leaves for the other nodes' clients", async () => {
  const topic = room("cluster-leave")
  const a = await on(0, "alice", topic, meta("n1-laptop"))
  const b = await on(1, "bob", topic, meta("n2-phone"), {reconnectAfterMs: () => 60000})
  const c = await on(2, "carol", topic, meta("n3-tablet"))
  const w = await on(2, "watcher", topic, {})
  await converged("alice, bob and carol everywhere", [a, b, c, w], {
    alice: [{device: "n1-laptop", status: "online"}],
    bob: [{device: "n2-phone", status: "online"}],
    carol: [{device: "n3-tablet", status: "online"}],
  })

  // carol (n3) disconnects: alice (n1) and bob (n2) see her leave.
  let marks = [a.mark(), b.mark()]
  let t0 = Date.now()
  c.socket.disconnect()
  for (const m of [a, b, w]) await m.waitView("carol gone", (v) => !("carol" in v), CONVERGE_MS)
  const cleanMs = Date.now() - t0
  for (const [i, m] of [a, b].entries()) {
    const leaves = m.since(marks[i], "leave")
    assert.deepEqual(leaves.map((e) => [e.key, e.current.metas.length, e.pres.metas.map((x) => x.device)]), [["carol", 0, ["n3-tablet"]]],
      `${m.user}@${m.node}: onLeave for carol`)
  }

  // bob's (n2) connection is cut without a close frame: alice (n1) and the watcher (n3) see him leave.
  marks = [a.mark(), w.mark()]
  t0 = Date.now()
  b.socket.conn.terminate()
  for (const m of [a, w]) await m.waitView("bob gone", (v) => !("bob" in v), CONVERGE_MS)
  const abruptMs = Date.now() - t0
  for (const [i, m] of [a, w].entries()) {
    assert.deepEqual(m.since(marks[i], "leave").map((e) => e.key), ["bob"], `${m.user}@${m.node}: onLeave for bob`)
  }
  const view = await converged("alice alone everywhere", [a, w], {alice: [{device: "n1-laptop", status: "online"}]})
  await nodesAgree(topic, view)
  console.log(`# leave seen on the other nodes after disconnect(): ${cleanMs} ms; after a cut connection: ${abruptMs} ms`)
})

test("cluster: a node killed with SIGKILL: its users leave for the others; restarted, its clients reconnect, rejoin and are seen again", async () => {
  const topic = room("cluster-kill")
  const KILLED = 2 // n3
  const ms = {
    alice: await on(0, "alice", topic, meta("n1-laptop")),
    bob: await on(1, "bob", topic, meta("n2-phone")),
    carol: await on(KILLED, "carol", topic, meta("n3-tablet")),
    // carol's second device, on n1: her key must stay, with this meta only.
    carol1: await on(0, "carol", topic, meta("n1-phone")),
    dave: await on(KILLED, "dave", topic, meta("n3-desk", "away")),
  }
  const all = Object.values(ms)
  const onKilled = [ms.carol, ms.dave]
  const survivors = all.filter((m) => !onKilled.includes(m))
  const want = {
    alice: [{device: "n1-laptop", status: "online"}],
    bob: [{device: "n2-phone", status: "online"}],
    carol: [{device: "n1-phone", status: "online"}, {device: "n3-tablet", status: "online"}],
    dave: [{device: "n3-desk", status: "away"}],
  }
  const before = await converged("the full set everywhere", all, want)
  await nodesAgree(topic, before)
  const devRef = (view, key, device) => view[key].find((m) => m.device === device).phx_ref
  const oldN3Refs = new Set([devRef(before, "carol", "n3-tablet"), devRef(before, "dave", "n3-desk")])
  const keptRefs = new Set(refsOf(before).filter((r) => !oldN3Refs.has(r)))
  const oldJoinRefs = new Map(onKilled.map((m) => [m, m.channel.joinRef()]))
  const closes = new Map(onKilled.map((m) => [m, 0]))
  for (const m of onKilled) m.socket.onClose(() => closes.set(m, closes.get(m) + 1))
  const marks = new Map(survivors.map((m) => [m, m.mark()]))

  // Kill n3: dave and carol's n3 device leave for the clients on n1 and n2.
  await control("stop", KILLED, "kill")
  const t0 = Date.now()
  const down = {
    alice: [{device: "n1-laptop", status: "online"}],
    bob: [{device: "n2-phone", status: "online"}],
    carol: [{device: "n1-phone", status: "online"}],
  }
  await converged("n3's presences to leave on n1's and n2's clients", survivors, down, DOWN_MS)
  const leaveMs = Date.now() - t0
  for (const m of survivors) {
    const leaves = m.since(marks.get(m), "leave")
    assert.deepEqual(leaves.map((e) => [e.key, e.pres.metas.map((x) => x.device)]).sort(), [["carol", ["n3-tablet"]], ["dave", ["n3-desk"]]],
      `${m.user}@${m.node}: onLeave for n3's metas only; ${timeline(m)}`)
    assert.deepEqual(m.since(marks.get(m), "join"), [], `${m.user}@${m.node}: no join while n3 is down; ${timeline(m)}`)
  }
  for (const m of onKilled) await waitFor(`${m.user}@n3's socket to see the connection close`, () => closes.get(m) > 0, CONVERGE_MS)
  const survivorNodes = URLS.filter((_, i) => i !== KILLED)
  const downView = survivors[0].view()
  for (const url of survivorNodes) assert.deepEqual(await serverView(topic, url), downView, `${url} lists what its clients see`)

  // Restart n3 (same name, same arguments): its clients reconnect and rejoin by themselves.
  const startMs = await control("start", KILLED)
  const t1 = Date.now()
  for (const m of onKilled) {
    await waitFor(`${m.user}@n3 to rejoin with a new join_ref and a presence_state for it`, () =>
      m.channel.state === "joined" && m.channel.joinRef() !== oldJoinRefs.get(m) &&
      m.raw.some((r) => r.event === "presence_state" && r.joinRef === m.channel.joinRef()),
    15000, () => ({state: m.channel.state, joinRef: m.channel.joinRef(), old: oldJoinRefs.get(m), closes: closes.get(m)}))
  }
  const rejoinMs = Date.now() - t1
  const after = await converged("everyone to see carol's and dave's n3 presences again", all, want, 10000)
  const backMs = Date.now() - t1
  await nodesAgree(topic, after)
  // The rejoined metas are new (new phx_refs); the others kept theirs.
  const newN3Refs = new Set([devRef(after, "carol", "n3-tablet"), devRef(after, "dave", "n3-desk")])
  assert.deepEqual([...newN3Refs].filter((r) => oldN3Refs.has(r)), [], `n3's metas have new phx_refs: ${JSON.stringify(after)}`)
  assert.deepEqual(new Set(refsOf(after).filter((r) => !newN3Refs.has(r))), keptRefs, "n1's and n2's metas kept their phx_refs")
  for (const m of survivors) {
    const joins = m.since(marks.get(m), "join")
    assert.deepEqual(joins.map((e) => [e.key, e.pres.metas.map((x) => x.device)]).sort(), [["carol", ["n3-tablet"]], ["dave", ["n3-desk"]]],
      `${m.user}@${m.node}: onJoin for n3's rejoined metas; ${timeline(m)}`)
  }

  // The restarted node replicates: dave's update reaches n1 and n2 with phx_ref_prev.
  const daveRef = devRef(after, "dave", "n3-desk")
  assert.equal((await ms.dave.push("presence:update", meta("n3-desk", "back"))).status, "ok")
  const final = await converged("dave back everywhere", all, {...want, dave: [{device: "n3-desk", status: "back"}]})
  assert.equal(final.dave[0].phx_ref_prev, daveRef)
  await nodesAgree(topic, final)
  console.log(`# SIGKILL of n3 → its presences left on n1/n2 clients in ${leaveMs} ms; restart took ${startMs} ms; ` +
    `n3's clients rejoined ${rejoinMs} ms and everyone converged ${backMs} ms after it was healthy`)
})
