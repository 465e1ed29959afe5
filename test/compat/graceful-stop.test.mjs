// A deploy step with the official phoenix.js client: node n3 of a
// three-node cluster is stopped with SIGTERM (the Go harness does it on
// POST $PRESENCE_CONTROL_URL/stop?node=2&mode=term). Clients that reached
// n3 through the load balancer ($PRESENCE_LB_URL) reconnect by themselves
// to n1 or n2 and rejoin; one of them waits 1.5 s first. n3 told its peers
// it was stopping before it closed the connections, so they keep its
// presences for the grace ($PRESENCE_GRACE_MS): for the clients on n1 and
// n2, the key of every client that came back never leaves Presence.list
// (each onLeave for it still has metas: the old meta goes after the new one
// came), while the users pinned to n3, who cannot reconnect, leave when the
// grace ends, in one presence_diff. /api/v1/cluster on n1 shows n3 as
// stopping meanwhile, never down, and forgets it afterwards.
// Run through `go test -run TestPhoenixJSGracefulStop ./test/compat/`.

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {connectTo, closeAll, member, room, sleep, waitFor, serverView, URLS} from "./lib.mjs"

afterEach(closeAll)

const CONTROL = (process.env.PRESENCE_CONTROL_URL || "").replace(/\/+$/, "")
const LB = (process.env.PRESENCE_LB_URL || "").replace(/\/+$/, "")
const GRACE_MS = Number(process.env.PRESENCE_GRACE_MS || 0)
const STOPPED = 2 // n3
const LATE_MS = 1500 // the client that waits before reconnecting

const meta = (device) => ({meta: {device}})
const T0 = Date.now()

async function stop(node) {
  assert.ok(CONTROL, "PRESENCE_CONTROL_URL is not set: run through `go test ./test/compat/`")
  const res = await fetch(`${CONTROL}/stop?node=${node}&mode=term`, {method: "POST", signal: AbortSignal.timeout(30000)})
  assert.equal(res.status, 200, `stop node ${node}: ${await res.text()}`)
}

// cluster is n1's /api/v1/cluster: {name: status} of its peers.
async function cluster() {
  const res = await fetch(`${URLS[0]}/api/v1/cluster`, {signal: AbortSignal.timeout(5000)})
  const c = await res.json()
  return Object.fromEntries(c.replicas.filter((r) => !r.self).map((r) => [r.name, r]))
}

// on joins user to topic over a socket to base; tl is its timeline of
// presence events, for failure messages.
async function on(base, user, topic, params, opts) {
  const m = await member(await connectTo(base, user, opts), topic, params)
  m.tl = []
  const show = (ps) => Object.entries(ps).map(([k, {metas}]) => `${k}:${metas.map((x) => x.device)}`).join(",")
  m.channel.on("presence_diff", (p) => m.tl.push(`${Date.now() - T0}ms +[${show(p.joins)}] -[${show(p.leaves)}]`))
  m.opens = 0
  m.socket.onOpen(() => { m.opens++; m.openedAt = Date.now() })
  return m
}

