package phx

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// connect_info, over WebSocket and long-poll. Phoenix hands the
// socket's connect/3 an opt-in connect_info map (x_headers,
// sec_websocket_headers, trace_context_headers, peer_data, uri,
// user_agent, session, custom keys). phx's equivalent is *ConnectInfo:
// Config.Connect gets the upgrade request (or the long-poll GET that
// creates the session) itself — every header, the peer address, the URL —
// plus the query parameters, transport, negotiated vsn and auth token.
// These tests check that each piece Phoenix offers reaches Connect.

// seenConnect is what a Connect saw (copied: the request must not be
// kept).
type seenConnect struct {
	header    http.Header
	remote    string
	host      string
	path      string
	rawQuery  string
	params    url.Values
	transport string
	vsn       string
	authToken string
	userAgent string
	tls       bool
}

// recordConnect returns a Connect that records what it saw on seen and
// accepts (assigns: the "user" param), refusing when refuse says so.
func recordConnect(seen chan<- seenConnect, refuse func(*ConnectInfo) error) func(context.Context, *ConnectInfo) (Identity, error) {
	return func(_ context.Context, info *ConnectInfo) (Identity, error) {
		r := info.Request
		seen <- seenConnect{
			header:    r.Header.Clone(),
			remote:    r.RemoteAddr,
			host:      r.Host,
			path:      r.URL.Path,
			rawQuery:  r.URL.RawQuery,
			params:    info.Params,
			transport: info.Transport,
			vsn:       info.Vsn,
			authToken: info.AuthToken,
			userAgent: r.UserAgent(),
			tls:       r.TLS != nil,
		}
		if refuse != nil {
			if err := refuse(info); err != nil {
				return Identity{}, err
			}
		}
		return Identity{Assigns: info.Params.Get("user")}, nil
	}
}

func nextSeen(t *testing.T, seen <-chan seenConnect) seenConnect {
	t.Helper()
	select {
	case s := <-seen:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("Connect not called")
		return seenConnect{}
	}
}

// xHeaders returns the x-* headers of h (Phoenix's x_headers).
func xHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-") {
			out[strings.ToLower(k)] = strings.Join(v, ",")
		}
	}
	return out
}

// newInfoEnv starts a server whose Connect records on the returned
// channel.
func newInfoEnv(t *testing.T, refuse func(*ConnectInfo) error) (*testEnv, chan seenConnect) {
	t.Helper()
	seen := make(chan seenConnect, 8)
	e := newEnv(t, func(c *Config) { c.Connect = recordConnect(seen, refuse) })
	return e, seen
}

