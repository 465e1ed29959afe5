package presencechannel

import (
	"context"
	"errors"

	"github.com/gopresence/presence/phx"
)

// A client that leaves a topic and joins it again at once (phoenix.js does
// so when a second channel object of a topic joins) must get the
// presence_diff of its own leave on the new channel: that channel may
// already hold, as pending until its presence_state, the diff of the join
// the leave undoes, and would apply it after the state, a ghost. Diffs
// reach subscribers asynchronously, so the leave's diff may still be on its
// way when the new join comes; the new join then waits for it, subscribed
// (phx holds what it receives until the join reply), and the presence
// subscription of the topic is kept until the diff is out.

// flusher is a Presence whose diffs can be waited for (*presence.Presence).
type flusher interface {
	Flush(ctx context.Context, topic string) error
}

// stays reports whether a channel ended with reason leaves its connection
// open (the client left, joined again, or the channel stopped itself).
func stays(reason error) bool {
	return errors.Is(reason, phx.ErrLeft) || errors.Is(reason, phx.ErrDuplicateJoin) || errors.Is(reason, phx.ErrStop)
}

// announceLeave, after u's channel of topic untracked, marks the leave as
// on its way and waits, in the background, until its diff is broadcast;
// then it unmarks it and releases the channel's subscription. It returns
// false (and does nothing) when the Presence cannot be flushed.
func (ch *Channel) announceLeave(u *User, srv *phx.Server, topic string) bool {
	f, ok := ch.cfg.Presence.(flusher)
	if !ok {
		return false
	}
	u.mu.Lock()
	if u.leaving == nil {
		u.leaving = map[string]int{}
	}
	u.leaving[topic]++
	u.mu.Unlock()
	go func() { // ends within CallTimeout, or when the Presence closes
		ctx, cancel := context.WithTimeout(context.Background(), ch.cfg.CallTimeout)
		if err := f.Flush(ctx, topic); err != nil {
			ch.log.Warn("presencechannel: a leave's diff was not broadcast in time", "topic", topic, "err", err)
		}
		cancel()
		u.mu.Lock()
		if u.leaving[topic]--; u.leaving[topic] <= 0 {
			delete(u.leaving, topic)
		}
		u.mu.Unlock()
		ch.release(srv, topic)
	}()
	return true
}

// awaitLeave, on a join of topic by u, waits until the diff of u's earlier
// leave of topic (if still on its way) is broadcast, so that the joining
// channel receives it.
func (ch *Channel) awaitLeave(ctx context.Context, u *User, topic string) {
	u.mu.Lock()
	n := u.leaving[topic]
	u.mu.Unlock()
	if n == 0 {
		return
	}
	f := ch.cfg.Presence.(flusher) // leaving is only set for a flusher
	ctx, cancel := context.WithTimeout(ctx, ch.cfg.CallTimeout)
	defer cancel()
	if err := f.Flush(ctx, topic); err != nil {
		ch.log.Warn("presencechannel: a rejoin did not see its leave's diff", "topic", topic, "err", err)
	}
}
