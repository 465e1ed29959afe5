package compat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/loadtest"
	"github.com/gopresence/presence/internal/logtest"
	"github.com/gopresence/presence/internal/testenv"
)

// Bounds of every wait in the harness.
const (
	buildTimeout   = 3 * time.Minute // go build of presenced (cold cache, -race)
	healthyTimeout = 15 * time.Second
	stopTimeout    = 10 * time.Second
	clusterTimeout = 15 * time.Second // nodes see each other up
	nodeTimeout    = 60 * time.Second // one `node --test` run
	nodeTestMs     = "30000"          // --test-timeout: one Node test
)

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	testenv.Report()
	os.Exit(code)
}

// need skips t with msg when ok is false, or fails it under
// PRESENCE_REQUIRE_ALL=1 (the README's test command), where every
// integration test must run.
func need(t *testing.T, ok bool, msg string) {
	t.Helper()
	testenv.Need(t, ok, msg)
}

// requireNode returns the node binary, after checking that the npm
// dependencies are installed.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	need(t, err == nil, "node not found in PATH: the compat tests need Node.js 20+")
	for _, dep := range []string{"phoenix", "ws", "playwright-core"} {
		_, err := os.Stat(filepath.Join("node_modules", dep, "package.json"))
		need(t, err == nil, "test/compat/node_modules/"+dep+" is missing: run `cd test/compat && npm ci`")
	}
	return node
}

const chromium = "/usr/bin/chromium"

func requireChromium(t *testing.T) {
	t.Helper()
	fi, err := os.Stat(chromium)
	need(t, err == nil && fi.Mode()&0o111 != 0, chromium+" is missing: apt-get install chromium")
}

// presenced builds cmd/presenced once per test binary; with the race
// detector when the tests run with -race, so client traffic from real
// clients also exercises the server under it.
func presenced(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "presence-compat-")
		if buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "presenced")
		args := []string{"build", "-o", binary}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/gopresence/presence/cmd/presenced")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is one presenced process, restartable on the same address.
type server struct {
	name string
	bin  string
	addr string
	args []string
	out  *logtest.Buffer // every run's output

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

func (s *server) URL() string { return "http://" + s.addr }

// startServer starts presenced on a free loopback port; it is killed when
// t ends, and its output is logged if t failed.
func startServer(t *testing.T) *server {
	t.Helper()
	addr := freeAddr(t)
	return launch(t, "compat", addr, []string{"--listen", addr, "--node", "compat", "--shutdown-timeout", "3s", "--log-level", "info"})
}

// launch starts presenced with args (which must make it listen on addr);
// it is killed when t ends, and its output is logged if t failed.
func launch(t *testing.T, name, addr string, args []string) *server {
	t.Helper()
	s := &server{name: name, bin: presenced(t), addr: addr, args: args, out: &logtest.Buffer{}}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.kill()
		out := s.out.String()
		if strings.Contains(out, "DATA RACE") {
			t.Errorf("presenced %s reported a data race:\n%s", s.name, out)
		} else if t.Failed() {
			t.Logf("presenced %s output:\n%s", s.name, out)
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs presenced and waits (bounded) for /healthz; s.mu is held.
func (s *server) start() error {
	s.runs++
	fmt.Fprintf(s.out, "--- presenced run %d: %s %s\n", s.runs, s.bin, strings.Join(s.args, " "))
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(healthyTimeout)
	for {
		resp, err := client.Get(s.URL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("presenced exited (%v) before it was healthy:\n%s", cmd.ProcessState, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("presenced not healthy on %s within %v:\n%s", s.addr, healthyTimeout, s.out.String())
		}
	}
}

// stop signals presenced and waits (bounded) for it to exit; s.mu is held.
// After SIGTERM it must exit 0 within stopTimeout.
func (s *server) stop(sig syscall.Signal) error {
	if s.cmd == nil {
		return errors.New("presenced is not running")
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("presenced did not exit within %v of %v", stopTimeout, sig)
	}
	if sig == syscall.SIGTERM && s.cmd.ProcessState.ExitCode() != 0 {
		return fmt.Errorf("presenced exited with %v after SIGTERM", s.cmd.ProcessState)
	}
	return nil
}

// kill ends the current run, if any; s.mu is held.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
}

// restart stops presenced (SIGTERM: graceful; SIGKILL: a crash) and starts
// it again on the same address.
func (s *server) restart(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stop(sig); err != nil {
		return err
	}
	return s.start()
}

// halt stops presenced (SIGTERM: graceful; SIGKILL: a crash) and leaves it
// stopped.
func (s *server) halt(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return errors.New("presenced is not running")
	}
	return s.stop(sig)
}

// resume starts a halted presenced again, same address and arguments.
func (s *server) resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		return errors.New("presenced is already running")
	}
	return s.start()
}

