package crdt

// Exports for the package's own tests.

// Delta is the pending outgoing delta. It belongs to the state until
// TakeDelta.
func (s *State) Delta() *Delta { return s.delta }

// OwnerElements lists the local elements of owner.
func (s *State) OwnerElements(owner string) []*Element {
	list := s.ownerList(owner)
	SortElements(list)
	return list
}

// All lists every stored element, hidden ones included (a dirty read).
// Writer only.
func (s *State) All() []*Element {
	out := make([]*Element, 0, s.size)
	for _, ts := range s.topics {
		for _, e := range ts.m {
			out = append(out, e)
		}
	}
	SortElements(out)
	return out
}
