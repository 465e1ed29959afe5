package compat

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gracefulStopGrace is every node's --shutdown-grace in
// TestPhoenixJSGracefulStop, set as PRESENCE_SHUTDOWN_GRACE (the
// environment form every flag has): long enough for a client that waits
// 1.5 s before reconnecting, and three times the cluster's 1 s down period,
// so that a grace end cannot pass for a down.
const gracefulStopGrace = 3 * time.Second

// balancer is a TCP load balancer in front of the cluster, as clients meet
// one in production: each connection goes to the primary node while it
// accepts connections, and once it refuses them (a stopping node closes
// its listener first) to the others in turn.
type balancer struct {
	ln      net.Listener
	primary string
	others  []string
	next    atomic.Uint64

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newBalancer(t *testing.T, primary *server, others ...*server) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, primary: primary.addr, conns: map[net.Conn]bool{}}
	for _, o := range others {
		b.others = append(b.others, o.addr)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.serve(&wg) }()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	return b
}

func (b *balancer) URL() string { return "http://" + b.ln.Addr().String() }

func (b *balancer) serve(wg *sync.WaitGroup) {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		u, err := b.dial()
		if err != nil {
			c.Close()
			continue
		}
		b.mu.Lock()
		b.conns[c], b.conns[u] = true, true
		b.mu.Unlock()
		wg.Add(2)
		go func() { defer wg.Done(); b.pipe(c, u) }()
		go func() { defer wg.Done(); b.pipe(u, c) }()
	}
}

func (b *balancer) dial() (net.Conn, error) {
	if c, err := net.DialTimeout("tcp", b.primary, time.Second); err == nil {
		return c, nil
	}
	var err error
	for range b.others {
		var c net.Conn
		to := b.others[int(b.next.Add(1))%len(b.others)]
		if c, err = net.DialTimeout("tcp", to, time.Second); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func (b *balancer) pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	b.mu.Lock()
	delete(b.conns, dst)
	delete(b.conns, src)
	b.mu.Unlock()
}

// TestPhoenixJSGracefulStop: a deploy step with phoenix.js clients
// (graceful-stop.test.mjs). Three nodes; clients of n3 reach it through a
// load balancer (PRESENCE_LB_URL), others directly. n3 is stopped with
// SIGTERM: the balanced clients reconnect to n1 or n2 by themselves, one
// of them after 1.5 s, within the grace; the clients on n1 and n2 never
// see their keys leave (every onLeave for them keeps metas), while the
// users pinned to n3, who cannot come back, leave when the grace ends; n1
// reports n3 as stopping meanwhile, then forgets it.
func TestPhoenixJSGracefulStop(t *testing.T) {
	node := requireNode(t)
	t.Setenv("PRESENCE_SHUTDOWN_GRACE", gracefulStopGrace.String())
	servers := startCluster(t, 3)
	lb := newBalancer(t, servers[2], servers[0], servers[1])
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	runNode(t, node, []string{"PRESENCE_URLS=" + strings.Join(urls, ","), "PRESENCE_LB_URL=" + lb.URL(),
		"PRESENCE_CONTROL_URL=" + control(t, servers...),
		"PRESENCE_GRACE_MS=" + strconv.FormatInt(gracefulStopGrace.Milliseconds(), 10)}, "graceful-stop.test.mjs")
}
