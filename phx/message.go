package phx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gopresence/presence/internal/jsonscan"
	"github.com/gopresence/presence/internal/jsonstr"
	"github.com/gopresence/presence/internal/phxframe"
)

// Reserved events of the Phoenix channel protocol.
const (
	EventJoin      = "phx_join"
	EventLeave     = "phx_leave"
	EventReply     = "phx_reply"
	EventError     = "phx_error"
	EventClose     = "phx_close"
	EventHeartbeat = "heartbeat"
	// TopicPhoenix is the topic of heartbeats.
	TopicPhoenix = "phoenix"
)

// errMalformed is wrapped by every decode error of client input.
var errMalformed = errors.New("phx: malformed frame")

// ref is an opaque reference (ref or join_ref) as raw JSON: nil means null.
// Refs are echoed byte for byte: they are the client's, and the server never
// interprets them beyond equality.
type ref []byte

var jsonNull = []byte("null")

// stringRef makes a JSON string ref; "" gives nil: an empty join_ref in a
// binary frame counts as absent (Phoenix keeps "" and then drops such a push
// to a joined topic as stale; phoenix.js always sends a join_ref, so both
// readings suit it).
func stringRef(s string) ref {
	if s == "" {
		return nil
	}
	return ref(jsonstr.Append(nil, s)) // invalid UTF-8 becomes U+FFFD
}

func (r ref) isNull() bool { return r == nil }

func (r ref) equal(o ref) bool { return bytes.Equal(r, o) }

// json returns the ref as a JSON value.
func (r ref) json() []byte {
	if r == nil {
		return jsonNull
	}
	return r
}

// text returns the ref as text for binary frames: the string itself, or the
// raw JSON of a non-string ref, or "" for null.
func (r ref) text() string {
	if r == nil {
		return ""
	}
	if r[0] == '"' {
		var s string
		if json.Unmarshal(r, &s) == nil {
			return s
		}
	}
	return string(r)
}

// normRef turns a raw JSON value into a ref (null → nil) and copies it.
func normRef(raw json.RawMessage) ref {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, jsonNull) {
		return nil
	}
	return ref(bytes.Clone(raw))
}

// message is one decoded client frame: the five fields every Phoenix frame
// carries.
type message struct {
	joinRef ref
	ref     ref
	topic   string
	event   string
	payload Payload
}

// Payload is the payload of a client message: JSON for text frames, raw
// bytes for V2 binary frames.
type Payload struct {
	// JSON is the payload of a text frame, as sent (any JSON value). Nil for
	// binary frames.
	JSON json.RawMessage
	// Binary is the payload of a binary frame (possibly empty). Nil for JSON
	// frames.
	Binary []byte
	// IsBinary reports that the message came in a binary frame.
	IsBinary bool
}

// Binary is a payload sent to clients as a V2 binary frame:
// pass it to Push, Broadcast or as a Reply's Response. Over V1 and
// long-poll, which cannot carry server-to-client binary frames, such
// frames are dropped.
type Binary []byte

// decodeV2 decodes a V2 JSON text frame: an array of at least five
// elements [join_ref, ref, topic, event, payload] (extra elements ignored).
func decodeV2(data []byte) (message, error) {
	if m, ok := decodeV2Fast(data); ok {
		return m, nil
	}
	return decodeV2Slow(data)
}

// decodeV2Fast decodes the usual shape of a V2 frame without reflection:
// refs null or plain strings, topic and event plain strings (plain: printable
// ASCII without escapes), a payload that is valid JSON, then the closing
// bracket. Anything else returns false and decodeV2Slow decides, so that
// both accept exactly the same frames and decode them alike
// (FuzzDecodeV2FastPath). It saves the reflection and allocations of
// json.Unmarshal into []json.RawMessage on every client frame.
func decodeV2Fast(data []byte) (message, bool) {
	e, err := phxframe.Scan(data)
	if err != nil || !phxframe.Plain(e.JoinRef, true) || !phxframe.Plain(e.Ref, true) ||
		!phxframe.Plain(e.Topic, false) || !phxframe.Plain(e.Event, false) {
		return message{}, false
	}
	payload := jsonscan.TrimSpace(e.Payload)
	if len(payload) == 0 || !json.Valid(payload) {
		return message{}, false
	}
	return message{
		joinRef: normRef(e.JoinRef),
		ref:     normRef(e.Ref),
		topic:   string(phxframe.Content(e.Topic)),
		event:   string(phxframe.Content(e.Event)),
		payload: Payload{JSON: json.RawMessage(bytes.Clone(payload))},
	}, true
}

