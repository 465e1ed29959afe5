package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
	"go.uber.org/goleak"
)

func newBus(t *testing.T, name string) *membus.Bus {
	b := membus.New(name)
	t.Cleanup(func() { b.Close() })
	return b
}

func newTracker(t *testing.T, name string) *tracker.Tracker {
	tr, err := tracker.New(tracker.Config{Bus: newBus(t, name)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

type diffLog struct {
	mu sync.Mutex
	ds []tracker.Diff
}

func (l *diffLog) handle(ds []tracker.Diff) {
	l.mu.Lock()
	l.ds = append(l.ds, ds...)
	l.mu.Unlock()
}

func (l *diffLog) take() []tracker.Diff {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.ds
	l.ds = nil
	return d
}

func fast(bus *membus.Bus, pool int) tracker.Config {
	return tracker.Config{Bus: bus, PoolSize: pool, BroadcastPeriod: 100 * time.Millisecond,
		DownPeriod: 2500 * time.Millisecond, PermdownPeriod: 5 * time.Second, FlushInterval: 5 * time.Millisecond}
}

type node struct {
	tr  *tracker.Tracker
	log *diffLog
	bus *membus.Bus
}

func startNodes(t *testing.T, net *membus.Network, pool int, names ...string) []*node {
	var out []*node
	for _, n := range names {
		bus, err := net.Join(n)
		if err != nil {
			t.Fatal(err)
		}
		l := &diffLog{}
		tr, err := tracker.New(fast(bus, pool), l.handle)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		out = append(out, &node{tr, l, bus})
	}
	return out
}

func stopNodes(ns []*node) {
	for _, n := range ns {
		n.tr.Close()
		n.bus.Close()
	}
}

func ref(t *testing.T, meta json.RawMessage, field string) string {
	var m map[string]any
	json.Unmarshal(meta, &m)
	s, _ := m[field].(string)
	return s
}

func TestTrackerBuildsPoolOfShards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := membus.NewNetwork()
		ns := startNodes(t, net, 4, "n1")
		defer stopNodes(ns)
		ctx := context.Background()
		for i := range 40 {
			ns[0].tr.Track(ctx, "o", fmt.Sprintf("t%d", i), "k", []byte(`{}`))
		}
		if got := len(ns[0].tr.Replicas()); got != 0 {
			t.Fatalf("replicas %d", got)
		}
	})
}

// Every shard of a pool tracks every peer; Replicas lists each peer once.
func TestReplicasOncePerPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := membus.NewNetwork()
		ns := startNodes(t, net, 4, "n1", "n2")
		defer stopNodes(ns)
		time.Sleep(time.Second)
		synctest.Wait()
		rs := ns[0].tr.Replicas()
		if len(rs) != 1 || rs[0].Name != "n2" || rs[0].Vsn != ns[1].tr.Vsn() || rs[0].Status() != "up" {
			t.Fatalf("replicas %+v", rs)
		}
	})
}

// Local and remote tracks join; local and remote owner deaths leave.
func TestLocalAndRemoteEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		net := membus.NewNetwork()
		ns := startNodes(t, net, 1, "n1", "n2")
		defer stopNodes(ns)
		time.Sleep(time.Second)
		r, err := ns[0].tr.Track(ctx, "o1", "room", "u1", []byte(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		ns[1].tr.Track(ctx, "o2", "room", "u2", []byte(`{}`))
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		ns[0].tr.Sync()
		l := ns[0].tr.List("room")
		if len(l) != 2 || ref(t, l[0].Meta, "phx_ref") != r {
			t.Fatalf("list %+v", l)
		}
		d := ns[0].log.take()
		if len(d) != 2 || d[0].Joins[0].Key != "u1" || d[1].Joins[0].Key != "u2" {
			t.Fatalf("joins %+v", d)
		}
		ns[0].tr.UntrackOwner(ctx, "o1")
		ns[1].tr.UntrackOwner(ctx, "o2")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		ns[0].tr.Sync()
		d = ns[0].log.take()
		if len(d) != 2 || len(d[0].Leaves) != 1 || len(d[1].Leaves) != 1 {
			t.Fatalf("leaves %+v", d)
		}
	})
}

