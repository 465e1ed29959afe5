package phx

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A text frame holding invalid UTF-8 (a raw 0xFF inside a JSON string) is
// closed with 1007 and never reaches the room's other members: relayed in a
// text frame it would make their clients fail the connection.
func TestInvalidUTF8TextFrameClosed(t *testing.T) {
	e := newEnv(t, nil)
	other := e.dial("2.0.0")
	other.sendText(`["1","1","room:utf","phx_join",{}]`)
	other.expect(`["1","1","room:utf","phx_reply",{"status":"ok","response":{}}]`)
	a := e.dial("2.0.0")
	a.sendText("[\"1\",\"1\",\"room:utf\",\"phx_join\",{\"meta\":{\"name\":\"bad\xff\"}}]")
	if code, reason := a.expectClose(); code != CloseInvalidData || reason != reasonBadUTF8 {
		t.Fatalf("close %d %q, want 1007 %q", code, reason, reasonBadUTF8)
	}
	b := e.dial("2.0.0")
	b.sendText(`["1","1","room:utf","phx_join",{}]`)
	b.recv()
	b.sendText("[\"1\",\"2\",\"room:utf\",\"broadcast\",{\"x\":\"\xff\xfe\"}]")
	if code, _ := b.expectClose(); code != CloseInvalidData {
		t.Fatalf("broadcast: close %d, want 1007", code)
	}
	other.sendText(`["1","2","room:utf","echo",{"still":"here"}]`)
	other.expect(`["1","2","room:utf","phx_reply",{"status":"ok","response":{"still":"here"}}]`)
}

// A V2 binary push whose topic is not UTF-8 is malformed: the topic would
// be echoed in a text reply.
func TestBinaryFrameInvalidUTF8Topic(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendBinary([]byte{0, 1, 1, 2, 1, '1', '1', 0xff, 'x', 'e'})
	if code, _ := a.expectClose(); code != CloseInvalidData {
		t.Fatalf("close %d, want 1007", code)
	}
}

// Long-poll bodies are held to the same rule: the POST is refused and the
// session ends.
func TestLongPollInvalidUTF8Refused(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.lpOpen(v2)
	r := e.lpDo("POST", v2, tok, "application/json", "[\"1\",\"1\",\"room:a\",\"phx_join\",{\"n\":\"\xff\"}]", nil)
	if r.code != http.StatusBadRequest {
		t.Fatalf("POST: HTTP %d, want 400", r.code)
	}
	if g := e.lpDo("GET", v2, tok, "", "", nil); g.status() != http.StatusGone {
		t.Fatalf("session still alive: %s", g.rawBody)
	}
}

// rawClient is a WebSocket client that writes masked frames by hand and
// reads only when told: a client that never reads.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func (e *testEnv) rawDial(t *testing.T, query string) *rawClient {
	t.Helper()
	addr := strings.TrimPrefix(e.http.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /socket/websocket?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", query, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawClient{c: c, br: br}
}

// send writes one masked frame (mask 0, so the payload goes as it is).
func (r *rawClient) send(t *testing.T, op byte, payload []byte) {
	t.Helper()
	h := []byte{0x80 | op}
	switch n := len(payload); {
	case n <= 125:
		h = append(h, 0x80|byte(n))
	case n <= 0xFFFF:
		h = append(h, 0x80|126, byte(n>>8), byte(n))
	default:
		h = append(h, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	h = append(h, 0, 0, 0, 0)
	if _, err := r.c.Write(append(h, payload...)); err != nil {
		t.Fatal(err)
	}
}

// readClose reads server frames until a close frame and returns its payload.
func (r *rawClient) readClose(t *testing.T) []byte {
	t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var h [2]byte
		if _, err := io.ReadFull(r.br, h[:]); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var x [2]byte
			io.ReadFull(r.br, x[:])
			n = int(x[0])<<8 | int(x[1])
		case 127:
			var x [8]byte
			io.ReadFull(r.br, x[:])
			n = 0
			for _, b := range x {
				n = n<<8 | int(b)
			}
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r.br, p); err != nil {
			t.Fatal(err)
		}
		if h[0]&0x0f == opClose {
			return p
		}
	}
}

