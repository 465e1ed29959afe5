package presencechannel_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/internal/logtest"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

const (
	replyOK = `{"response":{},"status":"ok"}`
)

func replyErr(reason string) string {
	return `{"response":{"reason":"` + reason + `"},"status":"error"}`
}

// call sends frame and returns the payload of the next reply.
func (c *client) call(frame string) string {
	c.t.Helper()
	c.send(frame)
	r, _ := c.recvEvent("phx_reply")
	return payloadJSON(r)
}

// join joins topic (with payload) and reads up to presence_state.
func (c *client) join(ref, topic, payload string) string {
	c.t.Helper()
	got := c.call(`["` + ref + `","` + ref + `","` + topic + `","phx_join",` + payload + `]`)
	if strings.Contains(got, `"status":"ok"`) {
		c.recvEvent("presence_state")
	}
	return got
}

func (st *stack) user(t *testing.T, key string) *client {
	t.Helper()
	c, code := st.dial(t, url.Values{"user_id": {key}})
	if code != 101 {
		t.Fatalf("dial %s: %d", key, code)
	}
	return c
}

// metaOfLen returns a meta of n bytes.
func metaOfLen(n int, fill string) string {
	m := `{"s":"`
	return m + strings.Repeat(fill, n-len(m)-2) + `"}`
}

// A meta larger than MaxMetaBytes is refused on join, track and update,
// and nothing changes.
func TestMaxMetaBytes(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{MaxMetaBytes: 100})
	a := st.user(t, "u1")
	if got := a.join("1", "room:m", `{"meta":`+metaOfLen(101, "x")+`}`); got != replyErr("meta too large") {
		t.Fatalf("join: %s", got)
	}
	if l := st.p.List("room:m"); len(l) != 0 {
		t.Fatalf("tracked: %v", l)
	}
	if got := a.join("2", "room:m", `{}`); got != replyOK {
		t.Fatalf("watch: %s", got)
	}
	if got := a.call(`["2","3","room:m","presence:track",{"meta":` + metaOfLen(101, "x") + `}]`); got != replyErr("meta too large") {
		t.Fatalf("track: %s", got)
	}
	if got := a.call(`["2","4","room:m","presence:track",{"meta":` + metaOfLen(100, "x") + `}]`); got != replyOK {
		t.Fatalf("track at the limit: %s", got)
	}
	if got := a.call(`["2","5","room:m","presence:update",{"meta":` + metaOfLen(101, "z") + `}]`); got != replyErr("meta too large") {
		t.Fatalf("update: %s", got)
	}
	// The meta is still the tracked one (its "s", not the whole meta: the
	// phx_ref next to it is random and may hold a "z").
	var kept struct{ S string }
	if l := st.p.List("room:m"); len(l["u1"].Metas) != 1 || json.Unmarshal(l["u1"].Metas[0], &kept) != nil || strings.Contains(kept.S, "z") {
		t.Fatalf("state changed: %v", l)
	}

	// The default applies to a zero field.
	st = newStackCfg(t, presencechannel.Config{})
	b := st.user(t, "u1")
	if got := b.join("1", "room:d", `{"meta":`+metaOfLen(presencechannel.DefaultMaxMetaBytes+1, "x")+`}`); got != replyErr("meta too large") {
		t.Fatalf("default: %s", got)
	}
	st = newStackCfg(t, presencechannel.Config{MaxMetaBytes: -1})
	c := st.user(t, "u1")
	if got := c.join("1", "room:d", `{"meta":`+metaOfLen(presencechannel.DefaultMaxMetaBytes*4, "x")+`}`); got != replyOK {
		t.Fatalf("no limit: %s", got)
	}
}

// One key has at most MaxMetasPerKey metas in a topic: a join or
// presence:track beyond is refused; watching stays allowed, other keys
// and topics are not affected.
func TestMaxMetasPerKey(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{MaxMetasPerKey: 2})
	for i := range 2 {
		if got := st.user(t, "u1").join("1", "room:k", `{"meta":{}}`); got != replyOK {
			t.Fatalf("join %d: %s", i, got)
		}
	}
	third := st.user(t, "u1")
	if got := third.join("1", "room:k", `{"meta":{}}`); got != replyErr("too many presences for this key") {
		t.Fatalf("third join: %s", got)
	}
	if got := third.join("2", "room:k", `{}`); got != replyOK {
		t.Fatalf("watch: %s", got)
	}
	if got := third.call(`["2","3","room:k","presence:track",{"meta":{}}]`); got != replyErr("too many presences for this key") {
		t.Fatalf("track: %s", got)
	}
	if got := third.join("4", "room:other", `{"meta":{}}`); got != replyOK {
		t.Fatalf("other topic: %s", got)
	}
	if got := st.user(t, "u2").join("1", "room:k", `{"meta":{}}`); got != replyOK {
		t.Fatalf("other key: %s", got)
	}
	if l := st.p.List("room:k"); len(l["u1"].Metas) != 2 {
		t.Fatalf("u1 metas %d", len(l["u1"].Metas))
	}
	// A rejoin of a tracked topic replaces its presence: not one more.
	first := st.user(t, "u3")
	first.join("1", "room:r", `{"meta":{}}`)
	st.user(t, "u3").join("1", "room:r", `{"meta":{}}`)
	if got := first.join("2", "room:r", `{"meta":{"v":2}}`); got != replyOK {
		t.Fatalf("rejoin: %s", got)
	}
}

