package tracker_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopresence/presence/tracker"
)

// Flush returns once the diffs made before it were delivered, and not
// later: a diff made meanwhile does not hold it. It gives up with ctx.
// (One shard: every topic's diffs go through the same queue.)
func TestFlushWaitsForEarlierDiffsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		release := make(chan struct{}, 2)
		var topics []string
		tr, _ := tracker.New(fast(newBus(t, "n1"), 1), func(ds []tracker.Diff) {
			<-release
			for _, d := range ds {
				topics = append(topics, d.Topic)
			}
		})
		tr.Start(ctx)
		defer tr.Close()
		tr.Track(ctx, "o", "t1", "k", []byte(`{}`))

		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := tr.Flush(short, "t1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Flush of an undelivered diff: %v", err)
		}

		done := make(chan error, 1)
		go func() { done <- tr.Flush(ctx, "t2") }()
		synctest.Wait()
		tr.Track(ctx, "o", "t2", "k", []byte(`{}`)) // after Flush began
		release <- struct{}{}
		if err := <-done; err != nil || len(topics) != 1 || topics[0] != "t1" {
			t.Fatalf("Flush: %v, delivered %v", err, topics)
		}
		release <- struct{}{}
		tr.Sync()
	})
}
