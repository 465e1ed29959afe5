package phx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeV1: never panics; what decodes re-encodes and decodes to the
// same message.
func FuzzDecodeV1(f *testing.F) {
	for _, s := range []string{
		`{"topic":"t","event":"e","payload":{},"ref":"1"}`,
		`{"topic":"t","event":"e","payload":null,"ref":null,"join_ref":"2"}`,
		`{"topic":"t","event":"e","payload":[1,{"a":"b"}],"ref":7}`,
		`{"topic":1}`, `[]`, `{`, ``, `{"topic":"\u00e9","event":"","payload":"","ref":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeV1(data)
		if err != nil {
			return
		}
		enc, _ := json.Marshal(map[string]any{
			"topic": m.topic, "event": m.event, "payload": m.payload.JSON,
			"ref": json.RawMessage(m.ref.json()), "join_ref": json.RawMessage(m.joinRef.json()),
		})
		m2, err := decodeV1(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		if m2.topic != m.topic || m2.event != m.event || !m2.ref.equal(m.ref) || !m2.joinRef.equal(m.joinRef) {
			t.Fatalf("round trip: %+v != %+v", m2, m)
		}
	})
}

// FuzzDecodeV2: never panics; what decodes re-encodes (as the server would
// frame it) and decodes to the same message.
func FuzzDecodeV2(f *testing.F) {
	for _, s := range []string{
		`["1","1","room:lobby","phx_join",{"meta":{"name":"a"}}]`,
		`[null,"12","phoenix","heartbeat",{}]`,
		`[null,null,"t","e",{},1,2]`,
		`["1","1","t","e"]`, `{}`, `[`, `[1,2,3,4,5]`, `["a","b","c","d",null]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeV2(data)
		if err != nil {
			return
		}
		fr := serV2.encodeText(m.joinRef, m.ref, m.topic, m.event, m.payload.JSON)
		m2, err := decodeV2(fr.data)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", fr.data, err)
		}
		if m2.topic != m.topic || m2.event != m.event || !m2.ref.equal(m.ref) || !m2.joinRef.equal(m.joinRef) {
			t.Fatalf("round trip: %+v != %+v", m2, m)
		}
	})
}

// FuzzDecodeBinary: never panics; what decodes re-encodes to the same
// bytes.
func FuzzDecodeBinary(f *testing.F) {
	f.Add([]byte("\x00\x02\x03\x05\x05" + "12123topicevent" + "efg"))
	f.Add([]byte("\x00\x00\x01\x07\x09" + "3phoenixheartbeat"))
	f.Add([]byte("\x00\x01\x01\x01\x01" + "01te\x01"))
	f.Add([]byte("\x01\x00\x00\x00\x00"))
	f.Add([]byte("\x00\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeBinary(data)
		if err != nil {
			return
		}
		jr, r := m.joinRef.text(), m.ref.text()
		b := []byte{0, byte(len(jr)), byte(len(r)), byte(len(m.topic)), byte(len(m.event))}
		b = append(b, jr...)
		b = append(b, r...)
		b = append(b, m.topic...)
		b = append(b, m.event...)
		b = append(b, m.payload.Binary...)
		// Refs are kept as JSON strings: invalid UTF-8 in them is replaced.
		jl, rl := int(data[1]), int(data[2])
		refsValid := utf8.Valid(data[5:5+jl]) && utf8.Valid(data[5+jl:5+jl+rl])
		if refsValid && !bytes.Equal(b, data) {
			t.Fatalf("round trip %x != %x", b, data)
		}
	})
}

// FuzzLongPollBody: the POST body decoder never panics, uses at most 100
// lines, and yields text frames starting with '[' or decoded binary.
func FuzzLongPollBody(f *testing.F) {
	f.Add("application/x-ndjson", []byte("[null,\"1\",\"phoenix\",\"heartbeat\",{}]\n[\"1\",\"2\",\"t\",\"e\",{}]"))
	f.Add("application/x-ndjson", []byte("AAABBwkzcGhvZW5peGhlYXJ0YmVhdA==\r\n[1]\n\n"))
	f.Add("application/x-ndjson", []byte("!!notbase64"))
	f.Add("application/json", []byte(`["1","1","t","e",{}]`))
	f.Add("", []byte(strings.Repeat("[]\n", 150)))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		frames, err := decodeLongPollBody(ct, body, 1<<20)
		if err != nil {
			return
		}
		if ct != "application/x-ndjson" {
			if len(frames) != 1 || !bytes.Equal(frames[0].data, body) {
				t.Fatal("whole body must be one frame")
			}
			return
		}
		if len(frames) > maxLongPollLines {
			t.Fatalf("%d frames", len(frames))
		}
		for _, fr := range frames {
			if !fr.binary && (len(fr.data) == 0 || fr.data[0] != '[') {
				t.Fatalf("text frame %q", fr.data)
			}
		}
	})
}
