// Package phx is a Phoenix channels server: an http.Handler that
// speaks the wire protocol of Phoenix 1.8 to the official phoenix.js client
// (and to any client of that protocol) over WebSocket and long-poll.
//
// A Server serves Mount+"/websocket" (GET + Upgrade) and, when enabled,
// Mount+"/longpoll". The vsn query parameter picks the serializer: none or
// 1.0.x gives V1 (JSON objects), 2.0.x gives V2 (JSON arrays
// [join_ref, ref, topic, event, payload], plus binary frames on WebSocket);
// anything else is refused with 403.
//
// Config.Connect authorizes each connection from its query parameters and
// request (origin, headers, auth token) and returns its Identity. Topics are
// routed by Config.Channels (exact topics or "prefix*" patterns) to a
// Channel, whose Join, HandleIn and Terminate callbacks receive a *Socket:
// one joined channel instance with its topic, join_ref, the connection's
// assigns, a process-unique Owner id, and Push / Broadcast / BroadcastFrom.
//
// The server handles each message as Phoenix's socket does:
// heartbeats on topic "phoenix", "unmatched topic" replies with a null
// join_ref, stale join_refs dropped silently, duplicate joins (the new join's
// reply, then phx_close for the old join_ref), leave (ok reply, then
// phx_close), phx_error for a crashed channel, the channel limit per
// connection. A join's reply is written before any push or broadcast of
// that channel, so a client never sees a channel's messages before it knows
// the join succeeded.
//
// Each WebSocket has one reader goroutine, which also runs the channel
// callbacks, and a bounded queue of pre-encoded frames, written by the
// goroutine that queues them when the socket takes them at once and
// otherwise by a writer goroutine that exists only while frames wait; a
// broadcast is encoded once per serializer and the same bytes are queued to
// every subscriber; a client that cannot keep up is closed (1008 "slow
// consumer") instead of stalling others. Malformed or oversized frames
// close the connection with 1007 or 1009 and never produce a phx_reply; no
// server-initiated close uses code 1000, because phoenix.js up to 1.8.15
// does not reconnect after a normal close.
// Server.Shutdown closes every socket with 1001 (GoingAway).
//
// Long-poll follows phoenix.js's LongPoll transport: every answer is
// HTTP 200 with the logical status in the JSON body (410 with a new token
// for a new session, 200 with messages, 204 after the poll window, 403 when
// refused), ndjson or whole-body POSTs, base64 lines for binary frames.
package phx

// Inside, one concern per file, and each lock named with what it guards:
//
//   - server.go: the Server, its live connections and limits (cmu).
//   - hub.go: the topic registry (hub.mu) and Broadcast's fan-out.
//   - handshake.go: what both transports check before a connection exists
//     (vsn, stopping, Config.Connect, per-IP and per-ID limits).
//   - conn.go: one connection's channel table and Phoenix's rules for each
//     client message (conn.hmu); channel.go: the Socket a channel sees.
//   - outbox.go: a connection's output (outbox.mu): the bounded queue, the
//     frames held while a client frame is handled, the sockets' delivery
//     states, the slow-consumer close. Only the outbox touches the queue;
//     transports reach it through the sink interface (Binary, Pending,
//     Wake, Send, Abort), never through hooks or by name.
//   - websocket.go: the WebSocket transport (wsConn: sink and wsio.Peer,
//     the reader loop); internal/wsio: the handshake, framing, raw writes,
//     the writer goroutine (wsio.Conn's wmu) and reading, in bytes and
//     net.Conn only. The WebSocket library never writes after the
//     handshake.
//   - longpoll.go: the long-poll transport (lpSession: sink; its mu guards
//     the requests in progress).
