package phx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// WebSocket close codes used by the server. None is 1000: phoenix.js up to
// 1.8.15 does not reconnect after a server-initiated close with 1000, so the
// server never uses it.
const (
	CloseGoingAway       = 1001 // server shutdown, Server.Disconnect
	CloseProtocolError   = 1002 // idle timeout (as Bandit)
	CloseInvalidData     = 1007 // malformed frame
	ClosePolicyViolation = 1008 // slow consumer
	CloseMessageTooBig   = 1009 // frame over MaxFrameSize
)

// The reasons of the server's closes and of refused frames.
const (
	reasonSlowConsumer = "slow consumer"
	reasonExpired      = "token expired"
	reasonBadUTF8      = "invalid UTF-8"
)

// conn is one client connection (a WebSocket, or a long-poll session),
// independent of its transport: the channel table and the rules by which
// each client message is answered, as a Phoenix socket answers it (see
// handle). Its output is the outbox; the transport is the outbox's sink.
type conn struct {
	srv       *Server
	transport string // its name, for Socket.Transport and logs only
	ser       serializer
	ident     Identity
	ctx       context.Context // cancelled when the connection ends
	cancel    context.CancelFunc
	log       *slog.Logger
	peer      string // the client's address (logs; the per-IP count: peerIP)

	// hmu serialises frame handling and channel termination: channels,
	// the join limiter and the expiry timer are only touched under it.
	hmu      sync.Mutex
	channels map[string]*Socket
	tokens   float64
	lastJoin time.Time
	ended    bool // channels terminated; no more handling
	expiry   *time.Timer

	out outbox
}

func newConn(srv *Server, transport string, ser serializer, ident Identity, sk sink) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:       srv,
		transport: transport,
		ser:       ser,
		ident:     ident,
		ctx:       ctx,
		cancel:    cancel,
		log:       srv.log,
		channels:  make(map[string]*Socket),
		tokens:    float64(srv.cfg.JoinBurst),
	}
	c.out.c, c.out.sink = c, sk
	c.out.holdMax = int32(min(handlingBatch, srv.cfg.SendQueueLen/2))
	return c
}

// carriesBinary reports whether binary frames reach this client: the V2
// serializer over a transport that carries them.
func (c *conn) carriesBinary() bool { return c.ser != serV1 && c.out.sink.Binary() }

// expireAt closes the connection when its credentials expire.
func (c *conn) expireAt(t time.Time) {
	if t.IsZero() {
		return
	}
	c.hmu.Lock()
	c.expiry = time.AfterFunc(time.Until(t), func() {
		c.log.Info("phx: closing connection: credentials expired", "peer", c.peer, "id", c.ident.ID)
		c.out.closeWith(ClosePolicyViolation, reasonExpired)
	})
	c.hmu.Unlock()
}

// stopExpiry stops the expiry timer of a connection that is gone.
func (c *conn) stopExpiry() {
	c.hmu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.hmu.Unlock()
}

// handleFrame decodes and handles one client frame. A decode error is
// returned: the transport closes the connection with a code other than
// 1000 and never answers the frame with a phx_reply (an undecodable frame
// has no ref to answer; Phoenix drops the connection too).
func (c *conn) handleFrame(data []byte, binary bool) error {
	if int64(len(data)) > c.srv.cfg.MaxFrameSize {
		return fmt.Errorf("%w: frame of %d bytes over the limit", errTooBig, len(data))
	}
	if !binary && !utf8.Valid(data) {
		// A text frame must be UTF-8 (RFC 6455 §8.1): relayed, it would
		// make every receiving client fail its connection.
		return errBadUTF8
	}
	m, err := c.ser.decode(data, binary)
	if err != nil {
		return err
	}
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.ended {
		return nil
	}
	c.handle(m)
	return nil
}

var (
	errTooBig  = errors.New("phx: frame too big")
	errBadUTF8 = errors.New("phx: text frame is not valid UTF-8")
)

// closeFor is the close code and reason of a bad client frame.
func closeFor(err error) (int, string) {
	switch {
	case errors.Is(err, errTooBig):
		return CloseMessageTooBig, "frame too big"
	case errors.Is(err, errBadUTF8):
		return CloseInvalidData, reasonBadUTF8
	}
	return CloseInvalidData, "malformed frame"
}

// handle answers one client message as a Phoenix socket does: a heartbeat
// on "phoenix" gets an ok reply whatever its join_ref; phx_join joins (or
// replaces) the topic's channel; phx_leave of a topic not joined gets an ok
// reply; any other event of a topic not joined gets "unmatched topic"; a
// message whose join_ref is neither null nor the channel's current one is
// stale and dropped without a reply; otherwise a leave ends the channel and
// anything else goes to its HandleIn.
func (c *conn) handle(m message) {
	if m.topic == TopicPhoenix && m.event == EventHeartbeat {
		c.sendReply(nil, m.ref, m.topic, "ok", nil)
		return
	}
	s := c.channels[m.topic]
	switch {
	case m.event == EventJoin:
		c.join(m, s)
	case s == nil && m.event == EventLeave:
		// Leaving a topic not joined: ok, echoing join_ref and ref.
		c.sendReply(m.joinRef, m.ref, m.topic, "ok", nil)
	case s == nil:
		c.sendReply(nil, m.ref, m.topic, "error", reasonUnmatched)
	case !m.joinRef.isNull() && !m.joinRef.equal(s.joinRef):
		// A stale join_ref (a leave or an event) is dropped without a reply.
	case m.event == EventLeave:
		c.sendReply(s.joinRef, m.ref, m.topic, "ok", nil)
		c.stop(s, ErrLeft, true)
	default:
		c.handleIn(s, m)
	}
}

