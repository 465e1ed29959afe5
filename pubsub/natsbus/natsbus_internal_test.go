package natsbus

import (
	"bytes"
	"strings"
	"testing"
)

func TestEscapeToken(t *testing.T) {
	cases := map[string]string{
		"":               "~",
		"room:lobby":     "room:lobby",
		"phx_presence:3": "phx_presence:3",
		"a.b":            "a~2Eb",
		"a b*>":          "a~20b~2A~3E",
		"~":              "~7E",
		"ü":              "~C3~BC",
	}
	for in, want := range cases {
		got := escapeToken(in)
		if got != want {
			t.Errorf("escapeToken(%q) = %q, want %q", in, got, want)
		}
		back, err := unescapeToken(got)
		if err != nil || back != in {
			t.Errorf("unescapeToken(%q) = %q, %v; want %q", got, back, err, in)
		}
	}
	for _, bad := range []string{"", "~4", "~4g", "~zz", "a~"} {
		if _, err := unescapeToken(bad); err == nil {
			t.Errorf("unescapeToken(%q): no error", bad)
		}
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "~", "a.b", "room:lobby", "~41", "x~2", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := escapeToken(s)
		if tok == "" || strings.ContainsAny(tok, ". \t\r\n*>") {
			t.Fatalf("escapeToken(%q) = %q is not a valid subject token", s, tok)
		}
		back, err := unescapeToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip of %q: %q, %v", s, back, err)
		}
		// Decoding arbitrary input must not panic.
		_, _ = unescapeToken(s)
	})
}

func TestEnvelope(t *testing.T) {
	for _, tc := range []struct {
		from string
		data []byte
	}{{"n1", []byte("hello")}, {"", nil}, {strings.Repeat("x", 300), []byte{0}}} {
		env := appendEnvelope(nil, tc.from, tc.data)
		if len(env) != envelopeSize(tc.from, tc.data) {
			t.Errorf("envelopeSize = %d, encoded %d", envelopeSize(tc.from, tc.data), len(env))
		}
		from, data, err := decodeEnvelope(env)
		if err != nil || from != tc.from || !bytes.Equal(data, tc.data) {
			t.Errorf("decode(encode(%q, %q)) = %q, %q, %v", tc.from, tc.data, from, data, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0}, {1, 5, 'a'}, {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}} {
		if _, _, err := decodeEnvelope(bad); err == nil {
			t.Errorf("decodeEnvelope(%x): no error", bad)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, "n1", []byte("hello")))
	f.Add(appendEnvelope(nil, "", nil))
	f.Add([]byte{1, 0x80})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{2, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		from, data, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if re := appendEnvelope(nil, from, data); !bytes.Equal(re, b) && canonical(b) {
			t.Fatalf("re-encoding %x gave %x", b, re)
		}
	})
}

// canonical reports whether the uvarint of b is minimally encoded (only
// such inputs re-encode to themselves).
func canonical(b []byte) bool {
	for i := 1; i < len(b); i++ {
		if b[i] < 0x80 {
			return !(i > 1 && b[i] == 0)
		}
	}
	return false
}
