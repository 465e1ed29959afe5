package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// ChannelState is the state of a Channel, named as in phoenix.js.
type ChannelState string

// Channel states.
const (
	StateClosed  ChannelState = "closed"
	StateErrored ChannelState = "errored"
	StateJoined  ChannelState = "joined"
	StateJoining ChannelState = "joining"
	StateLeaving ChannelState = "leaving"
)

// Channel is a channel of a Socket (a topic). Create it with
// Socket.Channel. Every method is safe for concurrent use.
//
// Once joined, a channel behaves like phoenix.js's: after a phx_error, a
// lost connection or a heartbeat timeout it rejoins (immediately when the
// socket reconnects; after Options.RejoinAfter while connected), with a new
// join_ref each time; it stops only on Leave, a phx_close from the server,
// or Socket.Close.
type Channel struct {
	s      *Socket
	topic  string
	params any

	// Guarded by s.mu.
	state       ChannelState
	joinRef     string
	joinTimer   *time.Timer
	rejoinTimer *time.Timer
	rejoinTries int
	firstJoin   chan joinResult // the pending Join call, if any
	buffer      []*push         // pushes waiting for the join
	bindings    map[string][]binding
	nextID      int
}

type binding struct {
	id int
	f  func(event)
}

// event is what a binding receives: the payload and the channel's
// join_ref when the frame was read.
type event struct {
	payload json.RawMessage
	joinRef string
}

type joinResult struct {
	resp json.RawMessage
	err  error
}

// Channel returns a new channel object for topic. params is sent with
// every join: a value that encodes to a JSON object, a json.RawMessage, or
// a func() any evaluated at every (re)join; nil means {}.
func (s *Socket) Channel(topic string, params any) *Channel {
	return &Channel{s: s, topic: topic, params: params, state: StateClosed, bindings: make(map[string][]binding)}
}

// Topic returns the channel's topic.
func (ch *Channel) Topic() string { return ch.topic }

// State returns the channel's state.
func (ch *Channel) State() ChannelState {
	ch.s.mu.Lock()
	defer ch.s.mu.Unlock()
	return ch.state
}

// JoinRef returns the join_ref of the current (or last) join, "" before
// the first.
func (ch *Channel) JoinRef() string {
	ch.s.mu.Lock()
	defer ch.s.mu.Unlock()
	return ch.joinRef
}

// On registers f for event (any server event on this channel, including
// phx_error and phx_close, and presence_state / presence_diff) and returns
// an id for Off. f is called from the socket's event goroutine, in frame
// order, and must not block for long (it may call Push: the reply is read
// by another goroutine). For binary frames, payload holds the raw bytes. A
// synthetic phx_error with payload {"reason": "connection_closed"} or
// {"reason": "heartbeat_timeout"} is delivered when the connection is lost.
func (ch *Channel) On(eventName string, f func(payload json.RawMessage)) int {
	return ch.bind(eventName, func(ev event) { f(ev.payload) })
}

func (ch *Channel) bind(eventName string, f func(event)) int {
	ch.s.mu.Lock()
	defer ch.s.mu.Unlock()
	ch.nextID++
	ch.bindings[eventName] = append(ch.bindings[eventName], binding{ch.nextID, f})
	return ch.nextID
}

// Off removes the binding id of event (or all its bindings when id is 0).
func (ch *Channel) Off(eventName string, id int) {
	ch.s.mu.Lock()
	defer ch.s.mu.Unlock()
	if id == 0 {
		delete(ch.bindings, eventName)
		return
	}
	ch.bindings[eventName] = slices.DeleteFunc(slices.Clone(ch.bindings[eventName]), func(b binding) bool { return b.id == id })
}

func (ch *Channel) paramsJSON() json.RawMessage {
	p := ch.params
	if f, ok := p.(func() any); ok {
		p = f()
	}
	switch p := p.(type) {
	case nil:
		return json.RawMessage("{}")
	case json.RawMessage:
		return p
	}
	b, err := json.Marshal(p)
	if err != nil {
		ch.s.log.Warn("client: join params do not encode; sending {}", "topic", ch.topic, "err", err)
		return json.RawMessage("{}")
	}
	return b
}

