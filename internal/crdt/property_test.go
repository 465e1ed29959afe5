package crdt

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// Property tests against a deliberately naive model of the observed-remove
// set: every replica keeps the full set of dots it has seen (never
// compacted) and the elements it holds; a merge keeps what either side
// holds unless the other side has seen that dot and no longer holds it.

func TestMain(m *testing.M) {
	flag.Parse()
	// ≥ 10,000 cases in all unless -rapid.checks says otherwise.
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == f.DefValue {
		f.Value.Set("2000")
	}
	os.Exit(m.Run())
}

type naive struct {
	self  Replica
	clock uint64
	seen  map[Dot]bool
	elems map[Dot]*Element
}

func newNaive(r Replica) *naive {
	return &naive{self: r, seen: map[Dot]bool{}, elems: map[Dot]*Element{}}
}

func (n *naive) tick() Dot {
	n.clock++
	d := Dot{n.self, n.clock}
	n.seen[d] = true
	return d
}

func (n *naive) find(owner, topic, key string) *Element {
	for _, e := range n.elems {
		if e.Owner == owner && e.Topic == topic && e.Key == key {
			return e
		}
	}
	return nil
}

func (n *naive) merge(o *naive) {
	for d, e := range o.elems {
		if !n.seen[d] {
			n.elems[d] = e
		}
	}
	for d := range n.elems {
		if d.Replica != n.self && o.seen[d] && o.elems[d] == nil {
			delete(n.elems, d)
		}
	}
	for d := range o.seen {
		n.seen[d] = true
	}
}

func (n *naive) online() []string {
	var out []string
	for _, e := range n.elems {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s@%v", e.Topic, e.Owner, e.Key, e.Meta, e.Tag))
	}
	slices.Sort(out)
	return out
}

func online(s *State) []string {
	var out []string
	for _, e := range s.Online() {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s@%v", e.Topic, e.Owner, e.Key, e.Meta, e.Tag))
	}
	slices.Sort(out)
	return out
}

// cluster runs random local ops and random pairwise full-state merges on
// three replicas, checking each against the naive model after every step.
type cluster struct {
	states []*State
	models []*naive
}

func newCluster() *cluster {
	c := &cluster{}
	reps := []Replica{{"a", 1}, {"b", 1}, {"c", 1}}
	for _, r := range reps {
		s := New(r)
		for _, o := range reps {
			s.ReplicaUp(o)
		}
		c.states = append(c.states, s)
		c.models = append(c.models, newNaive(r))
	}
	return c
}

func (c *cluster) op(t *rapid.T) {
	i := rapid.IntRange(0, 2).Draw(t, "replica")
	s, m := c.states[i], c.models[i]
	owner := fmt.Sprintf("%s:p%d", s.Self().Name, rapid.IntRange(0, 2).Draw(t, "owner"))
	topic := rapid.SampledFrom([]string{"t1", "t2"}).Draw(t, "topic")
	key := rapid.SampledFrom([]string{"k1", "k2"}).Draw(t, "key")
	meta := []byte(fmt.Sprintf(`{"v":%d}`, rapid.IntRange(0, 9).Draw(t, "meta")))
	switch rapid.IntRange(0, 4).Draw(t, "op") {
	case 0, 1:
		if s.Lookup(owner, topic, key) != nil {
			return
		}
		e := s.Join(owner, topic, key, meta)
		d := m.tick()
		if e.Tag != d {
			t.Fatalf("tag %v, model %v", e.Tag, d)
		}
		m.elems[d] = e
	case 2:
		if e := s.Leave(owner, topic, key); e != nil {
			delete(m.elems, e.Tag)
			m.tick()
		}
	case 3:
		old, cur := s.LeaveJoin(owner, topic, key, meta)
		if cur != nil {
			delete(m.elems, old.Tag)
			m.tick()
			m.elems[m.tick()] = cur
		}
	case 4:
		j := rapid.IntRange(0, 2).Draw(t, "from")
		if j == i {
			return
		}
		s.MergeExtract(c.states[j].Extract(s.Clocks()))
		m.merge(c.models[j])
	}
	if got, want := online(s), m.online(); !slices.Equal(got, want) {
		t.Fatalf("replica %d diverged from the model:\n got  %v\n want %v", i, got, want)
	}
}

// TestPropertyMatchesNaiveModel: random ops and merges agree with the
// naive model at every step, and everything converges after a full
// exchange.
func TestPropertyMatchesNaiveModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := newCluster()
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for range steps {
			c.op(t)
		}
		for range 2 {
			for i := range c.states {
				for j := range c.states {
					if i != j {
						c.states[i].MergeExtract(c.states[j].Extract(c.states[i].Clocks()))
					}
				}
			}
		}
		first := online(c.states[0])
		for _, s := range c.states[1:] {
			if got := online(s); !slices.Equal(got, first) {
				t.Fatalf("no convergence: %v vs %v", got, first)
			}
		}
		// compaction hides nothing: coverage equals the dots the model saw
		for i, s := range c.states {
			for d := range c.models[i].seen {
				if !s.covers(d) {
					t.Fatalf("replica %d forgot dot %v", i, d)
				}
			}
		}
	})
}

