package rawshard

import (
	"errors"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/wire"
)

// Errors of the commands. The tracker returns them as its own
// (tracker.ErrAlreadyTracked, tracker.ErrNotTracked), so their texts name
// the tracker, the package users see.
var (
	// ErrAlreadyTracked: (owner, topic, key) is tracked already.
	ErrAlreadyTracked = errors.New("tracker: already tracked")
	// ErrNotTracked: update of an (owner, topic, key) that is not tracked.
	ErrNotTracked = errors.New("tracker: not tracked")
)

// Ready is what a Shard has produced since the last call to Ready.
type Ready struct {
	// Outbound messages, in the order they must be sent.
	Outbound []wire.Outbound
	// Diffs in the order they happened; none is empty.
	Diffs []crdt.Diff
	// NewDeadline: NextDeadline may be earlier than it was at the last
	// Ready (a flush deadline was armed, or a stopping peer's grace
	// began), so a shell waiting on a timer for it rearms the timer.
	NewDeadline bool
}

// Shard is one tracker shard as a synchronous step machine (see the
// package documentation for the caller's duties).
type Shard struct {
	cfg   Config
	self  crdt.Replica
	state *crdt.State
	gens  *crdt.Generations
	peers map[string]*peer

	pending       []crdt.ClockEntry
	gapAsked      map[string]bool // peers asked for a transfer after a gap
	clash         *crdt.Replica   // an older live replica with our name
	silentPeriods int
	sampleCount   int
	nextReq       uint64

	// flushAt is the flush deadline, when flushArmed (see armFlush).
	flushAt    time.Duration
	flushArmed bool

	ready Ready
}

// New returns the shard of replica self (node name and incarnation) with
// cfg as given (see Config.WithDefaults).
func New(self crdt.Replica, cfg Config) *Shard {
	return &Shard{
		cfg:           cfg,
		self:          self,
		state:         crdt.New(self),
		gens:          crdt.NewGenerations(cfg.MaxDeltaSizes),
		peers:         map[string]*peer{},
		silentPeriods: cfg.MaxSilentPeriods,
		sampleCount:   cfg.ClockSamplePeriods,
	}
}

// Self is the shard's replica.
func (s *Shard) Self() crdt.Replica { return s.self }

// State is the shard's CRDT. Callers may use its concurrent read methods;
// everything else belongs to the shard.
func (s *Shard) State() *crdt.State { return s.state }

// Ready returns and clears what was produced.
func (s *Shard) Ready() Ready {
	r := s.ready
	s.ready = Ready{}
	return r
}

func (s *Shard) emit(d crdt.Diff) {
	if !d.Empty() {
		s.ready.Diffs = append(s.ready.Diffs, d)
	}
}

func (s *Shard) send(to string, m wire.Message) {
	s.ready.Outbound = append(s.ready.Outbound, wire.Outbound{To: to, Msg: m})
}

// --- commands ---
//
// A command at time now changes this replica's own entries; the delta it
// leaves is sent by the flush deadline it arms (armFlush) or by the next
// heartbeat, whichever comes first.

// Track adds (owner, topic, key) with meta.
func (s *Shard) Track(now time.Duration, owner, topic, key string, meta []byte) (*crdt.Element, error) {
	if s.state.Lookup(owner, topic, key) != nil {
		return nil, ErrAlreadyTracked
	}
	e := s.state.Join(owner, topic, key, meta)
	s.emit(crdt.Diff{Joins: []*crdt.Element{e}})
	s.armFlush(now)
	return e, nil
}

// Update replaces the meta of (owner, topic, key), returning the old and
// new elements.
func (s *Shard) Update(now time.Duration, owner, topic, key string, meta []byte) (old, cur *crdt.Element, err error) {
	old, cur = s.state.LeaveJoin(owner, topic, key, meta)
	if cur == nil {
		return nil, nil, ErrNotTracked
	}
	s.emit(crdt.Diff{Joins: []*crdt.Element{cur}, Leaves: []*crdt.Element{old}})
	s.armFlush(now)
	return old, cur, nil
}

// Untrack removes (owner, topic, key); a no-op when it is not tracked.
func (s *Shard) Untrack(now time.Duration, owner, topic, key string) *crdt.Element {
	e := s.state.Leave(owner, topic, key)
	if e != nil {
		s.emit(crdt.Diff{Leaves: []*crdt.Element{e}})
		s.armFlush(now)
	}
	return e
}

// UntrackOwner removes everything tracked under owner (the owner closed).
func (s *Shard) UntrackOwner(now time.Duration, owner string) []*crdt.Element {
	es := s.state.LeaveOwner(owner)
	s.emit(crdt.Diff{Leaves: es})
	s.armFlush(now)
	return es
}

// GracefulPermdown builds the message that tells peers this replica stops
// for good, and queues it for broadcast.
func (s *Shard) GracefulPermdown() *wire.GracefulPermdown {
	m := &wire.GracefulPermdown{From: s.self}
	s.send("", m)
	return m
}

// Stopping builds the message that tells peers this replica stops
// gracefully and that they should keep its presences for grace (so
// that its clients reconnect elsewhere without their keys ever leaving),
// and queues it for broadcast. It is the last message a replica sends.
func (s *Shard) Stopping(grace time.Duration) *wire.Stopping {
	m := &wire.Stopping{From: s.self, Grace: min(max(grace, 0), wire.MaxGrace)}
	s.send("", m)
	return m
}
