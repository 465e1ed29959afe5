package phx

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// onlyConn returns the server's only connection.
func (e *testEnv) onlyConn() *conn {
	e.t.Helper()
	var c *conn
	waitFor(e.t, func() bool {
		e.srv.cmu.Lock()
		defer e.srv.cmu.Unlock()
		if len(e.srv.conns) != 1 {
			return false
		}
		for c = range e.srv.conns {
		}
		return true
	})
	return c
}

// writeLog wraps c's direct writer and records the size of each write
// asked and taken.
type writeLog struct {
	mu     sync.Mutex
	asked  []int
	taken  []int
	direct func([]byte) (int, error)
}

func logWrites(c *conn, limit int) *writeLog {
	l := &writeLog{}
	// Swap only while nobody writes: the frame before may still be going
	// out.
	wrap := func(old func([]byte) (int, error)) func([]byte) (int, error) {
		l.direct = old
		return func(b []byte) (int, error) {
			if limit > 0 && len(b) > limit {
				b = b[:limit] // as a nearly full send buffer would
			}
			n, err := l.direct(b)
			l.mu.Lock()
			l.asked = append(l.asked, len(b))
			l.taken = append(l.taken, n)
			l.mu.Unlock()
			return n, err
		}
	}
	for !swapRaw(c, wrap) {
		time.Sleep(time.Millisecond)
	}
	return l
}

// swapRaw swaps c's raw write function when nothing is queued or being
// written (see wsio.Conn.SwapRaw).
func swapRaw(c *conn, swap func(func([]byte) (int, error)) func([]byte) (int, error)) bool {
	c.out.mu.Lock()
	queued := len(c.out.queue)
	c.out.mu.Unlock()
	return queued == 0 && c.out.sink.(*wsConn).ws.SwapRaw(swap)
}

func (l *writeLog) writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.asked)
}

// The server frames its messages itself: payloads at every length
// boundary of the WebSocket header (7-bit, 16-bit, 64-bit lengths), text
// and binary, pushes, replies and broadcasts, read back intact by gorilla's
// client.
func TestWireFrameLengths(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFrameSize = 1 << 20 })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:w","phx_join",{}]`)
	a.expect(`["1","1","room:w","phx_reply",{"status":"ok","response":{}}]`)
	const envelope = len(`[null,null,"room:w","b",{"p":""}]`)
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		pad := strings.Repeat("x", max(n-envelope, 0))
		if err := e.srv.Broadcast("room:w", "b", map[string]string{"p": pad}); err != nil {
			t.Fatal(err)
		}
		a.expect(fmt.Sprintf(`[null,null,"room:w","b",{"p":"%s"}]`, pad))
		a.sendText(fmt.Sprintf(`["1","2","room:w","echo",{"p":"%s"}]`, pad))
		a.expect(fmt.Sprintf(`["1","2","room:w","phx_reply",{"status":"ok","response":{"p":"%s"}}]`, pad))
		bin := []byte(strings.Repeat("b", n))
		if err := e.srv.Broadcast("room:w", "bin", Binary(bin)); err != nil {
			t.Fatal(err)
		}
		got := a.recvBinary()
		want, _ := encodeBinaryBroadcast("room:w", "bin", bin)
		if string(got) != string(want.data) {
			t.Fatalf("binary broadcast of %d bytes: got %d bytes", n, len(got))
		}
	}
}

