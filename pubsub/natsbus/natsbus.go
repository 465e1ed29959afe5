package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/internal/dispatch"
)

// DefaultNamespace is the subject prefix used when Config.Namespace is "".
const DefaultNamespace = "presence"

// Sentinel errors of New.
var (
	// ErrNameTaken: a live Bus of the same namespace already has
	// Config.NodeName (node names must be unique: peers are told apart by
	// name alone, so two live nodes of one name would make each other's
	// heartbeats look like restarts).
	ErrNameTaken = errors.New("natsbus: node name taken by a live node")
	// ErrNoNodeName: Config.NodeName is empty.
	ErrNoNodeName = errors.New("natsbus: NodeName is required")
	// ErrBadNamespace: Config.Namespace is not a valid NATS subject prefix
	// (empty tokens, white space or wildcards).
	ErrBadNamespace = errors.New("natsbus: invalid Namespace")
)

// Config configures a Bus. NodeName is required; every other zero field
// means its documented default.
type Config struct {
	// Conn is an established connection to use. The Bus does not close it
	// and does not change its options (reconnect policy, handlers): the
	// owner is responsible for them. When nil, the Bus dials URL itself.
	Conn *nats.Conn

	// URL is the NATS server URL (or comma-separated URLs) to dial when
	// Conn is nil. Default nats.DefaultURL ("nats://127.0.0.1:4222").
	URL string

	// Options are extra nats.go options for the connection the Bus dials,
	// applied after the Bus's own (nats.Name, nats.NoEcho,
	// nats.MaxReconnects(-1), nats.ReconnectWait(250ms), handlers that log),
	// so they can override them. Ignored when Conn is set.
	Options []nats.Option

	// NodeName is this node's unique name in the cluster. Required.
	NodeName string

	// Namespace prefixes every subject, so that several clusters can share
	// one NATS system. Default "presence". It may contain dots (several
	// tokens) but no empty token, white space or wildcard.
	Namespace string

	// MaxPending bounds the queue of the messages this node sends to
	// itself (Broadcast, DirectBroadcast to its own name) that the delivery
	// goroutine has not handed to the handlers yet; when it is full they
	// are dropped and counted (Bus.Dropped). Zero means 65536 messages;
	// negative means unbounded.
	MaxPending int

	// ReceiveBuffer is the capacity of the channel between nats.go and the
	// Bus's delivery goroutine, the one queue that messages from other
	// nodes pass on this side of NATS. When it is full nats.go drops
	// messages and reports a slow consumer (logged). Default 65536.
	ReceiveBuffer int

	// Logger receives connection events and drops. Nil means discard.
	Logger *slog.Logger
}

// Bus is a pubsub.Bus over NATS. It is safe for concurrent use.
type Bus struct {
	name    string
	nc      *nats.Conn
	ownConn bool
	log     *slog.Logger
	reg     *dispatch.Registry
	local   *dispatch.Queue // messages to this node's own subscribers
	dialer  *ctxDialer

	bPrefix string // "<ns>.b."
	nPrefix string // "<ns>.n."
	self    string // "<ns>.n.<node>." — direct subjects of this node

	in   chan *nats.Msg
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex // guards subs
	subs map[string][2]*nats.Subscription

	idSub *nats.Subscription // answers "is this name taken?"

	closed    atomic.Bool
	closeOnce sync.Once
	malformed atomic.Uint64
}

var _ pubsub.Bus = (*Bus)(nil)

