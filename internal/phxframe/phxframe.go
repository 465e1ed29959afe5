// Package phxframe is the V2 text frame of the Phoenix channels protocol,
// [join_ref, ref, topic, event, payload], for every side that speaks it: the
// server (phx), the Go client and the load tool. Scan reads the envelope in
// place without decoding the payload; Append writes one. Neither uses
// reflection: the server reads every client frame and the load tool every
// server frame through them. The V2 binary frame (binary.go) is here too:
// AppendBinary writes one, SplitBinary reads its header fields.
package phxframe

import (
	"errors"
	"fmt"

	"github.com/gopresence/presence/internal/jsonscan"
	"github.com/gopresence/presence/internal/jsonstr"
)

// ErrBadFrame is wrapped by every error of Scan.
var ErrBadFrame = errors.New("phxframe: not a V2 frame")

// Envelope is a V2 frame's envelope as slices of the frame: JoinRef, Ref,
// Topic and Event are the raw JSON tokens as sent (a quoted string with its
// escapes, or null), Payload the bytes between the fourth comma and the
// closing bracket, whitespace included (the load tool's readers skip it
// themselves; the server trims it). Content turns a token into a string's
// contents.
type Envelope struct {
	JoinRef, Ref, Topic, Event []byte
	Payload                    []byte
}

// Content returns the contents of a string token without its quotes and
// with its escapes as written, or nil for null.
func Content(tok []byte) []byte {
	if len(tok) < 2 || tok[0] != '"' {
		return nil
	}
	return tok[1 : len(tok)-1]
}

// Scan reads the envelope of the V2 frame b: an array whose first four
// elements are strings or null and whose fifth, the payload, is any value
// ending at the closing bracket. It checks the envelope's structure, not
// the payload (jsonscan's leniency): a caller that needs encoding/json's
// verdict on the payload checks it with json.Valid.
func Scan(b []byte) (Envelope, error) {
	var e Envelope
	i := jsonscan.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return e, fmt.Errorf("%w: not an array", ErrBadFrame)
	}
	i++
	for _, dst := range [4]*[]byte{&e.JoinRef, &e.Ref, &e.Topic, &e.Event} {
		i = jsonscan.SkipSpace(b, i)
		start := i
		var err error
		if _, i, err = jsonscan.RawStringOrNull(b, i); err != nil {
			return e, fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		*dst = b[start:i]
		if i = jsonscan.SkipSpace(b, i); i >= len(b) || b[i] != ',' {
			return e, fmt.Errorf("%w: expected ','", ErrBadFrame)
		}
		i++
	}
	j := len(b)
	for j > i && jsonscan.IsSpace(b[j-1]) {
		j--
	}
	if j <= i || b[j-1] != ']' {
		return e, fmt.Errorf("%w: no closing bracket", ErrBadFrame)
	}
	e.Payload = b[i : j-1]
	if len(e.Payload) == 0 {
		return e, fmt.Errorf("%w: no payload", ErrBadFrame)
	}
	return e, nil
}

// Append appends the V2 frame [join_ref, ref, topic, event, payload] to b:
// the refs as JSON strings ("" as null), topic and event as encoding/json
// writes strings, the payload as given (already encoded JSON).
func Append(b []byte, joinRef, ref, topic, event string, payload []byte) []byte {
	b = append(b, '[')
	b = appendRef(b, joinRef)
	b = append(b, ',')
	b = appendRef(b, ref)
	b = append(b, ',')
	return appendRest(b, topic, event, payload)
}

// AppendRaw is Append with refs already encoded as JSON values (nil as
// null): the server echoes a client's refs byte for byte.
func AppendRaw(b []byte, joinRef, ref []byte, topic, event string, payload []byte) []byte {
	b = append(b, '[')
	b = appendRawRef(b, joinRef)
	b = append(b, ',')
	b = appendRawRef(b, ref)
	b = append(b, ',')
	return appendRest(b, topic, event, payload)
}

func appendRest(b []byte, topic, event string, payload []byte) []byte {
	b = jsonstr.Append(b, topic)
	b = append(b, ',')
	b = jsonstr.Append(b, event)
	b = append(b, ',')
	b = append(b, payload...)
	return append(b, ']')
}

func appendRef(b []byte, r string) []byte {
	if r == "" {
		return append(b, "null"...)
	}
	return jsonstr.Append(b, r)
}

func appendRawRef(b []byte, r []byte) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	return append(b, r...)
}

// Plain reports whether the envelope token tok (a string or null, as Scan
// gives it) is null, when nullOK, or a string of printable ASCII without
// escapes: one whose contents are its value, so that a fast path may take
// them as they are.
func Plain(tok []byte, nullOK bool) bool {
	if tok[0] != '"' {
		return nullOK
	}
	for _, c := range Content(tok) {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}
