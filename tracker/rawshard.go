package tracker

import (
	"errors"
	"slices"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/wire"
)

// Errors of the tracking API.
var (
	// ErrAlreadyTracked: (owner, topic, key) is tracked already.
	ErrAlreadyTracked = errors.New("tracker: already tracked")
	// ErrNotTracked: update of an (owner, topic, key) that is not tracked.
	ErrNotTracked = errors.New("tracker: not tracked")
)

// ShardConfig is the part of Config a RawShard uses, with defaults applied.
type ShardConfig struct {
	BroadcastPeriod    time.Duration
	MaxSilentPeriods   int
	DownPeriod         time.Duration
	PermdownPeriod     time.Duration
	ClockSamplePeriods int
	MaxDeltaSizes      []int
}

func (c Config) shardConfig() ShardConfig {
	return ShardConfig{c.BroadcastPeriod, c.MaxSilentPeriods, c.DownPeriod, c.PermdownPeriod,
		c.ClockSamplePeriods, c.MaxDeltaSizes}
}

// DefaultShardConfig is Phoenix's defaults.
func DefaultShardConfig() ShardConfig { return Config{}.withDefaults().shardConfig() }

// peer is what a shard knows of another node's shard (Phoenix's Replica
// record), keyed by name.
type peer struct {
	vsn  int64
	last time.Duration // time of the last heartbeat
	down bool
	// stopping: the peer said it stops gracefully; its presences stay
	// visible until graceEnd, then go as in a permdown. The down timer no
	// longer applies: the peer is silent on purpose.
	stopping bool
	graceEnd time.Duration
}

// Ready is what a RawShard has produced since the last call to Ready.
type Ready struct {
	// Outbound messages, in the order they must be sent.
	Outbound []wire.Outbound
	// Diffs in the order they happened; none is empty.
	Diffs []crdt.Diff
}

// RawShard is one tracker shard as a synchronous step machine: commands,
// inbound messages and ticks go in; messages to send and diffs come out
// through Ready. It reads no clock (time is given to Tick and Step), starts
// no goroutine and does no I/O, so a whole cluster of them can be driven
// deterministically (internal/sim) and the reference traces replay through
// it. Not safe for concurrent use, except for the State's read methods.
type RawShard struct {
	cfg   ShardConfig
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
	now           time.Duration

	ready Ready
}