type reason struct {
	Reason string `json:"reason"`
}

var (
	reasonUnmatched    = reason{"unmatched topic"}
	reasonTooMany      = reason{"too many channels joined"}
	reasonJoinRate     = reason{"too many joins"}
	reasonJoinCrashed  = reason{"join crashed"}
	reasonBadTopic     = reason{"invalid topic"}
	reasonChannelCrash = reason{"channel_crash"}
)

func (c *conn) route(topic string) Channel {
	for _, r := range c.srv.cfg.Channels {
		if r.match(topic) {
			return r.Channel
		}
	}
	return nil
}

// allowJoin takes a token from the connection's join bucket.
func (c *conn) allowJoin() bool {
	cfg := &c.srv.cfg
	if cfg.JoinRate < 0 {
		return true
	}
	now := time.Now()
	if !c.lastJoin.IsZero() {
		c.tokens += now.Sub(c.lastJoin).Seconds() * cfg.JoinRate
		if max := float64(cfg.JoinBurst); c.tokens > max {
			c.tokens = max
		}
	}
	c.lastJoin = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// join handles phx_join, of a topic not joined or, when old is set, of one
// already joined (a duplicate join: old ends, and its phx_close follows the
// new join's reply).
func (c *conn) join(m message, old *Socket) {
	if old == nil && len(c.channels) >= c.srv.cfg.MaxChannels {
		c.log.Warn("phx: too many channels joined", "peer", c.peer, "id", c.ident.ID, "topic", m.topic, "max", c.srv.cfg.MaxChannels)
		c.sendReply(m.joinRef, m.ref, m.topic, "error", reasonTooMany)
		return
	}
	// The join limit comes before routing: whatever a join costs (the
	// route, the warnings below) is paid at most JoinRate times a second.
	if !c.allowJoin() {
		if old != nil {
			c.stop(old, ErrDuplicateJoin, false)
		}
		c.sendReply(m.joinRef, m.ref, m.topic, "error", reasonJoinRate)
		if old != nil {
			c.sendClose(old)
		}
		return
	}
	if !validTopic(m.topic, c.srv.cfg.MaxTopicLen) {
		c.log.Warn("phx: join of an invalid topic refused", "peer", c.peer, "id", c.ident.ID, "topic_bytes", len(m.topic))
		c.sendReply(m.joinRef, m.ref, m.topic, "error", reasonBadTopic)
		return
	}
	ch := c.route(m.topic)
	if ch == nil {
		c.log.Warn("phx: join of a topic no channel matches", "peer", c.peer, "topic", m.topic)
		c.sendReply(nil, m.ref, m.topic, "error", reasonUnmatched)
		return
	}
	if old != nil {
		// Duplicate join: the old channel ends first; its phx_close goes
		// out after the new join's reply.
		c.stop(old, ErrDuplicateJoin, false)
		c.out.drop(old)
	}
	jr := m.joinRef
	if jr.isNull() {
		jr = m.ref
	}
	s := &Socket{
		c:       c,
		topic:   m.topic,
		joinRef: jr,
		owner:   c.srv.ownerPrefix + ownerSeq(c.srv.ownerSeq.Add(1)),
		route:   ch,
		state:   sockJoining,
	}
	c.srv.hub.subscribe(s)
	reply, err := c.callJoin(ch, s, m.payload)
	if err != nil {
		c.srv.hub.unsubscribe(s)
		c.out.shut(s)
		var je *JoinError
		if errors.As(err, &je) {
			c.sendReply(m.joinRef, m.ref, m.topic, "error", je.Response)
		} else {
			c.log.Error("phx: join crashed", "topic", m.topic, "err", err)
			c.sendReply(m.joinRef, m.ref, m.topic, "error", reasonJoinCrashed)
		}
		if old != nil {
			c.sendClose(old)
		}
		return
	}
	c.channels[m.topic] = s
	rf, ferr := c.replyFrame(s.joinRef, m.ref, m.topic, "ok", reply)
	if ferr != nil {
		c.log.Error("phx: cannot encode join reply", "topic", m.topic, "err", ferr)
		rf, _ = c.replyFrame(s.joinRef, m.ref, m.topic, "ok", nil)
	}
	var cf frame
	if old != nil {
		cf = c.closeFrame(old)
	}
	c.out.joined(s, rf, cf)
}

func (c *conn) callJoin(ch Channel, s *Socket, p Payload) (reply any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("phx: panic in Join: %v\n%s", r, debug.Stack())
		}
	}()
	return ch.Join(c.ctx, s, p)
}

