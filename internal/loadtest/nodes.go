package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The cluster scenarios (deploy, heal) start their own presenced nodes on
// loopback: n1 embeds the NATS server, every other node reaches it through
// a Proxy, so that cutting the proxies leaves each node alone and a node
// can be stopped without taking the bus with it.

// Node is a presenced process started by a cluster scenario.
type Node struct {
	Name string
	HTTP string // host:port of its HTTP listener
	WS   *url.URL
	// Proxy is the node's link to the bus (nil for n1, which embeds it).
	Proxy *Proxy

	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the first MiB: enough to tell why a node failed
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuf) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartCluster starts n presenced nodes from the binary bin, each with
// flags, and waits until every node holds every other as up.
func StartCluster(ctx context.Context, bin string, n int, flags []string) ([]*Node, error) {
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var nodes []*Node
	fail := func(err error) ([]*Node, error) {
		StopCluster(nodes)
		return nil, err
	}
	for i := range n {
		addr, err := freeAddr()
		if err != nil {
			return fail(err)
		}
		nd := &Node{Name: fmt.Sprintf("n%d", i+1), HTTP: addr, WS: &url.URL{Scheme: "ws", Host: addr, Path: "/socket/websocket"}}
		args := []string{"--node", nd.Name, "--listen", addr}
		if i == 0 {
			args = append(args, "--nats-embed", "--nats-listen", natsAddr)
		} else {
			if nd.Proxy, err = NewProxy(natsAddr); err != nil {
				return fail(err)
			}
			args = append(args, "--nats-url", "nats://"+nd.Proxy.Addr())
		}
		nd.cmd = exec.Command(bin, append(args, flags...)...)
		nd.out = &syncBuf{}
		nd.cmd.Stdout, nd.cmd.Stderr = nd.out, nd.out
		if err := nd.cmd.Start(); err != nil {
			return fail(fmt.Errorf("starting %s: %w", bin, err))
		}
		nd.done = make(chan struct{})
		go func() { nd.cmd.Wait(); close(nd.done) }()
		nodes = append(nodes, nd)
		if err := nd.waitHealthy(ctx, 20*time.Second); err != nil {
			return fail(err)
		}
	}
	if err := WaitReplicas(ctx, nodes, nodes, "up", 30*time.Second); err != nil {
		return fail(err)
	}
	return nodes, nil
}

func (nd *Node) waitHealthy(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get("http://" + nd.HTTP + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-nd.done:
			return fmt.Errorf("node %s exited: %s", nd.Name, nd.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not healthy after %v: %s", nd.Name, within, nd.out.String())
		}
	}
}

// PID is the node's process id.
func (nd *Node) PID() int { return nd.cmd.Process.Pid }

// Output is what the node printed (its first MiB).
func (nd *Node) Output() string { return nd.out.String() }

// Term sends SIGTERM (a graceful stop) and waits up to within for the
// exit; an exit status other than 0 is an error.
func (nd *Node) Term(within time.Duration) error {
	nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.done:
	case <-time.After(within):
		nd.Kill()
		return fmt.Errorf("node %s still running %v after SIGTERM", nd.Name, within)
	}
	if code := nd.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("node %s exited %d after SIGTERM: %s", nd.Name, code, lastLines(nd.out.String(), 5))
	}
	return nil
}

// Kill ends the node at once (SIGKILL) unless it has exited.
func (nd *Node) Kill() {
	select {
	case <-nd.done:
		return
	default:
	}
	nd.cmd.Process.Signal(syscall.SIGKILL)
	<-nd.done
}

// StopCluster kills every node and closes the proxies.
func StopCluster(nodes []*Node) {
	for _, nd := range nodes {
		nd.Kill()
		if nd.Proxy != nil {
			nd.Proxy.Close()
		}
	}
}

// Replica is a replica as presenced's GET /api/v1/cluster lists it.
type Replica struct {
	Name   string `json:"name"`
	Vsn    int64  `json:"vsn"`
	Status string `json:"status"` // up, down, stopping, …
	Self   bool   `json:"self"`
}

// ReadReplicas reads GET base/api/v1/cluster (base: http://host:port).
func ReadReplicas(c *http.Client, base string) ([]Replica, error) {
	resp, err := c.Get(base + "/api/v1/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Replicas []Replica `json:"replicas"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Replicas, nil
}

// Replicas is what the node's /api/v1/cluster says of the other nodes:
// name → status.
func (nd *Node) Replicas() (map[string]string, error) {
	rs, err := ReadReplicas(http.DefaultClient, "http://"+nd.HTTP)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range rs {
		if !r.Self {
			out[r.Name] = r.Status
		}
	}
	return out, nil
}

// State is the node's presence_state of topic (/api/v1/topics/{topic}).
func (nd *Node) State(topic string) ([]byte, error) {
	resp, err := http.Get("http://" + nd.HTTP + "/api/v1/topics/" + url.PathEscape(topic))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: HTTP %d: %s", nd.Name, resp.StatusCode, b)
	}
	return b, err
}

// WaitReplicas waits until every node of at holds every other node of of
// with status.
func WaitReplicas(ctx context.Context, at, of []*Node, status string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		bad := ""
		for _, a := range at {
			got, err := a.Replicas()
			if err != nil {
				bad = fmt.Sprintf("%s: %v", a.Name, err)
				break
			}
			for _, o := range of {
				if o != a && got[o.Name] != status {
					bad = fmt.Sprintf("%s holds %s as %q", a.Name, o.Name, got[o.Name])
				}
			}
		}
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replicas not %s within %v: %s", status, within, bad)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

var errNoBinary = errors.New("the cluster scenarios start presenced themselves: pass -presenced PATH (go build -o /tmp/presenced ./cmd/presenced)")