// decodeV2Slow is decodeV2 by encoding/json, for every frame.
func decodeV2Slow(data []byte) (message, error) {
	var arr []json.RawMessage
	if err := json.Unmarshal(data, &arr); err != nil {
		return message{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if len(arr) < 5 {
		return message{}, fmt.Errorf("%w: V2 frame has %d elements, want 5", errMalformed, len(arr))
	}
	var m message
	if err := json.Unmarshal(arr[2], &m.topic); err != nil || bytes.Equal(arr[2], jsonNull) {
		return message{}, fmt.Errorf("%w: topic is not a string", errMalformed)
	}
	if err := json.Unmarshal(arr[3], &m.event); err != nil || bytes.Equal(arr[3], jsonNull) {
		return message{}, fmt.Errorf("%w: event is not a string", errMalformed)
	}
	m.joinRef = normRef(arr[0])
	m.ref = normRef(arr[1])
	m.payload = Payload{JSON: json.RawMessage(bytes.Clone(bytes.TrimSpace(arr[4])))}
	return m, nil
}

// decodeV1 decodes a V1 JSON object {topic, event, payload, ref[, join_ref]}.
// All four keys are required (null values allowed except for topic and
// event, which must be strings).
func decodeV1(data []byte) (message, error) {
	d := bytes.TrimSpace(data)
	if len(d) == 0 || d[0] != '{' {
		return message{}, fmt.Errorf("%w: V1 frame is not an object", errMalformed)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(d, &f); err != nil {
		return message{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	topic, ok1 := f["topic"]
	event, ok2 := f["event"]
	payload, ok3 := f["payload"]
	r, ok4 := f["ref"]
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return message{}, fmt.Errorf("%w: V1 frame lacks topic, event, payload or ref", errMalformed)
	}
	var m message
	if err := json.Unmarshal(topic, &m.topic); err != nil || bytes.Equal(topic, jsonNull) {
		return message{}, fmt.Errorf("%w: topic is not a string", errMalformed)
	}
	if err := json.Unmarshal(event, &m.event); err != nil || bytes.Equal(event, jsonNull) {
		return message{}, fmt.Errorf("%w: event is not a string", errMalformed)
	}
	m.ref = normRef(r)
	m.joinRef = normRef(f["join_ref"])
	m.payload = Payload{JSON: json.RawMessage(bytes.Clone(bytes.TrimSpace(payload)))}
	return m, nil
}

// decodeBinary decodes a V2 binary client push (kind 0):
// 0, len(join_ref), len(ref), len(topic), len(event), then the four
// strings and the payload bytes.
func decodeBinary(data []byte) (message, error) {
	if len(data) < 5 {
		return message{}, fmt.Errorf("%w: binary frame shorter than its header", errMalformed)
	}
	if data[0] != phxframe.KindPush {
		return message{}, fmt.Errorf("%w: binary frame of kind %d, want 0 (push)", errMalformed, data[0])
	}
	fs, rest, err := phxframe.SplitBinary(data, 4)
	if err != nil {
		return message{}, fmt.Errorf("%w: binary frame shorter than its header says", errMalformed)
	}
	var m message
	m.joinRef = stringRef(string(fs[0]))
	m.ref = stringRef(string(fs[1]))
	m.topic = string(fs[2])
	m.event = string(fs[3])
	// Topic and event are echoed in text frames (replies): they must be
	// UTF-8 (the refs are encoded as JSON strings, which coerces them).
	if !utf8.ValidString(m.topic) || !utf8.ValidString(m.event) {
		return message{}, fmt.Errorf("%w: binary frame header is not valid UTF-8", errMalformed)
	}
	m.payload = Payload{Binary: bytes.Clone(rest), IsBinary: true}
	if m.payload.Binary == nil {
		m.payload.Binary = []byte{}
	}
	return m, nil
}

// serializer picks the frame format of one connection.
type serializer uint8

const (
	serV1 serializer = iota + 1 // V1 JSON objects (vsn 1.0.x)
	serV2                       // V2 JSON arrays and binary frames (vsn 2.0.x)
)

func (s serializer) String() string {
	if s == serV1 {
		return "1.0.0"
	}
	return "2.0.0"
}

// decode decodes one client frame.
func (s serializer) decode(data []byte, binary bool) (message, error) {
	if binary {
		if s == serV1 {
			return message{}, fmt.Errorf("%w: binary frame on a V1 connection", errMalformed)
		}
		return decodeBinary(data)
	}
	if s == serV1 {
		return decodeV1(data)
	}
	return decodeV2(data)
}

// frame is one encoded server frame ready for a transport.
type frame struct {
	data   []byte
	binary bool
	ctl    byte   // a WebSocket control opcode (pong, close), 0 for a message
	wire   []byte // the whole WebSocket frame when built in advance (withWire)
	// buf, when set, is data's allocation, with wsRoom bytes before data
	// where withWire puts the WebSocket header instead of copying.
	buf []byte
	// sock is the channel a queued push is for (nil for broadcasts,
	// replies and control frames): a replaced channel's pushes are dropped.
	sock *Socket
}

// size is what f holds in a send queue, in bytes.
func (f frame) size() int64 {
	if f.wire != nil {
		return int64(len(f.wire))
	}
	return int64(len(f.data) + wsRoom)
}

// encodeText encodes a JSON frame with an already encoded object payload.
// V1 never carries join_ref (Phoenix's V1 serializer writes none).
func (s serializer) encodeText(joinRef, ref ref, topic, event string, payload []byte) frame {
	var b []byte
	if s == serV1 {
		b = make([]byte, wsRoom, wsRoom+len(topic)+len(event)+len(payload)+len(ref)+48)
		b = append(b, `{"topic":`...)
		b = jsonstr.Append(b, topic)
		b = append(b, `,"event":`...)
		b = jsonstr.Append(b, event)
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
		b = append(b, `,"ref":`...)
		b = append(b, ref.json()...)
		b = append(b, '}')
		return frame{data: b[wsRoom:], buf: b}
	}
	b = make([]byte, wsRoom, wsRoom+len(topic)+len(event)+len(payload)+len(ref)+len(joinRef)+24)
	b = phxframe.AppendRaw(b, joinRef, ref, topic, event, payload)
	return frame{data: b[wsRoom:], buf: b}
}

// errFieldTooLong is returned when a binary frame's string field exceeds 255
// bytes: its length must fit the one-byte length of the frame header.
var errFieldTooLong = errors.New("phx: binary frame field longer than 255 bytes")

func checkFields(fields ...string) error {
	for _, f := range fields {
		if len(f) > 255 {
			return fmt.Errorf("%w: %.40q…", errFieldTooLong, f)
		}
	}
	return nil
}

// encodeBinaryPush encodes a server push (kind 0): no ref.
func encodeBinaryPush(joinRef, topic, event string, payload []byte) (frame, error) {
	if err := checkFields(joinRef, topic, event); err != nil {
		return frame{}, err
	}
	b := make([]byte, 0, 4+len(joinRef)+len(topic)+len(event)+len(payload))
	return frame{data: phxframe.AppendBinary(b, phxframe.KindPush, payload, joinRef, topic, event), binary: true}, nil
}

// encodeBinaryReply encodes a server reply (kind 1).
func encodeBinaryReply(joinRef, ref, topic, status string, payload []byte) (frame, error) {
	if err := checkFields(joinRef, ref, topic, status); err != nil {
		return frame{}, err
	}
	b := make([]byte, 0, 5+len(joinRef)+len(ref)+len(topic)+len(status)+len(payload))
	return frame{data: phxframe.AppendBinary(b, phxframe.KindReply, payload, joinRef, ref, topic, status), binary: true}, nil
}

// encodeBinaryBroadcast encodes a server broadcast (kind 2).
func encodeBinaryBroadcast(topic, event string, payload []byte) (frame, error) {
	if err := checkFields(topic, event); err != nil {
		return frame{}, err
	}
	b := make([]byte, 0, 3+len(topic)+len(event)+len(payload))
	return frame{data: phxframe.AppendBinary(b, phxframe.KindBroadcast, payload, topic, event), binary: true}, nil
}

// errNotObject is returned for a JSON payload that is not an object: the
// serializers, as Phoenix's, only send object payloads.
var errNotObject = errors.New("phx: payload must encode to a JSON object")

// JSONAppender is a payload that encodes itself: AppendJSON appends one
// JSON object to b. phx trusts it (the output is not checked), which saves
// encoding/json's reflection and validation on hot paths such as
// presence_diff (presence.Diff and presence.State implement it).
type JSONAppender interface {
	AppendJSON(b []byte) []byte
}

// marshalObject encodes v as a JSON object. A nil v gives {}.
func marshalObject(v any) ([]byte, error) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return []byte("{}"), nil
	case JSONAppender:
		return x.AppendJSON(nil), nil
	case json.RawMessage:
		b = bytes.TrimSpace(x)
		if !json.Valid(b) {
			return nil, fmt.Errorf("phx: invalid JSON payload")
		}
	case []byte:
		return nil, fmt.Errorf("phx: []byte payload: use phx.Binary for binary payloads or json.RawMessage for JSON")
	default:
		var err error
		b, err = json.Marshal(v)
		if err != nil {
			return nil, err
		}
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, errNotObject
	}
	return b, nil
}

// replyPayload encodes {"status": status, "response": response}.
func replyPayload(status string, response []byte) []byte {
	b := make([]byte, 0, len(status)+len(response)+28)
	b = append(b, `{"status":`...)
	b = jsonstr.Append(b, status)
	b = append(b, `,"response":`...)
	b = append(b, response...)
	b = append(b, '}')
	return b
}