func (c *conn) handleIn(s *Socket, m message) {
	rep, err := c.callHandleIn(s, m)
	if rep != nil {
		status := rep.Status
		if status == "" {
			status = "ok"
		}
		c.sendReply(s.joinRef, m.ref, m.topic, status, rep.Response)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrStop):
		c.stop(s, err, true)
	default:
		c.log.Error("phx: channel crashed", "topic", s.topic, "event", m.event, "err", err)
		c.crash(s, err)
	}
}

func (c *conn) callHandleIn(s *Socket, m message) (rep *Reply, err error) {
	defer func() {
		if r := recover(); r != nil {
			rep, err = nil, fmt.Errorf("phx: panic in HandleIn: %v\n%s", r, debug.Stack())
		}
	}()
	return s.route.HandleIn(c.ctx, s, m.event, m.payload)
}

// end takes s out of service: unsubscribed, closed, forgotten.
func (c *conn) end(s *Socket) {
	c.srv.hub.unsubscribe(s)
	c.out.shut(s)
	if c.channels[s.topic] == s {
		delete(c.channels, s.topic)
	}
}

// stop ends a channel gracefully: Terminate, then phx_close if sendClose.
func (c *conn) stop(s *Socket, why error, sendClose bool) {
	c.end(s)
	c.terminate(s, why)
	if sendClose {
		c.sendClose(s)
	}
}

// crash ends a channel abnormally: phx_error, then Terminate.
func (c *conn) crash(s *Socket, why error) {
	c.end(s)
	jr := s.joinRef
	if c.ser == serV1 {
		jr = nil
	}
	payload, _ := marshalObject(reasonChannelCrash)
	c.out.send(c.ser.encodeText(jr, jr, s.topic, EventError, payload))
	c.terminate(s, why)
}

func (c *conn) terminate(s *Socket, why error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("phx: panic in Terminate", "topic", s.topic, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.route.Terminate(s, why)
}

// closeFrame is the phx_close of s: join_ref = ref = its join_ref (V2);
// ref null in V1, as Phoenix sends it (its V1 transport keeps no join_ref).
func (c *conn) closeFrame(s *Socket) frame {
	jr := s.joinRef
	if c.ser == serV1 {
		jr = nil
	}
	return c.ser.encodeText(jr, jr, s.topic, EventClose, []byte("{}"))
}

func (c *conn) sendClose(s *Socket) { c.out.send(c.closeFrame(s)) }

// endAll terminates every channel (the connection is gone). Idempotent.
func (c *conn) endAll() {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	for _, s := range c.channels {
		c.end(s)
		c.terminate(s, ErrConnClosed)
	}
	c.cancel()
}

// sendReply queues a phx_reply. A response that cannot be encoded is
// logged and replaced by {}.
func (c *conn) sendReply(joinRef, r ref, topic, status string, response any) {
	f, err := c.replyFrame(joinRef, r, topic, status, response)
	if err != nil {
		c.log.Error("phx: cannot encode reply", "topic", topic, "err", err)
		f, _ = c.replyFrame(joinRef, r, topic, status, nil)
	}
	c.out.send(f)
}

func (c *conn) replyFrame(joinRef, r ref, topic, status string, response any) (frame, error) {
	if b, ok := response.(Binary); ok {
		if !c.carriesBinary() {
			c.log.Warn("phx: binary reply dropped: not supported by this transport or serializer", "topic", topic)
			return frame{}, nil
		}
		return encodeBinaryReply(joinRef.text(), r.text(), topic, status, b)
	}
	resp, err := marshalObject(response)
	if err != nil {
		return frame{}, err
	}
	return c.ser.encodeText(joinRef, r, topic, EventReply, replyPayload(status, resp)), nil
}

// pushFrame encodes a push of s. A Binary payload that the connection
// cannot carry gives an empty frame (dropped and logged).
func (c *conn) pushFrame(s *Socket, event string, payload any) (frame, error) {
	if b, ok := payload.(Binary); ok {
		if !c.carriesBinary() {
			c.log.Warn("phx: binary push dropped: not supported by this transport or serializer", "topic", s.topic)
			return frame{}, nil
		}
		return encodeBinaryPush(s.joinRef.text(), s.topic, event, b)
	}
	p, err := marshalObject(payload)
	if err != nil {
		return frame{}, err
	}
	return c.ser.encodeText(s.joinRef, nil, s.topic, event, p), nil
}

// validTopic reports whether a topic may be joined: non-empty, at most
// max bytes, UTF-8 without control characters (two topics that print alike
// must be the same topic).
func validTopic(t string, max int) bool {
	if t == "" || len(t) > max || !utf8.ValidString(t) {
		return false
	}
	for _, r := range t {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return false
		}
	}
	return true
}

// ownerSeq formats an owner sequence number in base 36, zero-padded to a
// fixed width, so that owners sort in the order they were created (the
// tracker lists a topic in owner order, as Phoenix lists it in pid order:
// a user's metas appear in the order their sockets joined).
func ownerSeq(n uint64) string {
	s := strconv.FormatUint(n, 36)
	const width = 13 // base-36 digits of the largest uint64
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}
