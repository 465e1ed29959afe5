// Runs static/app.js against a fake DOM and socket (run by web_test.go):
// users whose names are properties of every plain object ("constructor",
// "__proto__", "toString", ...) come, change and go like any other.
import {test} from "node:test"
import assert from "node:assert/strict"
import {readFileSync} from "node:fs"
import vm from "node:vm"

class El {
  constructor() { this.children = []; this.dataset = {}; this.className = ""; this.hidden = false; this.value = ""; this.listeners = {} }
  get textContent() { return this._text ?? "" }
  set textContent(v) { this._text = v; this.children = [] }
  get classList() { return {toggle() {}} }
  append(...xs) { this.children.push(...xs) }
  prepend(x) { this.children.unshift(x) }
  addEventListener(ev, f) { this.listeners[ev] = f }
}

// page loads app.js in a fresh realm and returns its elements and sockets.
function page() {
  const els = {}, sockets = []
  class WebSocket {
    constructor(url) { this.url = url; this.sent = []; this.readyState = 0; sockets.push(this) }
    send(data) { this.sent.push(data) }
    close() {}
  }
  const ctx = vm.createContext({
    document: {
      getElementById: (id) => (els[id] ??= new El()),
      createElement: () => new El(),
      querySelectorAll: () => [],
    },
    navigator: {userAgent: "node"},
    location: {protocol: "http:", host: "127.0.0.1:4000"},
    WebSocket, setInterval: () => 0, clearInterval() {}, setTimeout: () => 0, clearTimeout() {},
  })
  vm.runInContext(readFileSync(new URL("static/app.js", import.meta.url), "utf8"), ctx, {filename: "app.js"})
  return {els: new Proxy(els, {get: (o, id) => (o[id] ??= new El())}), sockets}
}

const meta = (ref, extra = "") => `{"phx_ref":"${ref}","device":"d${ref}","status":"online"${extra}}`
const users = (els) => els.users.children.map((li) => li.dataset.user).sort()

test("names of Object.prototype's properties are ordinary users", () => {
  const {els, sockets} = page()
  els.name.value = "constructor"
  els.room.value = "lobby"
  els.join.listeners.submit({preventDefault() {}})
  const ws = sockets[0]
  assert.match(ws.url, /user_id=constructor$/)
  ws.readyState = 1
  ws.onopen()
  const [joinRef, , topic, event] = JSON.parse(ws.sent[0])
  assert.deepEqual([topic, event], ["room:lobby", "phx_join"])
  const frame = (ev, payload) => ws.onmessage({data: `["${joinRef}",null,"room:lobby","${ev}",${payload}]`})

  frame("presence_state", `{"constructor":{"metas":[${meta(1)}]},"__proto__":{"metas":[${meta(2)}]}}`)
  assert.deepEqual(users(els), ["__proto__", "constructor"])

  // joins of new names, a second device, a leave of a name nobody has
  frame("presence_diff", `{"joins":{"toString":{"metas":[${meta(3)}]},"constructor":{"metas":[${meta(4)}]},` +
    `"hasOwnProperty":{"metas":[${meta(5)}]}},"leaves":{"valueOf":{"metas":[${meta(6)}]}}}`)
  assert.deepEqual(users(els), ["__proto__", "constructor", "hasOwnProperty", "toString"])
  const mine = els.users.children.find((li) => li.dataset.user === "constructor")
  assert.equal(mine.children[1], " — 2 devices")
  assert.equal(mine.className, "you", "the user's own row is marked")

  // an update (leave and join of the same name), then leaves
  frame("presence_diff", `{"joins":{"__proto__":{"metas":[${meta(7, ',"phx_ref_prev":"2"')}]}},` +
    `"leaves":{"__proto__":{"metas":[${meta(2)}]},"toString":{"metas":[${meta(3)}]},"constructor":{"metas":[${meta(1)}]}}}`)
  assert.deepEqual(users(els), ["__proto__", "constructor", "hasOwnProperty"])
  frame("presence_diff", `{"joins":{},"leaves":{"constructor":{"metas":[${meta(4)}]},"__proto__":{"metas":[${meta(7)}]}}}`)
  assert.deepEqual(users(els), ["hasOwnProperty"])
  assert.equal(els.count.textContent, 1)
  const text = (el) => typeof el === "string" ? el : el.textContent + el.children.map(text).join("")
  const log = els.log.children.map(text).join("\n")
  for (const line of ["toString came online", "constructor joined on another device", "__proto__ is now", "constructor went offline", "__proto__ went offline"]) {
    assert.ok(log.includes(line), `log has "${line}":\n${log}`)
  }
})