// A broadcast larger than MaxBroadcastBytes is refused and not relayed.
func TestMaxBroadcastBytes(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{MaxBroadcastBytes: 50})
	w := st.user(t, "w")
	w.join("1", "room:b", `{}`)
	a := st.user(t, "u1")
	a.join("1", "room:b", `{}`)
	big := `{"x":"` + strings.Repeat("y", 50) + `"}`
	if got := a.call(`["1","2","room:b","broadcast",` + big + `]`); got != replyErr("payload too large") {
		t.Fatalf("big: %s", got)
	}
	if got := a.call(`["1","3","room:b","broadcast",{"n":"small"}]`); got != replyOK {
		t.Fatalf("small: %s", got)
	}
	f, _ := w.recvEvent("broadcast")
	if got := payloadJSON(f); got != `{"n":"small"}` {
		t.Fatalf("relayed %s first", got)
	}
}

// The broadcast limit is per connection, shared by its channels: joining
// more topics does not buy more; another connection has its own budget.
// Refused broadcasts are not relayed, and logged once a second.
func TestBroadcastRatePerConnection(t *testing.T) {
	var buf logtest.Buffer
	log := buf.Logger(slog.LevelInfo)
	st := newStackCfg(t, presencechannel.Config{BroadcastRate: 0.001, BroadcastBurst: 2, Logger: log})
	w := st.user(t, "w")
	w.join("1", "room:1", `{}`)
	w.join("2", "room:2", `{}`)
	a := st.user(t, "u1")
	a.join("1", "room:1", `{}`)
	a.join("2", "room:2", `{}`)
	if got := a.call(`["1","3","room:1","broadcast",{"n":1}]`); got != replyOK {
		t.Fatal(got)
	}
	if got := a.call(`["2","4","room:2","broadcast",{"n":2}]`); got != replyOK {
		t.Fatal(got)
	}
	for i := range 5 {
		if got := a.call(`["1","5","room:1","broadcast",{"n":"over"}]`); got != replyErr("rate limited") {
			t.Fatalf("%d over the limit: %s", i, got)
		}
	}
	if got := a.call(`["2","6","room:2","broadcast",{"n":"over"}]`); got != replyErr("rate limited") {
		t.Fatalf("other channel: %s", got)
	}
	b := st.user(t, "u2")
	b.join("1", "room:1", `{}`)
	if got := b.call(`["1","2","room:1","broadcast",{"n":"b"}]`); got != replyOK {
		t.Fatalf("other connection: %s", got)
	}
	var got []string
	for len(got) < 3 {
		f, _ := w.recvEvent("broadcast")
		got = append(got, payloadJSON(f))
	}
	if strings.Join(got, " ") != `{"n":1} {"n":2} {"n":"b"}` {
		t.Fatalf("relayed %v", got)
	}
	logged := buf.String()
	if n := strings.Count(logged, "rate limited"); n != 1 || !strings.Contains(logged, "key=u1") || !strings.Contains(logged, "topic=room:1") {
		t.Fatalf("want one warning with key and topic, got %d:\n%s", n, logged)
	}
}

