package crdt

// Generations keeps a few recent merged deltas, smallest window first, so
// that a lagging replica can be caught up with a delta instead of the whole
// state (Phoenix's DeltaGeneration, spec §1.13).
type Generations struct {
	caps []int
	gens []*Delta // nil until the first push
}

// DefaultDeltaSizes are Phoenix's generation caps.
var DefaultDeltaSizes = []int{100, 1000, 10000}

// NewGenerations returns empty generations with the given caps (delta
// sizes), in the order given.
func NewGenerations(caps []int) *Generations {
	return &Generations{caps: append([]int(nil), caps...)}
}

// Push merges delta into every generation (spec §1.13). parent is the
// state whose outgoing delta seeds the generations when they are empty.
func (g *Generations) Push(parent *State, delta *Delta) {
	if len(g.caps) == 0 {
		return
	}
	if g.gens == nil {
		g.gens = make([]*Delta, len(g.caps))
		for i := range g.gens {
			g.gens[i] = parent.delta.Clone()
		}
	}
	prev := delta
	for i, gen := range g.gens {
		merged, ok := MergeDeltas(gen, delta)
		switch {
		case !ok:
			prev = gen
		case merged.Size() <= g.caps[i]:
			g.gens[i] = merged
			prev = merged
		default:
			g.gens[i] = prev
			prev = merged
		}
	}
}

// Clear drops every generation (after a full-state transfer).
func (g *Generations) Clear() { g.gens = nil }

// Prune removes replica r from every generation (permdown).
func (g *Generations) Prune(r Replica) {
	for i, gen := range g.gens {
		g.gens[i] = gen.prune(r)
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
