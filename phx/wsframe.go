package phx

import "github.com/gopresence/presence/phx/internal/wsio"

// WebSocket opcodes (RFC 6455 §5.2) of the frames the server writes.
const (
	opText   = wsio.OpText
	opBinary = wsio.OpBinary
	opClose  = wsio.OpClose
	opPong   = wsio.OpPong
)

// The server writes its WebSocket frames itself (internal/wsio) instead of
// through gorilla's writer: server frames are not masked, so a broadcast is
// framed once and the same bytes go to every subscriber (frame.wire), and
// all the frames queued on a connection go out in one write(2).

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

// wsRoom is the room encodeText leaves before a frame's data for the
// largest WebSocket header.
const wsRoom = wsio.MaxHeader

// withWire returns f with its WebSocket bytes built, for a frame that is
// written to many connections: the header goes in the room before the data
// when there is one, else the frame is copied.
func withWire(f frame) frame {
	if len(f.data) > 0 && len(f.buf) == wsRoom+len(f.data) && &f.buf[wsRoom] == &f.data[0] {
		var h [wsRoom]byte
		hdr := wsio.AppendHeader(h[:0], f.opcode(), len(f.data))
		start := wsRoom - len(hdr)
		copy(f.buf[start:], hdr)
		f.wire = f.buf[start:]
		return f
	}
	b := wsio.AppendHeader(make([]byte, 0, len(f.data)+wsRoom), f.opcode(), len(f.data))
	f.wire = append(b, f.data...)
	return f
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
