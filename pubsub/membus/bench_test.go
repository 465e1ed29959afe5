package membus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/membus"
)

// BenchmarkBroadcast measures end-to-end broadcast throughput on a network
// of 3 nodes with one subscriber each: the time per message runs from the
// first Broadcast until every subscriber has handled the last one.
func BenchmarkBroadcast(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			net := membus.NewNetwork()
			var buses []*membus.Bus
			var received atomic.Int64
			for i := range 3 {
				bus, _ := net.Join("n" + strconv.Itoa(i))
				defer bus.Close()
				bus.Subscribe("t", func(pubsub.Message) { received.Add(1) })
				buses = append(buses, bus)
			}
			data := make([]byte, size)
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var count int64
			for b.Loop() {
				count++
				buses[0].Broadcast(ctx, "t", data)
			}
			deadline := time.Now().Add(10 * time.Second)
			for received.Load() < 3*count {
				if time.Now().After(deadline) {
					b.Fatalf("received %d of %d", received.Load(), 3*count)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}
