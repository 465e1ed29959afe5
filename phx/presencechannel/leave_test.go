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

// A diff sent between a channel's leave and its rejoin on the same
// connection (here another user's leave) reaches neither channel as a
// broadcast; the rejoin gets it ahead of its presence_state, since
// phoenix.js may hold that user's join from the old channel and would
// re-apply it after the state.
func TestRejoinGetsTheDiffsSinceItsLeave(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{})
	a := st.user(t, "u1")
	a.join("1", "room:gap", `{}`)
	x := st.user(t, "x")
	x.join("1", "room:gap", `{"meta":{"x":1}}`)
	a.recvEvent("presence_diff") // x joined

	a.send(`["1","2","room:gap","phx_leave",{}]`)
	a.recvEvent("phx_close")
	x.ws.Close() // x leaves while a has no channel on the topic
	deadline := time.Now().Add(2 * time.Second)
	for len(st.p.List("room:gap")) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st.p.Sync()
	a.send(`["3","3","room:gap","phx_join",{}]`)
	_, before := a.recvEvent("presence_state")
	for _, f := range before {
		if f[3] == "presence_diff" && strings.Contains(payloadJSON(f), `"leaves":{"x":`) {
			return
		}
	}
	t.Fatalf("the rejoin did not get x's leave before its state: %v", before)
}
