package phx

import (
	"net"
	"sync"
)

// WebSocket opcodes (RFC 6455 §5.2) of the frames the server writes.
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPong   = 0xA
)

// The server writes its WebSocket frames itself instead of through
// gorilla's writer: server frames are not masked, so a broadcast is framed
// once and the same bytes go to every subscriber (frame.wire), and all the
// frames queued on a connection go out in one write(2). gorilla still does
// the handshake and reads.

// appendWSHeader appends the header of a final, unmasked frame of opcode op
// carrying n bytes.
func appendWSHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		return append(b, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// opcode is the WebSocket opcode f is written with.
func (f frame) opcode() byte {
	switch {
	case f.ctl != 0:
		return f.ctl
	case f.binary:
		return opBinary
	}
	return opText
}

// appendWire appends f as a WebSocket frame.
func appendWire(b []byte, f frame) []byte {
	if f.wire != nil {
		return append(b, f.wire...)
	}
	b = appendWSHeader(b, f.opcode(), len(f.data))
	return append(b, f.data...)
}

// wsRoom is the room encodeText leaves before a frame's data for the
// largest WebSocket header.
const wsRoom = 10

// withWire returns f with its WebSocket bytes built, for a frame that is
// written to many connections: the header goes in the room before the data
// when there is one, else the frame is copied.
func withWire(f frame) frame {
	if len(f.data) > 0 && len(f.buf) == wsRoom+len(f.data) && &f.buf[wsRoom] == &f.data[0] {
		var h [wsRoom]byte
		hdr := appendWSHeader(h[:0], f.opcode(), len(f.data))
		start := wsRoom - len(hdr)
		copy(f.buf[start:], hdr)
		f.wire = f.buf[start:]
		return f
	}
	f.wire = appendWire(make([]byte, 0, len(f.data)+wsRoom), f)
	return f
}

// wireBatch gathers the frames of one write: small ones copied together
// into one buffer, large ones (and pre-framed broadcasts) written from
// their own bytes, so that a big presence_state is never copied per
// connection.
type wireBatch struct {
	small []byte      // coalesced small frames
	start int         // start of small's segment not yet in bufs
	bufs  net.Buffers // the write, in order
	n     int64       // its bytes
}

// bigFrame is the size above which a frame is written from its own bytes.
const bigFrame = 4096

func (w *wireBatch) reset() {
	clear(w.bufs)
	w.small, w.start, w.bufs, w.n = w.small[:0], 0, w.bufs[:0], 0
}

// cut ends small's current segment (if any) in bufs.
func (w *wireBatch) cut() {
	if len(w.small) > w.start {
		w.bufs = append(w.bufs, w.small[w.start:len(w.small):len(w.small)])
		w.start = len(w.small)
	}
}

// add appends bytes written as they are.
func (w *wireBatch) add(b []byte) {
	if len(b) == 0 {
		return
	}
	w.cut()
	w.bufs = append(w.bufs, b)
	w.n += int64(len(b))
}

// addFrame appends f as a WebSocket frame.
func (w *wireBatch) addFrame(f frame) {
	if f.wire != nil || len(f.data) > bigFrame {
		w.add(wireOf(f))
		return
	}
	before := len(w.small)
	if cap(w.small)-before < len(f.data)+wsRoom {
		// Growing would move the bytes earlier segments point into:
		// start a new buffer instead (the old one stays referenced).
		w.cut()
		w.small = make([]byte, 0, max(2*cap(w.small), len(f.data)+wsRoom, 512))
		w.start, before = 0, 0
	}
	w.small = appendWire(w.small, f)
	w.n += int64(len(w.small) - before)
}

// writeTo writes the batch to nc (writev on a plain socket).
func (w *wireBatch) writeTo(nc net.Conn) error {
	w.cut()
	bufs := w.bufs // WriteTo consumes its receiver
	_, err := bufs.WriteTo(nc)
	return err
}

// wireOf returns f's WebSocket bytes: the pre-built ones of a broadcast
// (shared with other connections: never rebuilt), or built now for a frame
// of one connection.
func wireOf(f frame) []byte {
	if f.wire != nil {
		return f.wire
	}
	return withWire(f).wire
}

// controlFrame is a WebSocket control frame (payload ≤ 125 bytes).
func controlFrame(op byte, payload []byte) frame {
	return withWire(frame{data: payload, ctl: op})
}

// closePayload is the payload of a close frame: the code, big-endian, then
// the reason; empty for 1005 (no status), which must not be sent as a code.
func closePayload(code int, reason string) []byte {
	if code == 1005 {
		return nil
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

// scratch holds transient byte buffers: those that coalesce a connection's
// queued frames for one write, and those frames are read into. Buffers over
// maxScratch are not kept.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxScratch = 64 << 10
