package wire_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/wire"
)

func sampleDelta() *crdt.Delta {
	a, b := crdt.Replica{Name: "a", Vsn: 1}, crdt.Replica{Name: "b", Vsn: 7}
	s := crdt.New(a)
	s.ReplicaUp(b)
	for i := range 5 {
		s.Join(fmt.Sprintf("o%d", i), "room:1", fmt.Sprintf("u%d", i%3), []byte(`{"status":"online"}`))
	}
	s.LeaveJoin("o1", "room:1", "u1", []byte(`{"status":"away"}`))
	s.Leave("o2", "room:1", "u2")
	return s.TakeDelta()
}

func messages() []wire.Message {
	a, b := crdt.Replica{Name: "a", Vsn: 1}, crdt.Replica{Name: "b", Vsn: 7}
	s := crdt.New(a)
	s.ReplicaUp(b)
	s.Join("o1", "t", "k", []byte(`{}`))
	return []wire.Message{
		&wire.Heartbeat{From: a, Clocks: crdt.Clock{a: 3, b: 0}},
		&wire.Heartbeat{From: a, Clocks: crdt.Clock{a: 7}, Delta: sampleDelta()},
		&wire.TransferReq{ID: 42, From: b, Clocks: crdt.Clock{a: 1, b: 9}},
		&wire.TransferAck{ID: 42, From: a, Delta: sampleDelta()},
		&wire.TransferAck{ID: 43, From: a, Extract: s.Extract(crdt.Clock{a: 0, b: 0})},
		&wire.GracefulPermdown{From: b},
		&wire.Stopping{From: b, Grace: 5 * time.Second},
		&wire.Stopping{From: a},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range messages() {
		b, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.Decode(b)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(m)) {
			t.Fatalf("%T: round trip differs:\n got  %#v\n want %#v", m, got, m)
		}
		b2, _ := wire.Encode(got)
		if string(b2) != string(b) {
			t.Fatalf("%T: encoding not deterministic", m)
		}
	}
}

// normalize makes empty and nil maps compare equal.
func normalize(m wire.Message) wire.Message {
	fix := func(d *crdt.Delta) {
		if d == nil {
			return
		}
		if len(d.Clouds) == 0 {
			d.Clouds = crdt.Clouds{}
		}
		if len(d.Values) == 0 {
			d.Values = map[crdt.Dot]*crdt.Element{}
		}
	}
	switch m := m.(type) {
	case *wire.Heartbeat:
		fix(m.Delta)
	case *wire.TransferAck:
		fix(m.Delta)
		if m.Extract != nil && len(m.Extract.Clouds) == 0 {
			m.Extract.Clouds = crdt.Clouds{}
		}
	}
	return m
}

func TestDecodeErrors(t *testing.T) {
	good, _ := wire.Encode(messages()[1])
	cases := map[string][]byte{
		"empty":     nil,
		"version":   {9, 1},
		"kind":      {1, 99, 0},
		"truncated": good[:len(good)-3],
		"trailing":  append(append([]byte{}, good...), 0),
		"count":     {1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, b := range cases {
		if _, err := wire.Decode(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		} else if !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, wire.ErrVersion) {
			t.Errorf("%s: error %v is not ErrMalformed/ErrVersion", name, err)
		}
	}
}

// A kind added after this build (sent by a newer node) is told apart from
// garbage, so that the receiver drops it quietly.
func TestDecodeUnknownKind(t *testing.T) {
	b, _ := wire.Encode(&wire.GracefulPermdown{From: crdt.Replica{Name: "a", Vsn: 1}})
	b[1] = 42 // a kind this build does not know, with a well-formed header
	if _, err := wire.Decode(b); !errors.Is(err, wire.ErrUnknownKind) || !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("unknown kind: %v", err)
	}
	b[2] = 0xff // a broken replica table is malformed, whatever the kind
	if _, err := wire.Decode(b); err == nil || errors.Is(err, wire.ErrUnknownKind) {
		t.Fatalf("unknown kind with a bad header: %v", err)
	}
}

// The grace of a stopping message travels in whole milliseconds, rounded
// up (a grace never shrinks to "at once"), and is bounded both ways.
func TestStoppingGrace(t *testing.T) {
	a := crdt.Replica{Name: "a", Vsn: 1}
	for _, c := range []struct{ in, out time.Duration }{
		{0, 0}, {time.Microsecond, time.Millisecond}, {1500 * time.Microsecond, 2 * time.Millisecond},
		{5 * time.Second, 5 * time.Second}, {wire.MaxGrace, wire.MaxGrace},
	} {
		b, err := wire.Encode(&wire.Stopping{From: a, Grace: c.in})
		if err != nil {
			t.Fatalf("%v: %v", c.in, err)
		}
		m, err := wire.Decode(b)
		if err != nil {
			t.Fatalf("%v: %v", c.in, err)
		}
		if g := m.(*wire.Stopping).Grace; g != c.out {
			t.Errorf("grace %v arrives as %v, want %v", c.in, g, c.out)
		}
	}
	for _, g := range []time.Duration{-time.Second, wire.MaxGrace + time.Millisecond} {
		if _, err := wire.Encode(&wire.Stopping{From: a, Grace: g}); err == nil {
			t.Errorf("grace %v encoded", g)
		}
	}
	b, _ := wire.Encode(&wire.Stopping{From: a, Grace: wire.MaxGrace})
	b[len(b)-1]++ // one more than MaxGrace in the last varint byte
	if _, err := wire.Decode(b); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("grace beyond MaxGrace: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range messages() {
		b, _ := wire.Encode(m)
		f.Add(b)
	}
	f.Add([]byte{1, 1, 1, 1, 'a', 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := wire.Decode(b)
		if err != nil {
			return
		}
		// What decodes must encode and decode to the same message.
		b2, err := wire.Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := wire.Decode(b2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
