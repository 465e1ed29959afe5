package tracker

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/gopresence/presence/internal/crdt"
)

// dispatcher delivers a shard's diffs in order from its own goroutine, so
// the shard never waits for subscribers. Its queue is unbounded: diffs are
// never dropped (a subscriber that cannot keep up must shed load itself).
type dispatcher struct {
	mu     sync.Mutex
	queue  [][]crdt.Diff
	signal chan struct{}
	closed bool
	idle   *sync.Cond
	busy   bool
	// pushed and done count the batches queued and delivered (see flush).
	pushed, done uint64
	handle       func([]Diff)
	logger       *slog.Logger
}

func (d *dispatcher) init(h func([]Diff), logger *slog.Logger) {
	d.signal = make(chan struct{}, 1)
	d.handle = h
	d.logger = logger
	d.idle = sync.NewCond(&d.mu)
}

func (d *dispatcher) push(ds []crdt.Diff) {
	if d.handle == nil {
		return
	}
	d.mu.Lock()
	d.queue = append(d.queue, ds)
	d.pushed++
	d.mu.Unlock()
	select {
	case d.signal <- struct{}{}:
	default:
	}
}

// seq is the Seq of the last batch queued: the diffs the shard's state
// holds so far.
func (d *dispatcher) seq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pushed
}

func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.signal <- struct{}{}:
	default:
	}
}

// wait blocks until every queued diff was delivered.
func (d *dispatcher) wait() {
	d.mu.Lock()
	for len(d.queue) > 0 || d.busy {
		d.idle.Wait()
	}
	d.mu.Unlock()
}

// flush blocks until every batch queued before the call was delivered,
// the dispatcher closed, or ctx is done. Unlike wait it does not wait for
// batches queued meanwhile, so a busy shard cannot hold it forever.
func (d *dispatcher) flush(ctx context.Context) error {
	if d.handle == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	target := d.pushed
	if d.done >= target || d.closed {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.idle.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	for d.done < target && !d.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		d.idle.Wait()
	}
	return nil
}

func (d *dispatcher) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for range d.signal {
		for {
			d.mu.Lock()
			q := d.queue
			d.queue = nil
			closed := d.closed
			d.busy = len(q) > 0
			if len(q) == 0 {
				d.idle.Broadcast()
			}
			d.mu.Unlock()
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
			for i, ds := range q {
				seq := d.done + uint64(i) + 1
				for _, x := range ds {
					d.deliver(groupByTopic(x, seq))
				}
			}
			d.mu.Lock()
			d.busy = false
			d.done += uint64(len(q))
			d.idle.Broadcast()
			d.mu.Unlock()
		}
	}
}

// deliver calls the handler; a panic in it is logged and survived, so one
// faulty subscriber cannot stop replication (Phoenix crashes the shard).
func (d *dispatcher) deliver(ds []Diff) {
	defer func() {
		if r := recover(); r != nil && d.logger != nil {
			d.logger.Error("tracker: HandleDiff panicked", "panic", r)
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
