package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gopresence/presence/internal/jsonscan"
	"github.com/gopresence/presence/internal/phxframe"
)

// Message is one frame of the Phoenix channels protocol (V2), as received.
type Message struct {
	// JoinRef is the join_ref of the channel instance the frame belongs
	// to; "" for null (broadcasts, replies not tied to a channel).
	JoinRef string
	// Ref is the ref of the request a reply answers; "" for null.
	Ref string
	// Topic and Event name the channel and the event.
	Topic string
	Event string
	// Payload is the payload: JSON for text frames; the raw bytes for
	// binary frames (Binary is then true). For a binary reply it is the
	// response and Status holds the status.
	Payload json.RawMessage
	// Binary reports a V2 binary frame.
	Binary bool
	// Status is the status of a binary reply (kind 1).
	Status string
}

// ErrBadFrame is returned (wrapped) for a frame that does not decode.
var ErrBadFrame = errors.New("client: malformed frame")

// decodeText decodes a V2 JSON frame: [join_ref, ref, topic, event, payload].
func decodeText(b []byte) (Message, error) {
	if m, ok := decodeTextFast(b); ok {
		return m, nil
	}
	return decodeTextSlow(b)
}

// decodeTextFast decodes the usual frame through phxframe, without
// reflection: refs null or plain strings, topic and event plain strings
// (printable ASCII without escapes, whose contents are their value), a
// valid payload. Anything else returns false and decodeTextSlow decides,
// so both accept the same frames and decode them alike
// (FuzzDecodeTextFastPath).
func decodeTextFast(b []byte) (Message, bool) {
	e, err := phxframe.Scan(b)
	if err != nil || !phxframe.Plain(e.JoinRef, true) || !phxframe.Plain(e.Ref, true) || !phxframe.Plain(e.Topic, false) || !phxframe.Plain(e.Event, false) {
		return Message{}, false
	}
	payload := jsonscan.TrimSpace(e.Payload)
	if len(payload) == 0 || !json.Valid(payload) {
		return Message{}, false
	}
	return Message{
		JoinRef: string(phxframe.Content(e.JoinRef)),
		Ref:     string(phxframe.Content(e.Ref)),
		Topic:   string(phxframe.Content(e.Topic)),
		Event:   string(phxframe.Content(e.Event)),
		Payload: json.RawMessage(bytes.Clone(payload)), // b is the socket's buffer
	}, true
}

// decodeTextSlow is decodeText by encoding/json, for every frame.
func decodeTextSlow(b []byte) (Message, error) {
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if len(arr) < 5 {
		return Message{}, fmt.Errorf("%w: %d elements, want 5", ErrBadFrame, len(arr))
	}
	var m Message
	var err error
	if m.JoinRef, err = nullableString(arr[0]); err != nil {
		return Message{}, fmt.Errorf("%w: join_ref: %v", ErrBadFrame, err)
	}
	if m.Ref, err = nullableString(arr[1]); err != nil {
		return Message{}, fmt.Errorf("%w: ref: %v", ErrBadFrame, err)
	}
	if m.Topic, err = requiredString(arr[2]); err != nil {
		return Message{}, fmt.Errorf("%w: topic: %v", ErrBadFrame, err)
	}
	if m.Event, err = requiredString(arr[3]); err != nil {
		return Message{}, fmt.Errorf("%w: event: %v", ErrBadFrame, err)
	}
	m.Payload = arr[4]
	return m, nil
}

var jsonNull = []byte("null")