// A close frame with a one-byte payload is a protocol error (RFC 6455
// §5.5.1): answered 1002, not with an empty close.
func TestOneByteCloseFrameIs1002(t *testing.T) {
	e := newEnv(t, nil)
	r := e.rawDial(t, "vsn=2.0.0")
	r.send(t, opClose, []byte{3})
	p := r.readClose(t)
	if len(p) < 2 || int(p[0])<<8|int(p[1]) != CloseProtocolError {
		t.Fatalf("close payload %q, want code 1002", p)
	}
	// An empty close is still echoed empty.
	r2 := e.rawDial(t, "vsn=2.0.0")
	r2.send(t, opClose, nil)
	if p := r2.readClose(t); len(p) != 0 {
		t.Fatalf("empty close answered with %q", p)
	}
}

// bigPayload is a JSON object of about n bytes.
func bigPayload(n int) json.RawMessage {
	return json.RawMessage(`{"x":"` + strings.Repeat("x", n) + `"}`)
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A client that never reads is closed as a slow consumer once MaxQueueBytes
// are waiting, however few frames that is, and the server's memory stays
// bounded; the room's other members are unaffected.
func TestQueueBoundedInBytes(t *testing.T) {
	lc := &logCapture{}
	fc := &funcChannel{joined: make(chan *Socket, 4)}
	e := newEnv(t, func(c *Config) {
		c.Channels = []Route{{Pattern: "room:*", Channel: fc}}
		c.MaxQueueBytes = 4 << 20
		c.WriteTimeout = 500 * time.Millisecond
		c.Logger = lc.logger()
	})
	other := e.dial("2.0.0")
	other.sendText(`["1","1","room:q","phx_join",{}]`)
	other.recv()
	fc.nextSocket(t)
	r := e.rawDial(t, "vsn=2.0.0")
	r.send(t, opText, []byte(`["1","1","room:q","phx_join",{}]`))
	s := fc.nextSocket(t)
	h0 := heapInuse()
	big := bigPayload(512 << 10)
	var err error
	pushes := 0
	for pushes = 1; pushes <= 200; pushes++ { // 100 MiB if nothing bounded it
		if err = s.Push("big", big); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("200 pushes of 512 KiB to a client that never reads were all queued")
	}
	if grown := int64(heapInuse()) - int64(h0); grown > 48<<20 {
		t.Fatalf("heap grew by %d MiB", grown>>20)
	}
	lc.waitLine(t, "slow consumer", "waiting_bytes")
	t.Logf("closed after %d pushes of 512 KiB", pushes)
	e.srv.Broadcast("room:q", "small", map[string]int{"n": 1})
	other.expect(`[null,null,"room:q","small",{"n":1}]`)
}

// A duplicate join drops what the replaced channel still had queued, so a
// client that rejoins (and does not read) does not pile up presence_states.
func TestDuplicateJoinDropsQueuedFrames(t *testing.T) {
	big := bigPayload(1 << 20)
	fc := &funcChannel{join: func(ctx context.Context, s *Socket, p Payload) (any, error) {
		return nil, s.Push("presence_state", big)
	}}
	e := newEnv(t, func(c *Config) {
		c.Channels = []Route{{Pattern: "room:*", Channel: fc}}
		c.MaxQueueBytes = 6 << 20
		c.WriteTimeout = 2 * time.Second
	})
	r := e.rawDial(t, "vsn=2.0.0")
	for i := range 50 {
		r.send(t, opText, fmt.Appendf(nil, `["%d","%d","room:dup","phx_join",{}]`, i+1, i+1))
	}
	r.send(t, opText, []byte(`[null,"hb","phoenix","heartbeat",{}]`))
	time.Sleep(300 * time.Millisecond)
	e.srv.cmu.Lock()
	defer e.srv.cmu.Unlock()
	for c := range e.srv.conns {
		c.out.mu.Lock()
		closing, reason, waiting := c.out.closing, c.out.closeReason, c.out.waitingLocked()
		c.out.mu.Unlock()
		if closing {
			t.Fatalf("50 duplicate joins of a 1 MiB state closed the client: %q", reason)
		}
		if waiting > 6<<20 {
			t.Fatalf("%d bytes waiting", waiting)
		}
	}
}

// envWith serves the test channel through wrap (e.g. to give requests
// another peer address).
func envWith(t *testing.T, mod func(*Config), wrap func(http.Handler) http.Handler) *testEnv {
	e := newEnv(t, mod)
	hs := httptest.NewServer(wrap(e.srv))
	t.Cleanup(hs.Close)
	e.http = hs
	return e
}

// fromPeer makes every request come from ip.
func fromPeer(ip string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, port, _ := net.SplitHostPort(r.RemoteAddr)
			r.RemoteAddr = net.JoinHostPort(ip, port)
			h.ServeHTTP(w, r)
		})
	}
}

