package redisbus_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/pubsubtest"
	"github.com/gopresence/presence/pubsub/redisbus"
)

func newBus(t testing.TB, cfg redisbus.Config) *redisbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redisbus.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	srv := startRedis(t, 0)
	pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
		var buses []pubsub.Bus
		for _, name := range names {
			buses = append(buses, newBus(t, redisbus.Config{URL: srv.url(), NodeName: name}))
		}
		return buses
	})
}

func TestConformanceSharedClient(t *testing.T) {
	srv := startRedis(t, 0)
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.port)})
	defer client.Close()
	pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
		var buses []pubsub.Bus
		for _, name := range names {
			buses = append(buses, newBus(t, redisbus.Config{Client: client, NodeName: name, Namespace: "other"}))
		}
		return buses
	})
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("shared client unusable after the buses closed: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := redisbus.New(ctx, redisbus.Config{}); !errors.Is(err, redisbus.ErrNoNodeName) {
		t.Errorf("no NodeName: %v", err)
	}
	if _, err := redisbus.New(ctx, redisbus.Config{NodeName: "n", URL: "http://x"}); err == nil {
		t.Error("bad URL accepted")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	port := freePort(t)
	if _, err := redisbus.New(ctx, redisbus.Config{NodeName: "n", URL: "redis://127.0.0.1:" + strconv.Itoa(port)}); err == nil {
		t.Error("New with no server succeeded")
	}
}

// TestReconnect kills redis-server and starts a new one on the same port:
// the buses re-subscribe and messages flow again (pubsubtest.RunReconnect).
func TestReconnect(t *testing.T) {
	srv := startRedis(t, 0)
	pubsubtest.RunReconnect(t, func(t *testing.T, names []string) []pubsub.Bus {
		var out []pubsub.Bus
		for _, name := range names {
			out = append(out, newBus(t, redisbus.Config{URL: srv.url(), NodeName: name, HealthCheckInterval: 100 * time.Millisecond}))
		}
		return out
	}, func(t *testing.T) {
		srv.stop()
		startRedis(t, srv.port)
	})
}

func TestMalformedIgnored(t *testing.T) {
	srv := startRedis(t, 0)
	b := newBus(t, redisbus.Config{URL: srv.url(), NodeName: "n"})
	got := make(chan pubsub.Message, 10)
	b.Subscribe("t", func(m pubsub.Message) { got <- m })
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.port)})
	defer client.Close()
	ctx := context.Background()
	client.Publish(ctx, "presence:b", "garbage")
	client.Publish(ctx, "presence:b", "\x01d\x01x\x01tno") // direct mode on the broadcast channel
	client.Publish(ctx, "presence:b", "\x01b\x01x\x01tok")
	select {
	case m := <-got:
		if m.From != "x" || m.Topic != "t" || string(m.Data) != "ok" {
			t.Errorf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("valid message not delivered")
	}
	if n := b.Malformed(); n != 2 {
		t.Errorf("Malformed() = %d, want 2", n)
	}
}

// BenchmarkBroadcast measures end-to-end broadcast throughput between two
// buses through a local redis-server (one PUBLISH round trip per message).
func BenchmarkBroadcast(b *testing.B) {
	srv := startRedis(b, 0)
	pub := newBus(b, redisbus.Config{URL: srv.url(), NodeName: "pub"})
	sub := newBus(b, redisbus.Config{URL: srv.url(), NodeName: "sub"})
	const topic = "bench"
	var received, target atomic.Int64
	target.Store(-1)
	done := make(chan struct{}, 1)
	if _, err := sub.Subscribe(topic, func(pubsub.Message) {
		if received.Add(1) == target.Load() {
			done <- struct{}{}
		}
	}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
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
	b.ReportMetric(float64(4+len("pub")+len(topic)), "envelope-B/msg")
}

// A second live Bus with an existing node name is refused; once the
// first closes, the name is free again.
func TestNameTaken(t *testing.T) {
	srv := startRedis(t, 0)
	ctx := context.Background()
	b1, err := redisbus.New(ctx, redisbus.Config{URL: srv.url(), NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redisbus.New(ctx, redisbus.Config{URL: srv.url(), NodeName: "n1"}); !errors.Is(err, redisbus.ErrNameTaken) {
		t.Fatalf("second n1: %v", err)
	}
	b1.Close()
	b2, err := redisbus.New(ctx, redisbus.Config{URL: srv.url(), NodeName: "n1"})
	if err != nil {
		t.Fatalf("n1 after the first closed: %v", err)
	}
	b2.Close()
}
