package presencechannel_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newStackCfg is newStack with a channel config of our own.
func newStackCfg(t *testing.T, cfg presencechannel.Config) *stack {
	t.Helper()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Presence = p
	return startStack(t, p, cfg, phx.Config{})
}

func newHTTP(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func (st *stack) dial(t *testing.T, params url.Values, protocols ...string) (*client, int) {
	t.Helper()
	if params.Get("vsn") == "" {
		params.Set("vsn", "2.0.0")
	}
	d := websocket.Dialer{Subprotocols: protocols}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(st.http.URL, "http")+"/socket/websocket?"+params.Encode(), nil)
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &client{t: t, ws: ws}, 101
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next text frame as [join_ref, ref, topic, event, payload].
func (c *client) recv() []any {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	var v []any
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 5 {
		c.t.Fatalf("recv %s: %v", b, err)
	}
	return v
}

// recvEvent reads frames until one with event ev arrives (others are
// returned too, in order).
func (c *client) recvEvent(ev string) (frame []any, before [][]any) {
	c.t.Helper()
	for {
		f := c.recv()
		if f[3] == ev {
			return f, before
		}
		before = append(before, f)
	}
}

func payloadJSON(f []any) string {
	b, _ := json.Marshal(f[4])
	return string(b)
}

// Deliberate difference 1 (docs/protocol.md): a malformed frame closes the
// connection with 1007 and a reason (Phoenix drops it without a close
// frame); no phx_reply; the presence leaves.
func TestDeliberateMalformedFrameCloses(t *testing.T) {
	st := newStack(t)
	watcher, _ := st.dial(t, url.Values{"user_id": {"w"}})
	watcher.send(`["1","1","room:m","phx_join",{}]`)
	watcher.recvEvent("presence_state")
	a, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a.send(`["1","1","room:m","phx_join",{"meta":{"n":1}}]`)
	a.recvEvent("presence_state")
	watcher.recvEvent("presence_diff")
	a.send(`["1","2","room:m"`)
	a.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		_, b, err := a.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != phx.CloseInvalidData || ce.Text == "" {
				t.Fatalf("want close 1007 with a reason, got %v", err)
			}
			break
		}
		var f []any
		json.Unmarshal(b, &f)
		if len(f) == 5 && f[3] == "phx_reply" {
			t.Fatalf("phx_reply to a malformed frame: %s", b)
		}
	}
	d, _ := watcher.recvEvent("presence_diff")
	if got := payloadJSON(d); !strings.Contains(got, `"leaves":{"u1"`) {
		t.Fatalf("leave diff %s", got)
	}
}

// Deliberate difference 2 (docs/protocol.md): a non-object meta on
// presence:update / presence:track gets an error reply "invalid meta" and
// changes nothing (Phoenix's app crashes the channel).
func TestDeliberateInvalidMeta(t *testing.T) {
	st := newStack(t)
	a, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a.send(`["1","1","room:im","phx_join",{"meta":{"name":"a"}}]`)
	a.recvEvent("presence_state")
	for i, p := range []string{
		`["1","2","room:im","presence:update",{"meta":"str"}]`,
		`["1","3","room:im","presence:update",{"meta":[1]}]`,
		`["1","4","room:im","presence:update",{}]`,
		`["1","5","room:im","presence:track",{"meta":7}]`,
	} {
		a.send(p)
		r, _ := a.recvEvent("phx_reply")
		if got := payloadJSON(r); got != `{"response":{"reason":"invalid meta"},"status":"error"}` {
			t.Fatalf("%d: %s", i, got)
		}
	}
	// Still joined and tracked: a valid update works and the state is the
	// original meta until then.
	if l := st.p.List("room:im"); len(l) != 1 || !strings.Contains(string(l["u1"].Metas[0]), `"name":"a"`) {
		t.Fatalf("state changed: %v", l)
	}
	a.send(`["1","6","room:im","presence:update",{"meta":{"name":"b"}}]`)
	r, _ := a.recvEvent("phx_reply")
	if got := payloadJSON(r); got != `{"response":{},"status":"ok"}` {
		t.Fatal(got)
	}
}

