package phx

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gopresence/presence/internal/jsonstr"
)

// maxLongPollLines is how many ndjson lines of one POST are used, as in
// Phoenix (phoenix.js batches at most 100 per POST); the rest are ignored.
const maxLongPollLines = 100

// lpTransport serves Mount+"/longpoll", Phoenix's long-poll transport:
// every answer is HTTP 200 with the logical status in the JSON body.
type lpTransport struct {
	srv     *Server
	origins originPolicy

	mu       sync.Mutex
	sessions map[string]*lpSession
	wg       sync.WaitGroup // session teardown goroutines
}

// lpSession is one long-poll session: a conn whose queue GETs drain. It
// is the sink of the conn's outbox: a poll takes what is queued, and Wake
// wakes the poll waiting for it.
type lpSession struct {
	t      *lpTransport
	token  string
	c      *conn
	timer  *time.Timer
	notify chan struct{} // cap 1: frames queued or closing

	// mu guards the requests in progress.
	mu       sync.Mutex
	lastPoll time.Time
	polling  int
	posting  int
}

var _ sink = (*lpSession)(nil)

// Binary: long-poll answers carry text frames only (binary ones are
// dropped when encoded, and logged).
func (sess *lpSession) Binary() bool { return false }

// Pending is 0: a poll takes frames off the queue and answers at once.
func (sess *lpSession) Pending() int64 { return 0 }

// Wake wakes a waiting poll; the first wake after closing starts the
// session's teardown.
func (sess *lpSession) Wake(closed bool) {
	sess.signal()
	if closed {
		t := sess.t
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			sess.end()
		}()
	}
}

// Send is never taken: every frame waits for a poll.
func (sess *lpSession) Send([]byte) bool { return false }

// Abort does nothing: the session ends with its teardown, and a poll in
// progress answers 410.
func (sess *lpSession) Abort() {}

// signal wakes whoever waits on notify (a poll).
func (sess *lpSession) signal() {
	select {
	case sess.notify <- struct{}{}:
	default:
	}
}

// maxPosts is how many POSTs of one session may be read at once; more get
// HTTP 429 (phoenix.js sends one batch at a time).
const maxPosts = 4

func newLPTransport(s *Server) *lpTransport {
	return &lpTransport{srv: s, sessions: make(map[string]*lpSession)}
}

func (t *lpTransport) wait() { t.wg.Wait() }

// lpBody is a long-poll response body.
type lpBody struct {
	Status   int       `json:"status"`
	Token    string    `json:"token,omitempty"`
	Messages *[]string `json:"messages,omitempty"`
}

func writeLP(w http.ResponseWriter, b lpBody) {
	lpHeaders(w)
	data, _ := json.Marshal(b)
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

func lpHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Access-Control-Allow-Origin", "*")
}

// writeLPMessages answers a poll with the text frames of q, as writeLP
// would encode lpBody{Status: 200, Token: token, Messages: …}, but streamed:
// each frame is escaped into the response as it goes, never copied whole.
func writeLPMessages(w http.ResponseWriter, token string, q []frame) {
	lpHeaders(w)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 16<<10)
	b := append(make([]byte, 0, 64), `{"status":200,"token":`...)
	b = jsonstr.Append(b, token)
	bw.Write(append(b, `,"messages":[`...))
	first := true
	for _, f := range q {
		if f.binary {
			continue
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		jsonstr.Write(bw, f.data)
	}
	bw.WriteString("]}")
	bw.Flush()
}

