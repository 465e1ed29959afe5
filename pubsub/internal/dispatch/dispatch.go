// Package dispatch is the local subscription registry shared by the Bus
// adapters of package pubsub (membus, natsbus, redisbus).
//
// A Registry maps topics to subscriptions. Each Sub owns one delivery
// goroutine and a bounded FIFO queue: Dispatch only appends to the queues of
// the matching subscriptions (it never calls a handler and never blocks on
// one), and each delivery goroutine calls its handler with no lock of the
// registry held. A queue that is full drops the new message and counts it;
// the tracker repairs such loss with heartbeats and transfers.
//
// Why bounded: an unbounded queue turns one stuck handler into unbounded
// memory growth of the whole node; a bound turns it into counted loss,
// which Presence already tolerates (any Bus may lose messages). The default
// bound (DefaultMaxPending) is large enough that a handler which honours
// the pubsub.Handler contract (never block) does not lose messages in
// bursts.
package dispatch

import (
	"github.com/gopresence/presence/internal/goid"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/gopresence/presence/pubsub"
)

// DefaultMaxPending is the per-subscription queue bound used when
// Config.MaxPending is zero.
const DefaultMaxPending = 65536

// Config configures a Registry.
type Config struct {
	// MaxPending bounds the messages queued for one subscription (not yet
	// handed to its handler). A message that finds the queue full is
	// dropped and counted (see Registry.Dropped). Zero means
	// DefaultMaxPending; a negative value means unbounded.
	MaxPending int

	// OnTopic, if set, is called when topic gains its first subscription
	// (first == true) or loses its last one (first == false). It is called
	// with the registry's write lock held, so it must not call back into
	// the Registry; it must not block for long. An error on first == true
	// fails the Subscribe that triggered it. Adapters use it to add and
	// remove per-topic network subscriptions.
	OnTopic func(topic string, first bool) error

	// Logger receives a warning when a subscription starts dropping. Nil
	// means discard.
	Logger *slog.Logger
}

// Registry holds the local subscriptions of one node. The zero value is not
// usable; call New.
type Registry struct {
	cfg     Config
	log     *slog.Logger
	dropped atomic.Uint64

	mu     sync.RWMutex
	closed bool
	topics map[string][]*Sub // copy-on-write slices: Dispatch iterates without copying
}

// New returns an empty Registry.
func New(cfg Config) *Registry {
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, log: log, topics: make(map[string][]*Sub)}
}

// Sub is one subscription. It implements pubsub.Subscription.
type Sub struct {
	reg   *Registry
	topic string
	h     pubsub.Handler
	done  chan struct{} // closed when the delivery goroutine has returned

	mu       sync.Mutex
	cond     sync.Cond // signalled on enqueue, on stop and when a call ends
	queue    []pubsub.Message
	head     int
	stopped  bool
	calling  bool  // the handler is running
	gid      int64 // id of the delivery goroutine, for re-entrant Unsubscribe/Close
	dropping bool  // the queue was full at the last enqueue (for logging)
}

var _ pubsub.Subscription = (*Sub)(nil)

// Subscribe registers h for topic and starts its delivery goroutine. It
// fails with pubsub.ErrClosed after Close, or with the error of
// Config.OnTopic.
func (r *Registry) Subscribe(topic string, h pubsub.Handler) (*Sub, error) {
	if h == nil {
		panic("pubsub: nil Handler")
	}
	s := &Sub{reg: r, topic: topic, h: h, done: make(chan struct{})}
	s.cond.L = &s.mu
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, pubsub.ErrClosed
	}
	old := r.topics[topic]
	if len(old) == 0 && r.cfg.OnTopic != nil {
		if err := r.cfg.OnTopic(topic, true); err != nil {
			r.mu.Unlock()
			return nil, err
		}
	}
	subs := make([]*Sub, len(old), len(old)+1)
	copy(subs, old)
	r.topics[topic] = append(subs, s)
	r.mu.Unlock()
	go s.run()
	return s, nil
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

