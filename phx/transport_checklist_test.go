package phx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Transport scenarios of Phoenix's socket and long-poll suites: connect
// errors, control frames, draining on shutdown, the channel limit, slow
// publishes, channel crashes and async pongs.

// Connect returning {:error, reason} goes to a custom error handler
// (e.g. 429). phx's equivalent: Connect returns a *ConnectError whose
// Status is the HTTP status of the refused upgrade (found through
// wrapping too); a ConnectError without Status, or any other error, is
// 403. Nothing is upgraded or registered. Long-poll always answers body
// status 403 (HTTP 200).
func TestConnectErrorStatus(t *testing.T) {
	cause := errors.New("rate limited")
	e := newEnv(t, func(c *Config) {
		c.Connect = func(_ context.Context, info *ConnectInfo) (Identity, error) {
			switch info.Params.Get("mode") {
			case "429":
				return Identity{}, &ConnectError{Status: http.StatusTooManyRequests, Err: cause}
			case "wrapped":
				return Identity{}, fmt.Errorf("gate: %w", &ConnectError{Status: http.StatusServiceUnavailable, Err: cause})
			case "nostatus":
				return Identity{}, &ConnectError{Err: cause}
			case "plain":
				return Identity{}, cause
			}
			return Identity{}, nil
		}
	})
	for _, tc := range []struct {
		mode   string
		status int
	}{{"429", 429}, {"wrapped", 503}, {"nostatus", 403}, {"plain", 403}, {"", 101}} {
		c, resp, err := e.tryDial("2.0.0", nil, "mode", tc.mode)
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		if got != tc.status {
			t.Errorf("mode %q: HTTP %d (%v), want %d", tc.mode, got, err, tc.status)
		}
		if tc.status != 101 && resp != nil && resp.Header.Get("Upgrade") != "" {
			t.Errorf("mode %q: refused response has Upgrade %q", tc.mode, resp.Header.Get("Upgrade"))
		}
		if c != nil {
			c.ws.Close()
		}
	}
	waitFor(t, func() bool { return e.srv.Connections() == 0 })

	ce := &ConnectError{Status: 429, Err: cause}
	if !errors.Is(ce, cause) || !strings.Contains(ce.Error(), "429") || !strings.Contains(ce.Error(), "rate limited") {
		t.Fatalf("ConnectError: %q, Is(cause) %v", ce.Error(), errors.Is(ce, cause))
	}
	// Long-poll: body status 403 whatever the ConnectError's Status.
	r := e.lpDo("GET", url.Values{"vsn": {"2.0.0"}, "mode": {"429"}}, "", "", "", nil)
	r.checkHeaders(t)
	if r.rawBody != `{"status":403}` {
		t.Fatalf("long-poll: %s", r.rawBody)
	}
}

