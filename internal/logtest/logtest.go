package logtest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds WaitLine.
const waitTimeout = 3 * time.Second

// Buffer collects everything written to it. The zero value is empty and
// ready; a Buffer must not be copied after first use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the complete and partial lines written so far, without
// their newlines; nil when nothing was written.
func (b *Buffer) Lines() []string {
	s := strings.TrimRight(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Logger returns a logger writing the records of level and above into b,
// one line each in slog's text format (what an operator reads).
func (b *Buffer) Logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: level}))
}

// WaitLine waits until a line containing every one of subs was written
// and returns it; after 3 s it fails t with the lines written so far.
func (b *Buffer) WaitLine(t testing.TB, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		for _, l := range b.Lines() {
			if containsAll(l, subs) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q; lines:\n%s", subs, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
