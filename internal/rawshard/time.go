package rawshard

import (
	"slices"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/wire"
)

// Heartbeat broadcasts the pending delta now, or an empty heartbeat when
// there is none, and returns the message.
func (s *Shard) Heartbeat() *wire.Heartbeat {
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

// Flush sends the pending delta, if any, without waiting for the tick or
// the flush deadline (the tracker's Shutdown does, so that changes made
// before it still go out).
func (s *Shard) Flush() {
	if s.state.HasDelta() {
		s.Heartbeat()
	}
}

// Tick is the periodic step, Phoenix.Tracker's heartbeat timer: broadcast,
// transfer sampling, failure detection. now is the shard's monotonic time.
func (s *Shard) Tick(now time.Duration) {
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
func (s *Shard) Sample() {
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
func (s *Shard) RequestTransfer(node string) *wire.TransferReq {
	s.nextReq++
	m := &wire.TransferReq{ID: s.nextReq, From: s.self, Clocks: s.state.Clocks()}
	s.send(node, m)
	return m
}

// --- deadlines ---
//
// Besides the tick, two things are due at a time of their own: the flush
// of a pending local delta, and the end of a stopping peer's grace. Both
// live here rather than in the shells, so that the tracker and the
// simulator flush and end graces by one policy: each asks NextDeadline
// and calls Advance when it comes.

// armFlush arms the flush deadline, FlushInterval after now, when a
// command or a merge left a delta pending and no deadline is armed. An armed
// deadline stays until Advance reaches it, even when a heartbeat sends the
// delta first: a change made after that heartbeat then goes out at the
// deadline already armed, still within FlushInterval, and a burst of
// commands costs one wake-up per interval, not one per command.
func (s *Shard) armFlush(now time.Duration) {
	if s.cfg.FlushInterval > 0 && !s.flushArmed && s.state.HasDelta() {
		s.flushAt = now + s.cfg.FlushInterval
		s.flushArmed = true
		s.ready.NewDeadline = true
	}
}

// NextDeadline returns the earliest time at which Advance has something
// to do: the flush deadline, or the end of a stopping peer's grace (so
// that the presences of a stopped node leave when its grace ends, not up
// to a broadcast period later). ok is false when nothing is due.
func (s *Shard) NextDeadline() (at time.Duration, ok bool) {
	at, ok = s.nextGraceEnd()
	if s.flushArmed && (!ok || s.flushAt < at) {
		at, ok = s.flushAt, true
	}
	return at, ok
}

// Advance does what is due by now: it sends the pending delta if the
// flush deadline has come (and disarms it), and ends the grace of every
// stopping peer whose grace is over (DetectDown).
func (s *Shard) Advance(now time.Duration) {
	if s.flushArmed && s.flushAt <= now {
		s.flushArmed = false
		s.Flush()
	}
	if at, ok := s.nextGraceEnd(); ok && at <= now {
		s.DetectDown(now)
	}
}
