// The demo page of a node in token mode (--jwt-secret), in Debian's
// chromium through playwright-core: it asks for a token instead of a name,
// shows how to mint one, tells what is wrong with a token it cannot use, and
// two people with real tokens (minted by `presenced token`, TOKEN_ALICE and
// TOKEN_BOB) see each other under their tokens' sub. Run through
// `go test ./test/compat/` (TestDemoPageTokenMode).

import {test, before, after} from "node:test"
import assert from "node:assert/strict"
import path from "node:path"
import {createHmac} from "node:crypto"
import {launchChromium} from "./chromium.mjs"
import {BASE, serverView} from "./lib.mjs"

const OUT = process.env.PRESENCE_COMPAT_OUT || path.resolve("out")
const UI_MS = 5000

let browser
before(async () => {
  browser = await launchChromium()
})
after(async () => { await browser?.close() })

// sign makes an HS256 JWT with claims, signed with secret.
function sign(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url")
  const body = b64({alg: "HS256", typ: "JWT"}) + "." + b64(claims)
  return body + "." + createHmac("sha256", secret).update(body).digest("base64url")
}

async function person() {
  const context = await browser.newContext({viewport: {width: 1100, height: 720}})
  const page = await context.newPage()
  page.setDefaultTimeout(UI_MS)
  const problems = []
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`))
  await page.goto(BASE + "/")
  await page.waitForSelector("#tokenfield", {state: "visible"})
  return {context, page, problems}
}

async function tryToken(page, token, roomName) {
  await page.fill("#token", token)
  await page.fill("#room", roomName)
  await page.click("#enter")
}

const formError = async (page) => {
  await page.waitForSelector("#formerror", {state: "visible"})
  return page.textContent("#formerror")
}

test("token mode: the page asks for a token and says how to mint one", async () => {
  const a = await person()
  assert.equal(await a.page.isVisible("#name"), false, "no name field: the server ignores user_id")
  assert.match(await a.page.textContent("#tokenfield"), /presenced token --sub alice --ttl 1h/)
  assert.match(await a.page.textContent("#hint"), /paste the same token/)
  await a.page.screenshot({path: path.join(OUT, "demo-token-prompt.png"), fullPage: true})

  await tryToken(a.page, "not-a-token", "lobby")
  assert.match(await formError(a.page), /not a JWT/)

  const now = Math.floor(Date.now() / 1000)
  await tryToken(a.page, sign({sub: "mallory", exp: now - 3600}, process.env.TOKEN_SECRET), "lobby")
  assert.match(await formError(a.page), /expired/)

  // Signed with another secret: the page cannot tell, the server refuses it.
  await tryToken(a.page, sign({sub: "mallory", exp: now + 3600}, "another-secret-another-secret-32b"), "lobby")
  await a.page.waitForFunction(() => /refused this token/.test(document.querySelector("#formerror").textContent), null, {timeout: UI_MS})
  assert.equal(await a.page.isVisible("#join"), true, "back at the form")
  await a.page.screenshot({path: path.join(OUT, "demo-token-refused.png"), fullPage: true})
  assert.deepEqual(a.problems, [])
  await a.context.close()
})

test("token mode: two people with minted tokens see each other under their tokens' sub", async () => {
  const r = `compat-token-${Math.random().toString(36).slice(2, 7)}`
  const a = await person(), b = await person()
  await tryToken(a.page, process.env.TOKEN_ALICE, r)
  await tryToken(b.page, process.env.TOKEN_BOB, r)
  for (const p of [a.page, b.page]) {
    await p.waitForFunction(() => document.querySelector("#conn").textContent === "connected", null, {timeout: UI_MS})
    await p.waitForSelector('#users li[data-user="alice"]')
    await p.waitForSelector('#users li[data-user="bob"]')
  }
  assert.equal(await a.page.textContent("#me"), "alice")
  assert.match(await b.page.textContent('#users li[data-user="bob"] strong'), /bob \(you\)/)
  await b.page.click('button[data-status="away"]')
  await a.page.waitForSelector('#users li[data-user="bob"] .device[data-status="away"]')
  assert.deepEqual(Object.keys(await serverView("room:" + r)).sort(), ["alice", "bob"])
  await a.page.screenshot({path: path.join(OUT, "demo-token-mode.png"), fullPage: true})
  assert.deepEqual(a.problems, [])
  assert.deepEqual(b.problems, [])
  await a.context.close()
  await b.context.close()
})
