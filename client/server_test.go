package client_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer is a tiny Phoenix channels V2 server: enough protocol for the
// client's tests, with knobs to misbehave.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	silentHeartbeats atomic.Bool // stop answering heartbeats
	joinDelay        atomic.Int64

	mu       sync.Mutex
	conns    []*fakeConn
	queries  []url.Values
	protos   []string
	received []frame // every frame received, in order
	presence map[string]json.RawMessage
	cond     *sync.Cond
}

type frame struct {
	JoinRef, Ref, Topic, Event string
	Payload                    json.RawMessage
	Binary                     []byte
}

type fakeConn struct {
	s  *fakeServer
	ws *websocket.Conn
	wm sync.Mutex
}

func newFakeServer(t *testing.T) *fakeServer {
	s := &fakeServer{t: t, presence: map[string]json.RawMessage{}}
	s.cond = sync.NewCond(&s.mu)
	up := websocket.Upgrader{Subprotocols: []string{"phoenix"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/socket/websocket", func(w http.ResponseWriter, r *http.Request) {
		// The lock is held across the upgrade: the client counts as connected
		// as soon as the handshake answer arrives, and a test that then asks
		// for the connection must find it recorded.
		s.mu.Lock()
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			s.mu.Unlock()
			return
		}
		c := &fakeConn{s: s, ws: ws}
		s.conns = append(s.conns, c)
		s.queries = append(s.queries, r.URL.Query())
		s.protos = append(s.protos, r.Header.Get("Sec-WebSocket-Protocol"))
		s.cond.Broadcast()
		s.mu.Unlock()
		c.serve()
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		s.dropAll()
		s.srv.Close()
	})
	return s
}

func (s *fakeServer) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/socket" }

// dropAll closes every connection abruptly (no close frame).
func (s *fakeServer) dropAll() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.ws.Close()
	}
}

func (s *fakeServer) query(i int) (url.Values, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[i], s.protos[i]
}

func (s *fakeServer) numConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queries)
}

// waitFrame waits for a received frame matching pred, and returns it.
func (s *fakeServer) waitFrame(pred func(frame) bool) frame {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	timer := time.AfterFunc(5*time.Second, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, f := range s.received {
			if pred(f) {
				return f
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("frame not received; got %+v", s.received)
		}
		s.cond.Wait()
	}
}

// frames returns the received frames matching pred.
func (s *fakeServer) frames(pred func(frame) bool) []frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []frame
	for _, f := range s.received {
		if pred(f) {
			out = append(out, f)
		}
	}
	return out
}

func isEvent(topic, event string) func(frame) bool {
	return func(f frame) bool { return f.Topic == topic && f.Event == event }
}

// broadcast sends [null, null, topic, event, payload] on every connection.
func (s *fakeServer) broadcast(topic, event, payload string) {
	s.mu.Lock()
	conns := append([]*fakeConn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		c.send(nil, nil, topic, event, json.RawMessage(payload))
	}
}

func (s *fakeServer) sendBinary(b []byte) {
	s.mu.Lock()
	conns := append([]*fakeConn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		c.wm.Lock()
		c.ws.WriteMessage(websocket.BinaryMessage, b)
		c.wm.Unlock()
	}
}

func (c *fakeConn) send(joinRef, ref any, topic, event string, payload any) {
	b, _ := json.Marshal([]any{joinRef, ref, topic, event, payload})
	c.wm.Lock()
	defer c.wm.Unlock()
	c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *fakeConn) reply(f frame, joinRef any, status string, response any) {
	c.send(joinRef, f.Ref, f.Topic, "phx_reply", map[string]any{"status": status, "response": response})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (c *fakeConn) serve() {
	s := c.s
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var f frame
		if mt == websocket.BinaryMessage {
			// kind 0: join_ref, ref, topic, event lengths.
			if len(data) < 5 || data[0] != 0 {
				continue
			}
			p := 5
			field := func(n byte) string { v := string(data[p : p+int(n)]); p += int(n); return v }
			f.JoinRef, f.Ref, f.Topic, f.Event = field(data[1]), field(data[2]), field(data[3]), field(data[4])
			f.Binary = data[p:]
		} else {
			var arr [5]json.RawMessage
			if json.Unmarshal(data, &arr) != nil {
				continue
			}
			var jr, ref *string
			json.Unmarshal(arr[0], &jr)
			json.Unmarshal(arr[1], &ref)
			if jr != nil {
				f.JoinRef = *jr
			}
			if ref != nil {
				f.Ref = *ref
			}
			json.Unmarshal(arr[2], &f.Topic)
			json.Unmarshal(arr[3], &f.Event)
			f.Payload = arr[4]
		}
		s.mu.Lock()
		s.received = append(s.received, f)
		s.cond.Broadcast()
		s.mu.Unlock()
		c.handle(f)
	}
}

func (c *fakeConn) handle(f frame) {
	s := c.s
	jr := nullable(f.JoinRef)
	switch {
	case f.Topic == "phoenix" && f.Event == "heartbeat":
		if !s.silentHeartbeats.Load() {
			c.reply(f, nil, "ok", map[string]any{})
		}
	case f.Event == "phx_join":
		if d := s.joinDelay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		switch {
		case f.Topic == "refuse":
			c.reply(f, jr, "error", map[string]any{"reason": "unauthorized"})
		case f.Topic == "silent":
		default:
			c.reply(f, jr, "ok", map[string]any{"params": f.Payload})
			if strings.HasPrefix(f.Topic, "presence:") {
				s.mu.Lock()
				st := s.presence[f.Topic]
				s.mu.Unlock()
				if st == nil {
					st = json.RawMessage("{}")
				}
				c.send(jr, nil, f.Topic, "presence_state", st)
			}
		}
	case f.Event == "phx_leave":
		c.reply(f, jr, "ok", map[string]any{})
		c.send(jr, jr, f.Topic, "phx_close", map[string]any{})
	case f.Binary != nil:
		c.reply(f, jr, "ok", map[string]any{"binary_len": len(f.Binary)})
	case f.Event == "echo":
		c.reply(f, jr, "ok", f.Payload)
	case f.Event == "fail":
		c.reply(f, jr, "error", map[string]any{"reason": "nope"})
	case f.Event == "noreply":
	case f.Event == "push_me":
		c.send(jr, nil, f.Topic, "pushed", f.Payload)
		c.reply(f, jr, "ok", map[string]any{})
	case f.Event == "crash":
		c.send(jr, jr, f.Topic, "phx_error", map[string]any{"reason": "channel_crash"})
	case f.Event == "close_me":
		c.reply(f, jr, "ok", map[string]any{})
		c.send(jr, jr, f.Topic, "phx_close", map[string]any{})
	}
}
