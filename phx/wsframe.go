package phx

import "sync"

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
