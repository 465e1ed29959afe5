package crdt

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// These tests follow the scenarios of phoenix_pubsub's own suites for the
// tracker state (state_test.exs), its delta generations
// (delta_generation_test.exs) and its clocks (clock_test.exs).

var (
	ra = Replica{"a", 1}
	rb = Replica{"b", 1}
	rc = Replica{"c", 1}
)

func ids(es []*Element) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Topic + "/" + e.Owner + "/" + e.Key
	}
	slices.Sort(out)
	return out
}

func want(t *testing.T, what string, got []*Element, exp ...string) {
	t.Helper()
	if exp == nil {
		exp = []string{}
	}
	if g := ids(got); !slices.Equal(g, exp) {
		t.Fatalf("%s: got %v, want %v", what, g, exp)
	}
}

// newPair returns two states that know each other.
func newPair() (*State, *State) {
	a, b := New(ra), New(rb)
	a.ReplicaUp(rb)
	b.ReplicaUp(ra)
	return a, b
}

func TestExtractOfNewStateIsEmpty(t *testing.T) {
	x := New(ra).Extract(Clock{ra: 0})
	if len(x.Values) != 0 {
		t.Fatalf("values: %v", x.Values)
	}
}

func TestJoinListedLeaveEmpties(t *testing.T) {
	s := New(ra)
	s.Join("p1", "t", "k", []byte(`{}`))
	want(t, "list", s.List("t"), "t/p1/k")
	s.Leave("p1", "t", "k")
	want(t, "list", s.List("t"))
}

func TestTwoReplicasMerge(t *testing.T) {
	a, b := newPair()
	a.Join("pa", "t", "ka", []byte(`{}`))
	b.Join("pb", "t", "kb", []byte(`{}`))
	d := a.MergeExtract(b.Extract(a.Clocks()))
	want(t, "joins", d.Joins, "t/pb/kb")
	want(t, "leaves", d.Leaves)
	ctx := a.Context()
	if d := a.MergeExtract(b.Extract(a.Clocks())); !d.Empty() {
		t.Fatalf("re-merge reported %v", d)
	}
	if !equalClock(ctx, a.Context()) {
		t.Fatal("re-merge changed the context")
	}
	d = b.MergeExtract(a.Extract(b.Clocks()))
	want(t, "joins", d.Joins, "t/pa/ka")
	a.Leave("pa", "t", "ka")
	d = b.MergeExtract(a.Extract(b.Clocks()))
	want(t, "leaves", d.Leaves, "t/pa/ka")
	b.Join("pb", "t", "kb2", []byte(`{}`))
	a.MergeExtract(b.Extract(a.Clocks()))
	if !slices.Equal(ids(a.Online()), ids(b.Online())) {
		t.Fatalf("not converged: %v vs %v", ids(a.Online()), ids(b.Online()))
	}
	b.LeaveJoin("pb", "t", "kb", []byte(`{"v":2}`))
	d = a.MergeExtract(b.Extract(a.Clocks()))
	want(t, "update joins", d.Joins, "t/pb/kb")
	want(t, "update leaves", d.Leaves, "t/pb/kb")
	if string(d.Joins[0].Meta) != `{"v":2}` || string(d.Leaves[0].Meta) != `{}` {
		t.Fatal("update metas")
	}
	if d := a.MergeExtract(b.Extract(a.Clocks())); !d.Empty() {
		t.Fatal("re-merge of update")
	}
}

func equalClock(a, b Clock) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestNetsplit(t *testing.T) {
	a, b := newPair()
	b.Join("pb", "t", "kb", []byte(`{}`))
	a.MergeExtract(b.Extract(a.Clocks()))
	d := a.ReplicaDown(rb)
	want(t, "down leaves", d.Leaves, "t/pb/kb")
	want(t, "hidden", a.List("t"))
	if d := a.MergeExtract(b.Extract(a.Context())); !d.Empty() {
		t.Fatalf("stale merge while down reported %v", d)
	}
	d = a.ReplicaUp(rb)
	want(t, "up joins", d.Joins, "t/pb/kb")
	want(t, "visible", a.List("t"), "t/pb/kb")
}

