package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/pubsub"
)

// ErrClosed is returned by calls made after Shutdown or Close.
var ErrClosed = errors.New("tracker: closed")

// ErrNameTaken is returned by Start when a live node of the cluster already
// has this node's name: two nodes with one name would make every
// heartbeat look like a restart of the other.
var ErrNameTaken = errors.New("tracker: node name taken by a live node")

// Errors of the tracking API (the raw shard's own, so that errors.Is
// matches whichever layer returned them).
var (
	// ErrAlreadyTracked: (owner, topic, key) is tracked already.
	ErrAlreadyTracked = rawshard.ErrAlreadyTracked
	// ErrNotTracked: update of an (owner, topic, key) that is not tracked.
	ErrNotTracked = rawshard.ErrNotTracked
)

// Presence is one tracked entry as the tracker reports it.
type Presence struct {
	Owner string
	Key   string
	// Meta is the JSON object given to Track or Update, with "phx_ref"
	// (and "phx_ref_prev" after an update) added. Read-only.
	Meta json.RawMessage
	// Node is the name of the node that tracks it.
	Node string
}

// Diff is what changed in one topic, in one step of one shard.
type Diff struct {
	Topic  string
	Joins  []Presence
	Leaves []Presence
	// Seq numbers the shard's batches of diffs from 1, in the order they
	// are handed to New's handleDiff (the diffs of one step share it). With
	// ListAt it tells a subscriber which diffs a listing already holds.
	Seq uint64
}

// ReplicaStatus describes a peer replica a shard knows. A replica that is
// permdowned (silent past the permdown period, gracefully permdowned, or
// past its stopping grace) is forgotten and no longer listed.
type ReplicaStatus struct {
	Name string
	Vsn  int64
	// Down: silent for longer than the down period; its presences hidden.
	Down bool
	// Stopping: the replica said it stops gracefully; its presences stay
	// visible for GraceLeft more, then leave.
	Stopping  bool
	GraceLeft time.Duration
	// Shard is the index of the shard whose view this is.
	Shard int
}

// Status is "up", "down" or "stopping".
func (r ReplicaStatus) Status() string {
	switch {
	case r.Stopping:
		return "stopping"
	case r.Down:
		return "down"
	}
	return "up"
}

func toPresence(e *crdt.Element) Presence {
	return Presence{Owner: e.Owner, Key: e.Key, Meta: e.Meta, Node: e.Tag.Replica.Name}
}

// Tracker runs PoolSize shards of one node and spreads topics over them
// by an FNV-1a hash. It owns the shards' lifecycle and the node's
// phx_refs; each shard owns its own state, lock and goroutines, and the
// Tracker reaches them only through the shard's methods.
//
// Context. Commands (Track, Update, UpdateFunc, Untrack, UntrackOwner) do
// no I/O: they wait only for their shard's lock, which the shard goroutine
// holds for one step at a time (a batch of inbound messages, a tick). ctx
// decides whether the command happens: if it is done before the command
// takes effect, before or after that wait, nothing changes and ctx.Err()
// is returned. A wait that has begun is not cut short.
type Tracker struct {
	cfg    Config
	node   string
	vsn    int64
	shards []*shard
	refs   *refs

	mu      sync.Mutex // guards started, closed
	started bool
	closed  bool
	wg      sync.WaitGroup // every shard's goroutines
}

