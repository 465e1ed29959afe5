package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gopresence/presence/client"
)

func fast(tries int) time.Duration { return 10 * time.Millisecond }

func dial(t *testing.T, s *fakeServer, opts *client.Options) *client.Socket {
	t.Helper()
	if opts == nil {
		opts = &client.Options{}
	}
	if opts.ReconnectAfter == nil {
		opts.ReconnectAfter = fast
	}
	if opts.RejoinAfter == nil {
		opts.RejoinAfter = fast
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock, err := client.Dial(ctx, s.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	return sock
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDefaults(t *testing.T) {
	want := []int{10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000}
	for i, ms := range want {
		if got := client.DefaultReconnectAfter(i + 1); got != time.Duration(ms)*time.Millisecond {
			t.Errorf("DefaultReconnectAfter(%d) = %v, want %dms", i+1, got, ms)
		}
	}
	for i, sec := range []int{1, 2, 5, 10, 10} {
		if got := client.DefaultRejoinAfter(i + 1); got != time.Duration(sec)*time.Second {
			t.Errorf("DefaultRejoinAfter(%d) = %v", i+1, got)
		}
	}
}

func TestDialURLAndParams(t *testing.T) {
	s := newFakeServer(t)
	n := 0
	sock := dial(t, s, &client.Options{
		ParamsFunc: func() url.Values { n++; return url.Values{"token": {"abc"}, "n": {strings.Repeat("x", n)}} },
		AuthToken:  "secret",
	})
	if !sock.IsConnected() {
		t.Fatal("not connected")
	}
	q, proto := s.query(0)
	if q.Get("vsn") != "2.0.0" || q.Get("token") != "abc" {
		t.Errorf("query %v", q)
	}
	if got := proto; got != "phoenix, base64url.bearer.phx.c2VjcmV0" {
		t.Errorf("subprotocols %q", got)
	}
	// ParamsFunc is evaluated again on reconnect.
	s.dropAll()
	eventually(t, "reconnect", func() bool { return s.numConns() == 2 })
	if q, _ := s.query(1); q.Get("n") != "xx" {
		t.Errorf("params on reconnect: %v", q)
	}
	for _, bad := range []string{"ftp://x", "::"} {
		if _, err := client.Dial(context.Background(), bad, nil); err == nil {
			t.Errorf("Dial(%q) succeeded", bad)
		}
	}
}

func TestJoinPushLeave(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, nil)
	ch := sock.Channel("room:lobby", map[string]string{"name": "alice"})
	resp, err := ch.Join(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp) != `{"params":{"name":"alice"}}` {
		t.Errorf("join response %s", resp)
	}
	if ch.State() != client.StateJoined {
		t.Errorf("state %s", ch.State())
	}
	join := s.waitFrame(isEvent("room:lobby", "phx_join"))
	if join.JoinRef == "" || join.JoinRef != join.Ref || join.JoinRef != ch.JoinRef() {
		t.Errorf("join frame %+v, JoinRef() %q", join, ch.JoinRef())
	}
	if _, err := ch.Join(ctx(t)); !errors.Is(err, client.ErrAlreadyJoined) {
		t.Errorf("second Join: %v", err)
	}

	resp, err = ch.Push(ctx(t), "echo", map[string]int{"n": 1})
	if err != nil || string(resp) != `{"n":1}` {
		t.Errorf("echo: %s %v", resp, err)
	}
	echo := s.waitFrame(isEvent("room:lobby", "echo"))
	if echo.JoinRef != join.JoinRef {
		t.Errorf("push join_ref %q, want %q", echo.JoinRef, join.JoinRef)
	}
	_, err = ch.Push(ctx(t), "fail", nil)
	var re *client.ReplyError
	if !errors.As(err, &re) || re.Status != "error" || string(re.Response) != `{"reason":"nope"}` {
		t.Errorf("fail: %v", err)
	}
	resp, err = ch.PushBinary(ctx(t), "bin", []byte{1, 2, 3})
	if err != nil || string(resp) != `{"binary_len":3}` {
		t.Errorf("binary push: %s %v", resp, err)
	}

	if err := ch.Leave(ctx(t)); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if ch.State() != client.StateClosed {
		t.Errorf("state after leave %s", ch.State())
	}
	s.waitFrame(isEvent("room:lobby", "phx_leave"))
	if err := ch.Leave(ctx(t)); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if _, err := ch.Push(ctx(t), "echo", nil); !errors.Is(err, client.ErrNotJoined) {
		t.Errorf("Push after Leave: %v", err)
	}
	// A left channel object may join again.
	if _, err := ch.Join(ctx(t)); err != nil {
		t.Errorf("re-Join: %v", err)
	}
}

func TestPushTimeout(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, &client.Options{Timeout: 100 * time.Millisecond})
	ch := sock.Channel("room:1", nil)
	if _, err := ch.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Push(ctx(t), "noreply", nil); !errors.Is(err, client.ErrTimeout) {
		t.Errorf("Push without reply: %v", err)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ch.Push(c, "noreply", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Push with canceled ctx: %v", err)
	}
}

func TestJoinRefused(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, nil)
	ch := sock.Channel("refuse", nil)
	_, err := ch.Join(ctx(t))
	var re *client.ReplyError
	if !errors.As(err, &re) || string(re.Response) != `{"reason":"unauthorized"}` {
		t.Fatalf("Join: %v", err)
	}
	if ch.State() != client.StateClosed {
		t.Errorf("state %s", ch.State())
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(s.frames(isEvent("refuse", "phx_join"))); n != 1 {
		t.Errorf("%d joins sent; a refused first join must not be retried", n)
	}
}

func TestJoinTimeout(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, &client.Options{Timeout: 100 * time.Millisecond})
	ch := sock.Channel("silent", nil)
	if _, err := ch.Join(ctx(t)); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("Join: %v", err)
	}
	// As phoenix.js, the timed-out join is left.
	join := s.waitFrame(isEvent("silent", "phx_join"))
	leave := s.waitFrame(isEvent("silent", "phx_leave"))
	if leave.JoinRef != join.JoinRef {
		t.Errorf("leave join_ref %q, want %q", leave.JoinRef, join.JoinRef)
	}
}