// topology: a–b–c with a and c holding each other as down.
func triangle() (a, b, c *State) {
	a, b, c = New(ra), New(rb), New(rc)
	for _, s := range []*State{a, b, c} {
		for _, r := range []Replica{ra, rb, rc} {
			s.ReplicaUp(r)
		}
	}
	a.ReplicaDown(rc)
	c.ReplicaDown(ra)
	return
}

func TestJoinsPropagateTransitively(t *testing.T) {
	a, b, c := triangle()
	a.Join("pa", "t", "k", []byte(`{}`))
	b.MergeExtract(a.Extract(b.Clocks()))
	c.ReplicaUp(ra)
	d := c.MergeExtract(b.Extract(c.Clocks()))
	want(t, "c joins", d.Joins, "t/pa/k")
}

func TestRemovesPropagateTransitively(t *testing.T) {
	a, b, c := triangle()
	a.Join("pa", "t", "k", []byte(`{}`))
	b.MergeExtract(a.Extract(b.Clocks()))
	c.ReplicaUp(ra)
	c.MergeExtract(b.Extract(c.Clocks()))
	a.Leave("pa", "t", "k")
	b.MergeExtract(a.Extract(b.Clocks()))
	d := c.MergeExtract(b.Extract(c.Clocks()))
	want(t, "c leaves", d.Leaves, "t/pa/k")
}

func TestGetByPid(t *testing.T) {
	s := New(Replica{"node", 1})
	if s.Lookup("p", "t", "k") != nil || len(s.OwnerElements("p")) != 0 {
		t.Fatal("unknown pid")
	}
	s.Join("p", "t", "k", []byte(`{}`))
	e := s.Lookup("p", "t", "k")
	if e == nil || e.Tag != (Dot{Replica{"node", 1}, 1}) {
		t.Fatalf("got %+v", e)
	}
	want(t, "by pid", s.OwnerElements("p"), "t/p/k")
}

func TestGetByKey(t *testing.T) {
	s := New(ra)
	s.Join("p1", "t", "k", []byte(`{}`))
	s.Join("p2", "t", "k", []byte(`{}`))
	s.Join("p3", "t", "other", []byte(`{}`))
	want(t, "k", s.Get("t", "k"), "t/p1/k", "t/p2/k")
	want(t, "none", s.Get("t", "nobody"))
}

func TestGetByTopic(t *testing.T) {
	a, b := newPair()
	c := New(rc)
	a.ReplicaUp(rc)
	if a.Context()[rc] != 0 {
		t.Fatal("replica_up: context entry 0")
	}
	c.ReplicaUp(ra)
	a.Join("pa", "t", "k", []byte(`{}`))
	b.Join("pb", "t", "k", []byte(`{}`))
	c.Join("pc", "t", "k", []byte(`{}`))
	a.MergeExtract(b.Extract(a.Clocks()))
	a.MergeExtract(c.Extract(a.Clocks()))
	want(t, "all", a.List("t"), "t/pa/k", "t/pb/k", "t/pc/k")
	a.ReplicaDown(rb)
	want(t, "b down", a.List("t"), "t/pa/k", "t/pc/k")
	a.ReplicaDown(rc)
	want(t, "b, c down", a.List("t"), "t/pa/k")
}

func TestRemoveDownReplicas(t *testing.T) {
	a, b := newPair()
	b.Join("pb", "t", "k", []byte(`{}`))
	a.MergeExtract(b.Extract(a.Clocks()))
	a.ReplicaDown(rb)
	if d := a.RemoveReplica(rb); !d.Empty() {
		t.Fatalf("permdown of a down replica reported %v", d)
	}
	want(t, "dirty", a.All())
	if d := a.ReplicaUp(rb); !d.Empty() {
		t.Fatalf("up after permdown: %v", d)
	}
	want(t, "no resurrection", a.List("t"))
}

