package phx

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

type lpResp struct {
	code    int
	header  http.Header
	body    map[string]any
	rawBody string
}

// lpDo sends one long-poll request.
func (e *testEnv) lpDo(method string, params url.Values, token, contentType string, body string, hdr http.Header) lpResp {
	e.t.Helper()
	// A copy: callers pass the shared v2, which must not keep a token.
	params = maps.Clone(params)
	if params == nil {
		params = url.Values{}
	}
	if token != "" {
		params.Set("token", token)
	}
	req, err := http.NewRequest(method, e.http.URL+"/socket/longpoll?"+params.Encode(), strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := lpResp{code: resp.StatusCode, header: resp.Header, rawBody: string(raw)}
	if len(raw) > 0 {
		json.Unmarshal(raw, &r.body)
	}
	return r
}

// messages returns a poll's messages, canonicalised.
func (r lpResp) messages(t *testing.T) []string {
	t.Helper()
	ms, _ := r.body["messages"].([]any)
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = canon(t, []byte(m.(string)))
	}
	return out
}

func (r lpResp) status() int {
	f, _ := r.body["status"].(float64)
	return int(f)
}

func (r lpResp) checkHeaders(t *testing.T) {
	t.Helper()
	if r.code != 200 || r.header.Get("Content-Type") != "application/json; charset=utf-8" ||
		r.header.Get("Cache-Control") != "no-store" || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("response %d %v", r.code, r.header)
	}
}

func canonAll(t *testing.T, ss ...string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = canon(t, []byte(s))
	}
	return out
}

var v2 = url.Values{"vsn": {"2.0.0"}}

// lpSession opens a session and returns its token.
func (e *testEnv) lpOpen(params url.Values) string {
	e.t.Helper()
	r := e.lpDo("GET", params, "", "", "", nil)
	r.checkHeaders(e.t)
	tok, _ := r.body["token"].(string)
	if r.status() != 410 || tok == "" || len(r.messages(e.t)) != 0 {
		e.t.Fatalf("open: %s", r.rawBody)
	}
	return tok
}

