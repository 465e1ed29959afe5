package compat

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/testenv"
)

// readmeQuickStart is the README's phoenix.js quick start, pointed at s.
func readmeQuickStart(t *testing.T, s *server) string {
	t.Helper()
	code := testenv.READMEBlock(t, filepath.Join("..", "..", "README.md"), "## Quick start with phoenix.js", "js")
	if !strings.Contains(code, "ws://127.0.0.1:4000/socket") {
		t.Fatal("README has no phoenix.js quick start for ws://127.0.0.1:4000/socket")
	}
	return strings.ReplaceAll(code, "ws://127.0.0.1:4000", "ws://"+s.addr)
}

// runQuickStart runs the quick start under node until it prints want (or
// fails after 10 s), then interrupts it as Ctrl-C would.
func runQuickStart(t *testing.T, node, file, want string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, file)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 3 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lineLog{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the quick start ended; it printed %q", seen)
			}
			seen = append(seen, l)
			if strings.Contains(l, want) {
				cmd.Process.Signal(syscall.SIGINT) // Ctrl-C
				for range lines {
				}
				cmd.Wait()
				return seen
			}
		case <-timeout:
			t.Fatalf("no %q within 10 s; the quick start printed %q", want, seen)
		}
	}
}

// The README's phoenix.js quick start, exactly as written (only the port
// differs), prints alice's one device; run again right after Ctrl-C, it
// comes back to one device (the first run's socket left with its meta).
func TestREADMEQuickStart(t *testing.T) {
	node := requireNode(t)
	s := startServer(t)
	file, err := os.CreateTemp(".", "readme-quickstart-*.mjs") // here, so that node finds node_modules
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(file.Name()) })
	file.WriteString(readmeQuickStart(t, s))
	file.Close()
	first := runQuickStart(t, node, file.Name(), "alice: 1 device(s)")
	t.Logf("first run printed %q", first)
	second := runQuickStart(t, node, file.Name(), "alice: 1 device(s)")
	t.Logf("second run printed %q", second)
}