func TestConnectionsPerIPAndID(t *testing.T) {
	e := envWith(t, func(c *Config) { c.MaxConnsPerIP = 3; c.MaxConnsPerID = 2 }, fromPeer("203.0.113.7"))
	e.dial("2.0.0", "id", "user:a")
	e.dial("2.0.0", "id", "user:a")
	if _, resp, err := e.tryDial("2.0.0", nil, "id", "user:a"); err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection of one id: %v", err)
	}
	e.dial("2.0.0", "id", "user:b")
	if _, resp, err := e.tryDial("2.0.0", nil, "id", "user:c"); err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth connection of one IP: %v", err)
	}
	// Long-poll sessions count too: a real 429 with an empty body, which
	// phoenix.js retries (a body with a status it does not know stops it).
	if r := e.lpDo("GET", url.Values{"vsn": {"2.0.0"}, "id": {"user:d"}}, "", "", "", nil); r.code != http.StatusTooManyRequests || len(r.rawBody) != 0 {
		t.Fatalf("long-poll session over the IP limit: %d %q", r.code, r.rawBody)
	}
	// Loopback peers are not counted per IP.
	l := newEnv(t, func(c *Config) { c.MaxConnsPerIP = 1 })
	l.dial("2.0.0")
	l.dial("2.0.0")
}

func TestConnectionCountsReleased(t *testing.T) {
	e := envWith(t, func(c *Config) { c.MaxConnsPerIP = 1 }, fromPeer("198.51.100.1"))
	for range 5 {
		a := e.dial("2.0.0")
		a.sendText(`[null,"1","phoenix","heartbeat",{}]`)
		a.recv() // registered
		a.ws.Close()
		deadline := time.Now().Add(3 * time.Second)
		for e.srv.Connections() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	e.srv.cmu.Lock()
	defer e.srv.cmu.Unlock()
	if len(e.srv.perIP) != 0 || len(e.srv.perID) != 0 {
		t.Fatalf("counts left: %v %v", e.srv.perIP, e.srv.perID)
	}
}

func TestPeerIP(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5": "", "[::1]:5": "", "127.9.9.9:1": "", "10.0.0.1:80": "10.0.0.1",
		"[2001:db8::1]:443": "2001:db8::1", "[::ffff:10.1.2.3]:1": "10.1.2.3", "garbage": "",
	} {
		if got := peerIP(in); got != want {
			t.Errorf("peerIP(%q) = %q, want %q", in, got, want)
		}
	}
}

