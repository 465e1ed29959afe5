package crdt

import (
	"cmp"
	"slices"
)

// Element is one tracked entry: (topic, owner, key) with its meta and the
// dot that created it. Elements are immutable once created and may be
// shared between a State, its deltas and readers: never modify one.
type Element struct {
	Topic string
	Owner string
	Key   string
	// Meta is the JSON meta, read-only.
	Meta []byte
	Tag  Dot
}

// ID is an element's identity.
type ID struct{ Topic, Owner, Key string }

// ID returns the element's identity.
func (e *Element) ID() ID { return ID{e.Topic, e.Owner, e.Key} }

// compareElements orders elements by (topic, key, owner, tag), the order
// of every list a State returns.
func compareElements(a, b *Element) int {
	if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Owner, b.Owner); c != 0 {
		return c
	}
	return a.Tag.Compare(b.Tag)
}

// SortElements sorts es by (topic, key, owner, tag).
func SortElements(es []*Element) { slices.SortFunc(es, compareElements) }

// Clouds maps each replica to a set of its dots.
type Clouds map[Replica]*dotset

func (c Clouds) add(d Dot) {
	s := c[d.Replica]
	if s == nil {
		s = &dotset{}
		c[d.Replica] = s
	}
	s.add(d.Clock)
}

func (c Clouds) has(d Dot) bool {
	return c[d.Replica].has(d.Clock)
}

// Add puts d in the clouds.
func (c Clouds) Add(d Dot) { c.add(d) }

// Has reports whether d is in the clouds.
func (c Clouds) Has(d Dot) bool { return c.has(d) }

// Runs lists the dots of one replica as ascending, disjoint runs
// [lo, hi] (inclusive), the compact form the wire encoding uses.
func (c Clouds) Runs(r Replica) [][2]uint64 {
	s := c[r]
	if s == nil {
		return nil
	}
	out := make([][2]uint64, len(s.iv))
	for i, iv := range s.iv {
		out[i] = [2]uint64{iv.lo, iv.hi}
	}
	return out
}

// AddRun puts the dots lo..hi (inclusive) of replica r in the clouds.
func (c Clouds) AddRun(r Replica, lo, hi uint64) {
	s := c[r]
	if s == nil {
		s = &dotset{}
		c[r] = s
	}
	s.addRun(lo, hi)
}

// Size is the number of dots.
func (c Clouds) Size() int {
	n := 0
	for _, s := range c {
		n += s.len()
	}
	return n
}

// Dots lists the dots of one replica in ascending order.
func (c Clouds) Dots(r Replica) []uint64 {
	s := c[r]
	out := make([]uint64, 0, s.len())
	for v := range s.all() {
		out = append(out, v)
	}
	return out
}

func (c Clouds) clone() Clouds {
	out := make(Clouds, len(c))
	for r, s := range c {
		if s.len() > 0 {
			out[r] = s.clone()
		}
	}
	return out
}

// Delta is a delta-mode state: what one replica produced or observed over
// a window of its clocks, and the unit of delta generations. A Delta handed
// to another State (in a message) must not be modified afterwards.
type Delta struct {
	// Values are the elements added in the window, by tag.
	Values map[Dot]*Element
	// Clouds are the dots this delta covers: adds, removed dots, events.
	Clouds Clouds
	// Start and End are the clocks before and after the window.
	Start, End Clock
}

// NewDelta returns an empty delta with the given range.
func NewDelta(start, end Clock) *Delta {
	return &Delta{Values: map[Dot]*Element{}, Clouds: Clouds{}, Start: start, End: end}
}

// Size is Phoenix's delta_size: values plus dots.
func (d *Delta) Size() int { return len(d.Values) + d.Clouds.Size() }

// Empty reports whether the delta carries nothing (has_delta is false): no
// dot in any cloud.
func (d *Delta) Empty() bool {
	for _, s := range d.Clouds {
		if s.len() > 0 {
			return false
		}
	}
	return true
}

// Clone returns a deep copy (elements are shared: they are immutable).
func (d *Delta) Clone() *Delta {
	out := &Delta{Values: make(map[Dot]*Element, len(d.Values)), Clouds: d.Clouds.clone(),
		Start: d.Start.Clone(), End: d.End.Clone()}
	for k, v := range d.Values {
		out.Values[k] = v
	}
	return out
}