func TestBasicDeltas(t *testing.T) {
	a, b := newPair()
	steps := []func(){
		func() { a.Join("p", "t", "k", []byte(`{}`)) },
		func() { a.Leave("p", "t", "k") },
		func() { a.Join("p", "t", "k", []byte(`{}`)) },
	}
	kinds := []string{"join", "leave", "join"}
	for i, f := range steps {
		f()
		d := b.MergeDelta(a.TakeDelta())
		if (kinds[i] == "join") != (len(d.Joins) == 1 && len(d.Leaves) == 0) ||
			(kinds[i] == "leave") != (len(d.Leaves) == 1 && len(d.Joins) == 0) {
			t.Fatalf("step %d: %v", i, d)
		}
		if b.Context()[ra] != uint64(i+1) {
			t.Fatalf("step %d: clock %d", i, b.Context()[ra])
		}
	}
	if len(b.Cloud(ra)) != 0 {
		t.Fatal("clouds not compacted")
	}
}

func TestNonContiguousDeltas(t *testing.T) {
	x := NewDelta(Clock{ra: 0}, Clock{ra: 2})
	y := NewDelta(Clock{ra: 5}, Clock{ra: 7})
	if _, ok := MergeDeltas(x, y); ok {
		t.Fatal("x,y contiguous")
	}
	if _, ok := MergeDeltas(y, x); ok {
		t.Fatal("y,x contiguous")
	}
}

func TestExtractContextOnlyRequesterReplicas(t *testing.T) {
	a := New(ra)
	a.ReplicaUp(rb)
	a.ReplicaUp(rc)
	x := a.Extract(Clock{ra: 0, rb: 0})
	if _, ok := x.Context[rc]; ok || len(x.Context) != 2 {
		t.Fatalf("context %v", x.Context)
	}
}

func TestDisjointDeltasUnion(t *testing.T) {
	a, b := New(ra), New(rb)
	a.Join("pa", "t", "k", []byte(`{}`))
	b.Join("pb", "t", "k", []byte(`{}`))
	m, ok := MergeDeltas(a.Delta(), b.Delta())
	if !ok || len(m.Values) != 2 || m.Clouds.Size() != 2 {
		t.Fatalf("merged %+v ok=%v", m, ok)
	}
}

func TestDeltaMergeWithRemoves(t *testing.T) {
	a, b := newPair()
	a.Join("pa", "t", "k", []byte(`{}`))
	b.MergeDelta(a.TakeDelta())
	// a removes its element; b adds one concurrently under the same key
	a.Leave("pa", "t", "k")
	b.Join("pb", "t", "k", []byte(`{}`))
	rm := a.TakeDelta()
	d := b.MergeDelta(rm)
	want(t, "leave", d.Leaves, "t/pa/k")
	want(t, "concurrent add survives", b.List("t"), "t/pb/k")
	if d := b.MergeDelta(rm); !d.Empty() {
		t.Fatal("not idempotent")
	}
	// the observed remove drops the value but keeps its dot in the delta
	if _, ok := b.Delta().Values[Dot{ra, 1}]; ok || !b.Delta().Clouds.Has(Dot{ra, 1}) {
		t.Fatal("tombstone not kept in the delta")
	}
}

func TestGenerationsGrowAndOverflow(t *testing.T) {
	s := New(ra)
	g := NewGenerations([]int{2, 5, 6})
	push := func() *Delta {
		d := s.TakeDelta()
		g.Push(s, d)
		return d
	}
	s.Join("p1", "t", "k", []byte(`{}`)) // size 2
	push()
	sizes := func() []int {
		out := []int{}
		for i := range g.Len() {
			out = append(out, g.At(i).Size())
		}
		return out
	}
	if !slices.Equal(sizes(), []int{2, 2, 2}) {
		t.Fatalf("after 1: %v", sizes())
	}
	s.Join("p2", "t", "k", []byte(`{}`))
	push()
	if !slices.Equal(sizes(), []int{2, 4, 4}) {
		t.Fatalf("after 2: %v", sizes())
	}
	s.Leave("p1", "t", "k") // size 2: tombstone + event
	d := push()
	if !slices.Equal(sizes(), []int{2, 4, 4}) {
		t.Fatalf("after remove: %v", sizes())
	}
	before := sizes()
	g.Push(s, d) // duplicate
	if !slices.Equal(sizes(), before) {
		t.Fatalf("duplicate push changed %v → %v", before, sizes())
	}
	s.Join("p3", "t", "k", []byte(`{}`))
	push()
	if !slices.Equal(sizes(), []int{2, 4, 6}) {
		t.Fatalf("overflow: %v", sizes())
	}
}

