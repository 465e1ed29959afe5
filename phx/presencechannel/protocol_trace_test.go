package presencechannel_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// The protocol traces (testdata/protocol.jsonl; PRESENCE_PROTOCOL_TRACES
// overrides the path) record what a real Phoenix 1.8.12 server with this
// channel answers. TestProtocolTraces replays every scenario against phx +
// presencechannel + a real single-node presence.Presence and compares them
// allowing only what a client cannot rely on: phx_ref and token normalization, one stream per client for
// everything but presence_diff and one per topic for presence_diff (each in
// order, interleaving free; the same inside a long-poll body), and join
// replies before the topic's presence_diffs.

const (
	quietPeriod = 150 * time.Millisecond
	quietMax    = 3 * time.Second
	// The long-poll window: 10 s upstream; shorter here (the traces only
	// say that an empty poll answers 204 after the window).
	lpWindow = 2 * time.Second
)

type traceStep struct {
	Step   int                        `json:"step"`
	Note   string                     `json:"note"`
	Do     action                     `json:"do"`
	Expect map[string]json.RawMessage `json:"expect"`
}

type action struct {
	Client      string            `json:"client"`
	Op          string            `json:"op"`
	Vsn         *string           `json:"vsn"`
	Params      map[string]string `json:"params"`
	Frame       json.RawMessage   `json:"frame"`
	Binary      string            `json:"binary"`
	Code        int               `json:"code"`
	Method      string            `json:"method"`
	Token       string            `json:"token"`
	Frames      []json.RawMessage `json:"frames"`
	ContentType string            `json:"content_type"`
	Headers     map[string]string `json:"headers"`
	Async       bool              `json:"async"`
	Ms          int               `json:"ms"`
}

type scenario struct {
	Name        string `json:"scenario"`
	Description string `json:"description"`
	steps       []traceStep
}

func loadTraces(t *testing.T) []*scenario {
	t.Helper()
	path := os.Getenv("PRESENCE_PROTOCOL_TRACES")
	if path == "" {
		path = "testdata/protocol.jsonl"
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*scenario
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(line, &probe); err != nil {
			t.Fatalf("bad line %s: %v", line, err)
		}
		if _, ok := probe["scenario"]; ok {
			s := &scenario{}
			json.Unmarshal(line, s)
			out = append(out, s)
			continue
		}
		var st traceStep
		if err := json.Unmarshal(line, &st); err != nil {
			t.Fatalf("bad step %s: %v", line, err)
		}
		out[len(out)-1].steps = append(out[len(out)-1].steps, st)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stack is one server under test: presence, channel, phx.
type stack struct {
	p    *presence.Presence
	srv  *phx.Server
	http *httptest.Server
}

func newStack(t *testing.T) *stack {
	t.Helper()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, _, err := presencechannel.NewServer(presencechannel.Config{Presence: p},
		phx.Config{LongPoll: true, LongPollWindow: lpWindow})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	st := &stack{p: p, srv: srv, http: hs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		p.Close()
	})
	return st
}

// recorder collects what every client receives, with the time of the last
// arrival.
type recorder struct {
	mu    sync.Mutex
	items map[string][]any
	last  time.Time
	wg    sync.WaitGroup
}

func (r *recorder) add(client string, v any) {
	r.mu.Lock()
	r.items[client] = append(r.items[client], v)
	r.last = time.Now()
	r.mu.Unlock()
}

func (r *recorder) take() map[string][]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.items
	r.items = map[string][]any{}
	return m
}

