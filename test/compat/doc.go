// Package compat checks presenced against real clients: the official
// phoenix.js client (npm "phoenix" 1.8.16, pinned in package-lock.json)
// driven from Node's test runner, and the demo page driven in Debian's
// chromium through playwright-core.
//
// The Go tests build ./cmd/presenced, start it on a free loopback port and
// run `node --test` on the *.test.mjs files with PRESENCE_URL set. The
// X-10 test also sets PRESENCE_CONTROL_URL, a small HTTP endpoint of the Go
// harness: POST /restart?mode=term|kill stops presenced (SIGTERM or
// SIGKILL) and starts it again on the same port.
//
// Requirements: node and test/compat/node_modules (`cd test/compat && npm
// ci`), and /usr/bin/chromium for the demo page test. Missing ones skip
// their tests, unless PRESENCE_REQUIRE_ALL=1 (CI), which makes them fail.
// Browser screenshots go to test/compat/out/ (git-ignored), or to
// $PRESENCE_COMPAT_OUT.
package compat
