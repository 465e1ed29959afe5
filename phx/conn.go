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
// each client message is answered (see handle), and the bounded output
// queue its transport drains.
type conn struct {
	srv       *Server
	transport string
	ser       serializer
	ident     Identity
	ctx       context.Context // cancelled when the connection ends
	cancel    context.CancelFunc
	log       *slog.Logger
	peer      string // the client's address (logs; the per-IP count: peerIP)
	expiry    *time.Timer

	// hmu serialises frame handling and channel termination: channels and
	// limiter are only touched under it.
	hmu      sync.Mutex
	channels map[string]*Socket
	tokens   float64
	lastJoin time.Time
	ended    bool // channels terminated; no more handling

	// mu guards the output side: queue, socket delivery states, closing.
	mu          sync.Mutex
	queue       []frame
	qp          *[]frame      // the pool's holder of queue's array (see recycle)
	queued      int32         // bytes in queue (frame.size); int32 keeps conn in a smaller size class
	inflight    int32         // bytes a writer goroutine is writing
	notify      chan struct{} // cap 1: queue non-empty or closing
	closing     bool
	closeCode   int
	closeReason string
	closeEcho   bool // the close answers the client's close frame
	// kick is called (outside mu, once) when closing is first set; it must
	// not block. The transport uses it to start tearing down.
	kick func()
	// abort, if set, tears the transport down at once (Server.Close).
	abort func()
	// spawn, if set, starts a writer goroutine (called under mu, must not
	// block); writerActive says one runs, or that a goroutine is writing
	// through direct. A writer runs only while there is something to
	// write, so an idle connection has no writer goroutine.
	spawn        func()
	writerActive bool
	// direct, if set, writes without blocking (see rawWriter): flush uses
	// it to write queued frames from the calling goroutine.
	direct func([]byte) (int, error)
	// partial is the unwritten rest of a frame a direct write cut; the
	// writer sends it before anything else, the close frame included.
	partial []byte
	// handling is set while the reader handles a frame: what the handler
	// queues (a reply, presence_state…) is written in one write after it,
	// unless holdMax frames are waiting.
	handling bool
	holdMax  int
	// writers, if set, counts the goroutines writing (the transport waits
	// for it before closing the socket): a goroutine writing through
	// direct is one.
	writers *sync.WaitGroup
}

func newConn(srv *Server, transport string, ser serializer, ident Identity) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:       srv,
		transport: transport,
		ser:       ser,
		ident:     ident,
		ctx:       ctx,
		cancel:    cancel,
		log:       srv.log,
		notify:    make(chan struct{}, 1),
		channels:  make(map[string]*Socket),
		tokens:    float64(srv.cfg.JoinBurst),
		holdMax:   min(handlingBatch, srv.cfg.SendQueueLen/2),
	}
	return c
}

// waitingLocked is the bytes not yet handed to the socket: queued, cut by
// a direct write, or being written. c.mu must be held.
func (c *conn) waitingLocked() int64 {
	return int64(c.queued) + int64(len(c.partial)) + int64(c.inflight)
}

// fitsLocked reports whether n more bytes stay within MaxQueueBytes. A
// frame larger than the bound still fits when nothing else waits, so that
// one big presence_state never looks like a slow consumer. c.mu must be
// held.
func (c *conn) fitsLocked(n int64) bool {
	w := c.waitingLocked()
	return w == 0 || w+n <= c.srv.cfg.MaxQueueBytes
}

// expireAt closes the connection when its credentials expire.
func (c *conn) expireAt(t time.Time) {
	if t.IsZero() {
		return
	}
	c.mu.Lock()
	c.expiry = time.AfterFunc(time.Until(t), func() {
		c.log.Info("phx: closing connection: credentials expired", "peer", c.peer, "id", c.ident.ID)
		c.closeWith(ClosePolicyViolation, reasonExpired)
	})
	c.mu.Unlock()
}

// stopExpiry stops the expiry timer of a connection that is gone.
func (c *conn) stopExpiry() {
	c.mu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
}

