package crdt

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// The interval set agrees with a plain map on random adds, runs and unions.
func TestPropertyDotset(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var a, b dotset
		ma, mb := map[uint64]bool{}, map[uint64]bool{}
		gen := rapid.Uint64Range(1, 60)
		for range rapid.IntRange(0, 60).Draw(t, "n") {
			v := gen.Draw(t, "v")
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				a.add(v)
				ma[v] = true
			case 1:
				hi := v + rapid.Uint64Range(0, 5).Draw(t, "len")
				a.addRun(v, hi)
				for x := v; x <= hi; x++ {
					ma[x] = true
				}
			case 2:
				b.add(v)
				mb[v] = true
			}
		}
		check := func(name string, s *dotset, m map[uint64]bool) {
			var want []uint64
			for v := range m {
				want = append(want, v)
			}
			slices.Sort(want)
			got := slices.Collect(s.all())
			if !slices.Equal(got, want) || s.len() != len(want) {
				t.Fatalf("%s: got %v (len %d), want %v", name, got, s.len(), want)
			}
			for v := uint64(0); v < 70; v++ {
				if s.has(v) != m[v] {
					t.Fatalf("%s: has(%d) = %v", name, v, s.has(v))
				}
			}
			for i := 1; i < len(s.iv); i++ {
				if s.iv[i].lo <= s.iv[i-1].hi+1 {
					t.Fatalf("%s: intervals not disjoint and apart: %v", name, s.iv)
				}
			}
		}
		check("a", &a, ma)
		check("b", &b, mb)
		a.union(&b)
		for v := range mb {
			ma[v] = true
		}
		check("a∪b", &a, ma)
	})
}
