package membus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/internal/dispatch"
)

// ErrNameTaken is returned by Network.Join when a live node of the network
// already has the name.
var ErrNameTaken = errors.New("membus: node name already in use")

// ErrEmptyName is returned by Network.Join for an empty node name.
var ErrEmptyName = errors.New("membus: empty node name")

// Config configures a Network. The zero value is ready to use.
type Config struct {
	// MaxPending bounds the queue of each node: the messages delivered to
	// it that its delivery goroutine has not handed to the handlers yet.
	// Zero means 65536 messages; a negative value means unbounded. A larger
	// bound absorbs longer stalls of a handler at the cost of memory; a
	// message that finds the queue full is dropped and counted.
	MaxPending int

	// Logger receives warnings (a node's queue that starts dropping).
	// Nil means discard.
	Logger *slog.Logger
}

// DropFunc decides whether a message published by node from is lost on its
// way to node to (from != to). It is called synchronously by the
// publishing goroutine, with no lock held, once per receiving node; it must
// be safe for concurrent use. data must not be modified or retained.
type DropFunc func(from, to, topic string, data []byte) bool

// Network is a set of in-process nodes that can reach each other. It is
// safe for concurrent use.
type Network struct {
	cfg     Config
	dropped atomic.Uint64 // messages lost to a partition or the DropFunc

	mu    sync.RWMutex
	nodes map[string]*Bus
	group map[string]int // node → partition group; nil when healed
	drop  DropFunc
}

// NewNetwork returns an empty network with the default Config.
func NewNetwork() *Network { return NewNetworkConfig(Config{}) }

// NewNetworkConfig returns an empty network configured by cfg.
func NewNetworkConfig(cfg Config) *Network {
	return &Network{cfg: cfg, nodes: make(map[string]*Bus)}
}

// New returns a Bus on a fresh network of its own (a single-node cluster).
// Any name is accepted, even "".
func New(nodeName string) *Bus {
	n := NewNetwork()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.join(nodeName)
}

// Join adds a node called name and returns its Bus. It fails with
// ErrNameTaken while another live (not closed) node has the same name, and
// with ErrEmptyName for "". The name becomes free again when that Bus is
// closed.
func (n *Network) Join(name string) (*Bus, error) {
	if name == "" {
		return nil, ErrEmptyName
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrNameTaken, name)
	}
	return n.join(name), nil
}

// join adds a node; n.mu must be held.
func (n *Network) join(name string) *Bus {
	b := &Bus{
		net:   n,
		name:  name,
		reg:   dispatch.New(dispatch.Config{}),
		queue: dispatch.NewQueue(n.cfg.MaxPending, n.cfg.Logger),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	n.nodes[name] = b
	return b
}

// Nodes returns the names of the live nodes, sorted.
func (n *Network) Nodes() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, 0, len(n.nodes))
	for name := range n.nodes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Partition splits the network: from now on, messages between nodes of
// different groups are dropped. A node named in no group (including one
// that joins later) can reach no other node until Heal. A later Partition
// replaces the earlier one.
func (n *Network) Partition(groups ...[]string) {
	g := make(map[string]int)
	for i, names := range groups {
		for _, name := range names {
			g[name] = i
		}
	}
	n.mu.Lock()
	n.group = g
	n.mu.Unlock()
}

// Heal removes the partition: every node reaches every other node again
// (the DropFunc, if any, still applies).
func (n *Network) Heal() {
	n.mu.Lock()
	n.group = nil
	n.mu.Unlock()
}

// SetDropFunc installs f as the per-link filter (nil removes it).
func (n *Network) SetDropFunc(f DropFunc) {
	n.mu.Lock()
	n.drop = f
	n.mu.Unlock()
}

// Dropped returns how many deliveries to a node were lost to a partition
// or to the DropFunc.
func (n *Network) Dropped() uint64 { return n.dropped.Load() }

// reachable reports whether from can send to to under the current
// partition. Called with n.mu held.
func (n *Network) reachable(from, to string) bool {
	if from == to || n.group == nil {
		return true
	}
	gf, okf := n.group[from]
	gt, okt := n.group[to]
	return okf && okt && gf == gt
}

