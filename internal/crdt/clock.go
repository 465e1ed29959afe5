package crdt

import (
	"cmp"
	"slices"
)

// Replica identifies one incarnation of a replica: a node name and a
// version that changes at every restart, so that peers tell a restarted
// node from the one they knew.
type Replica struct {
	Name string
	Vsn  int64
}

// Compare orders replicas by name, then version.
func (r Replica) Compare(o Replica) int {
	if c := cmp.Compare(r.Name, o.Name); c != 0 {
		return c
	}
	return cmp.Compare(r.Vsn, o.Vsn)
}

// Dot (a tag) names one event of one replica.
type Dot struct {
	Replica Replica
	Clock   uint64
}

// Compare orders dots by replica, then clock.
func (d Dot) Compare(o Dot) int {
	if c := d.Replica.Compare(o.Replica); c != 0 {
		return c
	}
	return cmp.Compare(d.Clock, o.Clock)
}

// Clock is a version vector: replica → highest contiguous clock.
type Clock map[Replica]uint64

// Clone returns a copy.
func (c Clock) Clone() Clock {
	out := make(Clock, len(c))
	for r, v := range c {
		out[r] = v
	}
	return out
}

// Replicas returns the keys of c in order.
func (c Clock) Replicas() []Replica {
	out := make([]Replica, 0, len(c))
	for r := range c {
		out = append(out, r)
	}
	slices.SortFunc(out, Replica.Compare)
	return out
}

// Dominates reports whether a dominates b, with Phoenix.Tracker.Clock's
// semantics: never when a has fewer entries than b (even if the missing
// entries would be zero); otherwise a[r] ≥ b[r] for every r of b.
func Dominates(a, b Clock) bool {
	if len(a) < len(b) {
		return false
	}
	for r, v := range b {
		if a[r] < v {
			return false
		}
	}
	return true
}

// DominatesOrEqual is Phoenix's dominates_or_equal: true when both are
// empty, false when only a is empty, otherwise a[r] ≥ b[r] for every r of a
// (missing keys of b count as 0).
func DominatesOrEqual(a, b Clock) bool {
	if len(a) == 0 {
		return len(b) == 0
	}
	for r, v := range a {
		if v < b[r] {
			return false
		}
	}
	return true
}

// Upperbound is the union of keys with the maximum on shared keys.
func Upperbound(a, b Clock) Clock {
	out := a.Clone()
	for r, v := range b {
		if w, ok := out[r]; !ok || v > w {
			out[r] = v
		}
	}
	return out
}

// Lowerbound is the union of keys with the minimum on shared keys.
func Lowerbound(a, b Clock) Clock {
	out := a.Clone()
	for r, v := range b {
		if w, ok := out[r]; !ok || v < w {
			out[r] = v
		}
	}
	return out
}

// Filter restricts c to the given replicas.
func Filter(c Clock, keep func(Replica) bool) Clock {
	out := make(Clock, len(c))
	for r, v := range c {
		if keep(r) {
			out[r] = v
		}
	}
	return out
}

// ClockEntry is one clock heard from a replica, as kept in a clockset.
type ClockEntry struct {
	Replica Replica
	Clock   Clock
}

// AppendClock adds (ref, c) to a set of mutually non-dominated clocks, as
// Phoenix.Tracker.Clock.append_clock does: an empty c changes nothing, a c
// that dominates every member replaces the set, and otherwise the members c
// dominates make way for it. The input slice is not modified.
func AppendClock(set []ClockEntry, ref Replica, c Clock) []ClockEntry {
	if len(c) == 0 {
		return set
	}
	big := Clock{}
	for _, e := range set {
		big = Upperbound(big, e.Clock)
	}
	if Dominates(c, big) {
		return []ClockEntry{{ref, c}}
	}
	if Dominates(big, c) {
		return set
	}
	out := make([]ClockEntry, 0, len(set)+1)
	removed, undominated := false, false
	for _, e := range set {
		if Dominates(c, e.Clock) {
			removed = true
			continue
		}
		if !Dominates(e.Clock, c) {
			undominated = true
		}
		out = append(out, e)
	}
	if removed || undominated {
		out = append(out, ClockEntry{ref, c})
	}
	return out
}

// ClocksetReplicas lists the replicas of a clockset.
func ClocksetReplicas(set []ClockEntry) []Replica {
	out := make([]Replica, 0, len(set))
	for _, e := range set {
		out = append(out, e.Replica)
	}
	return out
}
