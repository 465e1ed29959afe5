package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gopresence/presence"
)

// With a window, a quiet topic's change still goes at once (it is out when
// Settle returns), a burst goes as a few diffs holding all of it, a meta
// that joins and leaves inside a window is never sent, and a reconnect
// (old meta leaves, new one joins) is one diff in which the key stays.
func TestDiffWindow(t *testing.T) {
	ctx := context.Background()
	presence.SetWindowPerKey(t, time.Hour) // a window never ends by itself here
	p := start(t, presence.Config{DiffWindow: time.Hour})
	var rec recorder
	defer p.Subscribe("room:w", rec.add)()
	track := func(owner, key string) {
		t.Helper()
		if _, err := p.Track(ctx, owner, "room:w", key, json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	track("o0", "k0") // quiet: at once
	p.Settle(ctx, "room:w")
	if ds := rec.all(); len(ds) != 1 || len(ds[0].Joins) != 1 {
		t.Fatalf("a quiet topic's change: %d diffs %v", len(ds), ds)
	}

	for i := 1; i <= 50; i++ { // busy: held (the window is an hour)
		track(fmt.Sprint("o", i), fmt.Sprint("k", i))
	}
	track("ghost", "ghost")
	p.Untrack(ctx, "ghost", "room:w", "ghost")
	p.Untrack(ctx, "o0", "room:w", "k0") // k0 reconnects: leaves and joins again
	track("o0b", "k0")
	p.Settle(ctx, "room:w")
	if n := len(rec.all()); n != 1 {
		t.Fatalf("the burst went out before its window ended: %d diffs", n)
	}
	p.Sync() // ends the windows
	ds := rec.all()
	if len(ds) != 2 {
		t.Fatalf("the burst: %d diffs, want 1", len(ds)-1)
	}
	d := ds[1]
	if len(d.Joins) != 51 || len(d.Leaves) != 1 || d.Leaves["k0"] == nil || d.Joins["k0"] == nil {
		t.Fatalf("burst diff: %d joins, leaves %v", len(d.Joins), d.Leaves)
	}
	if d.Joins["ghost"] != nil || len(d.Online) != 50 || len(d.Offline) != 0 {
		t.Fatalf("ghost joined %v; online %d, offline %v", d.Joins["ghost"], len(d.Online), d.Offline)
	}
	if keys, metas := p.Counts("room:w"); keys != 51 || metas != 51 {
		t.Fatalf("Counts: %d keys, %d metas", keys, metas)
	}
}

// The state a new member gets is the topic as its diffs left it: with a
// window open, the presences the window holds are not in it yet (the next
// diff brings them), and it is encoded once for every member while the
// topic does not change.
func TestSnapshotFollowsTheDiffs(t *testing.T) {
	ctx := context.Background()
	presence.SetWindowPerKey(t, time.Hour)
	p := start(t, presence.Config{DiffWindow: time.Hour})
	var rec recorder
	defer p.Subscribe("room:s", rec.add)()
	p.Track(ctx, "o1", "room:s", "a", json.RawMessage(`{}`))
	p.Settle(ctx, "room:s") // quiet: sent, in the snapshot
	first := p.Snapshot("room:s")
	p.Track(ctx, "o2", "room:s", "b", json.RawMessage(`{}`))
	p.Settle(ctx, "room:s") // busy: held
	second := p.Snapshot("room:s")
	var st map[string]any
	if err := json.Unmarshal(second, &st); err != nil || len(st) != 1 || st["a"] == nil {
		t.Fatalf("snapshot with b in the window: %s (%v)", second, err)
	}
	if &first[0] != &second[0] {
		t.Fatal("the same version was encoded twice")
	}
	if l := p.List("room:s"); len(l) != 2 {
		t.Fatalf("List runs ahead of the diffs: %v", l)
	}
	p.Sync()
	if err := json.Unmarshal(p.Snapshot("room:s"), &st); err != nil || len(st) != 2 {
		t.Fatalf("after the window: %v", st)
	}
}
