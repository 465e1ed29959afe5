package crdt

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// Diff is the change in what a State shows, both lists in
// (topic, key, owner, tag) order. The elements are shared and read-only.
type Diff struct {
	Joins  []*Element
	Leaves []*Element
}

// Empty reports whether the diff says nothing.
func (d Diff) Empty() bool { return len(d.Joins) == 0 && len(d.Leaves) == 0 }

// Then composes two diffs of consecutive changes into one: an element that
// joined in d and left in next (or the reverse) says nothing.
func (d Diff) Then(next Diff) Diff {
	if d.Empty() {
		return next
	}
	if next.Empty() {
		return d
	}
	joined := make(map[*Element]bool, len(d.Joins)+len(next.Joins))
	left := make(map[*Element]bool, len(d.Leaves)+len(next.Leaves))
	for _, e := range d.Joins {
		joined[e] = true
	}
	for _, e := range d.Leaves {
		left[e] = true
	}
	for _, e := range next.Leaves {
		if joined[e] {
			delete(joined, e)
		} else {
			left[e] = true
		}
	}
	for _, e := range next.Joins {
		if left[e] {
			delete(left, e)
		} else {
			joined[e] = true
		}
	}
	out := Diff{}
	for e := range joined {
		out.Joins = append(out.Joins, e)
	}
	for e := range left {
		out.Leaves = append(out.Leaves, e)
	}
	SortElements(out.Joins)
	SortElements(out.Leaves)
	return out
}

type ownerKey struct{ Owner, Key string }

// topicSet holds the stored elements of one topic. Its lock lets readers
// list a topic while the single writer changes others (or this one, briefly).
type topicSet struct {
	mu sync.RWMutex
	m  map[ownerKey]*Element
	// keys counts the elements per key once the topic has keysFrom of
	// them (a small topic is scanned: no map to allocate per topic).
	keys    map[string]int32
	version uint64 // bumped by every change, under mu

	sorted atomic.Pointer[sortedView] // cache of m in (owner, key) order
}

// sortedView is an immutable, sorted copy of a topic's elements.
type sortedView struct {
	version uint64
	elems   []*Element
}

// replicaState is what a State knows of one replica it has a context entry
// for.
type replicaState struct {
	ref   Replica
	ctx   uint64
	cloud map[uint64]struct{} // dots beyond ctx, not contiguous yet
	down  bool                // held as down: its elements are hidden
	elems map[uint64]*Element // stored elements of a remote replica by clock
}

// State is a replica of the presence set (Phoenix.Tracker.State). It has a
// single writer; List, Get, Count and TopicCount may run concurrently with it.
type State struct {
	self    Replica
	selfRep *replicaState
	reps    map[Replica]*replicaState

	topicsMu sync.RWMutex
	topics   map[string]*topicSet

	// Local elements by owner. Most owners (a channel) track one element,
	// so the first lives in owner1 (a pointer per owner) and only the
	// others in ownerMore: this index costs ~40 bytes per presence, not ~70.
	owner1    map[string]*Element
	ownerMore map[string][]*Element
	delta     *Delta
	size      int // stored elements

	down atomic.Pointer[map[Replica]struct{}] // replicas held as down, for readers
}

// New returns the empty state of replica self.
func New(self Replica) *State {
	s := &State{
		self:      self,
		reps:      map[Replica]*replicaState{},
		topics:    map[string]*topicSet{},
		owner1:    map[string]*Element{},
		ownerMore: map[string][]*Element{},
	}
	s.selfRep = &replicaState{ref: self}
	s.reps[self] = s.selfRep
	s.down.Store(&map[Replica]struct{}{})
	s.resetDelta()
	return s
}

// Self is the replica this state belongs to.
func (s *State) Self() Replica { return s.self }

// Size is the number of stored elements, hidden ones included.
func (s *State) Size() int { return s.size }

// Context returns the full context (down replicas included).
func (s *State) Context() Clock {
	c := make(Clock, len(s.reps))
	for r, rs := range s.reps {
		c[r] = rs.ctx
	}
	return c
}

