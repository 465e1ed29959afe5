package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence/internal/queue"
)

// Sentinel errors.
var (
	// ErrClosed: the Socket was closed.
	ErrClosed = errors.New("client: socket closed")
	// ErrTimeout: no reply within the push timeout (Options.Timeout).
	ErrTimeout = errors.New("client: timeout")
	// ErrChannelClosed: the channel was left or closed by the server.
	ErrChannelClosed = errors.New("client: channel closed")
	// ErrAlreadyJoined: Join on a channel that is joined or joining.
	ErrAlreadyJoined = errors.New("client: channel already joined")
	// ErrNotJoined: Push on a channel that was never joined.
	ErrNotJoined = errors.New("client: channel not joined")
	// ErrHeartbeatTimeout: the server did not answer a heartbeat within
	// the heartbeat interval; the connection is closed and re-dialled.
	ErrHeartbeatTimeout = errors.New("client: heartbeat timeout")
)

// ReplyError is the error of a Join or Push answered with a status other
// than "ok".
type ReplyError struct {
	Status   string
	Response json.RawMessage
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("client: reply %q: %s", e.Status, e.Response)
}

// Defaults of Options.
const (
	DefaultTimeout           = 10 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
)

// DefaultReconnectAfter is phoenix.js's reconnect schedule: 10, 50, 100,
// 150, 200, 250, 500, 1000, 2000 ms, then 5 s; tries counts from 1.
func DefaultReconnectAfter(tries int) time.Duration {
	steps := [...]int{10, 50, 100, 150, 200, 250, 500, 1000, 2000}
	if tries >= 1 && tries <= len(steps) {
		return time.Duration(steps[tries-1]) * time.Millisecond
	}
	return 5 * time.Second
}

// DefaultRejoinAfter is phoenix.js's rejoin schedule: 1, 2, 5 s, then
// every 10 s; tries counts from 1.
func DefaultRejoinAfter(tries int) time.Duration {
	steps := [...]int{1, 2, 5}
	if tries >= 1 && tries <= len(steps) {
		return time.Duration(steps[tries-1]) * time.Second
	}
	return 10 * time.Second
}

// Options configures Dial. Nil means every default.
type Options struct {
	// Params are sent as query parameters on every (re)connect, before
	// vsn=2.0.0. ParamsFunc, when set, is called at every (re)connect
	// instead.
	Params     url.Values
	ParamsFunc func() url.Values

	// Header is sent with the WebSocket handshake.
	Header http.Header

	// AuthToken, when set, is offered as the subprotocol
	// "base64url.bearer.phx.<token in base64, no padding>" next to
	// "phoenix", as phoenix.js does.
	AuthToken string

	// Timeout is the default timeout of Join, Push and Leave (each may be
	// shortened by its ctx). Default 10 s.
	Timeout time.Duration

	// HeartbeatInterval is the period of heartbeats; a heartbeat not
	// answered within one interval closes the connection, which is then
	// re-dialled. Default 30 s; negative disables heartbeats.
	HeartbeatInterval time.Duration

	// ReconnectAfter gives the delay before re-dial attempt number tries
	// (from 1) after a connection is lost. Default DefaultReconnectAfter.
	ReconnectAfter func(tries int) time.Duration

	// RejoinAfter gives the delay before rejoin attempt number tries of a
	// channel whose join failed or that errored while connected. Default
	// DefaultRejoinAfter.
	RejoinAfter func(tries int) time.Duration

	// Dialer dials the WebSocket. Default: a dialer with a 10 s handshake
	// timeout.
	Dialer *websocket.Dialer

	// OnOpen is called after every successful (re)connect; OnClose after
	// every lost connection, with the reason. Both are called from the
	// socket's event goroutine and must not block for long.
	OnOpen  func()
	OnClose func(err error)

	// Logger receives connection events. Nil means discard.
	Logger *slog.Logger
}