func nullableString(raw json.RawMessage) (string, error) {
	if bytes.Equal(raw, jsonNull) {
		return "", nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func requiredString(raw json.RawMessage) (string, error) {
	if bytes.Equal(raw, jsonNull) {
		return "", errors.New("null")
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// encodeText encodes a client frame; empty refs become null. payload must
// be valid JSON (nil means {}). The frame is byte for byte what
// json.Marshal writes for the five values: phxframe.Append writes it when
// the payload is already as json.Marshal would write it (compact, no
// character it escapes), encoding/json otherwise.
func encodeText(joinRef, ref, topic, event string, payload json.RawMessage) ([]byte, error) {
	if payload == nil {
		payload = json.RawMessage("{}")
	}
	if marshalsAsIs(payload) {
		return phxframe.Append(make([]byte, 0, len(joinRef)+len(ref)+len(topic)+len(event)+len(payload)+16), joinRef, ref, topic, event, payload), nil
	}
	arr := [5]any{nil, nil, topic, event, payload}
	if joinRef != "" {
		arr[0] = joinRef
	}
	if ref != "" {
		arr[1] = ref
	}
	return json.Marshal(arr)
}

// marshalsAsIs reports whether json.Marshal writes payload unchanged: valid,
// printable ASCII without whitespace (which it compacts) or the characters
// it escapes for HTML.
func marshalsAsIs(payload []byte) bool {
	for _, c := range payload {
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return json.Valid(payload)
}

// Binary frame kinds (server to client).
const (
	kindPush      = phxframe.KindPush
	kindReply     = phxframe.KindReply
	kindBroadcast = phxframe.KindBroadcast
)

// decodeBinary decodes a V2 binary frame sent by a server: push (kind 0:
// join_ref, topic, event), reply (kind 1: join_ref, ref, topic, status) or
// broadcast (kind 2: topic, event). Every length is one byte.
func decodeBinary(b []byte) (Message, error) {
	if len(b) == 0 {
		return Message{}, fmt.Errorf("%w: empty binary frame", ErrBadFrame)
	}
	var nfields int
	switch b[0] {
	case kindPush:
		nfields = 3
	case kindReply:
		nfields = 4
	case kindBroadcast:
		nfields = 2
	default:
		return Message{}, fmt.Errorf("%w: binary kind %d", ErrBadFrame, b[0])
	}
	fs, payload, err := phxframe.SplitBinary(b, nfields)
	switch {
	case errors.Is(err, phxframe.ErrShortHeader):
		return Message{}, fmt.Errorf("%w: short binary header", ErrBadFrame)
	case err != nil:
		return Message{}, fmt.Errorf("%w: a binary field overruns the frame", ErrBadFrame)
	}
	var fields [4]string
	for i := range nfields {
		fields[i] = string(fs[i])
	}
	m := Message{Binary: true, Payload: json.RawMessage(payload)}
	switch b[0] {
	case kindPush:
		m.JoinRef, m.Topic, m.Event = fields[0], fields[1], fields[2]
	case kindReply:
		m.JoinRef, m.Ref, m.Topic, m.Status = fields[0], fields[1], fields[2], fields[3]
		m.Event = "phx_reply"
	case kindBroadcast:
		m.Topic, m.Event = fields[0], fields[1]
	}
	return m, nil
}

// ErrFieldTooLong is returned when a field of a binary frame exceeds 255
// bytes.
var ErrFieldTooLong = errors.New("client: binary frame field longer than 255 bytes")

// encodeBinaryPush encodes a client push with a binary payload (kind 0).
func encodeBinaryPush(joinRef, ref, topic, event string, payload []byte) ([]byte, error) {
	fields := []struct{ name, v string }{{"join_ref", joinRef}, {"ref", ref}, {"topic", topic}, {"event", event}}
	size := 5 + len(payload)
	for _, f := range fields {
		if len(f.v) > 255 {
			return nil, fmt.Errorf("%w: %s", ErrFieldTooLong, f.name)
		}
		size += len(f.v)
	}
	return phxframe.AppendBinary(make([]byte, 0, size), kindPush, payload, joinRef, ref, topic, event), nil
}

// replyPayload is the payload of a JSON phx_reply.
type replyPayload struct {
	Status   string          `json:"status"`
	Response json.RawMessage `json:"response"`
}

// parseReply returns the status and response of a reply frame.
func parseReply(m Message) (status string, response json.RawMessage, err error) {
	if m.Binary {
		return m.Status, m.Payload, nil
	}
	var r replyPayload
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return "", nil, fmt.Errorf("%w: reply payload: %v", ErrBadFrame, err)
	}
	if r.Response == nil {
		r.Response = json.RawMessage("{}")
	}
	return r.Status, r.Response, nil
}
