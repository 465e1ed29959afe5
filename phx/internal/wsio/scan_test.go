package wsio

import "testing"

func TestFrameScan(t *testing.T) {
	var f frameScan
	// a masked text frame of 300 bytes (16-bit length), then a close of 1 byte, fed a byte at a time
	in := append([]byte{0x81, 0x80 | 126, 1, 44, 1, 2, 3, 4}, make([]byte, 300)...)
	in = append(in, 0x88, 0x81, 9, 9, 9, 9, 3)
	for i := range in {
		f.scan(in[i : i+1])
	}
	if !f.closeSeen || !f.badClose {
		t.Fatalf("scan: %+v", f)
	}
}
