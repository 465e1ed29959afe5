package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
	"github.com/gopresence/presence/tracker"
)

func TestShutdownGraceFlag(t *testing.T) {
	o, err := parse(nil, env(nil), &bytes.Buffer{})
	if err != nil || o.shutdownGrace != tracker.DefaultShutdownGrace {
		t.Fatalf("default: %v %v", o.shutdownGrace, err)
	}
	o, err = parse(nil, env(map[string]string{"PRESENCE_SHUTDOWN_GRACE": "2s"}), &bytes.Buffer{})
	if err != nil || o.shutdownGrace != 2*time.Second {
		t.Fatalf("PRESENCE_SHUTDOWN_GRACE: %v %v", o.shutdownGrace, err)
	}
	if o, err = parse([]string{"--shutdown-grace", "0"}, env(nil), &bytes.Buffer{}); err != nil || o.shutdownGrace != 0 {
		t.Fatalf("0: %v %v", o.shutdownGrace, err)
	}
	if _, err := parse([]string{"--shutdown-grace", "-1s"}, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--shutdown-grace") {
		t.Fatalf("negative: %v", err)
	}
	var help bytes.Buffer
	parse([]string{"--help"}, env(nil), &help)
	for _, flag := range []string{"shutdown-grace", "permdown-on-shutdown"} {
		if h := helpOf(help.String(), flag); !strings.Contains(h, "shutdown-grace") || !strings.Contains(h, "reconnect") {
			t.Errorf("--help of --%s does not say how it relates to the grace: %q", flag, h)
		}
	}
}

// peerState is a peer's entry in /api/v1/cluster.
type peerState struct {
	Status      string `json:"status"`
	GraceLeftMs int64  `json:"grace_left_ms"`
}

// clusterReplicas is a node's /api/v1/cluster: each peer by name.
func clusterReplicas(t *testing.T, n *testNode) map[string]peerState {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		Replicas []struct {
			peerState
			Name string `json:"name"`
			Self bool   `json:"self"`
		} `json:"replicas"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	out := map[string]peerState{}
	for _, r := range c.Replicas {
		if !r.Self {
			out[r.Name] = r.peerState
		}
	}
	return out
}

// A node stopped gracefully (its context cancelled, as by SIGTERM) tells
// its peer it is stopping, then closes its sockets: the peer reports it as
// stopping in /api/v1/cluster (with the grace left), never as down, and
// still lists its member; the member leaves when the grace ends and the
// node is forgotten.
func TestGracefulStopShowsStopping(t *testing.T) {
	const grace = 1500 * time.Millisecond
	var natsA *natsembed.Server
	a := startNode(t, append([]string{"--node", "a", "--nats-embed", "--nats-cluster-listen", "127.0.0.1:0", "--shutdown-grace", grace.String()}, fast...), nil,
		func(o *options) { o.onEmbedded = func(s *natsembed.Server) { natsA = s } })
	b := startNode(t, append([]string{"--node", "b", "--nats-embed", "--nats-routes", natsA.ClusterURL(), "--shutdown-grace", grace.String()}, fast...), nil, nil)

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+b.addr+"/socket/websocket?vsn=2.0.0&user_id=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte(`["1","1","room:lobby","phx_join",{"meta":{"device":"test"}}]`))
	closed := make(chan time.Time, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				closed <- time.Now()
				return
			}
		}
	}()
	if !sees(t, a, "alice", 10*time.Second) {
		t.Fatalf("a does not see b's member: %v", members(t, a))
	}
	if r := clusterReplicas(t, a)["b"]; r.Status != "up" {
		t.Fatalf("b on a: %+v", r)
	}

	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- b.stop() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("b did not close its socket")
	}
	// The stopping message was sent before the close; it takes a hop
	// between the two embedded NATS servers to reach a.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		r, ok := clusterReplicas(t, a)["b"]
		if r.Status == "stopping" {
			if r.GraceLeftMs <= 0 || r.GraceLeftMs > grace.Milliseconds() {
				t.Fatalf("grace left %d ms", r.GraceLeftMs)
			}
			break
		}
		if !ok || r.Status != "up" || time.Now().After(deadline) {
			t.Fatalf("after b's client was closed, a reports b as %+v (listed %v), want stopping", r, ok)
		}
	}
	if !sees(t, a, "alice", 0) {
		t.Fatal("b's member left at once")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("b's shutdown: %v\n%s", err, b.out)
	}
	for !(len(members(t, a)) == 0) {
		if time.Since(start) > grace+3*time.Second {
			t.Fatalf("b's member still listed %v after the stop", time.Since(start))
		}
		if time.Since(start) < grace-200*time.Millisecond && !sees(t, a, "alice", 0) {
			t.Fatalf("b's member left %v after the stop, before the %v grace", time.Since(start), grace)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("b's member left a %v after the stop began (grace %v)", time.Since(start).Round(time.Millisecond), grace)
	if time.Since(start) < grace {
		t.Fatalf("left after %v, before the grace", time.Since(start))
	}
	if r, ok := clusterReplicas(t, a)["b"]; ok {
		t.Fatalf("b still listed after its grace: %+v", r)
	}
}
