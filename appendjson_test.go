package presence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/gopresence/presence"
)

// Diff and State encode themselves (phx.JSONAppender) to the bytes
// encoding/json gives for the same maps (keys sorted and escaped as it
// does; an entry's metas first, then its Extra fields sorted; nil states as
// {}), but for one thing: the metas are written as stored, where
// encoding/json would escape <, > and & inside them (HTML-safe output,
// which a WebSocket frame does not need; Phoenix does not do it either).
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	m := func(s string) json.RawMessage { return json.RawMessage(s) }
	states := []presence.State{
		nil,
		{},
		{"alice": {Metas: []json.RawMessage{m(`{"phx_ref":"a"}`)}}},
		{
			"zed":           {Metas: []json.RawMessage{m(`{"phx_ref":"z1"}`), m(`{"phx_ref":"z2","s":"<b>"}`)}},
			"bob":           {Metas: []json.RawMessage{m(`{"phx_ref":"b"}`)}, Extra: map[string]json.RawMessage{"user": m(`{"name":"Bob"}`), "a\"<&>": m(`1`)}},
			"ünï \"q\" <&>": {Metas: []json.RawMessage{m(`{"phx_ref":"u"}`)}},
			"tab\there":     {Metas: nil},
		},
	}
	for _, s := range states {
		want, err := json.Marshal(mapOf(s))
		if err != nil {
			t.Fatal(err)
		}
		if got := htmlSafe(s.AppendJSON(nil)); string(got) != string(want) {
			t.Errorf("State.AppendJSON:\n got %s\nwant %s", got, want)
		}
		for _, l := range states {
			d := presence.Diff{Joins: s, Leaves: l}
			want, _ := json.Marshal(map[string]any{"joins": mapOf(s), "leaves": mapOf(l)})
			if got := htmlSafe(d.AppendJSON([]byte("x"))); string(got) != "x"+string(want) {
				t.Errorf("Diff.AppendJSON:\n got %s\nwant x%s", got, want)
			}
			if got, _ := json.Marshal(d); string(got) != string(want) {
				t.Errorf("json.Marshal(Diff):\n got %s\nwant %s", got, want)
			}
		}
	}
}

// mapOf is s as maps for encoding/json, each entry pre-encoded with its
// metas first and its Extra fields in key order.
func mapOf(s presence.State) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, e := range s {
		metas := e.Metas
		if metas == nil {
			metas = []json.RawMessage{}
		}
		b, _ := json.Marshal(metas)
		v := append([]byte(`{"metas":`), b...)
		extra := map[string]json.RawMessage{}
		for ek, ev := range e.Extra {
			if ek != "metas" {
				extra[ek] = ev
			}
		}
		if len(extra) > 0 {
			x, _ := json.Marshal(extra)
			v = append(append(v, ','), x[1:len(x)-1]...)
		}
		out[k] = append(v, '}')
	}
	return out
}

// htmlSafe escapes <, > and & inside b's strings as encoding/json does.
func htmlSafe(b []byte) []byte {
	var out bytes.Buffer
	json.HTMLEscape(&out, b)
	return out.Bytes()
}

// An empty topic lists as {} (the /api/v1/topics answer, a presence_state).
func TestEmptyListIsObject(t *testing.T) {
	p := start(t, presence.Config{})
	if b, err := json.Marshal(p.List("room:nobody")); err != nil || string(b) != "{}" {
		t.Fatalf("%s %v", b, err)
	}
	if b, err := json.Marshal(presence.State(nil)); err != nil || string(b) != "{}" {
		t.Fatalf("nil State: %s %v", b, err)
	}
}

// What a Fetch hook returns is written into frames without re-encoding, so
// it is checked: a nil entry and an Extra field that is not JSON are
// dropped; the rest stays; the result is valid JSON.
func TestFetchOutputChecked(t *testing.T) {
	p := start(t, presence.Config{Fetch: func(topic string, s presence.State) presence.State {
		for k, e := range s {
			switch k {
			case "ghost":
				s[k] = nil
			default:
				e.Extra = map[string]json.RawMessage{"user": nil, "bad": json.RawMessage(`{"a":`), "ok": json.RawMessage(`{"name":"A"}`)}
			}
		}
		return s
	}})
	ctx := context.Background()
	if _, err := p.Track(ctx, "o1", "room:f", "alice", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Track(ctx, "o2", "room:f", "ghost", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	s := p.List("room:f")
	b := s.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	if _, ok := s["ghost"]; ok || len(s["alice"].Extra) != 1 || string(s["alice"].Extra["ok"]) != `{"name":"A"}` {
		t.Fatalf("%s", b)
	}
}
