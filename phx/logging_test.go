package phx

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// Logging. Phoenix logs each connect
// ("CONNECTED TO …" with params, switchable by the socket's :log option)
// and each join and handle_in with params filtered by
// :filter_parameters. phx logs no successful connect, join or event at
// all: Config.Logger gets warnings and errors only (refused connections,
// unmatched topics, crashes, bad frames), none of which carries client
// params, payloads or tokens. A nil Logger discards (logging off). These
// tests capture every record and check both.

// Secrets the clients below send; none may appear in a log record.
var logSecrets = []string{"s3cret-tok", "hunter2", "c2VjcmV0", "sub-secret"}

// Connect logging on — with Config.Logger set, refused WebSocket
// connections are logged (connect refusal, unsupported vsn, origin) with
// the transport and cause but without the query params or the auth
// token; an accepted connection is not logged.
func TestConnectLogging(t *testing.T) {
	lc := &logCapture{}
	e := newEnv(t, func(c *Config) {
		c.Logger = lc.logger()
		c.AllowedOrigins = []string{"//good.example"}
	})
	c := e.dial("2.0.0", "token", "s3cret-tok", "password", "hunter2")
	c.sendText(`[null,"1","phoenix","heartbeat",{}]`)
	c.expect(`[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	if l := lc.lines(); len(l) != 0 {
		t.Fatalf("accepted connection logged: %q", l)
	}

	if _, resp, _ := e.tryDial("2.0.0", nil, "refuse", "1", "token", "s3cret-tok"); resp == nil || resp.StatusCode != 403 {
		t.Fatalf("refusal: %v", resp)
	}
	lc.waitLine(t, "level=INFO", "phx: connection refused", "transport=websocket", "err=refused")

	if _, resp, _ := e.tryDial("9.9.9", nil, "password", "hunter2"); resp == nil || resp.StatusCode != 403 {
		t.Fatalf("vsn: %v", resp)
	}
	lc.waitLine(t, "level=WARN", "unsupported vsn", "vsn=9.9.9")

	if _, resp, _ := e.tryDial("2.0.0", http.Header{"Origin": {"https://evil.example"}}, "token", "s3cret-tok"); resp == nil || resp.StatusCode != 403 {
		t.Fatalf("origin: %v", resp)
	}
	lc.waitLine(t, "level=WARN", "origin refused", "origin=https://evil.example")

	// The auth token of the subprotocol is not logged either.
	d := websocket.Dialer{Subprotocols: []string{"phoenix", "base64url.bearer.phx.c2VjcmV0"}}
	if _, resp, _ := d.Dial(e.wsURL("/socket/websocket", url.Values{"vsn": {"2.0.0"}, "refuse": {"429"}}), nil); resp == nil || resp.StatusCode != 429 {
		t.Fatalf("429: %v", resp)
	}
	lc.waitLine(t, "phx: connection refused", "(429)", "slow down")
	lc.checkNoSecrets(t, logSecrets...)
}

// Connect logging off — with a nil Config.Logger nothing is
// logged anywhere: phx does not fall back to slog's (or log's) default
// logger, even for refusals and crashes.
func TestNoLoggerLogsNothing(t *testing.T) {
	def := captureDefaultLogger(t)
	e := newEnv(t, func(c *Config) { c.Logger = nil })
	if _, resp, _ := e.tryDial("2.0.0", nil, "refuse", "1"); resp == nil || resp.StatusCode != 403 {
		t.Fatalf("refusal: %v", resp)
	}
	if _, resp, _ := e.tryDial("0.1.0", nil); resp == nil || resp.StatusCode != 403 {
		t.Fatalf("vsn: %v", resp)
	}
	a := e.dial("2.0.0")
	a.sendText(`["1","1","nomatch","phx_join",{}]`)
	a.sendText(`["2","2","room:x","phx_join",{"fail":true}]`)
	a.sendText(`["3","3","room:y","phx_join",{}]`)
	a.sendText(`["3","4","room:y","panic",{}]`)
	a.expect(
		`[null,"1","nomatch","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`,
		`["2","2","room:x","phx_reply",{"status":"error","response":{"reason":"join crashed"}}]`,
		`["3","3","room:y","phx_reply",{"status":"ok","response":{}}]`,
		`["3","3","room:y","phx_error",{"reason":"channel_crash"}]`,
	)
	a.sendText(`["x"]`) // malformed: closed
	if code, _ := a.expectClose(); code != CloseInvalidData {
		t.Fatalf("close %d", code)
	}
	waitFor(t, func() bool { return e.srv.Connections() == 0 })
	for _, l := range def.lines() {
		if strings.Contains(l, "phx") {
			t.Errorf("logged to the default logger: %s", l)
		}
	}
}

// Join and handle_in logging with filtered params. phx logs no
// join or event; what it does log about them (unmatched topic, channel
// limit, join crash or panic, channel crash or panic, malformed frame)
// names the topic and event but never the payload, so secrets in join
// params or event payloads ("token", "password") never reach the log.
func TestJoinAndEventLogsOmitParams(t *testing.T) {
	lc := &logCapture{}
	e := newEnv(t, func(c *Config) {
		c.Logger = lc.logger()
		c.MaxChannels = 2
	})
	a := e.dial("2.0.0")
	const sec = `"token":"s3cret-tok","password":"hunter2"`
	a.sendText(`["1","1","room:a","phx_join",{` + sec + `}]`)
	a.sendText(`["2","2","room:b","phx_join",{"refuse":true,` + sec + `}]`)
	a.sendText(`["3","3","room:c","phx_join",{"fail":true,` + sec + `}]`)
	a.sendText(`["4","4","room:d","phx_join",{"panic":true,` + sec + `}]`)
	a.sendText(`["5","5","nomatch","phx_join",{` + sec + `}]`)
	a.sendText(`["1","6","room:a","echo",{` + sec + `}]`)
	a.sendText(`["1","7","room:a","crash",{` + sec + `}]`)
	a.sendText(`["8","8","room:e","phx_join",{` + sec + `}]`)
	a.sendText(`["8","9","room:e","panic",{` + sec + `}]`)
	a.sendText(`["9","9","room:f","phx_join",{}]`)
	a.sendText(`["10","10","room:g","phx_join",{` + sec + `}]`) // third channel: over the limit
	a.expect(
		`["1","1","room:a","phx_reply",{"status":"ok","response":{}}]`,
		`["2","2","room:b","phx_reply",{"status":"error","response":{"reason":"refused"}}]`,
		`["3","3","room:c","phx_reply",{"status":"error","response":{"reason":"join crashed"}}]`,
		`["4","4","room:d","phx_reply",{"status":"error","response":{"reason":"join crashed"}}]`,
		`[null,"5","nomatch","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`,
		`["1","6","room:a","phx_reply",{"status":"ok","response":{`+sec+`}}]`,
		`["1","1","room:a","phx_error",{"reason":"channel_crash"}]`,
		`["8","8","room:e","phx_reply",{"status":"ok","response":{}}]`,
		`["8","8","room:e","phx_error",{"reason":"channel_crash"}]`,
		`["9","9","room:f","phx_reply",{"status":"ok","response":{}}]`,
	)
	a.sendText(`["11","11","room:h","phx_join",{}]`)
	a.expect(
		`["10","10","room:g","phx_reply",{"status":"ok","response":{}}]`,
		`["11","11","room:h","phx_reply",{"status":"error","response":{"reason":"too many channels joined"}}]`,
	)
	// A malformed frame that carries a secret.
	a.sendText(`["1","12","room:f","x",{` + sec + `}`)
	if code, _ := a.expectClose(); code != CloseInvalidData {
		t.Fatalf("close %d", code)
	}
	lc.waitLine(t, "level=ERROR", "phx: join crashed", "topic=room:c", "boom")
	lc.waitLine(t, "level=ERROR", "phx: join crashed", "topic=room:d", "join panic")
	lc.waitLine(t, "level=WARN", "no channel matches", "topic=nomatch")
	lc.waitLine(t, "level=ERROR", "phx: channel crashed", "topic=room:a", "event=crash")
	lc.waitLine(t, "level=ERROR", "phx: channel crashed", "topic=room:e", "event=panic", "handle_in panic")
	lc.waitLine(t, "level=WARN", "too many channels joined", "topic=room:h")
	lc.waitLine(t, "level=WARN", "bad frame", "malformed")
	lc.checkNoSecrets(t, logSecrets...)
}

// Join params are not logged over long-poll either: the same
// join and event outcomes, a refused session whose GET carried a token
// (query and X-Phoenix-AuthToken) and a POST with an invalid base64 line
// log topic, event and cause only.
func TestLongPollJoinParamsNotLogged(t *testing.T) {
	lc := &logCapture{}
	e := newEnv(t, func(c *Config) { c.Logger = lc.logger() })

	r := e.lpDo("GET", url.Values{"vsn": {"2.0.0"}, "refuse": {"1"}, "token": {"s3cret-tok"}}, "", "", "", http.Header{"X-Phoenix-Authtoken": {"hunter2"}})
	if r.status() != 403 {
		t.Fatalf("refusal: %s", r.rawBody)
	}
	lc.waitLine(t, "phx: connection refused", "transport=longpoll", "err=refused")

	tok := e.lpOpen(url.Values{"vsn": {"2.0.0"}, "password": {"hunter2"}})
	const sec = `"token":"s3cret-tok","password":"hunter2"`
	body := strings.Join([]string{
		`["1","1","room:a","phx_join",{` + sec + `}]`,
		`["2","2","room:b","phx_join",{"refuse":true,` + sec + `}]`,
		`["3","3","room:c","phx_join",{"fail":true,` + sec + `}]`,
		`["4","4","room:d","phx_join",{"panic":true,` + sec + `}]`,
		`["5","5","nomatch","phx_join",{` + sec + `}]`,
		// A binary push whose payload is a secret (its binary echo
		// reply cannot go over long-poll: dropped and logged).
		base64.StdEncoding.EncodeToString(append([]byte{0, 1, 1, 6, 4}, "17room:aechosub-secret"...)),
		`["1","6","room:a","panic",{` + sec + `}]`,
	}, "\n")
	if r := e.lpDo("POST", nil, tok, "application/x-ndjson", body, nil); r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	lc.waitLine(t, "phx: join crashed", "topic=room:c")
	lc.waitLine(t, "phx: join crashed", "topic=room:d", "join panic")
	lc.waitLine(t, "no channel matches", "topic=nomatch")
	lc.waitLine(t, "binary reply dropped", "topic=room:a")
	lc.waitLine(t, "phx: channel crashed", "topic=room:a", "event=panic")

	// An invalid base64 line holding a secret ends the session: logged
	// without the line.
	if r := e.lpDo("POST", nil, tok, "application/x-ndjson", "hunter2!s3cret-tok", nil); r.code != 400 {
		t.Fatalf("bad line: %d %s", r.code, r.rawBody)
	}
	lc.waitLine(t, "ending long-poll session on a bad frame")
	lc.checkNoSecrets(t, logSecrets...)
}