// dialWS dials the test server's WebSocket with headers and a dialer of
// our own.
func (e *testEnv) dialWS(d *websocket.Dialer, params url.Values, hdr http.Header) *websocket.Conn {
	e.t.Helper()
	ws, resp, err := d.Dial(e.wsURL("/socket/websocket", params), hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	e.t.Cleanup(func() { ws.Close() })
	return ws
}

// X-headers — every X-* header of the upgrade request reaches
// Connect, repeated headers included, and nothing else is made up.
func TestWebSocketConnectInfoXHeaders(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	hdr := http.Header{
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Proto": {"https"},
		"X-Request-Id":      {"req-1"},
		"X-Multi":           {"a", "b"},
		"Not-X":             {"n"},
	}
	e.dialWS(websocket.DefaultDialer, v2, hdr)
	got := xHeaders(nextSeen(t, seen).header)
	want := map[string]string{
		"x-forwarded-for":   "203.0.113.7",
		"x-forwarded-proto": "https",
		"x-request-id":      "req-1",
		"x-multi":           "a,b",
	}
	if len(got) != len(want) {
		t.Fatalf("x-headers %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("x-headers %v, want %v", got, want)
		}
	}
}

// Sec-WebSocket headers — Sec-WebSocket-Key, -Version, -Protocol
// (the offered list, auth token entry included) and -Extensions reach
// Connect as the client sent them.
func TestWebSocketConnectInfoSecWebSocketHeaders(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	d := websocket.Dialer{
		Subprotocols:      []string{"phoenix", "base64url.bearer.phx.dG9r"},
		EnableCompression: true,
	}
	ws := e.dialWS(&d, v2, nil)
	s := nextSeen(t, seen)
	h := s.header
	if h.Get("Sec-Websocket-Key") == "" || h.Get("Sec-Websocket-Version") != "13" {
		t.Fatalf("key/version: %v", h)
	}
	if got := h.Get("Sec-Websocket-Protocol"); got != "phoenix, base64url.bearer.phx.dG9r" {
		t.Fatalf("protocol header %q", got)
	}
	if got := h.Get("Sec-Websocket-Extensions"); !strings.Contains(got, "permessage-deflate") {
		t.Fatalf("extensions header %q", got)
	}
	if s.authToken != "tok" {
		t.Fatalf("auth token %q", s.authToken)
	}
	if ws.Subprotocol() != "phoenix" {
		t.Fatalf("selected subprotocol %q", ws.Subprotocol())
	}
}

// Trace context headers — traceparent and tracestate reach
// Connect.
func TestWebSocketConnectInfoTraceContext(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e.dialWS(websocket.DefaultDialer, v2, http.Header{"Traceparent": {tp}, "Tracestate": {"congo=t61rcWkgMzE"}})
	h := nextSeen(t, seen).header
	if h.Get("traceparent") != tp || h.Get("tracestate") != "congo=t61rcWkgMzE" {
		t.Fatalf("trace headers %v", h)
	}
}

// Peer data — the request's RemoteAddr is the client's own address
// (ip:port of the TCP connection).
func TestWebSocketConnectInfoPeerData(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	ws := e.dialWS(websocket.DefaultDialer, v2, nil)
	s := nextSeen(t, seen)
	if s.remote != ws.LocalAddr().String() {
		t.Fatalf("RemoteAddr %q, client address %q", s.remote, ws.LocalAddr())
	}
	host, port, err := net.SplitHostPort(s.remote)
	if err != nil || net.ParseIP(host) == nil || port == "" || port == "0" {
		t.Fatalf("RemoteAddr %q: %v", s.remote, err)
	}
}

// URI — host, path and query of the upgrade request, and the
// parameters (user params first, then vsn, as phoenix.js sends them)
// with repeated keys kept. phx does not nest "a[b]" keys as Plug does:
// they arrive as flat keys.
func TestWebSocketConnectInfoURI(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	raw := "token=abc&user%5Bname%5D=jo%20e&tag=a&tag=b&vsn=2.0.0"
	ws, _, err := websocket.DefaultDialer.Dial(e.wsURL("/socket/websocket", nil)+"?"+raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	s := nextSeen(t, seen)
	u, _ := url.Parse(e.http.URL)
	if s.host != u.Host || s.path != "/socket/websocket" || s.rawQuery != raw || s.tls {
		t.Fatalf("uri: host %q path %q query %q tls %v", s.host, s.path, s.rawQuery, s.tls)
	}
	if s.params.Get("token") != "abc" || s.params.Get("user[name]") != "jo e" ||
		!slices.Equal(s.params["tag"], []string{"a", "b"}) || s.params.Get("vsn") != "2.0.0" {
		t.Fatalf("params %v", s.params)
	}
	if s.transport != "websocket" || s.vsn != "2.0.0" {
		t.Fatalf("transport %q vsn %q", s.transport, s.vsn)
	}
	// No vsn: V1, and Vsn says so.
	e.dialWS(websocket.DefaultDialer, url.Values{"a": {"1"}}, nil)
	if s := nextSeen(t, seen); s.vsn != "1.0.0" || s.params.Get("a") != "1" {
		t.Fatalf("vsn %q params %v", s.vsn, s.params)
	}
}

// User agent — the upgrade request's User-Agent reaches Connect.
func TestWebSocketConnectInfoUserAgent(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	e.dialWS(websocket.DefaultDialer, v2, http.Header{"User-Agent": {"Mozilla/5.0 (phx-test)"}})
	if s := nextSeen(t, seen); s.userAgent != "Mozilla/5.0 (phx-test)" {
		t.Fatalf("user agent %q", s.userAgent)
	}
}

// Session and custom keys. Phoenix reads the session cookie only
// with a valid _csrf_token parameter. phx has no session store: Connect
// gets the request's cookies and the _csrf_token parameter and applies
// that rule itself (here: cookie "_app_key" must be present and
// "_csrf_token" must match it); custom values are whatever the Connect
// closure captured, and reach the channels as Identity.Assigns.
func TestWebSocketConnectInfoSessionAndCustom(t *testing.T) {
	const custom = "static-value"
	e := newEnv(t, func(c *Config) {
		c.Connect = func(_ context.Context, info *ConnectInfo) (Identity, error) {
			ck, err := info.Request.Cookie("_app_key")
			if err != nil {
				return Identity{}, errors.New("no session cookie")
			}
			if csrf := info.Params.Get("_csrf_token"); csrf == "" || csrf != "csrf-"+ck.Value {
				return Identity{}, errors.New("invalid CSRF token")
			}
			return Identity{ID: "session:" + ck.Value, Assigns: map[string]string{"session": ck.Value, "custom": custom}}, nil
		}
	})
	cookie := http.Header{"Cookie": {"_app_key=s1; other=x"}}
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		params []string
		status int
	}{
		{"cookie and csrf", cookie, []string{"_csrf_token", "csrf-s1"}, 101},
		{"cookie, bad csrf", cookie, []string{"_csrf_token", "csrf-s2"}, 403},
		{"cookie, no csrf", cookie, nil, 403},
		{"csrf, no cookie", nil, []string{"_csrf_token", "csrf-s1"}, 403},
	} {
		c, resp, err := e.tryDial("2.0.0", tc.hdr, tc.params...)
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		if got != tc.status {
			t.Fatalf("%s: HTTP %d (%v), want %d", tc.name, got, err, tc.status)
		}
		if c == nil {
			continue
		}
		c.sendText(`["1","1","room:s","phx_join",{}]`)
		c.sendText(`["1","2","room:s","assigns",{}]`)
		c.expect(
			`["1","1","room:s","phx_reply",{"status":"ok","response":{}}]`,
			`["1","2","room:s","phx_reply",{"status":"ok","response":{"assigns":{"custom":"static-value","session":"s1"},"id":"session:s1"}}]`,
		)
	}
}

// lpClient is an HTTP client that records the local address of every
// connection it opens (the peer address the server sees).
func lpClient(t *testing.T) (*http.Client, <-chan string) {
	addrs := make(chan string, 16)
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				addrs <- c.LocalAddr().String()
			}
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, addrs
}