// JWT auth: sub is the key; the topics claim limits joins; bad, expired or
// missing tokens refuse the connection; the subprotocol token works.
func TestJWTAuth(t *testing.T) {
	secret := []byte("s3cret-s3cret-s3cret-s3cret-s3cr")
	st := newStackCfg(t, presencechannel.Config{Secret: secret})
	tok, _ := presencechannel.SignHS256(secret, map[string]any{"sub": "alice", "topics": []string{"room:a:*"}, "exp": time.Now().Add(time.Hour).Unix()})
	a, code := st.dial(t, url.Values{"token": {tok}})
	if code != 101 {
		t.Fatalf("dial %d", code)
	}
	a.send(`["1","1","room:a:bc","phx_join",{"meta":{}}]`)
	s, _ := a.recvEvent("presence_state")
	if got := payloadJSON(s); !strings.Contains(got, `"alice"`) {
		t.Fatalf("state %s", got)
	}
	a.send(`["2","2","room:b","phx_join",{}]`)
	r, _ := a.recvEvent("phx_reply")
	if got := payloadJSON(r); got != `{"response":{"reason":"unauthorized"},"status":"error"}` {
		t.Fatalf("%s", got)
	}

	expired, _ := presencechannel.SignHS256(secret, map[string]any{"sub": "x", "exp": time.Now().Add(-time.Hour).Unix()})
	other, _ := presencechannel.SignHS256([]byte("other-other-other-other-other-ot"), map[string]any{"sub": "x"})
	nosub, _ := presencechannel.SignHS256(secret, map[string]any{"name": "x"})
	for name, p := range map[string]url.Values{
		"none":     {},
		"user_id":  {"user_id": {"u1"}},
		"expired":  {"token": {expired}},
		"bad sig":  {"token": {other}},
		"no sub":   {"token": {nosub}},
		"garbage":  {"token": {"a.b.c"}},
		"alg none": {"token": {base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "."}},
	} {
		if _, code := st.dial(t, p); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, code)
		}
	}
	// The token in the auth-token subprotocol (phoenix.js authToken).
	free, _ := presencechannel.SignHS256(secret, map[string]any{"sub": "bob"})
	b64 := strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(free)), "=")
	if _, code := st.dial(t, url.Values{}, "phoenix", "base64url.bearer.phx."+b64); code != 101 {
		t.Fatalf("subprotocol token: %d", code)
	}
}

// Dev mode needs a non-empty user_id.
func TestDevModeUserID(t *testing.T) {
	st := newStack(t)
	if _, code := st.dial(t, url.Values{}); code != 403 {
		t.Fatal(code)
	}
	if _, code := st.dial(t, url.Values{"user_id": {""}}); code != 403 {
		t.Fatal(code)
	}
}

// A rejoin after a reconnect (new join_ref) gets a new
// presence_state with the channel's new join_ref.
func TestRejoinGetsState(t *testing.T) {
	st := newStack(t)
	b, _ := st.dial(t, url.Values{"user_id": {"u2"}})
	b.send(`["1","1","room:x","phx_join",{"meta":{"n":"b"}}]`)
	b.recvEvent("presence_state")
	a, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a.send(`["1","1","room:x","phx_join",{"meta":{"n":"a"}}]`)
	a.recvEvent("presence_state")
	a.ws.Close()
	a2, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a2.send(`["5","5","room:x","phx_join",{"meta":{"n":"a2"}}]`)
	s, before := a2.recvEvent("presence_state")
	if s[0] != "5" || s[1] != nil {
		t.Fatalf("state frame %v", s)
	}
	if len(before) == 0 || before[0][3] != "phx_reply" {
		t.Fatalf("reply must come first: %v", before)
	}
	if got := payloadJSON(s); !strings.Contains(got, `"u2"`) || !strings.Contains(got, `"a2"`) {
		t.Fatalf("state %s", got)
	}
}

// A duplicate join: the old channel's presence leaves, the new one is
// tracked; the client gets the new reply, phx_close of the old join_ref,
// then the new state.
func TestDuplicateJoinRetracks(t *testing.T) {
	st := newStack(t)
	a, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a.send(`["1","1","room:d","phx_join",{"meta":{"v":1}}]`)
	a.recvEvent("presence_state")
	a.send(`["2","2","room:d","phx_join",{"meta":{"v":2}}]`)
	s, before := a.recvEvent("presence_state")
	var main [][]any
	for _, f := range before {
		if f[3] != "presence_diff" {
			main = append(main, f)
		}
	}
	if len(main) != 2 || main[0][3] != "phx_reply" || main[0][0] != "2" || main[1][3] != "phx_close" || main[1][0] != "1" {
		t.Fatalf("frames before state: %v", before)
	}
	if s[0] != "2" {
		t.Fatalf("state %v", s)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		l := st.p.List("room:d")
		if e := l["u1"]; e != nil && len(e.Metas) == 1 && strings.Contains(string(e.Metas[0]), `"v":2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list %v", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Unknown events get an error reply (Phoenix's app would crash).
func TestUnknownEvent(t *testing.T) {
	st := newStack(t)
	a, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a.send(`["1","1","room:u","phx_join",{}]`)
	a.recvEvent("presence_state")
	a.send(`["1","2","room:u","nope",{}]`)
	r, _ := a.recvEvent("phx_reply")
	if got := payloadJSON(r); got != `{"response":{"reason":"unknown event"},"status":"error"}` {
		t.Fatal(got)
	}
}

// The presence subscription of a topic is released with its last member.
func TestSubscriptionReleased(t *testing.T) {
	st := newStack(t)
	a, _ := st.dial(t, url.Values{"user_id": {"u1"}})
	a.send(`["1","1","room:r","phx_join",{"meta":{}}]`)
	a.recvEvent("presence_state")
	a.send(`["1","2","room:r","phx_leave",{}]`)
	a.recvEvent("phx_close")
	deadline := time.Now().Add(3 * time.Second)
	for len(st.p.List("room:r")) != 0 || st.srv.Subscribers("room:r") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
