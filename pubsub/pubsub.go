// Package pubsub defines the Bus that carries replication traffic between
// Presence nodes, and the local dispatch shared by its adapters.
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

// Handler receives messages for a subscription. It is called from a
// goroutine owned by the Bus, never concurrently for one subscription, and
// must not block (decode, hand off without blocking, return). Messages
// published by one node to one topic reach a given subscriber in the order
// they were published (FIFO per sender node and receiver); there is no
// other ordering guarantee and delivery may fail silently (network loss),
// which the tracker repairs with heartbeats and transfers.
type Handler func(Message)

// Subscription is a live registration made by Subscribe.
type Subscription interface {
	// Unsubscribe stops deliveries; after it returns the handler is not
	// called again. Idempotent.
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
	// Close releases the bus; subscriptions stop. Idempotent.
	Close() error
}

// UniqueNames is implemented by a Bus that refuses to let a second live
// node use an existing name (membus at Join, natsbus and redisbus at New).
// The tracker then skips its own check at Start, which costs a wait.
type UniqueNames interface {
	UniqueNodeNames() bool
}
