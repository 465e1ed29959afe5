package presencechannel

import (
	"time"

	"github.com/gopresence/presence/phx"
)

// CountInterval is the shortest time between two presence_count frames
// of one topic. Counts are what clients of big topics ask for, and a
// busy big topic changes its counts with every diff window: one frame
// per window to every count member is most of what a join costs there.
// A change to a quiet topic still goes out at once (the leading edge);
// changes within the interval after a frame are sent as one, the latest
// counts, when the interval ends (the trailing edge), so the last counts
// of a burst always arrive.
const CountInterval = 250 * time.Millisecond

// countWindow paces one topic's presence_count broadcasts. Guarded by
// topicSub.mu.
type countWindow struct {
	sent  time.Time   // the last broadcast
	timer *time.Timer // the trailing broadcast, when one is due
}

// changed is called (under ts.mu) when the topic's counts changed: it
// broadcasts them now, or makes sure the latest are broadcast when the
// interval ends.
func (ch *Channel) countChanged(srv *phx.Server, topic string, ts *topicSub, now time.Time) {
	w := &ts.counts
	if w.timer != nil {
		return // the trailing broadcast sends the latest counts
	}
	if wait := CountInterval - now.Sub(w.sent); wait > 0 {
		w.timer = time.AfterFunc(wait, func() {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			if w.timer == nil {
				return // stopped
			}
			w.timer = nil
			ch.broadcastCount(srv, topic, ts, time.Now())
		})
		return
	}
	ch.broadcastCount(srv, topic, ts, now)
}

// broadcastCount sends the topic's latest counts to its count members.
func (ch *Channel) broadcastCount(srv *phx.Server, topic string, ts *topicSub, now time.Time) {
	ts.counts.sent = now
	if ts.modes.count.Load() == 0 {
		return
	}
	if err := srv.Broadcast(topic, EventCount, countPayload{ts.lastKeys, ts.lastMetas}); err != nil {
		ch.log.Error("presencechannel: presence_count broadcast failed", "topic", topic, "err", err)
	}
}

// stop drops a due trailing broadcast (the topic's subscription ends).
func (w *countWindow) stop() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}