// Socket is a connection to a Phoenix channels endpoint (V2 JSON
// serializer over WebSocket) that re-dials when the connection is lost and
// rejoins its channels. It is safe for concurrent use.
//
// Two goroutines per connection read and write frames; a third (for the
// Socket's life) runs the callbacks registered with Channel.On, the
// Presence callbacks and OnOpen/OnClose, one at a time, in the order of the
// frames; a slow callback delays the later ones but never the reading of
// frames (heartbeats keep being answered).
type Socket struct {
	endpoint string // ws(s)://host/path/websocket
	opts     Options
	log      *slog.Logger
	dialer   *websocket.Dialer

	ref    atomic.Uint64
	events *eventQueue

	mu         sync.Mutex
	conn       *connection // nil while disconnected
	channels   []*Channel
	replies    map[string]func(Message) // ref → reply handler, run in the reader
	hbRef      string                   // pending heartbeat ref
	pings      map[string]chan struct{}
	closed     bool
	everOpened bool

	opened     chan struct{} // closed after the first connection's onOpen
	openedOnce sync.Once

	stop chan struct{} // closed by Close
	done chan struct{} // closed when run has returned
}

// Dial connects to the endpoint url ("ws://host/socket"; "/websocket" is
// appended unless already there; http and https are accepted for ws and
// wss) and returns the Socket once the first connection is established.
// Later connection losses are repaired in the background.
func Dial(ctx context.Context, endpoint string, opts *Options) (*Socket, error) {
	s := &Socket{
		replies: make(map[string]func(Message)),
		pings:   make(map[string]chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.Timeout <= 0 {
		s.opts.Timeout = DefaultTimeout
	}
	if s.opts.HeartbeatInterval == 0 {
		s.opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if s.opts.ReconnectAfter == nil {
		s.opts.ReconnectAfter = DefaultReconnectAfter
	}
	if s.opts.RejoinAfter == nil {
		s.opts.RejoinAfter = DefaultRejoinAfter
	}
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	if s.opts.Dialer != nil {
		d = *s.opts.Dialer
	}
	if s.opts.AuthToken != "" {
		tok := base64.RawStdEncoding.EncodeToString([]byte(s.opts.AuthToken))
		d.Subprotocols = append([]string{"phoenix", "base64url.bearer.phx." + tok}, d.Subprotocols...)
	}
	s.dialer = &d
	ep, err := websocketEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	s.endpoint = ep
	ws, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.events = newEventQueue()
	s.opened = make(chan struct{})
	go s.run(ws)
	<-s.opened // the first connection is registered: IsConnected is true
	return s, nil
}

func websocketEndpoint(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("client: endpoint: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("client: endpoint %q: scheme must be ws, wss, http or https", endpoint)
	}
	if !strings.HasSuffix(u.Path, "/websocket") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/websocket"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// URL returns the URL the next connection will dial, with its params and
// vsn=2.0.0.
func (s *Socket) URL() string {
	params := s.opts.Params
	if s.opts.ParamsFunc != nil {
		params = s.opts.ParamsFunc()
	}
	q := params.Encode()
	if q != "" {
		q += "&"
	}
	return s.endpoint + "?" + q + "vsn=2.0.0"
}

func (s *Socket) dial(ctx context.Context) (*websocket.Conn, error) {
	ws, resp, err := s.dialer.DialContext(ctx, s.URL(), s.opts.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("client: dial %s: %w (HTTP %d)", s.endpoint, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("client: dial %s: %w", s.endpoint, err)
	}
	return ws, nil
}

// makeRef returns a new ref: a decimal counter shared by every message.
func (s *Socket) makeRef() string { return strconv.FormatUint(s.ref.Add(1), 10) }

// run owns the connection life cycle: serve a connection, then re-dial
// with backoff, until Close.
func (s *Socket) run(ws *websocket.Conn) {
	defer close(s.done)
	defer s.events.close()
	tries := 0
	for {
		if ws != nil {
			tries = 0
			err := s.serve(ws)
			if errors.Is(err, ErrClosed) {
				return
			}
			s.log.Info("client: connection lost", "err", err)
		}
		tries++
		t := time.NewTimer(s.opts.ReconnectAfter(tries))
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopDial := make(chan struct{})
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-stopDial:
			}
		}()
		var err error
		ws, err = s.dial(ctx)
		close(stopDial)
		cancel()
		if err != nil {
			s.log.Debug("client: reconnect failed", "tries", tries, "err", err)
			ws = nil
		}
	}
}

// connection is one WebSocket connection with its writer.
type connection struct {
	ws     *websocket.Conn
	mu     sync.Mutex // guards out
	out    [][]byte
	wake   chan struct{}
	closed chan struct{} // closed when the connection is being torn down
	once   sync.Once
}

func (c *connection) send(frame []byte) {
	c.mu.Lock()
	c.out = append(c.out, frame)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *connection) shutdown() { c.once.Do(func() { close(c.closed) }) }

// writer writes queued frames until the connection is torn down.
func (c *connection) writer(errc chan<- error) {
	for {
		select {
		case <-c.closed:
			errc <- nil
			return
		case <-c.wake:
		}
		c.mu.Lock()
		batch := c.out
		c.out = nil
		c.mu.Unlock()
		for _, f := range batch {
			mt := websocket.TextMessage
			if len(f) > 0 && f[0] == kindPush {
				mt = websocket.BinaryMessage
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(mt, f); err != nil {
				errc <- err
				return
			}
		}
	}
}

// serve runs one connection until it fails or the Socket is closed.
func (s *Socket) serve(ws *websocket.Conn) error {
	c := &connection{ws: ws, wake: make(chan struct{}, 1), closed: make(chan struct{})}
	readErr := make(chan error, 1)
	writeErr := make(chan error, 1)
	go func() { readErr <- s.reader(c) }()
	go c.writer(writeErr)

	s.onOpen(c)
	s.openedOnce.Do(func() { close(s.opened) })

	var hb <-chan time.Time
	if s.opts.HeartbeatInterval > 0 {
		t := time.NewTicker(s.opts.HeartbeatInterval)
		defer t.Stop()
		hb = t.C
	}
	var cause error
loop:
	for {
		select {
		case err := <-readErr:
			readErr = nil
			cause = err
			break loop
		case err := <-writeErr:
			writeErr = nil
			cause = err
			break loop
		case <-hb:
			if !s.heartbeat(c) {
				cause = ErrHeartbeatTimeout
				s.log.Warn("client: heartbeat timeout")
				break loop
			}
		case <-s.stop:
			cause = ErrClosed
			break loop
		}
	}
	// Tear down: say goodbye (normal closure), close, wait for both
	// goroutines.
	code, text := websocket.CloseNormalClosure, ""
	if errors.Is(cause, ErrHeartbeatTimeout) {
		text = "heartbeat timeout"
	}
	c.shutdown()
	if writeErr != nil {
		<-writeErr
		writeErr = nil
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	_ = ws.Close()
	if readErr != nil {
		<-readErr
	}
	s.onClose(c, cause)
	return cause
}

// heartbeat sends a heartbeat, or reports false when the previous one is
// still unanswered.
func (s *Socket) heartbeat(c *connection) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hbRef != "" {
		s.hbRef = ""
		return false
	}
	s.hbRef = s.makeRef()
	f, _ := encodeText("", s.hbRef, "phoenix", "heartbeat", nil)
	c.send(f)
	return true
}

// Ping sends a heartbeat and returns the round-trip time of its reply.
func (s *Socket) Ping(ctx context.Context) (time.Duration, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	c := s.conn
	if c == nil {
		s.mu.Unlock()
		return 0, errors.New("client: not connected")
	}
	ref := s.makeRef()
	got := make(chan struct{})
	s.pings[ref] = got
	f, _ := encodeText("", ref, "phoenix", "heartbeat", nil)
	start := time.Now()
	c.send(f)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pings, ref)
		s.mu.Unlock()
	}()
	select {
	case <-got:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.stop:
		return 0, ErrClosed
	}
}

// reader reads frames until the connection fails.
func (s *Socket) reader(c *connection) error {
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		var m Message
		if mt == websocket.BinaryMessage {
			m, err = decodeBinary(data)
		} else {
			m, err = decodeText(data)
		}
		if err != nil {
			s.log.Warn("client: dropping undecodable frame", "err", err)
			continue
		}
		s.handle(m)
	}
}

// handle routes one inbound frame.
func (s *Socket) handle(m Message) {
	s.mu.Lock()
	if m.Topic == "phoenix" && m.Ref != "" {
		if m.Ref == s.hbRef {
			s.hbRef = ""
		}
		if ch, ok := s.pings[m.Ref]; ok {
			close(ch)
			delete(s.pings, m.Ref)
		}
	}
	var reply func(Message)
	if m.Event == "phx_reply" && m.Ref != "" {
		reply = s.replies[m.Ref]
		delete(s.replies, m.Ref)
	}
	var members []*Channel
	for _, ch := range s.channels {
		if ch.topic == m.Topic && (m.JoinRef == "" || m.JoinRef == ch.joinRef) {
			members = append(members, ch)
		}
	}
	s.mu.Unlock()
	if reply != nil {
		reply(m)
	}
	if m.Event == "phx_reply" {
		return
	}
	for _, ch := range members {
		ch.receive(m)
	}
}

// onOpen marks the socket connected and rejoins errored channels.
func (s *Socket) onOpen(c *connection) {
	s.mu.Lock()
	s.conn = c
	s.hbRef = ""
	s.everOpened = true
	chans := append([]*Channel(nil), s.channels...)
	s.mu.Unlock()
	s.log.Debug("client: connected", "url", s.endpoint)
	for _, ch := range chans {
		ch.socketOpened()
	}
	if f := s.opts.OnOpen; f != nil {
		s.events.push(f)
	}
}

// onClose marks the socket disconnected and errors the joined channels.
func (s *Socket) onClose(c *connection, cause error) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.hbRef = ""
	chans := append([]*Channel(nil), s.channels...)
	s.mu.Unlock()
	reason := "connection_closed"
	if errors.Is(cause, ErrHeartbeatTimeout) {
		reason = "heartbeat_timeout"
	}
	for _, ch := range chans {
		ch.socketClosed(reason)
	}
	if f := s.opts.OnClose; f != nil && !errors.Is(cause, ErrClosed) {
		s.events.push(func() { f(cause) })
	}
}

