package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeText(t *testing.T) {
	m, err := decodeText([]byte(`["3","7","room:lobby","phx_reply",{"status":"ok","response":{}}]`))
	if err != nil || m.JoinRef != "3" || m.Ref != "7" || m.Topic != "room:lobby" || m.Event != "phx_reply" {
		t.Fatalf("got %+v, %v", m, err)
	}
	status, resp, err := parseReply(m)
	if err != nil || status != "ok" || string(resp) != "{}" {
		t.Fatalf("reply %q %s %v", status, resp, err)
	}
	m, err = decodeText([]byte(`[null,null,"room:lobby","presence_diff",{"joins":{},"leaves":{}},"extra"]`))
	if err != nil || m.JoinRef != "" || m.Ref != "" || string(m.Payload) != `{"joins":{},"leaves":{}}` {
		t.Fatalf("got %+v, %v", m, err)
	}
	for _, bad := range []string{``, `{}`, `[1,2,3,4]`, `[1,"1","t","e",{}]`, `["1","1",3,"e",{}]`, `["1","1","t",null,{}]`, `[`} {
		if _, err := decodeText([]byte(bad)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("decodeText(%q) = %v, want ErrBadFrame", bad, err)
		}
	}
}

func TestEncodeText(t *testing.T) {
	b, err := encodeText("", "12", "phoenix", "heartbeat", nil)
	if err != nil || string(b) != `[null,"12","phoenix","heartbeat",{}]` {
		t.Fatalf("heartbeat: %s %v", b, err)
	}
	b, _ = encodeText("0", "1", "t", "e", json.RawMessage(`{"foo":1}`))
	if string(b) != `["0","1","t","e",{"foo":1}]` {
		t.Fatalf("push: %s", b)
	}
}

// The binary frames of phoenix.js's serializer tests: a push encoded, and
// a push, a reply and a broadcast decoded.
func TestBinaryVectors(t *testing.T) {
	b, err := encodeBinaryPush("0", "1", "t", "e", []byte{1})
	if want := []byte("\x00\x01\x01\x01\x01" + "0" + "1" + "t" + "e" + "\x01"); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("encode: %x %v, want %x", b, err, want)
	}
	b, _ = encodeBinaryPush("12", "123", "topic", "event", []byte("efg"))
	if want := []byte("\x00\x02\x03\x05\x05" + "12123topicevent" + "efg"); !bytes.Equal(b, want) {
		t.Fatalf("encode: %x, want %x", b, want)
	}

	m, err := decodeBinary([]byte("\x00\x03\x03\x0a" + "123" + "top" + "some-event" + "\x01\x01"))
	if err != nil || m.JoinRef != "123" || m.Ref != "" || m.Topic != "top" || m.Event != "some-event" || !bytes.Equal(m.Payload, []byte{1, 1}) {
		t.Fatalf("push: %+v %v", m, err)
	}
	m, err = decodeBinary([]byte("\x01\x02\x03\x05\x02" + "12" + "123" + "topic" + "ok" + "efg"))
	if err != nil || m.JoinRef != "12" || m.Ref != "123" || m.Topic != "topic" || m.Event != "phx_reply" || m.Status != "ok" || string(m.Payload) != "efg" {
		t.Fatalf("reply: %+v %v", m, err)
	}
	status, resp, err := parseReply(m)
	if err != nil || status != "ok" || string(resp) != "efg" {
		t.Fatalf("parseReply: %q %q %v", status, resp, err)
	}
	m, err = decodeBinary([]byte("\x02\x05\x05" + "topic" + "event" + "efg"))
	if err != nil || m.JoinRef != "" || m.Ref != "" || m.Topic != "topic" || m.Event != "event" || string(m.Payload) != "efg" {
		t.Fatalf("broadcast: %+v %v", m, err)
	}
}

