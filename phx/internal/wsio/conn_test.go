package wsio

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// queuePeer is a Peer holding text frames to write, and the close.
type queuePeer struct {
	mu     sync.Mutex
	frames [][]byte
	end    End
	failed bool
}

func (p *queuePeer) Pull(b *Batch) End {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frames {
		b.AddFrame(OpText, f)
	}
	p.frames = nil
	return p.end
}

func (p *queuePeer) WriteFailed() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

func (p *queuePeer) Ping([]byte)             {}
func (p *queuePeer) CloseReceived(int, bool) {}

func (p *queuePeer) queue(s string) {
	p.mu.Lock()
	p.frames = append(p.frames, []byte(s))
	p.mu.Unlock()
}

// pair returns a server Conn started with a queuePeer, and a gorilla
// client connected to it.
func pair(t *testing.T) (*Conn, *queuePeer, *websocket.Conn) {
	t.Helper()
	conns := make(chan *Conn, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		conns <- c
	}))
	t.Cleanup(hs.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := <-conns
	p := &queuePeer{}
	c.Start(p, 5*time.Second)
	t.Cleanup(c.Abort)
	return c, p, ws
}

func expectText(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, b, err := ws.ReadMessage()
	if err != nil || mt != websocket.TextMessage || string(b) != want {
		t.Fatalf("got %d %q %v, want %q", mt, b, err, want)
	}
}

// What the Peer holds goes out on Kick, in order; Send writes a
// pre-framed frame when idle; the close comes last, with its code and
// reason.
func TestKickSendClose(t *testing.T) {
	c, p, ws := pair(t)
	p.queue("a")
	p.queue("b")
	c.Kick()
	expectText(t, ws, "a")
	expectText(t, ws, "b")
	pre := AppendHeader(nil, OpText, 3)
	pre = append(pre, "pre"...)
	for !c.Send(pre) {
		time.Sleep(time.Millisecond) // the writer of a and b may not be done
	}
	expectText(t, ws, "pre")
	p.mu.Lock()
	p.frames = append(p.frames, []byte("last"))
	p.end = End{Closing: true, Code: 1001, Reason: "bye"}
	p.mu.Unlock()
	c.Closing()
	c.Kick()
	expectText(t, ws, "last")
	_, _, err := ws.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1001 || ce.Text != "bye" {
		t.Fatalf("close: %v", err)
	}
	if c.Send(pre) {
		t.Fatal("Send wrote after the close")
	}
}

// Kicks from many goroutines lose nothing: every frame arrives, each
// goroutine's in its order, and nothing counts as pending afterwards;
// also without raw writes (a TLS socket), where the writer goroutine
// writes everything.
func TestConcurrentKicks(t *testing.T) {
	t.Run("raw", func(t *testing.T) { testConcurrentKicks(t, false) })
	t.Run("writer only", func(t *testing.T) { testConcurrentKicks(t, true) })
}

func testConcurrentKicks(t *testing.T, noRaw bool) {
	c, p, ws := pair(t)
	if noRaw {
		if !c.SwapRaw(func(func([]byte) (int, error)) func([]byte) (int, error) { return nil }) {
			t.Fatal("SwapRaw refused on an idle connection")
		}
		if c.Send([]byte{0x81, 0}) {
			t.Fatal("Send wrote without raw writes")
		}
	}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				p.queue(fmt.Sprintf("%d:%d", w, i))
				c.Kick()
			}
		})
	}
	next := make([]int, writers)
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range writers * each {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var w, i int
		fmt.Sscanf(string(b), "%d:%d", &w, &i)
		if i != next[w] {
			t.Fatalf("writer %d: frame %d, want %d", w, i, next[w])
		}
		next[w]++
	}
	wg.Wait()
	c.WaitWriter()
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d bytes pending after everything was written", n)
	}
}
