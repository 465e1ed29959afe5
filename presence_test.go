package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
	"go.uber.org/goleak"
)

type recorder struct {
	mu    sync.Mutex
	diffs []presence.Diff
}

func (r *recorder) add(d presence.Diff) { r.mu.Lock(); r.diffs = append(r.diffs, d); r.mu.Unlock() }
func (r *recorder) all() []presence.Diff {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.diffs)
}

func start(t *testing.T, cfg presence.Config) *presence.Presence {
	t.Helper()
	p, err := presence.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func metaField(t *testing.T, m json.RawMessage, f string) string {
	var x map[string]any
	if err := json.Unmarshal(m, &x); err != nil {
		t.Fatalf("meta %s: %v", m, err)
	}
	s, _ := x[f].(string)
	return s
}

// Track → list with phx_ref; update → phx_ref_prev; untrack; diffs
// in the presence_diff shape; online/offline per key.
func TestPresenceSingleNode(t *testing.T) {
	ctx := context.Background()
	p := start(t, presence.Config{})
	var rec recorder
	cancel := p.Subscribe("room:1", rec.add)
	defer cancel()

	ref1, err := p.Track(ctx, "c1", "room:1", "alice", json.RawMessage(`{"status":"online"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Track(ctx, "c1", "room:1", "alice", json.RawMessage(`{}`)); err != presence.ErrAlreadyTracked {
		t.Fatalf("second track: %v", err)
	}
	if _, err := p.Track(ctx, "c2", "room:1", "alice", json.RawMessage(`{"status":"away"}`)); err != nil {
		t.Fatal(err)
	}
	st := p.List("room:1")
	if len(st) != 1 || len(st["alice"].Metas) != 2 || metaField(t, st["alice"].Metas[0], "phx_ref") != ref1 {
		t.Fatalf("list: %s", mustJSON(st))
	}
	ref3, err := p.Update(ctx, "c1", "room:1", "alice", json.RawMessage(`{"status":"busy"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Update(ctx, "nobody", "room:1", "alice", json.RawMessage(`{}`)); err != presence.ErrNotTracked {
		t.Fatalf("update untracked: %v", err)
	}
	if _, err := p.Track(ctx, "c3", "room:1", "bob", json.RawMessage(`[1]`)); err != presence.ErrInvalidMeta {
		t.Fatalf("array meta: %v", err)
	}
	p.UntrackOwner(ctx, "c1")
	p.Untrack(ctx, "c2", "room:1", "alice")
	p.Sync()
	ds := rec.all()
	if len(ds) != 5 {
		t.Fatalf("got %d diffs: %s", len(ds), mustJSON(ds))
	}
	if !slices.Equal(ds[0].Online, []string{"alice"}) || len(ds[1].Online) != 0 {
		t.Fatalf("online: %v %v", ds[0].Online, ds[1].Online)
	}
	up := ds[2]
	j := up.Joins["alice"].Metas[0]
	if metaField(t, j, "phx_ref") != ref3 || metaField(t, j, "phx_ref_prev") != ref1 ||
		metaField(t, up.Leaves["alice"].Metas[0], "phx_ref") != ref1 {
		t.Fatalf("update diff: %s", mustJSON(up))
	}
	if len(ds[3].Offline) != 0 || !slices.Equal(ds[4].Offline, []string{"alice"}) {
		t.Fatalf("offline: %v %v", ds[3].Offline, ds[4].Offline)
	}
	b, _ := json.Marshal(ds[4])
	var shape map[string]map[string]any
	if err := json.Unmarshal(b, &shape); err != nil || shape["joins"] == nil || shape["leaves"]["alice"] == nil {
		t.Fatalf("presence_diff shape: %s", b)
	}
	if len(p.List("room:1")) != 0 {
		t.Fatalf("room not empty")
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func fastTracker(bus *membus.Bus) tracker.Config {
	return tracker.Config{Bus: bus, BroadcastPeriod: 20 * time.Millisecond, DownPeriod: 200 * time.Millisecond,
		PermdownPeriod: time.Second, FlushInterval: time.Millisecond}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPresenceCluster(t *testing.T) {
	ctx := context.Background()
	net := membus.NewNetwork()
	var nodes []*presence.Presence
	for i := range 3 {
		bus, err := net.Join(fmt.Sprintf("n%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		nodes = append(nodes, start(t, presence.Config{Tracker: fastTracker(bus)}))
	}
	for i, p := range nodes {
		if _, err := p.Track(ctx, fmt.Sprintf("c%d", i), "room:1", fmt.Sprintf("u%d", i), json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "convergence", func() bool {
		for _, p := range nodes {
			if p.Count("room:1") != 3 {
				return false
			}
		}
		return true
	})
	// partition n3 away: the others see u2 leave after the down period
	net.Partition([]string{"n1", "n2"}, []string{"n3"})
	waitFor(t, "down", func() bool { return nodes[0].Count("room:1") == 2 && nodes[2].Count("room:1") == 1 })
	nodes[2].Untrack(ctx, "c2", "room:1", "u2")
	nodes[2].Track(ctx, "c9", "room:1", "u9", json.RawMessage(`{}`))
	net.Heal()
	waitFor(t, "heal", func() bool {
		for _, p := range nodes {
			st := p.List("room:1")
			if len(st) != 3 || st["u9"] == nil || st["u2"] != nil {
				return false
			}
		}
		return true
	})
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
