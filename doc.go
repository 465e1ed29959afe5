// Package presence tells a real-time application who is online and where:
// Phoenix Presence for Go.
//
// A Presence tracks, per topic (a room, a document, a channel), the
// connections present under each key (a user id), each with a meta (device,
// status, …), and tells subscribers of a topic every join, leave and
// update as a diff in the exact shape of Phoenix's presence_diff. Every
// node of a cluster holds a replica of the whole set (package tracker, a
// delta-state CRDT); nodes exchange deltas over a pubsub.Bus (in-process by
// default, NATS or Redis across machines) and merge without conflicts after
// a partition.
//
// Metas are JSON objects. Each tracked entry gets a unique "phx_ref"; an
// update adds "phx_ref_prev", the ref it replaces, so clients (phoenix.js's
// Presence) tell an update from a leave and a join.
//
// Beyond Phoenix, a Diff also says which keys came online (their first meta
// joined) and which went offline (their last meta left), so applications
// need not derive it from the metas.
package presence