// waitQuiet waits until nothing arrived for quietPeriod (at most quietMax).
func (r *recorder) waitQuiet(since time.Time) {
	deadline := since.Add(quietMax)
	for {
		r.mu.Lock()
		last := r.last
		r.mu.Unlock()
		if last.Before(since) {
			last = since
		}
		now := time.Now()
		if now.Sub(last) >= quietPeriod || now.After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parseJSON(b []byte) (any, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// replay holds the state of one scenario run.
type replay struct {
	t       *testing.T
	st      *stack
	rec     *recorder
	ws      map[string]*websocket.Conn
	refs    map[string]string // real phx_ref → placeholder
	tokens  map[string]string // real token → placeholder
	tokRev  map[string]string // placeholder → real token
	joins   map[string]map[string]bool
	closing map[string]bool
}

func (rp *replay) open(a action) {
	u := "ws" + strings.TrimPrefix(rp.st.http.URL, "http") + "/socket/websocket"
	q := url.Values{}
	for k, v := range a.Params {
		q.Set(k, v)
	}
	enc := q.Encode()
	if a.Vsn != nil {
		if enc != "" {
			enc += "&"
		}
		enc += "vsn=" + url.QueryEscape(*a.Vsn)
	}
	if enc != "" {
		u += "?" + enc
	}
	ws, resp, err := websocket.DefaultDialer.Dial(u, nil)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if err != nil && resp == nil {
		rp.t.Fatalf("dial %s: %v", u, err)
	}
	rp.rec.add(a.Client, map[string]any{"upgrade": map[string]any{"status": float64(status)}})
	if ws == nil {
		return
	}
	rp.ws[a.Client] = ws
	rp.rec.wg.Add(1)
	go func() {
		defer rp.rec.wg.Done()
		for {
			mt, b, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					rp.rec.add(a.Client, map[string]any{"close": map[string]any{"code": float64(ce.Code), "reason": ce.Text}})
				} else {
					rp.rec.add(a.Client, map[string]any{"error": err.Error()})
				}
				return
			}
			if mt == websocket.BinaryMessage {
				rp.rec.add(a.Client, map[string]any{"binary": hex.EncodeToString(b)})
				continue
			}
			v, err := parseJSON(b)
			if err != nil {
				rp.rec.add(a.Client, map[string]any{"unparsable": string(b)})
				continue
			}
			rp.rec.add(a.Client, v)
		}
	}()
}

func (rp *replay) noteJoin(client string, topic string, ref string) {
	if rp.joins[client] == nil {
		rp.joins[client] = map[string]bool{}
	}
	rp.joins[client][topic+"\x00"+ref] = true
}

// noteFrame remembers joins sent (for the join-reply-first rule).
func (rp *replay) noteFrame(client string, frame json.RawMessage) {
	var arr []any
	if json.Unmarshal(frame, &arr) == nil && len(arr) >= 5 {
		if ev, _ := arr[3].(string); ev == "phx_join" {
			topic, _ := arr[2].(string)
			rp.noteJoin(client, topic, fmt.Sprint(arr[1]))
		}
		return
	}
	var obj map[string]any
	if json.Unmarshal(frame, &obj) == nil {
		if ev, _ := obj["event"].(string); ev == "phx_join" {
			topic, _ := obj["topic"].(string)
			rp.noteJoin(client, topic, fmt.Sprint(obj["ref"]))
		}
	}
}

func (rp *replay) noteBinary(client string, b []byte) {
	if len(b) < 5 || b[0] != 0 {
		return
	}
	jl, rl, tl, el := int(b[1]), int(b[2]), int(b[3]), int(b[4])
	if len(b) < 5+jl+rl+tl+el {
		return
	}
	r := string(b[5+jl : 5+jl+rl])
	topic := string(b[5+jl+rl : 5+jl+rl+tl])
	if string(b[5+jl+rl+tl:5+jl+rl+tl+el]) == "phx_join" {
		rp.noteJoin(client, topic, r)
	}
}

func (rp *replay) send(a action) {
	ws := rp.ws[a.Client]
	if ws == nil {
		rp.t.Fatalf("send: client %s not open", a.Client)
	}
	if a.Binary != "" || a.Frame == nil {
		b, err := hex.DecodeString(a.Binary)
		if err != nil {
			rp.t.Fatal(err)
		}
		rp.noteBinary(a.Client, b)
		if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
			rp.t.Fatalf("send: %v", err)
		}
		return
	}
	rp.noteFrame(a.Client, a.Frame)
	if err := ws.WriteMessage(websocket.TextMessage, a.Frame); err != nil {
		rp.t.Fatalf("send: %v", err)
	}
}

func (rp *replay) close(a action) {
	ws := rp.ws[a.Client]
	if ws == nil {
		rp.t.Fatalf("close: client %s not open", a.Client)
	}
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(a.Code, ""), time.Now().Add(time.Second))
}

func (rp *replay) realToken(tok string) string {
	if r, ok := rp.tokRev[tok]; ok {
		return r
	}
	return tok
}