// Dispatch queues m for every subscription of m.Topic except except (nil
// excludes nothing). It never blocks on a handler. m.Data is shared by all
// receivers; the caller must not modify it afterwards. It returns the
// number of subscriptions the message was queued for.
func (r *Registry) Dispatch(m pubsub.Message, except *Sub) int {
	r.mu.RLock()
	subs := r.topics[m.Topic]
	r.mu.RUnlock()
	n := 0
	for _, s := range subs {
		if s != except && s.enqueue(m) {
			n++
		}
	}
	return n
}

// Dropped returns how many messages were dropped because a subscription's
// queue was full.
func (r *Registry) Dropped() uint64 { return r.dropped.Load() }

// Close stops every subscription and waits for their delivery goroutines,
// except the one calling Close (Close may be called from a handler). Later
// Subscribe calls fail with pubsub.ErrClosed. Only the first call waits;
// later calls return at once.
func (r *Registry) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	var all []*Sub
	for t, subs := range r.topics {
		all = append(all, subs...)
		if r.cfg.OnTopic != nil {
			_ = r.cfg.OnTopic(t, false)
		}
	}
	r.topics = make(map[string][]*Sub)
	r.mu.Unlock()
	var self int64 = -1
	for _, s := range all {
		s.stop()
	}
	for _, s := range all {
		s.mu.Lock()
		gid := s.gid
		s.mu.Unlock()
		if gid != 0 {
			if self == -1 {
				self = goid.Get()
			}
			if gid == self {
				continue
			}
		}
		<-s.done
	}
}

// Topic returns the subscription's topic.
func (s *Sub) Topic() string { return s.topic }

// Unsubscribe removes the subscription. When it returns, the handler is
// not running (unless Unsubscribe was called from the handler itself) and
// will not be called again. Idempotent; always returns nil.
func (s *Sub) Unsubscribe() error {
	r := s.reg
	r.mu.Lock()
	if subs := r.topics[s.topic]; len(subs) > 0 {
		if i := indexOf(subs, s); i >= 0 {
			if len(subs) == 1 {
				delete(r.topics, s.topic)
				if r.cfg.OnTopic != nil && !r.closed {
					_ = r.cfg.OnTopic(s.topic, false)
				}
			} else {
				ns := make([]*Sub, 0, len(subs)-1)
				ns = append(ns, subs[:i]...)
				r.topics[s.topic] = append(ns, subs[i+1:]...)
			}
		}
	}
	r.mu.Unlock()
	s.stop()
	s.mu.Lock()
	if s.calling && s.gid != goid.Get() {
		for s.calling {
			s.cond.Wait()
		}
	}
	s.mu.Unlock()
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

func (s *Sub) stop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		clear(s.queue)
		s.queue, s.head = nil, 0
		s.cond.Broadcast()
	}
	s.mu.Unlock()
}

func (s *Sub) enqueue(m pubsub.Message) bool {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return false
	}
	if max := s.reg.cfg.MaxPending; max > 0 && len(s.queue)-s.head >= max {
		first := !s.dropping
		s.dropping = true
		s.mu.Unlock()
		s.reg.dropped.Add(1)
		if first {
			s.reg.log.Warn("pubsub: subscription queue full, dropping messages",
				"topic", s.topic, "max_pending", max)
		}
		return false
	}
	s.dropping = false
	if s.head > 0 && len(s.queue) == cap(s.queue) && s.head >= len(s.queue)/2 {
		// Reuse the consumed front instead of growing.
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	s.queue = append(s.queue, m)
	s.cond.Broadcast()
	s.mu.Unlock()
	return true
}

func (s *Sub) run() {
	defer close(s.done)
	s.mu.Lock()
	s.gid = goid.Get()
	for {
		for s.head == len(s.queue) && !s.stopped {
			if cap(s.queue) > 1024 {
				s.queue = nil // release a burst's memory while idle
			} else {
				s.queue = s.queue[:0]
			}
			s.head = 0
			s.cond.Wait()
		}
		if s.stopped {
			s.mu.Unlock()
			return
		}
		m := s.queue[s.head]
		s.queue[s.head] = pubsub.Message{}
		s.head++
		s.calling = true
		s.mu.Unlock()

		s.h(m)

		s.mu.Lock()
		s.calling = false
		s.cond.Broadcast()
	}
}