// signal tells a long-poll transport that the queue is non-empty or
// closing was set: it wakes whoever waits on notify (a poll). A WebSocket
// is written by flush, which the callers run after unlocking c.mu.
func (c *conn) signal() {
	if c.spawn != nil {
		return
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// unlock releases c.mu, runs the kick hook if closing was just set, and
// flushes the output.
func (c *conn) unlock() {
	kick := c.takeKickLocked()
	c.mu.Unlock()
	if kick != nil {
		kick()
	}
	c.flush()
}

// flush gets a WebSocket's queued frames written. When no writer runs and
// the reader is not handling a frame, the calling goroutine writes them
// itself, all in one non-blocking write, and starts a writer goroutine only
// for what the socket did not take (or to close). This saves a goroutine
// start per frame, and turns a join's reply and presence_state into one
// write(2). Without direct (TLS) a writer goroutine does it all.
func (c *conn) flush() {
	c.mu.Lock()
	if c.spawn == nil || c.writerActive || (c.handling && !c.closing && len(c.queue) < c.holdMax) {
		c.mu.Unlock()
		return
	}
	if c.closing || c.partial != nil || c.direct == nil || c.queued > maxScratch {
		// A large output goes to the writer, which writes the frames
		// from where they are instead of copying them together.
		if c.closing || c.partial != nil || len(c.queue) > 0 {
			c.writerActive = true
			c.spawn()
		}
		c.mu.Unlock()
		return
	}
	if len(c.queue) == 0 {
		c.mu.Unlock()
		return
	}
	q, qp := c.takeQueueLocked()
	c.claimLocked()
	c.mu.Unlock()

	if len(q) == 1 {
		// One frame: written from its own bytes (a broadcast's shared
		// frame, or the header put in the room before the data).
		buf := wireOf(q[0])
		recycle(qp, q)
		c.writeOut(buf, nil)
		return
	}
	sp := scratch.Get().(*[]byte)
	buf := (*sp)[:0]
	for _, f := range q {
		buf = appendWire(buf, f)
	}
	recycle(qp, q)
	c.writeOut(buf, sp)
}

// directOKLocked reports whether the calling goroutine may write to the
// socket itself now (see flush). c.mu must be held.
func (c *conn) directOKLocked() bool {
	return c.direct != nil && c.spawn != nil && !c.writerActive && !c.closing &&
		c.partial == nil && !c.handling && len(c.queue) == 0
}

// claimLocked makes the calling goroutine the connection's writer, counted
// in writers (the transport waits for it before closing the socket).
func (c *conn) claimLocked() {
	c.writerActive = true
	if c.writers != nil {
		c.writers.Add(1)
	}
}

// writeOut writes buf with one non-blocking write, as the writer claimed
// by claimLocked, and hands what the socket did not take (and anything
// queued meanwhile, or a close) to a writer goroutine. sp, if set, is the
// scratch buffer behind buf.
func (c *conn) writeOut(buf []byte, sp *[]byte) {
	if c.writers != nil {
		defer c.writers.Done() // after a hand-over to spawn, which adds its own
	}
	n, err := c.direct(buf)
	c.mu.Lock()
	switch {
	case err != nil:
		c.setClosingLocked(0, "") // the writer closes the socket
	case n < len(buf):
		rest := buf[n:]
		if sp != nil {
			rest = append([]byte(nil), rest...)
		}
		c.partial = rest
	}
	if sp != nil && cap(buf) <= maxScratch {
		*sp = buf[:0]
		scratch.Put(sp)
	}
	if c.partial != nil || c.closing || len(c.queue) > 0 {
		c.spawn() // writerActive stays set
	} else {
		c.writerActive = false
	}
	c.mu.Unlock()
}

// handlingBatch bounds what waits for the end of a handler: past it (or
// past half the send queue, if smaller: conn.holdMax) the frames go out at
// once — a slow handler must not make its connection look like a slow
// consumer to broadcasts.
const handlingBatch = 32

// enqueueLocked queues f; c.mu must be held. It returns false if the frame
// was dropped because the connection is closing. A full queue closes the
// connection (slow consumer).
func (c *conn) enqueueLocked(f frame) bool {
	if c.closing {
		return false
	}
	n := f.size()
	if len(c.queue) >= c.srv.cfg.SendQueueLen || !c.fitsLocked(n) {
		c.slowLocked(n)
		return false
	}
	if c.queue == nil {
		c.qp = queues.Get().(*[]frame)
		c.queue = (*c.qp)[:0]
	}
	c.queue = append(c.queue, f)
	c.queued += int32(n)
	c.signal()
	return true
}

// slowLocked closes a connection whose output is full (slow consumer) and
// logs it: n is the size of the frame that did not fit. c.mu must be held.
func (c *conn) slowLocked(n int64) {
	if c.closing {
		return
	}
	c.log.Warn("phx: closing a slow consumer", "peer", c.peer, "id", c.ident.ID, "transport", c.transport,
		"queued_frames", len(c.queue), "waiting_bytes", c.waitingLocked(), "frame_bytes", n)
	c.setClosingLocked(ClosePolicyViolation, reasonSlowConsumer)
}

// dropLocked removes from the queue the pushes of s that are not written
// yet: s was replaced by a new join of its topic, and its pushes (a
// presence_state) carry a join_ref the client now ignores. Broadcasts stay:
// they carry no join_ref, so the client hands them to the new channel (a
// presence_diff it must not miss). c.mu must be held.
func (c *conn) dropLocked(s *Socket) {
	k := 0
	for _, f := range c.queue {
		if f.sock == s {
			c.queued -= int32(f.size())
			continue
		}
		c.queue[k] = f
		k++
	}
	clear(c.queue[k:])
	c.queue = c.queue[:k]
}

// queues are emptied output queues for the next connection that queues a
// frame: a connection queues one frame or a few at a time, and keeping its
// own emptied queue would hold memory on every idle connection.
var queues = sync.Pool{New: func() any { q := make([]frame, 0, 4); return &q }}

// takeQueueLocked takes the queue off the connection, with the pool's
// holder it came in (nil if none), for recycle. c.mu must be held.
func (c *conn) takeQueueLocked() ([]frame, *[]frame) {
	q, qp := c.queue, c.qp
	c.queue, c.qp, c.queued = nil, nil, 0
	return q, qp
}

// recycle gives back a queue taken off a connection and written, in its
// holder (reusing the holder keeps Put from allocating one).
func recycle(qp *[]frame, q []frame) {
	if qp == nil || cap(q) == 0 || cap(q) > 64 {
		return
	}
	clear(q)
	*qp = q[:0]
	queues.Put(qp)
}

func (c *conn) enqueue(f frame) bool {
	c.mu.Lock()
	ok := c.enqueueLocked(f)
	c.unlock()
	return ok
}

// setClosingLocked marks the connection closing with a code and reason;
// the first call wins. c.mu must be held; callers release it with unlock.
func (c *conn) setClosingLocked(code int, reason string) {
	if c.closing {
		return
	}
	c.closing = true
	c.closeCode, c.closeReason = code, reason
	c.queue, c.queued = nil, 0
	c.signal()
}

// echoed reports whether the close being sent answers the client's.
func (c *conn) echoed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeEcho
}

// takeKickLocked returns the kick hook once, after closing was set.
func (c *conn) takeKickLocked() func() {
	if !c.closing || c.kick == nil {
		return nil
	}
	k := c.kick
	c.kick = nil
	return k
}

// closeWith asks the transport to close the connection with code and
// reason. It never blocks. Only the first call counts.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	c.setClosingLocked(code, reason)
	c.unlock()
}