// presence:update, presence:track and presence:untrack share the update
// limit of the connection; refused ones change nothing.
func TestUpdateRatePerConnection(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{UpdateRate: 0.001, UpdateBurst: 3})
	a := st.user(t, "u1")
	a.join("1", "room:1", `{"meta":{"v":0}}`)
	a.join("2", "room:2", `{}`)
	for i, f := range []string{
		`["1","3","room:1","presence:update",{"meta":{"v":1}}]`,
		`["2","4","room:2","presence:track",{"meta":{"v":1}}]`,
		`["2","5","room:2","presence:untrack",{}]`,
	} {
		if got := a.call(f); got != replyOK {
			t.Fatalf("%d: %s", i, got)
		}
	}
	for i, f := range []string{
		`["1","6","room:1","presence:update",{"meta":{"v":2}}]`,
		`["2","7","room:2","presence:track",{"meta":{"v":2}}]`,
		`["1","8","room:1","presence:untrack",{}]`,
	} {
		if got := a.call(f); got != replyErr("rate limited") {
			t.Fatalf("%d over the limit: %s", i, got)
		}
	}
	if l := st.p.List("room:1"); len(l["u1"].Metas) != 1 || !strings.Contains(string(l["u1"].Metas[0]), `"v":1`) {
		t.Fatalf("room:1 %v", l)
	}
	if l := st.p.List("room:2"); len(l) != 0 {
		t.Fatalf("room:2 %v", l)
	}
	// Broadcasts have their own budget.
	if got := a.call(`["1","9","room:1","broadcast",{}]`); got != replyOK {
		t.Fatalf("broadcast: %s", got)
	}
}

// A negative rate disables a limit.
func TestRateLimitsDisabled(t *testing.T) {
	st := newStackCfg(t, presencechannel.Config{BroadcastRate: -1, UpdateRate: -1, BroadcastBurst: 1, UpdateBurst: 1})
	a := st.user(t, "u1")
	a.join("1", "room:1", `{"meta":{}}`)
	for i := range 50 {
		if got := a.call(`["1","2","room:1","broadcast",{}]`); got != replyOK {
			t.Fatalf("broadcast %d: %s", i, got)
		}
		if got := a.call(`["1","3","room:1","presence:update",{"meta":{}}]`); got != replyOK {
			t.Fatalf("update %d: %s", i, got)
		}
	}
}

// startStack serves ch (over p) with phx config pc.
func startStack(t *testing.T, p *presence.Presence, cfg presencechannel.Config, pc phx.Config) *stack {
	t.Helper()
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, _, err := presencechannel.NewServer(cfg, pc)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{p: p, srv: srv, http: newHTTP(srv)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.http.Close()
		p.Close()
	})
	return st
}

func newPresence(t *testing.T) *presence.Presence {
	t.Helper()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A *User made by another Connect (without the limiters Connect would
// set up) is limited just the same.
func TestRateLimitHandMadeUser(t *testing.T) {
	p := newPresence(t)
	connect := func(ctx context.Context, info *phx.ConnectInfo) (phx.Identity, error) {
		return phx.Identity{Assigns: &presencechannel.User{Key: info.Params.Get("user_id")}}, nil
	}
	st := startStack(t, p, presencechannel.Config{Presence: p, BroadcastRate: 0.001, BroadcastBurst: 1}, phx.Config{Connect: connect})
	a := st.user(t, "u1")
	a.join("1", "room:1", `{}`)
	a.join("2", "room:2", `{}`)
	if got := a.call(`["1","3","room:1","broadcast",{}]`); got != replyOK {
		t.Fatal(got)
	}
	if got := a.call(`["2","4","room:2","broadcast",{}]`); got != replyErr("rate limited") {
		t.Fatalf("over the limit: %s", got)
	}
}

// wrapped hides that a Presence is a *presence.Presence, so that the
// channel uses the interface alone.
type wrapped struct{ *presence.Presence }

// MaxMetasPerKey holds with any Presence (counted with Get).
func TestMaxMetasPerKeyInterface(t *testing.T) {
	p := newPresence(t)
	st := startStack(t, p, presencechannel.Config{Presence: wrapped{p}, MaxMetasPerKey: 1}, phx.Config{})
	if got := st.user(t, "u1").join("1", "room:k", `{"meta":{}}`); got != replyOK {
		t.Fatalf("first: %s", got)
	}
	if got := st.user(t, "u1").join("1", "room:k", `{"meta":{}}`); got != replyErr("too many presences for this key") {
		t.Fatalf("second: %s", got)
	}
}

// A join the token's topics do not allow is logged with key and topic.
func TestUnauthorizedJoinLogged(t *testing.T) {
	var buf logtest.Buffer
	log := buf.Logger(slog.LevelInfo)
	st := newStackCfg(t, presencechannel.Config{Secret: testSecret, Logger: log})
	tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "alice", "topics": []string{"room:a"}})
	c, code := st.dial(t, url.Values{"token": {tok}})
	if code != 101 {
		t.Fatalf("dial %d", code)
	}
	if got := c.join("1", "room:secret", `{}`); got != replyErr("unauthorized") {
		t.Fatal(got)
	}
	logged := buf.String()
	if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "join refused") ||
		!strings.Contains(logged, "key=alice") || !strings.Contains(logged, "topic=room:secret") {
		t.Fatalf("refusal not logged with key and topic:\n%s", logged)
	}
}