// A connection ends when its credentials expire.
func TestConnectionClosedAtExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Connect = func(ctx context.Context, info *ConnectInfo) (Identity, error) {
			return Identity{ExpiresAt: time.Now().Add(300 * time.Millisecond)}, nil
		}
	})
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:x","phx_join",{}]`)
	a.recv()
	if code, reason := a.expectClose(); code != ClosePolicyViolation || reason != reasonExpired {
		t.Fatalf("close %d %q, want 1008 %q", code, reason, reasonExpired)
	}
	tok := e.lpOpen(v2)
	time.Sleep(400 * time.Millisecond)
	if g := e.lpDo("GET", v2, tok, "", "", nil); g.status() != http.StatusGone {
		t.Fatalf("expired long-poll session still alive: %s", g.rawBody)
	}
}

// The join limit applies before routing, so a flood of joins of unknown
// topics is refused (and not logged) past the burst.
func TestJoinLimitBeforeRouting(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.JoinBurst = 5; c.JoinRate = 0.001 })
	a := e.dial("2.0.0")
	for i := range 8 {
		a.sendText(fmt.Sprintf(`["%d","%d","nomatch:%d","phx_join",{}]`, i, i, i))
	}
	for i := range 8 {
		want := `{"reason":"unmatched topic"}`
		jr := "null"
		if i >= 5 {
			want, jr = `{"reason":"too many joins"}`, fmt.Sprintf("%q", fmt.Sprint(i))
		}
		a.expect(fmt.Sprintf(`[%s,"%d","nomatch:%d","phx_reply",{"status":"error","response":%s}]`, jr, i, i, want))
	}
}

func TestInvalidTopicsRefused(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	for i, topic := range []string{"room:a\x00b", "room:\u0085", "room:\x1b[31m", "room:\x7f"} {
		b, _ := json.Marshal([]any{"1", fmt.Sprint(i), topic, "phx_join", map[string]any{}})
		a.sendText(string(b))
		got := a.recv()
		if !strings.Contains(got, `"invalid topic"`) {
			t.Errorf("join of %q: %s", topic, got)
		}
	}
}

// Deadlines the HTTP server sets on a request must not reach the upgraded
// connection: with WriteTimeout and ReadTimeout of the http.Server short,
// the WebSocket still works after them.
func TestHTTPServerDeadlinesClearedAfterUpgrade(t *testing.T) {
	e := newEnv(t, nil)
	hs := httptest.NewUnstartedServer(e.srv)
	hs.Config.WriteTimeout = 200 * time.Millisecond
	hs.Config.ReadTimeout = 200 * time.Millisecond
	hs.Start()
	t.Cleanup(hs.Close)
	e.http = hs
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:d","phx_join",{}]`)
	a.recv()
	time.Sleep(400 * time.Millisecond)
	e.srv.Broadcast("room:d", "later", map[string]int{"n": 1})
	a.expect(`[null,null,"room:d","later",{"n":1}]`)
	a.sendText(`["1","2","room:d","echo",{}]`)
	a.expect(`["1","2","room:d","phx_reply",{"status":"ok","response":{}}]`)
}

