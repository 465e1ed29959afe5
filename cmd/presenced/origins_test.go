package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// dialOrigin opens a socket of node n with an Origin header and returns the
// HTTP status of the answer (101 when accepted).
func dialOrigin(t *testing.T, n *testNode, origin, query string) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.addr+"/socket/websocket?vsn=2.0.0&"+query, http.Header{"Origin": {origin}})
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial with Origin %q: %v", origin, err)
	}
	return resp.StatusCode
}

// In dev mode on a loopback listener, a page on any loopback origin may
// open a socket (a dev server on another port, localhost against
// 127.0.0.1); other sites still may not, and a refused origin is logged
// with the flag that allows it.
func TestDevModeAllowsLoopbackOrigins(t *testing.T) {
	n := startNode(t, nil, nil, nil)
	for _, o := range []string{"http://localhost:5173", "http://127.0.0.1:4000", "http://[::1]:8080", "https://localhost"} {
		if got := dialOrigin(t, n, o, "user_id=alice"); got != http.StatusSwitchingProtocols {
			t.Errorf("dev mode, Origin %s: HTTP %d", o, got)
		}
	}
	for _, o := range []string{"https://evil.example", "null", "http://localhost.evil.example"} {
		if got := dialOrigin(t, n, o, "user_id=alice"); got != http.StatusForbidden {
			t.Errorf("dev mode, Origin %s: HTTP %d, want 403", o, got)
		}
	}
	if out := n.out.String(); !strings.Contains(out, "origin refused") || !strings.Contains(out, "--origins") {
		t.Errorf("the refusal does not name --origins:\n%s", out)
	}
}

// With a secret, the default is same origin only.
func TestJWTModeIsSameOrigin(t *testing.T) {
	n := startNode(t, []string{"--jwt-secret", secret32}, nil, nil)
	tok := hs256(t, secret32, `{"sub":"alice"}`)
	if got := dialOrigin(t, n, "http://localhost:5173", "token="+tok); got != http.StatusForbidden {
		t.Errorf("JWT mode, another origin: HTTP %d, want 403", got)
	}
	if got := dialOrigin(t, n, "http://"+n.addr, "token="+tok); got != http.StatusSwitchingProtocols {
		t.Errorf("JWT mode, same origin: HTTP %d", got)
	}
}

// --origins '*' allows every origin, null (a file:// page) included.
func TestOriginsStarAllowsNull(t *testing.T) {
	n := startNode(t, []string{"--origins", "*"}, nil, nil)
	for _, o := range []string{"null", "https://anywhere.example", "file://"} {
		if got := dialOrigin(t, n, o, "user_id=alice"); got != http.StatusSwitchingProtocols {
			t.Errorf("--origins '*', Origin %s: HTTP %d", o, got)
		}
	}
}

// The startup line says what a new user needs to know: node, address, bus,
// identity mode, origins.
func TestStartupLine(t *testing.T) {
	n := startNode(t, []string{"--node", "n7"}, nil, nil)
	line := strings.SplitN(n.out.String(), "\n", 2)[0]
	for _, s := range []string{"presenced: node n7 listening on http://" + n.addr, "bus: in-process", "identity: dev mode", "origins: pages on localhost"} {
		if !strings.Contains(n.out.String(), s) {
			t.Errorf("startup output lacks %q: %s", s, line)
		}
	}
	j := startNode(t, []string{"--jwt-secret", secret32, "--origins", "https://app.example.com"}, nil, nil)
	for _, s := range []string{"identity: JWT", "origins: https://app.example.com"} {
		if !strings.Contains(j.out.String(), s) {
			t.Errorf("startup output lacks %q: %s", s, j.out.String())
		}
	}
}

func TestRedactURLs(t *testing.T) {
	got := redactURLs("nats://sekret@h1:4222,nats://u:pw@h2:4222")
	if strings.Contains(got, "sekret") || strings.Contains(got, "pw@") {
		t.Fatalf("redactURLs: %s", got)
	}
}
