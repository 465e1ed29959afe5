package loglimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func newTest() (*slog.Logger, *bytes.Buffer, *time.Time) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := New(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Handler().(*handler).now = func() time.Time { return now }
	return l, &buf, &now
}

func TestTruncatesLongValues(t *testing.T) {
	l, buf, _ := newTest()
	long := strings.Repeat("x", 1<<20)
	l.Warn("origin refused", "origin", long, "err", errors.New(long), slog.Group("g", "v", long))
	l.With("topic", long).Warn("other")
	if buf.Len() > 4*MaxValue+400 {
		t.Fatalf("logged %d bytes for values of 1 MiB", buf.Len())
	}
	if !strings.Contains(buf.String(), "(1048576 bytes)") {
		t.Fatalf("length not noted: %s", buf.String())
	}
}

func TestRateLimitsEachMessage(t *testing.T) {
	l, buf, now := newTest()
	for range 1000 {
		l.Warn("refused")
	}
	l.Warn("another")
	if n := strings.Count(buf.String(), "msg=refused"); n != Burst {
		t.Fatalf("%d records of a flooded message, want %d", n, Burst)
	}
	if !strings.Contains(buf.String(), "msg=another") {
		t.Fatal("another message was suppressed with the flooded one")
	}
	*now = now.Add(Every)
	l.Warn("refused")
	if !strings.Contains(buf.String(), "suppressed=990") {
		t.Fatalf("suppressed count missing: %s", buf.String())
	}
}

func TestEnabledPassesThrough(t *testing.T) {
	l := New(slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if l.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("info enabled under a warn handler")
	}
	if New(l) != l {
		t.Fatal("wrapping twice")
	}
}
