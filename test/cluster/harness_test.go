package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence/internal/loadtest"
	"github.com/gopresence/presence/internal/logtest"
	"github.com/gopresence/presence/internal/testenv"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "presenced-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "presenced")
	cmd := exec.Command("go", "build", "-o", binary, "github.com/gopresence/presence/cmd/presenced")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building presenced:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	testenv.Report()
	os.Exit(code)
}

// fast timings for every node.
var timings = []string{"--broadcast-period", "100ms", "--down-period", "1s", "--permdown-period", "3s",
	"--flush-interval", "5ms", "--shutdown-timeout", "3s", "--shutdown-grace", "1500ms", "--log-level", "warn"}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// node is one presenced process.
type node struct {
	t    *testing.T
	name string
	args []string
	http string // host:port
	cmd  *exec.Cmd
	out  *logtest.Buffer
	done chan struct{}
}

func startNode(t *testing.T, name string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, name: name, http: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	n.args = append([]string{"--node", name, "--listen", n.http}, append(append([]string{}, timings...), extra...)...)
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *node) start() {
	n.t.Helper()
	n.out = &logtest.Buffer{}
	n.cmd = exec.Command(binary, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + n.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-n.done:
			n.t.Fatalf("node %s exited: %s", n.name, n.out.String())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s not healthy: %s", n.name, n.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL (a crash) and waits.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// term sends SIGTERM and waits for a clean exit.
func (n *node) term() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.t.Fatalf("node %s ignored SIGTERM", n.name)
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("node %s exited %d: %s", n.name, code, n.out.String())
	}
}

// view is what a node lists for a topic: sorted "key:meta-field" strings.
func (n *node) view(topic string) []string {
	resp, err := http.Get("http://" + n.http + "/api/v1/topics/" + topic)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	defer resp.Body.Close()
	var st map[string]struct {
		Metas []map[string]any `json:"metas"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &st); err != nil {
		return []string{"error: " + string(b)}
	}
	var out []string
	for k, e := range st {
		for _, m := range e.Metas {
			out = append(out, fmt.Sprintf("%s:%v", k, m["device"]))
		}
	}
	sort.Strings(out)
	return out
}

func (n *node) replicas() map[string]string {
	rs, err := loadtest.ReadReplicas(http.DefaultClient, "http://"+n.http)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, r := range rs {
		if !r.Self {
			out[r.Name] = fmt.Sprintf("%d/%s", r.Vsn, r.Status)
		}
	}
	return out
}

// eventually waits until every node lists want for topic.
func eventually(t *testing.T, what string, within time.Duration, topic string, want []string, nodes ...*node) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	deadline := time.Now().Add(within)
	for {
		ok := true
		var bad string
		for _, n := range nodes {
			got := n.view(topic)
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, want) {
				ok = false
				bad = fmt.Sprintf("%s lists %v", n.name, got)
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %v on every node; %s", what, want, bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// member is a WebSocket client joined to a topic with a meta, so that its
// presence lives while the connection is open.
type member struct {
	c    *websocket.Conn
	done chan struct{}
}

func join(t *testing.T, n *node, user, topic, device string) *member {
	t.Helper()
	url := fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&user_id=%s", n.http, user)
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	m := &member{c: c, done: make(chan struct{})}
	frame, _ := json.Marshal([]any{"1", "1", topic, "phx_join", map[string]any{"meta": map[string]any{"device": device}}})
	if err := c.WriteMessage(websocket.TextMessage, frame); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("join on %s: %v", n.name, err)
		}
		var f []json.RawMessage
		json.Unmarshal(b, &f)
		if len(f) == 5 && string(f[3]) == `"phx_reply"` && string(f[1]) == `"1"` {
			if !strings.Contains(string(f[4]), `"ok"`) {
				t.Fatalf("join refused: %s", f[4])
			}
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	go func() { // keep reading (and so answering pings) until closed
		defer close(m.done)
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	go func() { // heartbeats
		tk := time.NewTicker(10 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-tk.C:
				c.WriteMessage(websocket.TextMessage, []byte(`[null,"hb","phoenix","heartbeat",{}]`))
			}
		}
	}()
	t.Cleanup(m.close)
	return m
}

func (m *member) close() {
	m.c.Close()
	<-m.done
}

// newProxy is a TCP proxy the test can cut and heal: a partition between a
// node and the bus.
func newProxy(t *testing.T, target string) *loadtest.Proxy {
	t.Helper()
	p, err := loadtest.NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func listenFree() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
