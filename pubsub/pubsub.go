// Package pubsub defines the Bus that carries replication traffic between
// Presence nodes.
//
// A Bus only moves opaque byte slices between named nodes; it knows nothing
// of presences. The tracker uses it for heartbeats (Broadcast), transfer
// requests and acks (DirectBroadcast) and graceful_permdown (Broadcast).
// Adapters live in sub-packages: membus (in-process, the single-node
// default), natsbus and redisbus. Every adapter must pass pubsubtest.Run.
package pubsub

import (
	"context"
	"errors"
)

// ErrClosed is returned by a Bus (or a Subscription) used after Close.
var ErrClosed = errors.New("pubsub: bus closed")

// Message is one delivery.
type Message struct {
	// Topic the message was published to.
	Topic string
	// From is the node name of the publisher.
	From string
	// Data is the payload. Receivers must treat it as read-only: the same
	// slice may be handed to several subscribers.
	Data []byte
}

// Handler receives messages for a subscription.
//
// Handlers must not block: every handler of a Bus is called from the bus's
// own delivery goroutine, one call at a time, so a handler that waits
// stalls every delivery of that Bus (the bus's queue in front of the
// goroutine then fills up and drops). Decode, hand off without blocking (a
// select with a default case into your own bounded queue), return. The Bus
// keeps no queue per subscription, because a handler that keeps this
// contract makes one unnecessary (as memberlist's NotifyMsg does).
//
// A handler may call back into its Bus: publish, Subscribe, Unsubscribe and
// Close, which do not wait for the call under way. Messages published by
// one node to one topic reach a given subscriber in the order they were
// published (FIFO per sender node and receiver); there is no other
// ordering guarantee and delivery may fail silently (network loss), which
// the tracker repairs with heartbeats and transfers.
type Handler func(Message)

// Subscription is a live registration made by Subscribe.
type Subscription interface {
	// Unsubscribe stops deliveries; after it returns the handler is not
	// called again. It does not wait for a call under way, which may be the
	// one calling Unsubscribe. Idempotent.
	Unsubscribe() error
}

// Bus connects the nodes of a cluster.
type Bus interface {
	// NodeName is this node's unique name in the cluster.
	NodeName() string
	// Subscribe registers h for messages on topic published by any node,
	// this one included.
	Subscribe(topic string, h Handler) (Subscription, error)
	// Broadcast delivers data to every subscriber of topic on every node,
	// this node included.
	Broadcast(ctx context.Context, topic string, data []byte) error
	// BroadcastFrom is Broadcast that skips the subscription from on this
	// node (a nil from skips nothing).
	BroadcastFrom(ctx context.Context, from Subscription, topic string, data []byte) error
	// DirectBroadcast delivers data only to the subscribers of topic on the
	// named node (which may be this one). An unknown node is not an error:
	// nothing is delivered.
	DirectBroadcast(ctx context.Context, node, topic string, data []byte) error
	// Close releases the bus; subscriptions stop: after it returns no
	// handler is called again. It does not wait for a handler call under
	// way, which may be the one calling Close. Idempotent.
	Close() error
}

// UniqueNames is implemented by a Bus that refuses to let a second live
// node use an existing name (membus at Join, natsbus and redisbus at New).
// The tracker then skips its own check at Start, which costs a wait.
type UniqueNames interface {
	UniqueNodeNames() bool
}
