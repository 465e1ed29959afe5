package dispatch

import (
	"errors"
	"github.com/gopresence/presence/internal/goid"
	"sync"
	"testing"
	"time"

	"github.com/gopresence/presence/pubsub"
)

func TestOnTopic(t *testing.T) {
	var mu sync.Mutex
	var events []string
	r := New(Config{OnTopic: func(topic string, first bool) error {
		mu.Lock()
		defer mu.Unlock()
		if first && topic == "bad" {
			return errors.New("refused")
		}
		e := "-" + topic
		if first {
			e = "+" + topic
		}
		events = append(events, e)
		return nil
	}})
	h := func(pubsub.Message) {}
	a, _ := r.Subscribe("t", h)
	b, _ := r.Subscribe("t", h)
	if _, err := r.Subscribe("bad", h); err == nil {
		t.Fatal("OnTopic error not returned")
	}
	if r.HasSubscribers("bad") {
		t.Fatal("refused topic registered")
	}
	a.Unsubscribe()
	a.Unsubscribe()
	b.Unsubscribe()
	r.Subscribe("u", h)
	r.Close()
	want := []string{"+t", "-t", "+u", "-u"}
	if len(events) != len(want) {
		t.Fatalf("events %q, want %q", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Fatalf("events %q, want %q", events, want)
		}
	}
	if _, err := r.Subscribe("t", h); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestQueueReuse(t *testing.T) {
	// Many bursts through one subscription keep FIFO order across the
	// queue's compaction and release paths.
	r := New(Config{MaxPending: 3000})
	defer r.Close()
	got := make(chan int, 10000)
	r.Subscribe("t", func(m pubsub.Message) { got <- int(m.Data[0])<<8 | int(m.Data[1]) })
	next := 0
	for burst := range 20 {
		n := 1 + burst*100
		for i := range n {
			v := next + i
			r.Dispatch(pubsub.Message{Topic: "t", Data: []byte{byte(v >> 8), byte(v)}}, nil)
		}
		for i := range n {
			select {
			case v := <-got:
				if want := (next + i) & 0xffff; v != want {
					t.Fatalf("burst %d: got %d, want %d", burst, v, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("timeout")
			}
		}
		next += n
	}
	if r.Dropped() != 0 {
		t.Fatalf("Dropped = %d", r.Dropped())
	}
}

func TestGoroutineID(t *testing.T) {
	id := goid.Get()
	if id <= 0 {
		t.Fatalf("goid.Get() = %d", id)
	}
	other := make(chan int64)
	go func() { other <- goid.Get() }()
	if o := <-other; o == id || o <= 0 {
		t.Fatalf("ids %d and %d", id, o)
	}
}
