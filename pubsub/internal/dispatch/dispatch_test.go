package dispatch

import (
	"errors"
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

// loop is a delivery goroutine as the adapters run it.
func loop(q *Queue, r *Registry, stop <-chan struct{}) (done <-chan struct{}) {
	d := make(chan struct{})
	go func() {
		defer close(d)
		for {
			select {
			case <-stop:
				return
			case <-q.Ready():
				q.Deliver(r)
			}
		}
	}()
	return d
}

func msg(topic string, v int) pubsub.Message {
	return pubsub.Message{Topic: topic, Data: []byte{byte(v >> 8), byte(v)}}
}

func val(m pubsub.Message) int { return int(m.Data[0])<<8 | int(m.Data[1]) }

func TestQueueReuse(t *testing.T) {
	// Many bursts through one queue keep FIFO order across the queue's
	// compaction and release paths.
	r := New(Config{})
	q := NewQueue(3000, nil)
	stop := make(chan struct{})
	done := loop(q, r, stop)
	defer func() { close(stop); <-done }()
	got := make(chan int, 10000)
	r.Subscribe("t", func(m pubsub.Message) { got <- val(m) })
	next := 0
	for burst := range 20 {
		n := 1 + burst*100
		for i := range n {
			q.Push(msg("t", next+i), nil)
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
	if q.Dropped() != 0 {
		t.Fatalf("Dropped = %d", q.Dropped())
	}
}

func TestOneGoroutineInOrder(t *testing.T) {
	// Every handler of a registry is called by the delivery goroutine, one
	// call at a time, in the order the messages were queued, whatever their
	// topic and subscription.
	r := New(Config{})
	q := NewQueue(-1, nil)
	stop := make(chan struct{})
	done := loop(q, r, stop)
	defer func() { close(stop); <-done }()
	var (
		mu     sync.Mutex
		active int
		order  []string
	)
	const n = 3000
	all := make(chan struct{})
	record := func(name string) pubsub.Handler {
		return func(m pubsub.Message) {
			mu.Lock()
			active++
			if active != 1 {
				t.Errorf("%d handlers running at once", active)
			}
			mu.Unlock()
			time.Sleep(time.Microsecond) // widen the window for an overlap
			mu.Lock()
			active--
			order = append(order, name+":"+string(rune('0'+val(m)%10)))
			if len(order) == n*3/2 {
				close(all)
			}
			mu.Unlock()
		}
	}
	r.Subscribe("a", record("a1"))
	r.Subscribe("b", record("b"))
	r.Subscribe("a", record("a2"))
	var want []string
	for i := range n {
		topic := "a"
		if i%2 == 1 {
			topic = "b"
		}
		q.Push(msg(topic, i), nil)
		d := string(rune('0' + i%10))
		if topic == "a" {
			want = append(want, "a1:"+d, "a2:"+d)
		} else {
			want = append(want, "b:"+d)
		}
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatal("timeout")
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("call %d: %s, want %s (calls %q...)", i, order[i], want[i], order[max(0, i-3):i+1])
		}
	}
}

func TestUnsubscribeDoesNotWait(t *testing.T) {
	// Unsubscribe while the handler runs returns at once, and the messages
	// queued behind that call never reach the handler.
	r := New(Config{})
	q := NewQueue(0, nil)
	stop := make(chan struct{})
	done := loop(q, r, stop)
	defer func() { close(stop); <-done }()
	entered, release := make(chan struct{}), make(chan struct{})
	calls := make(chan int, 10)
	s, _ := r.Subscribe("t", func(m pubsub.Message) {
		calls <- val(m)
		if val(m) == 0 {
			close(entered)
			<-release
		}
	})
	witness := make(chan int, 10)
	r.Subscribe("t", func(m pubsub.Message) { witness <- val(m) })
	for i := range 3 {
		q.Push(msg("t", i), nil)
	}
	<-entered
	unsubscribed := make(chan struct{})
	go func() { s.Unsubscribe(); close(unsubscribed) }()
	select {
	case <-unsubscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("Unsubscribe waited for the running handler")
	}
	close(release)
	for want := range 3 {
		select {
		case v := <-witness:
			if v != want {
				t.Fatalf("witness got %d, want %d", v, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("timeout")
		}
	}
	if got := len(calls); got != 1 {
		t.Fatalf("unsubscribed handler called %d times, want 1 (the call under way)", got)
	}
}

func TestCloseReportsRunningHandler(t *testing.T) {
	r := New(Config{})
	q := NewQueue(0, nil)
	stop := make(chan struct{})
	done := loop(q, r, stop)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls int
	r.Subscribe("t", func(pubsub.Message) {
		calls++
		if calls == 1 {
			close(entered)
			<-release
		}
	})
	q.Push(msg("t", 0), nil)
	q.Push(msg("t", 1), nil)
	<-entered
	if !r.Close() {
		t.Error("Close while a handler runs reported none running")
	}
	if r.Close() {
		t.Error("second Close reported a running handler")
	}
	close(release)
	close(stop)
	<-done
	if calls != 1 {
		t.Errorf("handler called %d times, want 1 (nothing after Close)", calls)
	}

	idle := New(Config{})
	idle.Subscribe("t", func(pubsub.Message) {})
	idle.Deliver(msg("t", 0), nil)
	if idle.Close() {
		t.Error("Close with no handler running reported one")
	}
}

func TestQueueBound(t *testing.T) {
	q := NewQueue(2, nil)
	for i := range 5 {
		if ok := q.Push(msg("t", i), nil); ok != (i < 2) {
			t.Fatalf("Push %d = %v", i, ok)
		}
	}
	if got := q.Dropped(); got != 3 {
		t.Fatalf("Dropped = %d, want 3", got)
	}
	q.Close()
	if q.Push(msg("t", 9), nil) {
		t.Fatal("Push after Close succeeded")
	}
	if got := q.Dropped(); got != 3 {
		t.Fatalf("Dropped after Close = %d, want 3 (a closed queue does not count)", got)
	}
}
