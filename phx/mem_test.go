package phx

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMemoryPerConnection estimates the server's memory per joined, idle
// WebSocket client (heap in use + goroutine stacks, measured in-process;
// the clients are raw TCP connections with no goroutine and ~no buffers).
// Opt-in: PHX_MEMTEST=<n clients>.
func TestMemoryPerConnection(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PHX_MEMTEST"))
	if n <= 0 {
		t.Skip("set PHX_MEMTEST=<clients> to run")
	}
	e := newEnv(t, nil)
	addr := strings.TrimPrefix(e.http.URL, "http://")
	measure := func() (heap, stack uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	h0, s0 := measure()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /socket/websocket?vsn=2.0.0&user_id=u%d HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i, addr)
		br := bufio.NewReaderSize(c, 512)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade %d: %v %v", i, resp, err)
		}
		// A masked text frame: ["1","1","room:mem","phx_join",{}]
		payload := []byte(`["1","1","room:mem","phx_join",{}]`)
		frame := []byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}
		frame = append(frame, payload...)
		c.Write(frame)
		// Read the join reply (unmasked server frame).
		hdr := make([]byte, 2)
		if _, err := br.Read(hdr); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, hdr[1]&0x7f)
		if _, err := io_ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	h1, s1 := measure()
	t.Logf("%d joined idle clients: heap %.1f KiB/client, stacks %.1f KiB/client, total %.1f KiB/client",
		n, float64(h1-h0)/1024/float64(n), float64(s1-s0)/1024/float64(n), float64(h1+s1-h0-s0)/1024/float64(n))
}

func io_ReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
