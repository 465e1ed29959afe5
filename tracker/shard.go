package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/internal/wire"
	"github.com/gopresence/presence/pubsub"
)

// shard is one shard of a Tracker: the shell of a raw shard. It owns the
// raw shard and its lock, its time (a ticker and one timer for the raw
// shard's deadlines), its network (the bus subscription, the inbox, the
// outbox) and the dispatcher of its diffs; nothing else touches them.
//
// Commands run in the caller's goroutine under the lock: a lock costs far
// less than a goroutine hop, and Track throughput is a target. The shard
// goroutine (loop) does everything else under the same lock and alone
// sends. Reads (list, get, count) take no lock: they read the State's
// per-topic sets, so they never wait behind replication work.
type shard struct {
	cfg   *Config // the tracker's, with defaults; read-only
	idx   int
	topic string
	born  time.Time

	mu     sync.Mutex // guards raw, outbox, closed
	raw    *rawshard.Shard
	outbox []wire.Outbound
	closed bool

	kick    chan struct{} // the loop rearms its timer and sends the outbox
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

func newShard(cfg *Config, self crdt.Replica, idx int, handle func([]Diff)) *shard {
	s := &shard{
		cfg:    cfg,
		idx:    idx,
		topic:  fmt.Sprintf("phx_presence:%s_shard%d", cfg.Name, idx),
		raw:    rawshard.New(self, cfg.shardConfig()),
		born:   time.Now(),
		kick:   make(chan struct{}, 1),
		inbox:  make(chan wire.Message, cfg.InboxSize),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	s.disp.init(handle, cfg.Logger)
	return s
}

// now is the shard's monotonic time, the time of its raw shard.
func (s *shard) now() time.Duration { return time.Since(s.born) }

// --- commands (caller's goroutine) ---

// lock takes the lock for a command. It returns ErrClosed once the shard
// stopped, and ctx's error when ctx is done before the command would take
// effect, before the wait for the lock or after it: a caller that gave up
// never has its command applied late. The wait itself lasts at most one
// step of the shard goroutine and is not interrupted.
func (s *shard) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *shard) track(ctx context.Context, owner, topic, key string, meta []byte) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	_, err := s.raw.Track(s.now(), owner, topic, key, meta)
	s.afterCommand()
	s.mu.Unlock()
	return err
}

// update replaces the meta of a presence this node tracks with
// next(its meta), computed under the lock.
func (s *shard) update(ctx context.Context, owner, topic, key string, next func(prev []byte) ([]byte, error)) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	old := s.raw.State().Lookup(owner, topic, key)
	if old == nil || old.Tag.Replica != s.raw.Self() {
		return ErrNotTracked
	}
	meta, err := next(old.Meta)
	if err != nil {
		return err
	}
	if _, _, err := s.raw.Update(s.now(), owner, topic, key, meta); err != nil {
		return err
	}
	s.afterCommand()
	return nil
}

func (s *shard) untrack(ctx context.Context, owner, topic, key string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	s.raw.Untrack(s.now(), owner, topic, key)
	s.afterCommand()
	s.mu.Unlock()
	return nil
}

func (s *shard) untrackOwner(ctx context.Context, owner string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	s.raw.UntrackOwner(s.now(), owner)
	s.afterCommand()
	s.mu.Unlock()
	return nil
}

// leave sends the pending delta, then tells the peers how this node
// leaves: a graceful_permdown, a stopping message with grace when grace is
// positive, or nothing.
func (s *shard) leave(permdown bool, grace time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw.Flush() // changes made before Shutdown still go out
	switch {
	case permdown:
		s.raw.GracefulPermdown()
	case grace > 0:
		s.raw.Stopping(grace)
	}
	s.afterCommand()
}