// route delivers m from node from to node only (when direct) or to every
// node, skipping except on the origin node.
func (n *Network) route(from *Bus, direct bool, only string, m pubsub.Message, except *dispatch.Sub) error {
	var stack [8]*Bus
	targets := stack[:0]
	n.mu.RLock()
	if n.nodes[from.name] != from {
		n.mu.RUnlock()
		return pubsub.ErrClosed
	}
	drop := n.drop
	if direct {
		if b, ok := n.nodes[only]; ok {
			if n.reachable(from.name, only) {
				targets = append(targets, b)
			} else {
				n.dropped.Add(1)
			}
		}
	} else {
		for name, b := range n.nodes {
			if n.reachable(from.name, name) {
				targets = append(targets, b)
			} else {
				n.dropped.Add(1)
			}
		}
	}
	n.mu.RUnlock()
	for _, b := range targets {
		if b != from && drop != nil && drop(from.name, b.name, m.Topic, m.Data) {
			n.dropped.Add(1)
			continue
		}
		if b == from {
			b.queue.Push(m, except)
		} else {
			b.queue.Push(m, nil)
		}
	}
	return nil
}

// Bus is one node of a Network. It implements pubsub.Bus and is safe for
// concurrent use.
type Bus struct {
	net   *Network
	name  string
	reg   *dispatch.Registry
	queue *dispatch.Queue // what the network delivered to this node
	stop  chan struct{}   // closed by Close
	done  chan struct{}   // closed when deliver has returned (or by Close, if it never ran)

	// start runs deliver once there is something to deliver to (the first
	// Subscribe), so that a Bus never subscribed to, such as the one of a
	// Presence made and dropped without Start, holds no goroutine; Close
	// uses it to close done when deliver never ran.
	start     sync.Once
	closeOnce sync.Once
}

var _ pubsub.Bus = (*Bus)(nil)

// deliver is the node's delivery goroutine: the only caller of its
// handlers.
func (b *Bus) deliver() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			return
		case <-b.queue.Ready():
			b.queue.Deliver(b.reg)
		}
	}
}

// NodeName returns the node's name.
func (b *Bus) NodeName() string { return b.name }

// Subscribe registers h for topic. See pubsub.Bus.
func (b *Bus) Subscribe(topic string, h pubsub.Handler) (pubsub.Subscription, error) {
	s, err := b.reg.Subscribe(topic, h)
	if err != nil {
		return nil, err
	}
	b.start.Do(func() { go b.deliver() })
	return s, nil
}

// Broadcast delivers data to every subscriber of topic on every reachable
// node, this one included. See pubsub.Bus.
func (b *Bus) Broadcast(ctx context.Context, topic string, data []byte) error {
	return b.BroadcastFrom(ctx, nil, topic, data)
}

// BroadcastFrom is Broadcast that skips from on this node. from must be a
// Subscription returned by this Bus; any other value skips nothing.
func (b *Bus) BroadcastFrom(ctx context.Context, from pubsub.Subscription, topic string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	except, _ := from.(*dispatch.Sub)
	return b.net.route(b, false, "", b.message(topic, data), except)
}

// DirectBroadcast delivers data to the subscribers of topic on node only.
// An unknown or unreachable node is not an error. See pubsub.Bus.
func (b *Bus) DirectBroadcast(ctx context.Context, node, topic string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.net.route(b, true, node, b.message(topic, data), nil)
}

func (b *Bus) message(topic string, data []byte) pubsub.Message {
	return pubsub.Message{Topic: topic, From: b.name, Data: slices.Clone(data)}
}

// Dropped returns how many messages to this node were dropped because its
// queue was full.
func (b *Bus) Dropped() uint64 { return b.queue.Dropped() }

// Close removes the node from its network (its name becomes free) and
// stops its subscriptions: once it returns, no handler call begins and
// what is still queued is dropped. It waits for the delivery goroutine to
// end, except when a handler is running (it may be the one calling Close;
// the goroutine then ends when that handler returns). Later calls return
// pubsub.ErrClosed from every method but NodeName, Close and Unsubscribe.
// Idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.net.mu.Lock()
		if b.net.nodes[b.name] == b {
			delete(b.net.nodes, b.name)
		}
		b.net.mu.Unlock()
		running := b.reg.Close()
		b.queue.Close()
		close(b.stop)
		b.start.Do(func() { close(b.done) }) // deliver never ran
		if !running {
			<-b.done
		}
	})
	return nil
}

// UniqueNodeNames reports that this Bus refuses a second live node with an
// existing name (see pubsub.UniqueNames).
func (b *Bus) UniqueNodeNames() bool { return true }