func TestNonContiguousLeavesGenerations(t *testing.T) {
	s := New(ra)
	g := NewGenerations([]int{10, 20})
	s.Join("p1", "t", "k", []byte(`{}`))
	g.Push(s, s.TakeDelta())
	before := g.At(0)
	g.Push(s, NewDelta(Clock{ra: 50}, Clock{ra: 51}))
	if g.At(0) != before {
		t.Fatal("non-contiguous delta changed a generation")
	}
}

func TestPruneResurrectsNothing(t *testing.T) {
	a, b := newPair()
	g := NewGenerations([]int{10})
	b.Join("pb", "t", "k", []byte(`{}`))
	d := b.TakeDelta()
	a.MergeDelta(d)
	g.Push(a, d)
	a.ReplicaDown(rb)
	a.RemoveReplica(rb)
	g.Prune(rb)
	c := New(rc)
	c.ReplicaUp(rb)
	if dd := c.MergeDelta(g.At(0)); !dd.Empty() {
		t.Fatalf("pruned generation resurrected %v", dd)
	}
}

func TestNoGenerationsFullState(t *testing.T) {
	s := New(ra)
	s.Join("p", "t", "k", []byte(`{}`))
	g := NewGenerations(DefaultDeltaSizes)
	if d, i := g.Choose(Clock{ra: 0}); d != nil || i != -1 {
		t.Fatal("chose a generation from none")
	}
	x := s.Extract(Clock{ra: 0})
	if len(x.Values) != 1 {
		t.Fatal("full state values")
	}
}

func TestChooseFirstFitting(t *testing.T) {
	s := New(ra)
	g := NewGenerations([]int{2, 4, 100})
	for _, p := range []string{"p1", "p2", "p3"} {
		s.Join(p, "t", "k", []byte(`{}`))
		g.Push(s, s.TakeDelta())
	}
	if _, i := g.Choose(Clock{ra: 2}); i != 0 {
		t.Fatalf("clock 2: gen %d", i)
	}
	if _, i := g.Choose(Clock{ra: 1}); i != 1 {
		t.Fatalf("clock 1: gen %d", i)
	}
	if _, i := g.Choose(Clock{ra: 0}); i != 2 {
		t.Fatalf("clock 0: gen %d", i)
	}
	if d, _ := g.Choose(Clock{ra: 3}); d != nil {
		t.Fatal("up to date requester got a delta")
	}
}

func TestSkipEmptyOnRequesterReplicas(t *testing.T) {
	a := New(ra)
	a.ReplicaUp(rb)
	g := NewGenerations([]int{100})
	a.Join("p", "t", "k", []byte(`{}`))
	g.Push(a, a.TakeDelta())
	if d, _ := g.Choose(Clock{rb: 0}); d != nil {
		t.Fatal("a generation empty on the requester's replicas was chosen")
	}
	d, _ := g.Choose(Clock{ra: 0, rb: 0})
	if d == nil {
		t.Fatal("no generation")
	}
	for dot := range d.Values {
		if dot.Replica != ra {
			t.Fatal("not pruned")
		}
	}
}

func TestRangesComparedOnRequesterReplicas(t *testing.T) {
	a := New(ra)
	g := NewGenerations([]int{100})
	a.Join("p", "t", "k", []byte(`{}`))
	d := a.TakeDelta()
	d.Start[rc], d.End[rc] = 5, 9 // a replica the requester does not know
	g.Push(a, d)
	if x, _ := g.Choose(Clock{ra: 0}); x == nil {
		t.Fatal("unknown replica of the range prevented the delta")
	}
}

func TestDominates(t *testing.T) {
	if !Dominates(Clock{ra: 2, rb: 1}, Clock{ra: 1}) || Dominates(Clock{ra: 5}, Clock{ra: 1, rb: 0}) ||
		!Dominates(Clock{ra: 1}, Clock{ra: 1}) || Dominates(Clock{ra: 1, rb: 0}, Clock{ra: 2, rb: 0}) {
		t.Fatal("dominates")
	}
}

