package tracker_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
)

var meta = []byte(`{"status":"online"}`)

func benchTracker(b *testing.B, pool int) *tracker.Tracker {
	bus := membus.New("bench")
	tr, err := tracker.New(tracker.Config{Bus: bus, PoolSize: pool}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tr.Start(context.Background())
	b.Cleanup(func() { tr.Close(); bus.Close() })
	return tr
}

// owners and topics are made up front so the benchmark measures tracking.
func names(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// BenchmarkTrack: tracks through the Tracker API, building up to 1M
// presences over 1,000 topics (then starting over on a fresh tracker).
func BenchmarkTrack(b *testing.B) {
	const total = 1_000_000
	owners := names(total, "conn-")
	topics := names(1000, "room:")
	ctx := context.Background()
	tr := benchTracker(b, 1)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == total {
			b.StopTimer()
			tr.Close()
			tr = benchTracker(b, 1)
			i = 0
			b.StartTimer()
		}
		if _, err := tr.Track(ctx, owners[i], topics[i%1000], owners[i], meta); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tracks/s")
}

// BenchmarkTrackParallel: the same from GOMAXPROCS goroutines over a pool
// of shards.
func BenchmarkTrackParallel(b *testing.B) {
	ctx := context.Background()
	tr := benchTracker(b, 8)
	topics := names(1000, "room:")
	var seq atomicCounter
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.next()
			o := "conn-" + strconv.Itoa(i)
			if _, err := tr.Track(ctx, o, topics[i%1000], o, meta); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tracks/s")
}

// BenchmarkMemoryPerPresence: heap bytes per tracked presence at 1M
// presences over 1,000 topics, minus the meta bytes themselves.
func BenchmarkMemoryPerPresence(b *testing.B) {
	const total = 1_000_000
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		owners := names(total, "conn-")
		topics := names(1000, "room:")
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		bus := membus.New("mem")
		tr, _ := tracker.New(tracker.Config{Bus: bus}, nil)
		tr.Start(ctx)
		b.StartTimer()
		for i := range total {
			tr.Track(ctx, owners[i], topics[i%1000], owners[i], meta)
		}
		b.StopTimer()
		time.Sleep(50 * time.Millisecond) // let the pending delta go out
		runtime.GC()
		runtime.ReadMemStats(&after)
		metaBytes := len(`{"phx_ref":"AAAAAAAAAAAAAAAA",`) + len(meta) - 1
		per := float64(after.HeapAlloc-before.HeapAlloc)/total - float64(metaBytes)
		b.ReportMetric(per, "bytes/presence")
		runtime.KeepAlive(owners)
		tr.Close()
		bus.Close()
		b.StartTimer()
	}
}

func filled(b *testing.B, n int, topic string) *tracker.Tracker {
	tr := benchTracker(b, 1)
	ctx := context.Background()
	for i := range n {
		o := "conn-" + strconv.Itoa(i)
		tr.Track(ctx, o, topic, o, meta)
	}
	return tr
}

// BenchmarkList10k: List of a topic with 10,000 presences.
func BenchmarkList10k(b *testing.B) {
	tr := filled(b, 10000, "room:big")
	b.ReportAllocs()
	for b.Loop() {
		if len(tr.List("room:big")) != 10000 {
			b.Fatal("short list")
		}
	}
}

// BenchmarkUpdate: update of one presence among 100k.
func BenchmarkUpdate(b *testing.B) {
	tr := filled(b, 100000, "room:1")
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		o := "conn-" + strconv.Itoa(i%100000)
		if _, err := tr.Update(ctx, o, "room:1", o, meta); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkUntrack: untrack (and re-track, untimed) among 100k.
func BenchmarkUntrack(b *testing.B) {
	tr := filled(b, 100000, "room:1")
	ctx := context.Background()
	i := 0
	for b.Loop() {
		o := "conn-" + strconv.Itoa(i%100000)
		tr.Untrack(ctx, o, "room:1", o)
		b.StopTimer()
		tr.Track(ctx, o, "room:1", o, meta)
		b.StartTimer()
		i++
	}
}

// BenchmarkMergeDelta10k: merging a delta of 10,000 joins from a peer.
func BenchmarkMergeDelta10k(b *testing.B) {
	ra, rb := crdt.Replica{Name: "a", Vsn: 1}, crdt.Replica{Name: "b", Vsn: 1}
	src := crdt.New(ra)
	for i := range 10000 {
		o := fmt.Sprintf("a:%d", i)
		src.Join(o, "room:"+strconv.Itoa(i%100), o, meta)
	}
	d := src.TakeDelta()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dst := crdt.New(rb)
		dst.ReplicaUp(ra)
		b.StartTimer()
		if got := dst.MergeDelta(d); len(got.Joins) != 10000 {
			b.Fatal(len(got.Joins))
		}
	}
}

// BenchmarkFullTransfer1M: extract, encode, decode and merge a full state
// of 1M presences.
func BenchmarkFullTransfer1M(b *testing.B) {
	ra, rb := crdt.Replica{Name: "a", Vsn: 1}, crdt.Replica{Name: "b", Vsn: 1}
	src := crdt.New(ra)
	src.ReplicaUp(rb)
	for i := range 1_000_000 {
		o := "a:" + strconv.Itoa(i)
		src.Join(o, "room:"+strconv.Itoa(i%1000), o, meta)
	}
	src.TakeDelta()
	for b.Loop() {
		b.StopTimer()
		dst := crdt.New(rb)
		dst.ReplicaUp(ra)
		b.StartTimer()
		x := src.Extract(dst.Clocks())
		if got := dst.MergeExtract(x); len(got.Joins) != 1_000_000 {
			b.Fatal(len(got.Joins))
		}
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int { return int(c.n.Add(1)) }

// BenchmarkRawShardTrack: the pure core alone (no lock, no flush, no
// network), 1M presences over 1,000 topics, a heartbeat every 5,000
// tracks as the flush timer would under this load.
func BenchmarkRawShardTrack(b *testing.B) {
	const total = 1_000_000
	owners := names(total, "conn-")
	topics := names(1000, "room:")
	s := rawshard.New(crdt.Replica{Name: "n1", Vsn: 1}, rawshard.DefaultConfig())
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == total {
			b.StopTimer()
			s = rawshard.New(crdt.Replica{Name: "n1", Vsn: 1}, rawshard.DefaultConfig())
			i = 0
			b.StartTimer()
		}
		s.Track(0, owners[i], topics[i%1000], owners[i], meta)
		i++
		if i%5000 == 0 {
			s.Heartbeat()
			s.Ready()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tracks/s")
}