// Join joins the channel and returns the server's response. A refusal
// is a *ReplyError; no reply within Options.Timeout is ErrTimeout. After
// a failed Join the channel is closed and Join may be called again; after
// a successful one the channel stays joined (rejoining as needed) until
// Leave.
func (ch *Channel) Join(ctx context.Context) (json.RawMessage, error) {
	s := ch.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if ch.state != StateClosed {
		s.mu.Unlock()
		return nil, ErrAlreadyJoined
	}
	res := make(chan joinResult, 1)
	ch.firstJoin = res
	ch.rejoinTries = 0
	if !slices.Contains(s.channels, ch) {
		// Client-side duplicate prevention, as phoenix.js: leave any
		// other joined channel object on the same topic.
		for _, other := range s.channels {
			if other.topic == ch.topic && (other.state == StateJoined || other.state == StateJoining) {
				go func() { _ = other.Leave(context.Background()) }()
			}
		}
		s.channels = append(s.channels, ch)
	}
	ch.state = StateJoining
	ch.sendJoinLocked()
	s.mu.Unlock()

	select {
	case r := <-res:
		return r.resp, r.err
	case <-ctx.Done():
		s.mu.Lock()
		if ch.firstJoin == res {
			ch.firstJoin = nil
			if ch.joinRef != "" {
				// Drop the join the server may still answer.
				delete(s.replies, ch.joinRef)
				f, _ := encodeText(ch.joinRef, s.makeRef(), ch.topic, "phx_leave", nil)
				s.sendLocked(f)
			}
			ch.closeLocked(ctx.Err())
		}
		s.mu.Unlock()
		// The result may have been delivered meanwhile.
		select {
		case r := <-res:
			return r.resp, r.err
		default:
			return nil, ctx.Err()
		}
	}
}

// sendJoinLocked sends a phx_join with a new join_ref (if connected) and
// arms the join timeout. s.mu must be held.
func (ch *Channel) sendJoinLocked() {
	s := ch.s
	if s.conn == nil {
		return // sent by socketOpened
	}
	ref := s.makeRef()
	ch.joinRef = ref
	f, err := encodeText(ref, ref, ch.topic, "phx_join", ch.paramsJSON())
	if err != nil {
		f, _ = encodeText(ref, ref, ch.topic, "phx_join", nil)
	}
	s.replies[ref] = func(m Message) { ch.joinReply(ref, m) }
	if ch.joinTimer != nil {
		ch.joinTimer.Stop()
	}
	ch.joinTimer = time.AfterFunc(s.opts.Timeout, func() { ch.joinTimeout(ref) })
	s.sendLocked(f)
}

func (ch *Channel) joinReply(ref string, m Message) {
	s := ch.s
	status, resp, err := parseReply(m)
	s.mu.Lock()
	if ch.joinRef != ref || ch.state != StateJoining {
		s.mu.Unlock()
		return
	}
	if ch.joinTimer != nil {
		ch.joinTimer.Stop()
	}
	first := ch.firstJoin
	ch.firstJoin = nil
	if err == nil && status == "ok" {
		ch.state = StateJoined
		ch.rejoinTries = 0
		if ch.rejoinTimer != nil {
			ch.rejoinTimer.Stop()
		}
		buf := ch.buffer
		ch.buffer = nil
		for _, p := range buf {
			p.sendLocked()
		}
		s.mu.Unlock()
		if first != nil {
			first <- joinResult{resp: resp}
		}
		return
	}
	if err == nil {
		err = &ReplyError{Status: status, Response: resp}
	}
	if first != nil {
		ch.closeLocked(err)
		s.mu.Unlock()
		first <- joinResult{err: err}
		return
	}
	s.log.Info("client: rejoin refused", "topic", ch.topic, "err", err)
	ch.state = StateErrored
	ch.scheduleRejoinLocked()
	s.mu.Unlock()
}

func (ch *Channel) joinTimeout(ref string) {
	s := ch.s
	s.mu.Lock()
	if ch.joinRef != ref || ch.state != StateJoining {
		s.mu.Unlock()
		return
	}
	delete(s.replies, ref)
	// As phoenix.js: tell the server to drop the timed-out join.
	f, _ := encodeText(ref, s.makeRef(), ch.topic, "phx_leave", nil)
	s.sendLocked(f)
	if first := ch.firstJoin; first != nil {
		ch.firstJoin = nil
		ch.closeLocked(ErrTimeout)
		s.mu.Unlock()
		first <- joinResult{err: ErrTimeout}
		return
	}
	ch.state = StateErrored
	ch.scheduleRejoinLocked()
	s.mu.Unlock()
}

// scheduleRejoinLocked arms the rejoin timer if connected. s.mu held.
func (ch *Channel) scheduleRejoinLocked() {
	s := ch.s
	if s.conn == nil || s.closed {
		return // rejoin on the next open
	}
	ch.rejoinTries++
	if ch.rejoinTimer != nil {
		ch.rejoinTimer.Stop()
	}
	ch.rejoinTimer = time.AfterFunc(s.opts.RejoinAfter(ch.rejoinTries), ch.rejoin)
}

