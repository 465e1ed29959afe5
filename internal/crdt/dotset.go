package crdt

import (
	"iter"
	"sort"
)

// dotset is a set of clocks of one replica, kept as sorted, disjoint,
// non-adjacent intervals. The dots of a delta are mostly a contiguous run
// (a replica's own events since the last broadcast), so adding the next
// dot extends the last interval: no allocation, no hashing.
type dotset struct {
	iv []interval
	n  int
}

type interval struct{ lo, hi uint64 }

func (s *dotset) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// find returns the index of the first interval with hi >= v.
func (s *dotset) find(v uint64) int {
	return sort.Search(len(s.iv), func(i int) bool { return s.iv[i].hi >= v })
}

func (s *dotset) has(v uint64) bool {
	if s == nil || len(s.iv) == 0 {
		return false
	}
	if last := s.iv[len(s.iv)-1]; v >= last.lo {
		return v <= last.hi
	}
	i := s.find(v)
	return i < len(s.iv) && s.iv[i].lo <= v
}

func (s *dotset) add(v uint64) {
	k := len(s.iv)
	if k == 0 {
		s.iv = append(s.iv, interval{v, v})
		s.n++
		return
	}
	last := &s.iv[k-1]
	switch {
	case v == last.hi+1:
		last.hi = v
		s.n++
		return
	case v > last.hi+1:
		s.iv = append(s.iv, interval{v, v})
		s.n++
		return
	}
	i := s.find(v)
	if i < k && s.iv[i].lo <= v {
		return // present
	}
	s.n++
	// v lies before s.iv[i] (i < k here) and after s.iv[i-1], not adjacent to both
	joinPrev := i > 0 && s.iv[i-1].hi+1 == v
	joinNext := i < k && s.iv[i].lo == v+1
	switch {
	case joinPrev && joinNext:
		s.iv[i-1].hi = s.iv[i].hi
		s.iv = append(s.iv[:i], s.iv[i+1:]...)
	case joinPrev:
		s.iv[i-1].hi = v
	case joinNext:
		s.iv[i].lo = v
	default:
		s.iv = append(s.iv, interval{})
		copy(s.iv[i+1:], s.iv[i:])
		s.iv[i] = interval{v, v}
	}
}

// all yields the dots in ascending order.
func (s *dotset) all() iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		if s == nil {
			return
		}
		for _, r := range s.iv {
			for v := r.lo; ; v++ {
				if !yield(v) {
					return
				}
				if v == r.hi {
					break
				}
			}
		}
	}
}

func (s *dotset) clone() *dotset {
	if s == nil {
		return nil
	}
	return &dotset{iv: append([]interval(nil), s.iv...), n: s.n}
}

// addRun adds lo..hi (inclusive).
func (s *dotset) addRun(lo, hi uint64) {
	if lo > hi {
		return
	}
	if k := len(s.iv); k == 0 || lo > s.iv[k-1].hi+1 {
		s.iv = append(s.iv, interval{lo, hi})
		s.n += int(hi - lo + 1)
		return
	}
	s.union(&dotset{iv: []interval{{lo, hi}}, n: int(hi - lo + 1)})
}

// union adds every dot of o, merging the two interval lists.
func (s *dotset) union(o *dotset) {
	if o.len() == 0 {
		return
	}
	if len(s.iv) == 0 {
		s.iv, s.n = append([]interval(nil), o.iv...), o.n
		return
	}
	out := make([]interval, 0, len(s.iv)+len(o.iv))
	i, j := 0, 0
	push := func(r interval) {
		if k := len(out); k > 0 && r.lo <= out[k-1].hi+1 {
			if r.hi > out[k-1].hi {
				out[k-1].hi = r.hi
			}
			return
		}
		out = append(out, r)
	}
	for i < len(s.iv) || j < len(o.iv) {
		if j == len(o.iv) || (i < len(s.iv) && s.iv[i].lo <= o.iv[j].lo) {
			push(s.iv[i])
			i++
		} else {
			push(o.iv[j])
			j++
		}
	}
	n := 0
	for _, r := range out {
		n += int(r.hi - r.lo + 1)
	}
	s.iv, s.n = out, n
}
