// A LongPoll client that goes away without a phx_leave (tab closed, network
// gone): phoenix.js just stops polling, so the server only learns it from
// the missing polls. Its presence must still leave, once the session
// expires (presenced: no poll for 1.5 × the 10 s window, like Phoenix's
// window_ms). Slow by nature (~15 s), so it runs in its own file, in
// parallel with presence.test.mjs.

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {connect, closeAll, member, room, serverView, LongPoll} from "./lib.mjs"

afterEach(closeAll)

test("an abandoned LongPoll session's presence leaves when the session expires", async () => {
  const topic = room("lp-abandon")
  const b = await member(await connect("bob"), topic, {meta: {device: "ws"}})
  const lp = await connect("carol", {transport: LongPoll})
  await member(lp, topic, {meta: {device: "longpoll"}})
  await b.waitView("carol", (v) => v.carol)

  const t0 = Date.now()
  lp.disconnect() // aborts the pending poll, sends nothing
  await b.waitView("carol gone after her session expired", (v) => !v.carol, 25000)
  const ms = Date.now() - t0
  console.log(`# abandoned LongPoll session: presence left after ${ms} ms`)
  assert.ok(ms >= 5000, `carol left after ${ms} ms: before any session timeout — what ended the session?`)
  assert.deepEqual(Object.keys(await serverView(topic)), ["bob"])
})
