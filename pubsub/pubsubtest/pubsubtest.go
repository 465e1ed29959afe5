package pubsubtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopresence/presence/pubsub"
)

const (
	// waitTimeout bounds every wait for a delivery.
	waitTimeout = 15 * time.Second
	// quiet is how long a check that nothing arrives waits.
	quiet = 150 * time.Millisecond
)

// syncPrefix marks the suite's synchronisation messages, which recorders
// count apart from the messages under test.
var syncPrefix = []byte("\x00pubsubtest-sync/")

// NewCluster builds a connected cluster: one Bus per name, in order, with
// NodeName() == names[i]. It is called once per subtest and must register
// the cleanup of what it creates with t.Cleanup. The suite closes some buses
// itself, so closing twice must be harmless (as Bus.Close promises).
type NewCluster func(t *testing.T, names []string) []pubsub.Bus

// Run runs the conformance suite against the buses built by newCluster,
// each case as a subtest of t.
func Run(t *testing.T, newCluster func(t *testing.T, names []string) []pubsub.Bus) {
	cases := []struct {
		name string
		fn   func(*testing.T, NewCluster)
	}{
		{"NodeName", testNodeName},
		{"BroadcastReachesEveryNode", testBroadcast},
		{"OtherTopicsGetNothing", testOtherTopics},
		{"TopicNames", testTopicNames},
		{"Payloads", testPayloads},
		{"BroadcastFromSkipsSenderOnOrigin", testBroadcastFrom},
		{"DirectBroadcast", testDirect},
		{"DirectBroadcastUnknownNode", testDirectUnknown},
		{"Unsubscribe", testUnsubscribe},
		{"UnsubscribeInHandler", testUnsubscribeInHandler},
		{"UnsubscribeWhileHandlerRuns", testUnsubscribeWhileRunning},
		{"HandlerMayPublish", testHandlerPublishes},
		{"HandlersOneAtATime", testOneAtATime},
		{"SlowHandlerDelaysOnlyItsBus", testSlowHandler},
		{"TwoSubscriptionsOneTopic", testTwoSubs},
		{"FIFOPerSender", testFIFO},
		{"FIFOAcrossBroadcastAndDirect", testFIFOMixed},
		{"Close", testClose},
		{"CloseWhileHandlerRuns", testCloseWhileRunning},
		{"CloseFromHandler", testCloseFromHandler},
		{"ConcurrentPublishers", testConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newCluster) })
	}
}

// cluster builds n nodes with names that exercise escaping in adapters.
func cluster(t *testing.T, newCluster NewCluster, n int) []pubsub.Bus {
	t.Helper()
	all := []string{"n1", "n2.with.dots", "n3 *>:/~"}
	names := all[:n]
	buses := newCluster(t, slices.Clone(names))
	if len(buses) != n {
		t.Fatalf("newCluster returned %d buses, want %d", len(buses), n)
	}
	return buses
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// recorder records the messages a handler receives.
type recorder struct {
	node string // where it is subscribed

	mu      sync.Mutex
	msgs    []pubsub.Message
	syncs   map[string]bool // "b/<from>" and "d/<from>" seen
	changed chan struct{}
}

func newRecorder(node string) *recorder {
	return &recorder{node: node, syncs: make(map[string]bool), changed: make(chan struct{}, 1)}
}

func (r *recorder) handle(m pubsub.Message) {
	r.mu.Lock()
	if rest, ok := bytes.CutPrefix(m.Data, syncPrefix); ok {
		r.syncs[string(rest)] = true
	} else {
		m.Data = bytes.Clone(m.Data)
		r.msgs = append(r.msgs, m)
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) messages() []pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *recorder) synced(kinds []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range kinds {
		if !r.syncs[k] {
			return false
		}
	}
	return true
}

// waitN waits until r holds at least n messages and returns them.
func (r *recorder) waitN(t *testing.T, n int) []pubsub.Message {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		if msgs := r.messages(); len(msgs) >= n {
			return msgs
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			msgs := r.messages()
			t.Fatalf("subscriber on %q: got %d messages after %v, want %d", r.node, len(msgs), waitTimeout, n)
			return nil
		}
	}
}

