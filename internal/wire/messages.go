package wire

import "github.com/gopresence/presence/internal/crdt"

// Message is one of the four inter-node messages Phoenix.Tracker's shards
// exchange:
// *Heartbeat, *TransferReq, *TransferAck, *GracefulPermdown. Messages are
// immutable once built.
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

func (*Heartbeat) isMessage()        {}
func (*TransferReq) isMessage()      {}
func (*TransferAck) isMessage()      {}
func (*GracefulPermdown) isMessage() {}

// Outbound is a message to send: to every other node (To == "") or to the
// node named To.
type Outbound struct {
	To  string
	Msg Message
}