// randomStates builds three replicas with random histories.
func randomStates(t *rapid.T) *cluster {
	c := newCluster()
	for range rapid.IntRange(0, 40).Draw(t, "steps") {
		c.op(t)
	}
	return c
}

func snapshot(s *State) string {
	return fmt.Sprint(online(s), s.Context())
}

// TestPropertyMergeIdempotent: merging the same extract twice changes
// nothing the second time.
func TestPropertyMergeIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := randomStates(t)
		a, b := c.states[0], c.states[1]
		x := b.Extract(a.Clocks())
		a.MergeExtract(x)
		before := snapshot(a)
		if d := a.MergeExtract(x); !d.Empty() {
			t.Fatalf("second merge reported %v", d)
		}
		if snapshot(a) != before {
			t.Fatal("second merge changed the state")
		}
	})
}

// TestPropertyMergeCommutativeAssociative: an observer that merges the
// three replicas' extracts in any order ends in the same state.
func TestPropertyMergeCommutativeAssociative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := randomStates(t)
		all := Clock{}
		for _, s := range c.states {
			all[s.Self()] = 0
		}
		xs := make([]*Extract, 3)
		for i, s := range c.states {
			xs[i] = s.Extract(all)
		}
		perm := rapid.Permutation([]int{0, 1, 2}).Draw(t, "order")
		obs := func(order []int) string {
			o := New(Replica{"obs", 1})
			for r := range all {
				o.ReplicaUp(r)
			}
			for _, i := range order {
				o.MergeExtract(xs[i])
			}
			return fmt.Sprint(online(o))
		}
		if a, b := obs([]int{0, 1, 2}), obs(perm); a != b {
			t.Fatalf("order %v differs:\n %s\n %s", perm, a, b)
		}
	})
}

// TestPropertyDeltaEqualsFullState: a replica fed every delta of a peer,
// in order, ends where one fed the peer's full state does.
func TestPropertyDeltaEqualsFullState(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := New(Replica{"a", 1})
		viaDelta, viaFull := New(Replica{"b", 1}), New(Replica{"c", 1})
		for _, s := range []*State{viaDelta, viaFull} {
			s.ReplicaUp(src.Self())
		}
		owners := []string{"p1", "p2", "p3"}
		for range rapid.IntRange(1, 50).Draw(t, "steps") {
			o := rapid.SampledFrom(owners).Draw(t, "owner")
			k := rapid.SampledFrom([]string{"k1", "k2"}).Draw(t, "key")
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0:
				if src.Lookup(o, "t", k) == nil {
					src.Join(o, "t", k, []byte(`{}`))
				}
			case 1:
				src.Leave(o, "t", k)
			case 2:
				src.LeaveJoin(o, "t", k, []byte(`{"u":1}`))
			case 3:
				if src.HasDelta() {
					viaDelta.MergeDelta(src.TakeDelta())
				}
			}
		}
		if src.HasDelta() {
			viaDelta.MergeDelta(src.TakeDelta())
		}
		viaFull.MergeExtract(src.Extract(viaFull.Clocks()))
		if a, b := online(viaDelta), online(viaFull); !slices.Equal(a, b) {
			t.Fatalf("delta %v vs full %v", a, b)
		}
		if viaDelta.Context()[src.Self()] != viaFull.Context()[src.Self()] {
			t.Fatal("clocks differ")
		}
	})
}

// TestPropertyDiffsAreVisibleChanges: every merge reports exactly the
// change in the visible set.
func TestPropertyDiffsAreVisibleChanges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := randomStates(t)
		a := c.states[0]
		if rapid.Bool().Draw(t, "down") {
			a.ReplicaDown(c.states[2].Self())
		}
		before := map[*Element]bool{}
		for _, e := range a.Online() {
			before[e] = true
		}
		d := a.MergeExtract(c.states[1].Extract(a.Clocks()))
		after := map[*Element]bool{}
		for _, e := range a.Online() {
			after[e] = true
		}
		var joins, leaves []*Element
		for e := range after {
			if !before[e] {
				joins = append(joins, e)
			}
		}
		for e := range before {
			if !after[e] {
				leaves = append(leaves, e)
			}
		}
		if !slices.Equal(ids(joins), ids(d.Joins)) || !slices.Equal(ids(leaves), ids(d.Leaves)) {
			t.Fatalf("reported %v/%v, visible change %v/%v", ids(d.Joins), ids(d.Leaves), ids(joins), ids(leaves))
		}
	})
}