func TestUpdateWithMap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		ns := startNodes(t, membus.NewNetwork(), 1, "n1")
		defer stopNodes(ns)
		r1, _ := ns[0].tr.Track(ctx, "o", "t", "k", []byte(`{"v":1}`))
		r2, err := ns[0].tr.Update(ctx, "o", "t", "k", []byte(`{"v":2}`))
		if err != nil {
			t.Fatal(err)
		}
		ns[0].tr.Sync()
		d := ns[0].log.take()
		up := d[1]
		if ref(t, up.Leaves[0].Meta, "phx_ref") != r1 || ref(t, up.Joins[0].Meta, "phx_ref") != r2 ||
			ref(t, up.Joins[0].Meta, "phx_ref_prev") != r1 {
			t.Fatalf("%s / %s", up.Leaves[0].Meta, up.Joins[0].Meta)
		}
	})
}

func TestUpdateWithFunction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		ns := startNodes(t, membus.NewNetwork(), 1, "n1")
		defer stopNodes(ns)
		r1, _ := ns[0].tr.Track(ctx, "o", "t", "k", []byte(`{"v":1}`))
		var seen string
		_, err := ns[0].tr.UpdateFunc(ctx, "o", "t", "k", func(prev json.RawMessage) (json.RawMessage, error) {
			seen = ref(t, prev, "phx_ref")
			return json.RawMessage(`{"v":2}`), nil
		})
		if err != nil || seen != r1 {
			t.Fatalf("err %v, fn saw %q", err, seen)
		}
		if l := ns[0].tr.List("t"); ref(t, l[0].Meta, "phx_ref_prev") != r1 {
			t.Fatalf("%s", l[0].Meta)
		}
	})
}

// Phoenix delivers diffs to the tracker module's handle_info, and a bad
// return value crashes the shard. Our callback is New's handleDiff: it receives
// every diff; one that panics is logged and does not stop the shard (we
// recover instead of crashing).
func TestPanickingHandlerDoesNotStopShard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		bus := newBus(t, "n1")
		calls := 0
		tr, _ := tracker.New(fast(bus, 1), func([]tracker.Diff) { calls++; panic("boom") })
		tr.Start(ctx)
		defer tr.Close()
		tr.Track(ctx, "o", "t", "k", []byte(`{}`))
		tr.Track(ctx, "o", "t", "k2", []byte(`{}`))
		tr.Sync()
		if calls != 2 || tr.Count("t") != 2 {
			t.Fatalf("calls %d, count %d", calls, tr.Count("t"))
		}
	})
}

func TestHandlerReceivesDiffs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ns := startNodes(t, membus.NewNetwork(), 1, "n1")
		defer stopNodes(ns)
		ns[0].tr.Track(context.Background(), "o", "t", "k", []byte(`{}`))
		ns[0].tr.Sync()
		if d := ns[0].log.take(); len(d) != 1 || d[0].Topic != "t" {
			t.Fatalf("%+v", d)
		}
	})
}

// forPools runs f for pool sizes 1, 2, 8 and 512, as phoenix_pubsub's pool
// tests do.
func forPools(t *testing.T, f func(t *testing.T, n *node)) {
	for _, pool := range []int{1, 2, 8, 512} {
		t.Run(fmt.Sprintf("pool%d", pool), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ns := startNodes(t, membus.NewNetwork(), pool, "n1")
				defer stopNodes(ns)
				f(t, ns[0])
			})
		})
	}
}

func TestPoolTrackReturnsRef(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		r, err := n.tr.Track(context.Background(), "o", "t", "k", []byte(`{}`))
		if err != nil || ref(t, n.tr.List("t")[0].Meta, "phx_ref") != r {
			t.Fatal(err)
		}
	})
}

func TestPoolTrackIn100Topics(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		for i := range 100 {
			n.tr.Track(context.Background(), "o", fmt.Sprintf("t%d", i), "k", []byte(`{}`))
		}
		for i := range 100 {
			if n.tr.Count(fmt.Sprintf("t%d", i)) != 1 {
				t.Fatal(i)
			}
		}
	})
}

func TestPoolUntrackIn100Topics(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		for i := range 100 {
			n.tr.Track(ctx, "o", fmt.Sprintf("t%d", i), "k", []byte(`{}`))
		}
		for i := range 100 {
			n.tr.Untrack(ctx, "o", fmt.Sprintf("t%d", i), "k")
		}
		for i := range 100 {
			if n.tr.Count(fmt.Sprintf("t%d", i)) != 0 {
				t.Fatal(i)
			}
		}
	})
}