func (ch *Channel) rejoin() {
	s := ch.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch.state != StateErrored || s.closed {
		return
	}
	ch.state = StateJoining
	ch.sendJoinLocked()
}

// socketOpened rejoins at once if errored (or joining while the
// connection was down).
func (ch *Channel) socketOpened() {
	s := ch.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch.rejoinTimer != nil {
		ch.rejoinTimer.Stop()
	}
	ch.rejoinTries = 0
	switch ch.state {
	case StateErrored:
		ch.state = StateJoining
		ch.sendJoinLocked()
	case StateJoining:
		ch.sendJoinLocked()
	}
}

// socketClosed errors a joined or joining channel.
func (ch *Channel) socketClosed(reason string) {
	s := ch.s
	s.mu.Lock()
	if ch.state != StateJoined && ch.state != StateJoining {
		s.mu.Unlock()
		return
	}
	if ch.firstJoin != nil {
		// A Join in progress keeps waiting: the join is re-sent on the
		// next open (its timeout still runs).
		s.mu.Unlock()
		return
	}
	if ch.joinTimer != nil {
		ch.joinTimer.Stop()
	}
	ch.state = StateErrored
	s.mu.Unlock()
	payload, _ := json.Marshal(map[string]string{"reason": reason})
	ch.trigger("phx_error", event{payload: payload, joinRef: ch.JoinRef()})
}

// receive handles a frame addressed to this channel instance.
func (ch *Channel) receive(m Message) {
	s := ch.s
	s.mu.Lock()
	joinRef := ch.joinRef
	switch m.Event {
	case "phx_error":
		if ch.state == StateJoined || ch.state == StateJoining {
			if ch.joinTimer != nil {
				ch.joinTimer.Stop()
			}
			if first := ch.firstJoin; first != nil {
				ch.firstJoin = nil
				ch.closeLocked(ErrChannelClosed)
				s.mu.Unlock()
				first <- joinResult{err: fmt.Errorf("%w: phx_error %s", ErrChannelClosed, m.Payload)}
				ch.trigger(m.Event, event{payload: m.Payload, joinRef: joinRef})
				return
			}
			ch.state = StateErrored
			ch.scheduleRejoinLocked()
		}
	case "phx_close":
		ch.closeLocked(ErrChannelClosed)
	}
	s.mu.Unlock()
	ch.trigger(m.Event, event{payload: m.Payload, joinRef: joinRef})
}

// trigger queues the bindings of eventName on the event goroutine.
func (ch *Channel) trigger(eventName string, ev event) {
	s := ch.s
	s.mu.Lock()
	bs := ch.bindings[eventName]
	s.mu.Unlock()
	if len(bs) == 0 {
		return
	}
	s.events.push(func() {
		for _, b := range bs {
			b.f(ev)
		}
	})
}

// closeLocked closes the channel locally: no more rejoins, buffered pushes
// fail with err, and the channel leaves the socket. s.mu must be held.
func (ch *Channel) closeLocked(err error) {
	s := ch.s
	ch.state = StateClosed
	if ch.joinTimer != nil {
		ch.joinTimer.Stop()
	}
	if ch.rejoinTimer != nil {
		ch.rejoinTimer.Stop()
	}
	for _, p := range ch.buffer {
		p.fail(err)
	}
	ch.buffer = nil
	if i := slices.Index(s.channels, ch); i >= 0 {
		s.channels = slices.Delete(slices.Clone(s.channels), i, i+1)
	}
}

// closeLocal closes the channel and fails a pending Join with err.
func (ch *Channel) closeLocal(err error) {
	s := ch.s
	s.mu.Lock()
	first := ch.firstJoin
	ch.firstJoin = nil
	ch.closeLocked(err)
	s.mu.Unlock()
	if first != nil {
		first <- joinResult{err: err}
	}
}