// running reports whether the current run is alive; s.mu is held.
func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// control serves, for the Node tests (PRESENCE_CONTROL_URL), on the
// servers given (node=I picks servers[I], default 0):
//
//	POST /restart?mode=term|kill&node=I  stop presenced and start it again
//	POST /stop?mode=term|kill&node=I     stop it and leave it stopped
//	POST /start?node=I                   start a stopped one again
//
// Each answers once done: /restart and /start once presenced is healthy.
func control(t *testing.T, servers ...*server) string {
	t.Helper()
	pick := func(w http.ResponseWriter, r *http.Request) (*server, bool) {
		i := 0
		if v := r.URL.Query().Get("node"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n >= len(servers) {
				http.Error(w, fmt.Sprintf("node must be 0..%d", len(servers)-1), http.StatusBadRequest)
				return nil, false
			}
			i = n
		}
		return servers[i], true
	}
	signal := func(w http.ResponseWriter, r *http.Request) (syscall.Signal, bool) {
		switch m := r.URL.Query().Get("mode"); m {
		case "", "term":
			return syscall.SIGTERM, true
		case "kill":
			return syscall.SIGKILL, true
		default:
			http.Error(w, "mode must be term or kill", http.StatusBadRequest)
			return 0, false
		}
	}
	// handle runs op on the chosen server, under the mode's signal when
	// withSig, and answers with its outcome.
	handle := func(what string, withSig bool, op func(*server, syscall.Signal) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			s, ok := pick(w, r)
			if !ok {
				return
			}
			var sig syscall.Signal
			if withSig {
				if sig, ok = signal(w, r); !ok {
					return
				}
			}
			start := time.Now()
			if err := op(s, sig); err != nil {
				t.Errorf("harness: %s presenced %s (%v): %v", what, s.name, sig, err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if withSig {
				t.Logf("harness: presenced %s %s after %v in %v", s.name, what, sig, time.Since(start).Round(time.Millisecond))
			} else {
				t.Logf("harness: presenced %s %s in %v", s.name, what, time.Since(start).Round(time.Millisecond))
			}
			fmt.Fprintln(w, what)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /restart", handle("restarted", true, (*server).restart))
	mux.HandleFunc("POST /stop", handle("stopped", true, (*server).halt))
	mux.HandleFunc("POST /start", handle("started", false, func(s *server, _ syscall.Signal) error { return s.resume() }))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts.URL
}

// lineLog streams a process's output into the test log, line by line.
type lineLog struct {
	t    *testing.T
	mu   sync.Mutex
	part []byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.t.Log(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) > 0 {
		l.t.Log(string(l.part))
		l.part = nil
	}
}

// runNode runs `node --test` on files with env added, streaming its output
// into the test log, and fails t if any Node test failed. The run is
// bounded by nodeTimeout: then its process group gets SIGTERM (playwright
// closes its browser on SIGTERM), and SIGKILL 5 s later.
func runNode(t *testing.T, node string, env []string, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	args := append([]string{"--test", "--test-reporter=spec", "--test-timeout=" + nodeTestMs, "--test-concurrency=2"}, files...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	out := &lineLog{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	out.flush()
	if cmd.Process != nil {
		// whatever node left behind in its process group
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	switch {
	case ctx.Err() != nil:
		t.Fatalf("node --test %s: no result within %v", strings.Join(files, " "), nodeTimeout)
	case err != nil:
		t.Fatalf("node --test %s: %v (after %v)", strings.Join(files, " "), err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("node --test %s: ok in %v", strings.Join(files, " "), time.Since(start).Round(time.Millisecond))
}

// TestPhoenixJS runs the official client against presenced: the
// scenarios of phoenix.js's own Presence tests, V1/V2, long-poll next to WebSocket, broadcast
// (presence.test.mjs), an abandoned long-poll session (longpoll.test.mjs)
// and hostile clients next to phoenix.js (hostile.test.mjs), in parallel,
// and server restarts under the clients (restart.test.mjs).
func TestPhoenixJS(t *testing.T) {
	node := requireNode(t)
	t.Run("JP", func(t *testing.T) {
		s := startServer(t)
		runNode(t, node, []string{"PRESENCE_URL=" + s.URL()}, "presence.test.mjs", "longpoll.test.mjs", "hostile.test.mjs")
	})
	t.Run("restart", func(t *testing.T) {
		s := startServer(t)
		runNode(t, node, []string{"PRESENCE_URL=" + s.URL(), "PRESENCE_CONTROL_URL=" + control(t, s)}, "restart.test.mjs")
	})
}

// screenshotDir is $PRESENCE_COMPAT_OUT, default out/, made absolute and
// created.
func screenshotDir(t *testing.T) string {
	t.Helper()
	outDir := os.Getenv("PRESENCE_COMPAT_OUT")
	if outDir == "" {
		outDir = "out"
	}
	outDir, err := filepath.Abs(outDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", outDir)
	return outDir
}

// TestDemoPage drives the demo page (web/static) in chromium through
// playwright-core (browser.test.mjs), a server restart under the page included.
func TestDemoPage(t *testing.T) {
	node := requireNode(t)
	requireChromium(t)
	outDir := screenshotDir(t)
	s := startServer(t)
	runNode(t, node, []string{"PRESENCE_URL=" + s.URL(), "PRESENCE_CONTROL_URL=" + control(t, s),
		"PRESENCE_COMPAT_OUT=" + outDir, "CHROMIUM=" + chromium}, "browser.test.mjs")
}

// TestPhoenixJSBrowser loads phoenix.js's own browser bundle
// (node_modules/phoenix/priv/static/phoenix.js) on a page in chromium,
// served from another loopback port (phoenixjs-browser.test.mjs): join,
// Presence sync across two browser contexts, a status update, and LongPoll
// on a page without window.WebSocket and behind a proxy that refuses
// WebSocket upgrades (longPollFallbackMs).
func TestPhoenixJSBrowser(t *testing.T) {
	node := requireNode(t)
	requireChromium(t)
	outDir := screenshotDir(t)
	s := startServer(t)
	runNode(t, node, []string{"PRESENCE_URL=" + s.URL(), "PRESENCE_COMPAT_OUT=" + outDir, "CHROMIUM=" + chromium},
		"phoenixjs-browser.test.mjs")
}

// clusterTimings are short, so that a killed node's presences leave within
// about a second and the test stays quick. An idle node heartbeats every
// MaxSilentPeriods+1 = 11 broadcast periods (docs/design.md), which must
// stay under the down period: with 100ms that is 1.1 s > 1 s and live idle
// peers flap down and up (their users leave and rejoin), so 50ms (550 ms).
var clusterTimings = []string{"--broadcast-period", "50ms", "--down-period", "1s", "--permdown-period", "3s",
	"--flush-interval", "5ms", "--shutdown-timeout", "3s", "--log-level", "info"}

// startCluster starts n presenced nodes, n1…nN, on loopback; each embeds a
// NATS server routed to the others' (a NATS cluster, no external service).
// It returns once every node sees the others up.
func startCluster(t *testing.T, n int) []*server {
	t.Helper()
	addrs := reserveAddrs(t, 3*n) // per node: HTTP, NATS clients, NATS routes
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats-route://" + addrs[3*i+2]
	}
	servers := make([]*server, n)
	for i := range n {
		name, addr := fmt.Sprintf("n%d", i+1), addrs[3*i]
		others := append(append([]string{}, routes[:i]...), routes[i+1:]...)
		args := append([]string{"--node", name, "--listen", addr, "--nats-embed", "--nats-listen", addrs[3*i+1],
			"--nats-cluster-listen", addrs[3*i+2], "--nats-routes", strings.Join(others, ",")}, clusterTimings...)
		servers[i] = launch(t, name, addr, args)
	}
	waitCluster(t, servers)
	return servers
}

// reserveAddrs returns n distinct free loopback addresses whose ports lie
// below the kernel's ephemeral range. freeAddr's ports come from that range,
// so between the check and presenced's bind a random port (--nats-listen
// :0) or an outgoing connection (route redials while a node is down) can
// take one; the kernel never hands these out. The n listeners are held
// together until all are found, so the ports are distinct.
func reserveAddrs(t *testing.T, n int) []string {
	t.Helper()
	lo := 32768 // Linux's default start of the range; below macOS's too
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	const base = 10000
	if lo-base < 1000 {
		addrs := make([]string, n) // no room below the range: best effort
		for i := range addrs {
			addrs[i] = freeAddr(t)
		}
		return addrs
	}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for tries := 0; len(addrs) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no %d free loopback ports in [%d, %d)", n, base, lo)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+rand.IntN(lo-base)))
		if err != nil {
			continue
		}
		held = append(held, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// waitCluster waits (bounded) until every server's /api/v1/cluster lists
// every other server's node as up.
func waitCluster(t *testing.T, servers []*server) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	up := func(s *server) (map[string]bool, error) {
		rs, err := loadtest.ReadReplicas(client, s.URL())
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, r := range rs {
			if !r.Self && r.Status == "up" {
				out[r.Name] = true
			}
		}
		return out, nil
	}
	start := time.Now()
	deadline := start.Add(clusterTimeout)
	for {
		var missing []string
		for _, s := range servers {
			seen, err := up(s)
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s: %v", s.name, err))
				continue
			}
			for _, o := range servers {
				if o != s && !seen[o.name] {
					missing = append(missing, fmt.Sprintf("%s does not see %s up", s.name, o.name))
				}
			}
		}
		if len(missing) == 0 {
			t.Logf("harness: cluster of %d formed in %v", len(servers), time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not formed within %v: %s", clusterTimeout, strings.Join(missing, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPhoenixJSCluster: phoenix.js clients connected to different nodes of
// a three-node cluster (embedded NATS, routed) see one presence set, updates
// and leaves cross nodes, and a node killed with SIGKILL makes its users
// leave for the others, then rejoin once it is back (cluster.test.mjs,
// PRESENCE_URLS = the nodes' URLs, PRESENCE_CONTROL_URL with node=I).
func TestPhoenixJSCluster(t *testing.T) {
	node := requireNode(t)
	servers := startCluster(t, 3)
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	runNode(t, node, []string{"PRESENCE_URL=" + urls[0], "PRESENCE_URLS=" + strings.Join(urls, ","),
		"PRESENCE_CONTROL_URL=" + control(t, servers...)}, "cluster.test.mjs")
}
