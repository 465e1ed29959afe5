package testenv

import (
	"os"
	"testing"
)

func TestNeedSkipsAndCounts(t *testing.T) {
	if RequireAll() {
		t.Skip("under PRESENCE_REQUIRE_ALL=1 Need fails instead")
	}
	ok := t.Run("missing", func(t *testing.T) { Need(t, false, "frobnicator missing") })
	if !ok {
		t.Fatal("Need failed a test instead of skipping it")
	}
	mu.Lock()
	n := skipped["frobnicator missing"]
	delete(skipped, "frobnicator missing")
	mu.Unlock()
	if n != 1 {
		t.Fatalf("skips counted: %d", n)
	}
}

func TestNeedFailsUnderRequireAll(t *testing.T) {
	t.Setenv("PRESENCE_REQUIRE_ALL", "1")
	ft := &fakeT{TB: t}
	func() {
		defer func() { recover() }()
		Need(ft, false, "frobnicator missing")
	}()
	if !ft.failed {
		t.Fatal("Need did not fail under PRESENCE_REQUIRE_ALL=1")
	}
	_ = os.Getenv
}

// fakeT records Fatalf instead of stopping the real test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
