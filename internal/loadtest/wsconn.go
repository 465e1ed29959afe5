package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gopresence/presence/internal/phxframe"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// maxMessage bounds one reassembled server message (presence_state of a
// large topic is the biggest).
const maxMessage = 64 << 20

// ErrClosed is returned by Conn.ReadMessage when the server closed the
// connection with a close frame; CloseError carries its code.
var ErrClosed = errors.New("loadtest: connection closed by the server")

// CloseError is the server's close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("loadtest: server closed the connection: %d %q", e.Code, e.Reason)
}

// Is makes errors.Is(err, ErrClosed) true.
func (e *CloseError) Is(target error) bool { return target == ErrClosed }

// Conn is a minimal WebSocket client connection: text frames out (masked),
// messages in (reassembled from fragments), pings answered. One goroutine
// reads; writes are safe from any goroutine.
type Conn struct {
	nc  net.Conn
	raw int // after detach: the socket's descriptor, outside Go's netpoller; else -1
	br  *bufio.Reader
	msg []byte // reassembly buffer, reused

	wmu  sync.Mutex
	wbuf []byte
	mask uint32
}

// DialOptions describes one client connection.
type DialOptions struct {
	// URL is the WebSocket endpoint, e.g. ws://127.0.0.1:4000/socket/websocket.
	URL *url.URL
	// Params are added to the URL's query (vsn=2.0.0 is always set).
	Params url.Values
	// LocalIP, if set, is the source address to bind (e.g. 127.0.0.3).
	LocalIP net.IP
	// Timeout bounds the TCP connect plus the HTTP upgrade. Default 10 s.
	Timeout time.Duration
	// ReadBufferSize is the bufio size. Default 4096.
	ReadBufferSize int
}

// Dial opens a WebSocket with the V2 serializer.
func Dial(ctx context.Context, o DialOptions) (*Conn, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = 4096
	}
	host := o.URL.Host
	if o.URL.Port() == "" {
		host = net.JoinHostPort(o.URL.Hostname(), "80")
	}
	d := net.Dialer{Timeout: o.Timeout}
	if o.LocalIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: o.LocalIP}
	}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(o.Timeout))
	q := o.URL.Query()
	for k, vs := range o.Params {
		q[k] = vs
	}
	q.Set("vsn", "2.0.0")
	path := o.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	var kb [16]byte
	rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	req := "GET " + path + "?" + q.Encode() + " HTTP/1.1\r\nHost: " + o.URL.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, o.ReadBufferSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade: HTTP %d", resp.StatusCode)
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-Websocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		nc.Close()
		return nil, errors.New("upgrade: bad Sec-WebSocket-Accept")
	}
	nc.SetDeadline(time.Time{})
	var mb [4]byte
	rand.Read(mb[:])
	return &Conn{nc: nc, raw: -1, br: br, mask: binary.LittleEndian.Uint32(mb[:]) | 1}, nil
}

// Close closes the TCP connection at once (no close handshake: the load
// tool ends many clients together and the server treats either the same).
func (c *Conn) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.raw >= 0 {
		fd := c.raw
		c.raw = -2 // closed
		return rawClose(fd)
	}
	if c.raw == -2 {
		return nil
	}
	return c.nc.Close()
}

// SetReadDeadline sets the deadline of the next reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// WriteText sends one masked text frame. It is safe for concurrent use.
func (c *Conn) WriteText(p []byte) error { return c.write(opText, p, 10*time.Second) }

func (c *Conn) write(op byte, p []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	// A new masking key per frame (xorshift: clients need not be
	// cryptographically unpredictable here, only masked).
	m := c.mask
	m ^= m << 13
	m ^= m >> 17
	m ^= m << 5
	c.mask = m
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], m)
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range b[start:] {
		b[start+i] ^= key[i&3]
	}
	c.wbuf = b
	var err error
	switch {
	case c.raw >= 0:
		err = c.rawWrite(b, max(timeout, time.Second))
	case c.raw == -2:
		err = ErrClosed
	default:
		if timeout > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(timeout))
		}
		_, err = c.nc.Write(b)
	}
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil
	}
	return err
}

// ReadMessage returns the next text or binary message. The returned slice
// is valid until the next call. Pings are answered; a close frame gives a
// *CloseError.
func (c *Conn) ReadMessage() (op byte, data []byte, err error) {
	c.msg = c.msg[:0]
	var first byte
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return 0, nil, err
		}
		fin := hdr[0]&0x80 != 0
		opcode := hdr[0] & 0x0f
		if hdr[1]&0x80 != 0 {
			return 0, nil, errors.New("loadtest: masked server frame")
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(c.br, ext[:]); err != nil {
				return 0, nil, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(c.br, ext[:]); err != nil {
				return 0, nil, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if n > maxMessage || uint64(len(c.msg))+n > maxMessage {
			return 0, nil, fmt.Errorf("loadtest: message over %d bytes", maxMessage)
		}
		if opcode >= opClose {
			var ctl [125]byte
			if n > 125 {
				return 0, nil, errors.New("loadtest: control frame too long")
			}
			if _, err := io.ReadFull(c.br, ctl[:n]); err != nil {
				return 0, nil, err
			}
			switch opcode {
			case opPing:
				if err := c.write(opPong, ctl[:n], time.Second); err != nil {
					return 0, nil, err
				}
			case opClose:
				ce := &CloseError{Code: 1005}
				if n >= 2 {
					ce.Code = int(binary.BigEndian.Uint16(ctl[:2]))
					ce.Reason = string(ctl[2:n])
				}
				c.write(opClose, ctl[:min(n, 2)], time.Second)
				return 0, nil, ce
			}
			continue
		}
		if opcode != opContinuation {
			first = opcode
		}
		start := len(c.msg)
		c.msg = append(c.msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.msg[start:]); err != nil {
			return 0, nil, err
		}
		if fin {
			if cap(c.msg) > 1<<20 {
				// Do not keep a huge buffer per idle client.
				out := c.msg
				c.msg = nil
				return first, out, nil
			}
			return first, c.msg, nil
		}
	}
}

// V2 frame helpers ---------------------------------------------------------

// Frame is a decoded V2 text frame: [join_ref, ref, topic, event, payload].
// The strings are unescaped only trivially (the fields the tool reads have
// no escapes); Payload aliases the message buffer.
type Frame struct {
	JoinRef, Ref, Topic, Event string
	Payload                    []byte
}

// ParseV2 decodes the envelope of a V2 JSON frame without decoding the
// payload.
func ParseV2(b []byte) (Frame, error) {
	var f Frame
	e, err := phxframe.Scan(b)
	if err != nil {
		return f, err
	}
	f.JoinRef, f.Ref = string(phxframe.Content(e.JoinRef)), string(phxframe.Content(e.Ref))
	f.Topic, f.Event = string(phxframe.Content(e.Topic)), string(phxframe.Content(e.Event))
	f.Payload = e.Payload
	return f, nil
}

// ReplyStatus returns the status of a phx_reply payload
// ({"status":"ok","response":...}) without decoding the response.
func ReplyStatus(payload []byte) string {
	k := bytes.Index(payload, []byte(`"status":"`))
	if k < 0 {
		return ""
	}
	s := payload[k+len(`"status":"`):]
	for j, c := range s {
		if c == '"' {
			return string(s[:j])
		}
	}
	return ""
}
