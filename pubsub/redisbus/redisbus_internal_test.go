package redisbus

import (
	"bytes"
	"strings"
	"testing"
)

func TestEnvelope(t *testing.T) {
	for _, tc := range []envelope{
		{modeBroadcast, "n1", "room:lobby", []byte("hi")},
		{modeDirect, "", "", nil},
		{modeDirect, strings.Repeat("n", 200), strings.Repeat("t", 300), []byte{0, 1}},
	} {
		b := appendEnvelope(nil, tc.mode, tc.from, tc.topic, tc.data)
		if len(b) != envelopeSize(tc.from, tc.topic, tc.data) {
			t.Errorf("envelopeSize = %d, encoded %d", envelopeSize(tc.from, tc.topic, tc.data), len(b))
		}
		e, err := decodeEnvelope(b)
		if err != nil || e.mode != tc.mode || e.from != tc.from || e.topic != tc.topic || !bytes.Equal(e.data, tc.data) {
			t.Errorf("round trip of %+v: %+v, %v", tc, e, err)
		}
	}
	for _, bad := range []string{"", "\x01b\x00", "\x02b\x00\x00", "\x01x\x00\x00", "\x01b\x05ab\x00", "\x01b\x00\x05ab"} {
		if _, err := decodeEnvelope([]byte(bad)); err == nil {
			t.Errorf("decodeEnvelope(%q): no error", bad)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, modeBroadcast, "n1", "room:lobby", []byte("hi")))
	f.Add(appendEnvelope(nil, modeDirect, "", "", nil))
	f.Add([]byte("\x01b\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Add([]byte("\x01d\x00\x80"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		re := appendEnvelope(nil, e.mode, e.from, e.topic, e.data)
		e2, err := decodeEnvelope(re)
		if err != nil || e2.mode != e.mode || e2.from != e.from || e2.topic != e.topic || !bytes.Equal(e2.data, e.data) {
			t.Fatalf("re-encoding %x: %+v, %v", b, e2, err)
		}
	})
}
