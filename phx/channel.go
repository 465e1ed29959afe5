package phx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
)

// Channel handles the joins of the topics a Route sends to it. One Channel
// value serves every join (keep per-join state in Socket.State).
//
// All callbacks of one connection run one at a time on that connection's
// handler goroutine (the WebSocket reader, or the long-poll request that
// carried the frame), so they must not block for long: the connection reads
// nothing else meanwhile. Callbacks of different connections run
// concurrently. A panic in a callback is recovered and treated as a crash,
// as Phoenix treats a channel process that exits: "join crashed" for Join,
// phx_error for HandleIn.
type Channel interface {
	// Join is called for a phx_join of a topic. Returning a nil error
	// joins: the client gets an ok reply whose response is reply (nil gives
	// {}; a Binary gives a binary reply). Return the error of Refuse to
	// answer an error reply with that response; any other error (or a
	// panic) answers {"reason":"join crashed"}. When Join fails, Terminate
	// is not called and nothing the channel pushed is sent.
	//
	// The socket is subscribed to its topic before Join is called; frames
	// pushed or broadcast to it during Join are held and sent right after
	// the join's reply, so the client learns of the join before its first
	// message.
	Join(ctx context.Context, s *Socket, payload Payload) (reply any, err error)

	// HandleIn is called for every other event a joined client sends to the
	// topic. A non-nil Reply is sent as phx_reply; nil sends nothing. An
	// error wrapping ErrStop stops the channel gracefully (the reply, if
	// any, then phx_close); any other error (or a panic) crashes it: the
	// client gets phx_error {"reason":"channel_crash"}.
	HandleIn(ctx context.Context, s *Socket, event string, payload Payload) (*Reply, error)

	// Terminate is called exactly once for every successful join when the
	// channel ends, with the reason: ErrLeft, ErrDuplicateJoin,
	// ErrConnClosed, an error wrapping ErrStop, or the crash error. The
	// socket is already unsubscribed; Push fails from here on.
	Terminate(s *Socket, reason error)
}

// Reasons given to Channel.Terminate.
var (
	// ErrLeft: the client sent phx_leave.
	ErrLeft = errors.New("phx: left")
	// ErrDuplicateJoin: the client joined the same topic again.
	ErrDuplicateJoin = errors.New("phx: duplicate join")
	// ErrConnClosed: the connection ended (closed by either side, or the
	// long-poll session expired).
	ErrConnClosed = errors.New("phx: connection closed")
	// ErrStop, returned (wrapped or not) from HandleIn, stops the channel
	// gracefully with phx_close.
	ErrStop = errors.New("phx: channel stopped")
)

// Reply is a phx_reply to a client message.
type Reply struct {
	// Status is the reply status, usually "ok" or "error".
	Status string
	// Response must encode to a JSON object (nil gives {}), or be Binary.
	Response any
}

// ReplyOK returns an ok reply.
func ReplyOK(response any) *Reply { return &Reply{Status: "ok", Response: response} }

// ReplyError returns an error reply.
func ReplyError(response any) *Reply { return &Reply{Status: "error", Response: response} }

// JoinError is the error of Refuse: a join answered with an error reply.
type JoinError struct {
	// Response is sent as the error reply's response (must encode to a
	// JSON object; nil gives {}).
	Response any
}

// Error implements error.
func (e *JoinError) Error() string { return fmt.Sprintf("phx: join refused: %v", e.Response) }

// Refuse returns an error that makes Join answer
// {"status":"error","response":response}.
func Refuse(response any) error { return &JoinError{Response: response} }

// Delivery states of a Socket.
const (
	sockJoining = iota // frames are held until the join reply is queued
	sockJoined         // frames go to the connection's queue
	sockClosed         // frames are dropped
)

// Socket is one joined channel instance — Phoenix's socket as a channel sees
// it: the topic, the join's join_ref, the connection's assigns. A new Socket
// is made for every join (a rejoin gets a new one).
type Socket struct {
	// State is free for the channel's per-join state. It is only touched
	// by the channel's callbacks, which never run concurrently for one
	// connection.
	State any

	c       *conn
	topic   string
	joinRef ref
	owner   string
	route   Channel

	// ignored lists the broadcast events this socket does not receive.
	ignored atomic.Pointer[[]string]

	// under c.out.mu (the outbox's delivery states)
	state        int
	pending      []frame
	pendingBytes int64
}

// Topic is the joined topic.
func (s *Socket) Topic() string { return s.topic }

// Ignore makes the socket receive no broadcasts of these events any more
// (replacing an earlier list; none: every broadcast again), as a Phoenix
// channel that intercepts an event and drops it in handle_out, but without
// a callback per socket: a broadcast still encodes once for everyone. The
// presence channel uses it for members that ask for counts instead of
// diffs. Call it from Join to have it hold from the join reply on.
func (s *Socket) Ignore(events ...string) {
	if len(events) == 0 {
		s.ignored.Store(nil)
		return
	}
	l := slices.Clone(events)
	s.ignored.Store(&l)
}

// JoinRef is the join_ref of this join ("" for none).
func (s *Socket) JoinRef() string { return s.joinRef.text() }

// Assigns is the value Config.Connect returned for the connection.
func (s *Socket) Assigns() any { return s.c.ident.Assigns }

// ID is the connection's socket id (Identity.ID), or "".
func (s *Socket) ID() string { return s.c.ident.ID }

// Transport is "websocket" or "longpoll".
func (s *Socket) Transport() string { return s.c.transport }

// Owner is an id unique to this join across the process (and across
// restarts, thanks to a random per-Server prefix): use it as the presence
// owner of what this channel tracks.
func (s *Socket) Owner() string { return s.owner }

// Server is the server the socket belongs to.
func (s *Socket) Server() *Server { return s.c.srv }

// Push sends event with payload to this client only, tagged with the join's
// join_ref (ref null). payload must encode to a JSON object (a
// JSONAppender encodes itself), or be Binary.
// Safe from any goroutine. It returns ErrClosed after the channel ended.
// Pushes made during Join are sent after the join's reply.
func (s *Socket) Push(event string, payload any) error {
	f, err := s.c.pushFrame(s, event, payload)
	if err != nil {
		return err
	}
	if f.data == nil {
		return nil // not representable on this transport; logged
	}
	f.sock = s
	if !s.c.out.deliver(s, f) {
		return ErrClosed
	}
	return nil
}

// Broadcast sends event to every socket joined to this socket's topic on
// this server, this one included. See Server.Broadcast.
func (s *Socket) Broadcast(event string, payload any) error {
	return s.c.srv.broadcast(s.topic, event, payload, nil)
}

// BroadcastFrom sends event to every other socket joined to this socket's
// topic on this server.
func (s *Socket) BroadcastFrom(event string, payload any) error {
	return s.c.srv.broadcast(s.topic, event, payload, s)
}
