package rawshard

import (
	"slices"
	"time"

	"github.com/gopresence/presence/internal/crdt"
)

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
func (s *Shard) Peers() []PeerStatus {
	out := make([]PeerStatus, 0, len(s.peers))
	for n, p := range s.peers {
		out = append(out, PeerStatus{Replica: crdt.Replica{Name: n, Vsn: p.vsn}, Down: p.down, LastSeen: p.last,
			Stopping: p.stopping, GraceEnd: p.graceEnd})
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Replica.Compare(b.Replica) })
	return out
}

// DetectDown applies the down and permdown timers to every peer, and
// ends the grace of stopping peers whose grace is over.
func (s *Shard) DetectDown(now time.Duration) {
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
func (s *Shard) PeerDown(name string, vsn int64) {
	if p := s.peers[name]; p != nil && p.vsn == vsn {
		p.down = true
	}
	s.emit(s.state.ReplicaDown(crdt.Replica{Name: name, Vsn: vsn}))
}

// PeerPermdown forgets the replica (name, vsn): its presences, clock and
// generations' traces, and the peer record if it still has that vsn.
func (s *Shard) PeerPermdown(name string, vsn int64) {
	r := crdt.Replica{Name: name, Vsn: vsn}
	s.emit(s.state.RemoveReplica(r))
	s.gens.Prune(r)
	s.forgetPending(r)
	if p := s.peers[name]; p != nil && p.vsn == vsn {
		delete(s.peers, name)
	}
}

// nextGraceEnd returns the earliest end of a stopping peer's grace.
func (s *Shard) nextGraceEnd() (time.Duration, bool) {
	var at time.Duration
	found := false
	for _, p := range s.peers {
		if p.stopping && (!found || p.graceEnd < at) {
			at, found = p.graceEnd, true
		}
	}
	return at, found
}

// NameClash returns an older live replica that has our name, if one
// heartbeated since we started.
func (s *Shard) NameClash() (crdt.Replica, bool) {
	if s.clash == nil {
		return crdt.Replica{}, false
	}
	return *s.clash, true
}

// peerUp reports whether r is a known peer held as up.
func (s *Shard) peerUp(r crdt.Replica) bool {
	p := s.peers[r.Name]
	return p != nil && p.vsn == r.Vsn && !p.down
}

func (s *Shard) anyPeerDown() bool {
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
func (s *Shard) forgetPending(r crdt.Replica) {
	s.pending = slices.DeleteFunc(s.pending, func(e crdt.ClockEntry) bool { return e.Replica == r })
}

// heard does the liveness bookkeeping of a heartbeat from r: a first
// heartbeat records the peer as up; one of the same incarnation refreshes
// it (and brings it back up if held as down; a stopping peer stays
// stopping: a heartbeat it sent before its stopping message may arrive
// after it); one of a new incarnation replaces the old one, whose
// presences leave at once, stopping or not, as in a permdown.
func (s *Shard) heard(r crdt.Replica, now time.Duration) crdt.Diff {
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