// Control frames with payloads. A ping's payload (up to the 125
// bytes a control frame may carry, or none) is echoed in the pong, in
// order; an unsolicited pong with a payload is ignored; pings keep an
// otherwise idle connection open; a client close frame with a code and a
// reason is answered with that code and ends the channels. None of it
// disturbs the channel traffic.
func TestControlFramesWithPayloads(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	a := e.dial("2.0.0")
	pongs := make(chan string, 32)
	a.ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
	a.sendText(`["1","1","room:c","phx_join",{}]`)
	a.expect(`["1","1","room:c","phx_reply",{"status":"ok","response":{}}]`)

	control := func(mt int, payload string) {
		t.Helper()
		if err := a.ws.WriteControl(mt, []byte(payload), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("p", 125)
	control(websocket.PingMessage, "hello")
	control(websocket.PongMessage, "unsolicited")
	control(websocket.PingMessage, big)
	control(websocket.PingMessage, "")
	// The pongs come before the reply to a frame sent after the pings.
	a.sendText(`["1","2","room:c","echo",{"after":"pings"}]`)
	a.expect(`["1","2","room:c","phx_reply",{"status":"ok","response":{"after":"pings"}}]`)
	var got []string
	for len(pongs) > 0 {
		got = append(got, <-pongs)
	}
	if !slices.Equal(got, []string{"hello", big, ""}) {
		t.Fatalf("pongs %q", got)
	}

	// Pings alone, for longer than the idle timeout, keep it open.
	for range 8 {
		control(websocket.PingMessage, "keep")
		time.Sleep(100 * time.Millisecond)
	}
	a.sendText(`[null,"3","phoenix","heartbeat",{}]`)
	a.expect(`[null,"3","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	if n := len(pongs); n != 8 {
		t.Fatalf("%d pongs, want 8", n)
	}

	// A close frame with a payload: its code is echoed; channels end.
	control(websocket.CloseMessage, string(websocket.FormatCloseMessage(4001, "bye now")))
	if code, _ := a.expectClose(); code != 4001 {
		t.Fatalf("close echo %d", code)
	}
	if got := e.ch.waitTerminated(t, 1); got[0] != "room:c:closed" {
		t.Fatalf("terminations %v", got)
	}
}

// The drainer (static, MFA and disabled configurations of
// Phoenix's socket drainer). phx has no drainer process: Server.Shutdown
// replaces it — it refuses new connections, closes every WebSocket with
// 1001 (Phoenix's drain uses 1012), ends every long-poll session (a
// waiting poll gets 410) and terminates every channel; the ctx deadline
// replaces the drainer's total shutdown time (connections still open then
// are dropped and ctx's error returned); Server.Close is the "disabled"
// case: everything is dropped at once, without a close handshake.
func TestShutdownDrains(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		e := newEnv(t, nil)
		a := e.dial("2.0.0")
		b := e.dial("1.0.0")
		a.sendText(`["1","1","room:a","phx_join",{}]`)
		a.sendText(`["2","2","room:b","phx_join",{}]`)
		a.expect(
			`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`,
			`["2","2","room:b","phx_reply",{"status":"ok","response":{}}]`,
		)
		b.sendText(`{"topic":"room:a","event":"phx_join","payload":{},"ref":"1"}`)
		b.expect(`{"topic":"room:a","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`)
		tok := e.lpOpen(v2)
		e.lpDo("POST", v2, tok, "application/x-ndjson", `["1","1","room:lp","phx_join",{}]`, nil)
		if r := e.lpDo("GET", v2, tok, "", "", nil); r.status() != 200 {
			t.Fatalf("poll: %s", r.rawBody)
		}
		poll := make(chan lpResp, 1)
		go func() { poll <- e.lpDo("GET", v2, tok, "", "", nil) }()
		time.Sleep(50 * time.Millisecond) // the poll is waiting
		if n := e.srv.Connections(); n != 3 {
			t.Fatalf("%d connections", n)
		}

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done <- e.srv.Shutdown(ctx)
		}()
		for _, c := range []*wsClient{a, b} {
			if code, reason := c.expectClose(); code != CloseGoingAway || reason != "server shutting down" {
				t.Fatalf("close %d %q", code, reason)
			}
		}
		if r := <-poll; r.status() != 410 {
			t.Fatalf("waiting poll: %s", r.rawBody)
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		got := e.ch.terminated()
		slices.Sort(got)
		if want := []string{"room:a:closed", "room:a:closed", "room:b:closed", "room:lp:closed"}; !slices.Equal(got, want) {
			t.Fatalf("terminations %v, want %v", got, want)
		}
		if e.srv.Connections() != 0 || e.srv.Subscribers("room:a") != 0 {
			t.Fatal("connections or subscriptions left")
		}
		// Nothing new gets in; the old session is gone.
		if _, resp, _ := e.tryDial("2.0.0", nil); resp == nil || resp.StatusCode != 503 {
			t.Fatalf("dial after Shutdown: %v", resp)
		}
		if r := e.lpDo("GET", v2, "", "", "", nil); r.rawBody != `{"status":403}` {
			t.Fatalf("new long-poll session after Shutdown: %s", r.rawBody)
		}
		if r := e.lpDo("POST", v2, tok, "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, nil); r.rawBody != `{"status":410}` {
			t.Fatalf("POST after Shutdown: %s", r.rawBody)
		}
		// Idempotent.
		if err := e.srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		// A client that never answers the close handshake holds its
		// connection for the close grace period (2 s); a shorter
		// deadline drops it.
		e := newEnv(t, nil)
		a := e.dial("2.0.0")
		a.sendText(`["1","1","room:a","phx_join",{}]`)
		a.expect(`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := e.srv.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > closeGrace {
			t.Fatalf("Shutdown took %v", d)
		}
		if e.srv.Connections() != 0 || !slices.Equal(e.ch.terminated(), []string{"room:a:closed"}) {
			t.Fatalf("connections %d, terminations %v", e.srv.Connections(), e.ch.terminated())
		}
		// The client still finds the 1001 close frame sent before the drop.
		if code, _ := a.expectClose(); code != CloseGoingAway {
			t.Fatalf("close %d", code)
		}
	})

	t.Run("immediate", func(t *testing.T) {
		e := newEnv(t, nil)
		a := e.dial("2.0.0")
		a.sendText(`["1","1","room:a","phx_join",{}]`)
		a.expect(`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`)
		tok := e.lpOpen(v2)
		e.lpDo("POST", v2, tok, "application/x-ndjson", `["1","1","room:lp","phx_join",{}]`, nil)
		start := time.Now()
		if err := e.srv.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > closeGrace {
			t.Fatalf("Close took %v", d)
		}
		got := e.ch.terminated()
		slices.Sort(got)
		if !slices.Equal(got, []string{"room:a:closed", "room:lp:closed"}) || e.srv.Connections() != 0 {
			t.Fatalf("terminations %v, connections %d", got, e.srv.Connections())
		}
		if r := e.lpDo("GET", v2, tok, "", "", nil); r.status() != 403 {
			t.Fatalf("poll after Close: %s", r.rawBody)
		}
	})
}

// The 101st join of a long-poll session gets the error "too many
// channels joined" (join_ref and ref echoed) in the next poll; after a
// leave there is room again.
func TestLongPollTooManyChannels(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.JoinRate = -1 })
	tok := e.lpOpen(v2)
	var lines []string
	for i := 1; i <= 100; i++ {
		lines = append(lines, fmt.Sprintf(`["%d","%d","room:%d","phx_join",{}]`, i, i, i))
	}
	if r := e.lpDo("POST", v2, tok, "application/x-ndjson", strings.Join(lines, "\n"), nil); r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	if r := e.lpDo("POST", v2, tok, "application/x-ndjson", `["101","101","room:101","phx_join",{}]`, nil); r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	r := e.lpDo("GET", v2, tok, "", "", nil)
	msgs := r.messages(t)
	if len(msgs) != 101 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i := 1; i <= 100; i++ {
		if want := canon(t, []byte(fmt.Sprintf(`["%d","%d","room:%d","phx_reply",{"status":"ok","response":{}}]`, i, i, i))); msgs[i-1] != want {
			t.Fatalf("join %d: %s", i, msgs[i-1])
		}
	}
	if want := canon(t, []byte(`["101","101","room:101","phx_reply",{"status":"error","response":{"reason":"too many channels joined"}}]`)); msgs[100] != want {
		t.Fatalf("101st join: %s", msgs[100])
	}
	e.lpDo("POST", v2, tok, "application/x-ndjson", "[\"1\",\"102\",\"room:1\",\"phx_leave\",{}]\n[\"103\",\"103\",\"room:101\",\"phx_join\",{}]", nil)
	r = e.lpDo("GET", v2, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t,
		`["1","102","room:1","phx_reply",{"status":"ok","response":{}}]`,
		`["1","1","room:1","phx_close",{}]`,
		`["103","103","room:101","phx_reply",{"status":"ok","response":{}}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
}

// pollLoop polls session tok like phoenix.js (a new GET as soon as one
// returns) until want messages arrived, the session is gone or timeout
// passed, and sends what it collected.
func (e *testEnv) pollLoop(tok string, want int, timeout time.Duration) <-chan []string {
	out := make(chan []string, 1)
	u := e.http.URL + "/socket/longpoll?" + url.Values{"vsn": {"2.0.0"}, "token": {tok}}.Encode()
	go func() {
		var msgs []string
		deadline := time.Now().Add(timeout)
		for len(msgs) < want && time.Now().Before(deadline) {
			resp, err := http.Get(u)
			if err != nil {
				break
			}
			var body struct {
				Status   int      `json:"status"`
				Messages []string `json:"messages"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || body.Status == 410 {
				break
			}
			msgs = append(msgs, body.Messages...)
		}
		out <- msgs
	}()
	return out
}

// Upstream, a POSTed line not acknowledged by the session within
// window_ms skips the rest of the batch and answers {"status":408}. Not
// applicable in phx: a POST is handled synchronously by the request that
// carries it (the session is not a separate process to wait for), so it
// has no acknowledgement window. A POST whose channel callback takes
// longer than the poll window still processes every line in order and
// answers {"status":200} once done; the replies reach the polling client.
// (An undecodable line, the other upstream source of 408, is HTTP 400 and
// ends the session: TestLPMalformedEndsSession.)
func TestLongPollSlowPublishCompletes(t *testing.T) {
	const window = 200 * time.Millisecond
	const slow = 3 * window
	fc := &funcChannel{handleIn: func(_ context.Context, _ *Socket, event string, p Payload) (*Reply, error) {
		if event == "slow" {
			time.Sleep(slow)
		}
		return ReplyOK(p.JSON), nil
	}}
	e := newEnv(t, func(c *Config) {
		c.LongPollWindow = window
		c.Channels = append([]Route{{Pattern: "api:*", Channel: fc}}, c.Channels...)
	})
	tok := e.lpOpen(v2)
	polled := e.pollLoop(tok, 3, 5*time.Second)
	time.Sleep(20 * time.Millisecond) // a poll is waiting, as with phoenix.js
	start := time.Now()
	r := e.lpDo("POST", v2, tok, "application/x-ndjson", strings.Join([]string{
		`["1","1","api:s","phx_join",{}]`,
		`["1","2","api:s","slow",{"n":2}]`,
		`["1","3","api:s","echo",{"n":3}]`,
	}, "\n"), nil)
	if d := time.Since(start); r.rawBody != `{"status":200}` || d < slow {
		t.Fatalf("POST: %s after %v", r.rawBody, d)
	}
	if got, want := <-polled, canonAll(t,
		`["1","1","api:s","phx_reply",{"status":"ok","response":{}}]`,
		`["1","2","api:s","phx_reply",{"status":"ok","response":{"n":2}}]`,
		`["1","3","api:s","phx_reply",{"status":"ok","response":{"n":3}}]`); !slices.Equal(canonAll(t, got...), want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	// The session lives on.
	if r := e.lpDo("POST", v2, tok, "application/x-ndjson", `[null,"4","phoenix","heartbeat",{}]`, nil); r.rawBody != `{"status":200}` {
		t.Fatalf("after: %s", r.rawBody)
	}
}

// A crashing channel (HandleIn returning an error, or panicking)
// over long-poll yields phx_error {"reason":"channel_crash"} with ref =
// join_ref in the next poll (V1: ref null, as Phoenix sends it); the channel is
// terminated and forgotten (later events: "unmatched topic"), and the
// topic can be joined again.
func TestLongPollChannelCrash(t *testing.T) {
	for _, ev := range []string{"crash", "panic"} {
		t.Run(ev, func(t *testing.T) {
			e := newEnv(t, nil)
			tok := e.lpOpen(v2)
			e.lpDo("POST", v2, tok, "application/x-ndjson", strings.Join([]string{
				`["4","4","room:c","phx_join",{}]`,
				`["4","5","room:c","` + ev + `",{}]`,
				`["4","6","room:c","echo",{}]`,
				`["7","7","room:c","phx_join",{}]`,
			}, "\n"), nil)
			r := e.lpDo("GET", v2, tok, "", "", nil)
			if got, want := r.messages(t), canonAll(t,
				`["4","4","room:c","phx_reply",{"status":"ok","response":{}}]`,
				`["4","4","room:c","phx_error",{"reason":"channel_crash"}]`,
				`[null,"6","room:c","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`,
				`["7","7","room:c","phx_reply",{"status":"ok","response":{}}]`); !slices.Equal(got, want) {
				t.Fatalf("messages %v want %v", got, want)
			}
			if got := e.ch.waitTerminated(t, 1); len(got) != 1 || !strings.HasPrefix(got[0], "room:c:") || strings.HasSuffix(got[0], ":closed") {
				t.Fatalf("terminations %v", got)
			}
		})
	}
	t.Run("v1", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.lpOpen(nil)
		e.lpDo("POST", nil, tok, "application/json", `{"topic":"room:c","event":"phx_join","payload":{},"ref":"1"}`, nil)
		e.lpDo("POST", nil, tok, "application/json", `{"topic":"room:c","event":"panic","payload":{},"ref":"2"}`, nil)
		r := e.lpDo("GET", nil, tok, "", "", nil)
		if got, want := r.messages(t), canonAll(t,
			`{"topic":"room:c","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`,
			`{"topic":"room:c","event":"phx_error","payload":{"reason":"channel_crash"},"ref":null}`); !slices.Equal(got, want) {
			t.Fatalf("messages %v want %v", got, want)
		}
	})
}

// Async pong. A heartbeat POSTed on a long-poll session is
// answered in the next poll; a channel that answers a "ping" later, from
// a goroutine of its own (Socket.Push after HandleIn returned), reaches a
// poll that is already waiting, which returns as soon as the push is
// buffered.
func TestLongPollAsyncPong(t *testing.T) {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	fc := &funcChannel{handleIn: func(_ context.Context, s *Socket, event string, p Payload) (*Reply, error) {
		if event == "ping" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(100 * time.Millisecond)
				s.Push("pong", p.JSON)
			}()
		}
		return nil, nil
	}}
	e := newEnv(t, func(c *Config) {
		c.LongPollWindow = 2 * time.Second
		c.Channels = append([]Route{{Pattern: "api:*", Channel: fc}}, c.Channels...)
	})
	tok := e.lpOpen(v2)
	e.lpDo("POST", v2, tok, "application/x-ndjson", "[null,\"1\",\"phoenix\",\"heartbeat\",{}]\n[\"2\",\"2\",\"api:p\",\"phx_join\",{}]", nil)
	r := e.lpDo("GET", v2, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t,
		`[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`,
		`["2","2","api:p","phx_reply",{"status":"ok","response":{}}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}

	poll := make(chan lpResp, 1)
	go func() { poll <- e.lpDo("GET", v2, tok, "", "", nil) }()
	time.Sleep(50 * time.Millisecond) // the poll is waiting
	start := time.Now()
	if r := e.lpDo("POST", v2, tok, "application/x-ndjson", `["2","3","api:p","ping",{"n":1}]`, nil); r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	r = <-poll
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("poll returned after %v, not at the push", d)
	}
	if got, want := r.messages(t), canonAll(t, `["2",null,"api:p","pong",{"n":1}]`); r.status() != 200 || !slices.Equal(got, want) {
		t.Fatalf("poll: %s", r.rawBody)
	}
}
