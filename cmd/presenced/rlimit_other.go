//go:build !unix

package main

// openFileLimit is unknown here (0): --max-connections defaults to its
// floor.
func openFileLimit() int { return 0 }
