package phx

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkBroadcastFanout measures Server.Broadcast to n joined V2
// WebSocket clients of one topic: one op is one broadcast (encoded once)
// until every client has read it, over real loopback TCP in this process.
// Metrics: ns/op is the time until the last subscriber has the frame;
// ns/delivery that divided by n; broadcast-ns/op the time spent inside
// Broadcast itself (encode + enqueue to every subscriber, on the caller's
// goroutine). The clients are raw connections with one reader goroutine
// each. n stays below 10,000: both ends of every socket are in this
// process, which may hold 20,000 open files.
func BenchmarkBroadcastFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	srv, err := New(Config{Channels: []Route{{Pattern: "room:*", Channel: &testChannel{}}}})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	addr := strings.TrimPrefix(hs.URL, "http://")
	var (
		received atomic.Int64
		target   atomic.Int64
		done     = make(chan struct{}, 1)
		readers  sync.WaitGroup
		conns    []net.Conn
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		br := rawUpgrade(b, c, addr)
		rawJoin(b, c, br, "room:bench")
		readers.Add(1)
		go func() {
			defer readers.Done()
			var buf []byte
			for {
				var err error
				if buf, err = benchReadFrame(br, buf); err != nil {
					return
				}
				if received.Add(1) == target.Load() {
					done <- struct{}{}
				}
			}
		}()
	}
	if got := srv.Subscribers("room:bench"); got != n {
		b.Fatalf("%d subscribers, want %d", got, n)
	}
	// A presence_diff-sized payload.
	payload := map[string]any{
		"joins":  map[string]any{"alice": map[string]any{"metas": []any{map[string]any{"phx_ref": "F-abc123", "status": "online", "device": "laptop"}}}},
		"leaves": map[string]any{"alice": map[string]any{"metas": []any{map[string]any{"phx_ref": "F-abc122", "status": "away", "device": "laptop"}}}},
	}
	var inBroadcast time.Duration
	b.ReportAllocs()
	for b.Loop() {
		target.Add(int64(n))
		t0 := time.Now()
		if err := srv.Broadcast("room:bench", "presence_diff", payload); err != nil {
			b.Fatal(err)
		}
		inBroadcast += time.Since(t0)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatalf("received %d of %d", received.Load(), target.Load())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
	b.ReportMetric(float64(inBroadcast.Nanoseconds())/float64(b.N), "broadcast-ns/op")
}

// rawUpgrade performs a V2 WebSocket handshake on c (no client library:
// the benchmarks' clients must cost little) and returns c's reader.
func rawUpgrade(tb testing.TB, c net.Conn, addr string) *bufio.Reader {
	tb.Helper()
	fmt.Fprintf(c, "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade: %v %v", resp, err)
	}
	return br
}

// rawJoin joins topic on a raw connection and reads the reply.
func rawJoin(tb testing.TB, c net.Conn, br *bufio.Reader, topic string) {
	tb.Helper()
	join := []byte(`["1","1","` + topic + `","phx_join",{}]`)
	c.Write(append([]byte{0x81, 0x80 | byte(len(join)), 0, 0, 0, 0}, join...)) // masked, zero key
	if _, err := benchReadFrame(br, nil); err != nil {
		tb.Fatal(err)
	}
}

// benchReadFrame reads one unfragmented, unmasked server frame into buf.
func benchReadFrame(br *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return buf, err
	}
	size := uint64(hdr[1] & 0x7f)
	switch size {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return buf, err
		}
		size = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return buf, err
		}
		size = binary.BigEndian.Uint64(ext[:])
	}
	if hdr[0]&0x0f >= 0x8 || hdr[0]&0x80 == 0 {
		return buf, fmt.Errorf("unexpected frame %x", hdr)
	}
	if uint64(cap(buf)) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	_, err := io.ReadFull(br, buf)
	return buf, err
}

// BenchmarkBroadcastPassive measures the server's side of a fan-out alone:
// Server.Broadcast to n joined clients that do not read during the
// measurement (the frames wait in their sockets), so ns/op is the
// broadcaster's time to encode the frame once and write it to every
// socket (a direct write per idle connection), without the readers' CPU.
// On loopback each write(2) still runs the receiving socket's TCP input.
// Run with -cpu 1 for the cost per delivery on one core.
func BenchmarkBroadcastPassive(b *testing.B) {
	const n = 5000
	srv, err := New(Config{Channels: []Route{{Pattern: "room:*", Channel: &testChannel{}}}})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	addr := strings.TrimPrefix(hs.URL, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		rawJoin(b, c, rawUpgrade(b, c, addr), "room:bench")
	}
	payload := json.RawMessage(`{"joins":{"alice":{"metas":[{"phx_ref":"F-abc123","status":"online","device":"laptop"}]}},"leaves":{}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := srv.Broadcast("room:bench", "presence_diff", payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
}
