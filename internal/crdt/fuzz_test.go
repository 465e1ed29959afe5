package crdt

import (
	"fmt"
	"slices"
	"testing"
)

// FuzzOps interprets bytes as a sequence of operations on three replicas
// (joins, leaves, updates, delta and full-state merges, down/up) and checks
// the invariants after each: reports equal the change in the visible set,
// and after a full exchange every replica shows the same set.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{0, 0, 0, 9, 18, 27, 4, 13, 22, 31, 6, 15})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		reps := []Replica{{"a", 1}, {"b", 1}, {"c", 1}}
		states := make([]*State, 3)
		for i, r := range reps {
			states[i] = New(r)
			for _, o := range reps {
				states[i].ReplicaUp(o)
			}
		}
		visible := func(s *State) map[*Element]bool {
			m := map[*Element]bool{}
			for _, e := range s.Online() {
				m[e] = true
			}
			return m
		}
		for _, b := range ops {
			i := int(b % 3)
			s := states[i]
			arg := int(b / 24)
			owner := fmt.Sprintf("%s:p%d", reps[i].Name, arg%3) // an owner lives on one replica
			key := fmt.Sprintf("k%d", arg%2)
			before := visible(s)
			var d Diff
			switch (b / 3) % 8 {
			case 0, 1:
				if s.Lookup(owner, "t", key) == nil {
					e := s.Join(owner, "t", key, []byte(`{}`))
					d = Diff{Joins: []*Element{e}}
				}
			case 2:
				if e := s.Leave(owner, "t", key); e != nil {
					d = Diff{Leaves: []*Element{e}}
				}
			case 3:
				if old, cur := s.LeaveJoin(owner, "t", key, []byte(`{"u":1}`)); cur != nil {
					d = Diff{Joins: []*Element{cur}, Leaves: []*Element{old}}
				}
			case 4:
				j := (i + 1 + arg%2) % 3
				d = s.MergeExtract(states[j].Extract(s.Clocks()))
			case 5:
				j := (i + 1 + arg%2) % 3
				if states[j].HasDelta() {
					delta := states[j].TakeDelta()
					for k := range states {
						if k != j {
							dd := states[k].MergeDelta(delta)
							if k == i {
								d = dd
							}
						}
					}
				}
			case 6:
				d = s.ReplicaDown(reps[(i+1+arg%2)%3])
			case 7:
				d = s.ReplicaUp(reps[(i+1+arg%2)%3])
			}
			after := visible(s)
			for _, e := range d.Joins {
				if before[e] || !after[e] {
					t.Fatalf("join of %v is no visible change", e)
				}
			}
			for _, e := range d.Leaves {
				if !before[e] || after[e] {
					t.Fatalf("leave of %v is no visible change", e)
				}
			}
			if n := len(after) - len(before); n != len(d.Joins)-len(d.Leaves) {
				t.Fatalf("visible set changed by %d, reported %d joins %d leaves", n, len(d.Joins), len(d.Leaves))
			}
		}
		for i, s := range states {
			for _, r := range reps {
				s.ReplicaUp(r)
			}
			_ = i
		}
		for range 2 {
			for i := range states {
				for j := range states {
					if i != j {
						states[i].MergeExtract(states[j].Extract(states[i].Clocks()))
					}
				}
			}
		}
		first := ids(states[0].Online())
		for _, s := range states[1:] {
			if got := ids(s.Online()); !slices.Equal(got, first) {
				t.Fatalf("no convergence: %v vs %v", got, first)
			}
		}
	})
}