func (t *lpTransport) serve(w http.ResponseWriter, r *http.Request) {
	s := t.srv
	// The origin check runs before method dispatch, as in Phoenix: a
	// preflight from a refused origin also gets {"status":403}.
	if !s.allowOrigin(r, t.origins) {
		s.log.Warn("phx: long-poll origin refused", "peer", r.RemoteAddr, "origin", r.Header.Get("Origin"), "allow", s.cfg.OriginHint)
		writeLP(w, lpBody{Status: http.StatusForbidden})
		return
	}
	switch r.Method {
	case http.MethodOptions:
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
		h.Set("Access-Control-Allow-Methods", "get, post, options")
		h.Set("Access-Control-Max-Age", "3600")
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		t.get(w, r)
	case http.MethodPost:
		t.post(w, r)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

// lookup finds the session of a request: its X-Phoenix-Longpoll-Token
// header, or any of its "token" parameters. phoenix.js appends the session
// token to the endpoint's own parameters, which may hold a "token" of the
// application's (a JWT) first.
func (t *lpTransport) lookup(r *http.Request) *lpSession {
	toks := r.URL.Query()["token"]
	if h := r.Header.Get("X-Phoenix-Longpoll-Token"); h != "" {
		toks = []string{h}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tok := range toks {
		if sess := t.sessions[tok]; sess != nil && tok != "" {
			return sess
		}
	}
	return nil
}

func (t *lpTransport) get(w http.ResponseWriter, r *http.Request) {
	if sess := t.lookup(r); sess != nil {
		sess.poll(w, r)
		return
	}
	s := t.srv
	switch a, why, _ := s.handshake(r, transportLongPoll, r.Header.Get("X-Phoenix-AuthToken")); why {
	case refusedVsn, refusedStop, refusedAuth:
		writeLP(w, lpBody{Status: http.StatusForbidden})
	case refusedLimits:
		// A real HTTP 429 with no body, not {"status":429}: phoenix.js reads
		// only the body, throws on a status it does not know and never
		// reconnects, while an empty body counts as a failed poll, which it
		// retries with its reconnect backoff (as after a refused upgrade).
		lpHeaders(w)
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		sess, err := t.newSession(a.ser, a.ident, r.RemoteAddr)
		if err != nil {
			s.release(a.ip, a.ident.ID)
			writeLP(w, lpBody{Status: http.StatusForbidden})
			return
		}
		writeLP(w, lpBody{Status: http.StatusGone, Token: sess.token, Messages: &[]string{}})
	}
}

func newToken() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (t *lpTransport) newSession(ser serializer, ident Identity, peer string) (*lpSession, error) {
	tok, err := newToken()
	if err != nil {
		return nil, err
	}
	sess := &lpSession{t: t, token: tok, lastPoll: time.Now(), notify: make(chan struct{}, 1)}
	c := newConn(t.srv, transportLongPoll, ser, ident, sess)
	c.peer = peer
	sess.c = c
	// The timer and the token are in place before register: from then on
	// a Shutdown may close the session, and its end stops the timer and
	// drops the token.
	sess.timer = time.AfterFunc(sess.maxIdle(), sess.checkIdle)
	t.mu.Lock()
	t.sessions[tok] = sess
	t.mu.Unlock()
	if !t.srv.register(c) {
		sess.timer.Stop()
		t.mu.Lock()
		delete(t.sessions, tok)
		t.mu.Unlock()
		return nil, errors.New("phx: server stopping")
	}
	c.expireAt(ident.ExpiresAt)
	return sess, nil
}

// maxIdle is how long a session lives without a poll: 1.5 windows.
func (sess *lpSession) maxIdle() time.Duration { return sess.t.srv.cfg.LongPollWindow * 3 / 2 }

func (sess *lpSession) checkIdle() {
	c := sess.c
	closing := c.out.isClosing()
	sess.mu.Lock()
	idle := time.Since(sess.lastPoll)
	polling := sess.polling
	sess.mu.Unlock()
	switch {
	case closing:
	case polling == 0 && idle >= sess.maxIdle():
		c.out.closeWith(CloseGoingAway, "inactive")
	case polling > 0:
		sess.timer.Reset(sess.maxIdle())
	default:
		sess.timer.Reset(sess.maxIdle() - idle)
	}
}

// end tears the session down (run once, from Wake).
func (sess *lpSession) end() {
	t := sess.t
	t.mu.Lock()
	delete(t.sessions, sess.token)
	t.mu.Unlock()
	sess.timer.Stop()
	sess.c.stopExpiry()
	sess.c.endAll()
	sess.signal() // wake a waiting poll
	t.srv.unregister(sess.c)
}

// poll answers a GET of a live session: buffered messages at once, or wait
// up to the window for some, else 204.
func (sess *lpSession) poll(w http.ResponseWriter, r *http.Request) {
	c := sess.c
	sess.mu.Lock()
	sess.polling++
	sess.lastPoll = time.Now()
	sess.mu.Unlock()
	defer func() {
		sess.mu.Lock()
		sess.polling--
		sess.lastPoll = time.Now()
		sess.mu.Unlock()
	}()
	cfg := &sess.t.srv.cfg
	// The answer is written within the window and WriteTimeout: a client
	// that does not read it cannot hold the request (and its messages).
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(cfg.LongPollWindow + cfg.WriteTimeout))
	timer := time.NewTimer(cfg.LongPollWindow)
	defer timer.Stop()
	for {
		q, closing := c.out.takePoll()
		if closing {
			writeLP(w, lpBody{Status: http.StatusGone, Messages: &[]string{}})
			return
		}
		if len(q) > 0 {
			writeLPMessages(w, sess.token, q)
			return
		}
		select {
		case <-sess.notify:
		case <-timer.C:
			writeLP(w, lpBody{Status: http.StatusNoContent, Token: sess.token, Messages: &[]string{}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// errBadLine is an ndjson line that is neither a text frame nor base64.
var errBadLine = errors.New("phx: long-poll line is not base64")

// decodeLongPollBody splits a POST body into frames: for
// ndjson, at most the first 100 non-empty lines, each a text frame when it
// starts with '[' and otherwise the standard base64 of a binary frame; for
// any other content type, the whole body is one text frame.
func decodeLongPollBody(contentType string, body []byte, maxFrame int64) ([]frame, error) {
	if contentType != "application/x-ndjson" {
		return []frame{{data: body}}, nil
	}
	var out []frame
	lines := 0
	for len(body) > 0 && lines < maxLongPollLines {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		lines++
		if len(line) == 0 {
			continue
		}
		if line[0] == '[' {
			out = append(out, frame{data: line})
			continue
		}
		if int64(base64.StdEncoding.DecodedLen(len(line))) > maxFrame+3 {
			return nil, fmt.Errorf("%w: binary line of %d characters", errTooBig, len(line))
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
		n, err := base64.StdEncoding.Decode(b, line)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadLine, err)
		}
		out = append(out, frame{data: b[:n], binary: true})
	}
	return out, nil
}

func (t *lpTransport) post(w http.ResponseWriter, r *http.Request) {
	sess := t.lookup(r)
	if sess == nil {
		writeLP(w, lpBody{Status: http.StatusGone})
		return
	}
	s := t.srv
	if r.ContentLength > s.cfg.LongPollMaxBody {
		// Refused before a byte of it is read.
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	c := sess.c
	sess.mu.Lock()
	busy := sess.posting >= maxPosts
	if !busy {
		sess.posting++
	}
	sess.mu.Unlock()
	if busy {
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	defer func() {
		sess.mu.Lock()
		sess.posting--
		sess.mu.Unlock()
	}()
	// A body trickled in is cut off after WriteTimeout.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.WriteTimeout))
	var bb bytes.Buffer
	if r.ContentLength > 0 {
		bb.Grow(int(r.ContentLength))
	}
	_, err := bb.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.LongPollMaxBody))
	body := bb.Bytes()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		} else {
			w.WriteHeader(http.StatusBadRequest)
		}
		return
	}
	frames, err := decodeLongPollBody(r.Header.Get("Content-Type"), body, s.cfg.MaxFrameSize)
	if err == nil {
		for _, f := range frames {
			if err = sess.c.handleFrame(f.data, f.binary); err != nil {
				break
			}
		}
	}
	if err != nil {
		// Like a malformed WebSocket frame: the session ends.
		s.log.Warn("phx: ending long-poll session on a bad frame", "peer", r.RemoteAddr, "id", c.ident.ID, "err", err)
		sess.c.out.closeWith(closeFor(err))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	writeLP(w, lpBody{Status: http.StatusOK})
}
