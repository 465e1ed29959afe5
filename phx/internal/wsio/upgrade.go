package wsio

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// upgrader does the handshake. A small read buffer of our own instead of
// the HTTP server's 4 KiB one (frames of any size are still read, in more
// system calls); gorilla writes only the handshake, with a buffer borrowed
// from the pool, so an idle connection holds no write buffer.
var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   1024,
	WriteBufferPool:  &sync.Pool{},
	CheckOrigin:      func(*http.Request) bool { return true }, // the caller checks
	Error:            func(w http.ResponseWriter, _ *http.Request, status int, _ error) { w.WriteHeader(status) },
}

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool { return websocket.IsWebSocketUpgrade(r) }

// Subprotocols returns the subprotocols r offers.
func Subprotocols(r *http.Request) []string { return websocket.Subprotocols(r) }

// Upgrade does the handshake, answering with hdr's headers (a selected
// subprotocol), and returns the connection, whose reads and writes are
// the caller's from here on: gorilla is muted (see the package doc). On an
// error the HTTP answer has been written.
func Upgrade(w http.ResponseWriter, r *http.Request, hdr http.Header) (*Conn, error) {
	hj := &hijacker{ResponseWriter: w}
	ws, err := upgrader.Upgrade(hj, r, hdr)
	if err != nil {
		return nil, err
	}
	mc := hj.conn
	// Deadlines the HTTP server set for the request (its ReadTimeout and
	// WriteTimeout) must not outlive it: the connection sets its own.
	mc.Conn.SetDeadline(time.Time{})
	mc.muted.Store(true) // from now on only wsio writes
	c := &Conn{ws: ws, mc: mc, nc: mc.Conn}
	if rw := newRawWriter(mc.Conn); rw != nil {
		c.raw = rw.write
	}
	return c, nil
}
