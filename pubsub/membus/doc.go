// Package membus is an in-process pubsub.Bus: the default for a single
// Presence node, and a whole simulated cluster for tests.
//
// A Network connects the nodes that Join it; New is a shortcut for a
// network of one node. Every message is delivered by the publisher's
// goroutine straight into the queue of each receiving subscription (see
// below), so a Broadcast is visible to every reachable node as soon as it
// returns, and messages from one node to one topic keep their order at
// every receiver.
//
// # Delivery
//
// Each subscription has its own delivery goroutine and a bounded FIFO
// queue (Config.MaxPending, default 65536 messages). Publishing never waits
// for a handler and never calls one: a message that finds a subscription's
// queue full is dropped for that subscription and counted (Bus.Dropped).
// Handlers run with no lock of the bus held, so they may call back into the
// bus. The data passed to Broadcast is copied once per call, so the caller
// may reuse its buffer when the call returns.
//
// # Fault injection
//
// Network.Partition splits the nodes into groups that cannot reach each
// other, Network.Heal joins them again, and Network.SetDropFunc installs a
// per-link filter that can drop any message between two nodes. Both act on
// publish: a message dropped at publish time is never delivered, even after
// a heal (like a lost packet). A node always reaches itself.
package membus
