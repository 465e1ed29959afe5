package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Errors of Push.
var (
	ErrClosed = errors.New("queue: closed")
	ErrFull   = errors.New("queue: full")
)

// Queue is a FIFO of T for one consumer goroutine. Its zero value is not
// usable; New makes one.
type Queue[T any] struct {
	max     int
	ready   chan struct{}
	dropped atomic.Uint64

	mu     sync.Mutex
	cond   sync.Cond // on mu: Done and Close broadcast
	items  []T
	head   int // items[:head] were popped
	closed bool
	// pushed, taken and done count the items pushed, taken by the
	// consumer (Pop, Take) and reported finished (Done).
	pushed, taken, done uint64
}

// New returns an empty queue that holds at most max items waiting to be
// taken (max <= 0: no bound).
func New[T any](max int) *Queue[T] {
	q := &Queue[T]{max: max, ready: make(chan struct{}, 1)}
	q.cond.L = &q.mu
	return q
}

// Push appends v and leaves a token on Ready. It never blocks: it returns
// ErrFull, and counts the item in Dropped, when max items wait, and
// ErrClosed after Close.
func (q *Queue[T]) Push(v T) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if q.max > 0 && len(q.items)-q.head >= q.max {
		q.mu.Unlock()
		q.dropped.Add(1)
		return ErrFull
	}
	if q.head > 0 && len(q.items) == cap(q.items) && q.head >= len(q.items)/2 {
		// Reuse the popped front instead of growing.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, v)
	q.pushed++
	q.mu.Unlock()
	q.signal()
	return nil
}

func (q *Queue[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Ready has a token after a Push or Close; the consumer then takes what
// is queued. A token may find the queue empty (the items it announced
// were taken already).
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Pop removes and returns the first item; ok is false when none is
// queued. Only the consumer calls it.
func (q *Queue[T]) Pop() (v T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		if cap(q.items) > 1024 {
			q.items = nil // release a burst's memory while idle
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
		return v, false
	}
	v = q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	q.taken++
	return v, true
}

// Take removes and returns every queued item, in order, and whether
// Close was called; the two are read at once, so an empty batch with
// closed true means nothing more will come. Only the consumer calls it.
func (q *Queue[T]) Take() (items []T, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items = q.items[q.head:]
	if len(items) == 0 {
		items = nil
	}
	q.items, q.head = nil, 0
	q.taken += uint64(len(items))
	return items, q.closed
}

// Done reports that the consumer finished n of the items it took.
func (q *Queue[T]) Done(n int) {
	q.mu.Lock()
	q.done += uint64(n)
	q.cond.Broadcast()
	q.mu.Unlock()
}

// Pushed returns how many items were pushed so far: the number of the
// last one.
func (q *Queue[T]) Pushed() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pushed
}

// Busy reports whether the consumer took items it did not report Done.
func (q *Queue[T]) Busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.taken > q.done
}

// WaitIdle blocks until every item pushed was reported Done.
func (q *Queue[T]) WaitIdle() {
	q.mu.Lock()
	for q.done < q.pushed {
		q.cond.Wait()
	}
	q.mu.Unlock()
}

// Flush blocks until the items pushed before the call were reported
// Done, the queue is closed, or ctx is done (it returns ctx.Err()).
// Unlike WaitIdle it does not wait for items pushed meanwhile, so a busy
// producer cannot hold it forever.
func (q *Queue[T]) Flush(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	target := q.pushed
	if q.done >= target || q.closed {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	for q.done < target && !q.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		q.cond.Wait()
	}
	return nil
}

// Dropped returns how many items Push refused because the queue was full.
func (q *Queue[T]) Dropped() uint64 { return q.dropped.Load() }

// Close refuses later pushes and leaves a token on Ready; what is queued
// stays for the consumer to take. It is idempotent.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	q.signal()
}

// Clear drops every queued item, as if the consumer took them and
// reported them Done.
func (q *Queue[T]) Clear() {
	q.mu.Lock()
	n := uint64(len(q.items) - q.head)
	q.taken += n
	q.done += n
	clear(q.items)
	q.items, q.head = nil, 0
	q.cond.Broadcast()
	q.mu.Unlock()
}