func TestEvents(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, nil)
	ch := sock.Channel("room:1", nil)
	got := make(chan string, 10)
	id := ch.On("pushed", func(p json.RawMessage) { got <- "pushed " + string(p) })
	ch.On("news", func(p json.RawMessage) { got <- "news " + string(p) })
	ch.On("bin", func(p json.RawMessage) { got <- "bin " + string(p) })
	if _, err := ch.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Push(ctx(t), "push_me", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	s.broadcast("room:1", "news", `{"b":2}`)
	s.broadcast("room:2", "news", `{"other":true}`)
	s.sendBinary([]byte("\x02\x06\x03" + "room:1" + "bin" + "raw"))
	for _, want := range []string{`pushed {"a":1}`, `news {"b":2}`, `bin raw`} {
		select {
		case g := <-got:
			if g != want {
				t.Errorf("got %q, want %q", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q not delivered", want)
		}
	}
	ch.Off("pushed", id)
	ch.Push(ctx(t), "push_me", nil)
	s.broadcast("room:1", "news", `{}`)
	if g := <-got; g != "news {}" {
		t.Errorf("after Off: %q", g)
	}
}

// A frame carrying an older join_ref is not delivered (isMember).
func TestStaleJoinRefDropped(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, nil)
	ch := sock.Channel("room:1", nil)
	got := make(chan string, 10)
	ch.On("ev", func(p json.RawMessage) { got <- string(p) })
	ch.Join(ctx(t))
	s.mu.Lock()
	c := s.conns[0]
	s.mu.Unlock()
	c.send("stale", nil, "room:1", "ev", map[string]int{"stale": 1})
	c.send(ch.JoinRef(), nil, "room:1", "ev", map[string]int{"current": 1})
	if g := <-got; g != `{"current":1}` {
		t.Errorf("got %s", g)
	}
}

func TestReconnectRejoins(t *testing.T) {
	s := newFakeServer(t)
	var mu sync.Mutex
	var opens, closes int
	sock := dial(t, s, &client.Options{
		OnOpen:  func() { mu.Lock(); opens++; mu.Unlock() },
		OnClose: func(error) { mu.Lock(); closes++; mu.Unlock() },
	})
	ch := sock.Channel("room:1", nil)
	errs := make(chan string, 10)
	ch.On("phx_error", func(p json.RawMessage) { errs <- string(p) })
	if _, err := ch.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	first := ch.JoinRef()
	s.dropAll()
	if e := <-errs; e != `{"reason":"connection_closed"}` {
		t.Errorf("phx_error payload %s", e)
	}
	eventually(t, "rejoin", func() bool { return ch.State() == client.StateJoined && ch.JoinRef() != first })
	joins := s.frames(isEvent("room:1", "phx_join"))
	if len(joins) != 2 || joins[0].JoinRef == joins[1].JoinRef {
		t.Errorf("joins %+v: want 2 with different join_refs", joins)
	}
	if resp, err := ch.Push(ctx(t), "echo", map[string]int{"x": 1}); err != nil || string(resp) != `{"x":1}` {
		t.Errorf("push after rejoin: %s %v", resp, err)
	}
	eventually(t, "callbacks", func() bool { mu.Lock(); defer mu.Unlock(); return opens == 2 && closes == 1 })
}

func TestHeartbeat(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, &client.Options{HeartbeatInterval: 30 * time.Millisecond})
	ch := sock.Channel("room:1", nil)
	errs := make(chan string, 10)
	ch.On("phx_error", func(p json.RawMessage) { errs <- string(p) })
	ch.Join(ctx(t))
	hb := s.waitFrame(isEvent("phoenix", "heartbeat"))
	if hb.JoinRef != "" || hb.Ref == "" || string(hb.Payload) != "{}" {
		t.Errorf("heartbeat frame %+v", hb)
	}
	time.Sleep(100 * time.Millisecond)
	if s.numConns() != 1 {
		t.Fatalf("reconnected although heartbeats were answered")
	}
	if rtt, err := sock.Ping(ctx(t)); err != nil || rtt <= 0 {
		t.Errorf("Ping: %v %v", rtt, err)
	}
	s.silentHeartbeats.Store(true)
	if e := <-errs; e != `{"reason":"heartbeat_timeout"}` {
		t.Errorf("phx_error payload %s", e)
	}
	s.silentHeartbeats.Store(false)
	eventually(t, "reconnect and rejoin", func() bool { return s.numConns() >= 2 && ch.State() == client.StateJoined })
}

