package wire

import (
	"encoding/binary"
	"fmt"
)

// kindFragment marks a piece of a message too big for one bus message
// (NATS refuses payloads over its max_payload, 1 MiB by default; a full
// state of 100k presences is several MiB).
const kindFragment = 0x7f

// Fragment splits an encoded message into pieces of at most max bytes
// (including their header), or returns it whole when it fits. id must be
// unique among the sender's messages in flight.
func Fragment(msg []byte, max int, id uint64) [][]byte {
	if len(msg) <= max {
		return [][]byte{msg}
	}
	const header = 2 + 3*binary.MaxVarintLen64
	room := max - header
	if room < 64 {
		room = 64
	}
	total := (len(msg) + room - 1) / room
	out := make([][]byte, 0, total)
	for i := range total {
		part := msg[i*room : min(len(msg), (i+1)*room)]
		b := make([]byte, 0, header+len(part))
		b = append(b, Version, kindFragment)
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, uint64(i))
		b = binary.AppendUvarint(b, uint64(total))
		out = append(out, append(b, part...))
	}
	return out
}

// IsFragment reports whether b is a fragment.
func IsFragment(b []byte) bool { return len(b) >= 2 && b[0] == Version && b[1] == kindFragment }

// Assembler rebuilds fragmented messages from one sender, whose fragments
// arrive in order. A new message id abandons an incomplete one (a lost
// fragment loses its message, as a lost message would). Not safe for
// concurrent use.
type Assembler struct {
	// MaxSize bounds a reassembled message; larger ones are refused.
	MaxSize int
	id      uint64
	next    uint64
	total   uint64
	buf     []byte
}

// Add takes a fragment and returns the whole message once its last
// fragment arrived, or nil.
func (a *Assembler) Add(b []byte) ([]byte, error) {
	d := &decoder{b: b}
	if d.byte1("version") != Version || d.byte1("kind") != kindFragment {
		return nil, fmt.Errorf("%w: not a fragment", ErrMalformed)
	}
	id, idx, total := d.uvarint("id"), d.uvarint("index"), d.uvarint("total")
	if d.err != nil {
		return nil, d.err
	}
	if total == 0 || idx >= total {
		return nil, fmt.Errorf("%w: fragment %d of %d", ErrMalformed, idx, total)
	}
	if idx == 0 {
		a.id, a.next, a.total, a.buf = id, 0, total, a.buf[:0]
	}
	if id != a.id || idx != a.next || total != a.total {
		a.buf, a.next, a.total = nil, 0, 0 // out of order: drop the message
		return nil, fmt.Errorf("%w: fragment %d of message %d out of order", ErrMalformed, idx, id)
	}
	if a.MaxSize > 0 && len(a.buf)+len(d.b) > a.MaxSize {
		a.buf, a.next, a.total = nil, 0, 0
		return nil, fmt.Errorf("%w: reassembled message over %d bytes", ErrMalformed, a.MaxSize)
	}
	a.buf = append(a.buf, d.b...)
	a.next++
	if a.next < a.total {
		return nil, nil
	}
	out := a.buf
	a.buf, a.next, a.total = nil, 0, 0
	return out, nil
}
