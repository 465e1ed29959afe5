package phx

import (
	"sync"

	"github.com/gopresence/presence/phx/internal/wsio"
)

// sink is a transport as its connection's outbox sees it: where queued
// frames go. It is implemented once for WebSocket (wsConn) and once for
// long-poll (lpSession); shared code tells them apart by what the sink
// says (Binary), never by its type or name.
type sink interface {
	// Binary reports whether the transport carries binary frames.
	Binary() bool
	// Pending is the bytes the transport took from the queue and has not
	// yet handed to the kernel; they count against MaxQueueBytes. Called
	// with the outbox's lock held: it must not block or lock.
	Pending() int64
	// Wake tells the transport that frames wait (and are not being held
	// for a running handler) or that the connection is closing; closed is
	// true once, on the first call after closing was set. Called without
	// the outbox's lock, from any goroutine; it must not block.
	Wake(closed bool)
	// Send writes one pre-framed broadcast at once if the transport is
	// idle, and reports whether it did; false sends it through the queue.
	Send(wire []byte) bool
	// Abort tears the transport down at once (Server.Close).
	Abort()
}

// outbox is a connection's output: the bounded queue, the frames held
// while a client frame is handled (so that what one frame causes goes out
// in one write), the delivery states of its sockets, and the close.
//
// Only the outbox touches the queue: transports take frames from it
// through pull (WebSocket) or takePoll (long-poll), and learn that there
// is something to take through their sink's Wake.
type outbox struct {
	c    *conn // for the limits and the slow-consumer log
	sink sink

	// mu guards everything below and the sockets' delivery states
	// (Socket.state, pending, pendingBytes).
	mu          sync.Mutex
	queue       []frame
	qp          *[]frame // the pool's holder of queue's array (see recycle)
	queued      int32    // bytes in queue (frame.size); int32 keeps conn in a smaller size class
	holdMax     int32    // frames held for a running handler at most
	handling    bool     // the reader is handling a frame: frames are held
	closing     bool
	told        bool // the sink was told of closing (Wake(true))
	closeEcho   bool // the close answers the client's close frame
	closeCode   int
	closeReason string
}

// handlingBatch bounds what waits for the end of a handler: past it (or
// past half the send queue, if smaller: outbox.holdMax) the frames go out
// at once — a slow handler must not make its connection look like a slow
// consumer to broadcasts.
const handlingBatch = 32

// waitingLocked is the bytes not yet handed to the kernel: queued, or
// taken by the transport. o.mu must be held.
func (o *outbox) waitingLocked() int64 {
	return int64(o.queued) + o.sink.Pending()
}

// fitsLocked reports whether n more bytes stay within MaxQueueBytes. A
// frame larger than the bound still fits when nothing else waits, so that
// one big presence_state never looks like a slow consumer. o.mu must be
// held.
func (o *outbox) fitsLocked(n int64) bool {
	w := o.waitingLocked()
	return w == 0 || w+n <= o.c.srv.cfg.MaxQueueBytes
}

// unlock releases o.mu and wakes the sink when frames wait and are not
// held for a running handler, or when closing was set.
func (o *outbox) unlock() {
	closed := o.closing && !o.told
	o.told = o.told || closed
	wake := o.closing || (len(o.queue) > 0 && (!o.handling || len(o.queue) >= int(o.holdMax)))
	o.mu.Unlock()
	if wake {
		o.sink.Wake(closed)
	}
}

// enqueueLocked queues f; o.mu must be held. It returns false if the frame
// was dropped because the connection is closing. A full queue closes the
// connection (slow consumer).
func (o *outbox) enqueueLocked(f frame) bool {
	if o.closing {
		return false
	}
	n := f.size()
	if len(o.queue) >= o.c.srv.cfg.SendQueueLen || !o.fitsLocked(n) {
		o.slowLocked(n)
		return false
	}
	if o.queue == nil {
		o.qp = queues.Get().(*[]frame)
		o.queue = (*o.qp)[:0]
	}
	o.queue = append(o.queue, f)
	o.queued += int32(n)
	return true
}

func (o *outbox) enqueue(f frame) bool {
	o.mu.Lock()
	ok := o.enqueueLocked(f)
	o.unlock()
	return ok
}

// send queues a frame not tied to a channel instance (replies).
func (o *outbox) send(f frame) {
	if f.data != nil {
		o.enqueue(f)
	}
}

// slowLocked closes a connection whose output is full (slow consumer) and
// logs it: n is the size of the frame that did not fit. o.mu must be held.
func (o *outbox) slowLocked(n int64) {
	if o.closing {
		return
	}
	c := o.c
	c.log.Warn("phx: closing a slow consumer", "peer", c.peer, "id", c.ident.ID, "transport", c.transport,
		"queued_frames", len(o.queue), "waiting_bytes", o.waitingLocked(), "frame_bytes", n)
	o.setClosingLocked(ClosePolicyViolation, reasonSlowConsumer)
}

