package wire

import (
	"time"

	"github.com/gopresence/presence/internal/crdt"
)

// Message is one of the inter-node messages the tracker's shards exchange:
// Phoenix.Tracker's four (*Heartbeat, *TransferReq, *TransferAck,
// *GracefulPermdown) and ours, *Stopping. Messages are immutable once
// built.
type Message interface{ isMessage() }

// Heartbeat is broadcast every period (or sooner, when a delta waits):
// the sender's clocks for liveness and gap detection, and its pending
// delta if it has one.
type Heartbeat struct {
	From   crdt.Replica
	Delta  *crdt.Delta // nil: an empty heartbeat
	Clocks crdt.Clock  // context without replicas the sender holds as down
}

// TransferReq asks a peer for what the requester misses.
type TransferReq struct {
	ID     uint64
	From   crdt.Replica
	Clocks crdt.Clock
}

// TransferAck answers a TransferReq with a delta generation or the full
// state (exactly one is set).
type TransferAck struct {
	ID      uint64
	From    crdt.Replica
	Delta   *crdt.Delta
	Extract *crdt.Extract
}

// GracefulPermdown says the sender stops for good: peers drop its
// presences at once instead of waiting for the down period.
type GracefulPermdown struct {
	From crdt.Replica
}

// Stopping says the sender stops gracefully: peers keep its presences for
// Grace, so that its clients can reconnect to other nodes and track again
// before the old entries leave (their keys never disappear), then drop
// them as a permdown does. It is the sender's last message. A node built
// before Stopping existed drops it (ErrUnknownKind) and, hearing nothing
// more, takes the sender down after its down period, as after a crash.
type Stopping struct {
	From crdt.Replica
	// Grace travels in whole milliseconds (rounded up), at most MaxGrace; 0 means
	// drop the presences at once (a graceful_permdown).
	Grace time.Duration
}

// MaxGrace bounds Stopping.Grace (a day: far beyond any sensible grace,
// far below what overflows a Duration).
const MaxGrace = 24 * time.Hour

func (*Heartbeat) isMessage()        {}
func (*TransferReq) isMessage()      {}
func (*TransferAck) isMessage()      {}
func (*GracefulPermdown) isMessage() {}
func (*Stopping) isMessage()         {}

// Outbound is a message to send: to every other node (To == "") or to the
// node named To.
type Outbound struct {
	To  string
	Msg Message
}