// lp performs one long-poll request and records its response.
func (rp *replay) lp(a action) {
	q := url.Values{}
	for k, v := range a.Params {
		q.Set(k, v)
	}
	if a.Token != "" {
		q.Set("token", rp.realToken(a.Token))
	}
	var body io.Reader
	if a.Method == "POST" {
		lines := make([]string, len(a.Frames))
		for i, f := range a.Frames {
			var bin struct {
				Binary string `json:"binary"`
			}
			if json.Unmarshal(f, &bin) == nil && bin.Binary != "" {
				b, _ := hex.DecodeString(bin.Binary)
				rp.noteBinary(a.Client, b)
				lines[i] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			rp.noteFrame(a.Client, f)
			var buf bytes.Buffer
			json.Compact(&buf, f)
			lines[i] = buf.String()
		}
		body = strings.NewReader(strings.Join(lines, "\n"))
	}
	req, err := http.NewRequest(a.Method, rp.st.http.URL+"/socket/longpoll?"+q.Encode(), body)
	if err != nil {
		rp.t.Fatal(err)
	}
	if a.Method == "POST" {
		ct := a.ContentType
		if ct == "" {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range a.Headers {
		req.Header.Set(k, v)
	}
	do := func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			rp.rec.add(a.Client, map[string]any{"error": err.Error()})
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		hdrs := map[string]any{}
		for k, vs := range resp.Header {
			lk := strings.ToLower(k)
			keep := strings.HasPrefix(lk, "access-control-")
			if a.Method != "OPTIONS" {
				keep = lk == "content-type" || lk == "cache-control" || lk == "access-control-allow-origin"
			}
			if keep {
				hdrs[lk] = strings.Join(vs, ", ")
			}
		}
		var b any = string(raw)
		if len(raw) > 0 {
			v, err := parseJSON(raw)
			if err != nil {
				rp.rec.add(a.Client, map[string]any{"unparsable": string(raw)})
				return
			}
			if m, ok := v.(map[string]any); ok {
				if ms, ok := m["messages"].([]any); ok {
					for i, s := range ms {
						if str, ok := s.(string); ok {
							if fv, err := parseJSON([]byte(str)); err == nil {
								ms[i] = fv
							}
						}
					}
				}
			}
			b = v
		}
		rp.rec.add(a.Client, map[string]any{"http": map[string]any{"status": float64(resp.StatusCode), "headers": hdrs, "body": b}})
	}
	if a.Async {
		rp.rec.wg.Add(1)
		go func() { defer rp.rec.wg.Done(); do() }()
		return
	}
	do()
}

// frameInfo tells whether v is a presence_diff frame (V1 or V2) and its
// topic.
func frameInfo(v any) (event, topic string, ok bool) {
	switch x := v.(type) {
	case []any:
		if len(x) >= 5 {
			e, _ := x[3].(string)
			tp, _ := x[2].(string)
			return e, tp, true
		}
	case map[string]any:
		if e, ok := x["event"].(string); ok {
			tp, _ := x["topic"].(string)
			return e, tp, true
		}
	}
	return "", "", false
}

func isDiff(v any) (string, bool) {
	e, tp, ok := frameInfo(v)
	return tp, ok && e == "presence_diff"
}

// canonicalOrder reorders items: the main stream in arrival order, then
// each topic's presence_diff stream (topics sorted), each in order. Two
// lists match under the stream rule described at the top of this file iff
// their canonical orders are equal. Long-poll bodies' messages are
// reordered the same way.
func canonicalOrder(items []any) []any {
	main := []any{}
	diffs := map[string][]any{}
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			if h, ok := m["http"].(map[string]any); ok {
				if b, ok := h["body"].(map[string]any); ok {
					if ms, ok := b["messages"].([]any); ok {
						b["messages"] = canonicalOrder(ms)
					}
				}
			}
		}
		if tp, ok := isDiff(it); ok {
			diffs[tp] = append(diffs[tp], it)
		} else {
			main = append(main, it)
		}
	}
	topics := make([]string, 0, len(diffs))
	for tp := range diffs {
		topics = append(topics, tp)
	}
	sort.Strings(topics)
	for _, tp := range topics {
		main = append(main, diffs[tp]...)
	}
	return main
}

// normalize replaces phx_ref / phx_ref_prev values and long-poll tokens
// by placeholders, walking v with object keys sorted.
func (rp *replay) normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s, isStr := x[k].(string)
			switch {
			case isStr && (k == "phx_ref" || k == "phx_ref_prev"):
				ph, ok := rp.refs[s]
				if !ok {
					ph = fmt.Sprintf("<phx_ref:%d>", len(rp.refs)+1)
					rp.refs[s] = ph
				}
				x[k] = ph
			default:
				x[k] = rp.normalize(x[k])
			}
		}
		return x
	case []any:
		for i := range x {
			x[i] = rp.normalize(x[i])
		}
		return x
	}
	return v
}

