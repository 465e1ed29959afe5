package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
)

// A command whose ctx is done changes nothing and returns ctx's error.
func TestCommandsHonourDoneCtx(t *testing.T) {
	forPools(t, func(t *testing.T, n *node) {
		ctx := context.Background()
		tr := n.tr
		if _, err := tr.Track(ctx, "o", "t", "k", []byte(`{"v":1}`)); err != nil {
			t.Fatal(err)
		}
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := tr.Track(done, "o", "t2", "k", []byte(`{}`)); !errors.Is(err, context.Canceled) {
			t.Fatalf("track: %v", err)
		}
		if _, err := tr.Update(done, "o", "t", "k", []byte(`{"v":2}`)); !errors.Is(err, context.Canceled) {
			t.Fatalf("update: %v", err)
		}
		called := false
		if _, err := tr.UpdateFunc(done, "o", "t", "k", func(json.RawMessage) (json.RawMessage, error) {
			called = true
			return []byte(`{}`), nil
		}); !errors.Is(err, context.Canceled) || called {
			t.Fatalf("update func: %v, fn called: %v", err, called)
		}
		if err := tr.Untrack(done, "o", "t", "k"); !errors.Is(err, context.Canceled) {
			t.Fatalf("untrack: %v", err)
		}
		if err := tr.UntrackOwner(done, "o"); !errors.Is(err, context.Canceled) {
			t.Fatalf("untrack owner: %v", err)
		}
		l := tr.List("t")
		if len(l) != 1 || string(l[0].Meta[len(l[0].Meta)-6:]) != `"v":1}` || len(tr.List("t2")) != 0 {
			t.Fatalf("lists %+v and %+v", l, tr.List("t2"))
		}
	})
}

// laterCtx is live when first asked and done afterwards: a caller whose
// ctx ends while its command waits for the shard's lock.
type laterCtx struct {
	context.Context
	asked atomic.Int32
}

func (c *laterCtx) Err() error {
	if c.asked.Add(1) == 1 {
		return nil
	}
	return context.DeadlineExceeded
}

// A command whose ctx ends while it waits for the shard is not applied
// once it gets the shard.
func TestCommandNotAppliedAfterCtxEndsInWait(t *testing.T) {
	ns := startNodes(t, membus.NewNetwork(), 1, "n1")
	defer stopNodes(ns)
	tr := ns[0].tr
	unlock := tracker.LockShardForTest(tr, "t")
	errc := make(chan error, 1)
	go func() {
		_, err := tr.Track(&laterCtx{Context: context.Background()}, "o", "t", "k", []byte(`{}`))
		errc <- err
	}()
	unlock()
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("track: %v", err)
	}
	if n := tr.Count("t"); n != 0 {
		t.Fatalf("tracked %d after its ctx ended", n)
	}
}