// NewRawShard returns the shard of replica self (node name and
// incarnation) with the given configuration.
func NewRawShard(self crdt.Replica, cfg ShardConfig) *RawShard {
	return &RawShard{
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
func (s *RawShard) Self() crdt.Replica { return s.self }

// State is the shard's CRDT. Callers may use its concurrent read methods;
// everything else belongs to the shard.
func (s *RawShard) State() *crdt.State { return s.state }

// Generations are the shard's delta generations.
func (s *RawShard) Generations() *crdt.Generations { return s.gens }

// Ready returns and clears what was produced.
func (s *RawShard) Ready() Ready {
	r := s.ready
	s.ready = Ready{}
	return r
}

// HasReady reports whether Ready has anything.
func (s *RawShard) HasReady() bool {
	return len(s.ready.Outbound) > 0 || len(s.ready.Diffs) > 0
}

func (s *RawShard) emit(d crdt.Diff) {
	if !d.Empty() {
		s.ready.Diffs = append(s.ready.Diffs, d)
	}
}

func (s *RawShard) send(to string, m wire.Message) {
	s.ready.Outbound = append(s.ready.Outbound, wire.Outbound{To: to, Msg: m})
}

// --- commands ---

// Track adds (owner, topic, key) with meta.
func (s *RawShard) Track(owner, topic, key string, meta []byte) (*crdt.Element, error) {
	if s.state.Lookup(owner, topic, key) != nil {
		return nil, ErrAlreadyTracked
	}
	e := s.state.Join(owner, topic, key, meta)
	s.emit(crdt.Diff{Joins: []*crdt.Element{e}})
	return e, nil
}

// Update replaces the meta of (owner, topic, key), returning the old and
// new elements.
func (s *RawShard) Update(owner, topic, key string, meta []byte) (old, cur *crdt.Element, err error) {
	old, cur = s.state.LeaveJoin(owner, topic, key, meta)
	if cur == nil {
		return nil, nil, ErrNotTracked
	}
	s.emit(crdt.Diff{Joins: []*crdt.Element{cur}, Leaves: []*crdt.Element{old}})
	return old, cur, nil
}

// Untrack removes (owner, topic, key); a no-op when it is not tracked.
func (s *RawShard) Untrack(owner, topic, key string) *crdt.Element {
	e := s.state.Leave(owner, topic, key)
	if e != nil {
		s.emit(crdt.Diff{Leaves: []*crdt.Element{e}})
	}
	return e
}

// UntrackOwner removes everything tracked under owner (the owner closed).
func (s *RawShard) UntrackOwner(owner string) []*crdt.Element {
	es := s.state.LeaveOwner(owner)
	s.emit(crdt.Diff{Leaves: es})
	return es
}

// --- time ---

// Heartbeat broadcasts the pending delta now, or an empty heartbeat when
// there is none, and returns the message.
func (s *RawShard) Heartbeat() *wire.Heartbeat {
	clocks := s.state.Clocks()
	var hb *wire.Heartbeat
	if s.state.HasDelta() {
		d := s.state.TakeDelta()
		hb = &wire.Heartbeat{From: s.self, Delta: d, Clocks: clocks}
		s.send("", hb)
		s.gens.Push(s.state, d)
	} else {
		hb = &wire.Heartbeat{From: s.self, Clocks: clocks}
		s.send("", hb)
	}
	s.silentPeriods = 0
	return hb
}

// Flush sends the pending delta, if any, without waiting for the tick.
func (s *RawShard) Flush() {
	if s.state.HasDelta() {
		s.Heartbeat()
	}
}

// Tick is the periodic step, Phoenix.Tracker's heartbeat timer: broadcast,
// transfer sampling, failure detection. now is the shard's monotonic time.
func (s *RawShard) Tick(now time.Duration) {
	s.now = now
	switch {
	case s.state.HasDelta(), s.silentPeriods >= s.cfg.MaxSilentPeriods, s.anyPeerDown():
		// While a peer is held as down we heartbeat every tick (Phoenix:
		// every MaxSilentPeriods+1 when idle), so that when the partition
		// heals the other side hears from us within one period.
		s.Heartbeat()
	default:
		s.silentPeriods++
	}
	if s.sampleCount <= 1 {
		s.Sample()
	} else {
		s.sampleCount--
	}
	s.DetectDown(now)
}

// Sample sends a transfer request to every peer whose heard clock is ahead
// of ours, and clears the pending clockset.
func (s *RawShard) Sample() {
	set := crdt.AppendClock(s.pending, s.self, s.state.Clocks())
	reps := crdt.ClocksetReplicas(set)
	slices.SortFunc(reps, crdt.Replica.Compare)
	asked := map[string]bool{}
	for _, r := range reps {
		if p := s.peers[r.Name]; p != nil && p.stopping && p.vsn == r.Vsn {
			continue // it sends nothing more; others have what it sent
		}
		if r != s.self && !asked[r.Name] {
			asked[r.Name] = true
			s.RequestTransfer(r.Name)
		}
	}
	s.pending = nil
	s.gapAsked = nil
	s.sampleCount = s.cfg.ClockSamplePeriods
}

// RequestTransfer sends a transfer_req to node and returns it.
func (s *RawShard) RequestTransfer(node string) *wire.TransferReq {
	s.nextReq++
	m := &wire.TransferReq{ID: s.nextReq, From: s.self, Clocks: s.state.Clocks()}
	s.send(node, m)
	return m
}

// DetectDown applies the down and permdown timers to every peer, and
// ends the grace of stopping peers whose grace is over.
func (s *RawShard) DetectDown(now time.Duration) {
	names := make([]string, 0, len(s.peers))
	for n := range s.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := s.peers[n]
		if p.stopping {
			if now >= p.graceEnd {
				s.PeerPermdown(n, p.vsn) // its presences leave
			}
			continue
		}
		silence := now - p.last
		switch {
		case silence > s.cfg.PermdownPeriod:
			if !p.down {
				s.PeerDown(n, p.vsn)
			}
			s.PeerPermdown(n, p.vsn)
		case silence > s.cfg.DownPeriod && !p.down:
			s.PeerDown(n, p.vsn)
		}
	}
}

// PeerDown holds the replica (name, vsn) as down: its presences are hidden
// and reported as leaves. This is what the down timer does.
func (s *RawShard) PeerDown(name string, vsn int64) {
	if p := s.peers[name]; p != nil && p.vsn == vsn {
		p.down = true
	}
	s.emit(s.state.ReplicaDown(crdt.Replica{Name: name, Vsn: vsn}))
}

// PeerPermdown forgets the replica (name, vsn): its presences, clock and
// generations' traces, and the peer record if it still has that vsn.
func (s *RawShard) PeerPermdown(name string, vsn int64) {
	r := crdt.Replica{Name: name, Vsn: vsn}
	s.emit(s.state.RemoveReplica(r))
	s.gens.Prune(r)
	s.forgetPending(r)
	if p := s.peers[name]; p != nil && p.vsn == vsn {
		delete(s.peers, name)
	}
}

// NextDeadline returns the earliest end of a stopping peer's grace. The
// shell calls DetectDown at that time rather than at the next tick, so
// that the presences of a stopped node leave when its grace ends, not up
// to a broadcast period later.
func (s *RawShard) NextDeadline() (time.Duration, bool) {
	var at time.Duration
	found := false
	for _, p := range s.peers {
		if p.stopping && (!found || p.graceEnd < at) {
			at, found = p.graceEnd, true
		}
	}
	return at, found
}

// PeerStatus describes a known peer.
type PeerStatus struct {
	Replica  crdt.Replica
	Down     bool
	LastSeen time.Duration
	// Stopping: the peer said it stops; its presences stay visible until
	// GraceEnd.
	Stopping bool
	GraceEnd time.Duration
}

// Peers lists the known peers by name.
func (s *RawShard) Peers() []PeerStatus {
	out := make([]PeerStatus, 0, len(s.peers))
	for n, p := range s.peers {
		out = append(out, PeerStatus{Replica: crdt.Replica{Name: n, Vsn: p.vsn}, Down: p.down, LastSeen: p.last,
			Stopping: p.stopping, GraceEnd: p.graceEnd})
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Replica.Compare(b.Replica) })
	return out
}

