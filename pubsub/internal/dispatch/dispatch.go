// Package dispatch is the local side shared by the Bus adapters of package
// pubsub (membus, natsbus, redisbus): the registry of a node's
// subscriptions, and the queue that feeds the node's delivery goroutine.
//
// Every Bus owns exactly one delivery goroutine, and only that goroutine
// calls handlers (Registry.Deliver), one message and one handler at a
// time. Handlers must not block (pubsub.Handler), so a second layer of
// per-subscription queues and goroutines would only repeat the "never
// block" job the handlers already do, at the price of a goroutine hop per
// message and a queue per subscription. A handler that breaks the contract
// stalls its own bus; the bounded queue in front of the delivery goroutine
// (Queue, or the adapter's receive channel) then drops and counts, which
// the tracker repairs with heartbeats and transfers.
//
// Nothing waits for a handler call under way: Unsubscribe and Close may be
// called from a handler (on the delivery goroutine), and a goroutine cannot
// tell, without its id, whether the call it would wait for is its own.
// Both only guarantee that no new call begins once they return; Close
// reports whether a call was under way, so that the adapter waits for its
// delivery goroutine only when the caller cannot be that goroutine.
package dispatch

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/gopresence/presence/internal/queue"
	"github.com/gopresence/presence/pubsub"
)

// DefaultMaxPending is the Queue bound used when the adapter's MaxPending
// is zero.
const DefaultMaxPending = 65536

// Config configures a Registry.
type Config struct {
	// OnTopic, if set, is called when topic gains its first subscription
	// (first == true) or loses its last one (first == false). It is called
	// with the registry's write lock held, so it must not call back into
	// the Registry; it must not block for long. An error on first == true
	// fails the Subscribe that triggered it. Adapters use it to add and
	// remove per-topic network subscriptions.
	OnTopic func(topic string, first bool) error
}

// Registry holds the local subscriptions of one node. The zero value is not
// usable; call New.
type Registry struct {
	cfg Config

	mu     sync.RWMutex
	topics map[string][]*Sub // copy-on-write slices: Deliver iterates without copying

	// state guards the decision to call a handler, so that Unsubscribe and
	// Close, once they return, are sure that no new call begins.
	state   sync.Mutex
	closed  bool
	calling bool // the delivery goroutine is inside a handler
}

// New returns an empty Registry.
func New(cfg Config) *Registry {
	return &Registry{cfg: cfg, topics: make(map[string][]*Sub)}
}

// Sub is one subscription. It implements pubsub.Subscription.
type Sub struct {
	reg     *Registry
	topic   string
	h       pubsub.Handler
	stopped bool // guarded by reg.state
}

var _ pubsub.Subscription = (*Sub)(nil)

// Subscribe registers h for topic. It fails with pubsub.ErrClosed after
// Close, or with the error of Config.OnTopic.
func (r *Registry) Subscribe(topic string, h pubsub.Handler) (*Sub, error) {
	if h == nil {
		panic("pubsub: nil Handler")
	}
	s := &Sub{reg: r, topic: topic, h: h}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isClosed() {
		return nil, pubsub.ErrClosed
	}
	old := r.topics[topic]
	if len(old) == 0 && r.cfg.OnTopic != nil {
		if err := r.cfg.OnTopic(topic, true); err != nil {
			return nil, err
		}
	}
	subs := make([]*Sub, len(old), len(old)+1)
	copy(subs, old)
	r.topics[topic] = append(subs, s)
	return s, nil
}

func (r *Registry) isClosed() bool {
	r.state.Lock()
	defer r.state.Unlock()
	return r.closed
}

// HasSubscribers reports whether topic has at least one subscription.
func (r *Registry) HasSubscribers(topic string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.topics[topic]) > 0
}

// Topics returns the topics that have at least one subscription.
func (r *Registry) Topics() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.topics))
	for t := range r.topics {
		out = append(out, t)
	}
	return out
}

// Deliver calls the handler of every subscription of m.Topic except except
// (nil excludes nothing), in the order they subscribed, with no lock held.
// Only the bus's delivery goroutine may call it: handlers are promised to
// be called one at a time. m.Data is shared by all receivers.
func (r *Registry) Deliver(m pubsub.Message, except *Sub) {
	r.mu.RLock()
	subs := r.topics[m.Topic]
	r.mu.RUnlock()
	for _, s := range subs {
		if s == except || !r.begin(s) {
			continue
		}
		s.h(m)
		r.state.Lock()
		r.calling = false
		r.state.Unlock()
	}
}

