package presencechannel

import (
	"errors"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
)

// A client that leaves a topic and joins it again on the same connection
// (phoenix.js does so with a new channel object, also when a second object
// of a topic joins) hands the new channel every frame of the topic without
// a join_ref, the old channel's last presence_diffs included, and applies
// them after the new channel's presence_state. A diff broadcast between
// the leave and the new join reaches neither channel; the state holds it,
// but if it undid a change of those last diffs (a meta that joined, then
// left), the client re-applies the change after the state and keeps it
// for good: a ghost. The connection's own leave is such a diff.
//
// So a connection that leaves a topic and stays records the topic's diffs
// from its leave on (a gap), until it joins the topic again or gapTTL
// passes; the new join gets them first, pushed ahead of its
// presence_state. Applied after the state, in order, they change nothing
// the state holds and undo what the old channel's diffs would redo. A
// client that only leaves gets nothing after phx_close, as from Phoenix.

// gapTTL bounds how long a gap is kept. Only a diff still on its way to the
// client when it made its new channel can be re-applied, so only a rejoin
// that comes within about a round trip of the leave needs the gap; one
// that comes later gets exactly what Phoenix sends.
const gapTTL = 100 * time.Millisecond

// maxGapDiffs bounds a gap (a busy topic gives a few coalesced diffs
// within gapTTL); past it the rejoin gets none, and may show a ghost.
const maxGapDiffs = 256

// gap is the diffs of a topic a connection left, since it left. It also
// holds the topic's subscription (Channel.acquire), so that the broadcasts
// a rejoin receives once it is subscribed in phx continue exactly where
// the recorded diffs end: each diff goes to both, one after the other.
type gap struct {
	diffs  []presence.Diff
	over   bool
	cancel func()
	timer  *time.Timer
	srv    *phx.Server
}

// stays reports whether a channel ended with reason leaves its connection
// open (the client left, joined again, or the channel stopped itself).
func stays(reason error) bool {
	return errors.Is(reason, phx.ErrLeft) || errors.Is(reason, phx.ErrDuplicateJoin) || errors.Is(reason, phx.ErrStop)
}

// startGap starts recording topic's diffs for u's connection, before its
// channel of topic untracks (so that its own leave is recorded); the
// returned arm starts the gap's gapTTL, once the channel is gone and the
// connection reads its next frame.
func (ch *Channel) startGap(u *User, srv *phx.Server, topic string) (arm func()) {
	ch.acquire(srv, topic)
	g := &gap{srv: srv}
	cancel := ch.cfg.Presence.Subscribe(topic, func(d presence.Diff) {
		u.mu.Lock()
		defer u.mu.Unlock()
		if g.over {
			return
		}
		if len(g.diffs) == maxGapDiffs {
			g.over, g.diffs = true, nil
			return
		}
		g.diffs = append(g.diffs, d)
	})
	u.mu.Lock()
	if u.gaps == nil {
		u.gaps = map[string]*gap{}
	}
	old := u.gaps[topic]
	g.cancel = cancel
	g.timer = time.AfterFunc(time.Hour, func() { ch.endGap(u, topic, g) })
	u.gaps[topic] = g
	u.mu.Unlock()
	if old != nil { // left twice without a join between: the later leave counts
		old.timer.Stop()
		ch.dropGap(old, topic)
	}
	return func() { g.timer.Reset(gapTTL) }
}

// endGap drops u's gap of topic if it is still g.
func (ch *Channel) endGap(u *User, topic string, g *gap) {
	u.mu.Lock()
	cur := u.gaps[topic] == g
	if cur {
		delete(u.gaps, topic)
	}
	u.mu.Unlock()
	if cur {
		ch.dropGap(g, topic)
	}
}

func (ch *Channel) dropGap(g *gap, topic string) {
	g.cancel()
	ch.release(g.srv, topic)
}

// takeGap, on a join of topic by u's connection (its socket already
// receives the topic's broadcasts), ends the gap and returns what it
// recorded.
func (ch *Channel) takeGap(u *User, topic string) []presence.Diff {
	u.mu.Lock()
	g := u.gaps[topic]
	if g == nil {
		u.mu.Unlock()
		return nil
	}
	delete(u.gaps, topic)
	diffs, over := g.diffs, g.over
	g.over, g.diffs = true, nil // nothing more is recorded
	u.mu.Unlock()
	g.timer.Stop()
	ch.dropGap(g, topic)
	if over {
		ch.log.Warn("presencechannel: a rejoin missed the diffs since its leave (too many)", "key", u.Key, "topic", topic)
	}
	return diffs
}
