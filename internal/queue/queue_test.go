package queue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// Items come out in push order, whatever the mix of Pop and Take; a bound
// refuses and counts; Close refuses later pushes but leaves the queued
// items to the consumer; Clear drops them.
func TestOrderBoundClose(t *testing.T) {
	q := New[int](3)
	for i := range 5 {
		err := q.Push(i)
		if want := error(nil); i >= 3 {
			want = ErrFull
			if !errors.Is(err, want) {
				t.Fatalf("Push(%d) = %v, want %v", i, err, want)
			}
		} else if err != nil {
			t.Fatalf("Push(%d) = %v", i, err)
		}
	}
	if q.Dropped() != 2 || q.Pushed() != 3 {
		t.Fatalf("Dropped %d, Pushed %d", q.Dropped(), q.Pushed())
	}
	if v, ok := q.Pop(); !ok || v != 0 {
		t.Fatalf("Pop = %d, %v", v, ok)
	}
	if err := q.Push(3); err != nil { // a popped item frees its place
		t.Fatal(err)
	}
	q.Close()
	if err := q.Push(9); !errors.Is(err, ErrClosed) || q.Dropped() != 2 {
		t.Fatalf("Push after Close = %v, Dropped %d", err, q.Dropped())
	}
	items, closed := q.Take()
	if !slices.Equal(items, []int{1, 2, 3}) || !closed {
		t.Fatalf("Take = %v, %v", items, closed)
	}
	if items, closed := q.Take(); items != nil || !closed {
		t.Fatalf("second Take = %v, %v", items, closed)
	}
	q.Done(4)
	q.WaitIdle()

	c := New[int](0)
	for i := range 3 {
		c.Push(i)
	}
	c.Clear()
	if _, ok := c.Pop(); ok {
		t.Fatal("Pop after Clear found an item")
	}
	c.WaitIdle() // cleared items count as done
}

// A consumer goroutine that reports Done: Flush waits for what was
// pushed before it, Busy is true only between Take and Done, WaitIdle
// waits for everything; Flush gives up with ctx.
func TestConsumerProgress(t *testing.T) {
	q := New[int](0)
	release := make(chan struct{})
	var got []int
	var wg sync.WaitGroup
	wg.Go(func() {
		for range q.Ready() {
			for {
				items, closed := q.Take()
				if len(items) == 0 {
					if closed {
						return
					}
					break
				}
				<-release
				got = append(got, items...)
				q.Done(len(items))
			}
		}
	})
	q.Push(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with the consumer held: %v", err)
	}
	for !q.Busy() {
		time.Sleep(time.Millisecond)
	}
	q.Push(2)
	close(release)
	if err := q.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.WaitIdle()
	if q.Busy() {
		t.Fatal("Busy after WaitIdle")
	}
	q.Close()
	wg.Wait()
	if !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("consumed %v", got)
	}
	if err := q.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
}
