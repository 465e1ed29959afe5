package presencechannel

import (
	"bytes"
	"encoding/json"
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
//   - none: no presence traffic at all (the member may still be tracked).
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

// modeOf reads the join payload's "presence" option; ok is false when it
// is not an object with a known mode.
func modeOf(p phx.Payload) (mode string, ok bool) {
	if p.IsBinary || !bytes.Contains(bytes.ToLower(p.JSON), []byte(`"presence"`)) {
		return ModeFull, true
	}
	var in struct {
		Presence *struct {
			Mode string `json:"mode"`
		} `json:"presence"`
	}
	if json.Unmarshal(p.JSON, &in) != nil {
		return "", false
	}
	if in.Presence == nil {
		return ModeFull, true
	}
	switch in.Presence.Mode {
	case "", ModeFull:
		return ModeFull, true
	case ModeCount, ModeNone:
		return in.Presence.Mode, true
	}
	return "", false
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
		if err := srv.Broadcast(topic, EventCount, countPayload{d.Keys, d.Metas}); err != nil {
			ch.log.Error("presencechannel: presence_count broadcast failed", "topic", topic, "err", err)
		}
	}
}
