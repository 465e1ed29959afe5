package client

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"
)

// Meta is one presence meta: the JSON object the server sent, and its
// phx_ref, by which metas are told apart.
type Meta struct {
	// Ref is the meta's "phx_ref" ("" if absent).
	Ref string
	// Raw is the whole JSON object. Treat it as read-only.
	Raw json.RawMessage
}

// UnmarshalJSON keeps the object and extracts phx_ref.
func (m *Meta) UnmarshalJSON(b []byte) error {
	var ref struct {
		PhxRef string `json:"phx_ref"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		return err
	}
	m.Ref, m.Raw = ref.PhxRef, json.RawMessage(slices.Clone(b))
	return nil
}

// MarshalJSON returns Raw.
func (m Meta) MarshalJSON() ([]byte, error) {
	if m.Raw == nil {
		return json.Marshal(map[string]string{"phx_ref": m.Ref})
	}
	return m.Raw, nil
}

// Entry is the presence of one key: {"metas": [...], ...extra fields}.
type Entry struct {
	Metas []Meta
	// Extra holds the fields next to "metas" (added by a server-side
	// fetch), or nil.
	Extra map[string]json.RawMessage
}

// UnmarshalJSON decodes {"metas": [...], ...}.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	*e = Entry{}
	if raw, ok := fields["metas"]; ok {
		if err := json.Unmarshal(raw, &e.Metas); err != nil {
			return err
		}
		delete(fields, "metas")
	}
	if len(fields) > 0 {
		e.Extra = fields
	}
	return nil
}

// MarshalJSON encodes {"metas": [...], ...extra}.
func (e Entry) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		out[k] = v
	}
	metas := e.Metas
	if metas == nil {
		metas = []Meta{}
	}
	out["metas"] = metas
	return json.Marshal(out)
}

func (e Entry) clone() Entry {
	return Entry{Metas: slices.Clone(e.Metas), Extra: maps.Clone(e.Extra)}
}

func (e Entry) refs() map[string]bool {
	r := make(map[string]bool, len(e.Metas))
	for _, m := range e.Metas {
		r[m.Ref] = true
	}
	return r
}

// State is a presence state: key → Entry, the payload of presence_state.
type State map[string]Entry

// Clone returns a deep copy (the metas' Raw bytes are shared: they are
// never modified).
func (s State) Clone() State {
	out := make(State, len(s))
	for k, e := range s {
		out[k] = e.clone()
	}
	return out
}

// Diff is the payload of presence_diff.
type Diff struct {
	Joins  State `json:"joins"`
	Leaves State `json:"leaves"`
}

// JoinFunc is called for a key that gained metas: current is the entry
// before the join (nil for a new key) and joined holds only the new metas.
type JoinFunc func(key string, current *Entry, joined Entry)

// LeaveFunc is called for a key that lost metas: current is the entry
// after the removal (no metas means the key is gone) and left holds the
// metas that left.
type LeaveFunc func(key string, current Entry, left Entry)

// SyncState returns state brought to newState, as phoenix.js's
// Presence.syncState: the snapshot is turned into a diff against state
// (metas are matched by phx_ref only) and applied with SyncDiff, calling
// onJoin and onLeave (either may be nil). state and newState are not
// modified.
func SyncState(state, newState State, onJoin JoinFunc, onLeave LeaveFunc) State {
	out := state.Clone()
	applyDiff(out, stateDiff(out, newState), onJoin, onLeave)
	return out
}

// SyncDiff returns state with diff applied, as phoenix.js's
// Presence.syncDiff: joins first (a key keeps its metas that are not
// re-joined, followed by the joined ones), then leaves (metas removed by
// phx_ref; a key with no metas left is removed). Keys are processed in
// sorted order. state is not modified.
func SyncDiff(state State, diff Diff, onJoin JoinFunc, onLeave LeaveFunc) State {
	out := state.Clone()
	applyDiff(out, diff, onJoin, onLeave)
	return out
}

// stateDiff computes the diff that takes state to newState.
func stateDiff(state, newState State) Diff {
	d := Diff{Joins: State{}, Leaves: State{}}
	for key, cur := range state {
		if _, ok := newState[key]; !ok {
			d.Leaves[key] = cur.clone()
		}
	}
	for key, next := range newState {
		cur, ok := state[key]
		if !ok {
			d.Joins[key] = next.clone()
			continue
		}
		curRefs, nextRefs := cur.refs(), next.refs()
		var joined, left []Meta
		for _, m := range next.Metas {
			if !curRefs[m.Ref] {
				joined = append(joined, m)
			}
		}
		for _, m := range cur.Metas {
			if !nextRefs[m.Ref] {
				left = append(left, m)
			}
		}
		if len(joined) > 0 {
			e := next.clone()
			e.Metas = joined
			d.Joins[key] = e
		}
		if len(left) > 0 {
			e := cur.clone()
			e.Metas = left
			d.Leaves[key] = e
		}
	}
	return d
}

// applyDiff applies diff to state in place. The entries passed to the
// callbacks are copies.
func applyDiff(state State, diff Diff, onJoin JoinFunc, onLeave LeaveFunc) {
	for _, key := range slices.Sorted(maps.Keys(diff.Joins)) {
		joined := diff.Joins[key]
		cur, had := state[key]
		next := joined.clone()
		if had {
			joinedRefs := joined.refs()
			var kept []Meta
			for _, m := range cur.Metas {
				if !joinedRefs[m.Ref] {
					kept = append(kept, m)
				}
			}
			next.Metas = append(kept, next.Metas...)
		}
		state[key] = next
		if onJoin != nil {
			var before *Entry
			if had {
				c := cur.clone()
				before = &c
			}
			onJoin(key, before, joined.clone())
		}
	}
	for _, key := range slices.Sorted(maps.Keys(diff.Leaves)) {
		left := diff.Leaves[key]
		cur, ok := state[key]
		if !ok {
			continue
		}
		leftRefs := left.refs()
		var kept []Meta
		for _, m := range cur.Metas {
			if !leftRefs[m.Ref] {
				kept = append(kept, m)
			}
		}
		cur.Metas = kept
		if len(kept) == 0 {
			delete(state, key)
		} else {
			state[key] = cur
		}
		if onLeave != nil {
			onLeave(key, cur.clone(), left.clone())
		}
	}
}

// PresenceOptions configures a Presence. Nil means the defaults.
type PresenceOptions struct {
	// StateEvent is the event carrying full states. Default
	// "presence_state".
	StateEvent string
	// DiffEvent is the event carrying diffs. Default "presence_diff".
	DiffEvent string
}

// Presence keeps the presence state of one channel in sync, with the
// semantics of phoenix.js's Presence: diffs that arrive before the first
// state after each (re)join are queued and applied after that state.
//
// The callbacks are called from the socket's event goroutine, in order,
// never concurrently, after the state they describe has been stored (so
// List and Get inside a callback see the new state); they may call any
// method of the Presence.
type Presence struct {
	ch                    *Channel
	stateEvent, diffEvent string

	mu      sync.Mutex
	state   State
	joinRef string // channel join_ref of the last state; "" before the first
	pending []Diff
	onJoin  JoinFunc
	onLeave LeaveFunc
	onSync  func()
}

// NewPresence starts syncing ch's presence events. Call it before
// ch.Join so that the first presence_state is not missed.
func NewPresence(ch *Channel, opts *PresenceOptions) *Presence {
	p := &Presence{ch: ch, stateEvent: "presence_state", diffEvent: "presence_diff", state: State{}}
	if opts != nil {
		if opts.StateEvent != "" {
			p.stateEvent = opts.StateEvent
		}
		if opts.DiffEvent != "" {
			p.diffEvent = opts.DiffEvent
		}
	}
	ch.bind(p.stateEvent, func(ev event) { p.handleState(ev.payload, ev.joinRef) })
	ch.bind(p.diffEvent, func(ev event) { p.handleDiff(ev.payload, ev.joinRef) })
	return p
}

// OnJoin sets the join callback (nil removes it).
func (p *Presence) OnJoin(f JoinFunc) { p.mu.Lock(); p.onJoin = f; p.mu.Unlock() }

// OnLeave sets the leave callback (nil removes it).
func (p *Presence) OnLeave(f LeaveFunc) { p.mu.Lock(); p.onLeave = f; p.mu.Unlock() }

// OnSync sets the callback called after each applied state or diff.
func (p *Presence) OnSync(f func()) { p.mu.Lock(); p.onSync = f; p.mu.Unlock() }

type call struct {
	join     bool
	key      string
	before   *Entry
	current  Entry
	presence Entry
}

// handleState applies a presence_state received while the channel's
// join_ref was chanJoinRef.
func (p *Presence) handleState(payload json.RawMessage, chanJoinRef string) {
	var st State
	if err := json.Unmarshal(payload, &st); err != nil {
		return
	}
	p.mu.Lock()
	p.joinRef = chanJoinRef
	var calls []call
	rec := p.recorder(&calls)
	applyDiff(p.state, stateDiff(p.state, st), rec.join, rec.leave)
	for _, d := range p.pending {
		applyDiff(p.state, d, rec.join, rec.leave)
	}
	p.pending = nil
	p.run(calls) // unlocks
}

func (p *Presence) handleDiff(payload json.RawMessage, chanJoinRef string) {
	var d Diff
	if err := json.Unmarshal(payload, &d); err != nil {
		return
	}
	p.mu.Lock()
	if p.joinRef == "" || p.joinRef != chanJoinRef {
		p.pending = append(p.pending, d)
		p.mu.Unlock()
		return
	}
	var calls []call
	rec := p.recorder(&calls)
	applyDiff(p.state, d, rec.join, rec.leave)
	p.run(calls)
}

type recorder struct{ calls *[]call }

func (p *Presence) recorder(calls *[]call) recorder { return recorder{calls} }

func (r recorder) join(key string, before *Entry, joined Entry) {
	*r.calls = append(*r.calls, call{join: true, key: key, before: before, presence: joined})
}

func (r recorder) leave(key string, current, left Entry) {
	*r.calls = append(*r.calls, call{key: key, current: current, presence: left})
}

// run releases p.mu and makes the recorded calls, then onSync.
func (p *Presence) run(calls []call) {
	onJoin, onLeave, onSync := p.onJoin, p.onLeave, p.onSync
	p.mu.Unlock()
	for _, c := range calls {
		switch {
		case c.join && onJoin != nil:
			onJoin(c.key, c.before, c.presence)
		case !c.join && onLeave != nil:
			onLeave(c.key, c.current, c.presence)
		}
	}
	if onSync != nil {
		onSync()
	}
}

// InPendingSyncState reports whether diffs are being queued, waiting for
// the first state after a (re)join of the channel.
func (p *Presence) InPendingSyncState() bool {
	cur := p.ch.JoinRef()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joinRef == "" || p.joinRef != cur
}

// Keys returns the present keys, sorted.
func (p *Presence) Keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.state))
}

// List returns the entries in key order (phoenix.js list() without a
// chooser; JavaScript orders keys differently).
func (p *Presence) List() []Entry {
	return ListBy(p, func(_ string, e Entry) Entry { return e })
}

// Get returns the entry of key.
func (p *Presence) Get(key string) (Entry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.state[key]
	return e.clone(), ok
}

// State returns a copy of the whole state.
func (p *Presence) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.Clone()
}

// ListBy maps chooser over p's entries in key order (phoenix.js
// list(chooser)).
func ListBy[T any](p *Presence, chooser func(key string, e Entry) T) []T {
	st := p.State()
	out := make([]T, 0, len(st))
	for _, k := range slices.Sorted(maps.Keys(st)) {
		out = append(out, chooser(k, st[k]))
	}
	return out
}
