package cluster

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/loadtest"
	"github.com/gopresence/presence/internal/testenv"
)

// The scenarios every bus must pass, on three nodes n1, n2, n3 whose bus
// links the test can cut (cut(i) isolates node i, heal(i) reconnects it).
type rig struct {
	nodes []*node
	cut   func(i int)
	heal  func(i int)
}

func crashRestartTerm(t *testing.T, r *rig) {
	n1, n2, n3 := r.nodes[0], r.nodes[1], r.nodes[2]
	join(t, n1, "alice", "room:1", "a1")
	join(t, n2, "bob", "room:1", "b1")
	carol := join(t, n3, "carol", "room:1", "c1")
	all := []string{"alice:a1", "bob:b1", "carol:c1"}
	eventually(t, "three clients on three nodes", 10*time.Second, "room:1", all, n1, n2, n3)

	// a client that leaves is gone everywhere at once
	carol.close()
	eventually(t, "carol left", 2*time.Second, "room:1", all[:2], n1, n2, n3)
	join(t, n3, "carol", "room:1", "c2")
	eventually(t, "carol back", 2*time.Second, "room:1", []string{"alice:a1", "bob:b1", "carol:c2"}, n1, n2, n3)

	// kill -9: the others report n3's presences as leaves after the down period
	oldVsn := n1.replicas()["n3"]
	n3.kill()
	time.Sleep(300 * time.Millisecond)
	if v := n1.view("room:1"); len(v) != 3 {
		t.Fatalf("n3's presences left before the down period: %v", v)
	}
	eventually(t, "n3 down", 5*time.Second, "room:1", all[:2], n1, n2)

	// restart under the same name: a new incarnation, the old one permdowned
	n3.start()
	join(t, n3, "dave", "room:1", "d1")
	want := []string{"alice:a1", "bob:b1", "dave:d1"}
	eventually(t, "n3 restarted", 10*time.Second, "room:1", want, n1, n2, n3)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := n1.replicas()["n3"]
		if v != oldVsn && strings.HasSuffix(v, "/up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 sees n3 as %q (old %q)", v, oldVsn)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// partition n3 away: each side reports the other side's presences as
	// leaves, and after heal as joins; all converge
	r.cut(2)
	eventually(t, "split: n1, n2 side", 8*time.Second, "room:1", []string{"alice:a1", "bob:b1"}, n1, n2)
	eventually(t, "split: n3 side", 8*time.Second, "room:1", []string{"dave:d1"}, n3)
	join(t, n3, "erin", "room:1", "e1") // a change during the split
	r.heal(2)
	want = []string{"alice:a1", "bob:b1", "dave:d1", "erin:e1"}
	eventually(t, "healed", 15*time.Second, "room:1", want, n1, n2, n3)

	// SIGTERM: n2 tells its peers it is stopping; they report it so and
	// keep its presence for the shutdown grace (1.5 s, past the 1 s down
	// period), then drop it
	stopped := time.Now()
	n2.term()
	if v := n1.replicas()["n2"]; !strings.HasSuffix(v, "/stopping") {
		t.Fatalf("n1 sees the stopped n2 as %q, want stopping", v)
	}
	time.Sleep(200 * time.Millisecond)
	if v := n1.view("room:1"); len(v) != 4 {
		t.Fatalf("bob left at once without permdown-on-shutdown: %v", v)
	}
	eventually(t, "n2 stopped", 5*time.Second, "room:1", []string{"alice:a1", "dave:d1", "erin:e1"}, n1, n3)
	if d := time.Since(stopped); d < 1400*time.Millisecond {
		t.Fatalf("bob left %v after the stop, within the 1.5 s grace", d)
	}
	if v, ok := n1.replicas()["n2"]; ok {
		t.Fatalf("n1 still lists n2 as %q after its grace", v)
	}

	// SIGTERM with --permdown-on-shutdown: peers drop n1's presences at once
	// (well within the 1 s down period)
	n1.args = append(n1.args, "--permdown-on-shutdown")
	n1.kill()
	n1.start()
	join(t, n1, "alice", "room:1", "a2")
	eventually(t, "n1 back", 10*time.Second, "room:1", []string{"alice:a2", "dave:d1", "erin:e1"}, n1, n3)
	n1.term()
	eventually(t, "graceful permdown", 600*time.Millisecond, "room:1", []string{"dave:d1", "erin:e1"}, n3)
}

func requireOrSkip(t *testing.T, tool string) string {
	return testenv.LookPath(t, tool, "apt-get install -y "+tool)
}

// Three nodes over one NATS server embedded in n1; n2 and n3 reach it
// through proxies (the partition cuts n3's proxy).
func TestNATSExternal(t *testing.T) {
	natsPort := freePort(t)
	n1 := startNode(t, "n1", "--nats-embed", "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort))
	target := fmt.Sprintf("127.0.0.1:%d", natsPort)
	proxies := []*loadtest.Proxy{nil, newProxy(t, target), newProxy(t, target)}
	n2 := startNode(t, "n2", "--nats-url", "nats://"+proxies[1].Addr())
	n3 := startNode(t, "n3", "--nats-url", "nats://"+proxies[2].Addr())
	crashRestartTermNATS(t, &rig{nodes: []*node{n1, n2, n3},
		cut: func(i int) { proxies[i].Cut() }, heal: func(i int) { proxies[i].Heal() }})
}

// For NATS the node that embeds the server cannot be partitioned from it,
// so the SIGTERM steps restart nodes that depend on it last.
func crashRestartTermNATS(t *testing.T, r *rig) { crashRestartTerm(t, r) }

// Three nodes that form a NATS cluster among themselves (--nats-embed with
// routes): no external service.
func TestNATSEmbeddedCluster(t *testing.T) {
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
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	join(t, n1, "alice", "room:1", "a1")
	join(t, n2, "bob", "room:1", "b1")
	join(t, n3, "carol", "room:1", "c1")
	all := []string{"alice:a1", "bob:b1", "carol:c1"}
	eventually(t, "converged", 15*time.Second, "room:1", all, n1, n2, n3)
	n3.kill()
	eventually(t, "n3 down", 5*time.Second, "room:1", all[:2], n1, n2)
	n3.start()
	join(t, n3, "dave", "room:1", "d1")
	eventually(t, "n3 restarted", 15*time.Second, "room:1", []string{"alice:a1", "bob:b1", "dave:d1"}, n1, n2, n3)
}

// Three nodes over a real redis-server, each through a proxy.
func TestRedis(t *testing.T) {
	bin := requireOrSkip(t, "redis-server")
	port := freePort(t)
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(200 * time.Millisecond)
	target := fmt.Sprintf("127.0.0.1:%d", port)
	var proxies []*loadtest.Proxy
	var nodes []*node
	for i := range 3 {
		p := newProxy(t, target)
		proxies = append(proxies, p)
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i+1), "--redis-url", "redis://"+p.Addr()))
	}
	crashRestartTerm(t, &rig{nodes: nodes,
		cut: func(i int) { proxies[i].Cut() }, heal: func(i int) { proxies[i].Heal() }})
}