// What the handling of one client frame queues goes out in one write: a
// join's reply and the push its Join made (presence_state in the built-in
// channel) are one write(2), not two, and no writer goroutine is needed.
func TestHandledFrameIsOneWrite(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`[null,"0","phoenix","heartbeat",{}]`)
	a.expect(`[null,"0","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	l := logWrites(e.onlyConn(), 0)
	a.sendText(`["1","1","room:o","phx_join",{"push":true}]`)
	a.expect(`["1","1","room:o","phx_reply",{"status":"ok","response":{}}]`,
		`["1",null,"room:o","joined_push",{"topic":"room:o"}]`)
	if n := l.writes(); n != 1 {
		t.Fatalf("%d writes for the join's reply and push, want 1", n)
	}
	// A broadcast to an idle connection is written by the broadcaster.
	if err := e.srv.Broadcast("room:o", "b", map[string]int{"i": 1}); err != nil {
		t.Fatal(err)
	}
	a.expect(`[null,null,"room:o","b",{"i":1}]`)
	if n := l.writes(); n != 2 {
		t.Fatalf("%d writes after a broadcast, want 2", n)
	}
}

// A direct write the socket takes only part of leaves the rest to the
// writer goroutine, before anything queued later: every frame arrives
// whole and in order.
func TestPartialDirectWrite(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:p","phx_join",{}]`)
	a.expect(`["1","1","room:p","phx_reply",{"status":"ok","response":{}}]`)
	l := logWrites(e.onlyConn(), 7) // every direct write is cut after 7 bytes
	for i := range 50 {
		if err := e.srv.Broadcast("room:p", "b", map[string]any{"i": i, "pad": strings.Repeat("y", i*10)}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			a.sendText(fmt.Sprintf(`["1","e%d","room:p","echo",{"e":%d}]`, i, i))
		}
	}
	for i := range 50 {
		want := fmt.Sprintf(`[null,null,"room:p","b",{"i":%d,"pad":"%s"}]`, i, strings.Repeat("y", i*10))
		got := a.recv()
		for strings.Contains(got, "phx_reply") {
			got = a.recv() // the echo replies interleave with the broadcasts
		}
		if got != want {
			t.Fatalf("frame %d: %.80s, want %.80s", i, got, want)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := 0
	for i := range l.asked {
		if l.taken[i] < l.asked[i] || l.asked[i] == 7 {
			cut++
		}
	}
	if cut == 0 {
		t.Fatal("no direct write was cut: the test did not test anything")
	}
}

// A broadcast to more than fanoutChunk subscribers per core is written by
// several goroutines: every subscriber still gets every broadcast, once,
// in order.
func TestLargeFanoutInOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("1,100 connections")
	}
	e := newEnv(t, nil)
	const n, rounds = 1100, 5
	addr := strings.TrimPrefix(e.http.URL, "http://")
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/socket/websocket?vsn=2.0.0", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		clients[i] = ws
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`["1","1","room:big","phx_join",{}]`)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.srv.Subscribers("room:big"); got != n {
		t.Fatalf("%d subscribers", got)
	}
	for r := range rounds {
		if err := e.srv.Broadcast("room:big", "b", map[string]int{"r": r}); err != nil {
			t.Fatal(err)
		}
	}
	for i, ws := range clients {
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for r := range rounds {
			_, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("client %d round %d: %v", i, r, err)
			}
			var f []json.RawMessage
			if json.Unmarshal(b, &f) != nil || len(f) != 5 || string(f[4]) != fmt.Sprintf(`{"r":%d}`, r) {
				t.Fatalf("client %d round %d: %s", i, r, b)
			}
		}
	}
	// Nothing more: each broadcast came once.
	for _, ws := range clients[:20] {
		ws.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, b, err := ws.ReadMessage(); err == nil {
			t.Fatalf("extra frame %s", b)
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatal(err)
		}
	}
}

type appendOnly string

func (a appendOnly) AppendJSON(b []byte) []byte { return append(b, a...) }