// phoenix.js appends its session token to the endpoint's parameters, which
// may hold the application's own "token" (a JWT) first.
func TestLongPollSessionTokenAfterAppToken(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.lpOpen(url.Values{"vsn": {"2.0.0"}, "token": {"app-jwt"}})
	q := url.Values{"vsn": {"2.0.0"}, "token": {"app-jwt", tok}}
	req, _ := http.NewRequest("POST", e.http.URL+"/socket/longpoll?"+q.Encode(), strings.NewReader(`["1","1","room:a","phx_join",{}]`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"status":200`) {
		t.Fatalf("POST with the app token first: %s", body)
	}
}

// A POST whose Content-Length is over the limit is refused before its body
// is read; one trickled in is cut off.
func TestLongPollPostBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WriteTimeout = 300 * time.Millisecond })
	tok := e.lpOpen(v2)
	addr := strings.TrimPrefix(e.http.URL, "http://")
	post := func(length int64, body string) (int, time.Duration) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /socket/longpoll?vsn=2.0.0&token=%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", tok, addr, length, body)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, time.Since(start) // closed without an answer
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	if code, _ := post(DefaultLongPollMaxBody+1, ""); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized Content-Length: HTTP %d, want 413", code)
	}
	if _, took := post(1000, `["1"`); took > 3*time.Second {
		t.Fatalf("a trickled body held the request for %v", took)
	}
}

func TestTrustForwardedProto(t *testing.T) {
	for _, trust := range []bool{false, true} {
		s, err := New(Config{TrustForwardedProto: trust})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "http://app.example.com/socket/websocket", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("X-Forwarded-Proto", "https")
		if got := s.allowOrigin(r, s.ws.origins); got != trust {
			t.Errorf("trust=%v: allowed=%v", trust, got)
		}
		r.Header.Del("X-Forwarded-Proto")
		r.Header.Set("Forwarded", `for=1.2.3.4;proto=https, for=5.6.7.8`)
		if got := s.allowOrigin(r, s.ws.origins); got != trust {
			t.Errorf("trust=%v, Forwarded: allowed=%v", trust, got)
		}
	}
}

var _ = websocket.TextMessage

// A long-poll session that stops polling is bounded the same way: its
// queue is closed as a slow consumer once MaxQueueBytes wait.
func TestLongPollQueueBoundedInBytes(t *testing.T) {
	fc := &funcChannel{joined: make(chan *Socket, 1)}
	e := newEnv(t, func(c *Config) {
		c.Channels = []Route{{Pattern: "room:*", Channel: fc}}
		c.MaxQueueBytes = 2 << 20
	})
	tok := e.lpOpen(v2)
	if r := e.lpDo("POST", v2, tok, "application/json", `["1","1","room:lp","phx_join",{}]`, nil); r.status() != http.StatusOK {
		t.Fatalf("join: %s", r.rawBody)
	}
	s := fc.nextSocket(t)
	big := bigPayload(256 << 10)
	for i := 1; i <= 100; i++ {
		if err := s.Push("big", big); err != nil {
			if i > 10 {
				t.Fatalf("closed after %d pushes of 256 KiB, want within 2 MiB", i)
			}
			return
		}
	}
	t.Fatal("100 pushes of 256 KiB queued for a session that never polls")
}

// A poll answer holding big frames is streamed: the client gets every
// message intact.
func TestLongPollBigAnswer(t *testing.T) {
	fc := &funcChannel{joined: make(chan *Socket, 1)}
	e := newEnv(t, func(c *Config) { c.Channels = []Route{{Pattern: "room:*", Channel: fc}} })
	tok := e.lpOpen(v2)
	e.lpDo("POST", v2, tok, "application/json", `["1","1","room:lp","phx_join",{}]`, nil)
	s := fc.nextSocket(t)
	bb, _ := json.Marshal(map[string]string{"x": strings.Repeat("<é\u2028\"\\\n", 100000)})
	big := string(bb)
	if err := s.Push("big", json.RawMessage(big)); err != nil {
		t.Fatal(err)
	}
	r := e.lpDo("GET", v2, tok, "", "", nil)
	ms := r.messages(t)
	if len(ms) != 2 || ms[1] != canon(t, []byte(`["1",null,"room:lp","big",`+big+`]`)) {
		t.Fatalf("poll: %d messages, %d bytes", len(ms), len(r.rawBody))
	}
}

// "*" allows every origin, "null" (a file:// page) included; a refused
// origin is logged with how to allow it.
func TestOriginStarAllowsNull(t *testing.T) {
	lc := &logCapture{}
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"*"} })
	if _, resp, err := e.tryDial("2.0.0", http.Header{"Origin": {"null"}}); err != nil {
		t.Fatalf("Origin: null with \"*\": %v %v", err, resp)
	}
	d := newEnv(t, func(c *Config) { c.Logger = lc.logger(); c.OriginHint = "use --origins" })
	if _, resp, err := d.tryDial("2.0.0", http.Header{"Origin": {"http://localhost:5173"}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross origin allowed by default: %v", err)
	}
	lc.waitLine(t, "origin refused", "origin=http://localhost:5173", `allow="use --origins"`)
}
