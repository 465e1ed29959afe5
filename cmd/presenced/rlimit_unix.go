//go:build unix

package main

import "syscall"

// openFileLimit is the soft RLIMIT_NOFILE (which the Go runtime raises to
// the hard limit at startup), or 0 when it cannot be read.
func openFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	if uint64(r.Cur) > 1<<24 { // RLIM_INFINITY, or as good as
		return 1 << 24
	}
	return int(r.Cur)
}
