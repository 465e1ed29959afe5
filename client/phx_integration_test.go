package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/client"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// phxStack is presenced's channel stack (presence + built-in presence
// channel + phx server) behind a TCP proxy that can cut connections.
type phxStack struct {
	proxy *proxy
}

func newPhxStack(t *testing.T) *phxStack {
	t.Helper()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, _, err := presencechannel.NewServer(presencechannel.Config{Presence: p}, phx.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	px := newProxy(t, hs.Listener.Addr().String())
	t.Cleanup(func() {
		px.close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		p.Close()
	})
	return &phxStack{proxy: px}
}

func (st *phxStack) dial(t *testing.T, user string) *client.Socket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock, err := client.Dial(ctx, "ws://"+st.proxy.addr()+"/socket", &client.Options{
		Params:         url.Values{"user_id": {user}},
		ReconnectAfter: fast,
		RejoinAfter:    fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	return sock
}

// proxy forwards TCP connections and can cut them all.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	p.wg.Go(p.accept)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close() })
		p.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

// cut closes every proxied connection (both sides).
func (p *proxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (p *proxy) close() {
	p.l.Close()
	p.cut()
	p.wg.Wait()
}

// watcher records a Presence's keys at every sync.
type watcher struct {
	p     *client.Presence
	syncs chan []string
}

func watch(ch *client.Channel) *watcher {
	w := &watcher{p: client.NewPresence(ch, nil), syncs: make(chan []string, 100)}
	w.p.OnSync(func() { w.syncs <- w.p.Keys() })
	return w
}

// waitKeys waits for a sync after which the keys are want.
func (w *watcher) waitKeys(t *testing.T, want ...string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case keys := <-w.syncs:
			if slices.Equal(keys, want) {
				return
			}
		case <-timeout:
			t.Fatalf("keys never became %q (now %q)", want, w.p.Keys())
		}
	}
}

func TestPhxPresence(t *testing.T) {
	st := newPhxStack(t)
	a := st.dial(t, "alice")
	b := st.dial(t, "bob")

	chA := a.Channel("room:lobby", map[string]any{"meta": map[string]string{"device": "phone"}})
	wa := watch(chA)
	var mu sync.Mutex
	var leaves []string
	wa.p.OnLeave(func(key string, cur client.Entry, left client.Entry) {
		mu.Lock()
		leaves = append(leaves, key)
		mu.Unlock()
	})
	if _, err := chA.Join(ctx(t)); err != nil {
		t.Fatalf("alice join: %v", err)
	}
	wa.waitKeys(t, "alice")

	chB := b.Channel("room:lobby", map[string]any{"meta": map[string]string{"device": "laptop"}})
	wb := watch(chB)
	if _, err := chB.Join(ctx(t)); err != nil {
		t.Fatalf("bob join: %v", err)
	}
	wb.waitKeys(t, "alice", "bob")
	wa.waitKeys(t, "alice", "bob")

	e, ok := wa.p.Get("bob")
	if !ok || len(e.Metas) != 1 || e.Metas[0].Ref == "" || !strings.Contains(string(e.Metas[0].Raw), `"device":"laptop"`) {
		t.Fatalf("bob as alice sees him: %+v %v", e, ok)
	}

	// An update replaces bob's meta (new phx_ref), seen by alice.
	if _, err := chB.Push(ctx(t), "presence:update", map[string]any{"meta": map[string]string{"device": "tablet"}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, _ := wa.p.Get("bob")
		if len(e.Metas) == 1 && strings.Contains(string(e.Metas[0].Raw), "tablet") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("update not seen: %+v", e)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Bob leaves.
	if err := chB.Leave(ctx(t)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	wa.waitKeys(t, "alice")
	mu.Lock()
	if !slices.Contains(leaves, "bob") {
		t.Errorf("OnLeave not called for bob: %q", leaves)
	}
	mu.Unlock()
}

// A restart of the connection, against the Go server: after a forced reconnect (new join_ref) the
// server pushes a new presence_state and the client resyncs.
func TestPhxReconnectResyncs(t *testing.T) {
	st := newPhxStack(t)
	a := st.dial(t, "alice")
	b := st.dial(t, "bob")
	chA := a.Channel("room:1", map[string]any{"meta": map[string]string{}})
	wa := watch(chA)
	if _, err := chA.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	chB := b.Channel("room:1", map[string]any{"meta": map[string]string{}})
	if _, err := chB.Join(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wa.waitKeys(t, "alice", "bob")
	first := chA.JoinRef()

	st.proxy.cut() // both sockets lose their connection
	eventually(t, "both rejoined", func() bool {
		return chA.State() == client.StateJoined && chA.JoinRef() != first && chB.State() == client.StateJoined
	})
	wa.waitKeys(t, "alice", "bob")
	if wa.p.InPendingSyncState() {
		t.Error("still pending after the new presence_state")
	}
	if _, err := chA.Push(ctx(t), "presence:update", map[string]any{"meta": map[string]string{"after": "rejoin"}}); err != nil {
		t.Errorf("push after rejoin: %v", err)
	}
}

func TestPhxJoinRefusedAndHeartbeat(t *testing.T) {
	st := newPhxStack(t)
	a := st.dial(t, "alice")
	// Not a topic of the built-in channel.
	_, err := a.Channel("nope:1", nil).Join(ctx(t))
	var re *client.ReplyError
	if !errors.As(err, &re) || !strings.Contains(string(re.Response), "unmatched topic") {
		t.Errorf("join of an unmatched topic: %v", err)
	}
	if rtt, err := a.Ping(ctx(t)); err != nil || rtt <= 0 {
		t.Errorf("Ping: %v %v", rtt, err)
	}
}

// A member that asks for counts gets them (OnCount), and no list.
func TestPhxCountMode(t *testing.T) {
	st := newPhxStack(t)
	counts := make(chan [2]int, 16)
	c := st.dial(t, "carol")
	chC := c.Channel("room:count", map[string]any{"meta": map[string]string{}, "presence": map[string]string{"mode": "count"}})
	client.OnCount(chC, func(keys, metas int) { counts <- [2]int{keys, metas} })
	states := 0
	chC.On("presence_state", func(json.RawMessage) { states++ })
	if _, err := chC.Join(ctx(t)); err != nil {
		t.Fatalf("join: %v", err)
	}
	d := st.dial(t, "dave")
	if _, err := d.Channel("room:count", map[string]any{"meta": map[string]string{}}).Join(ctx(t)); err != nil {
		t.Fatalf("dave: %v", err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case n := <-counts:
			if n == [2]int{2, 2} {
				if states != 0 {
					t.Fatalf("a count member got %d presence_state", states)
				}
				return
			}
		case <-timeout:
			t.Fatal("no presence_count of 2 keys")
		}
	}
}
