package phx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testChannel is a small channel driven by its payloads.
type testChannel struct {
	mu    sync.Mutex
	terms []string // "topic:reason"
}

func (tc *testChannel) Join(ctx context.Context, s *Socket, p Payload) (any, error) {
	var in map[string]any
	if !p.IsBinary {
		json.Unmarshal(p.JSON, &in)
	}
	switch {
	case in["refuse"] == true:
		return nil, Refuse(map[string]string{"reason": "refused"})
	case in["fail"] == true:
		return nil, errors.New("boom")
	case in["panic"] == true:
		panic("join panic")
	}
	if ms, ok := in["sleep_ms"].(float64); ok {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if in["push"] == true {
		if err := s.Push("joined_push", map[string]any{"topic": s.Topic()}); err != nil {
			return nil, err
		}
	}
	if in["broadcast"] == true {
		if err := s.Broadcast("joined_bcast", map[string]any{"owner": true}); err != nil {
			return nil, err
		}
	}
	if r, ok := in["reply"]; ok {
		return r, nil
	}
	return nil, nil
}

func (tc *testChannel) HandleIn(ctx context.Context, s *Socket, event string, p Payload) (*Reply, error) {
	switch event {
	case "echo":
		if p.IsBinary {
			return ReplyOK(Binary(p.Binary)), nil
		}
		return ReplyOK(p.JSON), nil
	case "noreply":
		return nil, nil
	case "error_reply":
		return ReplyError(map[string]string{"reason": "bad"}), nil
	case "push":
		if p.IsBinary {
			return nil, s.Push("pushed", Binary(p.Binary))
		}
		return nil, s.Push("pushed", p.JSON)
	case "broadcast":
		if p.IsBinary {
			return ReplyOK(nil), s.Broadcast("broadcast", Binary(p.Binary))
		}
		return ReplyOK(nil), s.Broadcast("broadcast", p.JSON)
	case "broadcast_from":
		return ReplyOK(nil), s.BroadcastFrom("broadcast", p.JSON)
	case "stop":
		return ReplyOK(nil), ErrStop
	case "crash":
		return nil, errors.New("crash")
	case "panic":
		panic("handle_in panic")
	case "assigns":
		return ReplyOK(map[string]any{"assigns": s.Assigns(), "id": s.ID()}), nil
	}
	return ReplyError(map[string]string{"reason": "unknown event"}), nil
}

func (tc *testChannel) Terminate(s *Socket, reason error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	r := reason.Error()
	switch {
	case errors.Is(reason, ErrLeft):
		r = "left"
	case errors.Is(reason, ErrDuplicateJoin):
		r = "duplicate"
	case errors.Is(reason, ErrConnClosed):
		r = "closed"
	case errors.Is(reason, ErrStop):
		r = "stop"
	}
	tc.terms = append(tc.terms, s.Topic()+":"+r)
}

func (tc *testChannel) terminated() []string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return append([]string(nil), tc.terms...)
}

// waitTerminated waits until n terminations were recorded.
func (tc *testChannel) waitTerminated(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := tc.terminated()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminations: got %v, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testEnv struct {
	t    *testing.T
	srv  *Server
	http *httptest.Server
	ch   *testChannel
}

// newEnv starts a Server with the test channel on "room:*" and "exact"
// behind an httptest server. mod may adjust the config.
func newEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	tc := &testChannel{}
	cfg := Config{
		Channels: []Route{{Pattern: "room:*", Channel: tc}, {Pattern: "exact", Channel: tc}},
		Connect: func(ctx context.Context, info *ConnectInfo) (Identity, error) {
			if info.Params.Get("refuse") == "1" {
				return Identity{}, errors.New("refused")
			}
			if info.Params.Get("refuse") == "429" {
				return Identity{}, &ConnectError{Status: 429, Err: errors.New("slow down")}
			}
			return Identity{ID: info.Params.Get("id"), Assigns: info.Params.Get("user")}, nil
		},
		LongPoll: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	e := &testEnv{t: t, srv: srv, http: hs, ch: tc}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return e
}

func (e *testEnv) wsURL(path string, params url.Values) string {
	u := "ws" + strings.TrimPrefix(e.http.URL, "http") + path
	if params != nil {
		u += "?" + params.Encode()
	}
	return u
}

// wsClient is a raw WebSocket test client.
type wsClient struct {
	t  *testing.T
	ws *websocket.Conn
	v1 bool
}

// dial opens a WebSocket with vsn (or none when vsn == "").
func (e *testEnv) dial(vsn string, extra ...string) *wsClient {
	e.t.Helper()
	c, resp, err := e.tryDial(vsn, nil, extra...)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	return c
}

func (e *testEnv) tryDial(vsn string, hdr http.Header, extra ...string) (*wsClient, *http.Response, error) {
	params := url.Values{}
	for i := 0; i+1 < len(extra); i += 2 {
		params.Set(extra[i], extra[i+1])
	}
	if vsn != "" {
		params.Set("vsn", vsn)
	}
	ws, resp, err := websocket.DefaultDialer.Dial(e.wsURL("/socket/websocket", params), hdr)
	if err != nil {
		return nil, resp, err
	}
	c := &wsClient{t: e.t, ws: ws, v1: vsn == "" || strings.HasPrefix(vsn, "1.")}
	e.t.Cleanup(func() { ws.Close() })
	return c, resp, nil
}

func (c *wsClient) sendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendText(string(b))
}

func (c *wsClient) sendText(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) sendBinary(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recvRaw reads one frame; it fails the test on error.
func (c *wsClient) recvRaw(timeout time.Duration) (int, []byte, error) {
	c.ws.SetReadDeadline(time.Now().Add(timeout))
	return c.ws.ReadMessage()
}

// recv reads one text frame and returns it compacted.
func (c *wsClient) recv() string {
	c.t.Helper()
	mt, b, err := c.recvRaw(3 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	if mt != websocket.TextMessage {
		c.t.Fatalf("recv: got binary frame %x, want text", b)
	}
	return canon(c.t, b)
}

func (c *wsClient) recvBinary() []byte {
	c.t.Helper()
	mt, b, err := c.recvRaw(3 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	if mt != websocket.BinaryMessage {
		c.t.Fatalf("recv: got text frame %s, want binary", b)
	}
	return b
}

// expect reads frames and compares them, in order, with want (JSON texts,
// compared canonically).
func (c *wsClient) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		got := c.recv()
		if got != canon(c.t, []byte(w)) {
			c.t.Fatalf("frame:\n got %s\nwant %s", got, canon(c.t, []byte(w)))
		}
	}
}

// expectNothing checks that no frame arrives within d.
func (c *wsClient) expectNothing(d time.Duration) {
	c.t.Helper()
	mt, b, err := c.recvRaw(d)
	if err == nil {
		c.t.Fatalf("unexpected frame (type %d): %s", mt, b)
	}
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("expected a timeout, got %v", err)
	}
	// gorilla's connection is unusable after a read timeout; tests call
	// this last on a client.
}

// expectClose reads until the close frame and returns its code and reason.
// No text frame may come first.
func (c *wsClient) expectClose() (int, string) {
	c.t.Helper()
	for {
		mt, b, err := c.recvRaw(5 * time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text
			}
			c.t.Fatalf("expected a close frame, got %v", err)
		}
		c.t.Fatalf("expected a close frame, got frame type %d: %s", mt, b)
	}
}

// canon compacts JSON and sorts object keys.
func canon(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	out, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func jsonf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