// Lengths are UTF-8 byte lengths, and a field over 255
// bytes is refused, naming the field.
func TestBinaryFieldLengths(t *testing.T) {
	b, err := encodeBinaryPush("", "", "ü", "é", nil)
	if err != nil || b[3] != 2 || b[4] != 2 {
		t.Fatalf("utf-8 lengths: %x %v", b, err)
	}
	_, err = encodeBinaryPush("", "", strings.Repeat("t", 256), "e", nil)
	if !errors.Is(err, ErrFieldTooLong) || !strings.Contains(err.Error(), "topic") {
		t.Fatalf("long topic: %v", err)
	}
	for _, bad := range []string{"", "\x03", "\x00\x01", "\x01\x05\x00\x00\x00ab", "\x02\x09\x00abc"} {
		if _, err := decodeBinary([]byte(bad)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("decodeBinary(%q) = %v", bad, err)
		}
	}
}

func FuzzDecodeText(f *testing.F) {
	f.Add([]byte(`["3","7","room:lobby","phx_reply",{"status":"ok","response":{}}]`))
	f.Add([]byte(`[null,null,"t","presence_diff",{"joins":{},"leaves":{}}]`))
	f.Add([]byte(`[null,"1","phoenix","phx_reply",{"status":"ok"}]`))
	f.Add([]byte(`[1,2,3,4,5]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeText(b)
		if err != nil {
			return
		}
		if m.Event == "phx_reply" {
			_, _, _ = parseReply(m)
		}
		// What decodes re-encodes and decodes to the same frame.
		re, err := encodeText(m.JoinRef, m.Ref, m.Topic, m.Event, m.Payload)
		if err != nil {
			return // a payload json.Marshal rejects (e.g. invalid UTF-8 handling)
		}
		m2, err := decodeText(re)
		if err != nil || m2.JoinRef != m.JoinRef || m2.Ref != m.Ref || m2.Topic != m.Topic || m2.Event != m.Event {
			t.Fatalf("re-decode of %s: %+v %v", re, m2, err)
		}
	})
}

// FuzzDecodeTextFastPath: whatever the fast path decodes, encoding/json
// decodes alike; and encodeText writes what json.Marshal writes.
func FuzzDecodeTextFastPath(f *testing.F) {
	for _, s := range []string{
		`["3","7","room:lobby","phx_reply",{"status":"ok","response":{}}]`,
		` [ null , "1" , "phoenix" , "phx_reply" , {"a" : "<b>"} ] `,
		`["1","1","r\u00e9","ev",{}]`, `["1","1","t","e",{},"extra"]`, `["1","1","t","e",]`, `[1,"1","t","e",{}]`,
		"[\"1\",\"1\",\"t\",\"e\",\f{}]", `["1","1","t","e",tru]`,
	} {
		f.Add([]byte(s), "1", "2", "room:a", "ev")
	}
	f.Fuzz(func(t *testing.T, b []byte, joinRef, ref, topic, event string) {
		if fast, ok := decodeTextFast(b); ok {
			slow, err := decodeTextSlow(b)
			if err != nil {
				t.Fatalf("%q: fast path accepted, encoding/json: %v", b, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q:\nfast %+v\nslow %+v", b, fast, slow)
			}
		}
		for _, payload := range []json.RawMessage{nil, json.RawMessage(b), json.RawMessage(`{"a":1}`)} {
			got, gerr := encodeText(joinRef, ref, topic, event, payload)
			p := payload
			if p == nil {
				p = json.RawMessage("{}")
			}
			arr := [5]any{nil, nil, topic, event, p}
			if joinRef != "" {
				arr[0] = joinRef
			}
			if ref != "" {
				arr[1] = ref
			}
			want, werr := json.Marshal(arr)
			if (gerr != nil) != (werr != nil) || string(got) != string(want) {
				t.Fatalf("encodeText(%q) = %s, %v; json.Marshal: %s, %v", payload, got, gerr, want, werr)
			}
		}
	})
}

func FuzzDecodeBinary(f *testing.F) {
	f.Add([]byte("\x00\x03\x03\x0a" + "123" + "top" + "some-event" + "\x01\x01"))
	f.Add([]byte("\x01\x02\x03\x05\x02" + "12" + "123" + "topic" + "ok" + "efg"))
	f.Add([]byte("\x02\x05\x05" + "topic" + "event" + "efg"))
	f.Add([]byte("\x02\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBinary(b)
		if err != nil {
			return
		}
		if !m.Binary || len(m.Payload) > len(b) {
			t.Fatalf("decoded %+v from %x", m, b)
		}
	})
}
