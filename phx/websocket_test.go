package phx

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// V2: join, push, broadcast, event round trip, leave, then
// unmatched topic. Golden frames.
func TestV2Golden(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0", "user_id", "u1")
	b := e.dial("2.0.0", "user_id", "u2")

	a.sendText(`["1","1","room:lobby","phx_join",{"push":true}]`)
	a.expect(
		`["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]`,
		`["1",null,"room:lobby","joined_push",{"topic":"room:lobby"}]`,
	)
	b.sendText(`["7","7","room:lobby","phx_join",{"reply":{"hello":"b"}}]`)
	b.expect(`["7","7","room:lobby","phx_reply",{"status":"ok","response":{"hello":"b"}}]`)

	a.sendText(`["1","2","room:lobby","echo",{"x":1}]`)
	a.expect(`["1","2","room:lobby","phx_reply",{"status":"ok","response":{"x":1}}]`)

	a.sendText(`["1","3","room:lobby","broadcast",{"body":"hi"}]`)
	// The channel broadcasts before it returns its reply.
	a.expect(
		`[null,null,"room:lobby","broadcast",{"body":"hi"}]`,
		`["1","3","room:lobby","phx_reply",{"status":"ok","response":{}}]`,
	)
	b.expect(`[null,null,"room:lobby","broadcast",{"body":"hi"}]`)

	b.sendText(`["7","8","room:lobby","broadcast_from",{"only":"a"}]`)
	b.expect(`["7","8","room:lobby","phx_reply",{"status":"ok","response":{}}]`)
	a.expect(`[null,null,"room:lobby","broadcast",{"only":"a"}]`)

	a.sendText(`["1","4","room:lobby","push",{"p":true}]`)
	a.expect(`["1",null,"room:lobby","pushed",{"p":true}]`)

	a.sendText(`["1","5","room:lobby","error_reply",{}]`)
	a.expect(`["1","5","room:lobby","phx_reply",{"status":"error","response":{"reason":"bad"}}]`)

	a.sendText(`["1","6","room:lobby","phx_leave",{}]`)
	a.expect(
		`["1","6","room:lobby","phx_reply",{"status":"ok","response":{}}]`,
		`["1","1","room:lobby","phx_close",{}]`,
	)
	a.sendText(`["1","7","room:lobby","echo",{}]`)
	a.expect(`[null,"7","room:lobby","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	if got := e.ch.waitTerminated(t, 1); got[0] != "room:lobby:left" {
		t.Fatalf("terminate: %v", got)
	}
}

// V1: the same with V1 object frames (no join_ref ever; pushes and
// phx_close with ref null, as Phoenix sends them).
func TestV1Golden(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("1.0.0")
	b := e.dial("") // no vsn: V1

	a.sendText(`{"topic":"room:1","event":"phx_join","payload":{"push":true},"ref":"1"}`)
	a.expect(
		`{"topic":"room:1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`,
		`{"topic":"room:1","event":"joined_push","payload":{"topic":"room:1"},"ref":null}`,
	)
	b.sendText(`{"topic":"room:1","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`)
	b.expect(`{"topic":"room:1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`)

	a.sendText(`{"topic":"room:1","event":"broadcast","payload":{"n":1},"ref":"2"}`)
	a.expect(
		`{"topic":"room:1","event":"broadcast","payload":{"n":1},"ref":null}`,
		`{"topic":"room:1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}`,
	)
	b.expect(`{"topic":"room:1","event":"broadcast","payload":{"n":1},"ref":null}`)

	a.sendText(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"3"}`)
	a.expect(`{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"3"}`)

	a.sendText(`{"topic":"room:1","event":"phx_leave","payload":{},"ref":"4"}`)
	a.expect(
		`{"topic":"room:1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"4"}`,
		`{"topic":"room:1","event":"phx_close","payload":{},"ref":null}`,
	)
	a.sendText(`{"topic":"room:1","event":"echo","payload":{},"ref":"5"}`)
	a.expect(`{"topic":"room:1","event":"phx_reply","payload":{"status":"error","response":{"reason":"unmatched topic"}},"ref":"5"}`)
}

// Ordering: what a channel pushes or broadcasts during Join
// goes out after the join reply.
func TestJoinReplyBeforePushesAndBroadcasts(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:x","phx_join",{"push":true,"broadcast":true}]`)
	a.expect(
		`["1","1","room:x","phx_reply",{"status":"ok","response":{}}]`,
		`["1",null,"room:x","joined_push",{"topic":"room:x"}]`,
		`[null,null,"room:x","joined_bcast",{"owner":true}]`,
	)
}

// Heartbeats (answered ok on topic "phoenix" whatever their join_ref) and
// other events on "phoenix".
func TestHeartbeat(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`[null,"1","phoenix","heartbeat",{}]`)
	a.expect(`[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["7","2","phoenix","heartbeat",{"x":1}]`)
	a.expect(`[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`[null,null,"phoenix","heartbeat",{}]`)
	a.expect(`[null,null,"phoenix","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`[null,"4","phoenix","ping",{}]`)
	a.expect(`[null,"4","phoenix","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	// Extra array elements are ignored; refs are echoed as sent.
	a.sendText(`[null,12,"phoenix","heartbeat",{},"extra"]`)
	a.expect(`[null,12,"phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// Unjoined topics and unmatched joins; leave of a topic not
// joined (an ok reply echoing join_ref and ref).
func TestUnmatchedTopic(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["9","1","room:nope","echo",{}]`)
	a.expect(`[null,"1","room:nope","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	a.sendText(`["3","3","other:x","phx_join",{}]`)
	a.expect(`[null,"3","other:x","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	a.sendText(`["12","5","room:nope","phx_leave",{}]`)
	a.expect(`["12","5","room:nope","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`[null,"6","room:nope","phx_leave",{}]`)
	a.expect(`[null,"6","room:nope","phx_reply",{"status":"ok","response":{}}]`)
	// exact route
	a.sendText(`["7","7","exact","phx_join",{}]`)
	a.expect(`["7","7","exact","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["8","8","exactly","phx_join",{}]`)
	a.expect(`[null,"8","exactly","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
}

// Stale and null join_refs: a stale leave or event is dropped without a
// reply, a null join_ref counts as the current one.
func TestStaleJoinRef(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:s","phx_join",{}]`)
	a.expect(`["1","1","room:s","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["0","2","room:s","echo",{"stale":true}]`) // dropped
	a.sendText(`["0","3","room:s","phx_leave",{}]`)        // ignored
	a.sendText(`[null,"4","room:s","echo",{"null":true}]`) // current
	a.expect(`["1","4","room:s","phx_reply",{"status":"ok","response":{"null":true}}]`)
	a.sendText(`[null,"5","room:s","phx_leave",{}]`) // a null join_ref leaves
	a.expect(
		`["1","5","room:s","phx_reply",{"status":"ok","response":{}}]`,
		`["1","1","room:s","phx_close",{}]`,
	)
}

// Duplicate join: the new join's reply, then phx_close for the old
// join_ref; the old channel is terminated.
func TestDuplicateJoin(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:d","phx_join",{}]`)
	a.expect(`["1","1","room:d","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["2","2","room:d","phx_join",{"push":true}]`)
	a.expect(
		`["2","2","room:d","phx_reply",{"status":"ok","response":{}}]`,
		`["1","1","room:d","phx_close",{}]`,
		`["2",null,"room:d","joined_push",{"topic":"room:d"}]`,
	)
	if got := e.ch.waitTerminated(t, 1); got[0] != "room:d:duplicate" {
		t.Fatalf("terminate: %v", got)
	}
	// The new join is current; the old join_ref is stale.
	a.sendText(`["1","3","room:d","echo",{}]`)
	a.sendText(`["2","4","room:d","echo",{}]`)
	a.expect(`["2","4","room:d","phx_reply",{"status":"ok","response":{}}]`)
	// A duplicate join that fails still closes the old one.
	a.sendText(`["5","5","room:d","phx_join",{"refuse":true}]`)
	a.expect(
		`["5","5","room:d","phx_reply",{"status":"error","response":{"reason":"refused"}}]`,
		`["2","2","room:d","phx_close",{}]`,
	)
	a.sendText(`["2","6","room:d","echo",{}]`)
	a.expect(`[null,"6","room:d","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
}

// The channel limit.
func TestWebSocketTooManyChannels(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	for i := 1; i <= 100; i++ {
		a.sendText(fmt.Sprintf(`["%d","%d","room:%d","phx_join",{}]`, i, i, i))
		a.expect(fmt.Sprintf(`["%d","%d","room:%d","phx_reply",{"status":"ok","response":{}}]`, i, i, i))
	}
	a.sendText(`["101","101","room:101","phx_join",{}]`)
	a.expect(`["101","101","room:101","phx_reply",{"status":"error","response":{"reason":"too many channels joined"}}]`)
}

func TestMaxChannelsConfig(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxChannels = 1 })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:1","phx_join",{}]`)
	a.expect(`["1","1","room:1","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["2","2","room:2","phx_join",{}]`)
	a.expect(`["2","2","room:2","phx_reply",{"status":"error","response":{"reason":"too many channels joined"}}]`)
	// A duplicate join does not count twice.
	a.sendText(`["3","3","room:1","phx_join",{}]`)
	a.expect(`["3","3","room:1","phx_reply",{"status":"ok","response":{}}]`, `["1","1","room:1","phx_close",{}]`)
}

// Join rate limit per connection.
func TestJoinRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.JoinRate = 0.001; c.JoinBurst = 2 })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:1","phx_join",{}]`)
	a.sendText(`["2","2","room:2","phx_join",{}]`)
	a.sendText(`["3","3","room:3","phx_join",{}]`)
	a.expect(
		`["1","1","room:1","phx_reply",{"status":"ok","response":{}}]`,
		`["2","2","room:2","phx_reply",{"status":"ok","response":{}}]`,
		`["3","3","room:3","phx_reply",{"status":"error","response":{"reason":"too many joins"}}]`,
	)
}

// Join refused, join crashing (error and panic), and a channel that
// stops gracefully (phx_close).
func TestJoinOutcomes(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:r","phx_join",{"refuse":true}]`)
	a.expect(`["1","1","room:r","phx_reply",{"status":"error","response":{"reason":"refused"}}]`)
	a.sendText(`["2","2","room:r","phx_join",{"fail":true}]`)
	a.expect(`["2","2","room:r","phx_reply",{"status":"error","response":{"reason":"join crashed"}}]`)
	a.sendText(`["3","3","room:r","phx_join",{"panic":true,"push":true}]`)
	a.expect(`["3","3","room:r","phx_reply",{"status":"error","response":{"reason":"join crashed"}}]`)
	a.sendText(`["4","4","room:r","phx_join",{}]`)
	a.expect(`["4","4","room:r","phx_reply",{"status":"ok","response":{}}]`)
	a.sendText(`["4","5","room:r","stop",{}]`)
	a.expect(
		`["4","5","room:r","phx_reply",{"status":"ok","response":{}}]`,
		`["4","4","room:r","phx_close",{}]`,
	)
	if got := e.ch.waitTerminated(t, 1); got[0] != "room:r:stop" {
		t.Fatalf("terminate: %v", got)
	}
}

// A crashing channel yields phx_error (ref = join_ref); the channel
// is forgotten.
func TestWebSocketChannelCrash(t *testing.T) {
	for _, ev := range []string{"crash", "panic"} {
		t.Run(ev, func(t *testing.T) {
			e := newEnv(t, nil)
			a := e.dial("2.0.0")
			a.sendText(`["1","1","room:c","phx_join",{}]`)
			a.expect(`["1","1","room:c","phx_reply",{"status":"ok","response":{}}]`)
			a.sendText(`["1","2","room:c","` + ev + `",{}]`)
			a.expect(`["1","1","room:c","phx_error",{"reason":"channel_crash"}]`)
			a.sendText(`["1","3","room:c","echo",{}]`)
			a.expect(`[null,"3","room:c","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
			e.ch.waitTerminated(t, 1)
		})
	}
}

// Closing the connection terminates its channels.
func TestCloseTerminatesChannels(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:a","phx_join",{}]`)
	a.sendText(`["2","2","room:b","phx_join",{}]`)
	a.expect(
		`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`,
		`["2","2","room:b","phx_reply",{"status":"ok","response":{}}]`,
	)
	a.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	if code, reason := a.expectClose(); code != 1000 || reason != "" {
		t.Fatalf("close echo: %d %q", code, reason)
	}
	got := e.ch.waitTerminated(t, 2)
	slices.Sort(got)
	if !slices.Equal(got, []string{"room:a:closed", "room:b:closed"}) {
		t.Fatalf("terminations %v", got)
	}
	waitFor(t, func() bool { return e.srv.Connections() == 0 && e.srv.Subscribers("room:a") == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Origin checks (Phoenix's check_origin rules).
func TestWebSocketOrigin(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		origin  string
		ok      bool
	}{
		{"no origin header", nil, "", true},
		{"same origin default", nil, "SELF", true},
		{"other origin default", nil, "http://evil.example", false},
		{"null origin", nil, "null", false},
		{"star", []string{"*"}, "http://any.where:1234", true},
		{"scheme default port", []string{"https://example.com"}, "https://example.com", true},
		{"scheme other port", []string{"https://example.com"}, "https://example.com:8443", false},
		{"scheme mismatch", []string{"https://example.com"}, "http://example.com", false},
		{"host only any port", []string{"//example.com"}, "http://example.com:9999", true},
		{"host port", []string{"//another.com:888"}, "https://another.com:888", true},
		{"host port mismatch", []string{"//another.com:888"}, "https://another.com:889", false},
		{"wildcard sub", []string{"//*.other.com"}, "https://a.b.other.com", true},
		{"wildcard apex", []string{"//*.other.com"}, "https://other.com", true},
		{"wildcard not suffix", []string{"//*.other.com"}, "https://notother.com", false},
		{"no match", []string{"//example.com"}, "https://example.org", false},
		{"localhost", []string{"//localhost"}, "http://localhost:4000", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.AllowedOrigins = tc.allowed })
			hdr := http.Header{}
			if tc.origin == "SELF" {
				hdr.Set("Origin", e.http.URL)
			} else if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			_, resp, err := e.tryDial("2.0.0", hdr)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (resp == nil || resp.StatusCode != 403) {
				t.Fatalf("want 403, got %v %v", resp, err)
			}
		})
	}
}

func TestCheckOriginFunc(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.CheckOrigin = func(r *http.Request, o *url.URL) bool { return o.Host == "ok.example" }
	})
	if _, _, err := e.tryDial("2.0.0", http.Header{"Origin": {"https://ok.example"}}); err != nil {
		t.Fatal(err)
	}
	if _, resp, _ := e.tryDial("2.0.0", http.Header{"Origin": {"https://no.example"}}); resp == nil || resp.StatusCode != 403 {
		t.Fatalf("want 403")
	}
}

// Unsupported vsn → 403; connect refusals.
func TestVsnAndConnectRefusals(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		vsn    string
		params []string
		status int
	}{
		{"3.0.0", nil, 403},
		{"2.1.0", nil, 403},
		{"2.0", nil, 403},
		{"junk", nil, 403},
		{"2.0.9", nil, 101},
		{"1.0.3", nil, 101},
		{"", nil, 101},
		{"2.0.0", []string{"refuse", "1"}, 403},
		{"2.0.0", []string{"refuse", "429"}, 429},
	} {
		c, resp, err := e.tryDial(tc.vsn, nil, tc.params...)
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		if got != tc.status {
			t.Errorf("vsn %q %v: HTTP %d (%v), want %d", tc.vsn, tc.params, got, err, tc.status)
		}
		if c != nil {
			c.ws.Close()
		}
	}
}

// Invalid upgrades → 400; a socket mounted at a nested path.
func TestInvalidUpgradeAndNestedMount(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Mount = "/ws/admin" })
	resp, err := http.Get(e.http.URL + "/ws/admin/websocket")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
	resp, err = http.Post(e.http.URL+"/ws/admin/websocket", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	ws, _, err := websocket.DefaultDialer.Dial(e.wsURL("/ws/admin/websocket", map[string][]string{"vsn": {"2.0.0"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.Close()
	resp, err = http.Get(e.http.URL + "/socket/websocket")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("old mount: %d", resp.StatusCode)
	}
}

// Disconnect(id) closes the sockets of that id with 1001.
func TestWebSocketDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0", "id", "user:1")
	b := e.dial("2.0.0", "id", "user:2")
	a.sendText(`["1","1","room:a","phx_join",{}]`)
	a.expect(`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`)
	if n := e.srv.Disconnect("user:1"); n != 1 {
		t.Fatalf("Disconnect: %d", n)
	}
	if code, _ := a.expectClose(); code != CloseGoingAway {
		t.Fatalf("close code %d", code)
	}
	e.ch.waitTerminated(t, 1)
	b.sendText(`[null,"1","phoenix","heartbeat",{}]`)
	b.expect(`[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// Assigns and id from Connect.
func TestAssigns(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0", "user", "alice", "id", "s1")
	a.sendText(`["1","1","room:a","phx_join",{}]`)
	a.sendText(`["1","2","room:a","assigns",{}]`)
	a.expect(
		`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`,
		`["1","2","room:a","phx_reply",{"status":"ok","response":{"assigns":"alice","id":"s1"}}]`,
	)
}

// An idle connection is closed (1002, never 1000) after its
// heartbeat reply.
func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:a","phx_join",{}]`)
	a.sendText(`[null,"2","phoenix","heartbeat",{}]`)
	a.expect(
		`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`,
		`[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]`,
	)
	if code, reason := a.expectClose(); code != CloseProtocolError || reason != "idle timeout" {
		t.Fatalf("close %d %q", code, reason)
	}
	e.ch.waitTerminated(t, 1)
}

// Binary push, binary reply, binary push and broadcast from the
// server (the byte vectors of Phoenix's serializer tests).
func TestBinaryFrames(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Channels = append(c.Channels, Route{Pattern: "topic", Channel: c.Channels[0].Channel})
	})
	a := e.dial("2.0.0")
	b := e.dial("2.0.0")
	a.sendText(`["12","12","topic","phx_join",{}]`)
	a.expect(`["12","12","topic","phx_reply",{"status":"ok","response":{}}]`)
	b.sendText(`["1","1","topic","phx_join",{}]`)
	b.expect(`["1","1","topic","phx_reply",{"status":"ok","response":{}}]`)
	// echo: binary reply (kind 1): 01 02 03 05 02 "12" "123" "topic" "ok" efg
	a.sendBinary(mustHex("0002030504" + hex.EncodeToString([]byte("12123topicecho")) + "656667"))
	if got, want := hex.EncodeToString(a.recvBinary()), "0102030502"+hex.EncodeToString([]byte("12123topicok"))+"656667"; got != want {
		t.Fatalf("binary reply %s, want %s", got, want)
	}
	// push: binary push (kind 0) with join_ref, no ref
	a.sendBinary(mustHex("0002010504" + hex.EncodeToString([]byte("125topicpush")) + "01"))
	if got, want := hex.EncodeToString(a.recvBinary()), "0002050"+"6"+hex.EncodeToString([]byte("12topicpushed"))+"01"; got != want {
		t.Fatalf("binary push %s, want %s", got, want)
	}
	// broadcast: JSON reply to the sender, kind 2 to everyone
	a.sendBinary(mustHex("0002010509" + hex.EncodeToString([]byte("126topicbroadcast")) + "656667"))
	want := "020509" + hex.EncodeToString([]byte("topicbroadcast")) + "656667"
	if got := hex.EncodeToString(a.recvBinary()); got != want {
		t.Fatalf("binary broadcast %s, want %s", got, want)
	}
	a.expect(`["12","6","topic","phx_reply",{"status":"ok","response":{}}]`)
	if got := hex.EncodeToString(b.recvBinary()); got != want {
		t.Fatalf("binary broadcast %s, want %s", got, want)
	}
	// binary heartbeat: JSON reply
	a.sendBinary(mustHex("0000010709" + hex.EncodeToString([]byte("3phoenixheartbeat"))))
	a.expect(`[null,"3","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Auth token subprotocol: "phoenix" is selected, the token reaches Connect.
func TestAuthTokenSubprotocol(t *testing.T) {
	var got string
	e := newEnv(t, func(c *Config) {
		c.Connect = func(ctx context.Context, info *ConnectInfo) (Identity, error) {
			got = info.AuthToken
			return Identity{}, nil
		}
	})
	d := websocket.Dialer{Subprotocols: []string{"phoenix", "base64url.bearer.phx.c2VjcmV0K3Rva2Vu"}}
	ws, resp, err := d.Dial(e.wsURL("/socket/websocket", map[string][]string{"vsn": {"2.0.0"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "phoenix" {
		t.Fatalf("subprotocol %q", p)
	}
	if got != "secret+token" {
		t.Fatalf("token %q", got)
	}
}

// Server.Shutdown closes every socket with 1001 and terminates channels.
func TestShutdownGoingAway(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:a","phx_join",{}]`)
	a.expect(`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	if code, _ := a.expectClose(); code != CloseGoingAway {
		t.Fatalf("close code %d", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := e.ch.terminated(); !slices.Equal(got, []string{"room:a:closed"}) {
		t.Fatalf("terminations %v", got)
	}
	if _, resp, _ := e.tryDial("2.0.0", nil); resp == nil || resp.StatusCode != 503 {
		t.Fatalf("dial after shutdown: %v", resp)
	}
}

// Server.Close drops everything at once.
func TestClose(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial("2.0.0")
	a.sendText(`["1","1","room:a","phx_join",{}]`)
	a.expect(`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`)
	e.srv.Close()
	if got := e.ch.terminated(); !slices.Equal(got, []string{"room:a:closed"}) {
		t.Fatalf("terminations %v", got)
	}
	if e.srv.Connections() != 0 {
		t.Fatal("connections left")
	}
}