// lpGet opens a long-poll session with a GET of params and hdr; it returns
// the body's status and token.
func (e *testEnv) lpGet(client *http.Client, params url.Values, hdr http.Header) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.http.URL+"/socket/longpoll?"+params.Encode(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status int    `json:"status"`
		Token  string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatal(err)
	}
	return body.Status, body.Token
}

// X-headers of the long-poll GET that creates the session reach
// Connect; the session's later requests do not run Connect again.
func TestLongPollConnectInfoXHeaders(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	status, tok := e.lpGet(http.DefaultClient, v2, http.Header{"X-Forwarded-For": {"198.51.100.2"}, "X-App": {"1"}})
	if status != 410 || tok == "" {
		t.Fatalf("open: %d %q", status, tok)
	}
	got := xHeaders(nextSeen(t, seen).header)
	if len(got) != 2 || got["x-forwarded-for"] != "198.51.100.2" || got["x-app"] != "1" {
		t.Fatalf("x-headers %v", got)
	}
	e.lpDo("POST", v2, tok, "application/x-ndjson", `[null,"1","phoenix","heartbeat",{}]`, http.Header{"X-Other": {"2"}})
	if r := e.lpDo("GET", v2, tok, "", "", http.Header{"X-Other": {"3"}}); r.status() != 200 {
		t.Fatalf("poll: %s", r.rawBody)
	}
	select {
	case s := <-seen:
		t.Fatalf("Connect ran again for a session request: %v", s.header)
	default:
	}
}

