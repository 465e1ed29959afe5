package phx

import (
	"encoding/base64"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// authTokenPrefix is the subprotocol phoenix.js uses to carry its auth
// token (its authToken option), next to a "phoenix" subprotocol.
const authTokenPrefix = "base64url.bearer.phx."

// wsTransport serves Mount+"/websocket".
type wsTransport struct {
	srv      *Server
	origins  originPolicy
	upgrader websocket.Upgrader
}

func (t *wsTransport) init(s *Server) {
	t.srv = s
	t.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// A small read buffer of our own instead of the HTTP server's
		// 4 KiB one (frames of any size are still read, in more system
		// calls); writes borrow a buffer from the pool only while writing,
		// so an idle connection holds no write buffer.
		ReadBufferSize:  1024,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true }, // checked before
		Error:           func(w http.ResponseWriter, _ *http.Request, status int, _ error) { w.WriteHeader(status) },
	}
}

// authToken extracts the token of a "base64url.bearer.phx.<B>" subprotocol
// (standard base64 without padding: despite the name, phoenix.js encodes
// with btoa and strips the "=").
func authToken(r *http.Request) string {
	for _, p := range websocket.Subprotocols(r) {
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
	if r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) {
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
	for _, p := range websocket.Subprotocols(r) {
		if p == "phoenix" {
			hdr = http.Header{"Sec-Websocket-Protocol": {"phoenix"}}
			break
		}
	}
	hj := &hijacker{ResponseWriter: w}
	ws, err := t.upgrader.Upgrade(hj, r, hdr)
	if err != nil {
		s.release(a.ip, a.ident.ID)
		return // the upgrader answered
	}
	nc := hj.conn.Conn
	// Deadlines the HTTP server set for the request (its ReadTimeout and
	// WriteTimeout) must not outlive it: the connection sets its own.
	nc.SetDeadline(time.Time{})
	c := newConn(s, transportWebSocket, a.ser, a.ident)
	c.peer = r.RemoteAddr
	c.abort = func() { nc.Close() }
	if !s.register(c) {
		s.release(a.ip, a.ident.ID)
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	hj.conn.muted.Store(true) // from now on only phx writes (hijack.go)
	// The reader runs on a goroutine of its own so that this handler, and
	// with it net/http's per-request state and grown stack, can go.
	c.expireAt(a.ident.ExpiresAt)
	go t.run(c, ws, hj.conn)
}

// wsConn is the WebSocket side of a conn.
type wsConn struct {
	c       *conn
	ws      *websocket.Conn // reads
	nc      net.Conn        // the socket, for writes and the close
	writers sync.WaitGroup  // the goroutine writing, if any (see conn.writers)
}

// closeGrace is how long the reader waits for the client's close frame
// after the server sent its own.
const closeGrace = 2 * time.Second

// run is the connection's reader; the connection is gone when the last of
// its reader goroutines returns (see readLoop).
func (t *wsTransport) run(c *conn, ws *websocket.Conn, gc *gorillaConn) {
	nc := gc.Conn
	wc := &wsConn{c: c, ws: ws, nc: nc}
	c.mu.Lock()
	c.spawn = func() {
		wc.writers.Add(1)
		go wc.writer()
	}
	c.writers = &wc.writers
	if rw := newRawWriter(nc); rw != nil {
		c.direct = rw.write
	}
	c.mu.Unlock()
	c.flush() // anything queued or a close requested before this point
	// Pongs and the echo of a client's close go through the queue: the
	// server writes its frames itself (see wsframe.go), never with
	// gorilla's writer.
	ws.SetPingHandler(func(data string) error {
		wc.extend()
		c.enqueue(controlFrame(opPong, []byte(data)))
		return nil
	})
	ws.SetCloseHandler(func(code int, _ string) error {
		c.mu.Lock()
		if !c.closing {
			if gc.scan.badClose {
				// A one-byte close payload: gorilla reads it as no
				// status, RFC 6455 §5.5.1 makes it a protocol error.
				code = CloseProtocolError
				c.setClosingLocked(code, "invalid close frame")
			} else {
				c.setClosingLocked(code, "")
			}
			c.closeEcho = true
		}
		c.unlock()
		return nil
	})
	wc.readLoop()
}

// extend pushes the idle deadline back (not once closing: the close
// handshake has its own).
func (wc *wsConn) extend() {
	c := wc.c
	c.mu.Lock()
	if !c.closing {
		wc.ws.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
	}
	c.mu.Unlock()
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
	c, ws, s := wc.c, wc.ws, wc.c.srv
	for {
		wc.extend()
		mt, r, err := ws.NextReader()
		if err != nil {
			wc.readFailed(err)
			break
		}
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if closing || (mt != websocket.TextMessage && mt != websocket.BinaryMessage) {
			// Nothing is handled once the connection is closing; keep
			// reading for the client's close frame.
			io.Copy(io.Discard, r)
			continue
		}
		// Read at most MaxFrameSize+1 bytes: a larger frame closes the
		// connection with a reason (gorilla's own read limit would close
		// with none).
		data, err := readFrame(io.LimitReader(r, s.cfg.MaxFrameSize+1))
		if err != nil {
			wc.readFailed(err)
			break
		}
		c.mu.Lock()
		c.handling = true
		c.mu.Unlock()
		err = c.handleFrame(data, mt == websocket.BinaryMessage)
		c.mu.Lock()
		c.handling = false
		c.mu.Unlock()
		c.flush()
		if err != nil {
			code, reason := closeFor(err)
			s.log.Warn("phx: closing connection on a bad frame", "peer", c.peer, "id", c.ident.ID, "err", err)
			c.closeWith(code, reason)
			// Keep reading until the client answers the close or the
			// grace period ends (the deadline was shortened).
			continue
		}
		go wc.readLoop()
		return
	}
	// The connection is gone: end the writer, the channels, the socket.
	c.closeWith(CloseGoingAway, "")
	wc.writers.Wait()
	c.stopExpiry()
	c.endAll()
	wc.nc.Close()
	s.unregister(c)
}

// readFrame reads r to its end into a scratch buffer (wsframe.go) and
// returns a copy at its exact size (io.ReadAll would allocate 512 bytes or
// more per frame and grow it).
func readFrame(r io.Reader) ([]byte, error) {
	bp := scratch.Get().(*[]byte)
	buf := (*bp)[:0]
	var err error
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		var n int
		n, err = r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	var data []byte
	if err == io.EOF {
		err = nil
		data = append(make([]byte, 0, len(buf)), buf...)
	}
	if cap(buf) <= maxScratch {
		*bp = buf[:0]
		scratch.Put(bp)
	}
	return data, err
}

// readFailed classifies the end of reading.
func (wc *wsConn) readFailed(err error) {
	c := wc.c
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		// The client closed; the close handler queued the echo.
		c.mu.Lock()
		c.setClosingLocked(0, "")
		c.mu.Unlock()
	case errors.As(err, &ne) && ne.Timeout():
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if !closing {
			c.closeWith(CloseProtocolError, "idle timeout")
		}
	case isProtocolError(err):
		// The client broke the protocol (gorilla's message, e.g. "bad
		// MASK"): close 1002 with it, as gorilla would have, but through
		// our queue (hijack.go).
		c.closeWith(CloseProtocolError, strings.TrimPrefix(err.Error(), "websocket: "))
	default:
		// The connection is gone (EOF, reset, a TLS error…).
		c.mu.Lock()
		c.setClosingLocked(0, "")
		c.mu.Unlock()
	}
}

// isProtocolError reports whether a read error is gorilla's verdict on the
// client's frames: its read limit, or a plain error of its own ("websocket:
// bad MASK", "websocket: unknown opcode 3"…), which is neither a net.Error
// nor an end of stream.
func isProtocolError(err error) bool {
	if errors.Is(err, websocket.ErrReadLimit) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return false
	}
	return strings.HasPrefix(err.Error(), "websocket: ") && errors.Unwrap(err) == nil
}