// Leave leaves the channel: it sends phx_leave and waits for the reply (at
// most Options.Timeout or ctx), then closes the channel locally whatever
// the outcome. It returns ErrTimeout or ctx's error when the reply did not
// come; leaving a channel that is not joined returns nil at once.
func (ch *Channel) Leave(ctx context.Context) error {
	s := ch.s
	s.mu.Lock()
	if ch.state == StateClosed || ch.state == StateLeaving {
		s.mu.Unlock()
		return nil
	}
	if ch.joinTimer != nil {
		ch.joinTimer.Stop()
	}
	if ch.rejoinTimer != nil {
		ch.rejoinTimer.Stop()
	}
	first := ch.firstJoin
	ch.firstJoin = nil
	canPush := s.conn != nil && ch.joinRef != "" && (ch.state == StateJoined || ch.state == StateJoining)
	if !canPush {
		ch.closeLocked(ErrChannelClosed)
		s.mu.Unlock()
		if first != nil {
			first <- joinResult{err: ErrChannelClosed}
		}
		return nil
	}
	ch.state = StateLeaving
	ref := s.makeRef()
	got := make(chan struct{})
	s.replies[ref] = func(Message) { close(got) }
	f, _ := encodeText(ch.joinRef, ref, ch.topic, "phx_leave", nil)
	s.sendLocked(f)
	s.mu.Unlock()
	if first != nil {
		first <- joinResult{err: ErrChannelClosed}
	}

	t := time.NewTimer(s.opts.Timeout)
	defer t.Stop()
	var err error
	select {
	case <-got:
	case <-t.C:
		err = ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.stop:
	}
	s.mu.Lock()
	delete(s.replies, ref)
	ch.closeLocked(ErrChannelClosed)
	s.mu.Unlock()
	ch.trigger("phx_close", event{payload: json.RawMessage(`"leave"`), joinRef: ch.JoinRef()})
	return err
}

// push is one Push call.
type push struct {
	ch      *Channel
	event   string
	payload []byte
	binary  bool
	result  chan joinResult // buffered 1
	ref     string
}

func (p *push) fail(err error) {
	select {
	case p.result <- joinResult{err: err}:
	default:
	}
}

// sendLocked sends the push with the channel's join_ref. s.mu held.
func (p *push) sendLocked() {
	s := p.ch.s
	p.ref = s.makeRef()
	var f []byte
	var err error
	if p.binary {
		f, err = encodeBinaryPush(p.ch.joinRef, p.ref, p.ch.topic, p.event, p.payload)
	} else {
		f, err = encodeText(p.ch.joinRef, p.ref, p.ch.topic, p.event, p.payload)
	}
	if err != nil {
		p.fail(err)
		return
	}
	s.replies[p.ref] = func(m Message) {
		status, resp, err := parseReply(m)
		switch {
		case err != nil:
		case status == "ok":
		default:
			err = &ReplyError{Status: status, Response: resp}
		}
		select {
		case p.result <- joinResult{resp: resp, err: err}:
		default:
		}
	}
	s.sendLocked(f)
}

// Push sends event with payload (a value that encodes to JSON, or a
// json.RawMessage; nil means {}) and returns the response of an "ok"
// reply. Another status is a *ReplyError; no reply within
// Options.Timeout is ErrTimeout. A push made before the channel is joined
// (or while it rejoins) is sent once the join succeeds; its timeout runs
// from the call.
func (ch *Channel) Push(ctx context.Context, eventName string, payload any) (json.RawMessage, error) {
	var b []byte
	switch p := payload.(type) {
	case nil:
		b = []byte("{}")
	case json.RawMessage:
		b = p
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			return nil, fmt.Errorf("client: push payload: %w", err)
		}
	}
	return ch.push(ctx, eventName, b, false)
}

// PushBinary is Push with a binary payload (a V2 binary frame, kind 0).
// Topic, event and refs must each fit in 255 bytes.
func (ch *Channel) PushBinary(ctx context.Context, eventName string, payload []byte) (json.RawMessage, error) {
	return ch.push(ctx, eventName, payload, true)
}

func (ch *Channel) push(ctx context.Context, eventName string, payload []byte, binary bool) (json.RawMessage, error) {
	s := ch.s
	p := &push{ch: ch, event: eventName, payload: payload, binary: binary, result: make(chan joinResult, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	switch {
	case ch.state == StateClosed || ch.state == StateLeaving:
		s.mu.Unlock()
		return nil, ErrNotJoined
	case ch.state == StateJoined && s.conn != nil:
		p.sendLocked()
	default:
		ch.buffer = append(ch.buffer, p)
	}
	s.mu.Unlock()

	t := time.NewTimer(s.opts.Timeout)
	defer t.Stop()
	var err error
	select {
	case r := <-p.result:
		return r.resp, r.err
	case <-t.C:
		err = ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.stop:
		err = ErrClosed
	}
	s.mu.Lock()
	if p.ref != "" {
		delete(s.replies, p.ref)
	}
	ch.buffer = slices.DeleteFunc(ch.buffer, func(q *push) bool { return q == p })
	s.mu.Unlock()
	return nil, err
}
