package phx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// The channel API (Phoenix.Channel's broadcast,
// broadcast_from, push, reply, socket_ref) as phx's Socket and Server
// expose it.

// newAPIEnv starts a server whose "api:*" topics go to fc (and "room:*"
// to the usual test channel).
func newAPIEnv(t *testing.T, fc *funcChannel) *testEnv {
	t.Helper()
	return newEnv(t, func(c *Config) {
		c.Channels = append([]Route{{Pattern: "api:*", Channel: fc}}, c.Channels...)
	})
}

// A channel's Socket.Broadcast reaches every subscriber of the
// topic, the caller included; Socket.BroadcastFrom reaches all but the
// caller (V2 and V1 subscribers alike).
func TestBroadcastFromExcludesCaller(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	b := e.dial("2.0.0")
	c := e.dial("1.0.0")
	a.sendText(`["1","1","room:ch","phx_join",{}]`)
	a.expect(`["1","1","room:ch","phx_reply",{"status":"ok","response":{}}]`)
	b.sendText(`["2","2","room:ch","phx_join",{}]`)
	b.expect(`["2","2","room:ch","phx_reply",{"status":"ok","response":{}}]`)
	c.sendText(`{"topic":"room:ch","event":"phx_join","payload":{},"ref":"3"}`)
	c.expect(`{"topic":"room:ch","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"3"}`)

	// broadcast: the caller gets it too (before its reply: the channel
	// broadcasts before it returns).
	a.sendText(`["1","2","room:ch","broadcast",{"all":true}]`)
	a.expect(
		`[null,null,"room:ch","broadcast",{"all":true}]`,
		`["1","2","room:ch","phx_reply",{"status":"ok","response":{}}]`,
	)
	b.expect(`[null,null,"room:ch","broadcast",{"all":true}]`)
	c.expect(`{"topic":"room:ch","event":"broadcast","payload":{"all":true},"ref":null}`)

	// broadcast_from: everyone but the caller.
	a.sendText(`["1","3","room:ch","broadcast_from",{"others":true}]`)
	a.expect(`["1","3","room:ch","phx_reply",{"status":"ok","response":{}}]`)
	b.expect(`[null,null,"room:ch","broadcast",{"others":true}]`)
	c.expect(`{"topic":"room:ch","event":"broadcast","payload":{"others":true},"ref":null}`)
	// The caller's next frame is the heartbeat reply, not the broadcast.
	a.sendText(`[null,"4","phoenix","heartbeat",{}]`)
	a.expect(`[null,"4","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// The same from another process — in Go, from a goroutine outside
// the channel callbacks, through a saved *Socket or through the Server:
// Broadcast includes the socket, BroadcastFrom skips it; BroadcastFrom
// with a nil socket skips no one; broadcasts made by one goroutine arrive
// in order; a topic without subscribers is no error.
func TestBroadcastFromAnotherGoroutine(t *testing.T) {
	fc := &funcChannel{joined: make(chan *Socket, 4)}
	e := newAPIEnv(t, fc)
	a := e.dial("2.0.0")
	b := e.dial("2.0.0")
	a.sendText(`["1","1","api:x","phx_join",{}]`)
	a.expect(`["1","1","api:x","phx_reply",{"status":"ok","response":{}}]`)
	sa := fc.nextSocket(t)
	b.sendText(`["5","5","api:x","phx_join",{}]`)
	b.expect(`["5","5","api:x","phx_reply",{"status":"ok","response":{}}]`)
	fc.nextSocket(t)

	run := func(f func() error) {
		t.Helper()
		errc := make(chan error, 1)
		go func() { errc <- f() }()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	run(func() error { return sa.Broadcast("s_all", map[string]int{"n": 1}) })
	a.expect(`[null,null,"api:x","s_all",{"n":1}]`)
	b.expect(`[null,null,"api:x","s_all",{"n":1}]`)

	run(func() error { return sa.BroadcastFrom("s_from", map[string]int{"n": 2}) })
	b.expect(`[null,null,"api:x","s_from",{"n":2}]`)

	run(func() error { return e.srv.Broadcast("api:x", "srv_all", map[string]int{"n": 3}) })
	a.expect(`[null,null,"api:x","srv_all",{"n":3}]`) // a never got s_from
	b.expect(`[null,null,"api:x","srv_all",{"n":3}]`)

	run(func() error { return e.srv.BroadcastFrom(sa, "api:x", "srv_from", map[string]int{"n": 4}) })
	b.expect(`[null,null,"api:x","srv_from",{"n":4}]`)

	run(func() error { return e.srv.BroadcastFrom(nil, "api:x", "srv_nil", json.RawMessage(`{"n":5}`)) })
	a.expect(`[null,null,"api:x","srv_nil",{"n":5}]`)
	b.expect(`[null,null,"api:x","srv_nil",{"n":5}]`)

	run(func() error {
		for i := range 50 {
			if err := e.srv.Broadcast("api:x", "seq", map[string]int{"i": i}); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range 50 {
		want := fmt.Sprintf(`[null,null,"api:x","seq",{"i":%d}]`, i)
		a.expect(want)
		b.expect(want)
	}

	if err := e.srv.Broadcast("api:nobody", "x", map[string]int{}); err != nil {
		t.Fatalf("broadcast to an empty topic: %v", err)
	}
	// A payload that is not a JSON object is refused, and nothing is sent.
	if err := e.srv.Broadcast("api:x", "bad", []int{1}); err == nil {
		t.Fatal("broadcast of an array: no error")
	}
	a.sendText(`[null,"9","phoenix","heartbeat",{}]`)
	a.expect(`[null,"9","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// Socket.Push sends one encoded message to that socket's client
// only: [join_ref, null, topic, event, payload] on V2, an object with
// "ref":null on V1; from any goroutine. A payload that is not a JSON
// object is an error and sends nothing; a push after the channel ended
// returns ErrClosed.
func TestPushEncodesToTransport(t *testing.T) {
	fc := &funcChannel{joined: make(chan *Socket, 4)}
	e := newAPIEnv(t, fc)
	a := e.dial("2.0.0")
	b := e.dial("2.0.0")
	v1 := e.dial("1.0.0")
	a.sendText(`["7","8","api:p","phx_join",{}]`)
	a.expect(`["7","8","api:p","phx_reply",{"status":"ok","response":{}}]`)
	sa := fc.nextSocket(t)
	if sa.JoinRef() != "7" || sa.Topic() != "api:p" || sa.Transport() != "websocket" {
		t.Fatalf("socket %q %q %q", sa.JoinRef(), sa.Topic(), sa.Transport())
	}
	b.sendText(`["1","1","api:p","phx_join",{}]`)
	b.expect(`["1","1","api:p","phx_reply",{"status":"ok","response":{}}]`)
	fc.nextSocket(t)
	v1.sendText(`{"topic":"api:p","event":"phx_join","payload":{},"ref":"4"}`)
	v1.expect(`{"topic":"api:p","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"4"}`)
	sv1 := fc.nextSocket(t)

	errc := make(chan error, 2)
	go func() {
		errc <- sa.Push("note", map[string]any{"body": "hi", "n": 1})
		errc <- sv1.Push("note", json.RawMessage(`{"raw":true}`))
	}()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	a.expect(`["7",null,"api:p","note",{"body":"hi","n":1}]`)
	v1.expect(`{"topic":"api:p","event":"note","payload":{"raw":true},"ref":null}`)

	for _, bad := range []any{[]int{1}, "text", 42, json.RawMessage(`[1]`)} {
		if err := sa.Push("bad", bad); err == nil {
			t.Errorf("Push(%v): no error", bad)
		}
	}
	// b got nothing of a's pushes; a got none of the bad ones.
	b.sendText(`[null,"2","phoenix","heartbeat",{}]`)
	b.expect(`[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["7","9","api:p","phx_leave",{}]`)
	a.expect(
		`["7","9","api:p","phx_reply",{"status":"ok","response":{}}]`,
		`["7","7","api:p","phx_close",{}]`,
	)
	if err := sa.Push("late", map[string]int{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after leave: %v, want ErrClosed", err)
	}
	a.sendText(`[null,"10","phoenix","heartbeat",{}]`)
	a.expect(`[null,"10","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// A reply with a payload — HandleIn's returned *Reply — goes out as
// phx_reply {"status", "response"} with the channel's join_ref and the
// message's ref; any status string is kept; a response that does not
// encode to a JSON object is logged and replaced by {}.
func TestReplyWithPayload(t *testing.T) {
	fc := &funcChannel{handleIn: func(_ context.Context, _ *Socket, event string, p Payload) (*Reply, error) {
		switch event {
		case "ok":
			return ReplyOK(map[string]any{"a": 1, "echo": p.JSON}), nil
		case "error":
			return ReplyError(map[string]string{"reason": "nope"}), nil
		case "custom":
			return &Reply{Status: "queued", Response: json.RawMessage(`{"pos":3}`)}, nil
		case "array":
			return ReplyOK([]int{1, 2}), nil
		}
		return nil, nil
	}}
	lc := &logCapture{}
	e := newEnv(t, func(c *Config) {
		c.Channels = append([]Route{{Pattern: "api:*", Channel: fc}}, c.Channels...)
		c.Logger = lc.logger()
	})
	a := e.dial("2.0.0")
	a.sendText(`["1","1","api:r","phx_join",{}]`)
	a.sendText(`["1","2","api:r","ok",{"x":[1]}]`)
	a.sendText(`[null,"3","api:r","error",{}]`)
	a.sendText(`["1","4","api:r","custom",{}]`)
	a.sendText(`["1","5","api:r","array",{}]`)
	a.expect(
		`["1","1","api:r","phx_reply",{"status":"ok","response":{}}]`,
		`["1","2","api:r","phx_reply",{"status":"ok","response":{"a":1,"echo":{"x":[1]}}}]`,
		`["1","3","api:r","phx_reply",{"status":"error","response":{"reason":"nope"}}]`,
		`["1","4","api:r","phx_reply",{"status":"queued","response":{"pos":3}}]`,
		`["1","5","api:r","phx_reply",{"status":"ok","response":{}}]`,
	)
	lc.waitLine(t, "cannot encode reply", "api:r")

	v1 := e.dial("1.0.0")
	v1.sendText(`{"topic":"api:r","event":"phx_join","payload":{},"ref":"1"}`)
	v1.sendText(`{"topic":"api:r","event":"ok","payload":{},"ref":"2"}`)
	v1.expect(
		`{"topic":"api:r","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`,
		`{"topic":"api:r","event":"phx_reply","payload":{"status":"ok","response":{"a":1,"echo":{}}},"ref":"2"}`,
	)
}

// A reply with a bare status (Phoenix's reply(ref, :ok)) — a Reply
// with no Response — carries "response":{}; an empty Status means "ok";
// a nil *Reply sends nothing.
func TestReplyBareStatus(t *testing.T) {
	fc := &funcChannel{handleIn: func(_ context.Context, _ *Socket, event string, _ Payload) (*Reply, error) {
		switch event {
		case "ok":
			return &Reply{Status: "ok"}, nil
		case "error":
			return &Reply{Status: "error"}, nil
		case "empty":
			return &Reply{}, nil
		case "helpers":
			return ReplyOK(nil), nil
		}
		return nil, nil // "none"
	}}
	e := newAPIEnv(t, fc)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","api:b","phx_join",{}]`)
	a.sendText(`["1","2","api:b","ok",{}]`)
	a.sendText(`["1","3","api:b","error",{}]`)
	a.sendText(`["1","4","api:b","empty",{}]`)
	a.sendText(`["1","5","api:b","none",{}]`)
	a.sendText(`["1","6","api:b","helpers",{}]`)
	a.expect(
		`["1","1","api:b","phx_reply",{"status":"ok","response":{}}]`,
		`["1","2","api:b","phx_reply",{"status":"ok","response":{}}]`,
		`["1","3","api:b","phx_reply",{"status":"error","response":{}}]`,
		`["1","4","api:b","phx_reply",{"status":"ok","response":{}}]`,
		// "none" (ref 5) got no reply at all.
		`["1","6","api:b","phx_reply",{"status":"ok","response":{}}]`,
	)
}

// Phoenix's socket_ref (reply later to a message) requires a joined
// socket with a ref. Not applicable as such in Go: phx has no deferred
// reply — a reply exists only as HandleIn's return value, so it always
// has the message's ref (ref null when the message had none) — and what
// replaces a saved socket_ref is a saved *Socket, whose Push works only
// while the channel is joined: a socket whose Join failed, or whose
// channel ended (left, crashed, connection closed), returns ErrClosed and
// sends nothing; pushes made during a failed Join are dropped.
func TestSavedSocketRequiresJoined(t *testing.T) {
	saved := make(chan *Socket, 8)
	fc := &funcChannel{
		join: func(_ context.Context, s *Socket, p Payload) (any, error) {
			saved <- s
			if string(p.JSON) == `{"refuse":true}` {
				if err := s.Push("during_failed_join", map[string]int{}); err != nil {
					return nil, err
				}
				return nil, Refuse(map[string]string{"reason": "no"})
			}
			return nil, nil
		},
		handleIn: func(_ context.Context, s *Socket, event string, _ Payload) (*Reply, error) {
			if event == "crash" {
				return nil, errors.New("crash")
			}
			return ReplyOK(map[string]string{"ref_of": event}), nil
		},
	}
	e := newAPIEnv(t, fc)
	a := e.dial("2.0.0")
	next := func() *Socket {
		t.Helper()
		select {
		case s := <-saved:
			return s
		case <-time.After(3 * time.Second):
			t.Fatal("no join")
			return nil
		}
	}

	// A failed join: its socket never works, its push is never sent.
	a.sendText(`["1","1","api:s","phx_join",{"refuse":true}]`)
	a.expect(`["1","1","api:s","phx_reply",{"status":"error","response":{"reason":"no"}}]`)
	if err := next().Push("after_failed_join", map[string]int{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push on a refused join's socket: %v", err)
	}

	// A joined socket: replies carry the message's ref, or null without one.
	a.sendText(`["2","2","api:s","phx_join",{}]`)
	a.expect(`["2","2","api:s","phx_reply",{"status":"ok","response":{}}]`)
	joined := next()
	a.sendText(`["2",null,"api:s","noref",{}]`)
	a.expect(`["2",null,"api:s","phx_reply",{"status":"ok","response":{"ref_of":"noref"}}]`)
	if err := joined.Push("while_joined", map[string]int{"ok": 1}); err != nil {
		t.Fatal(err)
	}
	a.expect(`["2",null,"api:s","while_joined",{"ok":1}]`)

	// A crashed channel's socket is closed too.
	a.sendText(`["2","3","api:s","crash",{}]`)
	a.expect(`["2","2","api:s","phx_error",{"reason":"channel_crash"}]`)
	if err := joined.Push("after_crash", map[string]int{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after crash: %v", err)
	}

	// And so is the socket of a closed connection.
	a.sendText(`["3","3","api:s","phx_join",{}]`)
	a.expect(`["3","3","api:s","phx_reply",{"status":"ok","response":{}}]`)
	last := next()
	a.ws.Close()
	waitFor(t, func() bool { return e.srv.Connections() == 0 })
	if err := last.Push("after_close", map[string]int{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after the connection closed: %v", err)
	}
}
