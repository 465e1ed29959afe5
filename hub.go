package presence

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/gopresence/presence/tracker"
)

// DefaultDiffWindow is presenced's Config.DiffWindow: how long, at most, a
// busy topic's changes are held to be sent as one presence_diff.
const DefaultDiffWindow = 100 * time.Millisecond

// windowPerKey is how much a topic's window grows with each key, up to
// DiffWindow: a diff costs one frame per member, so the larger the topic,
// the fewer diffs a second it gets. With the default, 100 keys or more
// reach 100 ms (at most 10 diffs a second); 5 keys wait at most 5 ms, and
// only when a change follows another that closely.
var windowPerKey = time.Millisecond // a variable for the tests

// topicHub is the subscribers' side of one topic: the topic's presences
// as of the last diff handed to them (the view), and the changes since
// then not yet sent (pending), net of what cancelled out. It exists while
// the topic has subscribers.
//
// The view is what a new member must get as presence_state: the diffs
// after it are exactly the changes it lacks, whatever a window holds. The
// tracker's own listing runs ahead of the diffs, so a member given it
// could miss the leave of a meta that joined and left inside one window
// (the two cancel out and are never sent).
type topicHub struct {
	topic string
	// deliver serialises flushes, so that subscribers get the diffs in
	// order, without holding mu while they run.
	deliver sync.Mutex

	mu    sync.Mutex
	dead  bool
	subs  []*subscription
	seq   uint64 // tracker diffs with Seq ≤ seq are already in the view
	view  map[string][]viewMeta
	metas int
	// pending holds, per key, the metas joined and left since the view;
	// joins are never in the view, leaves always are.
	pending  map[string]*keyChange
	last     time.Time // when the last diff was sent
	timer    *time.Timer
	timerGen uint64 // numbers the timers, so that a late one knows it is stale
	// state caches the view's presence_state payload until it changes.
	state []byte
}

// viewMeta is one meta of the view, with its owner: a key's metas are kept
// in owner order, as the tracker lists them.
type viewMeta struct {
	owner string
	meta  json.RawMessage
}

type keyChange struct {
	joins, leaves []tracker.Presence
}

func containsMeta(ps []tracker.Presence, m json.RawMessage) int {
	return slices.IndexFunc(ps, func(x tracker.Presence) bool { return bytes.Equal(x.Meta, m) })
}

func viewIndex(vs []viewMeta, m json.RawMessage) int {
	return slices.IndexFunc(vs, func(x viewMeta) bool { return bytes.Equal(x.meta, m) })
}

func newHub(topic string) *topicHub {
	return &topicHub{topic: topic, view: map[string][]viewMeta{}, pending: map[string]*keyChange{}}
}

// fill starts the view from the tracker's listing at seq; h.mu is held.
func (h *topicHub) fill(ps []tracker.Presence, seq uint64) {
	h.seq = seq
	for _, x := range ps {
		h.view[x.Key] = append(h.view[x.Key], viewMeta{x.Owner, x.Meta})
		h.metas++
	}
}

// add merges a tracker diff into pending; h.mu is held. Joins come first:
// a meta that joins and leaves in one step says nothing.
func (h *topicHub) add(d tracker.Diff) {
	if d.Seq <= h.seq {
		return // the listing the view started from holds it
	}
	for _, x := range d.Joins {
		c := h.change(x.Key)
		if i := containsMeta(c.leaves, x.Meta); i >= 0 {
			c.leaves = slices.Delete(c.leaves, i, i+1) // back (a replica up again): no change
		} else if viewIndex(h.view[x.Key], x.Meta) < 0 && containsMeta(c.joins, x.Meta) < 0 {
			c.joins = append(c.joins, x)
		}
	}
	for _, x := range d.Leaves {
		c := h.change(x.Key)
		if i := containsMeta(c.joins, x.Meta); i >= 0 {
			c.joins = slices.Delete(c.joins, i, i+1) // joined and left inside the window
		} else if viewIndex(h.view[x.Key], x.Meta) >= 0 && containsMeta(c.leaves, x.Meta) < 0 {
			c.leaves = append(c.leaves, x)
		}
	}
}

func (h *topicHub) change(key string) *keyChange {
	c := h.pending[key]
	if c == nil {
		c = &keyChange{}
		h.pending[key] = c
	}
	return c
}

// window is how long after the last diff the next may go; h.mu is held.
func (h *topicHub) window(max time.Duration) time.Duration {
	return min(max, time.Duration(len(h.view))*windowPerKey)
}

// take applies pending to the view and returns it as a Diff (ok false when
// everything cancelled out); h.mu is held.
func (h *topicHub) take() (d Diff, ok bool) {
	if len(h.pending) == 0 {
		return Diff{}, false
	}
	d.Topic = h.topic
	for key, c := range h.pending {
		if len(c.joins) == 0 && len(c.leaves) == 0 {
			continue
		}
		vs := h.view[key]
		before := len(vs)
		if len(c.leaves) > 0 {
			if d.Leaves == nil {
				d.Leaves = State{}
			}
			e := &Entry{}
			for _, x := range c.leaves {
				e.Metas = append(e.Metas, x.Meta)
				if i := viewIndex(vs, x.Meta); i >= 0 {
					vs = slices.Delete(vs, i, i+1)
				}
			}
			d.Leaves[key] = e
		}
		if len(c.joins) > 0 {
			if d.Joins == nil {
				d.Joins = State{}
			}
			e := &Entry{}
			for _, x := range c.joins {
				e.Metas = append(e.Metas, x.Meta)
				i, _ := slices.BinarySearchFunc(vs, x.Owner, func(v viewMeta, owner string) int {
					if v.owner <= owner {
						return -1
					}
					return 1
				})
				vs = slices.Insert(vs, i, viewMeta{x.Owner, x.Meta})
			}
			d.Joins[key] = e
		}
		h.metas += len(vs) - before
		switch {
		case len(vs) == 0:
			delete(h.view, key)
		default:
			h.view[key] = vs
		}
		switch {
		case before == 0 && len(vs) > 0:
			d.Online = append(d.Online, key)
		case before > 0 && len(vs) == 0:
			d.Offline = append(d.Offline, key)
		}
	}
	clear(h.pending)
	if d.Joins == nil && d.Leaves == nil {
		return Diff{}, false
	}
	slices.Sort(d.Online)
	slices.Sort(d.Offline)
	d.Keys, d.Metas = len(h.view), h.metas
	h.state = nil
	return d, true
}

// stateOf returns the view as a State (metas shared, read-only); h.mu is
// held.
func (h *topicHub) stateOf() State {
	s := make(State, len(h.view))
	for k, vs := range h.view {
		e := &Entry{Metas: make([]json.RawMessage, len(vs))}
		for i, v := range vs {
			e.Metas[i] = v.meta
		}
		s[k] = e
	}
	return s
}
