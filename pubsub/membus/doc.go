// Package membus is an in-process pubsub.Bus: the default for a single
// Presence node, and a whole simulated cluster for tests.
//
// A Network connects the nodes that Join it; New is a shortcut for a
// network of one node. Every message is put by the publisher's goroutine
// straight into the queue of each receiving node (see below), so a
// Broadcast is visible to every reachable node as soon as it returns, and
// messages from one node keep their order at every receiver.
//
// # Delivery
//
// Each node (Bus) has one delivery goroutine and one bounded FIFO queue in
// front of it (Config.MaxPending, default 65536 messages); that goroutine
// alone calls the node's handlers, one at a time, in queue order, as the
// pubsub.Handler contract says. Publishing never waits for a handler and
// never calls one: a message that finds a node's queue full is dropped for
// that node and counted (Bus.Dropped). A handler that blocks therefore
// delays every delivery of its own node and of no other. Handlers run with
// no lock of the bus held, so they may call back into the bus (publish,
// Subscribe, Unsubscribe, Close). The data passed to Broadcast is copied
// once per call, so the caller may reuse its buffer when the call returns.
//
// # Fault injection
//
// Network.Partition splits the nodes into groups that cannot reach each
// other, Network.Heal joins them again, and Network.SetDropFunc installs a
// per-link filter that can drop any message between two nodes. Both act on
// publish: a message dropped at publish time is never delivered, even after
// a heal (like a lost packet). A node always reaches itself.
package membus