// afterCommand collects what the raw shard produced, and wakes the loop
// when it has messages to send or a deadline to rearm for; s.mu is held.
func (s *shard) afterCommand() {
	r := s.raw.Ready()
	if len(r.Diffs) > 0 {
		s.disp.push(r.Diffs)
	}
	if len(r.Outbound) > 0 {
		s.outbox = append(s.outbox, r.Outbound...)
	}
	if len(r.Outbound) > 0 || r.NewDeadline {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// --- reads ---

func toPresences(es []*crdt.Element) []Presence {
	out := make([]Presence, len(es))
	for i, e := range es {
		out[i] = toPresence(e)
	}
	return out
}

func (s *shard) list(topic string) []Presence { return toPresences(s.raw.State().List(topic)) }

func (s *shard) get(topic, key string) []Presence {
	return toPresences(s.raw.State().Get(topic, key))
}

func (s *shard) count(topic string) int { return s.raw.State().Count(topic) }

func (s *shard) countKey(topic, key string) int { return s.raw.State().CountKey(topic, key) }

// listAt lists topic under the lock, with the Seq of the last batch of
// diffs the listing holds.
func (s *shard) listAt(topic string) ([]Presence, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list(topic), s.disp.seq()
}

// replicas describes the peers the shard knows.
func (s *shard) replicas() []ReplicaStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []ReplicaStatus
	for _, p := range s.raw.Peers() {
		r := ReplicaStatus{Name: p.Replica.Name, Vsn: p.Replica.Vsn, Down: p.Down, Stopping: p.Stopping, Shard: s.idx}
		if p.Stopping {
			r.GraceLeft = max(p.GraceEnd-now, 0)
		}
		out = append(out, r)
	}
	return out
}

// nameClash returns an older live replica with this node's name, if one
// heartbeated.
func (s *shard) nameClash() (crdt.Replica, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.NameClash()
}

// flush waits until the diffs produced before the call were delivered, or
// ctx is done.
func (s *shard) flush(ctx context.Context) error { return s.disp.flush(ctx) }

// sync waits until every diff produced so far was delivered.
func (s *shard) sync() { s.disp.wait() }

// --- the shard goroutine ---

func (s *shard) start(wg *sync.WaitGroup) error {
	sub, err := s.cfg.Bus.Subscribe(s.topic, s.receive)
	if err != nil {
		return err
	}
	s.sub = sub
	wg.Add(2)
	go s.disp.run(wg)
	go s.loop(wg)
	return nil
}

// receive runs on the bus's delivery goroutine. Our own broadcasts do not
// come back (they are sent with BroadcastFrom our subscription), so a
// message carrying our name is from another live node with that name, which
// the raw shard reports as a clash.
func (s *shard) receive(m pubsub.Message) {
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
			s.cfg.Logger.Debug("tracker: dropping fragment", "from", m.From, "err", err)
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
		s.cfg.Logger.Debug("tracker: dropping a message of an unknown kind", "from", m.From, "err", err)
		return
	}
	if err != nil {
		s.cfg.Logger.Warn("tracker: dropping undecodable message", "from", m.From, "err", err)
		return
	}
	select {
	case s.inbox <- msg:
	default:
		s.dropped.Add(1)
	}
}

// loop is the shard goroutine: it feeds the raw shard its inbound
// messages, its ticks and its deadlines, and sends what it produces.
func (s *shard) loop(wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(s.exited)
	tick := time.NewTicker(s.cfg.BroadcastPeriod)
	defer tick.Stop()
	// deadline fires at the raw shard's NextDeadline (a flush, or the end
	// of a stopping peer's grace); armedAt is the deadline it is armed
	// for, -1 when none.
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()
	armedAt := time.Duration(-1)
	rearm := func() { // s.mu is held
		at, ok := s.raw.NextDeadline()
		switch {
		case !ok && armedAt >= 0:
			deadline.Stop()
			armedAt = -1
		case ok && at != armedAt:
			deadline.Reset(max(at-s.now(), 0))
			armedAt = at
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
		case <-deadline.C:
			s.mu.Lock()
			armedAt = -1
			s.raw.Advance(s.now())
			s.afterCommand()
			rearm()
			s.mu.Unlock()
		case <-s.kick:
			s.mu.Lock()
			rearm()
			s.mu.Unlock()
		}
		s.sendOutbox()
	}
}

func (s *shard) sendOutbox() {
	s.mu.Lock()
	out := s.outbox
	s.outbox = nil
	s.mu.Unlock()
	bus := s.cfg.Bus
	ctx := context.Background()
	for _, o := range out {
		b, err := wire.Encode(o.Msg)
		if err != nil {
			s.cfg.Logger.Error("tracker: encode", "err", err)
			continue
		}
		s.fragID++
		for _, part := range wire.Fragment(b, s.cfg.MaxMessageSize, s.fragID) {
			if o.To == "" {
				err = bus.BroadcastFrom(ctx, s.sub, s.topic, part)
			} else {
				err = bus.DirectBroadcast(ctx, o.To, s.topic, part)
			}
			if err != nil {
				s.cfg.Logger.Debug("tracker: send", "to", o.To, "err", err)
				break
			}
		}
	}
}

func (s *shard) stop() { s.stopCtx(context.Background()) }

// stopCtx stops the shard goroutine after it sent its outbox, then the
// dispatcher once it delivered what is queued; calls after it return
// ErrClosed.
func (s *shard) stopCtx(ctx context.Context) error {
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
