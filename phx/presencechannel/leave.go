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
// (a gap), until it joins the topic again or gapTTL passes; the new join
// gets them first, pushed ahead of anything else it is sent after its
// reply. The gap starts with the diffs of the last gapBack (the socket
// stops receiving broadcasts a moment before its channel terminates), so
// what is pushed is an unbroken run of the topic's diffs up to the join,
// and the broadcasts the join receives continue it: applied after the
// state, in order, they change nothing the state holds and undo what the
// old channel's diffs would redo. Recording and broadcasting a diff, and
// taking a gap and pushing it, happen under the topic's lock, so no diff
// falls between the two. A client that only leaves gets nothing after
// phx_close, as from Phoenix.

// gapTTL bounds how long a gap is kept. Only a diff still on its way to the
// client when it made its new channel can be re-applied, so only a rejoin
// that comes within about a round trip of the leave needs the gap; one
// that comes later gets exactly what Phoenix sends.
const gapTTL = 100 * time.Millisecond

// gapBack is how far back a gap starts; recentDiffs bounds what a topic
// keeps for it.
const (
	gapBack     = time.Second
	recentDiffs = 16
)

// maxGapDiffs bounds a gap (a busy topic gives a few coalesced diffs
// within gapTTL); past it the rejoin gets none, and may show a ghost.
const maxGapDiffs = 256

// gap is the diffs of a topic a connection left, since it left; it holds
// the topic's subscription (Channel.acquire). Its fields are under ts.mu.
type gap struct {
	ts    *topicSub
	srv   *phx.Server
	timer *time.Timer
	diffs []presence.Diff
	over  bool
}

// recentDiff is a diff the topic's members got, and when.
type recentDiff struct {
	at time.Time
	d  presence.Diff
}

func (g *gap) add(d presence.Diff) {
	if g.over {
		return
	}
	if len(g.diffs) == maxGapDiffs {
		g.over, g.diffs = true, nil
		return
	}
	g.diffs = append(g.diffs, d)
}

// record keeps d among the topic's recent diffs and in every open gap;
// ts.mu is held.
func (ts *topicSub) record(d presence.Diff, now time.Time) {
	ts.recent = append(ts.recent, recentDiff{now, d})
	if len(ts.recent) > recentDiffs {
		ts.recent = append(ts.recent[:0], ts.recent[len(ts.recent)-recentDiffs:]...)
	}
	for g := range ts.gaps {
		g.add(d)
	}
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
	ts := ch.acquire(srv, topic)
	g := &gap{ts: ts, srv: srv}
	g.timer = time.AfterFunc(time.Hour, func() { ch.endGap(u, topic, g) })
	ts.mu.Lock()
	since := time.Now().Add(-gapBack)
	for _, r := range ts.recent {
		if !r.at.Before(since) {
			g.diffs = append(g.diffs, r.d)
		}
	}
	if ts.gaps == nil {
		ts.gaps = map[*gap]struct{}{}
	}
	ts.gaps[g] = struct{}{}
	ts.mu.Unlock()
	u.mu.Lock()
	if u.gaps == nil {
		u.gaps = map[string]*gap{}
	}
	old := u.gaps[topic]
	u.gaps[topic] = g
	u.mu.Unlock()
	if old != nil { // left twice without a join between: the later leave counts
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
	g.timer.Stop()
	g.ts.mu.Lock()
	delete(g.ts.gaps, g)
	g.ts.mu.Unlock()
	ch.release(g.srv, topic)
}

// pushGap, on a join of topic by u's connection (its socket already
// receives the topic's broadcasts), ends the gap and pushes what it
// recorded to s, under the topic's lock: a diff is either in the gap or
// broadcast to s after it.
func (ch *Channel) pushGap(u *User, s *phx.Socket) {
	topic := s.Topic()
	u.mu.Lock()
	g := u.gaps[topic]
	delete(u.gaps, topic)
	u.mu.Unlock()
	if g == nil {
		return
	}
	g.timer.Stop()
	g.ts.mu.Lock()
	delete(g.ts.gaps, g)
	for _, d := range g.diffs {
		ch.push(s, EventDiff, d)
	}
	over := g.over
	g.ts.mu.Unlock()
	ch.release(g.srv, topic)
	if over {
		ch.log.Warn("presencechannel: a rejoin missed the diffs since its leave (too many)", "key", u.Key, "topic", topic)
	}
}
