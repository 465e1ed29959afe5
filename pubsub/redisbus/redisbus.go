package redisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/internal/dispatch"
)

// DefaultNamespace prefixes the Redis channels when Config.Namespace is "".
const DefaultNamespace = "presence"

// DefaultURL is dialed when neither Config.Client nor Config.URL is set.
const DefaultURL = "redis://127.0.0.1:6379"

// ErrNoNodeName is returned by New when Config.NodeName is empty.
var ErrNoNodeName = errors.New("redisbus: NodeName is required")

// ErrNameTaken is returned by New when a live Bus of the same namespace
// already has Config.NodeName (node names must be unique: peers are told apart by name alone, so two
// live nodes of one name would make each other's heartbeats look like restarts).
var ErrNameTaken = errors.New("redisbus: node name taken by a live node")

// Config configures a Bus. NodeName is required; every other zero field
// means its documented default.
type Config struct {
	// Client is the Redis client to use (a *redis.Client, a
	// *redis.ClusterClient, ...). The Bus does not close it. When nil, the
	// Bus creates a client from URL and closes it on Close.
	Client redis.UniversalClient

	// URL is a redis:// or rediss:// URL (see redis.ParseURL) used when
	// Client is nil. Default DefaultURL.
	URL string

	// NodeName is this node's unique name in the cluster. Required.
	NodeName string

	// Namespace prefixes the Redis channels ("<ns>:b", "<ns>:n:<node>"),
	// so that several clusters can share one Redis. Default "presence".
	Namespace string

	// MaxPending bounds the queue of the messages this node sends to
	// itself (Broadcast, DirectBroadcast to its own name) that the delivery
	// goroutine has not handed to the handlers yet; when it is full they
	// are dropped and counted (Bus.Dropped). Zero means 65536 messages;
	// negative means unbounded.
	MaxPending int

	// ReceiveBuffer is the capacity of the channel between go-redis's
	// reader and the Bus's delivery goroutine, the one queue that messages
	// from other nodes pass on this side of Redis. Handlers never block,
	// so it absorbs bursts and scheduling hiccups; when it is full go-redis
	// stops reading (Redis buffers meanwhile), and drops a message it
	// could not hand over within a minute (logged by go-redis).
	// Default 4096.
	ReceiveBuffer int

	// HealthCheckInterval is how long the subscriber connection may stay
	// silent before go-redis PINGs it (and re-dials if the PING fails).
	// Shorter detects a dead connection sooner at the cost of a PING per
	// interval. Default 3 s.
	HealthCheckInterval time.Duration

	// Logger receives re-subscriptions and drops. Nil means discard.
	Logger *slog.Logger
}

// Bus is a pubsub.Bus over Redis. It is safe for concurrent use.
type Bus struct {
	name      string
	client    redis.UniversalClient
	ownClient bool
	ps        *redis.PubSub
	log       *slog.Logger
	reg       *dispatch.Registry
	local     *dispatch.Queue // messages to this node's own subscribers

	bChan string // "<ns>:b"
	nChan string // "<ns>:n:" — append a node name

	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	malformed atomic.Uint64
}

var _ pubsub.Bus = (*Bus)(nil)

// New subscribes to the node's Redis channels and returns a Bus once Redis
// has confirmed both subscriptions. ctx bounds that wait.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.NodeName == "" {
		return nil, ErrNoNodeName
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if cfg.ReceiveBuffer <= 0 {
		cfg.ReceiveBuffer = 4096
	}
	if cfg.HealthCheckInterval <= 0 {
		cfg.HealthCheckInterval = 3 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeName)
	b := &Bus{
		name:   cfg.NodeName,
		client: cfg.Client,
		log:    log,
		bChan:  ns + ":b",
		nChan:  ns + ":n:",
		done:   make(chan struct{}),
	}
	if b.client == nil {
		url := cfg.URL
		if url == "" {
			url = DefaultURL
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redisbus: %w", err)
		}
		b.client, b.ownClient = redis.NewClient(opt), true
	}
	// Node names are unique: a live Bus of ours holds a subscription to its
	// node channel.
	// A Bus of that name that has just closed may still be counted for a
	// moment (Redis drops a closed connection's subscriptions
	// asynchronously), so a taken name is asked again for up to a second.
	var taken bool
	for deadline := time.Now().Add(time.Second); ; {
		n, err := b.client.PubSubNumSub(ctx, b.nChan+b.name).Result()
		if err != nil {
			if b.ownClient {
				_ = b.client.Close()
			}
			return nil, fmt.Errorf("redisbus: %w", err)
		}
		taken = n[b.nChan+b.name] > 0
		if !taken || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if taken {
		if b.ownClient {
			_ = b.client.Close()
		}
		return nil, fmt.Errorf("%w: %q", ErrNameTaken, cfg.NodeName)
	}
	b.reg = dispatch.New(dispatch.Config{})
	b.local = dispatch.NewQueue(cfg.MaxPending, log)

	b.ps = b.client.Subscribe(ctx, b.bChan, b.nChan+b.name)
	for confirmed := 0; confirmed < 2; {
		msg, err := b.ps.Receive(ctx)
		if err != nil {
			b.abort()
			return nil, fmt.Errorf("redisbus: subscribe: %w", err)
		}
		if _, ok := msg.(*redis.Subscription); ok {
			confirmed++
		}
	}
	ch := b.ps.ChannelWithSubscriptions(
		redis.WithChannelSize(cfg.ReceiveBuffer),
		redis.WithChannelHealthCheckInterval(cfg.HealthCheckInterval),
	)
	go b.receive(ch)
	return b, nil
}

