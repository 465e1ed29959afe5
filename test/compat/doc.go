// Package compat checks presenced against real clients: the official
// phoenix.js client (npm "phoenix" 1.8.16, pinned in package-lock.json)
// driven from Node's test runner, and the demo page driven in Debian's
// chromium through playwright-core.
//
// TestPhoenixJSBrowser (phoenixjs-browser.test.mjs) loads phoenix.js's own
// browser bundle (node_modules/phoenix/priv/static/phoenix.js) on a page in
// chromium, served by the Node test from another loopback port: join,
// Presence sync across two browser contexts and a status update, then
// LongPoll twice: on a page without window.WebSocket, and with
// longPollFallbackMs behind the test's proxy, which refuses WebSocket
// upgrades.
//
// The Go tests build ./cmd/presenced, start it on a free loopback port and
// run `node --test` on the *.test.mjs files with PRESENCE_URL set. The
// restart tests also set PRESENCE_CONTROL_URL, a small HTTP endpoint of the Go
// harness: POST /restart?mode=term|kill stops presenced (SIGTERM or
// SIGKILL) and starts it again on the same port.
//
// TestPhoenixJSCluster (cluster.test.mjs) starts three nodes, n1…n3, on
// loopback, each with an embedded NATS server routed to the others', and
// sets PRESENCE_URLS to their URLs (comma-separated, in order); its control
// endpoint takes node=I (0-based) and also serves POST /stop?mode=term|kill
// (the node stays down) and POST /start (same port, name and arguments).
//
// TestPhoenixJSGracefulStop (graceful-stop.test.mjs) starts such a cluster
// with PRESENCE_SHUTDOWN_GRACE=3s and a TCP load balancer of its own in
// front of n3 (PRESENCE_LB_URL), which sends each connection to n3 while it
// accepts them and to n1 or n2 afterwards; it stops n3 with SIGTERM and
// checks what the clients of n1 and n2 see.
//
// Requirements: node and test/compat/node_modules (`cd test/compat && npm
// ci`), and /usr/bin/chromium for the demo page test. Missing ones skip
// their tests, unless PRESENCE_REQUIRE_ALL=1, which makes them fail; the
// repository's ./test.sh installs them and sets it.
// Browser screenshots go to test/compat/out/ (git-ignored), or to
// $PRESENCE_COMPAT_OUT.
package compat
