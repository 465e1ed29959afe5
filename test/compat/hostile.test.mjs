// Hostile clients next to the official phoenix.js client: what one client
// sends must never disconnect another. Run through `go test ./test/compat/`.

import {test, afterEach} from "node:test"
import assert from "node:assert/strict"
import {connect, closeAll, member, room, sleep, waitFor, WebSocket, SOCKET_URL} from "./lib.mjs"

afterEach(closeAll)

// rawSocket opens a bare ws client (V2 serializer) and resolves once open.
function rawSocket(user) {
  const ws = new WebSocket(`${SOCKET_URL}/websocket?vsn=2.0.0&user_id=${user}`)
  ws.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({code, reason: String(reason)})))
  return new Promise((resolve, reject) => {
    ws.on("open", () => resolve(ws))
    ws.on("error", reject)
  })
}

const bad = (json) => {
  // json holds "@@" where the raw byte 0xFF goes (invalid UTF-8)
  const [a, b] = json.split("@@")
  return Buffer.concat([Buffer.from(a), Buffer.from([0xff]), Buffer.from(b)])
}

test("a join meta and a broadcast holding invalid UTF-8 close the sender (1007), the members stay connected", async () => {
  const topic = room("utf8")
  const sock = await connect("alice")
  const alice = await member(sock, topic, {meta: {device: "laptop"}})
  let closed = false
  sock.onClose(() => { closed = true })

  const joiner = await rawSocket("mallory")
  joiner.send(bad(`["1","1","${topic}","phx_join",{"meta":{"name":"bad@@"}}]`), {binary: false})
  const jc = await joiner.closed
  assert.equal(jc.code, 1007, `join with invalid UTF-8: close ${jc.code} ${jc.reason}`)

  const caster = await rawSocket("eve")
  caster.send(`["1","1","${topic}","phx_join",{}]`)
  await sleep(100)
  caster.send(bad(`["1","2","${topic}","broadcast",{"x":"@@"}]`), {binary: false})
  const bc = await caster.closed
  assert.equal(bc.code, 1007, `broadcast with invalid UTF-8: close ${bc.code} ${bc.reason}`)

  await sleep(200)
  assert.equal(closed, false, "alice's socket was closed")
  assert.ok(sock.isConnected(), "alice is still connected")
  assert.deepEqual(Object.keys(alice.view()), ["alice"], "mallory was never tracked")
  const r = await alice.push("broadcast", {still: "here"})
  assert.equal(r.status, "ok", JSON.stringify(r))
  await waitFor("alice's heartbeat round trip", () => sock.isConnected(), 1000)
})
