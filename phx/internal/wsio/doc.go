// Package wsio is the WebSocket under a phx connection: the handshake
// (gorilla/websocket's), the framing of what the server writes, raw writes
// to the socket, the writer goroutine, and the reading of client frames.
// Its API is in bytes and net.Conn: it knows nothing of Phoenix, channels or
// queues. What to write comes from the connection's Peer, which the writer
// asks for everything waiting (Pull) whenever it is woken (Kick).
//
// Invariants:
//
//   - gorilla/websocket never writes after the handshake: it sees the socket
//     behind a wrapper whose writes and write deadlines are dropped once
//     Upgrade returns (hijack.go). On a client's protocol error gorilla
//     would write a close frame of its own, into the middle of one of ours
//     or holding the socket's write lock while a broadcaster waits; the
//     Peer answers it instead, through its own queue.
//   - One goroutine at a time writes (Conn.active): a caller's
//     non-blocking raw write or the writer goroutine, never both; the writer
//     exists only while there is something to write, so an idle connection
//     has none.
//   - Conn.wmu guards the write side only (active, partial, closing, the
//     read deadline once closing); it is never held while calling the Peer,
//     so the Peer's lock and wmu are never nested.
package wsio
