//go:build !unix

package phx

import "net"

// rawWriter is not available here: every write goes through the
// connection's writer goroutine.
func rawWriter(net.Conn) func([]byte) (int, error) { return nil }
