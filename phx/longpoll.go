package phx

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// maxLongPollLines is how many ndjson lines of one POST are used (spec
// §5.9); the rest are ignored.
const maxLongPollLines = 100

// lpTransport serves Mount+"/longpoll" (spec §5.9, §10.2).
type lpTransport struct {
	srv     *Server
	origins originPolicy

	mu       sync.Mutex
	sessions map[string]*lpSession
	wg       sync.WaitGroup // session teardown goroutines
}

// lpSession is one long-poll session: a conn whose queue GETs drain.
type lpSession struct {
	t     *lpTransport
	token string
	c     *conn
	timer *time.Timer

	// under c.mu
	lastPoll time.Time
	polling  int
}

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
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Access-Control-Allow-Origin", "*")
	data, _ := json.Marshal(b)
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

func (t *lpTransport) serve(w http.ResponseWriter, r *http.Request) {
	s := t.srv
	// The origin check runs before method dispatch (spec §10.2).
	if !s.allowOrigin(r, t.origins) {
		s.log.Warn("phx: long-poll origin refused (see Config.AllowedOrigins)", "origin", r.Header.Get("Origin"))
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

func sessionToken(r *http.Request) string {
	if tok := r.Header.Get("X-Phoenix-Longpoll-Token"); tok != "" {
		return tok
	}
	return r.URL.Query().Get("token")
}

func (t *lpTransport) lookup(r *http.Request) *lpSession {
	tok := sessionToken(r)
	if tok == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[tok]
}

func (t *lpTransport) get(w http.ResponseWriter, r *http.Request) {
	if sess := t.lookup(r); sess != nil {
		sess.poll(w, r)
		return
	}
	s := t.srv
	params := r.URL.Query()
	ser, ok := negotiate(params)
	if !ok {
		s.log.Warn("phx: unsupported vsn, connection refused", "vsn", params.Get("vsn"))
		writeLP(w, lpBody{Status: http.StatusForbidden})
		return
	}
	if s.isStopping() {
		writeLP(w, lpBody{Status: http.StatusForbidden})
		return
	}
	ident, err := s.connect(r, params, transportLongPoll, ser, r.Header.Get("X-Phoenix-AuthToken"))
	if err != nil {
		s.log.Info("phx: connection refused", "transport", transportLongPoll, "err", err)
		writeLP(w, lpBody{Status: http.StatusForbidden})
		return
	}
	sess, err := t.newSession(ser, ident)
	if err != nil {
		writeLP(w, lpBody{Status: http.StatusForbidden})
		return
	}
	writeLP(w, lpBody{Status: http.StatusGone, Token: sess.token, Messages: &[]string{}})
}

func newToken() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (t *lpTransport) newSession(ser serializer, ident Identity) (*lpSession, error) {
	tok, err := newToken()
	if err != nil {
		return nil, err
	}
	c := newConn(t.srv, transportLongPoll, ser, ident)
	sess := &lpSession{t: t, token: tok, c: c, lastPoll: time.Now()}
	c.kick = func() {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			sess.end()
		}()
	}
	if !t.srv.register(c) {
		return nil, errors.New("phx: server stopping")
	}
	t.mu.Lock()
	t.sessions[tok] = sess
	t.mu.Unlock()
	sess.timer = time.AfterFunc(sess.maxIdle(), sess.checkIdle)
	return sess, nil
}

// maxIdle is how long a session lives without a poll: 1.5 windows.
func (sess *lpSession) maxIdle() time.Duration { return sess.t.srv.cfg.LongPollWindow * 3 / 2 }

func (sess *lpSession) checkIdle() {
	c := sess.c
	c.mu.Lock()
	idle := time.Since(sess.lastPoll)
	polling := sess.polling
	closing := c.closing
	c.mu.Unlock()
	switch {
	case closing:
	case polling == 0 && idle >= sess.maxIdle():
		c.closeWith(CloseGoingAway, "inactive")
	case polling > 0:
		sess.timer.Reset(sess.maxIdle())
	default:
		sess.timer.Reset(sess.maxIdle() - idle)
	}
}

// end tears the session down (run once, from the kick).
func (sess *lpSession) end() {
	t := sess.t
	t.mu.Lock()
	delete(t.sessions, sess.token)
	t.mu.Unlock()
	sess.timer.Stop()
	sess.c.endAll()
	sess.c.signal() // wake a waiting poll
	t.srv.unregister(sess.c)
}

// poll answers a GET of a live session: buffered messages at once, or wait
// up to the window for some, else 204.
func (sess *lpSession) poll(w http.ResponseWriter, r *http.Request) {
	c := sess.c
	c.mu.Lock()
	sess.polling++
	sess.lastPoll = time.Now()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		sess.polling--
		sess.lastPoll = time.Now()
		c.mu.Unlock()
	}()
	timer := time.NewTimer(sess.t.srv.cfg.LongPollWindow)
	defer timer.Stop()
	for {
		c.mu.Lock()
		q, closing := c.queue, c.closing
		if !closing && len(q) > 0 {
			c.queue = nil
		}
		c.mu.Unlock()
		if closing {
			writeLP(w, lpBody{Status: http.StatusGone, Messages: &[]string{}})
			return
		}
		if len(q) > 0 {
			msgs := make([]string, 0, len(q))
			for _, f := range q {
				if !f.binary {
					msgs = append(msgs, string(f.data))
				}
			}
			writeLP(w, lpBody{Status: http.StatusOK, Token: sess.token, Messages: &msgs})
			return
		}
		select {
		case <-c.notify:
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

// decodeLongPollBody splits a POST body into frames (spec §5.9): for
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.LongPollMaxBody))
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
		// Like a malformed WebSocket frame: the session ends (spec §5.7).
		s.log.Warn("phx: ending long-poll session on a bad frame", "err", err)
		sess.c.closeWith(CloseInvalidData, "malformed frame")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	writeLP(w, lpBody{Status: http.StatusOK})
}