// First GET 410 + token; POST join; GET replies,
// broadcasts and pushes; empty poll → 204 after the window.
func TestLongPollSession(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LongPollWindow = 200 * time.Millisecond })
	tok := e.lpOpen(v2)
	r := e.lpDo("POST", v2, tok, "application/x-ndjson", `["1","1","room:lp","phx_join",{"push":true}]`, nil)
	r.checkHeaders(t)
	if r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	r = e.lpDo("GET", v2, tok, "", "", nil)
	r.checkHeaders(t)
	if r.status() != 200 || r.body["token"] != tok {
		t.Fatalf("GET: %s", r.rawBody)
	}
	if got, want := r.messages(t), canonAll(t,
		`["1","1","room:lp","phx_reply",{"status":"ok","response":{}}]`,
		`["1",null,"room:lp","joined_push",{"topic":"room:lp"}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	// Two frames in one POST; a non-join message without join_ref (it needs
	// none); an event on an unjoined topic (answered "unmatched topic").
	r = e.lpDo("POST", v2, tok, "application/x-ndjson",
		"[null,\"2\",\"phoenix\",\"heartbeat\",{}]\r\n[null,\"3\",\"room:lp\",\"broadcast\",{\"x\":1}]\n[null,\"4\",\"room:none\",\"echo\",{}]\n", nil)
	if r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	r = e.lpDo("GET", v2, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t,
		`[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]`,
		`[null,null,"room:lp","broadcast",{"x":1}]`,
		`["1","3","room:lp","phx_reply",{"status":"ok","response":{}}]`,
		`[null,"4","room:none","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	// A POST with another (or no) content type is one frame.
	r = e.lpDo("POST", v2, tok, "", `["1","5","room:lp","echo",{"n":5}]`, nil)
	if r.rawBody != `{"status":200}` {
		t.Fatalf("POST: %s", r.rawBody)
	}
	r = e.lpDo("GET", v2, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t, `["1","5","room:lp","phx_reply",{"status":"ok","response":{"n":5}}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	// Empty poll: 204 after the window.
	start := time.Now()
	r = e.lpDo("GET", v2, tok, "", "", nil)
	r.checkHeaders(t)
	if r.status() != 204 || r.body["token"] != tok || len(r.messages(t)) != 0 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("empty poll: %s after %v", r.rawBody, time.Since(start))
	}
	// A pending poll returns as soon as a message is buffered.
	done := make(chan lpResp, 1)
	go func() { done <- e.lpDo("GET", v2, tok, "", "", nil) }()
	time.Sleep(50 * time.Millisecond)
	e.srv.Broadcast("room:lp", "late", map[string]int{"n": 1})
	r = <-done
	if got, want := r.messages(t), canonAll(t, `[null,null,"room:lp","late",{"n":1}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	// Leave → reply, then phx_close.
	e.lpDo("POST", v2, tok, "application/x-ndjson", `["1","7","room:lp","phx_leave",{}]`, nil)
	r = e.lpDo("GET", v2, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t,
		`["1","7","room:lp","phx_reply",{"status":"ok","response":{}}]`,
		`["1","1","room:lp","phx_close",{}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
}

// Bad tokens: POST → 410 without a token; GET → a new session.
func TestLPBadTokens(t *testing.T) {
	e := newEnv(t, nil)
	r := e.lpDo("POST", v2, "bogus", "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, nil)
	r.checkHeaders(t)
	if r.rawBody != `{"status":410}` {
		t.Fatalf("%s", r.rawBody)
	}
	r = e.lpDo("POST", v2, "", "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, nil)
	if r.rawBody != `{"status":410}` {
		t.Fatalf("%s", r.rawBody)
	}
	tok := e.lpOpen(url.Values{"vsn": {"2.0.0"}, "token": {"bogus"}})
	if tok == "bogus" {
		t.Fatal("token reused")
	}
	// The header token wins over a stale query token.
	e.lpDo("POST", v2, "", "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, http.Header{"X-Phoenix-Longpoll-Token": {tok}})
	r = e.lpDo("GET", v2, "stale", "", "", http.Header{"X-Phoenix-Longpoll-Token": {tok}})
	if r.status() != 200 || len(r.messages(t)) != 1 {
		t.Fatalf("%s", r.rawBody)
	}
}

// OPTIONS preflight and other methods.
func TestLPOptions(t *testing.T) {
	e := newEnv(t, nil)
	r := e.lpDo("OPTIONS", v2, "", "", "", http.Header{"Access-Control-Request-Headers": {"x-phoenix-authtoken"}})
	if r.code != 200 || r.rawBody != "" || r.header.Get("Access-Control-Allow-Origin") != "*" ||
		r.header.Get("Access-Control-Allow-Methods") != "get, post, options" ||
		r.header.Get("Access-Control-Allow-Headers") != "x-phoenix-authtoken" ||
		r.header.Get("Access-Control-Max-Age") != "3600" {
		t.Fatalf("%d %v %q", r.code, r.header, r.rawBody)
	}
	r = e.lpDo("PUT", v2, "", "", "", nil)
	if r.code != 400 {
		t.Fatalf("PUT: %d", r.code)
	}
}

// Refusals answer HTTP 200 with body status
// 403 (the origin check also before OPTIONS).
func TestLongPollRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"//good.example"} })
	for _, tc := range []struct {
		method string
		params url.Values
		hdr    http.Header
		status int
	}{
		{"GET", url.Values{"vsn": {"3.0.0"}}, nil, 403},
		{"GET", url.Values{"vsn": {"2.1.0"}}, nil, 403},
		{"GET", url.Values{"vsn": {"2.0.0"}, "refuse": {"1"}}, nil, 403},
		{"GET", url.Values{"vsn": {"2.0.0"}, "refuse": {"429"}}, nil, 403},
		{"GET", v2, http.Header{"Origin": {"https://evil.example"}}, 403},
		{"OPTIONS", v2, http.Header{"Origin": {"https://evil.example"}}, 403},
		{"GET", v2, http.Header{"Origin": {"https://good.example"}}, 410},
	} {
		r := e.lpDo(tc.method, tc.params, "", "", "", tc.hdr)
		r.checkHeaders(t)
		if r.status() != tc.status {
			t.Errorf("%s %v %v: %s", tc.method, tc.params, tc.hdr, r.rawBody)
		}
	}
}

// NDJSON batches in order, stale join_refs ignored, base64
// binary lines accepted, lines after the first 100 ignored.
func TestLongPollNDJSON(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.lpOpen(v2)
	bin := append([]byte{0, 1, 1, 6, 4}, "1xroom:becho"...)
	bin = append(bin, 1, 2, 3)
	body := strings.Join([]string{
		`["1","1","room:b","phx_join",{}]`,
		`["0","2","room:b","echo",{"stale":1}]`,
		base64.StdEncoding.EncodeToString(bin),
		`["1","3","room:b","echo",{"n":3}]`,
	}, "\n")
	r := e.lpDo("POST", v2, tok, "application/x-ndjson", body, nil)
	if r.rawBody != `{"status":200}` {
		t.Fatalf("%s", r.rawBody)
	}
	r = e.lpDo("GET", v2, tok, "", "", nil)
	// The binary echo's binary reply cannot go over long-poll: dropped.
	if got, want := r.messages(t), canonAll(t,
		`["1","1","room:b","phx_reply",{"status":"ok","response":{}}]`,
		`["1","3","room:b","phx_reply",{"status":"ok","response":{"n":3}}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	var lines []string
	for i := range 150 {
		lines = append(lines, fmt.Sprintf(`[null,"%d","phoenix","heartbeat",{}]`, i))
	}
	e.lpDo("POST", v2, tok, "application/x-ndjson", strings.Join(lines, "\n"), nil)
	r = e.lpDo("GET", v2, tok, "", "", nil)
	if n := len(r.messages(t)); n != 100 {
		t.Fatalf("%d replies, want 100", n)
	}
}

// A malformed frame or an invalid base64 line ends the session (HTTP 400);
// later requests see it gone.
func TestLPMalformedEndsSession(t *testing.T) {
	for _, body := range []string{"!!!not base64", `["1","1"]`, "AAE="} {
		e := newEnv(t, nil)
		tok := e.lpOpen(v2)
		e.lpDo("POST", v2, tok, "application/x-ndjson", `["1","1","room:m","phx_join",{}]`, nil)
		r := e.lpDo("POST", v2, tok, "application/x-ndjson", body, nil)
		if r.code != 400 {
			t.Fatalf("%q: %d %s", body, r.code, r.rawBody)
		}
		e.ch.waitTerminated(t, 1)
		waitFor(t, func() bool { return e.srv.Connections() == 0 })
		r = e.lpDo("POST", v2, tok, "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, nil)
		if r.rawBody != `{"status":410}` {
			t.Fatalf("after: %s", r.rawBody)
		}
	}
}

// A session without polls ends and its channels terminate.
func TestLongPollInactiveSession(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LongPollWindow = 100 * time.Millisecond })
	tok := e.lpOpen(v2)
	e.lpDo("POST", v2, tok, "application/x-ndjson", `["1","1","room:i","phx_join",{}]`, nil)
	if got := e.ch.waitTerminated(t, 1); got[0] != "room:i:closed" {
		t.Fatalf("%v", got)
	}
	r := e.lpDo("POST", v2, tok, "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, nil)
	if r.rawBody != `{"status":410}` {
		t.Fatalf("%s", r.rawBody)
	}
}

// Disconnect ends long-poll sessions; a waiting poll gets 410.
func TestLongPollDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.lpOpen(url.Values{"vsn": {"2.0.0"}, "id": {"u:1"}})
	done := make(chan lpResp, 1)
	go func() { done <- e.lpDo("GET", v2, tok, "", "", nil) }()
	time.Sleep(50 * time.Millisecond)
	if n := e.srv.Disconnect("u:1"); n != 1 {
		t.Fatalf("Disconnect %d", n)
	}
	if r := <-done; r.status() != 410 {
		t.Fatalf("%s", r.rawBody)
	}
}

// A V1 long-poll session speaks V1 (whole-body JSON POSTs: an ndjson line
// not starting with '[' is base64).
func TestLPV1(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.lpOpen(nil)
	r := e.lpDo("POST", nil, tok, "application/json", `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}`, nil)
	if r.rawBody != `{"status":200}` {
		t.Fatalf("%s", r.rawBody)
	}
	r = e.lpDo("GET", nil, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t, `{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
}