func TestPoolUntrackOwnerEverywhere(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		for i := range 100 {
			n.tr.Track(ctx, "o", fmt.Sprintf("t%d", i), "k", []byte(`{}`))
		}
		n.tr.UntrackOwner(ctx, "o")
		for i := range 100 {
			if n.tr.Count(fmt.Sprintf("t%d", i)) != 0 {
				t.Fatal(i)
			}
		}
	})
}

func TestPoolUpdateWithMap(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		r1, _ := n.tr.Track(ctx, "o", "t", "k", []byte(`{"v":1}`))
		r2, _ := n.tr.Update(ctx, "o", "t", "k", []byte(`{"v":2}`))
		m := n.tr.List("t")[0].Meta
		if ref(t, m, "phx_ref") != r2 || ref(t, m, "phx_ref_prev") != r1 {
			t.Fatalf("%s", m)
		}
	})
}

func TestPoolUpdateWithFunction(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		r1, _ := n.tr.Track(ctx, "o", "t", "k", []byte(`{"v":1}`))
		r2, _ := n.tr.UpdateFunc(ctx, "o", "t", "k", func(p json.RawMessage) (json.RawMessage, error) {
			return json.RawMessage(`{"v":3}`), nil
		})
		m := n.tr.List("t")[0].Meta
		if ref(t, m, "phx_ref") != r2 || ref(t, m, "phx_ref_prev") != r1 {
			t.Fatalf("%s", m)
		}
	})
}

func TestPoolGracefulPermdownStopsAll(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		n.tr.Track(ctx, "o", "t", "k", []byte(`{}`))
		if err := n.tr.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := n.tr.Track(ctx, "o", "t", "k2", []byte(`{}`)); !errors.Is(err, tracker.ErrClosed) {
			t.Fatalf("track after shutdown: %v", err)
		}
		// a restart (new tracker on the same bus name) lists nothing
		tr2, _ := tracker.New(fast(newBus(t, "n1-again"), 1), nil)
		tr2.Start(ctx)
		defer tr2.Close()
		if tr2.Count("t") != 0 {
			t.Fatal("restarted tracker lists old presences")
		}
	})
}

// A remote update is never observed missing by concurrent List, and
// repeated remote updates do not grow the list.
func TestRemoteUpdateNeverMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		ns := startNodes(t, membus.NewNetwork(), 1, "n1", "n2")
		defer stopNodes(ns)
		time.Sleep(time.Second)
		ns[0].tr.Track(ctx, "o", "t", "k", []byte(`{"v":0}`))
		time.Sleep(100 * time.Millisecond)
		stop := make(chan struct{})
		missing := 0
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n := len(ns[1].tr.List("t")); n != 1 {
					missing++
				}
				time.Sleep(time.Millisecond)
			}
		}()
		for i := range 100 {
			ns[0].tr.Update(ctx, "o", "t", "k", []byte(fmt.Sprintf(`{"v":%d}`, i+1)))
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		close(stop)
		wg.Wait()
		if missing != 0 || len(ns[1].tr.List("t")) != 1 {
			t.Fatalf("missing %d times, list %d", missing, len(ns[1].tr.List("t")))
		}
	})
}