func TestServerErrorAndClose(t *testing.T) {
	s := newFakeServer(t)
	sock := dial(t, s, nil)
	ch := sock.Channel("room:1", nil)
	ch.Join(ctx(t))
	first := ch.JoinRef()
	ch.Push(ctx(t), "crash", nil) // no reply: runs into the server's phx_error
	eventually(t, "rejoin after phx_error", func() bool { return ch.State() == client.StateJoined && ch.JoinRef() != first })

	closed := make(chan struct{})
	ch.On("phx_close", func(json.RawMessage) { close(closed) })
	ch.Push(ctx(t), "close_me", nil)
	<-closed
	if ch.State() != client.StateClosed {
		t.Errorf("state %s", ch.State())
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(s.frames(isEvent("room:1", "phx_join"))); n != 2 {
		t.Errorf("%d joins: a closed channel must not rejoin", n)
	}
}

func TestPushBufferedUntilJoined(t *testing.T) {
	s := newFakeServer(t)
	s.joinDelay.Store(int64(100 * time.Millisecond))
	sock := dial(t, s, nil)
	ch := sock.Channel("room:1", nil)
	joined := make(chan error, 1)
	go func() { _, err := ch.Join(ctx(t)); joined <- err }()
	eventually(t, "joining", func() bool { return ch.State() == client.StateJoining })
	resp, err := ch.Push(ctx(t), "echo", map[string]int{"buffered": 1})
	if err != nil || string(resp) != `{"buffered":1}` {
		t.Errorf("buffered push: %s %v", resp, err)
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	// The push went out after the join, with its join_ref.
	frames := s.frames(func(f frame) bool { return f.Topic == "room:1" })
	if len(frames) != 2 || frames[0].Event != "phx_join" || frames[1].Event != "echo" || frames[1].JoinRef != frames[0].JoinRef {
		t.Errorf("frames %+v", frames)
	}
}

func TestPresenceOverSocket(t *testing.T) {
	s := newFakeServer(t)
	s.presence["presence:1"] = json.RawMessage(`{"alice":{"metas":[{"phx_ref":"a1"}]}}`)
	sock := dial(t, s, nil)
	ch := sock.Channel("presence:1", nil)
	p := client.NewPresence(ch, nil)
	syncs := make(chan []string, 10)
	p.OnSync(func() { syncs <- p.Keys() })
	if _, err := ch.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := <-syncs; strings.Join(got, ",") != "alice" {
		t.Fatalf("after state: %v", got)
	}
	s.broadcast("presence:1", "presence_diff", `{"joins":{"bob":{"metas":[{"phx_ref":"b1"}]}},"leaves":{}}`)
	if got := <-syncs; strings.Join(got, ",") != "alice,bob" {
		t.Fatalf("after diff: %v", got)
	}
	// Reconnect: the server's new state no longer has alice.
	s.mu.Lock()
	s.presence["presence:1"] = json.RawMessage(`{"bob":{"metas":[{"phx_ref":"b1"}]},"carol":{"metas":[{"phx_ref":"c1"}]}}`)
	s.mu.Unlock()
	s.dropAll()
	if got := <-syncs; strings.Join(got, ",") != "bob,carol" {
		t.Fatalf("after rejoin: %v", got)
	}
}

func TestCloseNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newFakeServer(t)
	ctx5 := ctx(t)
	sock, err := client.Dial(ctx5, s.url(), &client.Options{HeartbeatInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ch := sock.Channel("room:1", nil)
	ch.Join(ctx5)
	pushed := make(chan error, 1)
	go func() { _, err := ch.Push(ctx5, "noreply", nil); pushed <- err }()
	s.waitFrame(isEvent("room:1", "noreply"))
	closeFromCallback := make(chan error, 1)
	ch.On("trigger", func(json.RawMessage) { closeFromCallback <- sock.Close() })
	s.broadcast("room:1", "trigger", `{}`)
	if err := <-closeFromCallback; err != nil {
		t.Fatal(err)
	}
	if err := <-pushed; !errors.Is(err, client.ErrClosed) {
		t.Errorf("pending Push after Close: %v", err)
	}
	if err := sock.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := ch.Push(ctx5, "echo", nil); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Push after Close: %v", err)
	}
	s.dropAll()
	s.srv.Close()
	time.Sleep(50 * time.Millisecond) // let the event goroutine finish
}

func TestCloseWhileCallbackRuns(t *testing.T) {
	// Close from another goroutine while a callback runs does not wait for
	// that callback (it cannot tell it from a callback calling Close); the
	// event goroutine ends once the callback returns.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newFakeServer(t)
	sock, err := client.Dial(ctx(t), s.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := sock.Channel("room:1", nil)
	if _, err := ch.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	returned := make(chan struct{})
	ch.On("block", func(json.RawMessage) {
		close(entered)
		<-release
		close(returned)
	})
	s.broadcast("room:1", "block", `{}`)
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- sock.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a running callback")
	}
	close(release)
	<-returned
	s.dropAll()
	s.srv.Close()
	// goleak.VerifyNone retries until the event goroutine has ended.
}