// takeQueue removes and returns every queued frame, with the closing
// state.
func (c *conn) takeQueue() (q []frame, closing bool) {
	c.mu.Lock()
	q = c.queue
	c.queue, c.queued = nil, 0
	closing = c.closing
	c.mu.Unlock()
	return q, closing
}

// deliver sends f to socket s's client, holding it while s is joining. It
// returns false if s is closed or the connection is closing.
func (c *conn) deliver(s *Socket, f frame) bool {
	c.mu.Lock()
	var ok bool
	switch s.state {
	case sockJoining:
		n := f.size()
		if len(s.pending) >= c.srv.cfg.SendQueueLen || !c.fitsLocked(s.pendingBytes+n) {
			c.slowLocked(s.pendingBytes + n)
		} else {
			s.pending = append(s.pending, f)
			s.pendingBytes += n
			ok = true
		}
	case sockJoined:
		if f.wire != nil && c.directOKLocked() {
			// An idle connection and a pre-framed broadcast: written at
			// once, without going through the queue.
			c.claimLocked()
			c.mu.Unlock()
			c.writeOut(f.wire, nil)
			return true // queued or written; a failed write closes the connection
		}
		ok = c.enqueueLocked(f)
	}
	c.unlock()
	return ok
}

// send queues a frame not tied to a channel instance (replies).
func (c *conn) send(f frame) {
	if f.data != nil {
		c.enqueue(f)
	}
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
		c.mu.Lock()
		c.dropLocked(old)
		c.mu.Unlock()
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
		c.mu.Lock()
		s.state, s.pending, s.pendingBytes = sockClosed, nil, 0
		c.mu.Unlock()
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
	c.mu.Lock()
	c.enqueueLocked(rf)
	if cf.data != nil {
		c.enqueueLocked(cf)
	}
	for _, f := range s.pending {
		c.enqueueLocked(f)
	}
	s.pending, s.pendingBytes = nil, 0
	s.state = sockJoined
	c.unlock()
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
	c.mu.Lock()
	s.state, s.pending, s.pendingBytes = sockClosed, nil, 0
	c.mu.Unlock()
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
	c.send(c.ser.encodeText(jr, jr, s.topic, EventError, payload))
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

func (c *conn) sendClose(s *Socket) { c.send(c.closeFrame(s)) }

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
	c.send(f)
}

func (c *conn) replyFrame(joinRef, r ref, topic, status string, response any) (frame, error) {
	if b, ok := response.(Binary); ok {
		if c.ser == serV1 || c.transport == transportLongPoll {
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
		if c.ser == serV1 || c.transport == transportLongPoll {
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