// List and Count never wait for the shard: they answer while the
// shard is busy (its lock held, as during a burst of joins).
func TestReadsDoNotWaitForShard(t *testing.T) {
	ns := startNodes(t, membus.NewNetwork(), 1, "n1")
	defer stopNodes(ns)
	ctx := context.Background()
	for i := range 10000 {
		ns[0].tr.Track(ctx, fmt.Sprintf("o%d", i), "t", "k", []byte(`{}`))
	}
	unlock := tracker.LockShardForTest(ns[0].tr, "t")
	done := make(chan int)
	go func() { done <- len(ns[0].tr.List("t")) + ns[0].tr.Count("t") }()
	select {
	case n := <-done:
		if n != 20000 {
			t.Fatalf("read %d", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("List waited for the shard lock")
	}
	unlock()
}

// A tracker that stops (Phoenix: a shard crash) leaves no owner
// silently untracked: calls fail with ErrClosed, so owners re-track on a
// new tracker; peers purge the old incarnation as soon as the new one
// heartbeats under the same name.
func TestRestartedTrackerOwnersRetrack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		net := membus.NewNetwork()
		ns := startNodes(t, net, 1, "n1", "n2")
		defer stopNodes(ns)
		time.Sleep(time.Second)
		ns[0].tr.Track(ctx, "o", "t", "k", []byte(`{}`))
		time.Sleep(100 * time.Millisecond)
		ns[0].tr.Close()
		ns[0].bus.Close()
		if _, err := ns[0].tr.Track(ctx, "o", "t", "k2", []byte(`{}`)); !errors.Is(err, tracker.ErrClosed) {
			t.Fatalf("%v", err)
		}
		again := startNodes(t, net, 1, "n1")
		defer stopNodes(again)
		again[0].tr.Track(ctx, "o", "t", "k", []byte(`{"again":true}`))
		time.Sleep(500 * time.Millisecond)
		l := ns[1].tr.List("t")
		if len(l) != 1 || l[0].Node != "n1" || string(l[0].Meta[len(l[0].Meta)-13:]) != `"again":true}` {
			t.Fatalf("n2 lists %+v", l)
		}
	})
}

// A second live node with an existing name is refused by the bus.
func TestDuplicateNodeNameRefused(t *testing.T) {
	net := membus.NewNetwork()
	b, err := net.Join("n1")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := net.Join("n1"); err == nil {
		t.Fatal("second n1 accepted")
	}
}

// After a graceful shutdown nothing is silently dropped while the
// process lives: every call returns ErrClosed.
func TestNoSilentUntrackAfterShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		bus := newBus(t, "n1")
		cfg := fast(bus, 1)
		cfg.PermdownOnShutdown = true
		tr, _ := tracker.New(cfg, nil)
		tr.Start(ctx)
		tr.Track(ctx, "o", "t", "k", []byte(`{}`))
		tr.Shutdown(ctx)
		if _, err := tr.Update(ctx, "o", "t", "k", []byte(`{}`)); !errors.Is(err, tracker.ErrClosed) {
			t.Fatalf("update: %v", err)
		}
		if err := tr.Untrack(ctx, "o", "t", "k"); !errors.Is(err, tracker.ErrClosed) {
			t.Fatalf("untrack: %v", err)
		}
	})
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// twinBus makes a membus node answer to another node's name: two live
// nodes with one name, which real adapters refuse (natsbus and redisbus
// check at New) but a misconfigured bus might not.
type twinBus struct {
	*membus.Bus
	as string
}

func (b *twinBus) NodeName() string { return b.as }

func (b *twinBus) UniqueNodeNames() bool { return false }

func (b *twinBus) Subscribe(topic string, h pubsub.Handler) (pubsub.Subscription, error) {
	return b.Bus.Subscribe(topic, func(m pubsub.Message) {
		if m.From == b.Bus.NodeName() {
			return // our own message
		}
		if m.From == b.as+"-twin" || m.From == strings.TrimSuffix(b.Bus.NodeName(), "-twin") {
			m.From = b.as
		}
		h(m)
	})
}

// Duplicate names at the tracker: when the bus lets a second live node with an
// existing name through, the older node answers its first heartbeat at
// once and the newcomer's Start fails with ErrNameTaken; the older node's
// presences never flap.
func TestSecondNodeWithSameNameRefused(t *testing.T) {
	ctx := context.Background()
	net := membus.NewNetwork()
	b1, _ := net.Join("n1")
	b2, _ := net.Join("n1-twin")
	defer b1.Close()
	defer b2.Close()
	log := &diffLog{}
	first, _ := tracker.New(tracker.Config{Bus: &twinBus{b1, "n1"}}, log.handle)
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Track(ctx, "o", "t", "k", []byte(`{}`))
	second, _ := tracker.New(tracker.Config{Bus: &twinBus{b2, "n1"}}, nil)
	if err := second.Start(ctx); !errors.Is(err, tracker.ErrNameTaken) {
		t.Fatalf("second n1 started: %v", err)
	}
	second.Close()
	first.Sync()
	if d := log.take(); len(d) != 1 || first.Count("t") != 1 {
		t.Fatalf("first node flapped: %+v", d)
	}
}
