package logtest

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Concurrent writers lose nothing; Lines splits records; Logger honours
// its level.
func TestBuffer(t *testing.T) {
	var b Buffer
	if b.Lines() != nil || b.String() != "" {
		t.Fatalf("zero Buffer: %q", b.String())
	}
	log := b.Logger(slog.LevelInfo)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { log.Info("hello", "i", i) })
	}
	wg.Wait()
	log.Debug("hidden")
	lines := b.Lines()
	if len(lines) != 8 || slices.ContainsFunc(lines, func(l string) bool { return !strings.Contains(l, "msg=hello") }) {
		t.Fatalf("lines %q", lines)
	}
}

// WaitLine returns the first line with every substring, written before or
// while it waits.
func TestWaitLine(t *testing.T) {
	var b Buffer
	log := b.Logger(slog.LevelInfo)
	log.Info("refused", "origin", "a")
	go func() {
		time.Sleep(20 * time.Millisecond)
		log.Warn("refused", "origin", "b")
	}()
	if l := b.WaitLine(t, "refused", "origin=b"); !strings.Contains(l, "level=WARN") {
		t.Fatalf("line %q", l)
	}
}