func (rp *replay) normalizeToken(item any) {
	m, ok := item.(map[string]any)
	if !ok {
		return
	}
	h, ok := m["http"].(map[string]any)
	if !ok {
		return
	}
	b, ok := h["body"].(map[string]any)
	if !ok {
		return
	}
	tok, ok := b["token"].(string)
	if !ok {
		return
	}
	ph, ok := rp.tokens[tok]
	if !ok {
		ph = fmt.Sprintf("<token:%d>", len(rp.tokens)+1)
		rp.tokens[tok] = ph
		rp.tokRev[ph] = tok
	}
	b["token"] = ph
}

// checkJoinReplyFirst: the reply to a phx_join comes before every
// presence_diff of that topic for that client (within a step's arrivals
// and within a long-poll body).
func (rp *replay) checkJoinReplyFirst(client string, items []any) error {
	check := func(list []any) error {
		diffSeen := map[string]bool{}
		for _, it := range list {
			if tp, ok := isDiff(it); ok {
				diffSeen[tp] = true
				continue
			}
			e, tp, ok := frameInfo(it)
			if !ok || e != "phx_reply" {
				continue
			}
			var r any
			switch x := it.(type) {
			case []any:
				r = x[1]
			case map[string]any:
				r = x["ref"]
			}
			if rp.joins[client][tp+"\x00"+fmt.Sprint(r)] && diffSeen[tp] {
				return fmt.Errorf("client %s: presence_diff of %s before the join reply (ref %v)", client, tp, r)
			}
		}
		return nil
	}
	if err := check(items); err != nil {
		return err
	}
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			if h, ok := m["http"].(map[string]any); ok {
				if b, ok := h["body"].(map[string]any); ok {
					if ms, ok := b["messages"].([]any); ok {
						if err := check(ms); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	return nil
}

func canonJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func runScenario(t *testing.T, sc *scenario) {
	st := newStack(t)
	rp := &replay{
		t: t, st: st, rec: &recorder{items: map[string][]any{}},
		ws: map[string]*websocket.Conn{}, refs: map[string]string{},
		tokens: map[string]string{}, tokRev: map[string]string{},
		joins: map[string]map[string]bool{}, closing: map[string]bool{},
	}
	defer func() {
		for _, ws := range rp.ws {
			ws.Close()
		}
		rp.rec.wg.Wait()
	}()
	for _, step := range sc.steps {
		start := time.Now()
		switch a := step.Do; a.Op {
		case "open":
			rp.open(a)
		case "send":
			rp.send(a)
		case "close":
			rp.close(a)
		case "lp":
			rp.lp(a)
		case "wait":
			time.Sleep(time.Duration(a.Ms) * time.Millisecond)
		default:
			t.Fatalf("step %d: unknown op %q", step.Step, a.Op)
		}
		rp.rec.waitQuiet(start)
		got := rp.rec.take()

		// Canonical walk: clients by name; within a client the main
		// stream, then the diff streams by topic.
		clients := make([]string, 0, len(got))
		for c := range got {
			clients = append(clients, c)
		}
		sort.Strings(clients)
		for _, c := range clients {
			if err := rp.checkJoinReplyFirst(c, got[c]); err != nil {
				t.Errorf("step %d (%s): %v", step.Step, step.Note, err)
			}
			got[c] = canonicalOrder(got[c])
			for _, it := range got[c] {
				rp.normalizeToken(it)
				rp.normalize(it)
			}
		}
		for c, raw := range step.Expect {
			var want []any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("step %d: expect %s: %v", step.Step, c, err)
			}
			want = canonicalOrder(want)
			g := got[c]
			if g == nil {
				g = []any{}
			}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("step %d (%s), client %s:\n got %s\nwant %s", step.Step, step.Note, c, canonJSON(g), canonJSON(want))
			}
		}
		for _, c := range clients {
			if _, ok := step.Expect[c]; !ok && len(got[c]) > 0 {
				t.Errorf("step %d (%s): client %s got %s, expected nothing", step.Step, step.Note, c, canonJSON(got[c]))
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

func TestProtocolTraces(t *testing.T) {
	scs := loadTraces(t)
	if len(scs) == 0 {
		t.Fatal("no scenarios")
	}
	names := make([]string, len(scs))
	for i, sc := range scs {
		names[i] = sc.Name
		t.Run(sc.Name, func(t *testing.T) { runScenario(t, sc) })
	}
	if want := 11; len(scs) != want && os.Getenv("PRESENCE_PROTOCOL_TRACES") == "" {
		t.Errorf("%d scenarios %v, want %d", len(scs), names, want)
	}
}