func TestAppendClock(t *testing.T) {
	set := AppendClock(nil, ra, Clock{ra: 1})
	set = AppendClock(set, rb, Clock{ra: 2}) // dominates → alone
	if got := ClocksetReplicas(set); !slices.Equal(got, []Replica{rb}) {
		t.Fatalf("%v", got)
	}
	set = AppendClock(set, rc, Clock{ra: 1}) // dominated → unchanged
	if len(set) != 1 {
		t.Fatal("dominated clock added")
	}
	set = AppendClock(set, rc, Clock{rb: 1}) // concurrent → both (fewer entries)
	if len(set) != 2 {
		t.Fatalf("concurrent: %v", ClocksetReplicas(set))
	}
	if got := AppendClock(set, ra, Clock{}); len(got) != 2 {
		t.Fatal("empty clock changed the set")
	}
	set = AppendClock([]ClockEntry{{ra, Clock{ra: 1, rb: 5}}, {rb, Clock{ra: 5, rb: 1}}}, rc, Clock{ra: 6, rb: 0})
	if len(set) != 3 {
		t.Fatalf("non-dominating: %v", ClocksetReplicas(set))
	}
}

func TestUpperbound(t *testing.T) {
	if got := Upperbound(Clock{ra: 1, rb: 5}, Clock{ra: 3, rc: 1}); !equalClock(got, Clock{ra: 3, rb: 5, rc: 1}) {
		t.Fatalf("%v", got)
	}
}

func TestLowerbound(t *testing.T) {
	if got := Lowerbound(Clock{ra: 1, rb: 5}, Clock{ra: 3, rc: 1}); !equalClock(got, Clock{ra: 1, rb: 5, rc: 1}) {
		t.Fatalf("%v", got)
	}
}

func TestFilterReplicas(t *testing.T) {
	got := Filter(Clock{ra: 1, rb: 2}, func(r Replica) bool { return r == rb })
	if !equalClock(got, Clock{rb: 2}) {
		t.Fatalf("%v", got)
	}
}

func TestReplicas(t *testing.T) {
	if got := (Clock{rb: 1, ra: 2}).Replicas(); !slices.Equal(got, []Replica{ra, rb}) {
		t.Fatalf("%v", got)
	}
}

func TestDominatesOrEqual(t *testing.T) {
	if !DominatesOrEqual(Clock{}, Clock{}) || DominatesOrEqual(Clock{}, Clock{ra: 0}) ||
		!DominatesOrEqual(Clock{ra: 1}, Clock{}) || !DominatesOrEqual(Clock{ra: 1}, Clock{ra: 1, rb: 9}) {
		t.Fatal("dominates_or_equal")
	}
}

// CountKey counts a key's visible elements as Get does, through joins,
// leaves and updates, local and merged from a peer, the peer going down
// and up, in small topics (scanned) and large ones (counted per key).
func TestCountKeyMatchesGet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := New(ra), New(rb)
		a.MergeDelta(b.TakeDelta()) // a knows b
		for range rapid.IntRange(1, 40).Draw(t, "ops") {
			st := a
			if rapid.Bool().Draw(t, "onB") {
				st = b
			}
			owner := fmt.Sprint("o", rapid.IntRange(0, 4).Draw(t, "owner"))
			key := fmt.Sprint("k", rapid.IntRange(0, 2).Draw(t, "key"))
			switch rapid.IntRange(0, 5).Draw(t, "op") {
			case 5: // past keysFrom: the topic counts per key
				for i := range keysFrom + 6 {
					st.Join(fmt.Sprint("many", i), "t", key, []byte(`{}`))
				}
			case 0:
				st.Join(owner, "t", key, []byte(`{}`))
			case 1:
				st.Leave(owner, "t", key)
			case 2:
				st.LeaveJoin(owner, "t", key, []byte(`{"u":1}`))
			case 3:
				a.ReplicaDown(rb)
			case 4:
				a.ReplicaUp(rb)
			}
			a.MergeDelta(b.TakeDelta())
			for k := range 3 {
				key := fmt.Sprint("k", k)
				if got, want := a.CountKey("t", key), len(a.Get("t", key)); got != want {
					t.Fatalf("CountKey %s = %d, Get has %d", key, got, want)
				}
			}
		}
	})
}
