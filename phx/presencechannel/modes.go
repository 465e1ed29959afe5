package presencechannel

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
)

// A member of a big topic may ask, in its join payload, for less than the
// whole list: {"meta": {...}, "presence": {"mode": "count"}}.
//
//   - full (the default): presence_state after the join, presence_diff
//     after every change (coalesced), as Phoenix;
//   - count: no list and no diffs, but presence_count {"keys": K,
//     "metas": M} after the join and whenever the counts change
//     (coalesced as the diffs are);
//   - none: no presence traffic at all (the member may still be tracked);
//   - full with "max_keys": K: full while the topic has at most K keys,
//     count above; when the topic shrinks back to K it gets a fresh
//     presence_state, then diffs again.
//
// Each kind of member ignores the other kind's event (phx.Socket.Ignore),
// so that a broadcast is still encoded once for all.
const (
	ModeFull  = "full"
	ModeCount = "count"
	ModeNone  = "none"

	EventCount = "presence_count"
)

var replyInvalidMode = map[string]string{"reason": "invalid presence mode"}

// modeOf reads the join payload's "presence" option: the mode, and for
// full its max_keys (0: none); ok is false when it is not an object with a
// known mode and a positive max_keys (only with full).
func modeOf(p phx.Payload) (mode string, maxKeys int, ok bool) {
	if p.IsBinary || !mentionsPresence(p.JSON) {
		return ModeFull, 0, true
	}
	var in struct {
		Presence *struct {
			Mode    string `json:"mode"`
			MaxKeys *int   `json:"max_keys"`
		} `json:"presence"`
	}
	if json.Unmarshal(p.JSON, &in) != nil {
		return "", 0, false
	}
	if in.Presence == nil {
		return ModeFull, 0, true
	}
	switch mk := in.Presence.MaxKeys; in.Presence.Mode {
	case "", ModeFull:
		if mk == nil {
			return ModeFull, 0, true
		}
		if *mk <= 0 {
			return "", 0, false
		}
		return ModeFull, *mk, true
	case ModeCount, ModeNone:
		return in.Presence.Mode, 0, mk == nil
	}
	return "", 0, false
}

// mentionsPresence reports whether b holds the string "presence" in any
// case (as encoding/json matches a member), without copying b: every join
// passes here, and almost none has the option.
func mentionsPresence(b []byte) bool {
	const want = `presence"`
	for i := bytes.IndexByte(b, '"'); i >= 0 && i+len(want) < len(b); {
		if bytes.EqualFold(b[i+1:i+1+len(want)], []byte(want)) {
			return true
		}
		j := bytes.IndexByte(b[i+1:], '"')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// limited is a member with max_keys: counting while the topic is larger.
// Under ts.mu.
type limited struct {
	maxKeys  int
	counting bool
}

// joinLimited registers a max_keys member and sends it, under ts.mu (so
// that no switch of broadcastDiff comes between), the state or the counts
// the topic's size calls for.
func (ch *Channel) joinLimited(s *phx.Socket, ts *topicSub, maxKeys int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	keys, metas := ch.cfg.Presence.ViewCounts(s.Topic())
	l := &limited{maxKeys: maxKeys, counting: keys > maxKeys}
	if ts.limited == nil {
		ts.limited = map[*phx.Socket]*limited{}
	}
	ts.limited[s] = l
	if l.counting {
		s.Ignore(EventDiff)
		ts.modes.count.Add(1)
		ts.modes.full.Add(-1) // counted as full from its acquire on
		ch.push(s, EventCount, countPayload{keys, metas})
		return
	}
	ch.push(s, EventState, ch.cfg.Presence.Snapshot(s.Topic()))
}

// leaveLimited drops a max_keys member, with its count.
func (ts *topicSub) leaveLimited(s *phx.Socket) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	l := ts.limited[s]
	if l == nil {
		return
	}
	delete(ts.limited, s)
	if l.counting {
		ts.modes.count.Add(-1)
	} else {
		ts.modes.full.Add(-1)
	}
}

// switchLimited moves the max_keys members across their limit at d; ts.mu
// is held. Called before d is broadcast for the members d takes over their
// limit (they get its counts, not d), after it for those it brings back
// (they get the state as d left it, then the diffs after d).
func (ch *Channel) switchLimited(topic string, ts *topicSub, d presence.Diff, up bool) {
	for s, l := range ts.limited {
		switch over := d.Keys > l.maxKeys; {
		case up && over && !l.counting:
			l.counting = true
			s.Ignore(EventDiff)
			ts.modes.full.Add(-1)
			ts.modes.count.Add(1)
			ch.push(s, EventCount, countPayload{d.Keys, d.Metas})
		case !up && !over && l.counting:
			l.counting = false
			s.Ignore(EventCount)
			ts.modes.count.Add(-1)
			ts.modes.full.Add(1)
			ch.push(s, EventState, ch.cfg.Presence.Snapshot(topic))
		}
	}
}

func (ch *Channel) push(s *phx.Socket, event string, payload any) {
	if err := s.Push(event, payload); err != nil && !errors.Is(err, phx.ErrClosed) {
		ch.log.Error("presencechannel: push failed", "topic", s.Topic(), "event", event, "err", err)
	}
}

// ignore sets what a member of mode does not receive.
func ignore(s *phx.Socket, mode string) {
	switch mode {
	case ModeCount:
		s.Ignore(EventDiff)
	case ModeNone:
		s.Ignore(EventDiff, EventCount)
	default:
		s.Ignore(EventCount)
	}
}

// modeCounts counts a topic's local members by mode, so that a topic's
// diffs are not encoded for no one, and its counts only when someone
// asked.
type modeCounts struct {
	full, count atomic.Int64
}

func (mc *modeCounts) add(mode string, d int64) {
	switch mode {
	case ModeFull:
		mc.full.Add(d)
	case ModeCount:
		mc.count.Add(d)
	}
}

// countPayload is presence_count's payload.
type countPayload struct{ keys, metas int }

func (c countPayload) AppendJSON(b []byte) []byte {
	b = append(b, `{"keys":`...)
	b = strconv.AppendInt(b, int64(c.keys), 10)
	b = append(b, `,"metas":`...)
	b = strconv.AppendInt(b, int64(c.metas), 10)
	return append(b, '}')
}

// broadcastDiff sends d to the topic's full members, and its counts to
// the count members when they changed; called in order for one topic.
// Under ts.mu, with the recording of d for the gaps (leave.go).
func (ch *Channel) broadcastDiff(srv *phx.Server, topic string, ts *topicSub, d presence.Diff) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.record(d, time.Now())
	if len(ts.limited) > 0 {
		ch.switchLimited(topic, ts, d, true)
	}
	if ts.modes.full.Load() > 0 {
		if err := srv.Broadcast(topic, EventDiff, d); err != nil {
			ch.log.Error("presencechannel: presence_diff broadcast failed", "topic", topic, "err", err)
		}
	}
	// The last counts are kept whoever listens, so that a count member
	// that joins later is sent the next change.
	changed := d.Keys != ts.lastKeys || d.Metas != ts.lastMetas
	ts.lastKeys, ts.lastMetas = d.Keys, d.Metas
	if changed && ts.modes.count.Load() > 0 {
		ch.countChanged(srv, topic, ts, time.Now())
	}
	if len(ts.limited) > 0 {
		ch.switchLimited(topic, ts, d, false)
	}
}
