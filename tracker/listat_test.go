package tracker_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gopresence/presence/tracker"
)

// ListAt's Seq splits the diff stream exactly: the diffs numbered up to it
// are in the listing, the later ones are not, even while the shard is busy
// and its diffs are not yet delivered.
func TestListAtSplitsTheDiffStream(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var got []tracker.Diff
	gate := make(chan struct{})
	tr, _ := tracker.New(fast(newBus(t, "n1"), 1), func(ds []tracker.Diff) {
		<-gate
		mu.Lock()
		got = append(got, ds...)
		mu.Unlock()
	})
	tr.Start(ctx)
	defer tr.Close()
	close(gate)
	tr.Sync()
	mu.Lock()
	got = nil
	mu.Unlock()

	gate = make(chan struct{}) // hold deliveries: ListAt runs ahead of them
	tr.Track(ctx, "o1", "t", "a", []byte(`{}`))
	tr.Track(ctx, "o2", "t", "b", []byte(`{}`))
	list, seq := tr.ListAt("t")
	tr.Untrack(ctx, "o1", "t", "a")
	tr.Track(ctx, "o3", "t", "c", []byte(`{}`))
	close(gate)
	tr.Sync()

	if len(list) != 2 {
		t.Fatalf("listed %v", list)
	}
	view := map[string]bool{"a": true, "b": true} // the listing
	mu.Lock()
	defer mu.Unlock()
	var before, after int
	for _, d := range got {
		if d.Topic != "t" {
			continue
		}
		if d.Seq <= seq {
			before++
			continue
		}
		after++
		for _, p := range d.Joins {
			if view[p.Key] {
				t.Fatalf("diff %d joins %s, which the listing at %d holds", d.Seq, p.Key, seq)
			}
			view[p.Key] = true
		}
		for _, p := range d.Leaves {
			if !view[p.Key] {
				t.Fatalf("diff %d leaves %s, which the listing at %d lacks", d.Seq, p.Key, seq)
			}
			delete(view, p.Key)
		}
	}
	if before != 2 || after != 2 || len(view) != 2 || !view["b"] || !view["c"] {
		t.Fatalf("%d diffs up to %d, %d after; view from the listing %v", before, seq, after, view)
	}
}