// writer drains the conn's queue onto the WebSocket and returns when it is
// empty (the next frame goes out by flush again), or performs the
// server-initiated close and returns for good (writerActive stays set).
// Each round writes everything queued in one write, under one deadline.
func (wc *wsConn) writer() {
	defer wc.writers.Done()
	c, nc := wc.c, wc.nc
	wt := c.srv.cfg.WriteTimeout
	var out wireBatch
	wrote := false
	for {
		c.mu.Lock()
		c.inflight = 0
		p := c.partial
		closing := c.closing
		q, qp := c.takeQueueLocked()
		c.partial = nil
		var code int
		var reason string
		if closing {
			code, reason = c.closeCode, c.closeReason
		}
		if p == nil && len(q) == 0 && !closing {
			if wrote {
				// Direct writes go through the same descriptor: a
				// deadline left behind would fail them once past.
				nc.SetWriteDeadline(time.Time{})
			}
			c.writerActive = false
			c.mu.Unlock()
			return
		}
		out.reset()
		out.add(p)
		for _, f := range q {
			out.addFrame(f)
		}
		recycle(qp, q)
		if closing && code != 0 {
			out.addFrame(frame{ctl: opClose, data: closePayload(code, reason)})
		}
		// What is being written still counts against MaxQueueBytes.
		c.inflight = int32(min(out.n, math.MaxInt32))
		c.mu.Unlock()
		if out.n > 0 {
			wrote = true
			nc.SetWriteDeadline(time.Now().Add(wt))
			if err := out.writeTo(nc); err != nil {
				c.closeWith(CloseGoingAway, "")
				nc.Close()
				return
			}
		}
		if closing {
			if code == 0 || c.echoed() {
				// Nothing to say, or our close answered the client's:
				// the connection is done.
				nc.Close()
				return
			}
			// Wait briefly for the client's close frame.
			c.mu.Lock()
			wc.ws.SetReadDeadline(time.Now().Add(closeGrace))
			c.mu.Unlock()
			return
		}
	}
}
