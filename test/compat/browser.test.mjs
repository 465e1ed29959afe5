// The demo page (web/static, served by presenced at /) in Debian's chromium,
// driven by playwright-core (no downloaded browser). Two browser contexts
// are two people; the official phoenix.js client joins the same room from
// Node. Screenshots go to $PRESENCE_COMPAT_OUT. Run through
// `go test ./test/compat/`.

import {test, before, after, afterEach} from "node:test"
import assert from "node:assert/strict"
import path from "node:path"
import {launchChromium} from "./chromium.mjs"
import {BASE, connect, closeAll, member, serverView, sleep, waitFor} from "./lib.mjs"

const OUT = process.env.PRESENCE_COMPAT_OUT || path.resolve("out")
const UI_MS = 5000 // bound of every wait on the page

let browser
before(async () => {
  browser = await launchChromium()
})
after(async () => { await browser?.close() })
afterEach(closeAll)

// person opens the demo page in a fresh browser context (its own storage,
// its own connection); every page error or console error is recorded.
async function person() {
  const context = await browser.newContext({viewport: {width: 1100, height: 720}})
  const page = await context.newPage()
  page.setDefaultTimeout(UI_MS)
  const problems = []
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`))
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()} (${m.location().url})`) })
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`) })
  await page.goto(BASE + "/")
  return {context, page, problems}
}

async function enter(page, name, roomName) {
  await page.fill("#name", name)
  await page.fill("#room", roomName)
  await page.click("#enter")
  await page.waitForSelector("#inroom", {state: "visible"})
  await page.waitForFunction(() => document.querySelector("#conn").textContent === "connected", null, {timeout: UI_MS})
  await page.waitForSelector(`#users li[data-user="${name}"]`)
}

const user = (name) => `#users li[data-user="${name}"]`
const users = (page) => page.$$eval("#users li", (lis) => lis.map((li) => li.dataset.user))
const statuses = (page, name) => page.$$eval(`${user(name)} .device`, (ds) => ds.map((d) => d.dataset.status))
const logText = (page) => page.$eval("#log", (ol) => ol.textContent)

function roomName(tag) {
  return `compat-${tag}-${Math.random().toString(36).slice(2, 7)}`
}

test("demo page: two people see each other, a status change, a leave and a closed tab", async () => {
  const r = roomName("demo")
  const a = await person()
  const b = await person()
  await enter(a.page, "alice", r)
  await enter(b.page, "bob", r)

  for (const p of [a.page, b.page]) {
    await p.waitForSelector(user("alice"))
    await p.waitForSelector(user("bob"))
    await p.waitForFunction(() => document.querySelector("#count").textContent === "2", null, {timeout: UI_MS})
    assert.deepEqual(await users(p), ["alice", "bob"])
  }
  assert.deepEqual(await statuses(a.page, "bob"), ["online"])
  assert.deepEqual(Object.keys(await serverView("room:" + r)).sort(), ["alice", "bob"])
  assert.match(await logText(a.page), /bob came online/)
  assert.doesNotMatch(await logText(a.page), /alice/, "alice's own join is not news to alice")

  // bob goes away; alice sees it.
  await b.page.click('button[data-status="away"]')
  await a.page.waitForSelector(`${user("bob")} .device[data-status="away"]`)
  await b.page.waitForSelector(`${user("bob")} .device[data-status="away"]`)
  assert.deepEqual(await statuses(a.page, "bob"), ["away"], "one device, now away")
  assert.match(await logText(a.page), /bob is now .* away/)
  await b.page.click('button[data-status="busy"]')
  await a.page.waitForSelector(`${user("bob")} .device[data-status="busy"]`)
  await a.page.screenshot({path: path.join(OUT, "demo-two-people.png"), fullPage: true})
  await b.page.screenshot({path: path.join(OUT, "demo-two-people-bob.png"), fullPage: true})

  // bob leaves: alice sees him go; bob is back at the form.
  await b.page.click("#leave")
  await a.page.waitForSelector(user("bob"), {state: "detached"})
  await a.page.waitForFunction(() => document.querySelector("#count").textContent === "1", null, {timeout: UI_MS})
  assert.match(await logText(a.page), /bob went offline/)
  await b.page.waitForSelector("#join", {state: "visible"})

  // bob enters again: one device (his last status). Then Leave and Enter in
  // one task, before the old socket's close completes: still one device.
  await enter(b.page, "bob", r)
  await a.page.waitForSelector(user("bob"))
  await b.page.evaluate(() => { document.querySelector("#leave").click(); document.querySelector("#enter").click() })
  await b.page.waitForFunction(() => document.querySelector("#conn").textContent === "connected", null, {timeout: UI_MS})
  await sleep(1000) // a stray reconnect of the old socket would start after 100 ms
  assert.deepEqual(await statuses(a.page, "bob"), ["busy"], "bob back with a single device (his last status)")
  assert.deepEqual(await statuses(b.page, "bob"), ["busy"])
  assert.equal((await serverView("room:" + r)).bob?.length, 1, "the server holds one meta for bob")

  // bob closes his tab: alice sees him go at once.
  const t0 = Date.now()
  await b.context.close()
  await a.page.waitForSelector(user("bob"), {state: "detached"})
  console.log(`# closed tab → leave on the other page after ${Date.now() - t0} ms`)
  assert.deepEqual(await users(a.page), ["alice"])
  await a.page.screenshot({path: path.join(OUT, "demo-after-leave.png"), fullPage: true})

  assert.deepEqual(a.problems, [], "no page errors on alice's page")
  assert.deepEqual(b.problems, [], "no page errors on bob's page")
  await a.context.close()
})