// SortedValues lists the delta's elements in (topic, key, owner, tag) order.
func (d *Delta) SortedValues() []*Element {
	out := make([]*Element, 0, len(d.Values))
	for _, e := range d.Values {
		out = append(out, e)
	}
	SortElements(out)
	return out
}

// MergeDeltas merges two deltas, as Phoenix does to build its delta
// generations. It reports false when they are not contiguous (each one's end
// must dominate-or-equal the other's start). Neither input is modified.
func MergeDeltas(a, b *Delta) (*Delta, bool) {
	if !DominatesOrEqual(b.End, a.Start) || !DominatesOrEqual(a.End, b.Start) {
		return nil, false
	}
	out := &Delta{
		Values: make(map[Dot]*Element, len(a.Values)+len(b.Values)),
		Clouds: a.Clouds.clone(),
		Start:  Lowerbound(a.Start, b.Start),
		End:    Upperbound(a.End, b.End),
	}
	for t, e := range a.Values {
		if _, ok := b.Values[t]; ok || !b.Clouds.has(t) {
			out.Values[t] = e
		}
	}
	for t, e := range b.Values {
		if _, ok := a.Values[t]; !ok && !a.Clouds.has(t) {
			out.Values[t] = e
		}
	}
	for r, s := range b.Clouds {
		if s.len() == 0 {
			continue
		}
		if d := out.Clouds[r]; d != nil {
			d.union(s)
		} else {
			out.Clouds[r] = s.clone()
		}
	}
	return out, true
}

// mergeInto merges b into a in place: the same result as MergeDeltas(a, b),
// in time proportional to b. a must be exclusively owned by the caller and
// contiguous with b.
func mergeInto(a, b *Delta) {
	for t, e := range b.Values {
		if _, ok := a.Values[t]; !ok && !a.Clouds.has(t) {
			a.Values[t] = e
		}
	}
	for r, s := range b.Clouds {
		if s.len() == 0 {
			continue
		}
		if len(a.Values) > 0 {
			for v := range s.all() {
				t := Dot{r, v}
				if _, kept := b.Values[t]; !kept {
					delete(a.Values, t)
				}
			}
		}
		if d := a.Clouds[r]; d != nil {
			d.union(s)
		} else {
			a.Clouds[r] = s.clone()
		}
	}
	for r, v := range b.Start {
		if w, ok := a.Start[r]; !ok || v < w {
			a.Start[r] = v
		}
	}
	for r, v := range b.End {
		if w, ok := a.End[r]; !ok || v > w {
			a.End[r] = v
		}
	}
}

func contiguous(a, b *Delta) bool {
	return DominatesOrEqual(b.End, a.Start) && DominatesOrEqual(a.End, b.Start)
}

// restrict returns a copy of d limited to the replicas keep accepts.
func (d *Delta) restrict(keep func(Replica) bool) *Delta {
	out := &Delta{Values: map[Dot]*Element{}, Clouds: Clouds{},
		Start: Filter(d.Start, keep), End: Filter(d.End, keep)}
	for t, e := range d.Values {
		if keep(t.Replica) {
			out.Values[t] = e
		}
	}
	for r, s := range d.Clouds {
		if keep(r) && s.len() > 0 {
			out.Clouds[r] = s.clone()
		}
	}
	return out
}

// Restrict returns a copy of d limited to the replicas of c: what a transfer
// answered with a delta generation carries (values, clouds and range of the
// requester's known replicas only).
func (d *Delta) Restrict(c Clock) *Delta {
	return d.restrict(func(r Replica) bool { _, ok := c[r]; return ok })
}

// prune returns a copy of d without replica r.
func (d *Delta) prune(r Replica) *Delta {
	return d.restrict(func(x Replica) bool { return x != r })
}

// Extract is a full-state transfer payload: context and clouds
// restricted to the requester's replicas, and every stored element of those
// replicas.
type Extract struct {
	Context Clock
	Clouds  Clouds
	Values  map[Dot]*Element
}
