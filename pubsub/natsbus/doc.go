// Package natsbus is a pubsub.Bus over NATS core publish/subscribe
// (github.com/nats-io/nats.go). Sub-package natsembed runs a NATS server
// inside the process, alone or clustered with other presenced nodes.
//
// # Subjects
//
// A broadcast on topic T goes to subject "<ns>.b.<T'>", a direct broadcast
// to node N on topic T to "<ns>.n.<N'>.<T'>", where <ns> is
// Config.Namespace (default "presence") and T', N' are T and N escaped into
// one NATS subject token: bytes outside [A-Za-z0-9_:-] become "~XX" (two
// upper-case hex digits) and the empty string becomes "~". So topic
// "phx_presence:3" is subject "presence.b.phx_presence:3", and "a.b*" is
// "presence.b.a~2Eb~2A". A node subscribes to both subjects of a topic when
// the topic gets its first local subscription and unsubscribes when it
// loses its last one.
//
// # Envelope
//
// The message body is a version byte (1), the sender's node name as a
// uvarint length and bytes, then the payload: 2 + len(node name) bytes of
// overhead for names shorter than 128 bytes. Messages with another version
// or a malformed body are dropped and counted (Bus.Malformed).
//
// # Delivery and order
//
// Local subscribers of the publishing node are served without a round trip
// through NATS, through a bounded local queue (Config.MaxPending; the bus's
// own messages coming back from NATS are ignored). All NATS subscriptions
// of a Bus feed one Go channel (Config.ReceiveBuffer), in the order nats.go
// reads them from its connection, so messages from one node to one topic
// keep their order at every receiver, broadcasts and direct broadcasts
// together. One delivery goroutine reads that channel and the local queue
// and calls the handlers itself, one at a time, as the pubsub.Handler
// contract says: a message from another node passes nats.go's reader
// goroutine, the channel and the delivery goroutine, and nothing else on
// this side. A handler that blocks stalls the Bus; a full receive channel
// makes nats.go drop messages and report a slow consumer (logged).
//
// # Failures
//
// When the Bus dials the connection itself it reconnects forever
// (nats.MaxReconnects(-1)); nats.go re-sends every subscription after a
// reconnect, so subscriptions are never lost, and buffers publishes made
// while disconnected (up to its reconnect buffer, 8 MiB by default; beyond
// it Broadcast returns the error). Messages that other nodes published
// while this node was disconnected are lost: core NATS keeps nothing. The
// tracker repairs that loss through heartbeats and transfers.
package natsbus