// New connects (unless cfg.Conn is set) and returns a Bus. ctx bounds the
// initial connection only.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.NodeName == "" {
		return nil, ErrNoNodeName
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if !validNamespace(ns) {
		return nil, fmt.Errorf("%w: %q", ErrBadNamespace, ns)
	}
	if cfg.ReceiveBuffer <= 0 {
		cfg.ReceiveBuffer = 65536
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeName)
	b := &Bus{
		name:    cfg.NodeName,
		log:     log,
		bPrefix: ns + ".b.",
		nPrefix: ns + ".n.",
		in:      make(chan *nats.Msg, cfg.ReceiveBuffer),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		subs:    make(map[string][2]*nats.Subscription),
	}
	b.self = b.nPrefix + escapeToken(cfg.NodeName) + "."
	b.reg = dispatch.New(dispatch.Config{OnTopic: b.onTopic})
	b.local = dispatch.NewQueue(cfg.MaxPending, log)
	if cfg.Conn != nil {
		b.nc = cfg.Conn
	} else {
		nc, err := b.dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		b.nc, b.ownConn = nc, true
	}
	// Node names are unique: ask whether a live Bus answers for ours, then
	// answer for it ourselves. No responder comes back at once
	// (ErrNoResponders); a live one answers within a round trip.
	// A Bus of that name that has just closed may still answer for a
	// moment (its unsubscription travels through the NATS cluster), so a
	// taken name is asked again for up to a second.
	idSubj := ns + ".id." + escapeToken(cfg.NodeName)
	var err error
	for deadline := time.Now().Add(time.Second); ; {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err = b.nc.RequestWithContext(rctx, idSubj, nil)
		cancel()
		if err != nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err == nil {
		if b.ownConn {
			b.nc.Close()
		}
		return nil, fmt.Errorf("%w: %q", ErrNameTaken, cfg.NodeName)
	}
	sub, err := b.nc.Subscribe(idSubj, func(m *nats.Msg) { m.Respond([]byte(cfg.NodeName)) })
	if err != nil {
		if b.ownConn {
			b.nc.Close()
		}
		return nil, err
	}
	b.idSub = sub
	// The name is ours once the server has the subscription: without this
	// round trip a second New right after this one could ask before it and
	// hear no responder (seen as a flaky TestNameTaken).
	if err := b.nc.FlushTimeout(2 * time.Second); err != nil {
		sub.Unsubscribe()
		if b.ownConn {
			b.nc.Close()
		}
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	go b.receive()
	return b, nil
}

func validNamespace(ns string) bool {
	for tok := range strings.SplitSeq(ns, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}

// ctxDialer dials with the context of New while New runs, and with the
// Bus's own lifetime afterwards (reconnects).
type ctxDialer struct {
	ctx atomic.Pointer[context.Context]
	d   net.Dialer
}

func (d *ctxDialer) Dial(network, address string) (net.Conn, error) {
	return d.d.DialContext(*d.ctx.Load(), network, address)
}

func (b *Bus) dial(ctx context.Context, cfg Config) (*nats.Conn, error) {
	url := cfg.URL
	if url == "" {
		url = nats.DefaultURL
	}
	b.dialer = &ctxDialer{d: net.Dialer{Timeout: 5 * time.Second}}
	b.dialer.ctx.Store(&ctx)
	opts := []nats.Option{
		nats.Name("presence " + cfg.NodeName),
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.SetCustomDialer(b.dialer),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("natsbus: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("natsbus: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			b.log.Debug("natsbus: connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Warn("natsbus: asynchronous error", "subject", subj, "err", err)
		}),
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	opts = append(opts, cfg.Options...)
	nc, err := nats.Connect(url, opts...)
	bg := context.Background()
	b.dialer.ctx.Store(&bg)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect %s: %w", redactURLs(url), err)
	}
	return nc, nil
}

// redactURLs hides the credentials in a comma-separated list of NATS URLs
// (a token is a URL's user, a password its password), so that errors can
// name the servers without handing the secret to the log.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		switch {
		case err != nil && strings.Contains(p, "@"):
			parts[i] = "(a URL with credentials)"
		case err != nil:
		case u.User == nil:
		default:
			if _, ok := u.User.Password(); ok {
				u.User = neturl.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = neturl.User("xxxxx")
			}
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// onTopic adds or removes the NATS subscriptions of a topic. It runs with
// the registry's lock held.
func (b *Bus) onTopic(topic string, first bool) error {
	tok := escapeToken(topic)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !first {
		for _, s := range b.subs[topic] {
			if s != nil {
				_ = s.Unsubscribe()
			}
		}
		delete(b.subs, topic)
		return nil
	}
	bs, err := b.nc.ChanSubscribe(b.bPrefix+tok, b.in)
	if err != nil {
		return fmt.Errorf("natsbus: subscribe: %w", err)
	}
	ds, err := b.nc.ChanSubscribe(b.self+tok, b.in)
	if err != nil {
		_ = bs.Unsubscribe()
		return fmt.Errorf("natsbus: subscribe: %w", err)
	}
	b.subs[topic] = [2]*nats.Subscription{bs, ds}
	return nil
}

// receive is the delivery goroutine, the only caller of the handlers: it
// decodes what nats.go delivers and what this node sent itself, and hands
// it to the local subscriptions.
func (b *Bus) receive() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.in:
			b.handle(m)
		case <-b.local.Ready():
			b.local.Deliver(b.reg)
		}
	}
}

