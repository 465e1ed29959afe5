package wsio

import (
	"net"
	"sync"
	"sync/atomic"
)

// WebSocket opcodes (RFC 6455 §5.2) of the frames the server writes.
const (
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPong   = 0xA
)

// MaxHeader is the length of the largest header of a server frame: an
// encoder that leaves this much room before a frame's data lets the header
// go there instead of copying the data (see AppendHeader).
const MaxHeader = 10

// AppendHeader appends the header of a final, unmasked frame of opcode op
// carrying n bytes. Server frames are not masked, so the same bytes can go
// to every subscriber of a broadcast.
func AppendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		return append(b, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// ClosePayload is the payload of a close frame: the code, big-endian, then
// the reason; empty for 1005 (no status), which must not be sent as a code.
func ClosePayload(code int, reason string) []byte {
	if code == 1005 {
		return nil
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

// Batch gathers the frames of one write: small ones copied together into
// one buffer, large ones (and pre-framed broadcasts) written from their own
// bytes, so that a big presence_state is never copied per connection.
type Batch struct {
	small []byte      // coalesced small frames
	start int         // start of small's segment not yet in bufs
	bufs  net.Buffers // the write, in order
	n     int64       // its bytes
	// count, if set, counts what is added, as it is added: the
	// connection's pending bytes, so that frames leaving the Peer's queue
	// go on counting against its bound without a gap.
	count *atomic.Int64
}

// BigFrame is the size above which AddFrame writes a frame's data from its
// own bytes rather than copying it.
const BigFrame = 4096

// Len is the number of bytes in the batch.
func (w *Batch) Len() int64 { return w.n }

func (w *Batch) reset() {
	clear(w.bufs)
	w.small, w.start, w.bufs, w.n, w.count = w.small[:0], 0, w.bufs[:0], 0, nil
}

// cut ends small's current segment (if any) in bufs.
func (w *Batch) cut() {
	if len(w.small) > w.start {
		w.bufs = append(w.bufs, w.small[w.start:len(w.small):len(w.small)])
		w.start = len(w.small)
	}
}

// Add appends bytes that are a whole WebSocket frame (or several, or the
// rest of one), written as they are, never copied. They must not change
// until the write is done.
func (w *Batch) Add(b []byte) {
	if len(b) == 0 {
		return
	}
	w.cut()
	w.bufs = append(w.bufs, b)
	w.grow(int64(len(b)))
}

func (w *Batch) grow(n int64) {
	w.n += n
	if w.count != nil {
		w.count.Add(n)
	}
}

// AddFrame appends a frame of opcode op carrying data of at most BigFrame
// bytes, copied with its header into the batch's own buffer.
func (w *Batch) AddFrame(op byte, data []byte) {
	before := len(w.small)
	if cap(w.small)-before < len(data)+MaxHeader {
		// Growing would move the bytes earlier segments point into:
		// start a new buffer instead (the old one stays referenced).
		w.cut()
		w.small = make([]byte, 0, max(2*cap(w.small), len(data)+MaxHeader, 512))
		w.start, before = 0, 0
	}
	w.small = AppendHeader(w.small, op, len(data))
	w.small = append(w.small, data...)
	w.grow(int64(len(w.small) - before))
}

// writeTo writes the batch to nc (writev on a plain socket).
func (w *Batch) writeTo(nc net.Conn) error {
	w.cut()
	bufs := w.bufs // WriteTo consumes its receiver
	_, err := bufs.WriteTo(nc)
	return err
}

// flat returns the batch as one slice for a single write(2): its only
// segment, or all of them copied into a scratch buffer (sp, to give back
// with putScratch).
func (w *Batch) flat() (b []byte, sp *[]byte) {
	w.cut()
	if len(w.bufs) == 1 {
		return w.bufs[0], nil
	}
	sp = scratch.Get().(*[]byte)
	b = (*sp)[:0]
	for _, s := range w.bufs {
		b = append(b, s...)
	}
	return b, sp
}

// batches are emptied batches: a connection writes a batch and goes idle,
// and keeping its own would hold memory on every idle connection.
var batches = sync.Pool{New: func() any { return new(Batch) }}

func getBatch() *Batch { return batches.Get().(*Batch) }

func putBatch(b *Batch) {
	b.reset()
	if cap(b.small) > maxScratch {
		b.small = nil
	}
	batches.Put(b)
}

// scratch holds transient byte buffers: those that coalesce a batch for
// one write, and those frames are read into. Buffers over maxScratch are
// not kept.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxScratch = 64 << 10

func putScratch(sp *[]byte, b []byte) {
	if sp != nil && cap(b) <= maxScratch {
		*sp = b[:0]
		scratch.Put(sp)
	}
}
