package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/natsbus"
	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
	"github.com/gopresence/presence/pubsub/redisbus"
	"github.com/gopresence/presence/tracker"
)

// Cross-node benchmarks: three trackers in this process, replicating over a
// real NATS server (embedded) or a real redis-server, each behind a gate
// that can cut it off (a partition) and that counts the bytes it sends.

type gate struct {
	pubsub.Bus
	cut  atomic.Bool
	sent atomic.Int64
}

func (g *gate) Subscribe(topic string, h pubsub.Handler) (pubsub.Subscription, error) {
	return g.Bus.Subscribe(topic, func(m pubsub.Message) {
		if !g.cut.Load() || m.From == g.NodeName() {
			h(m)
		}
	})
}

func (g *gate) Broadcast(ctx context.Context, topic string, data []byte) error {
	if g.cut.Load() {
		return nil
	}
	g.sent.Add(int64(len(data)))
	return g.Bus.Broadcast(ctx, topic, data)
}

func (g *gate) DirectBroadcast(ctx context.Context, node, topic string, data []byte) error {
	if g.cut.Load() {
		return nil
	}
	g.sent.Add(int64(len(data)))
	return g.Bus.DirectBroadcast(ctx, node, topic, data)
}

type benchNode struct {
	tr    *tracker.Tracker
	gate  *gate
	mu    sync.Mutex
	seen  map[string]time.Time // key → first time a join of it was reported
	watch bool
}

func (n *benchNode) handle(ds []tracker.Diff) {
	if !n.watch {
		return
	}
	now := time.Now()
	n.mu.Lock()
	for _, d := range ds {
		for _, p := range d.Joins {
			if _, ok := n.seen[p.Key]; !ok {
				n.seen[p.Key] = now
			}
		}
	}
	n.mu.Unlock()
}

func busFactory(b *testing.B, kind string) func(name string) pubsub.Bus {
	ctx := context.Background()
	switch kind {
	case "nats":
		srv, err := natsembed.Start(ctx, natsembed.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(srv.Close)
		return func(name string) pubsub.Bus {
			bus, err := natsbus.New(ctx, natsbus.Config{URL: srv.ClientURL(), NodeName: name})
			if err != nil {
				b.Fatal(err)
			}
			return bus
		}
	case "redis":
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			b.Skip("redis-server not installed")
		}
		port := freePortB(b)
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		time.Sleep(200 * time.Millisecond)
		return func(name string) pubsub.Bus {
			bus, err := redisbus.New(ctx, redisbus.Config{URL: fmt.Sprintf("redis://127.0.0.1:%d", port), NodeName: name})
			if err != nil {
				b.Fatal(err)
			}
			return bus
		}
	}
	panic(kind)
}

