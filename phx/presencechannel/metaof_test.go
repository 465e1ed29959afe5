package presencechannel

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gopresence/presence/phx"
)

// metaOfSlow is metaOf by encoding/json alone: what the scan must agree
// with.
func metaOfSlow(p phx.Payload) (json.RawMessage, bool) {
	var in struct {
		Meta json.RawMessage `json:"meta"`
	}
	if b := bytes.TrimSpace(p.JSON); len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &in) != nil {
		return nil, false
	}
	m := bytes.TrimSpace(in.Meta)
	if len(m) == 0 || m[0] != '{' {
		return nil, false
	}
	return m, true
}

var metaSeeds = []string{
	`{}`,
	`{"meta":{}}`,
	`{"meta":{"status":"online"}}`,
	` { "meta" : { "a" : [1, {"b": "}"}] } } `,
	`{"x":"meta","meta":{"a":1},"y":[{"meta":2}]}`,
	`{"meta":{"a":1},"meta":{"b":2}}`,
	`{"meta":{"a":1},"meta":null}`,
	`{"META":{"a":1}}`,
	`{"Meta":{"a":1},"meta":[1]}`,
	`{"m\u0065ta":{"a":1}}`,
	`{"méta":{"a":1}}`,
	`{"meta":"{}"}`,
	`{"meta":[{}]}`,
	`{"a":true,"b":false,"c":null,"d":-1.5e3,"meta":{"s":"\"\\"}}`,
	`{"a":"\\","meta":{}}`,
	`[]`,
	`"meta"`,
}

// The scan of metaOf finds what encoding/json finds, for every valid JSON
// payload (phx hands the channel valid JSON only).
func TestMetaOfAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range metaSeeds {
		checkMetaOf(t, []byte(s))
	}
}

func FuzzMetaOf(f *testing.F) {
	for _, s := range metaSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		checkMetaOf(t, b)
	})
}

func checkMetaOf(t *testing.T, b []byte) {
	t.Helper()
	p := phx.Payload{JSON: b}
	got, gok := metaOf(p)
	want, wok := metaOfSlow(p)
	if gok != wok || !bytes.Equal(got, want) {
		t.Fatalf("metaOf(%s) = %s %v, encoding/json: %s %v", b, got, gok, want, wok)
	}
}
