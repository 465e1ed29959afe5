//go:build unix

package phx

import (
	"net"
	"syscall"
)

// rawWriter returns a function that writes to nc without blocking: one
// write(2) on its non-blocking socket, returning how much the kernel took
// (0 when the send buffer is full). It returns nil when nc has no file
// descriptor (TLS), and the connection always uses its writer goroutine.
//
// It lets the goroutine that queued a frame (a broadcast, the reader after
// handling a frame) write it when no writer runs, instead of starting a
// goroutine for every frame; what the socket does not take is left to a
// writer goroutine. The write holds the descriptor's write lock, so it
// never interleaves with another write of the same connection.
func rawWriter(nc net.Conn) func([]byte) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(b []byte) (int, error) {
		var n int
		var werr error
		err := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = syscall.Write(int(fd), b)
				if werr != syscall.EINTR {
					return true
				}
			}
		})
		if n < 0 {
			n = 0
		}
		if werr == syscall.EAGAIN {
			werr = nil
		}
		if err != nil {
			return n, err
		}
		return n, werr
	}
}
