package phxframe

import (
	"bytes"
	"errors"
	"testing"
)

func TestBinaryRoundTrip(t *testing.T) {
	b := AppendBinary(nil, KindReply, []byte{0, 1, 2}, "1", "22", "room:a", "ok")
	want := []byte{1, 1, 2, 6, 2, '1', '2', '2', 'r', 'o', 'o', 'm', ':', 'a', 'o', 'k', 0, 1, 2}
	if !bytes.Equal(b, want) {
		t.Fatalf("AppendBinary: %v, want %v", b, want)
	}
	fs, p, err := SplitBinary(b, 4)
	if err != nil || string(fs[0]) != "1" || string(fs[1]) != "22" || string(fs[2]) != "room:a" || string(fs[3]) != "ok" || !bytes.Equal(p, []byte{0, 1, 2}) {
		t.Fatalf("SplitBinary: %q %v %v", fs, p, err)
	}
	if _, _, err := SplitBinary([]byte{0, 1}, 4); !errors.Is(err, ErrShortHeader) {
		t.Fatalf("short header: %v", err)
	}
	if _, _, err := SplitBinary([]byte{0, 0, 0, 9, 0, 'x'}, 4); !errors.Is(err, ErrOverrun) {
		t.Fatalf("overrun: %v", err)
	}
}

// FuzzSplitBinary: any bytes split without panicking, within the frame;
// what AppendBinary writes splits back into its fields and payload.
func FuzzSplitBinary(f *testing.F) {
	f.Add([]byte{0, 1, 1, 1, 1, 'a', 'b', 'c', 'd', '{', '}'}, 4, "x", "room:a")
	f.Add([]byte{2, 3}, 2, "", "")
	f.Fuzz(func(t *testing.T, b []byte, n int, f1, f2 string) {
		n = n % 5
		if n < 0 {
			n = -n
		}
		if fs, p, err := SplitBinary(b, n); err == nil {
			total := 1 + n + len(p)
			for _, x := range fs[:n] {
				total += len(x)
			}
			if total != len(b) {
				t.Fatalf("split %d bytes into %d", len(b), total)
			}
		}
		if len(f1) > MaxField || len(f2) > MaxField {
			return
		}
		frame := AppendBinary(nil, KindBroadcast, b, f1, f2)
		fs, p, err := SplitBinary(frame, 2)
		if err != nil || string(fs[0]) != f1 || string(fs[1]) != f2 || !bytes.Equal(p, b) {
			t.Fatalf("round trip: %q %q %v", fs[:2], p, err)
		}
	})
}
