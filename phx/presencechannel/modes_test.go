package presencechannel_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/phx/presencechannel"
)

// A count member gets presence_count after its join and when the counts
// change, never a presence_state or presence_diff; a none member gets no
// presence traffic at all; a full member gets no presence_count; an
// unknown mode is refused.
func TestPresenceModes(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{})
	full := st.user(t, "f")
	if got := full.join("1", "room:big", `{"meta":{"s":1}}`); got != replyOK {
		t.Fatalf("full join: %s", got)
	}
	counter := st.user(t, "c")
	if got := counter.call(`["1","1","room:big","phx_join",{"meta":{"s":1},"presence":{"mode":"count"}}]`); got != replyOK {
		t.Fatalf("count join: %s", got)
	}
	// The counts are absolute: the same ones may come twice (after the
	// join, then with the diff of the join), so the test reads changes.
	if got := nextCount(t, counter); got != `{"keys":2,"metas":2}` {
		t.Fatalf("first presence_count: %s", got)
	}
	silent := st.user(t, "n")
	if got := silent.call(`["1","1","room:big","phx_join",{"presence":{"mode":"none"}}]`); got != replyOK {
		t.Fatalf("none join: %s", got)
	}
	if got := st.user(t, "x").call(`["1","1","room:big","phx_join",{"presence":{"mode":"everything"}}]`); got != replyErr("invalid presence mode") {
		t.Fatalf("unknown mode: %s", got)
	}

	second := st.user(t, "f2")
	second.join("1", "room:big", `{"meta":{"s":1}}`)
	if got := nextCount(t, counter); got != `{"keys":3,"metas":3}` {
		t.Fatalf("a third key: %s", got)
	}
	// An update changes no count: nothing for the counter.
	if got := second.call(`["1","2","room:big","presence:update",{"meta":{"s":2}}]`); got != replyOK {
		t.Fatalf("update: %s", got)
	}
	second.ws.Close()
	if got := nextCount(t, counter); got != `{"keys":2,"metas":2}` {
		t.Fatalf("after a leave (the update sent nothing): %s", got)
	}
	// The full member saw the diffs and no count; the silent one nothing.
	for {
		f := full.recv()
		if f[3] == "presence_count" {
			t.Fatalf("a full member got %v", f)
		}
		if f[3] == "presence_diff" && strings.Contains(payloadJSON(f), `"leaves":{"f2"`) {
			break
		}
	}
	silent.ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, b, err := silent.ws.ReadMessage(); err == nil {
		t.Fatalf("a none member got %s", b)
	}
}

var lastCount = map[*client]string{}

// nextCount returns the next presence_count payload that differs from the
// last one c got.
func nextCount(t *testing.T, c *client) string {
	t.Helper()
	for {
		f := c.recv()
		switch f[3] {
		case "presence_count":
			if p := payloadJSON(f); p != lastCount[c] {
				lastCount[c] = p
				return p
			}
		case "presence_state", "presence_diff":
			t.Fatalf("a count member got %v", f)
		}
	}
}

// A count member is sent every change of the counts, also back to a value
// sent before it joined, and down to zero when the last member leaves.
func TestPresenceCountFollowsEveryChange(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{})
	a := st.user(t, "a")
	a.join("1", "room:c", `{"meta":{}}`)
	counter := st.user(t, "c")
	if got := counter.call(`["1","1","room:c","phx_join",{"presence":{"mode":"count"}}]`); got != replyOK {
		t.Fatalf("count join: %s", got)
	}
	if got := nextCount(t, counter); got != `{"keys":1,"metas":1}` {
		t.Fatalf("after the join: %s", got)
	}
	a.ws.Close() // the last tracked member leaves
	if got := nextCount(t, counter); got != `{"keys":0,"metas":0}` {
		t.Fatalf("after the last leave: %s", got)
	}
}

// With max_keys a member gets the list while the topic is small, counts
// once it grows past the limit (no diffs), and a fresh presence_state
// (then diffs) when it shrinks back; a bad max_keys is refused.
func TestPresenceMaxKeys(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{})
	if got := st.user(t, "bad").call(`["1","1","room:l","phx_join",{"presence":{"max_keys":0}}]`); got != replyErr("invalid presence mode") {
		t.Fatalf("max_keys 0: %s", got)
	}
	a := st.user(t, "a")
	a.join("1", "room:l", `{"meta":{}}`)
	w := st.user(t, "w")
	if got := w.call(`["1","1","room:l","phx_join",{"presence":{"max_keys":2}}]`); got != replyOK {
		t.Fatalf("join: %s", got)
	}
	if f, _ := w.recvEvent("presence_state"); !strings.Contains(payloadJSON(f), `"a"`) {
		t.Fatalf("state under the limit: %v", f)
	}
	b := st.user(t, "b")
	b.join("1", "room:l", `{"meta":{}}`)
	if f, _ := w.recvEvent("presence_diff"); !strings.Contains(payloadJSON(f), `"joins":{"b"`) {
		t.Fatalf("diff at the limit: %v", f)
	}
	c := st.user(t, "c")
	c.join("1", "room:l", `{"meta":{}}`)
	if got := nextCount(t, w); got != `{"keys":3,"metas":3}` {
		t.Fatalf("over the limit: %s", got)
	}
	c.ws.Close()
	// Back at the limit: a fresh state with a and b, and diffs again.
	for {
		f := w.recv()
		if f[3] == "presence_diff" {
			t.Fatalf("a diff while over the limit: %v", f)
		}
		if f[3] == "presence_state" {
			if p := payloadJSON(f); !strings.Contains(p, `"a"`) || !strings.Contains(p, `"b"`) || strings.Contains(p, `"c"`) {
				t.Fatalf("state back under the limit: %s", p)
			}
			break
		}
	}
	b.ws.Close()
	if f, _ := w.recvEvent("presence_diff"); !strings.Contains(payloadJSON(f), `"leaves":{"b"`) {
		t.Fatalf("diff after the return: %v", f)
	}
}

// presence_count is paced: a burst of joins (one diff each, no diff
// window here) gives a count member the first change at once and then at
// most one frame per CountInterval, the last one with the final counts.
func TestPresenceCountPaced(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{})
	counter := st.user(t, "c")
	if got := counter.call(`["1","1","room:p","phx_join",{"presence":{"mode":"count"}}]`); got != replyOK {
		t.Fatalf("count join: %s", got)
	}
	const n = 40
	start := time.Now()
	for i := range n {
		if got := st.user(t, "u"+strings.Repeat("x", i)).join("1", "room:p", `{"meta":{}}`); got != replyOK {
			t.Fatalf("join %d: %s", i, got)
		}
	}
	burst := time.Since(start)
	frames := 0
	for {
		f := counter.recv()
		if f[3] != "presence_count" {
			t.Fatalf("a count member got %v", f)
		}
		frames++
		if payloadJSON(f) == `{"keys":40,"metas":40}` {
			break
		}
	}
	// the join's own count, the leading change, one per interval of the
	// burst, the trailing one
	if most := min(3+int(burst/presencechannel.CountInterval), n/4); frames > most {
		t.Fatalf("%d presence_count frames for %d joins in %v, want at most %d", frames, n, burst, most)
	}
	if late := time.Since(start) - burst; late > presencechannel.CountInterval+time.Second {
		t.Fatalf("the final count came %v after the last join", late)
	}
}
