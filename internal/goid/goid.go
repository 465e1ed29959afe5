// Package goid reads the calling goroutine's id. It exists for one narrow
// purpose, shared by pubsub's dispatch and the client: a Close or
// Unsubscribe called from inside a callback must not wait for the callback
// that is calling it (that would deadlock). Nothing else should use it.
package goid

import (
	"bytes"
	"runtime"
	"strconv"
)

// Get returns the calling goroutine's id, or -1 if it cannot be read.
func Get() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return -1
	}
	return id
}
