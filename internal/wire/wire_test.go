package wire_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

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
	return s.Delta()
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
