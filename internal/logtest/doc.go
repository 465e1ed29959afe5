// Package logtest captures what a node or a process logs, for the tests
// that read it: a Buffer is an io.Writer safe for concurrent writers (the
// node's goroutines, a child process's output copier) and the test that
// reads it, and makes a slog.Logger that writes into it.
package logtest
