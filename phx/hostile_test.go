package phx

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Malformed frames close the connection with a reason and a code
// other than 1000, never produce a phx_reply, and do not disturb other
// connections.
func TestMalformedFramesClose(t *testing.T) {
	cases := []struct {
		name   string
		vsn    string
		text   string
		binary []byte
		code   int
	}{
		{"invalid JSON", "2.0.0", `["1","1","room:a"`, nil, CloseInvalidData},
		{"not an array", "2.0.0", `{"topic":"room:a"}`, nil, CloseInvalidData},
		{"wrong arity", "2.0.0", `["1","1","room:a","phx_join"]`, nil, CloseInvalidData},
		{"topic not a string", "2.0.0", `["1","1",7,"phx_join",{}]`, nil, CloseInvalidData},
		{"null event", "2.0.0", `["1","1","room:a",null,{}]`, nil, CloseInvalidData},
		{"scalar", "2.0.0", `42`, nil, CloseInvalidData},
		{"empty", "2.0.0", ``, nil, CloseInvalidData},
		{"V1 array", "1.0.0", `["1","1","room:a","phx_join",{}]`, nil, CloseInvalidData},
		{"V1 missing ref", "1.0.0", `{"topic":"room:a","event":"e","payload":{}}`, nil, CloseInvalidData},
		{"V1 binary", "1.0.0", "", []byte{0, 0, 0, 0, 0}, CloseInvalidData},
		{"binary short header", "2.0.0", "", []byte{0, 1}, CloseInvalidData},
		{"binary lengths overflow", "2.0.0", "", []byte{0, 9, 9, 9, 9, 'a'}, CloseInvalidData},
		{"binary kind 1", "2.0.0", "", []byte{1, 0, 0, 0, 0}, CloseInvalidData},
		{"binary kind 2", "2.0.0", "", []byte{2, 0, 0}, CloseInvalidData},
		{"oversized", "2.0.0", `["1","1","room:a","echo",{"x":"` + strings.Repeat("x", 2048) + `"}]`, nil, CloseMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.MaxFrameSize = 1024 })
			other := e.dial("2.0.0")
			other.sendText(`["1","1","room:a","phx_join",{}]`)
			other.expect(`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`)

			a := e.dial(tc.vsn)
			if tc.vsn == "2.0.0" {
				a.sendText(`["1","1","room:a","phx_join",{}]`)
			} else {
				a.sendText(`{"topic":"room:a","event":"phx_join","payload":{},"ref":"1"}`)
			}
			a.recv()
			if tc.binary != nil {
				a.sendBinary(tc.binary)
			} else {
				a.sendText(tc.text)
			}
			code, reason := a.expectClose() // fails on any frame before the close
			if code != tc.code || reason == "" || code == 1000 {
				t.Fatalf("close %d %q, want %d with a reason", code, reason, tc.code)
			}
			if got := e.ch.waitTerminated(t, 1); got[0] != "room:a:closed" {
				t.Fatalf("terminations %v", got)
			}
			// The other connection is untouched.
			other.sendText(`["1","2","room:a","echo",{"still":"here"}]`)
			other.expect(`["1","2","room:a","phx_reply",{"status":"ok","response":{"still":"here"}}]`)
		})
	}
}

// Hostile but well-formed input: unknown events, odd refs, unknown topics,
// huge topic names, floods of heartbeats — answered, never crashing.
func TestHostileWellFormed(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:h","phx_join",{}]`)
	a.expect(`["1","1","room:h","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["1",{"obj":1},"room:h","no_such_event",[1,2]]`)
	a.expect(`["1",{"obj":1},"room:h","phx_reply",{"status":"error","response":{"reason":"unknown event"}}]`)
	a.sendText(`["1","3","room:h","echo","not an object"]`)
	// The channel echoes a non-object: the reply falls back to {}.
	a.expect(`["1","3","room:h","phx_reply",{"status":"ok","response":{}}]`)
	long := "room:" + strings.Repeat("z", DefaultMaxTopicLen-5)
	a.sendText(fmt.Sprintf(`["9","9","%s","phx_join",{}]`, long))
	a.expect(fmt.Sprintf(`["9","9","%s","phx_reply",{"status":"ok","response":{}}]`, long))
	long += "z"
	a.sendText(fmt.Sprintf(`["10","10","%s","phx_join",{}]`, long))
	a.expect(fmt.Sprintf(`["10","10","%s","phx_reply",{"status":"error","response":{"reason":"invalid topic"}}]`, long))
	for i := range 500 {
		a.sendText(fmt.Sprintf(`[null,"h%d","phoenix","heartbeat",{}]`, i))
	}
	for i := range 500 {
		a.expect(fmt.Sprintf(`[null,"h%d","phoenix","phx_reply",{"status":"ok","response":{}}]`, i))
	}
}

// A join flood over the channel limit and the rate limit gets error replies
// and leaves the connection usable.
func TestJoinFlood(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxChannels = 5; c.JoinBurst = 3; c.JoinRate = 0.0001 })
	a := e.dial("2.0.0")
	for i := range 50 {
		a.sendText(fmt.Sprintf(`["%d","%d","room:%d","phx_join",{}]`, i, i, i))
	}
	ok, errs := 0, 0
	for range 50 {
		s := a.recv()
		if strings.Contains(s, `"status":"ok"`) {
			ok++
		} else {
			errs++
		}
	}
	if ok != 3 || errs != 47 {
		t.Fatalf("ok %d errors %d", ok, errs)
	}
	a.sendText(`[null,"x","phoenix","heartbeat",{}]`)
	a.expect(`[null,"x","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// A client that does not read is disconnected (slow consumer) once its
// queue is full, while the broadcaster and the other subscribers go on.
func TestSlowConsumerClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueueLen = 64; c.WriteTimeout = 200 * time.Millisecond })
	slow := e.dial("2.0.0")
	slow.sendText(`["1","1","room:f","phx_join",{}]`)
	slow.expect(`["1","1","room:f","phx_reply",{"status":"ok","response":{}}]`)
	fast := e.dial("2.0.0")
	fast.sendText(`["1","1","room:f","phx_join",{}]`)
	fast.expect(`["1","1","room:f","phx_reply",{"status":"ok","response":{}}]`)

	// Fill the slow client's socket buffers and queue: it never reads.
	big := strings.Repeat("x", 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 400 {
			if e.srv.Broadcast("room:f", "big", map[string]any{"i": i, "pad": big}) != nil {
				return
			}
			time.Sleep(time.Millisecond) // a pace the fast client keeps up with
		}
	}()
	for i := range 400 {
		mt, b, err := fast.recvRaw(5 * time.Second)
		if err != nil || mt != websocket.TextMessage || !strings.Contains(string(b), fmt.Sprintf(`{"i":%d,`, i)) {
			t.Fatalf("fast client frame %d: %v %.60s", i, err, b)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("broadcaster blocked by a slow client")
	}
	e.ch.waitTerminated(t, 1)
	waitFor(t, func() bool { return e.srv.Subscribers("room:f") == 1 })
}