func (b *Bus) handle(m *nats.Msg) {
	var tok string
	switch {
	case strings.HasPrefix(m.Subject, b.bPrefix):
		tok = m.Subject[len(b.bPrefix):]
	case strings.HasPrefix(m.Subject, b.self):
		tok = m.Subject[len(b.self):]
	default:
		b.malformed.Add(1)
		return
	}
	topic, err := unescapeToken(tok)
	if err != nil {
		b.malformed.Add(1)
		return
	}
	from, data, err := decodeEnvelope(m.Data)
	if err != nil {
		b.malformed.Add(1)
		b.log.Debug("natsbus: dropping malformed message", "subject", m.Subject, "err", err)
		return
	}
	if from == b.name {
		return // our own broadcast, already delivered locally
	}
	b.reg.Deliver(pubsub.Message{Topic: topic, From: from, Data: data}, nil)
}

// NodeName returns the node's name.
func (b *Bus) NodeName() string { return b.name }

// Subscribe registers h for topic. See pubsub.Bus. When the topic is new
// to this node, Subscribe waits for the NATS server to acknowledge the
// interest (a round trip, at most 2 s; skipped while disconnected); other
// servers of a NATS cluster learn it shortly after.
func (b *Bus) Subscribe(topic string, h pubsub.Handler) (pubsub.Subscription, error) {
	if b.closed.Load() {
		return nil, pubsub.ErrClosed
	}
	isNew := !b.reg.HasSubscribers(topic)
	s, err := b.reg.Subscribe(topic, h)
	if err != nil {
		return nil, err
	}
	if isNew && b.nc.IsConnected() {
		if err := b.nc.FlushTimeout(2 * time.Second); err != nil {
			b.log.Debug("natsbus: flush after subscribe", "err", err)
		}
	}
	return s, nil
}

// Broadcast delivers data to every subscriber of topic on every node. The
// local subscribers always receive it; an error means that publishing to
// NATS failed (the other nodes may not receive it). See pubsub.Bus.
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
	env := b.envelope(data)
	err := b.publish(b.bPrefix+escapeToken(topic), env)
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
	if node == b.name {
		b.local.Push(pubsub.Message{Topic: topic, From: b.name, Data: clone(data)}, nil)
		return nil
	}
	return b.publish(b.nPrefix+escapeToken(node)+"."+escapeToken(topic), b.envelope(data))
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

func (b *Bus) envelope(data []byte) []byte {
	return appendEnvelope(make([]byte, 0, envelopeSize(b.name, data)), b.name, data)
}

func (b *Bus) publish(subject string, body []byte) error {
	if err := b.nc.Publish(subject, body); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) && b.closed.Load() {
			return pubsub.ErrClosed
		}
		return fmt.Errorf("natsbus: publish: %w", err)
	}
	return nil
}

// Malformed returns how many received messages were dropped because they
// could not be decoded (another envelope version, or garbage).
func (b *Bus) Malformed() uint64 { return b.malformed.Load() }

// Dropped returns how many messages this node sent itself were dropped
// because its local queue was full (see Config.MaxPending). Messages from
// other nodes that find the receive channel full are dropped by nats.go,
// which reports a slow consumer.
func (b *Bus) Dropped() uint64 { return b.local.Dropped() }

// Conn returns the NATS connection the Bus uses.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Close unsubscribes and stops the local subscriptions: once it returns,
// no handler call begins. It waits for the delivery goroutine to end,
// except when a handler is running (it may be the one calling Close; the
// goroutine then ends when that handler returns). When the Bus dialed the
// connection itself, Close then flushes it (at most 1 s) and closes it.
// Idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		running := b.reg.Close()
		b.local.Close()
		close(b.stop)
		if !running {
			<-b.done
		}
		if b.idSub != nil {
			_ = b.idSub.Unsubscribe()
		}
		if b.ownConn {
			_ = b.nc.FlushTimeout(time.Second)
			b.nc.Close()
		}
	})
	return nil
}

// UniqueNodeNames reports that this Bus refuses a second live node with an
// existing name (see pubsub.UniqueNames).
func (b *Bus) UniqueNodeNames() bool { return true }
