package phx

import (
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/gopresence/presence/phx/internal/wsio"
)

// authTokenPrefix is the subprotocol phoenix.js uses to carry its auth
// token (its authToken option), next to a "phoenix" subprotocol.
const authTokenPrefix = "base64url.bearer.phx."

// closeGrace is how long the reader waits for the client's close frame
// after the server sent its own.
const closeGrace = wsio.CloseGrace

// wsTransport serves Mount+"/websocket".
type wsTransport struct {
	srv     *Server
	origins originPolicy
}

func (t *wsTransport) init(s *Server) { t.srv = s }

// authToken extracts the token of a "base64url.bearer.phx.<B>" subprotocol
// (standard base64 without padding: despite the name, phoenix.js encodes
// with btoa and strips the "=").
func authToken(r *http.Request) string {
	for _, p := range wsio.Subprotocols(r) {
		if b, ok := strings.CutPrefix(p, authTokenPrefix); ok {
			if tok, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b, "=")); err == nil {
				return string(tok)
			}
			if tok, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(b, "=")); err == nil {
				return string(tok)
			}
		}
	}
	return ""
}

func (t *wsTransport) serve(w http.ResponseWriter, r *http.Request) {
	s := t.srv
	if r.Method != http.MethodGet || !wsio.IsUpgrade(r) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !s.allowOrigin(r, t.origins) {
		s.log.Warn("phx: WebSocket origin refused", "peer", r.RemoteAddr, "origin", r.Header.Get("Origin"), "allow", s.cfg.OriginHint)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	a, why, status := s.handshake(r, transportWebSocket, authToken(r))
	switch why {
	case refusedVsn:
		w.WriteHeader(http.StatusForbidden)
		return
	case refusedStop:
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case refusedAuth:
		if status == 0 {
			status = http.StatusForbidden
		}
		w.WriteHeader(status)
		return
	case refusedLimits:
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	// Select "phoenix" when offered (browsers abort a handshake that
	// offered subprotocols and got none).
	var hdr http.Header
	for _, p := range wsio.Subprotocols(r) {
		if p == "phoenix" {
			hdr = http.Header{"Sec-Websocket-Protocol": {"phoenix"}}
			break
		}
	}
	ws, err := wsio.Upgrade(w, r, hdr)
	if err != nil {
		s.release(a.ip, a.ident.ID)
		return // the upgrader answered
	}
	wc := &wsConn{ws: ws}
	c := newConn(s, transportWebSocket, a.ser, a.ident, wc)
	c.peer = r.RemoteAddr
	wc.c = c
	ws.Start(wc, s.cfg.WriteTimeout)
	if !s.register(c) {
		s.release(a.ip, a.ident.ID)
		ws.Refuse(CloseGoingAway, "server shutting down")
		return
	}
	c.expireAt(a.ident.ExpiresAt)
	// The reader runs on a goroutine of its own so that this handler, and
	// with it net/http's per-request state and grown stack, can go.
	go wc.readLoop()
}

// wsConn is the WebSocket of a conn: the sink of its outbox, and the Peer
// of its wsio.Conn, which takes frames from the outbox (Pull) and reports
// the client's control frames.
type wsConn struct {
	c  *conn
	ws *wsio.Conn
}

var (
	_ sink      = (*wsConn)(nil)
	_ wsio.Peer = (*wsConn)(nil)
)

// Binary: a WebSocket carries binary frames.
func (wc *wsConn) Binary() bool { return true }

// Pending is what the socket's writer took and has not written yet.
func (wc *wsConn) Pending() int64 { return wc.ws.Pending() }

// Wake gets the outbox's frames written (wsio.Conn.Kick); once closing,
// the reader only waits for the client's close frame.
func (wc *wsConn) Wake(closed bool) {
	if closed {
		wc.ws.Closing()
	}
	wc.ws.Kick()
}

// Send writes a broadcast's frame at once if nothing else is being
// written.
func (wc *wsConn) Send(wire []byte) bool { return wc.ws.Send(wire) }

// Abort closes the socket.
func (wc *wsConn) Abort() { wc.ws.Abort() }

// Pull hands the writer everything the outbox holds.
func (wc *wsConn) Pull(b *wsio.Batch) wsio.End { return wc.c.out.pull(b) }

// WriteFailed: the socket is gone (wsio closed it); the reader's read
// fails next and tears the connection down.
func (wc *wsConn) WriteFailed() { wc.c.out.closeWith(0, "") }

// Ping answers a ping with a pong, through the queue, and counts as
// activity.
func (wc *wsConn) Ping(data []byte) {
	wc.ws.SetIdle(wc.c.srv.cfg.IdleTimeout)
	wc.c.out.enqueue(controlFrame(opPong, data))
}

// CloseReceived echoes the client's close with its code and an empty
// reason, as Phoenix does; an invalid close frame gets 1002.
func (wc *wsConn) CloseReceived(code int, invalid bool) {
	if invalid {
		wc.c.out.closeEchoing(CloseProtocolError, "invalid close frame")
		return
	}
	wc.c.out.closeEchoing(code, "")
}

// readLoop reads frames until the connection ends, then tears it down.
//
// After handling a frame it goes on reading on a fresh goroutine and
// returns. Handling a frame runs the channel callbacks (a join decodes JSON,
// calls into presence, encodes presence_state…), which grows this
// goroutine's stack to 8 KiB or more; the runtime shrinks a stack only while
// it is used to less than a quarter, and a reader parked in the read path
// uses ~1.3 KiB, so an idle connection would keep the grown stack for life
// (8 KiB of the ~21 KiB RSS each idle joined client cost). A new goroutine
// starts with the runtime's starting size instead. The cost is one goroutine
// start per client frame; frames are still handled one at a time, in order.
func (wc *wsConn) readLoop() {
	c, s := wc.c, wc.c.srv
	for {
		wc.ws.SetIdle(s.cfg.IdleTimeout)
		// At most MaxFrameSize+1 bytes: a larger frame closes the
		// connection with a reason (see handleFrame).
		binary, data, err := wc.ws.ReadMessage(s.cfg.MaxFrameSize + 1)
		if err != nil {
			wc.readFailed(err)
			break
		}
		// What the handler queues waits for its end, to go out in one
		// write (up to outbox.holdMax frames).
		c.out.setHandling(true)
		err = c.handleFrame(data, binary)
		c.out.setHandling(false)
		if err != nil {
			code, reason := closeFor(err)
			s.log.Warn("phx: closing connection on a bad frame", "peer", c.peer, "id", c.ident.ID, "err", err)
			c.out.closeWith(code, reason)
			// Keep reading until the client answers the close or the
			// grace period ends (the deadline was shortened).
			continue
		}
		go wc.readLoop()
		return
	}
	// The connection is gone: end the writer, the channels, the socket.
	c.out.closeWith(CloseGoingAway, "")
	wc.ws.WaitWriter()
	c.stopExpiry()
	c.endAll()
	wc.ws.Close()
	s.unregister(c)
}

// readFailed classifies the end of reading.
func (wc *wsConn) readFailed(err error) {
	c := wc.c
	var pe *wsio.ProtocolError
	var ne net.Error
	switch {
	case errors.Is(err, wsio.ErrPeerClosed):
		// The client closed; CloseReceived queued the echo.
		c.out.closeWith(0, "")
	case errors.As(err, &ne) && ne.Timeout():
		if !c.out.isClosing() {
			c.out.closeWith(CloseProtocolError, "idle timeout")
		}
	case errors.As(err, &pe):
		// The client broke the protocol (gorilla's message, e.g. "bad
		// MASK"): close 1002 with it, as gorilla would have, but through
		// our queue (gorilla never writes after the handshake).
		c.out.closeWith(CloseProtocolError, pe.Reason)
	default:
		// The connection is gone (EOF, reset, a TLS error…).
		c.out.closeWith(0, "")
	}
}
