package goid

import "testing"

func TestGetDistinguishesGoroutines(t *testing.T) {
	id := Get()
	if id <= 0 || Get() != id {
		t.Fatalf("Get() = %d, not stable", id)
	}
	other := make(chan int64)
	go func() { other <- Get() }()
	if o := <-other; o <= 0 || o == id {
		t.Fatalf("another goroutine got %d (ours %d)", o, id)
	}
}
