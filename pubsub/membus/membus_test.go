package membus_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/pubsub/pubsubtest"
)

func newCluster(t *testing.T, names []string) []pubsub.Bus {
	net := membus.NewNetwork()
	var buses []pubsub.Bus
	for _, name := range names {
		b, err := net.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		buses = append(buses, b)
	}
	return buses
}

func TestConformance(t *testing.T) {
	pubsubtest.Run(t, newCluster)
}

func TestConformanceUnboundedQueues(t *testing.T) {
	// Unbounded queues must behave the same.
	pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
		net := membus.NewNetworkConfig(membus.Config{MaxPending: -1})
		var buses []pubsub.Bus
		for _, name := range names {
			b, err := net.Join(name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			buses = append(buses, b)
		}
		return buses
	})
}

func TestJoinUniqueName(t *testing.T) {
	net := membus.NewNetwork()
	a, err := net.Join("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := net.Join("a"); !errors.Is(err, membus.ErrNameTaken) {
		t.Fatalf("second Join(a) = %v, want ErrNameTaken", err)
	}
	if _, err := net.Join(""); !errors.Is(err, membus.ErrEmptyName) {
		t.Fatalf("Join(\"\") = %v, want ErrEmptyName", err)
	}
	a.Close()
	a2, err := net.Join("a")
	if err != nil {
		t.Fatalf("Join(a) after the first a closed: %v", err)
	}
	defer a2.Close()
	// Closing the old Bus again must not remove the new node.
	a.Close()
	if got := net.Nodes(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("Nodes() = %q, want [a]", got)
	}
}

// counter counts deliveries per topic.
type counter struct {
	mu sync.Mutex
	n  int
	ch chan struct{}
}

func newCounter() *counter { return &counter{ch: make(chan struct{}, 1)} }

func (c *counter) handle(pubsub.Message) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counter) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for c.count() < n {
		select {
		case <-c.ch:
		case <-timeout:
			t.Fatalf("got %d deliveries, want %d", c.count(), n)
		}
	}
}

// flush waits until every message published before it was handed to the
// handlers of the given buses' topic subscriptions: membus delivers in FIFO
// order per sender, so a marker sent after them arrives after them.
func flush(t *testing.T, from *membus.Bus, to ...*membus.Bus) {
	t.Helper()
	for _, b := range to {
		done := make(chan struct{})
		s, err := b.Subscribe("flush", func(pubsub.Message) { close(done) })
		if err != nil {
			t.Fatal(err)
		}
		if err := from.DirectBroadcast(context.Background(), b.NodeName(), "flush", nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("flush marker not delivered")
		}
		s.Unsubscribe()
	}
}

func TestPartitionAndHeal(t *testing.T) {
	net := membus.NewNetwork()
	var buses []*membus.Bus
	var counters []*counter
	for _, name := range []string{"n1", "n2", "n3"} {
		b, err := net.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		c := newCounter()
		if _, err := b.Subscribe("t", c.handle); err != nil {
			t.Fatal(err)
		}
		buses = append(buses, b)
		counters = append(counters, c)
	}
	ctx := context.Background()

	net.Partition([]string{"n1"}, []string{"n2", "n3"})
	buses[1].Broadcast(ctx, "t", []byte("x"))     // reaches n2, n3
	buses[0].Broadcast(ctx, "t", []byte("y"))     // reaches n1 only
	buses[0].DirectBroadcast(ctx, "n2", "t", nil) // dropped
	counters[2].wait(t, 1)
	counters[1].wait(t, 1)
	counters[0].wait(t, 1)
	if got := net.Dropped(); got != 4 {
		t.Errorf("Dropped() = %d, want 4 (n2→n1, n1→n2, n1→n3, direct n1→n2)", got)
	}

	net.Heal()
	buses[0].Broadcast(ctx, "t", []byte("z"))
	for _, c := range counters {
		c.wait(t, 2)
	}
	flush(t, buses[0], buses...)
	for i, want := range []int{2, 2, 2} {
		if got := counters[i].count(); got != want {
			t.Errorf("n%d got %d messages, want %d", i+1, got, want)
		}
	}

	// A node named in no group is isolated.
	net.Partition([]string{"n1", "n2"})
	buses[2].Broadcast(ctx, "t", nil)
	counters[2].wait(t, 3)
	flush(t, buses[0], buses[0], buses[1])
	if counters[0].count() != 2 || counters[1].count() != 2 {
		t.Errorf("isolated node reached others: %d, %d", counters[0].count(), counters[1].count())
	}
}

func TestDropFunc(t *testing.T) {
	net := membus.NewNetwork()
	a, _ := net.Join("a")
	b, _ := net.Join("b")
	defer a.Close()
	defer b.Close()
	ca, cb := newCounter(), newCounter()
	a.Subscribe("t", ca.handle)
	b.Subscribe("t", cb.handle)
	var calls atomic.Int32
	net.SetDropFunc(func(from, to, topic string, data []byte) bool {
		calls.Add(1)
		if from == to {
			t.Errorf("DropFunc called for the local link %s", from)
		}
		return from == "a" && to == "b" && string(data) == "drop"
	})
	ctx := context.Background()
	a.Broadcast(ctx, "t", []byte("drop"))
	a.Broadcast(ctx, "t", []byte("keep"))
	b.Broadcast(ctx, "t", []byte("drop"))
	ca.wait(t, 3)
	cb.wait(t, 2)
	net.SetDropFunc(nil)
	flush(t, a, b)
	if got := cb.count(); got != 2 {
		t.Errorf("b got %d, want 2", got)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("DropFunc called %d times, want 3", got)
	}
}

