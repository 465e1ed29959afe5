package tracker

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/queue"
)

// dispatcher delivers a shard's diffs in order from its own goroutine, so
// the shard never waits for subscribers. Its queue is unbounded: diffs are
// never dropped (a subscriber that cannot keep up must shed load itself).
// A batch's Seq is its number in the queue (queue.Queue.Pushed).
type dispatcher struct {
	q      *queue.Queue[[]crdt.Diff]
	handle func([]Diff)
	logger *slog.Logger
}

func (d *dispatcher) init(h func([]Diff), logger *slog.Logger) {
	d.q = queue.New[[]crdt.Diff](0)
	d.handle = h
	d.logger = logger
}

func (d *dispatcher) push(ds []crdt.Diff) {
	if d.handle == nil {
		return
	}
	d.q.Push(ds) // unbounded; the shard closes the queue only once it stopped
}

// seq is the Seq of the last batch queued: the diffs the shard's state
// holds so far.
func (d *dispatcher) seq() uint64 { return d.q.Pushed() }

func (d *dispatcher) close() { d.q.Close() }

// wait blocks until every queued diff was delivered.
func (d *dispatcher) wait() { d.q.WaitIdle() }

// flush blocks until every batch queued before the call was delivered,
// the dispatcher closed, or ctx is done. Unlike wait it does not wait for
// batches queued meanwhile, so a busy shard cannot hold it forever.
func (d *dispatcher) flush(ctx context.Context) error {
	if d.handle == nil {
		return nil
	}
	return d.q.Flush(ctx)
}

// run delivers the queued batches until the queue is closed and empty.
func (d *dispatcher) run(wg *sync.WaitGroup) {
	defer wg.Done()
	var delivered uint64
	for range d.q.Ready() {
		for {
			q, closed := d.q.Take()
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
			for i, ds := range q {
				seq := delivered + uint64(i) + 1
				for _, x := range ds {
					d.deliver(groupByTopic(x, seq))
				}
			}
			delivered += uint64(len(q))
			d.q.Done(len(q))
		}
	}
}

// deliver calls the handler; a panic in it is logged and survived, so one
// faulty subscriber cannot stop replication (Phoenix crashes the shard).
func (d *dispatcher) deliver(ds []Diff) {
	defer func() {
		if r := recover(); r != nil && d.logger != nil {
			d.logger.Error("tracker: handleDiff panicked", "panic", r)
		}
	}()
	d.handle(ds)
}

// groupByTopic splits a diff (sorted by topic) into per-topic diffs.
func groupByTopic(d crdt.Diff, seq uint64) []Diff {
	var out []Diff
	idx := map[string]int{}
	get := func(topic string) *Diff {
		i, ok := idx[topic]
		if !ok {
			i = len(out)
			idx[topic] = i
			out = append(out, Diff{Topic: topic, Seq: seq})
		}
		return &out[i]
	}
	for _, e := range d.Joins {
		x := get(e.Topic)
		x.Joins = append(x.Joins, toPresence(e))
	}
	for _, e := range d.Leaves {
		x := get(e.Topic)
		x.Leaves = append(x.Leaves, toPresence(e))
	}
	slices.SortFunc(out, func(a, b Diff) int {
		if a.Topic < b.Topic {
			return -1
		}
		if a.Topic > b.Topic {
			return 1
		}
		return 0
	})
	return out
}