// GracefulPermdown builds the message that tells peers this replica stops
// for good, and queues it for broadcast.
func (s *RawShard) GracefulPermdown() *wire.GracefulPermdown {
	m := &wire.GracefulPermdown{From: s.self}
	s.send("", m)
	return m
}

// Stopping builds the message that tells peers this replica stops
// gracefully and that they should keep its presences for grace (so
// that its clients reconnect elsewhere without their keys ever leaving),
// and queues it for broadcast. It is the last message a replica sends.
func (s *RawShard) Stopping(grace time.Duration) *wire.Stopping {
	m := &wire.Stopping{From: s.self, Grace: min(max(grace, 0), wire.MaxGrace)}
	s.send("", m)
	return m
}

// --- inbound messages ---

// Step handles one inbound message at time now. Messages carrying our own
// name are ignored: node names are unique in a cluster, so such a
// message comes from another live node that has taken ours.
func (s *RawShard) Step(now time.Duration, m wire.Message) {
	s.now = now
	switch m := m.(type) {
	case *wire.Heartbeat:
		if m.From.Name == s.self.Name {
			// Another live replica with our name (names must be unique).
			// We never treat it as a peer. A newer one is starting:
			// answer at once so that it sees us and refuses to start; an
			// older one is alive: we are the newcomer, remember the clash.
			if m.From.Vsn > s.self.Vsn {
				s.Heartbeat()
			} else if m.From.Vsn < s.self.Vsn {
				r := m.From
				s.clash = &r
			}
			return
		}
		var d crdt.Diff
		wasUp := s.peerUp(m.From)
		if m.Delta == nil {
			s.pending = crdt.AppendClock(s.pending, m.From, m.Clocks)
			d = s.heard(m.From, now)
		} else {
			d = s.heard(m.From, now)
			// A delta that starts beyond what we have of its sender means
			// we missed one: ask for a transfer now rather than at the
			// next sampling tick (once per peer until its ack or the tick).
			if have, ok := s.state.ClockOf(m.From); ok && m.Delta.Start[m.From] > have && !s.gapAsked[m.From.Name] {
				if s.gapAsked == nil {
					s.gapAsked = map[string]bool{}
				}
				s.gapAsked[m.From.Name] = true
				s.RequestTransfer(m.From.Name)
			}
			d = d.Then(s.state.MergeDelta(m.Delta))
			s.pending = crdt.AppendClock(s.pending, m.From, m.Clocks)
			s.gens.Push(s.state, m.Delta)
		}
		s.emit(d)
		// A peer that comes up (new, restarted, or back from down) and is
		// ahead of us gets a transfer request at once instead of at the
		// next sampling tick: a healed partition converges in one round trip.
		if !wasUp {
			if !crdt.Dominates(s.state.Clocks(), m.Clocks) {
				s.RequestTransfer(m.From.Name)
			}
			// and it hears from us at the next tick, even if we are idle
			s.silentPeriods = s.cfg.MaxSilentPeriods
		}
	case *wire.TransferReq:
		if m.From.Name == s.self.Name {
			return
		}
		ack := &wire.TransferAck{ID: m.ID, From: s.self}
		if d, _ := s.gens.Choose(m.Clocks); d != nil {
			ack.Delta = d
		} else {
			ack.Extract = s.state.Extract(m.Clocks)
		}
		s.send(m.From.Name, ack)
	case *wire.TransferAck:
		if m.From.Name == s.self.Name {
			return
		}
		delete(s.gapAsked, m.From.Name)
		if m.Delta != nil {
			s.emit(s.state.MergeDelta(m.Delta))
			s.gens.Push(s.state, m.Delta)
		} else if m.Extract != nil {
			s.emit(s.state.MergeExtract(m.Extract))
			s.gens.Clear()
		}
	case *wire.GracefulPermdown:
		p := s.peers[m.From.Name]
		if m.From.Name == s.self.Name || p == nil || p.vsn != m.From.Vsn {
			return
		}
		s.PeerDown(m.From.Name, m.From.Vsn)
		s.PeerPermdown(m.From.Name, m.From.Vsn)
	case *wire.Stopping:
		p := s.peers[m.From.Name]
		if m.From.Name == s.self.Name || p == nil || p.vsn != m.From.Vsn || p.stopping {
			return // not a peer we know, or a repeat (the first deadline holds)
		}
		// A stopping peer is kept no longer than a silent one: after the
		// permdown period its presences would be gone anyway.
		grace := min(m.Grace, s.cfg.PermdownPeriod)
		if p.down || grace <= 0 {
			// Held as down, its presences have left already: bringing them
			// back for the grace would only make them leave twice.
			s.PeerPermdown(m.From.Name, m.From.Vsn)
			return
		}
		p.stopping = true
		p.graceEnd = now + grace
	}
}

