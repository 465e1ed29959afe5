package phx

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/logtest"
)

// funcChannel is a Channel made of optional hooks (a nil hook joins with
// no reply, answers nothing, or does nothing). Every successful join's
// socket is sent to joined when it is non-nil.
type funcChannel struct {
	join      func(ctx context.Context, s *Socket, p Payload) (any, error)
	handleIn  func(ctx context.Context, s *Socket, event string, p Payload) (*Reply, error)
	terminate func(s *Socket, reason error)
	joined    chan *Socket
}

func (fc *funcChannel) Join(ctx context.Context, s *Socket, p Payload) (any, error) {
	var reply any
	if fc.join != nil {
		r, err := fc.join(ctx, s, p)
		if err != nil {
			return nil, err
		}
		reply = r
	}
	if fc.joined != nil {
		fc.joined <- s
	}
	return reply, nil
}

func (fc *funcChannel) HandleIn(ctx context.Context, s *Socket, event string, p Payload) (*Reply, error) {
	if fc.handleIn == nil {
		return nil, nil
	}
	return fc.handleIn(ctx, s, event, p)
}

func (fc *funcChannel) Terminate(s *Socket, reason error) {
	if fc.terminate != nil {
		fc.terminate(s, reason)
	}
}

// nextSocket returns the next socket fc joined.
func (fc *funcChannel) nextSocket(t *testing.T) *Socket {
	t.Helper()
	select {
	case s := <-fc.joined:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("no join")
		return nil
	}
}

// logCapture records everything a slog.Logger writes, one text line per
// record (logtest.Buffer, with the short names this package's tests use).
type logCapture struct{ logtest.Buffer }

// logger returns a logger writing every level to lc.
func (lc *logCapture) logger() *slog.Logger { return lc.Logger(slog.LevelDebug) }

// lines returns the records written so far.
func (lc *logCapture) lines() []string { return lc.Lines() }

// waitLine waits until a record containing every one of subs was written
// and returns it.
func (lc *logCapture) waitLine(t *testing.T, subs ...string) string {
	t.Helper()
	return lc.WaitLine(t, subs...)
}

// checkNoSecrets fails if any record contains one of secrets.
func (lc *logCapture) checkNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	for _, l := range lc.lines() {
		for _, s := range secrets {
			if strings.Contains(l, s) {
				t.Errorf("secret %q logged: %s", s, l)
			}
		}
	}
}

// captureDefaultLogger points slog's (and log's) default output at a
// capture for the rest of the test, and restores both afterwards. Tests of
// this package do not run in parallel.
func captureDefaultLogger(t *testing.T) *logCapture {
	t.Helper()
	lc := &logCapture{}
	prev, prevOut, prevFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(lc.logger())
	t.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	})
	return lc
}
