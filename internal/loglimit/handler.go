package loglimit

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of New.
const (
	// MaxValue is the longest string value logged as it is, in bytes: a
	// stack trace fits, a megabyte header does not.
	MaxValue = 4096
	// Burst records of one message pass at once; then one per Every.
	Burst = 10
	Every = time.Second
	// maxKeys bounds the messages remembered (they are constants in our
	// code, so the bound is only a safety net).
	maxKeys = 1024
)

// New wraps l: string attributes longer than MaxValue bytes are cut (with
// their length noted), and each message (the record's text, so the same
// warning about different clients shares one budget) passes Burst times
// and then once per Every; what is dropped in between is counted in a
// "suppressed" attribute on the next record that passes. A nil l gives a
// logger that discards.
func New(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	if _, ok := l.Handler().(*handler); ok {
		return l
	}
	return slog.New(&handler{next: l.Handler(), lim: &limiter{keys: make(map[string]*bucket)}, now: time.Now})
}

type handler struct {
	next slog.Handler
	lim  *limiter
	now  func() time.Time
}

type limiter struct {
	mu   sync.Mutex
	keys map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// allow takes a token for msg; it returns whether the record passes and,
// if so, how many were dropped before it.
func (l *limiter) allow(msg string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[msg]
	if b == nil {
		if len(l.keys) >= maxKeys {
			clear(l.keys)
		}
		b = &bucket{tokens: Burst, last: now}
		l.keys[msg] = b
	}
	b.tokens = min(Burst, b.tokens+now.Sub(b.last).Seconds()/Every.Seconds())
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	ok, dropped := h.lim.allow(r.Message, h.now())
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, Truncate(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(guard(a))
		return true
	})
	if dropped > 0 {
		out.AddAttrs(slog.Int("suppressed", dropped))
	}
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	g := make([]slog.Attr, len(as))
	for i, a := range as {
		g[i] = guard(a)
	}
	return &handler{next: h.next.WithAttrs(g), lim: h.lim, now: h.now}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), lim: h.lim, now: h.now}
}

// guard truncates a string value (errors and Stringers included, which
// may quote what a client sent) and the strings of a group.
func guard(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(Truncate(v.String()))
	case slog.KindGroup:
		gs := v.Group()
		out := make([]slog.Attr, len(gs))
		for i, g := range gs {
			out[i] = guard(g)
		}
		a.Value = slog.GroupValue(out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			a.Value = slog.StringValue(Truncate(x.Error()))
		case interface{ String() string }:
			a.Value = slog.StringValue(Truncate(x.String()))
		default:
			a.Value = v
		}
	default:
		a.Value = v
	}
	return a
}

// Truncate returns s cut to MaxValue bytes (at a rune boundary) with the
// original length noted, or s itself when it is short enough.
func Truncate(s string) string {
	if len(s) <= MaxValue {
		return s
	}
	cut := MaxValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
