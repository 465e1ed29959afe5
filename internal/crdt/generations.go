package crdt

// Generations keeps a few recent merged deltas, smallest window first, so
// that a lagging replica can be caught up with a delta instead of the whole
// state (Phoenix.Tracker.DeltaGeneration).
type Generations struct {
	caps  []int
	gens  []*Delta // nil until the first push
	owned []bool   // gens[i] is ours alone: it may be merged into in place
}

// DefaultDeltaSizes are Phoenix's generation caps.
var DefaultDeltaSizes = []int{100, 1000, 10000}

// NewGenerations returns empty generations with the given caps (delta
// sizes), in the order given.
func NewGenerations(caps []int) *Generations {
	return &Generations{caps: append([]int(nil), caps...)}
}

// Push merges delta into every generation. A generation the delta is not
// contiguous with is left alone; one that would outgrow its cap restarts from
// the next smaller window merged so far. parent is the state whose outgoing
// delta seeds the generations when they are empty.
func (g *Generations) Push(parent *State, delta *Delta) {
	if len(g.caps) == 0 {
		return
	}
	if g.gens == nil {
		g.gens = make([]*Delta, len(g.caps))
		g.owned = make([]bool, len(g.caps))
		for i := range g.gens {
			g.gens[i] = parent.delta.Clone()
			g.owned[i] = true
		}
	}
	// The rule is Phoenix.Tracker.DeltaGeneration's; the bookkeeping of who owns which
	// delta lets a push cost O(delta) instead of copying every generation:
	// a generation shared with another (or with a message) is copied before
	// it is changed.
	prev, prevOwned, prevAlias := delta, false, -1 // prevAlias: gens index prev is
	for i, gen := range g.gens {
		if !contiguous(gen, delta) {
			prev, prevOwned, prevAlias = gen, false, i
			continue
		}
		var merged *Delta
		if g.owned[i] {
			mergeInto(gen, delta)
			merged = gen
		} else {
			merged, _ = MergeDeltas(gen, delta)
		}
		if merged.Size() <= g.caps[i] {
			g.gens[i], g.owned[i] = merged, true
			prev, prevOwned, prevAlias = merged, false, i
			continue
		}
		g.gens[i], g.owned[i] = prev, prevOwned
		if prevAlias >= 0 {
			g.owned[prevAlias] = false
		}
		// merged is detached now (a fresh copy, or gen[i]'s old object that
		// gens no longer holds)
		prev, prevOwned, prevAlias = merged, true, -1
	}
}

// Clear drops every generation (after a full-state transfer).
func (g *Generations) Clear() { g.gens, g.owned = nil, nil }

// Prune removes replica r from every generation (permdown).
func (g *Generations) Prune(r Replica) {
	for i, gen := range g.gens {
		g.gens[i] = gen.prune(r)
		g.owned[i] = true
	}
}

// Len is the number of generations held (0 before the first push).
func (g *Generations) Len() int { return len(g.gens) }

// At returns generation i.
func (g *Generations) At(i int) *Delta { return g.gens[i] }

// Choose returns the first generation that fits a requester whose clocks
// are req, restricted to req's replicas, with its index; or nil, -1 when
// only the full state will do.
func (g *Generations) Choose(req Clock) (*Delta, int) {
	keep := func(r Replica) bool { _, ok := req[r]; return ok }
	for i, gen := range g.gens {
		start, end := Filter(gen.Start, keep), Filter(gen.End, keep)
		if DominatesOrEqual(start, end) {
			continue // empty on the requester's replicas
		}
		if !DominatesOrEqual(req, start) || Dominates(req, end) {
			continue
		}
		return gen.restrict(keep), i
	}
	return nil, -1
}