test("demo page: the user's own row and tab are marked, activity is newest first, a narrow window stacks", async () => {
  const r = roomName("polish")
  const a = await person()
  assert.match(await a.page.textContent("#hint"), /second tab and enter the same name/)
  await enter(a.page, "alice", r)
  const second = await a.context.newPage() // a second tab of the same browser: a second device
  second.setDefaultTimeout(UI_MS)
  await second.goto(BASE + "/")
  await enter(second, "alice", r)
  await a.page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, `${user("alice")} .device`, {timeout: UI_MS})
  assert.match(await a.page.textContent(`${user("alice")} strong`), /^alice \(you\)$/)
  const devices = await a.page.$$eval(`${user("alice")} .device`, (ds) => ds.map((d) => [d.textContent, d.dataset.mine === "true"]))
  assert.deepEqual(devices.map(([, mine]) => mine).sort(), [false, true], "exactly one device is this tab")
  for (const [text, mine] of devices) assert.equal(text, "Chrome on Linux · online" + (mine ? " (you, this tab)" : ""))

  const js = await member(await connect("bob"), "room:" + r, {meta: {device: "node", status: "online"}})
  await a.page.waitForSelector(user("bob"))
  assert.doesNotMatch(await a.page.textContent(user("bob")), /you/, "others are not marked")
  await js.push("presence:update", {meta: {device: "node", status: "busy"}})
  await a.page.waitForSelector(`${user("bob")} .device[data-status="busy"]`)
  const entries = await a.page.$$eval("#log li", (lis) => lis.map((li) => li.textContent))
  assert.match(entries[0], /bob is now node · busy/, "the newest entry is first")
  assert.match(entries[1], /bob came online/)
  assert.equal(await a.page.$eval("#log", (el) => el.tagName), "UL", "no numbers on the activity")

  const box = async (sel) => (await a.page.$(sel)).boundingBox()
  let people = await box("#people"), activity = await box("#activity")
  assert.ok(activity.x > people.x + people.width / 2, "wide: side by side")
  await a.page.setViewportSize({width: 380, height: 760})
  people = await box("#people"); activity = await box("#activity")
  assert.ok(activity.y >= people.y + people.height - 1 && Math.abs(activity.x - people.x) < 2, `narrow: stacked (${JSON.stringify({people, activity})})`)
  const overflow = await a.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
  assert.ok(overflow <= 0, `narrow: no horizontal scroll (${overflow} px)`)
  await a.page.screenshot({path: path.join(OUT, "demo-narrow.png"), fullPage: true})
  assert.deepEqual(a.problems, [])
  await a.context.close()
  await closeAll()
})