// begin decides whether s's handler is called now; true marks the call as
// under way.
func (r *Registry) begin(s *Sub) bool {
	r.state.Lock()
	defer r.state.Unlock()
	if r.closed || s.stopped {
		return false
	}
	r.calling = true
	return true
}

// Closed reports whether Close was called. The delivery goroutine checks
// it between messages so that it stops promptly.
func (r *Registry) Closed() bool { return r.isClosed() }

// Close stops every subscription: once it returns, no handler call begins.
// Later Subscribe calls fail with pubsub.ErrClosed. It reports whether a
// handler was running at that moment (on the delivery goroutine, possibly
// the caller itself); the adapter waits for its delivery goroutine only
// when none was, since only then the caller cannot be that goroutine.
// Later calls return false.
func (r *Registry) Close() (handlerRunning bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Lock()
	if r.closed {
		r.state.Unlock()
		return false
	}
	r.closed = true
	running := r.calling
	r.state.Unlock()
	if r.cfg.OnTopic != nil {
		for t := range r.topics {
			_ = r.cfg.OnTopic(t, false)
		}
	}
	r.topics = make(map[string][]*Sub)
	return running
}

// Topic returns the subscription's topic.
func (s *Sub) Topic() string { return s.topic }

// Unsubscribe removes the subscription: once it returns, the handler is
// not called again. A call under way is not waited for (it may be the one
// calling Unsubscribe). Idempotent; always returns nil.
func (s *Sub) Unsubscribe() error {
	r := s.reg
	r.state.Lock()
	s.stopped = true
	r.state.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	subs := r.topics[s.topic]
	i := indexOf(subs, s)
	if i < 0 {
		return nil
	}
	if len(subs) == 1 {
		delete(r.topics, s.topic)
		if r.cfg.OnTopic != nil {
			_ = r.cfg.OnTopic(s.topic, false)
		}
		return nil
	}
	ns := make([]*Sub, 0, len(subs)-1)
	ns = append(ns, subs[:i]...)
	r.topics[s.topic] = append(ns, subs[i+1:]...)
	return nil
}

func indexOf(subs []*Sub, s *Sub) int {
	for i, x := range subs {
		if x == s {
			return i
		}
	}
	return -1
}

// Queue is the bounded FIFO in front of a bus's delivery goroutine: a
// publisher appends without ever waiting for a handler, and the delivery
// goroutine takes the messages out in order (Deliver). A message that
// finds the queue full is dropped and counted: an unbounded queue would
// turn a handler that breaks the never-block contract into unbounded
// memory growth of the whole node, a bound turns it into counted loss,
// which Presence already tolerates (any Bus may lose messages).
type Queue struct {
	q        *queue.Queue[item]
	max      int
	log      *slog.Logger
	dropping atomic.Bool // the queue was full at the last Push (for logging)
}

type item struct {
	m      pubsub.Message
	except *Sub
}

// NewQueue returns an empty Queue that holds at most max messages (zero
// means DefaultMaxPending, a negative value unbounded). log receives a
// warning when the queue starts dropping; nil means discard.
func NewQueue(max int, log *slog.Logger) *Queue {
	if max == 0 {
		max = DefaultMaxPending
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{q: queue.New[item](max), max: max, log: log}
}

// Push appends m, to be delivered to every subscription of m.Topic but
// except. It never blocks; it reports false when the queue is closed or
// full (the message is dropped, and counted when full). m.Data is shared
// by all receivers; the caller must not modify it afterwards.
func (q *Queue) Push(m pubsub.Message, except *Sub) bool {
	switch err := q.q.Push(item{m, except}); err {
	case nil:
		if q.dropping.Load() {
			q.dropping.Store(false)
		}
		return true
	case queue.ErrFull:
		if !q.dropping.Swap(true) {
			q.log.Warn("pubsub: delivery queue full, dropping messages", "topic", m.Topic, "max_pending", q.max)
		}
	}
	return false
}

// Ready has a token after a Push; the delivery goroutine then calls
// Deliver.
func (q *Queue) Ready() <-chan struct{} { return q.q.Ready() }

// Deliver hands every queued message, in order, to r.Deliver, including
// those pushed meanwhile, and returns when the queue is empty or r is
// closed. Only the delivery goroutine may call it.
func (q *Queue) Deliver(r *Registry) {
	for !r.Closed() {
		it, ok := q.q.Pop()
		if !ok {
			return
		}
		r.Deliver(it.m, it.except)
	}
}

// Dropped returns how many messages Push dropped because the queue was
// full.
func (q *Queue) Dropped() uint64 { return q.q.Dropped() }

// Close drops what is queued; later Push calls drop their message without
// counting it.
func (q *Queue) Close() {
	q.q.Close()
	q.q.Clear()
}