func (b *Bus) abort() {
	_ = b.ps.Close()
	if b.ownClient {
		_ = b.client.Close()
	}
	b.reg.Close()
}

// receive is the delivery goroutine, the only caller of the handlers: it
// decodes what go-redis reads and what this node sent itself, and hands it
// to the local subscriptions. It ends when go-redis closes ch (after
// PubSub.Close).
func (b *Bus) receive(ch <-chan any) {
	defer close(b.done)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				b.handle(m.Channel, []byte(m.Payload))
			case *redis.Subscription:
				b.log.Info("redisbus: re-subscribed after reconnect", "channel", m.Channel, "kind", m.Kind)
			}
		case <-b.local.Ready():
			b.local.Deliver(b.reg)
		}
	}
}

func (b *Bus) handle(channel string, body []byte) {
	e, err := decodeEnvelope(body)
	if err != nil || (e.mode == modeBroadcast) != (channel == b.bChan) {
		b.malformed.Add(1)
		b.log.Debug("redisbus: dropping malformed message", "channel", channel)
		return
	}
	if e.from == b.name && e.mode == modeBroadcast {
		return // served locally when it was sent
	}
	b.reg.Deliver(pubsub.Message{Topic: e.topic, From: e.from, Data: e.data}, nil)
}

// NodeName returns the node's name.
func (b *Bus) NodeName() string { return b.name }

// Subscribe registers h for topic. Redis subscriptions are fixed, so this
// is a local operation and is effective at once. See pubsub.Bus.
func (b *Bus) Subscribe(topic string, h pubsub.Handler) (pubsub.Subscription, error) {
	if b.closed.Load() {
		return nil, pubsub.ErrClosed
	}
	s, err := b.reg.Subscribe(topic, h)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Broadcast delivers data to every subscriber of topic on every node. The
// local subscribers always receive it; an error means the PUBLISH failed
// (other nodes may not receive it). See pubsub.Bus.
func (b *Bus) Broadcast(ctx context.Context, topic string, data []byte) error {
	return b.BroadcastFrom(ctx, nil, topic, data)
}

// BroadcastFrom is Broadcast that skips from on this node. from must be a
// Subscription returned by this Bus; any other value skips nothing.
func (b *Bus) BroadcastFrom(ctx context.Context, from pubsub.Subscription, topic string, data []byte) error {
	if b.closed.Load() {
		return pubsub.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	env := b.envelope(modeBroadcast, topic, data)
	err := b.publish(ctx, b.bChan, env)
	except, _ := from.(*dispatch.Sub)
	b.local.Push(pubsub.Message{Topic: topic, From: b.name, Data: env[len(env)-len(data):]}, except)
	return err
}

// DirectBroadcast delivers data to the subscribers of topic on node only.
// Nothing is delivered to an unknown node and no error is returned. See
// pubsub.Bus.
func (b *Bus) DirectBroadcast(ctx context.Context, node, topic string, data []byte) error {
	if b.closed.Load() {
		return pubsub.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	env := b.envelope(modeDirect, topic, data)
	if node == b.name {
		b.local.Push(pubsub.Message{Topic: topic, From: b.name, Data: env[len(env)-len(data):]}, nil)
		return nil
	}
	return b.publish(ctx, b.nChan+node, env)
}

func (b *Bus) envelope(mode byte, topic string, data []byte) []byte {
	return appendEnvelope(make([]byte, 0, envelopeSize(b.name, topic, data)), mode, b.name, topic, data)
}

func (b *Bus) publish(ctx context.Context, channel string, body []byte) error {
	if err := b.client.Publish(ctx, channel, body).Err(); err != nil {
		if b.closed.Load() {
			return pubsub.ErrClosed
		}
		return fmt.Errorf("redisbus: publish: %w", err)
	}
	return nil
}

// Malformed returns how many received messages were dropped because they
// could not be decoded.
func (b *Bus) Malformed() uint64 { return b.malformed.Load() }

// Dropped returns how many messages this node sent itself were dropped
// because its local queue was full (see Config.MaxPending).
func (b *Bus) Dropped() uint64 { return b.local.Dropped() }

// Close unsubscribes and stops the local subscriptions: once it returns,
// no handler call begins. It waits for the delivery goroutine to end,
// except when a handler is running (it may be the one calling Close; the
// goroutine then ends when that handler returns). Then it closes the
// client if the Bus created it. Idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		running := b.reg.Close()
		b.local.Close()
		_ = b.ps.Close()
		if !running {
			<-b.done
		}
		if b.ownClient {
			_ = b.client.Close()
		}
	})
	return nil
}

// UniqueNodeNames reports that this Bus refuses a second live node with an
// existing name (see pubsub.UniqueNames).
func (b *Bus) UniqueNodeNames() bool { return true }
