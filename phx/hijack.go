package phx

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// gorilla/websocket does the handshake and reads the frames; phx writes
// (wsframe.go). gorilla would still write on its own when a client breaks
// the protocol (a close frame, under a write deadline of its own), which
// could cut into a frame of ours or hold the socket's write lock while a
// broadcaster waits. So gorilla gets the socket behind gorillaConn, whose
// writes and write deadlines are dropped once the handshake is done; phx
// answers a protocol error itself (wsConn.readFailed).

// gorillaConn is the socket as gorilla sees it.
type gorillaConn struct {
	net.Conn
	muted atomic.Bool
	scan  frameScan // of what gorilla reads, on gorilla's reading goroutine
}

func (g *gorillaConn) Read(b []byte) (int, error) {
	n, err := g.Conn.Read(b)
	g.scan.scan(b[:n])
	return n, err
}

// frameScan follows the frame boundaries of what a client sends, reading
// only the headers, to see what gorilla does not report: a close frame
// whose payload is a single byte (gorilla treats it as a close without a
// status, RFC 6455 makes it a protocol error).
type frameScan struct {
	skip      uint64   // bytes left of the current frame's mask key and payload
	hdr       [10]byte // its first bytes: opcode, length, extended length
	n         uint8    // of hdr seen
	closeSeen bool
	badClose  bool // the first close frame had a one-byte payload
}

func (f *frameScan) scan(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(uint64(len(b)), f.skip)
			f.skip -= k
			b = b[k:]
			continue
		}
		f.hdr[f.n] = b[0]
		f.n++
		b = b[1:]
		if f.n < 2 {
			continue
		}
		l7 := f.hdr[1] & 0x7f
		plen := uint64(l7)
		switch {
		case l7 == 126 && f.n < 4, l7 == 127 && f.n < 10:
			continue
		case l7 == 126:
			plen = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
		case l7 == 127:
			plen = 0
			for _, x := range f.hdr[2:10] {
				plen = plen<<8 | uint64(x)
			}
		}
		if f.hdr[0]&0x0f == opClose && !f.closeSeen {
			f.closeSeen, f.badClose = true, plen == 1
		}
		if f.hdr[1]&0x80 != 0 {
			plen += 4 // the mask key
		}
		f.n, f.skip = 0, plen
	}
}

func (g *gorillaConn) Write(b []byte) (int, error) {
	if g.muted.Load() {
		return len(b), nil
	}
	return g.Conn.Write(b)
}

func (g *gorillaConn) SetWriteDeadline(t time.Time) error {
	if g.muted.Load() {
		return nil
	}
	return g.Conn.SetWriteDeadline(t)
}

func (g *gorillaConn) SetDeadline(t time.Time) error {
	if g.muted.Load() {
		return g.Conn.SetReadDeadline(t)
	}
	return g.Conn.SetDeadline(t)
}

// hijacker hands gorilla a gorillaConn when it hijacks the request.
type hijacker struct {
	http.ResponseWriter
	conn *gorillaConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	// Through a ResponseController, which also finds the Hijacker behind
	// middleware wrappers that have an Unwrap method.
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &gorillaConn{Conn: c}
	return h.conn, brw, nil
}
