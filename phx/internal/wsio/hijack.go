package wsio

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// mutedConn is the socket as gorilla sees it: once muted (when Upgrade
// returns), its writes and write deadlines are dropped, so that gorilla
// never writes after the handshake (see the package doc). Its reads feed a
// frameScan.
type mutedConn struct {
	net.Conn
	muted atomic.Bool
	scan  frameScan // of what gorilla reads, on gorilla's reading goroutine
}

func (g *mutedConn) Read(b []byte) (int, error) {
	n, err := g.Conn.Read(b)
	g.scan.scan(b[:n])
	return n, err
}

func (g *mutedConn) Write(b []byte) (int, error) {
	if g.muted.Load() {
		return len(b), nil
	}
	return g.Conn.Write(b)
}

func (g *mutedConn) SetWriteDeadline(t time.Time) error {
	if g.muted.Load() {
		return nil
	}
	return g.Conn.SetWriteDeadline(t)
}

func (g *mutedConn) SetDeadline(t time.Time) error {
	if g.muted.Load() {
		return g.Conn.SetReadDeadline(t)
	}
	return g.Conn.SetDeadline(t)
}

// hijacker hands gorilla a mutedConn when it hijacks the request.
type hijacker struct {
	http.ResponseWriter
	conn *mutedConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	// Through a ResponseController, which also finds the Hijacker behind
	// middleware wrappers that have an Unwrap method.
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &mutedConn{Conn: c}
	return h.conn, brw, nil
}
