package tracker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/wire"
	"github.com/gopresence/presence/pubsub"
)

// ErrClosed is returned by calls made after Shutdown or Close.
var ErrClosed = errors.New("tracker: closed")

// ErrNameTaken is returned by Start when a live node of the cluster already
// has this node's name: two nodes with one name would make every
// heartbeat look like a restart of the other.
var ErrNameTaken = errors.New("tracker: node name taken by a live node")

// ErrInvalidMeta is returned when a meta is not a JSON object.
var ErrInvalidMeta = errors.New("tracker: meta must be a JSON object")

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
	// are handed to HandleDiff (the diffs of one step share it). With
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
	// Shard is the shard index that knows it.
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

// Tracker runs PoolSize shards of one node.
type Tracker struct {
	cfg    Config
	node   string
	vsn    int64
	shards []*Shard
	// HandleDiff receives diffs; set via Config.
	handle func([]Diff)

	refPrefix [4]byte
	refSeq    atomic.Uint64

	mu      sync.Mutex
	started bool
	closed  bool
	wg      sync.WaitGroup
}

// New validates cfg and builds a tracker; Start runs it.
func New(cfg Config, handleDiff func([]Diff)) (*Tracker, error) {
	if cfg.Bus == nil {
		return nil, errors.New("tracker: Config.Bus is required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, node: cfg.Bus.NodeName(), vsn: time.Now().UnixMicro(), handle: handleDiff}
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", t.node, t.vsn)
	binary.BigEndian.PutUint32(t.refPrefix[:], h.Sum32())
	for i := range cfg.PoolSize {
		t.shards = append(t.shards, newShard(t, i))
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
		if err := s.start(); err != nil {
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
			s.mu.Lock()
			r, clash := s.raw.NameClash()
			s.mu.Unlock()
			if clash {
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

func (t *Tracker) shardFor(topic string) *Shard {
	if len(t.shards) == 1 {
		return t.shards[0]
	}
	h := fnv.New32a()
	h.Write([]byte(topic))
	return t.shards[h.Sum32()%uint32(len(t.shards))]
}

func (t *Tracker) newRef() string {
	var b [12]byte
	copy(b[:4], t.refPrefix[:])
	binary.BigEndian.PutUint64(b[4:], t.refSeq.Add(1))
	return base64.URLEncoding.EncodeToString(b[:])
}

// withRefs returns meta with "phx_ref" (and "phx_ref_prev" when prev is
// set) put first, replacing any the caller gave.
func withRefs(meta []byte, ref, prev string) ([]byte, error) {
	meta = bytes.TrimSpace(meta)
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	if meta[0] != '{' {
		return nil, ErrInvalidMeta
	}
	if bytes.ContainsAny(meta, " \t\r\n") {
		// Kept compact: smaller, and written as is into presence_state
		// and presence_diff frames.
		var c bytes.Buffer
		if err := json.Compact(&c, meta); err != nil {
			return nil, ErrInvalidMeta
		}
		meta = c.Bytes()
	} else if !json.Valid(meta) {
		return nil, ErrInvalidMeta
	}
	// Decoding is skipped only when no key can be a ref: a key spelled
	// with escapes ("phx\u005fref") names the same key once decoded, by
	// us or by a client, so any backslash takes the decoding path too.
	if bytes.Contains(meta, []byte(`phx_ref`)) || bytes.IndexByte(meta, '\\') >= 0 {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(meta, &m); err != nil {
			return nil, ErrInvalidMeta
		}
		delete(m, "phx_ref")
		delete(m, "phx_ref_prev")
		meta, _ = json.Marshal(m)
	}
	rest := bytes.TrimSpace(meta[1:])
	n := len(`{"phx_ref":""`) + len(ref) + 1 + len(rest)
	if prev != "" {
		n += len(`,"phx_ref_prev":""`) + len(prev)
	}
	out := make([]byte, 0, n) // exact: metas are kept for the presence's life
	out = append(out, `{"phx_ref":"`...)
	out = append(out, ref...)
	out = append(out, '"')
	if prev != "" {
		out = append(out, `,"phx_ref_prev":"`...)
		out = append(out, prev...)
		out = append(out, '"')
	}
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}

// RefOf returns the phx_ref of a meta made by the tracker.
func RefOf(meta []byte) string {
	const p = `{"phx_ref":"`
	if !bytes.HasPrefix(meta, []byte(p)) {
		return ""
	}
	rest := meta[len(p):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// Track starts tracking (owner, topic, key) with meta (a JSON object) and
// returns its phx_ref. ErrAlreadyTracked if it is tracked already.
func (t *Tracker) Track(ctx context.Context, owner, topic, key string, meta []byte) (string, error) {
	ref := t.newRef()
	m, err := withRefs(meta, ref, "")
	if err != nil {
		return "", err
	}
	s := t.shardFor(topic)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", ErrClosed
	}
	_, err = s.raw.Track(owner, topic, key, m)
	s.afterCommand()
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	return ref, nil
}

// Update replaces the meta of (owner, topic, key) (the previous meta is not
// merged) and returns the new phx_ref; the meta gets "phx_ref_prev".
// ErrNotTracked if it is not tracked.
func (t *Tracker) Update(ctx context.Context, owner, topic, key string, meta []byte) (string, error) {
	return t.update(owner, topic, key, func([]byte) ([]byte, error) { return meta, nil })
}

// UpdateFunc is Update with a function of the previous meta.
func (t *Tracker) UpdateFunc(ctx context.Context, owner, topic, key string, fn func(prev json.RawMessage) (json.RawMessage, error)) (string, error) {
	return t.update(owner, topic, key, func(b []byte) ([]byte, error) { return fn(b) })
}

func (t *Tracker) update(owner, topic, key string, fn func([]byte) ([]byte, error)) (string, error) {
	s := t.shardFor(topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	old := s.raw.State().Lookup(owner, topic, key)
	if old == nil || old.Tag.Replica != s.raw.Self() {
		return "", ErrNotTracked
	}
	meta, err := fn(old.Meta)
	if err != nil {
		return "", err
	}
	ref := t.newRef()
	m, err := withRefs(meta, ref, RefOf(old.Meta))
	if err != nil {
		return "", err
	}
	if _, _, err := s.raw.Update(owner, topic, key, m); err != nil {
		return "", err
	}
	s.afterCommand()
	return ref, nil
}

// Untrack stops tracking (owner, topic, key); a no-op when not tracked.
func (t *Tracker) Untrack(ctx context.Context, owner, topic, key string) error {
	s := t.shardFor(topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.raw.Untrack(owner, topic, key)
	s.afterCommand()
	return nil
}

// UntrackOwner stops tracking everything tracked under owner, in every
// shard: what a closed connection does.
func (t *Tracker) UntrackOwner(ctx context.Context, owner string) error {
	for _, s := range t.shards {
		s.mu.Lock()
		if !s.closed {
			s.raw.UntrackOwner(owner)
			s.afterCommand()
		}
		s.mu.Unlock()
	}
	return nil
}

func toPresence(e *crdt.Element) Presence {
	return Presence{Owner: e.Owner, Key: e.Key, Meta: e.Meta, Node: e.Tag.Replica.Name}
}

// List returns the visible presences of topic ordered by (owner, key). It
// takes no shard lock.
func (t *Tracker) List(topic string) []Presence {
	es := t.shardFor(topic).raw.State().List(topic)
	out := make([]Presence, len(es))
	for i, e := range es {
		out[i] = toPresence(e)
	}
	return out
}

// ListAt is List taken under the shard's lock, with the Seq of the last
// batch of diffs the listing holds: the diffs of topic with a greater Seq
// are exactly the changes made after it. A subscriber that keeps its own
// copy of a topic starts from it without missing or repeating a change.
func (t *Tracker) ListAt(topic string) ([]Presence, uint64) {
	s := t.shardFor(topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disp.mu.Lock()
	seq := s.disp.pushed
	s.disp.mu.Unlock()
	return t.List(topic), seq
}

// CountKey returns len(Get(topic, key)), without listing the topic.
func (t *Tracker) CountKey(topic, key string) int {
	return t.shardFor(topic).raw.State().CountKey(topic, key)
}

// Get returns the visible presences of (topic, key).
func (t *Tracker) Get(topic, key string) []Presence {
	es := t.shardFor(topic).raw.State().Get(topic, key)
	out := make([]Presence, len(es))
	for i, e := range es {
		out[i] = toPresence(e)
	}
	return out
}

// Count returns the number of visible presences of topic.
func (t *Tracker) Count(topic string) int { return t.shardFor(topic).raw.State().Count(topic) }

// Replicas lists the peer replicas every shard knows.
func (t *Tracker) Replicas() []ReplicaStatus {
	var out []ReplicaStatus
	for i, s := range t.shards {
		s.mu.Lock()
		now := s.now()
		for _, p := range s.raw.Peers() {
			r := ReplicaStatus{Name: p.Replica.Name, Vsn: p.Replica.Vsn, Down: p.Down, Stopping: p.Stopping, Shard: i}
			if p.Stopping {
				r.GraceLeft = max(p.GraceEnd-now, 0)
			}
			out = append(out, r)
		}
		s.mu.Unlock()
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
		s.mu.Lock()
		s.raw.Flush() // changes made before Shutdown still go out
		switch {
		case t.cfg.PermdownOnShutdown:
			s.raw.GracefulPermdown()
		case t.cfg.ShutdownGrace > 0:
			s.raw.Stopping(t.cfg.ShutdownGrace)
		}
		s.afterCommand()
		s.mu.Unlock()
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

// Shard is one shard of a Tracker: a RawShard, the goroutine that owns its
// time and network, and the dispatcher of its diffs.
type Shard struct {
	t     *Tracker
	idx   int
	topic string
	raw   *RawShard
	born  time.Time

	mu     sync.Mutex // guards raw, outbox, closed
	outbox []wire.Outbound
	closed bool

	kick    chan struct{}
	inbox   chan wire.Message
	done    chan struct{}
	exited  chan struct{}
	sub     pubsub.Subscription
	dropped atomic.Uint64
	fragID  uint64 // sender side, owned by the shard goroutine

	asmMu sync.Mutex
	asm   map[string]*wire.Assembler // receiver side, per sending node

	disp dispatcher
}

func newShard(t *Tracker, idx int) *Shard {
	s := &Shard{
		t:     t,
		idx:   idx,
		topic: fmt.Sprintf("phx_presence:%s_shard%d", t.cfg.Name, idx),
		raw:   NewRawShard(crdt.Replica{Name: t.node, Vsn: t.vsn}, t.cfg.shardConfig()),
		born:  time.Now(),
		kick:  make(chan struct{}, 1),
		inbox: make(chan wire.Message, t.cfg.InboxSize),
		done:  make(chan struct{}),

		exited: make(chan struct{}),
	}
	s.disp.init(t.handle)
	s.disp.logger = t.cfg.Logger
	return s
}

func (s *Shard) now() time.Duration { return time.Since(s.born) }

// afterCommand collects what the raw shard produced; s.mu is held.
func (s *Shard) afterCommand() {
	r := s.raw.Ready()
	if len(r.Diffs) > 0 {
		s.disp.push(r.Diffs)
	}
	if len(r.Outbound) > 0 {
		s.outbox = append(s.outbox, r.Outbound...)
	}
	if len(r.Outbound) > 0 || s.raw.State().HasDelta() {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *Shard) start() error {
	sub, err := s.t.cfg.Bus.Subscribe(s.topic, s.receive)
	if err != nil {
		return err
	}
	s.sub = sub
	s.t.wg.Add(2)
	go s.disp.run(&s.t.wg)
	go s.loop()
	return nil
}

// receive runs on the bus's delivery goroutine. Our own broadcasts do not
// come back (they are sent with BroadcastFrom our subscription), so a
// message carrying our name is from another live node with that name, which
// RawShard reports as a clash.
func (s *Shard) receive(m pubsub.Message) {
	data := m.Data
	if wire.IsFragment(data) {
		s.asmMu.Lock()
		if s.asm == nil {
			s.asm = map[string]*wire.Assembler{}
		}
		a := s.asm[m.From]
		if a == nil {
			a = &wire.Assembler{MaxSize: 1 << 30}
			s.asm[m.From] = a
		}
		whole, err := a.Add(data)
		s.asmMu.Unlock()
		if err != nil {
			s.t.cfg.Logger.Debug("tracker: dropping fragment", "from", m.From, "err", err)
			return
		}
		if whole == nil {
			return
		}
		data = whole
	}
	msg, err := wire.Decode(data)
	if errors.Is(err, wire.ErrUnknownKind) {
		// a newer node's message: it degrades to what we do without it
		s.t.cfg.Logger.Debug("tracker: dropping a message of an unknown kind", "from", m.From, "err", err)
		return
	}
	if err != nil {
		s.t.cfg.Logger.Warn("tracker: dropping undecodable message", "from", m.From, "err", err)
		return
	}
	select {
	case s.inbox <- msg:
	default:
		s.dropped.Add(1)
	}
}

func (s *Shard) loop() {
	defer s.t.wg.Done()
	defer close(s.exited)
	cfg := s.t.cfg
	tick := time.NewTicker(cfg.BroadcastPeriod)
	defer tick.Stop()
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	flushArmed := false
	// grace fires when a stopping peer's grace ends (RawShard.NextDeadline);
	// graceAt is the deadline it is armed for, -1 when none.
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	graceAt := time.Duration(-1)
	rearm := func() { // s.mu is held
		at, ok := s.raw.NextDeadline()
		switch {
		case !ok && graceAt >= 0:
			grace.Stop()
			graceAt = -1
		case ok && at != graceAt:
			grace.Reset(max(at-s.now(), 0))
			graceAt = at
		}
	}

	s.mu.Lock()
	s.raw.Tick(s.now()) // announce ourselves at once
	s.afterCommand()
	s.mu.Unlock()
	s.sendOutbox()
	for {
		select {
		case <-s.done:
			s.sendOutbox()
			return
		case m := <-s.inbox:
			s.mu.Lock()
			s.raw.Step(s.now(), m)
			// drain what else is queued under the same lock
			for more := true; more; {
				select {
				case m := <-s.inbox:
					s.raw.Step(s.now(), m)
				default:
					more = false
				}
			}
			s.afterCommand()
			rearm()
			s.mu.Unlock()
		case <-tick.C:
			s.mu.Lock()
			s.raw.Tick(s.now())
			s.afterCommand()
			rearm()
			s.mu.Unlock()
		case <-grace.C:
			s.mu.Lock()
			graceAt = -1
			s.raw.DetectDown(s.now())
			s.afterCommand()
			rearm()
			s.mu.Unlock()
		case <-s.kick:
			if cfg.FlushInterval > 0 && !flushArmed {
				flush.Reset(cfg.FlushInterval)
				flushArmed = true
			}
		case <-flush.C:
			flushArmed = false
			s.mu.Lock()
			s.raw.Flush()
			s.afterCommand()
			s.mu.Unlock()
		}
		s.sendOutbox()
	}
}

func (s *Shard) sendOutbox() {
	s.mu.Lock()
	out := s.outbox
	s.outbox = nil
	s.mu.Unlock()
	bus := s.t.cfg.Bus
	ctx := context.Background()
	for _, o := range out {
		b, err := wire.Encode(o.Msg)
		if err != nil {
			s.t.cfg.Logger.Error("tracker: encode", "err", err)
			continue
		}
		s.fragID++
		for _, part := range wire.Fragment(b, s.t.cfg.MaxMessageSize, s.fragID) {
			if o.To == "" {
				err = bus.BroadcastFrom(ctx, s.sub, s.topic, part)
			} else {
				err = bus.DirectBroadcast(ctx, o.To, s.topic, part)
			}
			if err != nil {
				s.t.cfg.Logger.Debug("tracker: send", "to", o.To, "err", err)
				break
			}
		}
	}
}

func (s *Shard) stop() { s.stopCtx(context.Background()) }

func (s *Shard) stopCtx(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.sub != nil {
		s.sub.Unsubscribe()
	}
	close(s.done)
	select {
	case <-s.exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.disp.close()
	return nil
}

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

func (d *dispatcher) init(h func([]Diff)) {
	d.signal = make(chan struct{}, 1)
	d.handle = h
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

func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.signal <- struct{}{}:
	default:
	}
}

// Wait blocks until every queued diff was delivered.
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

// Flush waits until every diff of topic produced before the call has been
// handed to HandleDiff, or ctx is done (its error is returned). A caller
// that needs the consequences of its own command seen by subscribers
// before it goes on (a channel that leaves, then lets its connection
// rejoin) flushes. Only topic's shard is waited for.
func (t *Tracker) Flush(ctx context.Context, topic string) error {
	return t.shardFor(topic).disp.flush(ctx)
}

// Sync waits until every diff produced so far has been handed to
// HandleDiff. For tests and orderly shutdown.
func (t *Tracker) Sync() {
	for _, s := range t.shards {
		s.disp.wait()
	}
}
