package phxframe

import "errors"

// The V2 binary frame: a kind byte, one length byte per header field,
// the fields, then the payload as raw bytes. Which fields a kind has
// depends on the direction (a client's push carries a ref, a server's
// does not), so the callers say how many they expect.

// Binary frame kinds.
const (
	KindPush      = 0 // client: join_ref, ref, topic, event; server: join_ref, topic, event
	KindReply     = 1 // server: join_ref, ref, topic, status
	KindBroadcast = 2 // server: topic, event
)

// MaxField is the longest header field a binary frame can carry (its
// length is one byte).
const MaxField = 255

// Errors of SplitBinary.
var (
	ErrShortHeader = errors.New("phxframe: binary frame shorter than its header")
	ErrOverrun     = errors.New("phxframe: binary frame shorter than its header says")
)

// AppendBinary appends a binary frame of kind with the header fields and
// the payload. Every field must be at most MaxField bytes (the callers
// check, each with its own error); a longer one is cut to MaxField.
func AppendBinary(b []byte, kind byte, payload []byte, fields ...string) []byte {
	b = append(b, kind)
	for _, f := range fields {
		b = append(b, byte(min(len(f), MaxField)))
	}
	for _, f := range fields {
		b = append(b, f[:min(len(f), MaxField)]...)
	}
	return append(b, payload...)
}

// SplitBinary reads the n header fields of the binary frame b (after its
// kind byte, b[0], which the caller has checked) as slices of b, and the
// payload after them.
func SplitBinary(b []byte, n int) (fields [4][]byte, payload []byte, err error) {
	if n < 0 || n > len(fields) || len(b) < 1+n {
		return fields, nil, ErrShortHeader
	}
	pos := 1 + n
	for i := range n {
		l := int(b[1+i])
		if pos+l > len(b) {
			return fields, nil, ErrOverrun
		}
		fields[i] = b[pos : pos+l]
		pos += l
	}
	return fields, b[pos:], nil
}