func subscribe(t *testing.T, b pubsub.Bus, topic string) (*recorder, pubsub.Subscription) {
	t.Helper()
	r := newRecorder(b.NodeName())
	s, err := b.Subscribe(topic, r.handle)
	if err != nil {
		t.Fatalf("Subscribe(%q) on %q: %v", topic, b.NodeName(), err)
	}
	return r, s
}

// settle sends synchronisation messages on topic from every bus (broadcast
// and direct to every node of recs) until every recorder has seen both
// kinds from every bus.
func settle(t *testing.T, buses []pubsub.Bus, topic string, recs ...*recorder) {
	t.Helper()
	var kinds []string
	for _, b := range buses {
		kinds = append(kinds, "b/"+b.NodeName(), "d/"+b.NodeName())
	}
	targets := map[string]bool{}
	for _, r := range recs {
		targets[r.node] = true
	}
	c := ctx(t)
	deadline := time.Now().Add(waitTimeout)
	for round := 0; ; round++ {
		for _, b := range buses {
			if err := b.Broadcast(c, topic, append(slices.Clone(syncPrefix), "b/"+b.NodeName()...)); err != nil {
				t.Fatalf("sync Broadcast from %q: %v", b.NodeName(), err)
			}
			for node := range targets {
				if err := b.DirectBroadcast(c, node, topic, append(slices.Clone(syncPrefix), "d/"+b.NodeName()...)); err != nil {
					t.Fatalf("sync DirectBroadcast from %q: %v", b.NodeName(), err)
				}
			}
		}
		wait := time.Now().Add(time.Duration(min(round+1, 10)) * 20 * time.Millisecond)
		for time.Now().Before(wait) {
			done := true
			for _, r := range recs {
				if !r.synced(kinds) {
					done = false
					break
				}
			}
			if done {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			for _, r := range recs {
				if !r.synced(kinds) {
					t.Fatalf("subscription on %q to %q did not become effective within %v", r.node, topic, waitTimeout)
				}
			}
		}
	}
}

func checkMsg(t *testing.T, got pubsub.Message, topic, from, data string) {
	t.Helper()
	if got.Topic != topic || got.From != from || string(got.Data) != data {
		t.Errorf("got message {Topic:%q From:%q Data:%q}, want {Topic:%q From:%q Data:%q}",
			got.Topic, got.From, got.Data, topic, from, data)
	}
}

// expectNone waits the quiet period and fails if any recorder holds more
// than want[i] messages.
func expectCounts(t *testing.T, recs []*recorder, want []int) {
	t.Helper()
	time.Sleep(quiet)
	for i, r := range recs {
		if got := len(r.messages()); got != want[i] {
			t.Errorf("subscriber %d on %q: got %d messages, want %d: %q", i, r.node, got, want[i], r.messages())
		}
	}
}

func testNodeName(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	want := []string{"n1", "n2.with.dots", "n3 *>:/~"}
	for i, b := range buses {
		if got := b.NodeName(); got != want[i] {
			t.Errorf("bus %d: NodeName() = %q, want %q", i, got, want[i])
		}
	}
}

func subscribeAll(t *testing.T, buses []pubsub.Bus, topic string) []*recorder {
	t.Helper()
	var recs []*recorder
	for _, b := range buses {
		r, _ := subscribe(t, b, topic)
		recs = append(recs, r)
	}
	settle(t, buses, topic, recs...)
	return recs
}

func testBroadcast(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const topic = "room:lobby"
	recs := subscribeAll(t, buses, topic)
	for i, b := range buses {
		data := "hello from " + strconv.Itoa(i)
		if err := b.Broadcast(ctx(t), topic, []byte(data)); err != nil {
			t.Fatalf("Broadcast: %v", err)
		}
		for _, r := range recs {
			msgs := r.waitN(t, i+1)
			checkMsg(t, msgs[i], topic, b.NodeName(), data)
		}
	}
	expectCounts(t, recs, []int{3, 3, 3})
}

func testOtherTopics(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	a := subscribeAll(t, buses, "topic:a")
	b := subscribeAll(t, buses, "topic:b")
	for _, bus := range buses {
		if err := bus.Broadcast(ctx(t), "topic:a", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := bus.DirectBroadcast(ctx(t), buses[1].NodeName(), "topic:a", []byte("y")); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range a {
		n := 3
		if i == 1 {
			n = 6
		}
		r.waitN(t, n)
	}
	expectCounts(t, append(a, b...), []int{3, 6, 3, 0, 0, 0})
}

func testTopicNames(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	topics := []string{"", "a", "a.b", "a b", "*", ">", "a.*", "a.>", "~", "%41", "ünï/cödé",
		"phx_presence:7", "x\x00y", strings.Repeat("long", 100)}
	recs := make([][]*recorder, len(topics))
	for i, topic := range topics {
		recs[i] = subscribeAll(t, buses, topic)
	}
	for i, topic := range topics {
		if err := buses[0].Broadcast(ctx(t), topic, []byte("b"+strconv.Itoa(i))); err != nil {
			t.Fatalf("Broadcast(%q): %v", topic, err)
		}
		if err := buses[0].DirectBroadcast(ctx(t), buses[1].NodeName(), topic, []byte("d"+strconv.Itoa(i))); err != nil {
			t.Fatalf("DirectBroadcast(%q): %v", topic, err)
		}
	}
	for i, topic := range topics {
		msgs := recs[i][0].waitN(t, 1)
		checkMsg(t, msgs[0], topic, buses[0].NodeName(), "b"+strconv.Itoa(i))
		msgs = recs[i][1].waitN(t, 2)
		checkMsg(t, msgs[0], topic, buses[0].NodeName(), "b"+strconv.Itoa(i))
		checkMsg(t, msgs[1], topic, buses[0].NodeName(), "d"+strconv.Itoa(i))
	}
	var all []*recorder
	var want []int
	for i := range topics {
		all = append(all, recs[i]...)
		want = append(want, 1, 2)
	}
	expectCounts(t, all, want)
}

func testPayloads(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "payloads"
	recs := subscribeAll(t, buses, topic)
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	payloads := [][]byte{nil, {}, {0}, {0xff, 0, 0xfe}, []byte("\x00pubsubtest-syn"), big}
	for _, p := range payloads {
		if err := buses[0].Broadcast(ctx(t), topic, p); err != nil {
			t.Fatalf("Broadcast of %d bytes: %v", len(p), err)
		}
	}
	for _, r := range recs {
		msgs := r.waitN(t, len(payloads))
		for i, m := range msgs {
			if !bytes.Equal(m.Data, payloads[i]) {
				t.Errorf("on %q: payload %d: got %d bytes %.16q, want %d bytes %.16q", r.node, i, len(m.Data), m.Data, len(payloads[i]), payloads[i])
			}
		}
	}
}

func testBroadcastFrom(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "from"
	a, subA := subscribe(t, buses[0], topic)
	b, _ := subscribe(t, buses[0], topic)
	c, subC := subscribe(t, buses[1], topic)
	settle(t, buses, topic, a, b, c)
	if err := buses[0].BroadcastFrom(ctx(t), subA, topic, []byte("1")); err != nil {
		t.Fatalf("BroadcastFrom: %v", err)
	}
	b.waitN(t, 1)
	c.waitN(t, 1)
	expectCounts(t, []*recorder{a, b, c}, []int{0, 1, 1})

	// The excluded subscription is only skipped on the origin node.
	if err := buses[1].BroadcastFrom(ctx(t), subC, topic, []byte("2")); err != nil {
		t.Fatalf("BroadcastFrom: %v", err)
	}
	a.waitN(t, 1)
	b.waitN(t, 2)
	expectCounts(t, []*recorder{a, b, c}, []int{1, 2, 1})

	// A nil from skips nothing.
	if err := buses[0].BroadcastFrom(ctx(t), nil, topic, []byte("3")); err != nil {
		t.Fatalf("BroadcastFrom(nil): %v", err)
	}
	a.waitN(t, 2)
	b.waitN(t, 3)
	c.waitN(t, 2)
	checkMsg(t, c.messages()[1], topic, buses[0].NodeName(), "3")
}

func testDirect(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const topic = "direct"
	recs := subscribeAll(t, buses, topic)
	// To its own node.
	if err := buses[0].DirectBroadcast(ctx(t), buses[0].NodeName(), topic, []byte("self")); err != nil {
		t.Fatalf("DirectBroadcast to self: %v", err)
	}
	checkMsg(t, recs[0].waitN(t, 1)[0], topic, buses[0].NodeName(), "self")
	// To another node.
	if err := buses[0].DirectBroadcast(ctx(t), buses[2].NodeName(), topic, []byte("other")); err != nil {
		t.Fatalf("DirectBroadcast to another node: %v", err)
	}
	checkMsg(t, recs[2].waitN(t, 1)[0], topic, buses[0].NodeName(), "other")
	expectCounts(t, recs, []int{1, 0, 1})
}

func testDirectUnknown(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "unknown"
	recs := subscribeAll(t, buses, topic)
	for _, node := range []string{"no-such-node", "n1.x", "n", "*", ">", ""} {
		if err := buses[0].DirectBroadcast(ctx(t), node, topic, []byte("lost")); err != nil {
			t.Errorf("DirectBroadcast to unknown node %q: %v, want nil", node, err)
		}
	}
	expectCounts(t, recs, []int{0, 0})
}

func testUnsubscribe(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "unsub"
	a, subA := subscribe(t, buses[0], topic)
	b, _ := subscribe(t, buses[0], topic)
	c, subC := subscribe(t, buses[1], topic)
	settle(t, buses, topic, a, b, c)

	for range 2 {
		if err := subA.Unsubscribe(); err != nil {
			t.Fatalf("Unsubscribe: %v", err)
		}
	}
	for i := range 10 {
		if err := buses[1].Broadcast(ctx(t), topic, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	b.waitN(t, 10)
	c.waitN(t, 10)
	if n := len(a.messages()); n != 0 {
		t.Errorf("unsubscribed handler got %d messages", n)
	}

	// A remote subscriber that unsubscribes stops receiving.
	if err := subC.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if err := buses[0].Broadcast(ctx(t), topic, []byte("after")); err != nil {
		t.Fatal(err)
	}
	b.waitN(t, 11)
	expectCounts(t, []*recorder{a, b, c}, []int{0, 11, 10})
	if err := subC.Unsubscribe(); err != nil {
		t.Errorf("second Unsubscribe: %v", err)
	}
}

func testUnsubscribeInHandler(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "unsub-in-handler"
	var (
		mu    sync.Mutex
		calls int
		sub   pubsub.Subscription
	)
	subscribed := make(chan struct{})
	unsubscribed := make(chan error, 1)
	s, err := buses[0].Subscribe(topic, func(m pubsub.Message) {
		if bytes.HasPrefix(m.Data, syncPrefix) {
			return
		}
		<-subscribed
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			unsubscribed <- sub.Unsubscribe()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sub = s
	close(subscribed)
	witness, _ := subscribe(t, buses[0], topic)
	settle(t, buses, topic, witness)
	for i := range 5 {
		if err := buses[1].Broadcast(ctx(t), topic, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-unsubscribed:
		if err != nil {
			t.Errorf("Unsubscribe from its own handler: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Unsubscribe called from its own handler did not return (deadlock?)")
	}
	witness.waitN(t, 5)
	time.Sleep(quiet)
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("handler called %d times, want 1 (it unsubscribed on the first)", calls)
	}
}

func testHandlerPublishes(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	// Node 1 answers every ping with a pong to the sender's node; the
	// handlers publish from inside the bus's delivery goroutine.
	pong, _ := subscribe(t, buses[0], "pong")
	settle(t, buses, "pong", pong)
	const n = 50
	errs := make(chan error, n)
	pingSub, err := buses[1].Subscribe("ping", func(m pubsub.Message) {
		if bytes.HasPrefix(m.Data, syncPrefix) {
			return
		}
		errs <- buses[1].DirectBroadcast(context.Background(), m.From, "pong", m.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pingSub.Unsubscribe()
	witness, _ := subscribe(t, buses[1], "ping")
	settle(t, buses, "ping", witness)
	for i := range n {
		if err := buses[0].Broadcast(ctx(t), "ping", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	msgs := pong.waitN(t, n)
	for i, m := range msgs[:n] {
		checkMsg(t, m, "pong", buses[1].NodeName(), strconv.Itoa(i))
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("DirectBroadcast from a handler: %v", err)
		}
	}
}

func testTwoSubs(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "twice"
	a, _ := subscribe(t, buses[1], topic)
	b, _ := subscribe(t, buses[1], topic)
	settle(t, buses, topic, a, b)
	if err := buses[0].Broadcast(ctx(t), topic, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := buses[0].DirectBroadcast(ctx(t), buses[1].NodeName(), topic, []byte("y")); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{a, b} {
		msgs := r.waitN(t, 2)
		checkMsg(t, msgs[0], topic, buses[0].NodeName(), "x")
		checkMsg(t, msgs[1], topic, buses[0].NodeName(), "y")
	}
	expectCounts(t, []*recorder{a, b}, []int{2, 2})
}

// checkSequence checks that msgs carry "<prefix><i>" for i = 0..n-1 in order.
func checkSequence(t *testing.T, where string, msgs []pubsub.Message, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Errorf("%s: got %d messages, want %d", where, len(msgs), n)
	}
	for i, m := range msgs {
		if got, want := string(m.Data), strconv.Itoa(i); got != want {
			t.Fatalf("%s: message %d is %q, want %q (FIFO per sender broken)", where, i, got, want)
		}
	}
}

func testFIFO(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const topic, n = "fifo", 1000
	recs := subscribeAll(t, buses, topic)
	for i := range n {
		if err := buses[1].Broadcast(ctx(t), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs {
		checkSequence(t, "subscriber on "+r.node, r.waitN(t, n), n)
	}
}

func testFIFOMixed(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const topic, n = "fifo-mixed", 1000
	recs := subscribeAll(t, buses, topic)
	for i := range n {
		var err error
		data := []byte(strconv.Itoa(i))
		if i%3 == 0 {
			err = buses[0].Broadcast(ctx(t), topic, data)
		} else {
			err = buses[0].DirectBroadcast(ctx(t), buses[2].NodeName(), topic, data)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	checkSequence(t, "subscriber on "+recs[2].node, recs[2].waitN(t, n), n)
	if got, want := len(recs[1].waitN(t, (n+2)/3)), (n+2)/3; got != want {
		t.Errorf("broadcast receiver got %d, want %d", got, want)
	}
}

func testClose(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const topic = "close"
	recs := subscribeAll(t, buses, topic)
	_, sub := subscribe(t, buses[2], "other")
	name := buses[2].NodeName()

	if err := buses[2].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := buses[2].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := buses[2].NodeName(); got != name {
		t.Errorf("NodeName after Close = %q, want %q", got, name)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Errorf("Unsubscribe after Close: %v", err)
	}
	c := ctx(t)
	checks := map[string]error{
		"Broadcast":       buses[2].Broadcast(c, topic, []byte("x")),
		"BroadcastFrom":   buses[2].BroadcastFrom(c, nil, topic, []byte("x")),
		"DirectBroadcast": buses[2].DirectBroadcast(c, buses[0].NodeName(), topic, []byte("x")),
	}
	_, err := buses[2].Subscribe(topic, func(pubsub.Message) {})
	checks["Subscribe"] = err
	for call, err := range checks {
		if !errors.Is(err, pubsub.ErrClosed) {
			t.Errorf("%s after Close: %v, want pubsub.ErrClosed", call, err)
		}
	}

	// The rest of the cluster keeps working, and the closed node's handler
	// is not called any more.
	if err := buses[0].Broadcast(c, topic, []byte("after")); err != nil {
		t.Fatal(err)
	}
	recs[0].waitN(t, 1)
	recs[1].waitN(t, 1)
	expectCounts(t, recs, []int{1, 1, 0})
}

func testConcurrent(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const topic, churnTopic = "concurrent", "churn"
	const publishers, perPublisher = 4, 250
	recs := subscribeAll(t, buses, topic)

	var wg sync.WaitGroup
	errs := make(chan error, len(buses)*(publishers+1))
	stop := make(chan struct{})
	for _, b := range buses {
		for p := range publishers {
			wg.Go(func() {
				for i := range perPublisher {
					data := fmt.Appendf(nil, "%d/%d", p, i)
					var err error
					if i%2 == 0 {
						err = b.Broadcast(context.Background(), topic, data)
					} else {
						err = b.BroadcastFrom(context.Background(), nil, topic, data)
					}
					if err != nil {
						errs <- err
						return
					}
					_ = b.Broadcast(context.Background(), churnTopic, data)
				}
			})
		}
		// Subscriptions come and go on another topic meanwhile.
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := b.Subscribe(churnTopic, func(pubsub.Message) {})
				if err != nil {
					errs <- err
					return
				}
				if err := s.Unsubscribe(); err != nil {
					errs <- err
					return
				}
				// churn, but do not spin: on a loaded 2-core machine three
				// spinning churners starve the publishers past the deadline
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	total := len(buses) * publishers * perPublisher
	for _, r := range recs {
		msgs := r.waitN(t, total)
		next := map[string]int{}
		for _, m := range msgs {
			p, i, _ := strings.Cut(string(m.Data), "/")
			key := m.From + " publisher " + p
			if want := strconv.Itoa(next[key]); i != want {
				t.Fatalf("subscriber on %q: from %s got message %s, want %s", r.node, key, i, want)
			}
			next[key]++
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	expectCounts(t, recs, []int{total, total, total})
}

// blocker is a handler that blocks in its first call with a message under
// test (synchronisation messages pass) until released, and counts those
// calls.
type blocker struct {
	entered chan struct{} // closed when the first call blocks
	release chan struct{}
	once    sync.Once
	calls   atomic.Int32
}

// newBlocker returns a blocker that is released, at the latest, when the
// test ends (before the buses are closed, if they were built before it).
func newBlocker(t *testing.T) *blocker {
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.unblock)
	return b
}

func (b *blocker) handle(m pubsub.Message) {
	if bytes.HasPrefix(m.Data, syncPrefix) {
		return
	}
	if b.calls.Add(1) == 1 {
		close(b.entered)
		<-b.release
	}
}

func (b *blocker) unblock() { b.once.Do(func() { close(b.release) }) }

func (b *blocker) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(waitTimeout):
		t.Fatalf("the blocking handler was not called within %v", waitTimeout)
	}
}

// returnsSoon fails the test unless f returns within waitTimeout.
func returnsSoon(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not return while a handler was running (it must not wait for it)", what)
	}
}

func testUnsubscribeWhileRunning(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "unsub-while-running"
	blk := newBlocker(t)
	sub, err := buses[1].Subscribe(topic, blk.handle)
	if err != nil {
		t.Fatal(err)
	}
	witness, _ := subscribe(t, buses[1], topic)
	settle(t, buses, topic, witness)
	for i := range 3 {
		if err := buses[0].Broadcast(ctx(t), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	blk.waitEntered(t)
	returnsSoon(t, "Unsubscribe from another goroutine", sub.Unsubscribe)
	blk.unblock()
	checkSequence(t, "witness", witness.waitN(t, 3), 3)
	time.Sleep(quiet)
	if n := blk.calls.Load(); n != 1 {
		t.Errorf("unsubscribed handler called %d times, want 1 (the call under way)", n)
	}
}

func testOneAtATime(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	const n = 200
	topics := []string{"one-a", "one-a", "one-b"}
	recs := map[string][]*recorder{}
	overlaps := make([]atomic.Int32, len(buses))
	for i, b := range buses {
		var active atomic.Int32
		for _, topic := range topics {
			r := newRecorder(b.NodeName())
			if _, err := b.Subscribe(topic, func(m pubsub.Message) {
				if active.Add(1) != 1 {
					overlaps[i].Add(1)
				}
				runtime.Gosched() // give an overlapping call its chance
				r.handle(m)
				active.Add(-1)
			}); err != nil {
				t.Fatal(err)
			}
			recs[topic] = append(recs[topic], r)
		}
	}
	for topic, rs := range recs {
		settle(t, buses, topic, rs...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(buses))
	for _, b := range buses {
		wg.Go(func() {
			for i := range n {
				data := []byte(strconv.Itoa(i))
				if err := b.Broadcast(context.Background(), "one-a", data); err != nil {
					errs <- err
					return
				}
				if err := b.Broadcast(context.Background(), "one-b", data); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Broadcast: %v", err)
	}
	for _, rs := range recs {
		for _, r := range rs {
			msgs := r.waitN(t, len(buses)*n)
			for _, b := range buses {
				var from []pubsub.Message
				for _, m := range msgs {
					if m.From == b.NodeName() {
						from = append(from, m)
					}
				}
				checkSequence(t, "subscriber on "+r.node+" from "+b.NodeName(), from, n)
			}
		}
	}
	for i, b := range buses {
		if o := overlaps[i].Load(); o != 0 {
			t.Errorf("on %q: %d handler calls began while another handler of the bus was running", b.NodeName(), o)
		}
	}
}

func testSlowHandler(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 3)
	blk := newBlocker(t)
	if _, err := buses[1].Subscribe("slow", blk.handle); err != nil {
		t.Fatal(err)
	}
	witness, _ := subscribe(t, buses[1], "slow")
	settle(t, buses, "slow", witness)
	recs := subscribeAll(t, buses, "fast")
	if err := buses[0].Broadcast(ctx(t), "slow", []byte("block")); err != nil {
		t.Fatal(err)
	}
	blk.waitEntered(t)
	if err := buses[2].Broadcast(ctx(t), "fast", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The other buses deliver while the handler of buses[1] is stuck...
	checkMsg(t, recs[0].waitN(t, 1)[0], "fast", buses[2].NodeName(), "x")
	checkMsg(t, recs[2].waitN(t, 1)[0], "fast", buses[2].NodeName(), "x")
	// ...and buses[1] calls none of its handlers until it returns.
	time.Sleep(quiet)
	if got := recs[1].messages(); len(got) != 0 {
		t.Errorf("a handler of %q was called while another handler of that bus was running: %q", buses[1].NodeName(), got)
	}
	blk.unblock()
	checkMsg(t, recs[1].waitN(t, 1)[0], "fast", buses[2].NodeName(), "x")
	checkMsg(t, witness.waitN(t, 1)[0], "slow", buses[0].NodeName(), "block")
}

func testCloseWhileRunning(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "close-while-running"
	blk := newBlocker(t)
	if _, err := buses[1].Subscribe(topic, blk.handle); err != nil {
		t.Fatal(err)
	}
	after, _ := subscribe(t, buses[1], topic) // called after blk for each message
	settle(t, buses, topic, after)
	for i := range 3 {
		if err := buses[0].Broadcast(ctx(t), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	blk.waitEntered(t)
	returnsSoon(t, "Close from another goroutine", buses[1].Close)
	blk.unblock()
	time.Sleep(quiet)
	if n := blk.calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (the call under way when Close was called)", n)
	}
	if got := after.messages(); len(got) != 0 {
		t.Errorf("a handler was called after Close returned: %q", got)
	}
	if err := buses[1].Broadcast(ctx(t), topic, []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Broadcast after Close: %v, want pubsub.ErrClosed", err)
	}
}

func testCloseFromHandler(t *testing.T, nc NewCluster) {
	buses := cluster(t, nc, 2)
	const topic = "close-from-handler"
	closed := make(chan error, 1)
	var once sync.Once
	if _, err := buses[1].Subscribe(topic, func(m pubsub.Message) {
		if !bytes.HasPrefix(m.Data, syncPrefix) {
			once.Do(func() { closed <- buses[1].Close() })
		}
	}); err != nil {
		t.Fatal(err)
	}
	after, _ := subscribe(t, buses[1], topic)
	other, _ := subscribe(t, buses[0], topic)
	settle(t, buses, topic, after, other)
	if err := buses[0].Broadcast(ctx(t), topic, []byte("close")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close from a handler: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close called from a handler did not return (deadlock?)")
	}
	if err := buses[0].Broadcast(ctx(t), topic, []byte("more")); err != nil {
		t.Fatal(err)
	}
	other.waitN(t, 2)
	time.Sleep(quiet)
	if got := after.messages(); len(got) != 0 {
		t.Errorf("a handler was called after Close returned: %q", got)
	}
	if err := buses[1].Broadcast(ctx(t), topic, []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Broadcast after Close: %v, want pubsub.ErrClosed", err)
	}
}
