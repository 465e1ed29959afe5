package wsio

import (
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// ErrPeerClosed is ReadMessage's error after the client's close frame
// (already reported to Peer.CloseReceived).
var ErrPeerClosed = errors.New("wsio: closed by the peer")

// ProtocolError is ReadMessage's error when the client broke the protocol
// (a frame too big for gorilla, an unmasked frame, an unknown opcode…):
// the reason is gorilla's, for the close frame that answers it.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "wsio: protocol error: " + e.Reason }

// ReadMessage returns the next text or binary message, at most limit bytes
// of it (a longer one is cut there: the caller sees it is over its own
// limit, and closes with a reason, which gorilla's read limit would not
// give). Pings and the client's close frame are handled on the way and
// reported to the Peer. Once closing (Conn.Closing), messages are read and
// discarded: the reader waits for the client's close frame. Errors:
// ErrPeerClosed, a *ProtocolError, a net.Error (a timeout: SetIdle's
// deadline passed), or the end of the connection.
func (c *Conn) ReadMessage(limit int64) (binary bool, data []byte, err error) {
	for {
		mt, r, err := c.ws.NextReader()
		if err != nil {
			return false, nil, readError(err)
		}
		c.wmu.Lock()
		closing := c.closing
		c.wmu.Unlock()
		if closing || (mt != websocket.TextMessage && mt != websocket.BinaryMessage) {
			io.Copy(io.Discard, r)
			continue
		}
		data, err := readAll(io.LimitReader(r, limit))
		if err != nil {
			return false, nil, readError(err)
		}
		return mt == websocket.BinaryMessage, data, nil
	}
}

// SetIdle makes reads fail with a timeout d from now, unless closing: the
// close handshake has its own deadline.
func (c *Conn) SetIdle(d time.Duration) {
	c.wmu.Lock()
	if !c.closing {
		c.ws.SetReadDeadline(time.Now().Add(d))
	}
	c.wmu.Unlock()
}

// startReading installs the handlers that report control frames to the Peer.
// Pongs and the echo of a client's close go through the Peer's queue: the
// server writes its frames itself, never with gorilla's writer.
func (c *Conn) startReading() {
	c.ws.SetPingHandler(func(data string) error {
		c.peer.Ping([]byte(data))
		return nil
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		// A one-byte close payload: gorilla reads it as no status, RFC
		// 6455 §5.5.1 makes it a protocol error.
		c.peer.CloseReceived(code, c.mc.scan.badClose)
		return nil
	})
}

func readError(err error) error {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return ErrPeerClosed
	case isProtocolError(err):
		return &ProtocolError{Reason: strings.TrimPrefix(err.Error(), "websocket: ")}
	}
	return err
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

// readAll reads r to its end into a scratch buffer and returns a copy at
// its exact size (io.ReadAll would allocate 512 bytes or more per frame and
// grow it).
func readAll(r io.Reader) ([]byte, error) {
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
	putScratch(bp, buf)
	return data, err
}
