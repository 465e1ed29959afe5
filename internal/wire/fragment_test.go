package wire_test

import (
	"bytes"
	"testing"

	"github.com/gopresence/presence/internal/wire"
)

func TestFragmentRoundTrip(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789"), 10000)
	parts := wire.Fragment(msg, 1000, 7)
	if len(parts) < 100 {
		t.Fatalf("%d parts", len(parts))
	}
	var a wire.Assembler
	for i, p := range parts {
		if len(p) > 1000 || !wire.IsFragment(p) {
			t.Fatalf("part %d: %d bytes", i, len(p))
		}
		got, err := a.Add(p)
		if err != nil {
			t.Fatal(err)
		}
		if (got != nil) != (i == len(parts)-1) {
			t.Fatalf("part %d: complete=%v", i, got != nil)
		}
		if got != nil && !bytes.Equal(got, msg) {
			t.Fatal("reassembled message differs")
		}
	}
	if small := wire.Fragment([]byte{1, 2, 3}, 1000, 8); len(small) != 1 || wire.IsFragment(small[0]) {
		t.Fatal("a small message was fragmented")
	}
}

func TestFragmentLossDropsMessage(t *testing.T) {
	msg := bytes.Repeat([]byte("x"), 5000)
	p1 := wire.Fragment(msg, 1000, 1)
	p2 := wire.Fragment(msg, 1000, 2)
	var a wire.Assembler
	a.Add(p1[0])
	a.Add(p1[1])
	// p1[2] lost; the next message starts over
	for i, p := range p2 {
		got, err := a.Add(p)
		if err != nil {
			t.Fatal(err)
		}
		if i == len(p2)-1 && !bytes.Equal(got, msg) {
			t.Fatal("second message not reassembled")
		}
	}
	if _, err := a.Add(p1[3]); err == nil {
		t.Fatal("stray fragment accepted")
	}
}

func FuzzAssembler(f *testing.F) {
	for _, p := range wire.Fragment(bytes.Repeat([]byte("ab"), 300), 100, 3) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := wire.Assembler{MaxSize: 1 << 20}
		a.Add(b)
		a.Add(b)
	})
}
