package cluster

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopresence/presence/client"
)

// goMember is a Go client (package client) joined with a meta, with a
// Presence kept in sync by phoenix.js's rules.
type goMember struct {
	sock *client.Socket
	pres *client.Presence
	mu   sync.Mutex
	keys []string
}

func goJoin(t *testing.T, n *node, user, topic, device string) *goMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock, err := client.Dial(ctx, "ws://"+n.http+"/socket", &client.Options{
		Params:         url.Values{"user_id": {user}},
		ReconnectAfter: func(int) time.Duration { return 100 * time.Millisecond },
	})
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	t.Cleanup(func() { sock.Close() })
	ch := sock.Channel(topic, map[string]any{"meta": map[string]any{"device": device}})
	m := &goMember{sock: sock}
	m.pres = client.NewPresence(ch, nil)
	m.pres.OnSync(func() {
		k := m.pres.Keys()
		m.mu.Lock()
		m.keys = k
		m.mu.Unlock()
	})
	if _, err := ch.Join(ctx); err != nil {
		t.Fatalf("join on %s: %v", n.name, err)
	}
	return m
}

func (m *goMember) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.keys)
}

func clientsSee(t *testing.T, what string, within time.Duration, want []string, ms ...*goMember) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok := true
		var bad string
		for i, m := range ms {
			if got := m.seen(); !slices.Equal(got, want) {
				ok, bad = false, fmt.Sprintf("client %d sees %v", i, got)
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %v; %s", what, want, bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Go clients on three nodes of an embedded NATS cluster see one presence
// set; a node killed with -9 makes its user leave for the others after the
// down period; when it restarts, its client reconnects and rejoins and
// everyone sees the user again.
func TestGoClientsAcrossNodes(t *testing.T) {
	cp := []int{freePort(t), freePort(t), freePort(t)}
	var nodes []*node
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cp[j]))
			}
		}
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i+1), "--nats-embed",
			"--nats-cluster-listen", fmt.Sprintf("127.0.0.1:%d", cp[i]), "--nats-routes", strings.Join(routes, ",")))
	}
	a := goJoin(t, nodes[0], "alice", "room:go", "a")
	b := goJoin(t, nodes[1], "bob", "room:go", "b")
	c := goJoin(t, nodes[2], "carol", "room:go", "c")
	all := []string{"alice", "bob", "carol"}
	clientsSee(t, "one presence set", 15*time.Second, all, a, b, c)
	nodes[2].kill()
	clientsSee(t, "carol's node down", 5*time.Second, []string{"alice", "bob"}, a, b)
	nodes[2].start()
	clientsSee(t, "carol reconnected", 15*time.Second, all, a, b, c)
}
