package natsbus_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/natsbus"
	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
	"github.com/gopresence/presence/pubsub/pubsubtest"
)

func startServer(t testing.TB, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsembed.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newBus(t testing.TB, url, name string) *natsbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.New(ctx, natsbus.Config{URL: url, NodeName: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformanceOneServer(t *testing.T) {
	srv := startServer(t, natsembed.Config{})
	pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
		var buses []pubsub.Bus
		for _, name := range names {
			buses = append(buses, newBus(t, srv.ClientURL(), name))
		}
		return buses
	})
}

func TestConformanceTwoServerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	a := startServer(t, natsembed.Config{ServerName: "a", Cluster: &natsembed.Cluster{}})
	b := startServer(t, natsembed.Config{ServerName: "b", Cluster: &natsembed.Cluster{Routes: []string{a.ClusterURL()}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitRoutes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitRoutes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	servers := []*natsembed.Server{a, b}
	pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
		var buses []pubsub.Bus
		for i, name := range names {
			buses = append(buses, newBus(t, servers[i%2].ClientURL(), name))
		}
		return buses
	})
}

func TestConformanceSharedConn(t *testing.T) {
	// Buses on connections owned by the caller (echo on): own messages
	// come back from NATS and must be ignored.
	srv := startServer(t, natsembed.Config{})
	pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
		var buses []pubsub.Bus
		for _, name := range names {
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			b, err := natsbus.New(context.Background(), natsbus.Config{Conn: nc, NodeName: name, Namespace: "test.ns"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			buses = append(buses, b)
		}
		return buses
	})
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := natsbus.New(ctx, natsbus.Config{}); !errors.Is(err, natsbus.ErrNoNodeName) {
		t.Errorf("no NodeName: %v", err)
	}
	for _, ns := range []string{"a..b", ".a", "a.", "a b", "a.*", ">"} {
		if _, err := natsbus.New(ctx, natsbus.Config{NodeName: "n", Namespace: ns}); !errors.Is(err, natsbus.ErrBadNamespace) {
			t.Errorf("Namespace %q: %v", ns, err)
		}
	}
	// Nothing listens on this port: the initial connect fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close()
	if _, err := natsbus.New(ctx, natsbus.Config{NodeName: "n", URL: url}); err == nil {
		t.Error("connect to a closed port succeeded")
	}
}

func TestCloseKeepsCallerConn(t *testing.T) {
	srv := startServer(t, natsembed.Config{})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := natsbus.New(context.Background(), natsbus.Config{Conn: nc, NodeName: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe("t", func(pubsub.Message) {}); err != nil {
		t.Fatal(err)
	}
	// broadcast and direct subject, the node-name responder, and nats.go's
	// shared reply inbox (made by the name check's request)
	if n := nc.NumSubscriptions(); n != 4 {
		t.Errorf("NumSubscriptions = %d, want 4", n)
	}
	b.Close()
	if nc.IsClosed() {
		t.Fatal("Close closed the caller's connection")
	}
	if n := nc.NumSubscriptions(); n != 1 { // nats.go's reply inbox stays with the connection
		t.Errorf("after Close: NumSubscriptions = %d, want 1", n)
	}
}

// TestReconnect restarts the server on the same port: the buses reconnect
// and their subscriptions work again (pubsubtest.RunReconnect).
func TestReconnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := startServer(t, natsembed.Config{Port: port})
	var buses []*natsbus.Bus
	pubsubtest.RunReconnect(t, func(t *testing.T, names []string) []pubsub.Bus {
		var out []pubsub.Bus
		for _, name := range names {
			b := newBus(t, srv.ClientURL(), name)
			buses = append(buses, b)
			out = append(out, b)
		}
		return out
	}, func(t *testing.T) {
		srv.Close()
		startServer(t, natsembed.Config{Port: port})
	})
	for _, b := range buses {
		if !b.Conn().IsConnected() {
			t.Fatalf("%s not connected after reconnect", b.NodeName())
		}
		if r := b.Conn().Stats().Reconnects; r < 1 {
			t.Errorf("%s: Reconnects = %d, want ≥ 1", b.NodeName(), r)
		}
	}
}

func TestMalformedIgnored(t *testing.T) {
	srv := startServer(t, natsembed.Config{})
	b := newBus(t, srv.ClientURL(), "n")
	got := make(chan pubsub.Message, 10)
	b.Subscribe("t", func(m pubsub.Message) { got <- m })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Publish("presence.b.t", []byte{9, 9, 9})
	nc.Publish("presence.b.t", []byte{1, 1, 'x', 'o', 'k'})
	nc.Flush()
	select {
	case m := <-got:
		if m.From != "x" || string(m.Data) != "ok" {
			t.Errorf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("valid message not delivered")
	}
	if n := b.Malformed(); n != 1 {
		t.Errorf("Malformed() = %d, want 1", n)
	}
}

// BenchmarkBroadcast measures end-to-end broadcast throughput between two
// buses on one embedded server: the time per message is from the first
// Broadcast until the remote subscriber has received the last one.
func BenchmarkBroadcast(b *testing.B) {
	srv := startServer(b, natsembed.Config{})
	pub := newBus(b, srv.ClientURL(), "pub")
	sub := newBus(b, srv.ClientURL(), "sub")
	for _, size := range []int{64, 1024} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			topic := "bench" + strconv.Itoa(size)
			var received, target atomic.Int64
			target.Store(-1)
			done := make(chan struct{}, 1)
			s, err := sub.Subscribe(topic, func(pubsub.Message) {
				if received.Add(1) == target.Load() {
					done <- struct{}{}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Unsubscribe()
			data := make([]byte, size)
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var count int64
			for b.Loop() {
				count++
				if err := pub.Broadcast(ctx, topic, data); err != nil {
					b.Fatal(err)
				}
			}
			target.Store(count)
			if received.Load() < count {
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					b.Fatalf("received %d of %d", received.Load(), count)
				}
			}
			b.ReportMetric(float64(len(pub.NodeName())+2), "envelope-B/msg")
		})
	}
}

// A second live Bus with an existing node name is refused; once the
// first closes, the name is free again.
func TestNameTaken(t *testing.T) {
	srv := startServer(t, natsembed.Config{})
	ctx := context.Background()
	b1, err := natsbus.New(ctx, natsbus.Config{URL: srv.ClientURL(), NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsbus.New(ctx, natsbus.Config{URL: srv.ClientURL(), NodeName: "n1"}); !errors.Is(err, natsbus.ErrNameTaken) {
		t.Fatalf("second n1: %v", err)
	}
	b1.Close()
	b2, err := natsbus.New(ctx, natsbus.Config{URL: srv.ClientURL(), NodeName: "n1"})
	if err != nil {
		t.Fatalf("n1 after the first closed: %v", err)
	}
	b2.Close()
}