// sendLocked queues a frame on the current connection; false when
// disconnected. s.mu must be held.
func (s *Socket) sendLocked(frame []byte) bool {
	if s.conn == nil {
		return false
	}
	s.conn.send(frame)
	return true
}

// IsConnected reports whether a connection is up.
func (s *Socket) IsConnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// Close closes the connection (code 1000) and stops reconnecting; every
// channel is closed and waiting calls return ErrClosed. It waits for the
// Socket's goroutines, except for the event goroutine while a callback is
// running (the callback may be the one calling Close): that goroutine then
// ends once the callbacks already queued have run. Idempotent.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	chans := append([]*Channel(nil), s.channels...)
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	for _, ch := range chans {
		ch.closeLocal(ErrClosed)
	}
	s.events.wait()
	return nil
}

// eventQueue runs callbacks one at a time on its own goroutine.
type eventQueue struct {
	q    *queue.Queue[func()]
	done chan struct{}
}

func newEventQueue() *eventQueue {
	e := &eventQueue{q: queue.New[func()](0), done: make(chan struct{})}
	go e.loop()
	return e
}

// push queues f; after close it drops it.
func (e *eventQueue) push(f func()) { e.q.Push(f) }

// close lets the loop finish what is queued and stop.
func (e *eventQueue) close() { e.q.Close() }

func (e *eventQueue) loop() {
	defer close(e.done)
	for {
		batch, closed := e.q.Take()
		if len(batch) == 0 {
			if closed {
				return
			}
			<-e.q.Ready()
			continue
		}
		for _, f := range batch {
			f()
		}
		e.q.Done(len(batch))
	}
}

// wait waits for the loop to finish, unless a callback is running: that
// callback may be the caller (Close from a callback), and a goroutine
// cannot tell whether it is the loop's without reading goroutine ids.
// When none is running the caller is not the loop, so waiting is safe.
// close must have been called.
func (e *eventQueue) wait() {
	if !e.q.Busy() {
		<-e.done
	}
}
