// Package presencechannel is presenced's built-in Phoenix channel: it ties
// a phx.Server to a presence.Presence the way a Phoenix app's presence
// channel does, and answers frame for frame what a real Phoenix 1.8 server
// with that channel answers: the tests replay traces recorded from such a
// server (testdata/protocol.jsonl) against it.
//
// Wiring:
//
//	p, _ := presence.New(presence.Config{...}); p.Start(ctx)
//	srv, _, _ := presencechannel.NewServer(presencechannel.Config{Presence: p, Secret: secret}, phx.Config{})
//	http.Handle("/socket/", srv)
//
// (NewServer is presencechannel.New and phx.New wired together, as
// presenced runs them.)
//
// Connections authenticate with a JWT (HS256 under a secret, or RS256,
// ES256, EdDSA under public keys; "sub" = presence key, optional "topics"
// claim) or, in development mode (no Secret nor Keyfunc), with a user_id
// socket parameter. A join with {"meta": {...}} tracks the
// connection under its key; any other join only watches. The joiner then
// gets presence_state; every member of the topic gets presence_diff
// broadcasts, which come from one presence subscription per topic and are
// encoded once per serializer. When a channel ends (leave, duplicate join,
// connection closed), its presences leave (UntrackOwner).
//
// Clients cannot grow what the server keeps or relays without bound: a
// meta, a broadcast and the metas of one key in a topic are bounded, and
// each connection has a rate for broadcasts and one for presence events
// (Config); a refusal is an error reply.
//
// Two deliberate differences from Phoenix (docs/protocol.md lists them
// with the rest of the wire protocol): a presence:update
// or presence:track whose meta is not an object is answered
// {"status":"error","response":{"reason":"invalid meta"}} instead of
// crashing the channel; and an unknown event gets an error reply
// {"reason":"unknown event"} instead of a crash.
package presencechannel
