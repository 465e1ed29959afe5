package presencechannel_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// BenchmarkJoinTrack measures what the server spends on a join that tracks
// (the load of the joins/s figure in BENCHMARKS.md, in one process): one
// op is a phx_join of a new topic with a meta, answered by the reply and
// presence_state, with the presence_diff to the joiner. 64 raw V2
// WebSocket connections (no client library: their reading costs little
// and allocates nothing per frame) send their share of the joins, up to 32
// in flight each. allocs/op and B/op are the whole process's, nearly all
// the server's; ns/op is the wall time per join on every core.
func BenchmarkJoinTrack(b *testing.B) {
	p, err := presence.New(presence.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	srv, _, err := presencechannel.NewServer(presencechannel.Config{Presence: p},
		phx.Config{JoinRate: -1, MaxChannels: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	hs := newHTTP(srv)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	}()
	addr := strings.TrimPrefix(hs.URL, "http://")
	const conns, window = 64, 32
	type rawConn struct {
		nc net.Conn
		br *bufio.Reader
	}
	cs := make([]rawConn, conns)
	for i := range cs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "GET /socket/websocket?vsn=2.0.0&user_id=u%d HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i, addr)
		br := bufio.NewReaderSize(nc, 64<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			b.Fatalf("upgrade: %v %v", resp, err)
		}
		cs[i] = rawConn{nc, br}
	}
	var topic int64
	var tmu sync.Mutex
	nextTopic := func() int64 { tmu.Lock(); defer tmu.Unlock(); topic++; return topic }
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(2)
		sent := make(chan struct{}, window)
		go func() { // writer: keeps up to window joins in flight
			defer wg.Done()
			var buf []byte
			for k := range n {
				sent <- struct{}{}
				t := nextTopic()
				payload := fmt.Sprintf(`["%d","%d","room:b%d","phx_join",{"meta":{"status":"online","device":"laptop"}}]`, k, k, t)
				buf = append(buf[:0], 0x81)
				if len(payload) < 126 {
					buf = append(buf, 0x80|byte(len(payload)))
				} else {
					buf = append(buf, 0x80|126, byte(len(payload)>>8), byte(len(payload)))
				}
				buf = append(buf, 0, 0, 0, 0) // zero mask
				buf = append(buf, payload...)
				if _, err := c.nc.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // reader: every join's reply frees a slot
			defer wg.Done()
			var frame []byte
			for replies := 0; replies < n; {
				var err error
				if frame, err = readServerFrame(c.br, frame); err != nil {
					errs <- err
					return
				}
				if strings.Contains(string(frame[:min(len(frame), 64)]), `"phx_reply"`) {
					if !strings.Contains(string(frame), `"status":"ok"`) {
						errs <- fmt.Errorf("join refused: %s", frame)
						return
					}
					replies++
					<-sent
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// readServerFrame reads one unmasked, unfragmented server frame.
func readServerFrame(br *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(br, buf)
	return buf, err
}