test("demo page and the official phoenix.js client share a room", async () => {
  const r = roomName("mixed")
  const a = await person()
  await enter(a.page, "alice", r)
  const js = await member(await connect("nodejs"), "room:" + r, {meta: {device: "node", status: "busy"}})

  // The page shows the phoenix.js member; phoenix.js shows the page's.
  await a.page.waitForSelector(`${user("nodejs")} .device[data-status="busy"]`)
  await js.waitView("alice", (v) => v.alice?.length === 1)
  const device = js.metas("alice")[0].device
  assert.equal(device, "Chrome on Linux", "the page's meta names its browser and OS")
  assert.match(js.metas("alice")[0].tab, /^[a-z0-9]+$/, "and tells its tab from the user's others")

  // The page changes status: phoenix.js sees the same key, new meta, phx_ref_prev.
  const oldRef = js.metas("alice")[0].phx_ref
  await a.page.click('button[data-status="away"]')
  await js.waitView("alice away", (v) => v.alice?.[0]?.status === "away")
  assert.equal(js.metas("alice").length, 1)
  assert.equal(js.metas("alice")[0].phx_ref_prev, oldRef)
  assert.equal(js.metas("alice")[0].device, device)

  // phoenix.js changes status and adds a second device: the page shows both.
  assert.equal((await js.push("presence:update", {meta: {device: "node", status: "online"}})).status, "ok")
  await a.page.waitForSelector(`${user("nodejs")} .device[data-status="online"]`)
  await member(await connect("nodejs"), "room:" + r, {meta: {device: "node-2", status: "away"}})
  await a.page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, `${user("nodejs")} .device`, {timeout: UI_MS})
  assert.deepEqual((await statuses(a.page, "nodejs")).sort(), ["away", "online"])
  await a.page.screenshot({path: path.join(OUT, "demo-with-phoenix-js.png"), fullPage: true})

  // phoenix.js disconnects both: the page drops the user.
  await closeAll()
  await a.page.waitForSelector(user("nodejs"), {state: "detached"})
  await waitFor("the server to drop nodejs", async () => !(await serverView("room:" + r)).nodejs)
  assert.deepEqual(a.problems, [])
  await a.context.close()
})

test("demo page: after a server restart both pages reconnect, rejoin and show the same room", async () => {
  const control = (process.env.PRESENCE_CONTROL_URL || "").replace(/\/+$/, "")
  assert.ok(control, "PRESENCE_CONTROL_URL is not set")
  const r = roomName("restart")
  const a = await person()
  const b = await person()
  await enter(a.page, "alice", r)
  await enter(b.page, "bob", r)
  await b.page.click('button[data-status="away"]')
  await a.page.waitForSelector(`${user("bob")} .device[data-status="away"]`)

  const res = await fetch(`${control}/restart?mode=kill`, {method: "POST", signal: AbortSignal.timeout(30000)})
  assert.equal(res.status, 200, await res.text())
  for (const p of [a.page, b.page]) {
    await p.waitForFunction(() => document.querySelector("#conn").textContent === "connected", null, {timeout: 10000})
    await p.waitForSelector(`${user("alice")} .device[data-status="online"]`, {timeout: 10000})
    await p.waitForSelector(`${user("bob")} .device[data-status="away"]`, {timeout: 10000})
  }
  await sleep(300)
  for (const p of [a.page, b.page]) {
    assert.deepEqual(await users(p), ["alice", "bob"])
    assert.deepEqual(await statuses(p, "bob"), ["away"], "one device each, bob still away")
  }
  const after = await serverView("room:" + r)
  assert.deepEqual(Object.fromEntries(Object.entries(after).map(([k, ms]) => [k, ms.map((m) => m.status)])), {alice: ["online"], bob: ["away"]})
  await a.page.screenshot({path: path.join(OUT, "demo-after-restart.png"), fullPage: true})
  assert.deepEqual(a.problems.filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(p)), [])
  await a.context.close()
  await b.context.close()
})
