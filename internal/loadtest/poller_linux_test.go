//go:build linux

package loadtest

import (
	"bytes"
	"testing"
)

// The poller's frame parser takes whatever the server sends, in pieces
// cut anywhere: it never panics, and frames split across reads are the
// frames read whole.
func FuzzPollerParse(f *testing.F) {
	frame := func(op byte, p string) []byte {
		b := []byte{0x80 | op}
		switch n := len(p); {
		case n < 126:
			b = append(b, byte(n))
		case n < 1<<16:
			b = append(b, 126, byte(n>>8), byte(n))
		default:
			b = append(b, 127, 0, 0, 0, 0, 0, byte(n>>16), byte(n>>8), byte(n))
		}
		return append(b, p...)
	}
	diff := `[null,null,"room:fanout","presence_diff",{"joins":{"changer":{"metas":[{"lt":"3/1700000000000000000"}]}},"leaves":{}}]`
	f.Add(append(frame(1, diff), frame(1, `[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`)...), uint8(7))
	f.Add(frame(1, diff+string(bytes.Repeat([]byte(" "), 300))), uint8(1))
	f.Add(frame(9, "ping"), uint8(3))
	f.Add(frame(8, "\x03\xe8bye"), uint8(0))
	f.Add([]byte{0x01, 0x03, 'a', 'b', 'c'}, uint8(2))
	f.Add([]byte{0x81, 0xff}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		split := func(step int) (frames, lost int64) {
			w := &worker{job: Job{Mode: ModeFanout}}
			p := &poller{w: w, ep: -1}
			c := &client{conn: &Conn{raw: -2}}
			pe := &pollee{c: c, fd: -1}
			for i := 0; i < len(data) && !pe.dead; i += step {
				p.parse(pe, data[i:min(i+step, len(data))], 1, 2)
			}
			return c.frames, w.lost.Load()
		}
		whole, wl := split(max(len(data), 1))
		parts, pl := split(int(cut%16) + 1)
		if whole != parts || wl != pl {
			t.Fatalf("whole: %d frames, %d lost; in pieces: %d frames, %d lost", whole, wl, parts, pl)
		}
	})
}