// setClosingLocked marks the connection closing with a code and reason;
// the first call wins. o.mu must be held; callers release it with unlock.
func (o *outbox) setClosingLocked(code int, reason string) {
	if o.closing {
		return
	}
	o.closing = true
	o.closeCode, o.closeReason = code, reason
	o.queue, o.queued = nil, 0
}

// closeWith asks the transport to close the connection with code and
// reason (0: no close frame). It never blocks. Only the first call counts.
func (o *outbox) closeWith(code int, reason string) {
	o.mu.Lock()
	o.setClosingLocked(code, reason)
	o.unlock()
}

// closeEchoing closes in answer to the client's close frame with code.
func (o *outbox) closeEchoing(code int, reason string) {
	o.mu.Lock()
	if !o.closing {
		o.setClosingLocked(code, reason)
		o.closeEcho = true
	}
	o.unlock()
}

// isClosing reports whether the connection is closing.
func (o *outbox) isClosing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing
}

// setHandling holds frames while the reader handles a client frame (on)
// and lets them go out together after it (off).
func (o *outbox) setHandling(on bool) {
	o.mu.Lock()
	o.handling = on
	o.unlock()
}

// deliver sends f to socket s's client, holding it while s is joining. It
// returns false if s is closed or the connection is closing.
func (o *outbox) deliver(s *Socket, f frame) bool {
	o.mu.Lock()
	if s.state == sockJoined && f.wire != nil && !o.closing && !o.handling && len(o.queue) == 0 {
		// An idle connection and a pre-framed broadcast: written at once,
		// without going through the queue, if the transport is idle too.
		o.mu.Unlock()
		if o.sink.Send(f.wire) {
			return true // written; a failed write closes the connection
		}
		o.mu.Lock()
	}
	var ok bool
	switch s.state {
	case sockJoining:
		n := f.size()
		if len(s.pending) >= o.c.srv.cfg.SendQueueLen || !o.fitsLocked(s.pendingBytes+n) {
			o.slowLocked(s.pendingBytes + n)
		} else {
			s.pending = append(s.pending, f)
			s.pendingBytes += n
			ok = true
		}
	case sockJoined:
		ok = o.enqueueLocked(f)
	}
	o.unlock()
	return ok
}

// joined queues a join's reply, then cf (the phx_close of the channel it
// replaced, if any), then what s was sent while joining, and from then on
// delivers to s through the queue.
func (o *outbox) joined(s *Socket, reply, cf frame) {
	o.mu.Lock()
	o.enqueueLocked(reply)
	if cf.data != nil {
		o.enqueueLocked(cf)
	}
	for _, f := range s.pending {
		o.enqueueLocked(f)
	}
	s.pending, s.pendingBytes = nil, 0
	s.state = sockJoined
	o.unlock()
}

// shut makes s drop whatever it is sent from now on.
func (o *outbox) shut(s *Socket) {
	o.mu.Lock()
	s.state, s.pending, s.pendingBytes = sockClosed, nil, 0
	o.mu.Unlock()
}

// drop removes from the queue the pushes of s that are not written yet: s
// was replaced by a new join of its topic, and its pushes (a
// presence_state) carry a join_ref the client now ignores. Broadcasts
// stay: they carry no join_ref, so the client hands them to the new
// channel (a presence_diff it must not miss).
func (o *outbox) drop(s *Socket) {
	o.mu.Lock()
	k := 0
	for _, f := range o.queue {
		if f.sock == s {
			o.queued -= int32(f.size())
			continue
		}
		o.queue[k] = f
		k++
	}
	clear(o.queue[k:])
	o.queue = o.queue[:k]
	o.mu.Unlock()
}

// pull moves every queued frame into b, as WebSocket frames, and says what
// follows them (wsio.Peer.Pull). Frames over wsio.BigFrame, pre-framed
// broadcasts and a lone frame are added from their own bytes; small ones
// are copied together.
func (o *outbox) pull(b *wsio.Batch) wsio.End {
	o.mu.Lock()
	defer o.mu.Unlock()
	q, qp := o.queue, o.qp
	o.queue, o.qp, o.queued = nil, nil, 0
	for _, f := range q {
		if len(q) == 1 || f.wire != nil || len(f.data) > wsio.BigFrame {
			b.Add(wireOf(f))
		} else {
			b.AddFrame(f.opcode(), f.data)
		}
	}
	recycle(qp, q)
	if !o.closing {
		return wsio.End{}
	}
	return wsio.End{Closing: true, Code: o.closeCode, Reason: o.closeReason, Echo: o.closeEcho}
}

// takePoll takes every queued frame for a long-poll answer, unless the
// connection is closing.
func (o *outbox) takePoll() (q []frame, closing bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return nil, true
	}
	q = o.queue
	o.queue, o.qp, o.queued = nil, nil, 0
	return q, false
}

// queues are emptied output queues for the next connection that queues a
// frame: a connection queues one frame or a few at a time, and keeping its
// own emptied queue would hold memory on every idle connection.
var queues = sync.Pool{New: func() any { q := make([]frame, 0, 4); return &q }}

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