// A JSONAppender payload is written as it appends itself: no reflection,
// no re-encoding (its <, > and & stay as they are).
func TestJSONAppenderPayload(t *testing.T) {
	got, err := marshalObject(appendOnly(`{"s":"<b>"}`))
	if err != nil || string(got) != `{"s":"<b>"}` {
		t.Fatalf("%s %v", got, err)
	}
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:j","phx_join",{}]`)
	a.expect(`["1","1","room:j","phx_reply",{"status":"ok","response":{}}]`)
	if err := e.srv.Broadcast("room:j", "x", appendOnly(`{"s":"<b>"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := a.recvRaw(5 * time.Second); err != nil || string(b) != `[null,null,"room:j","x",{"s":"<b>"}]` {
		t.Fatalf("%s %v", b, err)
	}
}

// The writer goroutine's write deadline does not outlive it: a direct
// write long after a writer ran (past WriteTimeout) still goes out.
func TestDirectWriteAfterWriterDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WriteTimeout = 50 * time.Millisecond })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:d","phx_join",{}]`)
	a.expect(`["1","1","room:d","phx_reply",{"status":"ok","response":{}}]`)
	c := e.onlyConn()
	l := logWrites(c, 3) // cut: the rest goes to a writer goroutine
	if err := e.srv.Broadcast("room:d", "b", map[string]int{"i": 1}); err != nil {
		t.Fatal(err)
	}
	a.expect(`[null,null,"room:d","b",{"i":1}]`)
	for !swapRaw(c, func(func([]byte) (int, error)) func([]byte) (int, error) { return l.direct }) {
		time.Sleep(time.Millisecond) // whole writes again, once the writer is done
	}
	time.Sleep(150 * time.Millisecond) // past the writer's deadline
	for i := 2; i < 5; i++ {
		if err := e.srv.Broadcast("room:d", "b", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
		a.expect(fmt.Sprintf(`[null,null,"room:d","b",{"i":%d}]`, i))
	}
}

// Frames wait for the end of the handler being run only up to a batch:
// broadcasts to a connection whose handler is slow still go out, and do
// not make it a slow consumer.
func TestSlowHandlerDoesNotHoldBroadcasts(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueueLen = 40 })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:s","phx_join",{}]`)
	a.expect(`["1","1","room:s","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["2","2","room:slow","phx_join",{"sleep_ms":400}]`)
	time.Sleep(50 * time.Millisecond) // the join is being handled
	for i := range 100 {
		if err := e.srv.Broadcast("room:s", "b", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		a.expect(fmt.Sprintf(`[null,null,"room:s","b",{"i":%d}]`, i))
	}
	a.expect(`["2","2","room:slow","phx_reply",{"status":"ok","response":{}}]`)
}

// A client that breaks the protocol (here: an unmasked frame) gets one
// close frame, 1002 with gorilla's reason, written by phx — gorilla's own
// write of it is dropped (hijack.go) — and then the end of the stream.
func TestProtocolErrorClosedByPhx(t *testing.T) {
	e := newEnv(t, nil)
	addr := strings.TrimPrefix(e.http.URL, "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := rawUpgrade(t, nc, addr)
	nc.Write([]byte{0x81, 0x02, 'h', 'i'}) // unmasked
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) < 4 || rest[0] != 0x88 || int(rest[1]) != len(rest)-2 {
		t.Fatalf("want exactly one close frame, got % x", rest)
	}
	code := int(rest[2])<<8 | int(rest[3])
	if code != CloseProtocolError || !strings.Contains(string(rest[4:]), "MASK") {
		t.Fatalf("close %d %q", code, rest[4:])
	}
}

// With a small send queue, frames held for a running handler go out at
// half of it: a slow handler never turns broadcasts into a slow consumer.
func TestSlowHandlerSmallQueue(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueueLen = 4 })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:q","phx_join",{}]`)
	a.expect(`["1","1","room:q","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["2","2","room:slowq","phx_join",{"sleep_ms":300}]`)
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		if err := e.srv.Broadcast("room:q", "b", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 5 {
		a.expect(fmt.Sprintf(`[null,null,"room:q","b",{"i":%d}]`, i))
	}
	a.expect(`["2","2","room:slowq","phx_reply",{"status":"ok","response":{}}]`)
}