// NameClash returns an older live replica that has our name, if one
// heartbeated since we started.
func (s *RawShard) NameClash() (crdt.Replica, bool) {
	if s.clash == nil {
		return crdt.Replica{}, false
	}
	return *s.clash, true
}

// peerUp reports whether r is a known peer held as up.
func (s *RawShard) peerUp(r crdt.Replica) bool {
	p := s.peers[r.Name]
	return p != nil && p.vsn == r.Vsn && !p.down
}

func (s *RawShard) anyPeerDown() bool {
	for _, p := range s.peers {
		if p.down {
			return true
		}
	}
	return false
}

// forgetPending drops the clocks heard from a replica that is gone, so
// that a peer restarting many times leaves nothing behind
// (TestRestartsLeaveNoResidue).
func (s *RawShard) forgetPending(r crdt.Replica) {
	s.pending = slices.DeleteFunc(s.pending, func(e crdt.ClockEntry) bool { return e.Replica == r })
}

// heard does the liveness bookkeeping of a heartbeat from r: a first
// heartbeat records the peer as up; one of the same incarnation refreshes
// it (and brings it back up if held as down; a stopping peer stays
// stopping: a heartbeat it sent before its stopping message may arrive
// after it); one of a new incarnation replaces the old one, whose
// presences leave at once, stopping or not, as in a permdown.
func (s *RawShard) heard(r crdt.Replica, now time.Duration) crdt.Diff {
	prev := s.peers[r.Name]
	switch {
	case prev == nil:
		s.peers[r.Name] = &peer{vsn: r.Vsn, last: now}
		return s.state.ReplicaUp(r)
	case prev.vsn == r.Vsn:
		prev.last = now
		if !prev.down {
			return crdt.Diff{}
		}
		prev.down = false
		return s.state.ReplicaUp(r)
	default:
		old := crdt.Replica{Name: r.Name, Vsn: prev.vsn}
		var d crdt.Diff
		if !prev.down {
			d = s.state.ReplicaDown(old)
		}
		d = d.Then(s.state.RemoveReplica(old))
		s.gens.Prune(old)
		s.forgetPending(old)
		s.peers[r.Name] = &peer{vsn: r.Vsn, last: now}
		return d.Then(s.state.ReplicaUp(r))
	}
}
