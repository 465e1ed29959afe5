#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the integration tests
# need when it can (redis-server and chromium with apt as root on Debian,
# the npm packages of test/compat), then runs every test with
# PRESENCE_REQUIRE_ALL=1, so that nothing skips. Where it cannot install,
# it stops with one line saying what to install.
# `go test ./...` stays the quick inner loop (it skips what is missing and
# says so).
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "test.sh: $*" >&2; }

command -v go >/dev/null 2>&1 || { say "go not found: install Go $(sed -n 's/^go //p' go.mod) or newer (https://go.dev/dl/)"; exit 1; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing ${missing[*]}: install them (Debian: sudo apt-get install -y ${missing[*]}) and run ./test.sh again"
    exit 1
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  say "Node.js 20+ with npm is needed for the phoenix.js and Chromium tests: install it (https://nodejs.org) and run ./test.sh again"
  exit 1
fi
if [ ! -d test/compat/node_modules ] || [ test/compat/package-lock.json -nt test/compat/node_modules ]; then
  say "npm ci in test/compat"
  (cd test/compat && npm ci --no-audit --no-fund --loglevel=error)
fi

export PRESENCE_REQUIRE_ALL=1
go vet ./...
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { say "gofmt needed: $unformatted"; exit 1; }
go test -race -count=1 ./...