// Clocks is what the state sends in heartbeats and transfer requests: its
// context without the replicas it holds as down, as Phoenix does (sending
// those too made a replacement node ask for transfers in a loop).
func (s *State) Clocks() Clock {
	c := make(Clock, len(s.reps))
	for r, rs := range s.reps {
		if !rs.down {
			c[r] = rs.ctx
		}
	}
	return c
}

// ClockOf returns r's entry of Clocks (its context, unless r is held as
// down) without building the whole map.
func (s *State) ClockOf(r Replica) (uint64, bool) {
	rs := s.reps[r]
	if rs == nil || rs.down {
		return 0, false
	}
	return rs.ctx, true
}

// Cloud lists the dots kept for r beyond its context, ascending.
func (s *State) Cloud(r Replica) []uint64 {
	rs := s.reps[r]
	if rs == nil {
		return nil
	}
	out := make([]uint64, 0, len(rs.cloud))
	for v := range rs.cloud {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func (s *State) covers(d Dot) bool {
	rs := s.reps[d.Replica]
	if rs == nil {
		return false
	}
	if d.Clock <= rs.ctx {
		return true
	}
	_, ok := rs.cloud[d.Clock]
	return ok
}

func (s *State) visible(e *Element) bool {
	rs := s.reps[e.Tag.Replica]
	return rs != nil && !rs.down
}

// --- storage ---

func (s *State) topic(t string, create bool) *topicSet {
	s.topicsMu.RLock()
	ts := s.topics[t]
	s.topicsMu.RUnlock()
	if ts == nil && create {
		ts = &topicSet{m: map[ownerKey]*Element{}}
		s.topicsMu.Lock()
		s.topics[t] = ts
		s.topicsMu.Unlock()
	}
	return ts
}

func (s *State) lookup(topic, owner, key string) *Element {
	ts := s.topic(topic, false)
	if ts == nil {
		return nil
	}
	return ts.m[ownerKey{owner, key}] // the writer alone mutates m
}

// put stores e, replacing any element of the same identity, and returns the
// replaced one.
func (s *State) put(e *Element) *Element {
	ts := s.topic(e.Topic, true)
	k := ownerKey{e.Owner, e.Key}
	ts.mu.Lock()
	old := ts.m[k]
	ts.m[k] = e
	switch {
	case old != nil:
	case ts.keys != nil:
		ts.keys[e.Key]++
	case len(ts.m) >= keysFrom:
		ts.keys = make(map[string]int32, len(ts.m))
		for k := range ts.m {
			ts.keys[k.Key]++
		}
	}
	ts.version++
	ts.mu.Unlock()
	if old != nil {
		s.unindex(old)
	} else {
		s.size++
	}
	s.index(e)
	return old
}

// del removes e (by identity, only if it is the stored one).
func (s *State) del(e *Element) {
	ts := s.topic(e.Topic, false)
	if ts == nil {
		return
	}
	k := ownerKey{e.Owner, e.Key}
	ts.mu.Lock()
	if ts.m[k] != e {
		ts.mu.Unlock()
		return
	}
	delete(ts.m, k)
	if ts.keys != nil {
		if ts.keys[e.Key]--; ts.keys[e.Key] <= 0 {
			delete(ts.keys, e.Key)
		}
	}
	ts.version++
	empty := len(ts.m) == 0
	ts.mu.Unlock()
	if empty {
		s.topicsMu.Lock()
		delete(s.topics, e.Topic)
		s.topicsMu.Unlock()
	}
	s.size--
	s.unindex(e)
}

func (s *State) index(e *Element) {
	if e.Tag.Replica == s.self {
		if _, ok := s.owner1[e.Owner]; !ok {
			s.owner1[e.Owner] = e
		} else {
			s.ownerMore[e.Owner] = append(s.ownerMore[e.Owner], e)
		}
		return
	}
	rs := s.reps[e.Tag.Replica]
	if rs.elems == nil {
		rs.elems = map[uint64]*Element{}
	}
	rs.elems[e.Tag.Clock] = e
}

func (s *State) unindex(e *Element) {
	if e.Tag.Replica == s.self {
		if s.owner1[e.Owner] == e {
			if more := s.ownerMore[e.Owner]; len(more) > 0 {
				s.owner1[e.Owner] = more[len(more)-1]
				if len(more) == 1 {
					delete(s.ownerMore, e.Owner)
				} else {
					s.ownerMore[e.Owner] = more[:len(more)-1]
				}
			} else {
				delete(s.owner1, e.Owner)
			}
			return
		}
		more := s.ownerMore[e.Owner]
		if i := slices.Index(more, e); i >= 0 {
			more = slices.Delete(more, i, i+1)
		}
		if len(more) == 0 {
			delete(s.ownerMore, e.Owner)
		} else {
			s.ownerMore[e.Owner] = more
		}
		return
	}
	if rs := s.reps[e.Tag.Replica]; rs != nil {
		delete(rs.elems, e.Tag.Clock)
	}
}

// --- the outgoing delta ---

func (s *State) resetDelta() {
	c := s.selfRep.ctx
	s.delta = NewDelta(Clock{s.self: c}, Clock{s.self: c})
}

// HasDelta reports whether the outgoing delta carries anything.
func (s *State) HasDelta() bool { return !s.delta.Empty() }

// TakeDelta returns the pending outgoing delta and starts a new one (the
// broadcast step: reset_delta then compact). The returned delta is no
// longer touched by the state.
func (s *State) TakeDelta() *Delta {
	d := s.delta
	s.resetDelta()
	return d
}

func (s *State) bump() uint64 {
	s.selfRep.ctx++
	c := s.selfRep.ctx
	s.delta.Clouds.add(Dot{s.self, c})
	s.delta.End[s.self] = c
	return c
}

// --- local mutations ---

// Lookup returns the stored element of (owner, topic, key), or nil
// (get_by_pid/4; hidden elements included).
func (s *State) Lookup(owner, topic, key string) *Element { return s.lookup(topic, owner, key) }

// Join tracks a new local element (one clock tick). The caller makes sure
// the identity is not stored yet.
func (s *State) Join(owner, topic, key string, meta []byte) *Element {
	c := s.bump()
	e := &Element{Topic: topic, Owner: owner, Key: key, Meta: meta, Tag: Dot{s.self, c}}
	s.put(e)
	s.delta.Values[e.Tag] = e
	return e
}

func (s *State) observeRemove(t Dot) {
	s.delta.Clouds.add(t)
	delete(s.delta.Values, t)
}

// Leave untracks a local element (one tick) and returns it, or nil when it
// is not stored (no tick).
func (s *State) Leave(owner, topic, key string) *Element {
	e := s.lookup(topic, owner, key)
	if e == nil || e.Tag.Replica != s.self {
		return nil
	}
	s.del(e)
	s.observeRemove(e.Tag)
	s.bump()
	return e
}

// ownerList returns a fresh list of owner's local elements.
func (s *State) ownerList(owner string) []*Element {
	e, ok := s.owner1[owner]
	if !ok {
		return nil
	}
	return append([]*Element{e}, s.ownerMore[owner]...)
}

// LeaveOwner untracks every local element of owner, in (topic, key) order,
// and returns them.
func (s *State) LeaveOwner(owner string) []*Element {
	list := s.ownerList(owner)
	SortElements(list)
	for _, e := range list {
		s.Leave(e.Owner, e.Topic, e.Key)
	}
	return list
}

// LeaveJoin replaces the meta of a stored local element (two ticks) and
// returns the old and new elements, or nil, nil when it is not stored.
func (s *State) LeaveJoin(owner, topic, key string, meta []byte) (old, cur *Element) {
	old = s.lookup(topic, owner, key)
	if old == nil || old.Tag.Replica != s.self {
		return nil, nil
	}
	s.observeRemove(old.Tag)
	s.bump()
	c := s.bump()
	cur = &Element{Topic: topic, Owner: owner, Key: key, Meta: meta, Tag: Dot{s.self, c}}
	s.put(cur) // one write: readers never see the identity missing
	s.delta.Values[cur.Tag] = cur
	return old, cur
}

// --- replica liveness ---

func (s *State) publishDown() {
	m := map[Replica]struct{}{}
	for r, rs := range s.reps {
		if rs.down {
			m[r] = struct{}{}
		}
	}
	s.down.Store(&m)
}

func (rs *replicaState) sorted() []*Element {
	out := make([]*Element, 0, len(rs.elems))
	for _, e := range rs.elems {
		out = append(out, e)
	}
	SortElements(out)
	return out
}

// ReplicaUp marks r up, adding a context entry 0 when r is new; the
// elements hidden while it was down join again.
func (s *State) ReplicaUp(r Replica) Diff {
	rs := s.reps[r]
	if rs == nil {
		s.reps[r] = &replicaState{ref: r}
		return Diff{}
	}
	if !rs.down {
		return Diff{}
	}
	rs.down = false
	s.publishDown()
	return Diff{Joins: rs.sorted()}
}

// ReplicaDown holds r as down: its elements stay stored but are hidden, and
// leave.
func (s *State) ReplicaDown(r Replica) Diff {
	rs := s.reps[r]
	if rs == nil || rs.down || r == s.self {
		return Diff{}
	}
	rs.down = true
	s.publishDown()
	return Diff{Leaves: rs.sorted()}
}

// RemoveReplica forgets r (permdown): its elements, context entry and
// clouds, and its traces in the outgoing delta. It reports what stops
// being visible (nothing when r was held as down, the normal case).
func (s *State) RemoveReplica(r Replica) Diff {
	rs := s.reps[r]
	if rs == nil || r == s.self {
		return Diff{}
	}
	var d Diff
	if !rs.down {
		d.Leaves = rs.sorted()
	}
	for _, e := range rs.sorted() {
		s.del(e)
	}
	delete(s.reps, r)
	if rs.down {
		s.publishDown()
	}
	s.delta = s.delta.prune(r)
	return d
}

// --- merge ---

// MergeDelta merges a remote delta: its values of known replicas whose dots
// we have not seen are joins, and stored elements of other replicas whose
// dots the delta's clouds cover without holding them are leaves.
func (s *State) MergeDelta(d *Delta) Diff {
	return s.merge(nil, d.Clouds, d.Values)
}

// MergeExtract merges a full-state transfer.
func (s *State) MergeExtract(x *Extract) Diff {
	return s.merge(x.Context, x.Clouds, x.Values)
}

func remoteCovers(ctx Clock, clouds Clouds, t Dot) bool {
	if v, ok := ctx[t.Replica]; ok && v >= t.Clock {
		return true
	}
	return clouds.has(t)
}

func (s *State) merge(rctx Clock, rclouds Clouds, rvalues map[Dot]*Element) Diff {
	// 1. joins: values of known replicas not covered yet.
	var joins []*Element
	for t, e := range rvalues {
		if t.Replica == s.self {
			continue
		}
		if _, ok := s.reps[t.Replica]; !ok || s.covers(t) {
			continue
		}
		joins = append(joins, e)
	}
	// 2. leaves: stored remote elements the remote covers and does not hold.
	var removed []*Element
	check := func(rs *replicaState, e *Element) {
		if _, ok := rvalues[e.Tag]; ok {
			return
		}
		if remoteCovers(rctx, rclouds, e.Tag) {
			removed = append(removed, e)
		}
	}
	for r, rs := range s.reps {
		if r == s.self || len(rs.elems) == 0 {
			continue
		}
		if _, ok := rctx[r]; ok {
			for _, e := range rs.elems {
				check(rs, e)
			}
			continue
		}
		cl := rclouds[r]
		if cl.len() == 0 {
			continue
		}
		if cl.len() < len(rs.elems) {
			for v := range cl.all() {
				if e := rs.elems[v]; e != nil {
					check(rs, e)
				}
			}
		} else {
			for _, e := range rs.elems {
				check(rs, e)
			}
		}
	}
	// 3. cloud union, for replicas with a context entry.
	touched := map[*replicaState]bool{}
	for r, cl := range rclouds {
		rs := s.reps[r]
		if rs == nil || cl.len() == 0 {
			continue
		}
		touched[rs] = true
		if r == s.self {
			continue // our own dots are always covered by our context
		}
		for _, iv := range cl.iv {
			switch {
			case iv.hi <= rs.ctx:
			case iv.lo <= rs.ctx+1:
				rs.ctx = iv.hi // contiguous: what compaction would do at once
			default:
				if rs.cloud == nil {
					rs.cloud = map[uint64]struct{}{}
				}
				for v := iv.lo; ; v++ {
					rs.cloud[v] = struct{}{}
					if v == iv.hi {
						break
					}
				}
			}
		}
	}
	// 4. apply: removals, then joins (which may overwrite). An identity
	// that leaves and joins in the same merge (a remote update) is not
	// deleted: the join overwrites it in one write, so that concurrent
	// readers never see it missing (phoenix_pubsub issue #172).
	var diff Diff
	var joining map[ID]bool
	if len(joins) > 0 && len(removed) > 0 {
		joining = make(map[ID]bool, len(joins))
		for _, e := range joins {
			joining[e.ID()] = true
		}
	}
	var removedSet map[*Element]bool
	for _, e := range removed {
		if s.visible(e) {
			diff.Leaves = append(diff.Leaves, e)
		}
		if joining[e.ID()] {
			if removedSet == nil {
				removedSet = map[*Element]bool{}
			}
			removedSet[e] = true
		} else {
			s.del(e)
		}
		s.observeRemove(e.Tag) // removals are re-gossiped
	}
	for _, e := range joins {
		if old := s.put(e); old != nil && !removedSet[old] && s.visible(old) {
			diff.Leaves = append(diff.Leaves, old)
		}
		if s.visible(e) {
			diff.Joins = append(diff.Joins, e)
		}
	}
	// 5. context: pointwise max on known replicas.
	for r, v := range rctx {
		if rs := s.reps[r]; rs != nil && v > rs.ctx {
			rs.ctx = v
			touched[rs] = true
		}
	}
	// 6. compaction.
	for rs := range touched {
		compact(rs)
	}
	SortElements(diff.Joins)
	SortElements(diff.Leaves)
	return diff
}

func compact(rs *replicaState) {
	if len(rs.cloud) == 0 {
		rs.cloud = nil
		return
	}
	for {
		if _, ok := rs.cloud[rs.ctx+1]; !ok {
			break
		}
		delete(rs.cloud, rs.ctx+1)
		rs.ctx++
	}
	for v := range rs.cloud {
		if v <= rs.ctx {
			delete(rs.cloud, v)
		}
	}
	if len(rs.cloud) == 0 {
		rs.cloud = nil
	}
}

// Extract builds the full-state transfer payload for a requester whose
// clocks are req. Only replicas the requester knows (keys of req) are sent.
func (s *State) Extract(req Clock) *Extract {
	x := &Extract{Context: Clock{}, Clouds: Clouds{}, Values: map[Dot]*Element{}}
	for r, rs := range s.reps {
		if _, ok := req[r]; !ok {
			continue
		}
		x.Context[r] = rs.ctx
		if len(rs.cloud) > 0 {
			for _, v := range s.Cloud(r) {
				x.Clouds.add(Dot{r, v})
			}
		}
		if r == s.self {
			for _, e := range s.owner1 {
				x.Values[e.Tag] = e
			}
			for _, list := range s.ownerMore {
				for _, e := range list {
					x.Values[e.Tag] = e
				}
			}
			continue
		}
		for _, e := range rs.elems {
			x.Values[e.Tag] = e
		}
	}
	return x
}

// --- reads ---

// Online lists every visible element in (topic, key, owner, tag) order.
// Writer only.
func (s *State) Online() []*Element {
	out := make([]*Element, 0, s.size)
	for _, ts := range s.topics {
		for _, e := range ts.m {
			if s.visible(e) {
				out = append(out, e)
			}
		}
	}
	SortElements(out)
	return out
}

// List returns the visible elements of topic, ordered by (owner, key).
// Safe to call concurrently with the writer. The slice may be shared with
// other callers: do not modify it.
func (s *State) List(topic string) []*Element {
	s.topicsMu.RLock()
	ts := s.topics[topic]
	s.topicsMu.RUnlock()
	if ts == nil {
		return nil
	}
	down := *s.down.Load()
	all := ts.view()
	if len(down) == 0 {
		return all
	}
	out := make([]*Element, 0, len(all))
	for _, e := range all {
		if _, hidden := down[e.Tag.Replica]; !hidden {
			out = append(out, e)
		}
	}
	return out
}

// view returns the topic's elements in (owner, key) order, from the cache
// when nothing changed since it was built. The slice is shared: read-only.
func (ts *topicSet) view() []*Element {
	ts.mu.RLock()
	v := ts.version
	if c := ts.sorted.Load(); c != nil && c.version == v {
		ts.mu.RUnlock()
		return c.elems
	}
	out := make([]*Element, 0, len(ts.m))
	for _, e := range ts.m {
		out = append(out, e)
	}
	ts.mu.RUnlock()
	slices.SortFunc(out, compareOwnerKey)
	ts.sorted.Store(&sortedView{version: v, elems: out})
	return out
}

// compareOwnerKey orders a topic's elements by (owner, key, tag): owners
// are minted in creation order, so a key's metas list in join order.
func compareOwnerKey(a, b *Element) int {
	if c := cmp.Compare(a.Owner, b.Owner); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return a.Tag.Compare(b.Tag)
}

// Get returns the visible elements of (topic, key), ordered by owner.
// Safe to call concurrently with the writer.
func (s *State) Get(topic, key string) []*Element {
	var out []*Element
	for _, e := range s.List(topic) {
		if e.Key == key {
			out = append(out, e)
		}
	}
	return out
}

// CountKey returns len(Get(topic, key)) without listing the topic: a join
// checks it against a per-key limit, and in a topic of thousands a listing
// per join would cost more than the join. Safe to call concurrently with
// the writer.
func (s *State) CountKey(topic, key string) int {
	s.topicsMu.RLock()
	ts := s.topics[topic]
	s.topicsMu.RUnlock()
	if ts == nil {
		return 0
	}
	if len(*s.down.Load()) > 0 { // some are hidden: count the visible ones
		return len(s.Get(topic, key))
	}
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	if ts.keys != nil {
		return int(ts.keys[key])
	}
	n := 0
	for k := range ts.m {
		if k.Key == key {
			n++
		}
	}
	return n
}

// keysFrom is the size from which a topic counts its elements per key.
const keysFrom = 64

// Count returns the number of visible elements of topic. Safe to call
// concurrently with the writer.
func (s *State) Count(topic string) int {
	s.topicsMu.RLock()
	ts := s.topics[topic]
	s.topicsMu.RUnlock()
	if ts == nil {
		return 0
	}
	down := *s.down.Load()
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	if len(down) == 0 {
		return len(ts.m)
	}
	n := 0
	for _, e := range ts.m {
		if _, hidden := down[e.Tag.Replica]; !hidden {
			n++
		}
	}
	return n
}

// OwnerElementsAll lists every local element, in (topic, key, owner) order.
// Writer only.
func (s *State) OwnerElementsAll() []*Element {
	var out []*Element
	for _, e := range s.owner1 {
		out = append(out, e)
	}
	for _, list := range s.ownerMore {
		out = append(out, list...)
	}
	SortElements(out)
	return out
}