test("graceful stop: clients that reconnect elsewhere within the grace never leave; the others leave when it ends", async () => {
  assert.equal(URLS.length, 3, `PRESENCE_URLS: ${JSON.stringify(URLS)}`)
  assert.ok(LB && GRACE_MS > LATE_MS, `PRESENCE_LB_URL ${LB}, PRESENCE_GRACE_MS ${GRACE_MS}`)
  const topic = room("graceful-stop")
  const watchers = [await on(URLS[0], "watcher1", topic, meta("n1")), await on(URLS[1], "watcher2", topic, meta("n2"))]
  // Through the balancer, on n3 while it runs. dot waits 1.5 s before
  // reconnecting (phoenix.js's default backoff starts at 10 ms).
  const movers = []
  for (const user of ["ann", "ben", "cid", "dot"]) {
    const opts = user === "dot" ? {reconnectAfterMs: () => LATE_MS} : {}
    movers.push(await on(LB, user, topic, meta(`${user}-lb`), opts))
  }
  // Pinned to n3: they keep retrying n3 and never come back.
  await on(URLS[STOPPED], "gus", topic, meta("gus-n3"))
  await on(URLS[STOPPED], "gil", topic, meta("gil-n3"))
  // hal has a device pinned to n3 and another on n1: his key stays.
  await on(URLS[STOPPED], "hal", topic, meta("hal-n3"))
  await on(URLS[0], "hal", topic, meta("hal-n1"))
  const stays = ["ann", "ben", "cid", "dot", "hal", "watcher1", "watcher2"]
  const leaving = ["gil", "gus"]
  const allKeys = [...stays, ...leaving].sort()
  for (const w of watchers) await w.waitView("everyone", (v) => Object.keys(v).sort().join() === allKeys.join())
  for (const url of URLS) {
    await waitFor(`${url} to list everyone`, async () => Object.keys(await serverView(topic, url)).sort().join() === allKeys.join())
  }
  const before = watchers[0].view()
  const oldRefs = new Map(movers.map((m) => [m.user, before[m.user][0].phx_ref]))
  const joinRefs = new Map(movers.map((m) => [m, m.channel.joinRef()]))
  const marks = watchers.map((w) => w.mark())
  const rawMarks = watchers.map((w) => w.raw.length)
  assert.equal((await cluster()).n3.status, "up")

  // n1's view of n3 while it stops, sampled every 20 ms.
  const t0 = Date.now()
  const statuses = []
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const r = (await cluster()).n3
      const s = r ? r.status : "absent"
      if (statuses.at(-1)?.s !== s) statuses.push({s, at: Date.now() - t0, graceLeft: r?.grace_left_ms})
      await sleep(20)
    }
  })()
  let stopMs, rejoinMs, goneMs, after
  try {
    await stop(STOPPED)
    stopMs = Date.now() - t0
    // n3 has exited; its grace runs on its peers.
    const now = await cluster()
    assert.equal(now.n3?.status, "stopping", `n1 reports the stopped n3 as ${JSON.stringify(now.n3)}`)
    assert.ok(now.n3.grace_left_ms > 0 && now.n3.grace_left_ms <= GRACE_MS, `grace left ${now.n3.grace_left_ms} ms`)

    // The balanced clients reconnect to n1 or n2 and rejoin with a new meta.
    rejoinMs = {}
    for (const m of movers) {
      await waitFor(`${m.user} to rejoin through the balancer`, () => {
        if (m.channel.state !== "joined" || m.channel.joinRef() === joinRefs.get(m)) return false
        return watchers.every((w) => w.metas(m.user).some((x) => x.phx_ref !== oldRefs.get(m.user)))
      }, GRACE_MS, () => ({state: m.channel.state, view: watchers[0].metas(m.user)}))
      assert.ok(m.opens >= 1, `${m.user}'s socket reopened`)
      rejoinMs[m.user] = m.openedAt - t0
    }
    assert.ok(rejoinMs.dot >= LATE_MS, `dot reconnected after ${rejoinMs.dot} ms`)

    // The pinned users leave when the grace ends, not before.
    for (const w of watchers) {
      await waitFor(`${w.user} to see gus and gil leave`, () => leaving.every((k) => !(k in w.view())), GRACE_MS + 5000,
        () => w.tl)
    }
    goneMs = Date.now() - t0
    assert.ok(goneMs >= GRACE_MS, `gus and gil left ${goneMs} ms after the stop began, within the ${GRACE_MS} ms grace`)
    for (const w of watchers) {
      await w.waitView("one meta per user that stays, none of n3's", (v) =>
        Object.keys(v).sort().join() === [...stays].sort().join() && Object.values(v).every((ms) => ms.length === 1 && !ms[0].device.endsWith("-n3")))
    }
    after = Object.fromEntries(stays.map((k) => [k, watchers[0].metas(k).map((x) => x.device)]))
    await waitFor("n1 to forget n3 after its grace", () => statuses.at(-1)?.s === "absent", 2000, () => statuses)
  } finally {
    sampling = false
    await sampler
  }
  for (const [i, w] of watchers.entries()) {
    const events = w.since(marks[i])
    const tl = w.tl.join("; ")
    // Every key that stays is in every list the client synced to.
    for (const e of events.filter((e) => e.kind === "sync")) {
      const missing = stays.filter((k) => !(k in e.list))
      assert.deepEqual(missing, [], `${w.user}: a key left Presence.list; timeline: ${tl}`)
    }
    for (const e of events.filter((e) => e.kind === "leave")) {
      if (stays.includes(e.key)) {
        assert.ok(e.current.metas.length > 0, `${w.user}: onLeave(${e.key}) with no metas left; timeline: ${tl}`)
      } else {
        assert.deepEqual(e.current.metas, [], `${w.user}: onLeave(${e.key}) keeps metas`)
      }
    }
    const left = events.filter((e) => e.kind === "leave" && leaving.includes(e.key)).map((e) => e.key).sort()
    assert.deepEqual(left, leaving, `${w.user}: one onLeave each for gus and gil; timeline: ${tl}`)
    // n3's presences that remain at the grace's end go in one presence_diff.
    const diffs = w.raw.slice(rawMarks[i]).filter((r) => r.event === "presence_diff")
    const withN3 = diffs.filter((r) => Object.values(r.payload.leaves).some(({metas}) => metas.some((x) => x.device.endsWith("-n3") || x.device.endsWith("-lb"))))
    assert.equal(withN3.length, 1, `${w.user}: n3's presences left in ${withN3.length} presence_diffs; timeline: ${tl}`)
    console.log(`# ${w.user}: ${diffs.length} presence_diffs after the stop (${withN3.length} with n3's leaves: ` +
      `${Object.keys(withN3[0].payload.leaves).sort()}); timeline: ${tl}`)
  }
  // up (until the stopping message came), stopping, then forgotten: never down
  const seen = statuses.map((x) => x.s)
  if (seen[0] === "up") seen.shift()
  assert.deepEqual(seen, ["stopping", "absent"], `n1's statuses of n3: ${JSON.stringify(statuses)}`)
  console.log(`# SIGTERM of n3 took ${stopMs} ms; the balanced clients reconnected elsewhere after ${JSON.stringify(rejoinMs)} ms; ` +
    `the pinned users left after ${goneMs} ms (grace ${GRACE_MS} ms); n1's statuses of n3: ${JSON.stringify(statuses)}; ` +
    `final: ${JSON.stringify(after)}`)
})
