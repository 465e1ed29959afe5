// Package redisbus is a pubsub.Bus over Redis PUBLISH/SUBSCRIBE
// (github.com/redis/go-redis/v9), for clusters that already run Redis.
//
// # Channels
//
// Every node subscribes to two Redis channels: "<ns>:b", which carries the
// broadcasts of every topic, and "<ns>:n:<node>", which carries the direct
// broadcasts to that node (<ns> is Config.Namespace, default "presence").
// One channel for all topics (as phoenix_pubsub_redis does) keeps the set
// of Redis subscriptions fixed, so nothing has to be re-subscribed when
// local subscriptions come and go; the price is that every node receives
// every broadcast and drops those for topics it has no subscriber for. The
// tracker, the main user, subscribes to the same topics on every node, so
// little is wasted.
//
// # Envelope
//
// A message body is a version byte (1), a mode byte ('b' broadcast, 'd'
// direct), the sender's node name and the topic (each a uvarint length and
// bytes) and the payload: 4 + len(node) + len(topic) bytes of overhead for
// short names. A receiver ignores broadcasts it sent itself (its local
// subscribers were served directly) and drops, counting them, bodies of
// another version or malformed (Bus.Malformed).
//
// # Order and delivery
//
// Both channels are read on one Redis connection by go-redis's reader
// goroutine, which feeds one Go channel (Config.ReceiveBuffer), so messages
// from one node reach a subscriber in the order that node published them
// (go-redis publishes one command at a time per call; concurrent calls of
// one node are not ordered among themselves). One delivery goroutine reads
// that channel and a bounded queue of what this node sends itself
// (Config.MaxPending; local subscribers are served without a round trip
// through Redis) and calls the handlers itself, one at a time, as the
// pubsub.Handler contract says. A handler that blocks stalls the Bus.
//
// # Failures
//
// go-redis re-dials the subscriber connection when it breaks (a health
// check PINGs it every Config.HealthCheckInterval of silence) and
// re-subscribes both channels. Whatever was published while this node's
// subscriber connection was down is lost (Redis Pub/Sub keeps nothing), and
// a Broadcast while Redis is unreachable returns an error after go-redis's
// retries (its local subscribers still receive it). The tracker repairs
// such loss through heartbeats and transfers.
package redisbus
