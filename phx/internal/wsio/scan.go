package wsio

// frameScan follows the frame boundaries of what a client sends, reading
// only the headers, to see what gorilla does not report: a close frame
// whose payload is a single byte (gorilla treats it as a close without a
// status, RFC 6455 makes it a protocol error).
type frameScan struct {
	skip      uint64   // bytes left of the current frame's mask key and payload
	hdr       [10]byte // its first bytes: opcode, length, extended length
	n         uint8    // of hdr seen
	closeSeen bool
	badClose  bool // the first close frame had a one-byte payload
}

func (f *frameScan) scan(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(uint64(len(b)), f.skip)
			f.skip -= k
			b = b[k:]
			continue
		}
		f.hdr[f.n] = b[0]
		f.n++
		b = b[1:]
		if f.n < 2 {
			continue
		}
		l7 := f.hdr[1] & 0x7f
		plen := uint64(l7)
		switch {
		case l7 == 126 && f.n < 4, l7 == 127 && f.n < 10:
			continue
		case l7 == 126:
			plen = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
		case l7 == 127:
			plen = 0
			for _, x := range f.hdr[2:10] {
				plen = plen<<8 | uint64(x)
			}
		}
		if f.hdr[0]&0x0f == OpClose && !f.closeSeen {
			f.closeSeen, f.badClose = true, plen == 1
		}
		if f.hdr[1]&0x80 != 0 {
			plen += 4 // the mask key
		}
		f.n, f.skip = 0, plen
	}
}
