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