func TestPublisherMayReuseBuffer(t *testing.T) {
	b := membus.New("solo")
	defer b.Close()
	got := make(chan string, 2)
	release := make(chan struct{})
	b.Subscribe("t", func(m pubsub.Message) {
		<-release
		got <- string(m.Data)
	})
	buf := []byte("first")
	b.Broadcast(context.Background(), "t", buf)
	copy(buf, "XXXXX")
	b.Broadcast(context.Background(), "t", buf)
	close(release)
	if a, c := <-got, <-got; a != "first" || c != "XXXXX" {
		t.Fatalf("got %q, %q", a, c)
	}
}

func TestSlowHandlerDoesNotBlockPublisher(t *testing.T) {
	net := membus.NewNetworkConfig(membus.Config{MaxPending: 10})
	b, _ := net.Join("n")
	defer b.Close()
	block := make(chan struct{})
	defer close(block) // runs before Close
	entered := make(chan struct{}, 1)
	slow := newCounter()
	b.Subscribe("t", func(m pubsub.Message) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-block
		slow.handle(m)
	})
	b.Broadcast(context.Background(), "t", nil)
	<-entered // the handler now holds one message and is stuck
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 99 {
			b.Broadcast(context.Background(), "t", nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked handler blocked the publisher")
	}
	// 1 in the handler, 10 queued, 89 dropped.
	if got := b.Dropped(); got != 89 {
		t.Errorf("Dropped() = %d, want 89", got)
	}
}

func TestCloseFromHandler(t *testing.T) {
	b := membus.New("n")
	closed := make(chan error, 1)
	b.Subscribe("t", func(pubsub.Message) { closed <- b.Close() })
	other := make(chan struct{})
	var once sync.Once
	b.Subscribe("t", func(pubsub.Message) { once.Do(func() { close(other) }) })
	b.Broadcast(context.Background(), "t", nil)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close from a handler deadlocked")
	}
}

func TestCloseWhileHandlerRunsEndsGoroutine(t *testing.T) {
	// Close from another goroutine does not wait for a running handler;
	// the delivery goroutine ends as soon as that handler returns, and
	// what was queued behind it is never delivered.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := membus.New("n")
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	b.Subscribe("t", func(pubsub.Message) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	b.Broadcast(context.Background(), "t", nil)
	b.Broadcast(context.Background(), "t", nil)
	<-entered
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the running handler")
	}
	close(release)
	// goleak.VerifyNone retries until the delivery goroutine has ended.
	t.Cleanup(func() {
		if n := calls.Load(); n != 1 {
			t.Errorf("handler called %d times, want 1", n)
		}
	})
}

func TestCloseWaitsForIdleGoroutine(t *testing.T) {
	// With no handler running, the delivery goroutine has ended when Close
	// returns (no retry: the check runs once).
	base := runtime.NumGoroutine()
	b := membus.New("n")
	b.Subscribe("t", func(pubsub.Message) {})
	b.Close()
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after Close, %d before New", n, base)
	}
}

func TestOneQueuePerNode(t *testing.T) {
	// A node's handlers are called by one goroutine in the order the
	// messages reached the node, across topics and subscriptions, so a
	// receiver sees one sender's messages to different topics in the order
	// they were sent.
	net := membus.NewNetwork()
	a, _ := net.Join("a")
	b, _ := net.Join("b")
	defer a.Close()
	defer b.Close()
	var mu sync.Mutex
	var got []string
	var active atomic.Int32
	record := func(name string) pubsub.Handler {
		return func(m pubsub.Message) {
			if active.Add(1) != 1 {
				t.Errorf("two handlers of node b running at once")
			}
			mu.Lock()
			got = append(got, name+":"+string(m.Data))
			mu.Unlock()
			active.Add(-1)
		}
	}
	b.Subscribe("x", record("x1"))
	b.Subscribe("y", record("y"))
	b.Subscribe("x", record("x2"))
	c := newCounter()
	b.Subscribe("done", c.handle)
	var want []string
	ctx := context.Background()
	for i := range 500 {
		d := strconv.Itoa(i)
		switch i % 3 {
		case 0:
			a.Broadcast(ctx, "x", []byte(d))
			want = append(want, "x1:"+d, "x2:"+d)
		case 1:
			a.DirectBroadcast(ctx, "b", "y", []byte(d))
			want = append(want, "y:"+d)
		case 2:
			a.Broadcast(ctx, "y", []byte(d))
			want = append(want, "y:"+d)
		}
	}
	a.DirectBroadcast(ctx, "b", "done", nil)
	c.wait(t, 1)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("got %d calls, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("call %d: %s, want %s", i, got[i], want[i])
		}
	}
}

func TestSlowNodeDoesNotDelayOthers(t *testing.T) {
	// A node whose handler is stuck fills and drops its own queue only:
	// the other nodes of the network keep receiving everything.
	net := membus.NewNetworkConfig(membus.Config{MaxPending: 5})
	a, _ := net.Join("a")
	slowNode, _ := net.Join("slow")
	defer a.Close()
	defer slowNode.Close()
	release := make(chan struct{})
	defer close(release) // runs before Close
	entered := make(chan struct{}, 1)
	slowNode.Subscribe("t", func(pubsub.Message) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	c := newCounter()
	a.Subscribe("t", c.handle)
	ctx := context.Background()
	a.Broadcast(ctx, "t", nil)
	<-entered
	c.wait(t, 1)
	for i := range 49 {
		a.Broadcast(ctx, "t", nil)
		c.wait(t, i+2) // a delivers each one while slow is stuck
	}
	if got := a.Dropped(); got != 0 {
		t.Errorf("a.Dropped() = %d, want 0", got)
	}
	// 1 in the handler, 5 queued, 44 dropped.
	if got := slowNode.Dropped(); got != 44 {
		t.Errorf("slow.Dropped() = %d, want 44", got)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