// New validates cfg and builds a tracker; Start runs it. handleDiff
// receives the diffs of each shard in order, from that shard's dispatcher
// goroutine; it may be nil.
func New(cfg Config, handleDiff func([]Diff)) (*Tracker, error) {
	if cfg.Bus == nil {
		return nil, errors.New("tracker: Config.Bus is required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, node: cfg.Bus.NodeName(), vsn: time.Now().UnixMicro()}
	t.refs = newRefs(t.node, t.vsn)
	self := crdt.Replica{Name: t.node, Vsn: t.vsn}
	for i := range cfg.PoolSize {
		t.shards = append(t.shards, newShard(&t.cfg, self, i, handleDiff))
	}
	return t, nil
}

// Node is this node's name.
func (t *Tracker) Node() string { return t.node }

// Vsn is this tracker's incarnation.
func (t *Tracker) Vsn() int64 { return t.vsn }

// Start subscribes every shard to the bus and starts them. It returns once
// they run (their first heartbeat is on its way).
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.started {
		return nil
	}
	for i, s := range t.shards {
		if err := s.start(&t.wg); err != nil {
			for _, x := range t.shards[:i] {
				x.stop()
			}
			return err
		}
	}
	t.started = true
	if u, ok := t.cfg.Bus.(pubsub.UniqueNames); ok && u.UniqueNodeNames() {
		return nil // the bus already refused a duplicate name
	}
	if t.cfg.NameCheck > 0 {
		timer := time.NewTimer(t.cfg.NameCheck)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
		for _, s := range t.shards {
			if r, clash := s.nameClash(); clash {
				t.closed = true
				for _, x := range t.shards {
					x.stop()
				}
				t.wg.Wait()
				return fmt.Errorf("%w: %s (vsn %d) is alive", ErrNameTaken, r.Name, r.Vsn)
			}
		}
	}
	return nil
}

func (t *Tracker) shardFor(topic string) *shard {
	if len(t.shards) == 1 {
		return t.shards[0]
	}
	h := fnv.New32a()
	h.Write([]byte(topic))
	return t.shards[h.Sum32()%uint32(len(t.shards))]
}

// Track starts tracking (owner, topic, key) with meta (a JSON object) and
// returns its phx_ref. ErrAlreadyTracked if it is tracked already.
func (t *Tracker) Track(ctx context.Context, owner, topic, key string, meta []byte) (string, error) {
	ref := t.refs.next()
	m, err := withRefs(meta, ref, "")
	if err != nil {
		return "", err
	}
	if err := t.shardFor(topic).track(ctx, owner, topic, key, m); err != nil {
		return "", err
	}
	return ref, nil
}

// Update replaces the meta of (owner, topic, key) (the previous meta is not
// merged) and returns the new phx_ref; the meta gets "phx_ref_prev".
// ErrNotTracked if it is not tracked.
func (t *Tracker) Update(ctx context.Context, owner, topic, key string, meta []byte) (string, error) {
	return t.update(ctx, owner, topic, key, func([]byte) ([]byte, error) { return meta, nil })
}

// UpdateFunc is Update with a function of the previous meta; fn runs under
// the shard's lock.
func (t *Tracker) UpdateFunc(ctx context.Context, owner, topic, key string, fn func(prev json.RawMessage) (json.RawMessage, error)) (string, error) {
	return t.update(ctx, owner, topic, key, func(b []byte) ([]byte, error) { return fn(b) })
}

func (t *Tracker) update(ctx context.Context, owner, topic, key string, fn func([]byte) ([]byte, error)) (string, error) {
	var ref string
	err := t.shardFor(topic).update(ctx, owner, topic, key, func(prev []byte) ([]byte, error) {
		meta, err := fn(prev)
		if err != nil {
			return nil, err
		}
		ref = t.refs.next()
		return withRefs(meta, ref, RefOf(prev))
	})
	if err != nil {
		return "", err
	}
	return ref, nil
}

// Untrack stops tracking (owner, topic, key); a no-op when not tracked.
func (t *Tracker) Untrack(ctx context.Context, owner, topic, key string) error {
	return t.shardFor(topic).untrack(ctx, owner, topic, key)
}

// UntrackOwner stops tracking everything tracked under owner, in every
// shard: what a closed connection does. Shards already stopped are
// skipped. Each shard's part is one command: if ctx is done on the way,
// the shards not yet reached keep the owner's presences and ctx.Err() is
// returned.
func (t *Tracker) UntrackOwner(ctx context.Context, owner string) error {
	for _, s := range t.shards {
		if err := s.untrackOwner(ctx, owner); err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	}
	return nil
}

// List returns the visible presences of topic ordered by (owner, key). It
// takes no shard lock.
func (t *Tracker) List(topic string) []Presence { return t.shardFor(topic).list(topic) }

// ListAt is List taken under the shard's lock, with the Seq of the last
// batch of diffs the listing holds: the diffs of topic with a greater Seq
// are exactly the changes made after it. A subscriber that keeps its own
// copy of a topic starts from it without missing or repeating a change.
func (t *Tracker) ListAt(topic string) ([]Presence, uint64) { return t.shardFor(topic).listAt(topic) }

// CountKey returns len(Get(topic, key)), without listing the topic.
func (t *Tracker) CountKey(topic, key string) int { return t.shardFor(topic).countKey(topic, key) }

// Get returns the visible presences of (topic, key).
func (t *Tracker) Get(topic, key string) []Presence { return t.shardFor(topic).get(topic, key) }

// Count returns the number of visible presences of topic.
func (t *Tracker) Count(topic string) int { return t.shardFor(topic).count(topic) }

// Replicas lists the peer replicas the shards know, one entry per replica
// (name and vsn): every shard tracks every peer, and the entry is the view
// of the lowest shard that knows it.
func (t *Tracker) Replicas() []ReplicaStatus {
	var out []ReplicaStatus
	seen := map[crdt.Replica]bool{}
	for _, s := range t.shards {
		for _, r := range s.replicas() {
			id := crdt.Replica{Name: r.Name, Vsn: r.Vsn}
			if !seen[id] {
				seen[id] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// Dropped is the number of inbound bus messages dropped because a shard's
// inbox was full (repaired by heartbeats and transfers).
func (t *Tracker) Dropped() uint64 {
	var n uint64
	for _, s := range t.shards {
		n += s.dropped.Load()
	}
	return n
}

// Shutdown stops the tracker gracefully: pending deltas are sent, then
// every shard tells its peers how this node leaves: by default a stopping
// message, and peers keep this node's presences for ShutdownGrace, so
// that clients reconnecting to other nodes track again before the old
// entries leave (no key disappears, no storm of leaves and joins), while
// the presences of clients that do not come back leave when the grace
// ends; with PermdownOnShutdown a graceful_permdown, and peers drop them
// at once; with a negative ShutdownGrace nothing, and peers keep them
// until the down period, as after a crash. Then pending diffs are
// delivered and shards stop. Local presences are not untracked one by
// one; calls after Shutdown return ErrClosed. Shutdown returns once the
// messages are handed to the bus, so a caller that closes its client
// connections afterwards has told its peers before its clients can
// reconnect elsewhere. Idempotent; respects ctx's deadline.
func (t *Tracker) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	started := t.started
	t.mu.Unlock()
	if !started {
		return nil
	}
	var errs []error
	for _, s := range t.shards {
		s.leave(t.cfg.PermdownOnShutdown, t.cfg.ShutdownGrace)
		if err := s.stopCtx(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.waitCtx(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close stops the tracker at once, without graceful_permdown.
func (t *Tracker) Close() error {
	t.mu.Lock()
	t.closed = true
	started := t.started
	t.mu.Unlock()
	if started {
		for _, s := range t.shards {
			s.stop()
		}
		t.wg.Wait()
	}
	return nil
}

func (t *Tracker) waitCtx(ctx context.Context) error {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every diff of topic produced before the call has been
// handed to New's handleDiff, or ctx is done (its error is returned). A caller
// that needs the consequences of its own command seen by subscribers
// before it goes on (a channel that leaves, then lets its connection
// rejoin) flushes. Only topic's shard is waited for.
func (t *Tracker) Flush(ctx context.Context, topic string) error {
	return t.shardFor(topic).flush(ctx)
}

// Sync waits until every diff produced so far has been handed to
// New's handleDiff. For tests and orderly shutdown.
func (t *Tracker) Sync() {
	for _, s := range t.shards {
		s.sync()
	}
}
