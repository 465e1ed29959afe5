package presence

import (
	"testing"
	"time"
)

// SetWindowPerKey sets how much a topic's diff window grows per key, for
// tests that must not depend on how fast the machine is.
func SetWindowPerKey(t testing.TB, d time.Duration) {
	old := windowPerKey
	windowPerKey = d
	t.Cleanup(func() { windowPerKey = old })
}
