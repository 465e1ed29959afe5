package phx

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// V1 encodes messages, replies and broadcasts as objects
// without join_ref.
func TestV1Encode(t *testing.T) {
	got := string(serV1.encodeText(ref(`"1"`), nil, "t", "e", []byte(`{"m":1}`)).data)
	if want := `{"topic":"t","event":"e","payload":{"m":1},"ref":null}`; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	got = string(serV1.encodeText(ref(`"1"`), ref(`"2"`), "t", EventReply, replyPayload("ok", []byte(`{}`))).data)
	if want := `{"topic":"t","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}`; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

// V1 decodes; non-objects and missing keys fail.
func TestV1Decode(t *testing.T) {
	m, err := decodeV1([]byte(`{"topic":"t","event":"e","payload":{"a":1},"ref":"5","join_ref":"3"}`))
	if err != nil || m.topic != "t" || m.event != "e" || string(m.ref) != `"5"` || string(m.joinRef) != `"3"` || string(m.payload.JSON) != `{"a":1}` {
		t.Fatalf("%+v %v", m, err)
	}
	m, err = decodeV1([]byte(`{"topic":"t","event":"e","payload":null,"ref":null}`))
	if err != nil || m.ref != nil || m.joinRef != nil {
		t.Fatalf("null ref: %+v %v", m, err)
	}
	for _, bad := range []string{`[]`, `"x"`, `{"topic":"t","event":"e","payload":{}}`, `{"topic":"t","event":"e","ref":"1"}`, `{"topic":null,"event":"e","payload":{},"ref":"1"}`, `{`} {
		if _, err := decodeV1([]byte(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// V2 encodes messages, replies and broadcasts.
func TestV2Encode(t *testing.T) {
	cases := []struct{ got, want string }{
		{string(serV2.encodeText(nil, nil, "t", "e", []byte(`{"m":1}`)).data), `[null,null,"t","e",{"m":1}]`},
		{string(serV2.encodeText(ref(`"1"`), ref(`"2"`), "t", EventReply, replyPayload("ok", []byte(`{"a":1}`))).data), `["1","2","t","phx_reply",{"status":"ok","response":{"a":1}}]`},
		{string(serV2.encodeText(nil, nil, `q"uo\te`, "é", []byte(`{}`)).data), `[null,null,"q\"uo\\te","é",{}]`},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %s want %s", c.got, c.want)
		}
	}
}

// Payloads must be objects.
func TestNonObjectPayload(t *testing.T) {
	for _, v := range []any{"s", 1, []int{1}, json.RawMessage(`[1]`), json.RawMessage(`nope`), []byte("x")} {
		if _, err := marshalObject(v); err == nil {
			t.Errorf("%#v accepted", v)
		}
	}
	for _, v := range []any{nil, map[string]int{"a": 1}, json.RawMessage(` {"a":1} `), struct{ A int }{1}} {
		if _, err := marshalObject(v); err != nil {
			t.Errorf("%#v: %v", v, err)
		}
	}
}

// V2 decodes text frames.
func TestV2Decode(t *testing.T) {
	m, err := decodeV2([]byte(`["1","2","t","e",{"a":1},"extra"]`))
	if err != nil || string(m.joinRef) != `"1"` || string(m.ref) != `"2"` || m.topic != "t" || m.event != "e" || string(m.payload.JSON) != `{"a":1}` {
		t.Fatalf("%+v %v", m, err)
	}
	m, err = decodeV2([]byte(` [ null , null , "t" , "e" , "str" ] `))
	if err != nil || m.joinRef != nil || m.ref != nil || string(m.payload.JSON) != `"str"` {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{`["1","2","t","e"]`, `{}`, `[1,2,3,4,5`, `["1","2",null,"e",{}]`, `["1","2","t",5,{}]`, ``} {
		if _, err := decodeV2([]byte(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// Binary push, reply and broadcast encodings, checked against the byte
// vectors of Phoenix's serializer tests.
func TestBinaryEncode(t *testing.T) {
	f, _ := encodeBinaryReply("12", "123", "topic", "ok", []byte("efg"))
	if got, want := hex.EncodeToString(f.data), "0102030502"+hex.EncodeToString([]byte("12123topicokefg")); got != want {
		t.Errorf("reply %s want %s", got, want)
	}
	f, _ = encodeBinaryBroadcast("topic", "event", []byte("efg"))
	if got, want := hex.EncodeToString(f.data), "020505"+hex.EncodeToString([]byte("topiceventefg")); got != want {
		t.Errorf("broadcast %s want %s", got, want)
	}
	f, _ = encodeBinaryPush("123", "top", "some-event", []byte{1, 1})
	if got, want := hex.EncodeToString(f.data), "0003030a"+hex.EncodeToString([]byte("123topsome-event"))+"0101"; got != want {
		t.Errorf("push %s want %s", got, want)
	}
}

// Fields over 255 bytes are refused.
func TestBinaryFieldTooLong(t *testing.T) {
	long := strings.Repeat("x", 256)
	if _, err := encodeBinaryPush(long, "t", "e", nil); !errors.Is(err, errFieldTooLong) {
		t.Error("push")
	}
	if _, err := encodeBinaryReply("1", "2", "t", long, nil); !errors.Is(err, errFieldTooLong) {
		t.Error("reply")
	}
	if _, err := encodeBinaryBroadcast(long, "e", nil); !errors.Is(err, errFieldTooLong) {
		t.Error("broadcast")
	}
	if _, err := encodeBinaryBroadcast(strings.Repeat("x", 255), "e", nil); err != nil {
		t.Error("255 bytes must pass")
	}
}

// Binary decode of a client push.
func TestBinaryDecode(t *testing.T) {
	b := append([]byte{0, 2, 3, 5, 5}, "12123topicevent"...)
	b = append(b, "efg"...)
	m, err := decodeBinary(b)
	if err != nil || string(m.joinRef) != `"12"` || string(m.ref) != `"123"` || m.topic != "topic" || m.event != "event" || string(m.payload.Binary) != "efg" || !m.payload.IsBinary {
		t.Fatalf("%+v %v", m, err)
	}
	// Empty join_ref counts as absent (Phoenix keeps "" and then drops the
	// push as stale; phoenix.js never sends one); an empty payload is
	// an empty, non-nil slice.
	m, err = decodeBinary(append([]byte{0, 0, 1, 1, 1}, "1te"...))
	if err != nil || m.joinRef != nil || m.payload.Binary == nil || len(m.payload.Binary) != 0 {
		t.Fatalf("%+v %v", m, err)
	}
}

// Lengths are UTF-8 byte lengths.
func TestBinaryUTF8Lengths(t *testing.T) {
	f, _ := encodeBinaryBroadcast("tøpic", "évent", nil)
	if f.data[1] != byte(len("tøpic")) || f.data[2] != byte(len("évent")) || utf8.RuneCountInString("tøpic") == len("tøpic") {
		t.Fatalf("%x", f.data)
	}
}

// Routing by exact topics and prefix patterns.
func TestRoutes(t *testing.T) {
	cases := []struct {
		pattern, topic string
		ok             bool
	}{
		{"room:*", "room:lobby", true},
		{"room:*", "room:", true},
		{"room:*", "room", false},
		{"room:lobby", "room:lobby", true},
		{"room:lobby", "room:lobby2", false},
		{"*", "anything", true},
	}
	for _, c := range cases {
		if got := (Route{Pattern: c.pattern}).match(c.topic); got != c.ok {
			t.Errorf("%q %q: %v", c.pattern, c.topic, got)
		}
	}
	if _, err := New(Config{Channels: []Route{{Pattern: "a*b", Channel: &testChannel{}}}}); err == nil {
		t.Error("inner * accepted")
	}
}

// vsn negotiation: absent means 1.0.0; 1.0.x is V1 and 2.0.x V2, anything
// else is refused.
func TestNegotiate(t *testing.T) {
	cases := map[string]serializer{
		"": serV1, "1.0.0": serV1, "1.0.7": serV1, "2.0.0": serV2, "2.0.9": serV2, "2.0.1-rc.1": serV2,
		"2.1.0": 0, "3.0.0": 0, "2.0": 0, "x": 0, "02.0.0": 0, "2.0.0-rc.1": 0, "1.1.0": 0, "0.0.1": 0,
	}
	for vsn, want := range cases {
		p := map[string][]string{}
		if vsn != "" {
			p["vsn"] = []string{vsn}
		}
		got, ok := negotiate(p)
		if ok != (want != 0) || got != want {
			t.Errorf("%q: %v %v, want %v", vsn, got, ok, want)
		}
	}
}

func TestRefText(t *testing.T) {
	if ref(`"a\"b"`).text() != `a"b` || ref(`12`).text() != "12" || ref(nil).text() != "" {
		t.Fatal("text")
	}
	if !bytes.Equal(stringRef("").json(), []byte("null")) {
		t.Fatal("null")
	}
}