func freePortB(b *testing.B) int {
	t := &testing.T{}
	_ = t
	l, err := listenFree()
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func startBenchNodes(b *testing.B, kind string, n int, cfg tracker.Config) []*benchNode {
	mk := busFactory(b, kind)
	var out []*benchNode
	for i := range n {
		g := &gate{Bus: mk(fmt.Sprintf("n%d", i+1))}
		bn := &benchNode{gate: g, seen: map[string]time.Time{}}
		c := cfg
		c.Bus = g
		tr, err := tracker.New(c, bn.handle)
		if err != nil {
			b.Fatal(err)
		}
		tr.Start(context.Background())
		bn.tr = tr
		b.Cleanup(func() { tr.Close(); g.Bus.Close() })
		out = append(out, bn)
	}
	time.Sleep(300 * time.Millisecond) // first heartbeats: everyone knows everyone
	return out
}

// BenchmarkCrossNodeLatency: a track on n1 → the join reported on n2, at a
// fixed rate of changes per second, three nodes. Reports p50 / p99 / max
// and the bytes each change costs on the wire (all nodes' sends).
func BenchmarkCrossNodeLatency(b *testing.B) {
	for _, kind := range []string{"nats", "redis"} {
		for _, rate := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/%dper_s", kind, rate), func(b *testing.B) {
				nodes := startBenchNodes(b, kind, 3, tracker.Config{})
				nodes[1].watch = true
				const dur = 3 * time.Second
				total := rate * int(dur/time.Second)
				sent := make([]time.Time, total)
				ctx := context.Background()
				var before int64
				for _, n := range nodes {
					before += n.gate.sent.Load()
				}
				for b.Loop() {
					start := time.Now()
					for i := range total {
						at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
						if d := time.Until(at); d > 0 {
							time.Sleep(d)
						}
						k := "k" + strconv.Itoa(i)
						sent[i] = time.Now()
						nodes[0].tr.Track(ctx, k, "room:"+strconv.Itoa(i%100), k, []byte(`{"status":"online"}`))
					}
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					nodes[1].mu.Lock()
					n := len(nodes[1].seen)
					nodes[1].mu.Unlock()
					if n >= total || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				var lat []time.Duration
				nodes[1].mu.Lock()
				for i := range total {
					if t, ok := nodes[1].seen["k"+strconv.Itoa(i)]; ok {
						lat = append(lat, t.Sub(sent[i]))
					}
				}
				nodes[1].mu.Unlock()
				if len(lat) < total {
					b.Fatalf("%d of %d changes arrived", len(lat), total)
				}
				slices.Sort(lat)
				var after int64
				for _, n := range nodes {
					after += n.gate.sent.Load()
				}
				ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
				b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
				b.ReportMetric(ms(lat[len(lat)-1]), "max_ms")
				b.ReportMetric(float64(after-before)/float64(total), "wire_B/change")
			})
		}
	}
}

// BenchmarkHealConvergence: three nodes with 100k presences each are
// partitioned (each alone) long enough to hold each other as down; during
// the split each node replaces 10% of its presences; then the partition
// heals. Reports the time until every node lists exactly the 300k live
// presences.
func BenchmarkHealConvergence(b *testing.B) {
	for _, kind := range []string{"nats", "redis"} {
		b.Run(kind, func(b *testing.B) {
			cfg := tracker.Config{BroadcastPeriod: 100 * time.Millisecond, DownPeriod: time.Second,
				PermdownPeriod: time.Minute, InboxSize: 1 << 16}
			nodes := startBenchNodes(b, kind, 3, cfg)
			ctx := context.Background()
			const per = 100_000
			const topics = 1000
			for i, n := range nodes {
				for j := range per {
					k := fmt.Sprintf("n%d-%d", i, j)
					n.tr.Track(ctx, k, "room:"+strconv.Itoa(j%topics), k, []byte(`{}`))
				}
			}
			count := func(n *benchNode) int {
				c := 0
				for t := range topics {
					c += n.tr.Count("room:" + strconv.Itoa(t))
				}
				return c
			}
			wait := func(what string, want int, within time.Duration) time.Duration {
				start := time.Now()
				for {
					ok := true
					for _, n := range nodes {
						if count(n) != want {
							ok = false
							break
						}
					}
					if ok {
						return time.Since(start)
					}
					if time.Since(start) > within {
						got := []int{}
						for _, n := range nodes {
							got = append(got, count(n))
						}
						b.Fatalf("%s: counts %v, want %d", what, got, want)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			wait("initial sync", 3*per, 60*time.Second)
			for b.Loop() {
				b.StopTimer()
				for _, n := range nodes {
					n.gate.cut.Store(true)
				}
				wait("split", per, 10*time.Second)
				for i, n := range nodes {
					for j := range per / 10 {
						k := fmt.Sprintf("n%d-%d", i, j)
						n.tr.Untrack(ctx, k, "room:"+strconv.Itoa(j%topics), k)
						k2 := fmt.Sprintf("n%d-new-%d-%d", i, j, time.Now().UnixNano())
						n.tr.Track(ctx, k2, "room:"+strconv.Itoa(j%topics), k2, []byte(`{}`))
					}
				}
				time.Sleep(300 * time.Millisecond)
				b.StartTimer()
				start := time.Now()
				for _, n := range nodes {
					n.gate.cut.Store(false)
				}
				wait("heal", 3*per, 30*time.Second)
				b.ReportMetric(float64(time.Since(start))/1e6, "heal_ms")
			}
		})
	}
}
