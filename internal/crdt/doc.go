// Package crdt is the replicated presence set: a delta-state observed-remove
// set with one clock per replica, the equivalent of Phoenix.Tracker.State,
// its DeltaGeneration and its clock algebra (Phoenix.Tracker.Clock).
//
// The package is a pure core: no goroutines, no clock reads, no I/O, no
// logging, and deterministic order in everything it returns. A State has a
// single writer (the tracker shard that owns it); the read methods that say
// so may be called concurrently with that writer.
//
// Reports. Every mutating call returns a Diff: exactly the change in what
// the State shows (its elements minus those of replicas held as down). A join
// is an element that became visible, a leave one that stopped being visible;
// nothing is reported twice and a change undone within one call says
// nothing. This is where we part from Phoenix, which reports what its
// functions return: leaves again for a replica already down, both a join and
// a leave for elements that one heartbeat brings up and removes, and no leave
// for the old meta of an element a merge overwrites.
//
// Removed dots. When a merge removes an element whose dot the context does
// not cover yet (an earlier delta from its owner was missed), Phoenix forgets
// the dot and a stale transfer from a lagging replica brings the element
// back (a ghost). We keep such dots in the cloud until compaction
// folds them into the context.
package crdt
