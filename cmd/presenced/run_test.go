package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence/internal/logtest"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
	"github.com/gopresence/presence/web"
)

// env is a lookup over m: a key present with "" is set but empty.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// testNode is a node started in-process by startNode.
type testNode struct {
	addr string          // host:port of the HTTP listener
	out  *logtest.Buffer // stdout and stderr
	stop func() error    // cancels the node and waits for serve to return
}

// startNode parses args over environ, lets tweak adjust the options (nil:
// none), serves, and returns once the node listens. The node stops at the
// end of the test, unless stopped before.
func startNode(t *testing.T, args []string, environ map[string]string, tweak func(*options)) *testNode {
	t.Helper()
	out := &logtest.Buffer{}
	o, err := parse(append([]string{"--listen", "127.0.0.1:0", "--log-level", "warn"}, args...), env(environ), out)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(o)
	}
	addr := make(chan string, 1)
	o.onListen = func(a net.Addr) { addr <- a.String() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, o, out, out) }()
	n := &testNode{out: out}
	var once sync.Once
	var stopErr error
	n.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() { n.stop() })
	select {
	case n.addr = <-addr:
	case err := <-done:
		t.Fatalf("node did not start: %v\n%s", err, out)
	case <-time.After(15 * time.Second):
		t.Fatalf("node not listening after 15 s\n%s", out)
	}
	return n
}

// secret32 is a valid JWT secret.
const secret32 = "0123456789abcdef0123456789abcdef"

func TestFlagsFromEnvironment(t *testing.T) {
	o, err := parse([]string{"--broadcast-period", "2s"}, env(map[string]string{
		"PRESENCE_NODE": "n7", "PRESENCE_BROADCAST_PERIOD": "1s", "PRESENCE_PERMDOWN_ON_SHUTDOWN": "true",
		"PRESENCE_NATS_URL": "nats://127.0.0.1:4222",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.node != "n7" || !o.permdownOnShutdown || o.natsURL != "nats://127.0.0.1:4222" {
		t.Fatalf("%+v", o)
	}
	if o.broadcastPeriod != 2*time.Second {
		t.Fatalf("a flag must override its environment variable: %v", o.broadcastPeriod)
	}
	if _, err := parse(nil, env(map[string]string{"PRESENCE_FLUSH_INTERVAL": "soon"}), &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "PRESENCE_FLUSH_INTERVAL") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, err := parse([]string{"--nats-url", "x", "--redis-url", "y"}, env(nil), &bytes.Buffer{}); err == nil {
		t.Fatal("two buses accepted")
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if _, err := parse([]string{"--help"}, env(nil), &out); err != errHelp {
		t.Fatalf("%v", err)
	}
	for _, f := range []string{"listen", "node", "nats-url", "nats-embed", "nats-listen", "nats-cluster-listen",
		"nats-routes", "redis-url", "broadcast-period", "down-period", "permdown-period", "flush-interval",
		"permdown-on-shutdown", "jwt-secret", "insecure", "origins", "PRESENCE_<FLAG>"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
}

// Dev mode (identity taken on trust from user_id) only on loopback.
func TestDevModeOnlyOnLoopback(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0"}, env(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dev mode on 0.0.0.0: %v", err)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:4000": true, "localhost:1": true, "[::1]:4000": true,
		"0.0.0.0:4000": false, ":4000": false, "10.0.0.1:1": false} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}

// A secret set to "" (flag or environment) is an error, not dev mode.
func TestEmptySecretIsAnError(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"PRESENCE_JWT_SECRET": ""}, "PRESENCE_JWT_SECRET is set but empty"},
		{[]string{"--jwt-secret", ""}, nil, "--jwt-secret is set but empty"},
		{[]string{"--jwt-secret="}, nil, "--jwt-secret is set but empty"},
		{[]string{"--jwt-secret-file", ""}, nil, "--jwt-secret-file is set but empty"},
		{nil, map[string]string{"PRESENCE_JWT_SECRET_FILE": ""}, "PRESENCE_JWT_SECRET_FILE is set but empty"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), c.args, env(c.env), &out, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: %v, want %q", c.args, c.env, err, c.want)
		}
		if strings.Contains(out.String(), devModeWarning) {
			t.Errorf("%q %v: started dev mode", c.args, c.env)
		}
	}
}

func TestJWTSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(secret32+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parse([]string{"--jwt-secret-file", file}, env(nil), &bytes.Buffer{})
	if err != nil || o.jwtSecret != secret32 {
		t.Fatalf("--jwt-secret-file: %q, %v", o.jwtSecret, err)
	}
	o, err = parse(nil, env(map[string]string{"PRESENCE_JWT_SECRET_FILE": file}), &bytes.Buffer{})
	if err != nil || o.jwtSecret != secret32 {
		t.Fatalf("PRESENCE_JWT_SECRET_FILE: %q, %v", o.jwtSecret, err)
	}
	o, err = parse(nil, env(map[string]string{"PRESENCE_JWT_SECRET": secret32}), &bytes.Buffer{})
	if err != nil || o.jwtSecret != secret32 {
		t.Fatalf("PRESENCE_JWT_SECRET: %q, %v", o.jwtSecret, err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--jwt-secret", "short"}, "at least 32"},
		{[]string{"--jwt-secret", secret32[:31]}, "at least 32"},
		{[]string{"--jwt-secret-file", empty}, "is empty"},
		{[]string{"--jwt-secret-file", filepath.Join(dir, "missing")}, "--jwt-secret-file"},
		{[]string{"--jwt-secret", secret32, "--jwt-secret-file", file}, "choose one"},
	} {
		if _, err := parse(c.args, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
}

// Dev mode says so, on stderr outside the log and in the log.
func TestDevModeWarns(t *testing.T) {
	n := startNode(t, []string{"--log-level", "error"}, nil, nil)
	if got := n.out.String(); !strings.Contains(got, devModeWarning+"\n") {
		t.Fatalf("no dev mode warning on stderr:\n%s", got)
	}
	n = startNode(t, nil, nil, nil)
	if got := n.out.String(); !strings.Contains(got, "level=WARN msg=\""+devModeWarning) {
		t.Fatalf("no dev mode warning in the log:\n%s", got)
	}
	n = startNode(t, []string{"--jwt-secret", secret32}, nil, nil)
	if got := n.out.String(); strings.Contains(got, "DEV MODE") {
		t.Fatalf("dev mode warning with a secret:\n%s", got)
	}
}

// The API answers local requests only: loopback peer, loopback Host, no
// forwarding header.
func TestAPIIsLocalOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	for _, c := range []struct {
		peer, host string
		header     string
		want       int
	}{
		{"127.0.0.1:5000", "127.0.0.1:4000", "", 200},
		{"127.0.0.1:5000", "localhost:4000", "", 200},
		{"127.0.0.1:5000", "LOCALHOST", "", 200},
		{"127.0.0.1:5000", "127.3.4.5", "", 200},
		{"[::1]:5000", "[::1]:4000", "", 200},
		{"[::1]:5000", "[::1]", "", 200},
		{"10.0.0.7:5000", "127.0.0.1:4000", "", 403},
		{"[2001:db8::1]:5000", "localhost", "", 403},
		{"127.0.0.1:5000", "example.com", "", 403},
		{"127.0.0.1:5000", "example.com:4000", "", 403},
		{"127.0.0.1:5000", "localhost.example.com", "", 403},
		{"127.0.0.1:5000", "", "", 403},
		{"127.0.0.1:5000", "10.0.0.1:4000", "", 403},
		{"127.0.0.1:5000", "localhost:4000", "X-Forwarded-For", 403},
		{"127.0.0.1:5000", "localhost:4000", "x-forwarded-host", 403},
		{"127.0.0.1:5000", "localhost:4000", "X-Forwarded-Proto", 403},
		{"127.0.0.1:5000", "localhost:4000", "X-Forwarded-Anything", 403},
		{"127.0.0.1:5000", "localhost:4000", "forwarded", 403},
		{"127.0.0.1:5000", "localhost:4000", "X-Real-IP", 200},
	} {
		r := httptest.NewRequest("GET", "/api/v1/cluster", nil)
		r.RemoteAddr, r.Host = c.peer, c.host
		if c.header != "" {
			r.Header[c.header] = []string{"x"} // as sent, not canonicalized
		}
		w := httptest.NewRecorder()
		localOnly(ok).ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("peer %s Host %q header %q: %d, want %d", c.peer, c.host, c.header, w.Code, c.want)
			continue
		}
		if c.want == 403 {
			var body struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" ||
				!strings.HasPrefix(w.Header().Get("content-type"), "application/json") {
				t.Errorf("peer %s Host %q header %q: body %q (%v)", c.peer, c.host, c.header, w.Body, err)
			}
		}
	}

	// Both endpoints, end to end.
	n := startNode(t, nil, nil, nil)
	for _, path := range []string{"/api/v1/cluster", "/api/v1/topics/room:lobby"} {
		get := func(host, header string) int {
			req, _ := http.NewRequest("GET", "http://"+n.addr+path, nil)
			if host != "" {
				req.Host = host
			}
			if header != "" {
				req.Header.Set(header, "203.0.113.9")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get("", ""); code != 200 {
			t.Errorf("%s from loopback: %d", path, code)
		}
		if code := get("evil.example:80", ""); code != 403 {
			t.Errorf("%s with Host evil.example: %d", path, code)
		}
		if code := get("", "X-Forwarded-For"); code != 403 {
			t.Errorf("%s with X-Forwarded-For: %d", path, code)
		}
		if code := get("", "Forwarded"); code != 403 {
			t.Errorf("%s with Forwarded: %d", path, code)
		}
	}
}

// getKeepAlive sends GET path on c (keeping the connection open) and reads
// the response.
func getKeepAlive(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return resp
}

// An idle keep-alive connection is closed after the idle timeout; a header
// over maxHeaderBytes (net/http allows 4 KiB of slack) is refused.
func TestHTTPTimeouts(t *testing.T) {
	if defaultHTTPTimeouts != (httpTimeouts{10 * time.Second, 30 * time.Second, 30 * time.Second, 60 * time.Second}) {
		t.Fatalf("default timeouts %+v", defaultHTTPTimeouts)
	}
	n := startNode(t, nil, nil, func(o *options) { o.http.idle = 300 * time.Millisecond })
	c, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if resp := getKeepAlive(t, c, br, "/healthz"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d close=%v", resp.StatusCode, resp.Close)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection not closed by the server: %v after %v", err, time.Since(start))
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}

	req, _ := http.NewRequest("GET", "http://"+n.addr+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", maxHeaderBytes+8192))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a %d-byte header: %d", maxHeaderBytes+8192, resp.StatusCode)
	}
}

// --max-connections caps the connections served at once: one more waits
// until one of them closes.
func TestMaxConnections(t *testing.T) {
	if d := defaultMaxConnections(); d < minConnectionsFlag {
		t.Fatalf("default --max-connections %d", d)
	}
	if _, err := parse([]string{"--max-connections", "0"}, env(nil), &bytes.Buffer{}); err == nil {
		t.Fatal("--max-connections 0 accepted")
	}
	n := startNode(t, []string{"--max-connections", "2"}, nil, nil)
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		getKeepAlive(t, c, bufio.NewReader(c), "/healthz")
		conns = append(conns, c)
	}
	third, err := net.Dial("tcp", n.addr) // the kernel accepts it into the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	br := bufio.NewReader(third)
	fmt.Fprintf(third, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.ReadByte(); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection was served over --max-connections 2: %v", err)
	}
	conns[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.Peek(1); err != nil {
		t.Fatalf("the waiting connection is not served after one closed: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
}

// helpOf is the --help text of one flag.
func helpOf(help, flag string) string {
	for _, block := range strings.Split(help, "\n  -") {
		if name, _, _ := strings.Cut(block, " "); strings.TrimSpace(name) == flag {
			return block
		}
	}
	return ""
}

// The limit flags default to phx's defaults, say so in --help, and reach
// phx.Config.
func TestPhxLimitFlags(t *testing.T) {
	o, err := parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got := o.phxConfig()
	want := phx.Config{AllowedOrigins: loopbackOrigins, OriginHint: originHint,
		LongPoll: true, LongPollMaxBody: phx.DefaultLongPollMaxBody, MaxQueueBytes: phx.DefaultMaxQueueBytes,
		MaxConnsPerIP: phx.DefaultMaxConnsPerIP, MaxConnsPerID: phx.DefaultMaxConnsPerID, MaxTopicLen: phx.DefaultMaxTopicLen}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	o, err = parse([]string{"--max-queue-bytes", "1000", "--max-conns-per-ip", "-1", "--max-conns-per-user", "3",
		"--max-topic-len", "40", "--longpoll-max-body", "5000", "--trust-forwarded-proto", "--origins", "https://a.example, //b.example"},
		env(map[string]string{"PRESENCE_LONGPOLL": "false"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got = o.phxConfig()
	want = phx.Config{AllowedOrigins: []string{"https://a.example", "//b.example"}, OriginHint: originHint,
		LongPollMaxBody: 5000, MaxQueueBytes: 1000,
		MaxConnsPerIP: -1, MaxConnsPerID: 3, MaxTopicLen: 40, TrustForwardedProto: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("set:\n got %+v\nwant %+v", got, want)
	}
	for _, bad := range [][]string{{"--max-queue-bytes", "0"}, {"--max-topic-len", "-1"}, {"--longpoll-max-body", "0"},
		{"--max-conns-per-ip", "0"}, {"--max-conns-per-user", "0"}} {
		if _, err := parse(bad, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	var help bytes.Buffer
	parse([]string{"--help"}, env(nil), &help)
	for flag, def := range map[string]any{"max-queue-bytes": phx.DefaultMaxQueueBytes, "max-conns-per-ip": phx.DefaultMaxConnsPerIP,
		"max-conns-per-user": phx.DefaultMaxConnsPerID, "max-topic-len": phx.DefaultMaxTopicLen,
		"longpoll-max-body": phx.DefaultLongPollMaxBody} {
		if !strings.Contains(helpOf(help.String(), flag), fmt.Sprintf("(default %d)", def)) {
			t.Errorf("--help does not give --%s with its default %d", flag, def)
		}
	}
	if !strings.Contains(help.String(), "-trust-forwarded-proto") {
		t.Error("--help does not mention --trust-forwarded-proto")
	}
}

// The demo page is served with its security headers, and not at all with
// --demo=false.
func TestDemoFlag(t *testing.T) {
	get := func(n *testNode, path string) *http.Response {
		resp, err := http.Get("http://" + n.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	n := startNode(t, nil, nil, nil)
	if resp := get(n, "/"); resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != web.ContentSecurityPolicy ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("demo page: %d %v", resp.StatusCode, resp.Header)
	}
	n = startNode(t, []string{"--demo=false"}, nil, nil)
	for _, path := range []string{"/", "/app.js", "/index.html"} {
		if resp := get(n, path); resp.StatusCode != 404 {
			t.Errorf("--demo=false: GET %s: %d", path, resp.StatusCode)
		}
	}
	if resp := get(n, "/healthz"); resp.StatusCode != 200 {
		t.Errorf("--demo=false: /healthz: %d", resp.StatusCode)
	}
	n = startNode(t, nil, map[string]string{"PRESENCE_DEMO": "false"}, nil)
	if resp := get(n, "/"); resp.StatusCode != 404 {
		t.Errorf("PRESENCE_DEMO=false: GET /: %d", resp.StatusCode)
	}
}

// The presence channel's limit flags default to presencechannel's defaults,
// say so in --help, and reach presencechannel.Config.
func TestChannelLimitFlags(t *testing.T) {
	o, err := parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got := o.channelConfig()
	want := presencechannel.Config{Topics: []string{"room:*"}, Secret: []byte{}, MaxKeyLen: presencechannel.DefaultMaxKeyLen,
		MaxMetaBytes: presencechannel.DefaultMaxMetaBytes, MaxMetasPerKey: presencechannel.DefaultMaxMetasPerKey,
		MaxBroadcastBytes: presencechannel.DefaultMaxBroadcastBytes, BroadcastRate: presencechannel.DefaultBroadcastRate,
		BroadcastBurst: presencechannel.DefaultBroadcastBurst, UpdateRate: presencechannel.DefaultUpdateRate,
		UpdateBurst: presencechannel.DefaultUpdateBurst}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	o, err = parse([]string{"--jwt-secret", secret32, "--jwt-require-exp", "--max-meta-bytes", "100", "--max-metas-per-key", "-1",
		"--max-key-len", "20", "--max-broadcast-bytes", "300", "--broadcast-rate", "0.5", "--broadcast-burst", "2",
		"--update-rate", "-1", "--update-burst", "3", "--topics", "chat:*"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got = o.channelConfig()
	want = presencechannel.Config{Topics: []string{"chat:*"}, Secret: []byte(secret32), RequireExp: true, MaxKeyLen: 20,
		MaxMetaBytes: 100, MaxMetasPerKey: -1, MaxBroadcastBytes: 300, BroadcastRate: 0.5, BroadcastBurst: 2,
		UpdateRate: -1, UpdateBurst: 3}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("set:\n got %+v\nwant %+v", got, want)
	}
	for _, bad := range [][]string{{"--max-meta-bytes", "0"}, {"--max-metas-per-key", "0"}, {"--max-key-len", "0"},
		{"--max-broadcast-bytes", "0"}, {"--broadcast-rate", "0"}, {"--update-rate", "0"}, {"--broadcast-burst", "0"},
		{"--update-burst", "-2"}} {
		if _, err := parse(bad, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	var help bytes.Buffer
	parse([]string{"--help"}, env(nil), &help)
	for flag, def := range map[string]any{"max-meta-bytes": presencechannel.DefaultMaxMetaBytes,
		"max-metas-per-key": presencechannel.DefaultMaxMetasPerKey, "max-key-len": presencechannel.DefaultMaxKeyLen,
		"max-broadcast-bytes": presencechannel.DefaultMaxBroadcastBytes, "broadcast-rate": presencechannel.DefaultBroadcastRate,
		"broadcast-burst": presencechannel.DefaultBroadcastBurst, "update-rate": presencechannel.DefaultUpdateRate,
		"update-burst": presencechannel.DefaultUpdateBurst} {
		if !strings.Contains(helpOf(help.String(), flag), fmt.Sprintf("(default %v)", def)) {
			t.Errorf("--help does not give --%s with its default %v", flag, def)
		}
	}
	if helpOf(help.String(), "jwt-require-exp") == "" {
		t.Error("--help does not mention --jwt-require-exp")
	}
}

// --jwt-require-exp refuses a token without exp; one with exp is accepted.
func TestJWTRequireExp(t *testing.T) {
	n := startNode(t, []string{"--jwt-secret", secret32, "--jwt-require-exp"}, nil, nil)
	dial := func(claims string) error {
		tok := hs256(t, secret32, claims)
		ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.addr+"/socket/websocket?vsn=2.0.0&token="+tok, nil)
		if err == nil {
			ws.Close()
			return nil
		}
		return fmt.Errorf("%v (%v)", err, resp)
	}
	if err := dial(fmt.Sprintf(`{"sub":"alice","exp":%d}`, time.Now().Add(time.Hour).Unix())); err != nil {
		t.Fatalf("a token with exp: %v", err)
	}
	if err := dial(`{"sub":"alice"}`); err == nil {
		t.Fatal("a token without exp accepted under --jwt-require-exp")
	}
}

// hs256 signs claims (JSON) under secret.
func hs256(t *testing.T, secret, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(mac.Sum(nil))
}
