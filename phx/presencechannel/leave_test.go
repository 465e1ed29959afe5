package presencechannel_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// slowDiffStack serves a presence whose diffs reach subscribers late while
// slow is set (its Fetch hook sleeps), as on a busy node.
func slowDiffStack(t *testing.T, slow *atomic.Bool) *stack {
	t.Helper()
	p, err := presence.New(presence.Config{Fetch: func(topic string, s presence.State) presence.State {
		if slow.Load() {
			time.Sleep(150 * time.Millisecond)
		}
		return s
	}})
	if err != nil {
		t.Fatal(err)
	}
	return startStack(t, p, presencechannel.Config{Presence: p}, phx.Config{})
}

// leaveDiffOf reports whether f is the presence_diff of meta's leave.
func leaveDiffOf(f []any, meta string) bool {
	p := payloadJSON(f)
	return f[3] == "presence_diff" && f[0] == nil && strings.HasPrefix(p, `{"joins":{},"leaves":{"u1":`) && strings.Contains(p, meta)
}

// A client that leaves a topic and joins it again at once gets the
// presence_diff of its own leave on the new channel, however late the diff
// is: the new channel may already hold, as pending, the diff of the join
// the leave undoes, and without the leave it would show a ghost. A client
// that only leaves gets no diff after phx_close, as from Phoenix.
func TestRejoinGetsItsLeaveDiff(t *testing.T) {
	var slow atomic.Bool
	st := slowDiffStack(t, &slow)
	a := st.user(t, "u1")
	a.send(`["1","1","room:g","phx_join",{"meta":{"v":1}}]`)
	_, before := a.recvEvent("presence_state")
	// Each step: the last join's diff is in, then diffs turn slow and the
	// frames are sent; the new channel gets the earlier meta's leave.
	steps := []struct {
		name, joined string
		frames       []string
	}{
		{"rejoin after a leave", `"v":1`, []string{`["1","2","room:g","phx_leave",{}]`, `["3","3","room:g","phx_join",{"meta":{"v":3}}]`}},
		{"duplicate join", `"v":3`, []string{`["4","4","room:g","phx_join",{"meta":{"v":4}}]`}},
	}
	for _, step := range steps {
		slow.Store(false)
		a.awaitJoinDiff(before, step.joined)
		slow.Store(true)
		for _, f := range step.frames {
			a.send(f)
		}
		_, before = a.recvEvent("presence_state")
		if !hasLeaveDiff(before, step.joined) {
			t.Fatalf("%s, before presence_state: %v", step.name, before)
		}
	}

	// Leaving only: nothing follows phx_close.
	slow.Store(false)
	a.awaitJoinDiff(before, `"v":4`)
	slow.Store(true)
	a.send(`["4","5","room:g","phx_leave",{}]`)
	a.recvEvent("phx_close")
	a.ws.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	if _, b, err := a.ws.ReadMessage(); err == nil {
		t.Fatalf("after phx_close of a leave: %s", b)
	}
}

func hasLeaveDiff(fs [][]any, meta string) bool {
	for _, f := range fs {
		if leaveDiffOf(f, meta) {
			return true
		}
	}
	return false
}

func joinDiffOf(f []any, meta string) bool {
	p := payloadJSON(f)
	return f[3] == "presence_diff" && strings.HasPrefix(p, `{"joins":{"u1":`) && strings.Contains(p, meta)
}

// awaitJoinDiff returns once the diff of meta's join was read: among
// frames already read, or among the next ones.
func (c *client) awaitJoinDiff(read [][]any, meta string) {
	c.t.Helper()
	for _, f := range read {
		if joinDiffOf(f, meta) {
			return
		}
	}
	for !joinDiffOf(c.recv(), meta) {
	}
}
