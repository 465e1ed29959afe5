//go:build unix

package wsio

import (
	"net"
	"syscall"
)

// rawWriter writes to a connection without blocking: one write(2) on its
// non-blocking socket, taking what the kernel takes (0 when the send
// buffer is full).
//
// It lets the goroutine that queued a frame (a broadcast, the reader after
// handling a frame) write it when no writer runs, instead of starting a
// goroutine for every frame; what the socket does not take is left to a
// writer goroutine. The write holds the descriptor's write lock, so it
// never interleaves with another write of the same connection. Its calls
// are serialised by the connection (Conn.active), which lets it keep
// its state, and the callback, in one allocation per connection.
type rawWriter struct {
	rc  syscall.RawConn
	cb  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

// newRawWriter returns nil when nc is not a plain socket (TLS, a
// wrapper): the connection then always uses its writer goroutine.
//
// Only the standard library's sockets qualify: a net.Conn of another type
// (a listener's wrapper counting or shaping traffic) may do something in
// its Write that a raw write would skip.
func newRawWriter(nc net.Conn) *rawWriter {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.cb = w.syscall
	return w
}

func (w *rawWriter) syscall(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.b)
		if w.err != syscall.EINTR {
			return true
		}
	}
}

func (w *rawWriter) write(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.rc.Write(w.cb)
	n, werr := max(w.n, 0), w.err
	w.b, w.err = nil, nil
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if err != nil {
		return n, err
	}
	return n, werr
}