// Trace context headers of the long-poll GET reach Connect.
func TestLongPollConnectInfoTraceContext(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	e.lpGet(http.DefaultClient, v2, http.Header{"Traceparent": {tp}, "Tracestate": {"rojo=00f067aa0ba902b7"}})
	h := nextSeen(t, seen).header
	if h.Get("traceparent") != tp || h.Get("tracestate") != "rojo=00f067aa0ba902b7" {
		t.Fatalf("trace headers %v", h)
	}
}

// Peer data — the long-poll GET's RemoteAddr is the client's
// address.
func TestLongPollConnectInfoPeerData(t *testing.T) {
	e, seen := newInfoEnv(t, nil)
	client, addrs := lpClient(t)
	if status, _ := e.lpGet(client, v2, nil); status != 410 {
		t.Fatalf("open: %d", status)
	}
	if s, local := nextSeen(t, seen), <-addrs; s.remote != local {
		t.Fatalf("RemoteAddr %q, client address %q", s.remote, local)
	}
}

// URI — path, host and query of the long-poll GET, the params,
// transport "longpoll", the negotiated vsn and the X-Phoenix-AuthToken
// header as AuthToken; a refused Connect gives body status 403.
func TestLongPollConnectInfoURI(t *testing.T) {
	e, seen := newInfoEnv(t, func(info *ConnectInfo) error {
		if info.AuthToken != "lp-token" {
			return errors.New("bad token")
		}
		return nil
	})
	params := url.Values{"user": {"ann"}, "vsn": {"2.0.0"}, "tag": {"a", "b"}}
	status, tok := e.lpGet(http.DefaultClient, params, http.Header{"X-Phoenix-Authtoken": {"lp-token"}})
	if status != 410 || tok == "" {
		t.Fatalf("open: %d", status)
	}
	s := nextSeen(t, seen)
	u, _ := url.Parse(e.http.URL)
	if s.host != u.Host || s.path != "/socket/longpoll" || s.rawQuery != params.Encode() {
		t.Fatalf("uri: host %q path %q query %q", s.host, s.path, s.rawQuery)
	}
	if s.params.Get("user") != "ann" || !slices.Equal(s.params["tag"], []string{"a", "b"}) ||
		s.transport != "longpoll" || s.vsn != "2.0.0" || s.authToken != "lp-token" {
		t.Fatalf("info %+v", s)
	}
	// The session carries the assigns Connect returned.
	e.lpDo("POST", v2, tok, "application/x-ndjson", "[\"1\",\"1\",\"room:u\",\"phx_join\",{}]\n[\"1\",\"2\",\"room:u\",\"assigns\",{}]", nil)
	r := e.lpDo("GET", v2, tok, "", "", nil)
	if got, want := r.messages(t), canonAll(t,
		`["1","1","room:u","phx_reply",{"status":"ok","response":{}}]`,
		`["1","2","room:u","phx_reply",{"status":"ok","response":{"assigns":"ann","id":""}}]`); !slices.Equal(got, want) {
		t.Fatalf("messages %v want %v", got, want)
	}
	// Without the header token: refused, body status 403.
	if status, _ := e.lpGet(http.DefaultClient, v2, nil); status != 403 {
		t.Fatalf("refused: %d", status)
	}
	nextSeen(t, seen)
}
