// Package testenv is what the integration tests share about their
// surroundings: the tools they need (node, redis-server, chromium, the npm
// packages of test/compat), skipping without them in a plain `go test
// ./...` and failing without them under PRESENCE_REQUIRE_ALL=1 (the
// README's test command, and CI), so that nothing skips there in silence.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
)

// RequireAll reports whether every integration test must run
// (PRESENCE_REQUIRE_ALL=1).
func RequireAll() bool { return os.Getenv("PRESENCE_REQUIRE_ALL") == "1" }

var (
	mu      sync.Mutex
	skipped = map[string]int{} // why → tests skipped for it
)

// Need skips t, saying why, when ok is false, or fails it under
// PRESENCE_REQUIRE_ALL=1. The skips are counted for Report.
func Need(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if RequireAll() {
		t.Fatalf("%s (required: PRESENCE_REQUIRE_ALL=1)", why)
	}
	mu.Lock()
	skipped[why]++
	mu.Unlock()
	t.Skip(why)
}

// LookPath returns the path of tool, or skips t (see Need) with what to
// install.
func LookPath(t testing.TB, tool, install string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	Need(t, err == nil, fmt.Sprintf("%s not found in PATH (%s)", tool, install))
	return p
}

// Main runs the tests and then Report, and exits with their code: the
// TestMain of a package whose tests use Need.
func Main(m *testing.M) {
	code := m.Run()
	Report()
	os.Exit(code)
}

// Report says in one line which integration tests of this package were
// skipped and why. go test hides what a passing package prints, so the
// line goes to the terminal when there is one (a developer's `go test
// ./...`), else to stderr (shown with -v or on failure).
func Report() {
	mu.Lock()
	defer mu.Unlock()
	if len(skipped) == 0 {
		return
	}
	n := 0
	whys := make([]string, 0, len(skipped))
	for why, k := range skipped {
		n += k
		whys = append(whys, why)
	}
	sort.Strings(whys)
	pkg := "this package"
	if wd, err := os.Getwd(); err == nil {
		pkg = wd
	}
	line := fmt.Sprintf("testenv: %s: skipped %d integration test(s): %s; run ./test.sh to install what is missing and run everything\n",
		pkg, n, strings.Join(whys, "; "))
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		tty.WriteString(line)
		tty.Close()
		return
	}
	os.Stderr.WriteString(line)
}
