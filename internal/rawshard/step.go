package rawshard

import (
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/wire"
)

// Step handles one inbound message at time now. Messages carrying our own
// name are ignored: node names are unique in a cluster, so such a
// message comes from another live node that has taken ours. A merge that
// removes elements re-gossips the removals in our own delta, which arms
// the flush deadline as a command does.
func (s *Shard) Step(now time.Duration, m wire.Message) {
	s.step(now, m)
	s.armFlush(now)
}

func (s *Shard) step(now time.Duration, m wire.Message) {
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
		s.ready.NewDeadline = true
	}
}
