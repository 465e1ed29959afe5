package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
)

// A single node on the in-process default bus: track two devices of one
// user, update one, and watch the diffs.
func Example() {
	ctx := context.Background()
	p, err := presence.New(presence.Config{})
	if err != nil {
		panic(err)
	}
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	defer p.Shutdown(ctx)

	diffs := make(chan presence.Diff, 10)
	cancel := p.Subscribe("room:lobby", func(d presence.Diff) { diffs <- d })
	defer cancel()

	p.Track(ctx, "socket-1", "room:lobby", "alice", json.RawMessage(`{"device":"phone","status":"online"}`))
	p.Track(ctx, "socket-2", "room:lobby", "alice", json.RawMessage(`{"device":"laptop","status":"online"}`))
	p.Update(ctx, "socket-2", "room:lobby", "alice", json.RawMessage(`{"device":"laptop","status":"away"}`))

	for range 3 {
		d := <-diffs
		fmt.Printf("joins=%d leaves=%d online=%v\n", len(d.Joins), len(d.Leaves), d.Online)
	}
	fmt.Println("alice has", len(p.List("room:lobby")["alice"].Metas), "metas")
	// Output:
	// joins=1 leaves=0 online=[alice]
	// joins=1 leaves=0 online=[]
	// joins=1 leaves=1 online=[]
	// alice has 2 metas
}

// Three nodes on an in-process network: a presence tracked on one node is
// listed on the others within the flush interval.
func Example_cluster() {
	ctx := context.Background()
	network := membus.NewNetwork()
	var nodes []*presence.Presence
	for _, name := range []string{"n1", "n2", "n3"} {
		bus, _ := network.Join(name)
		defer bus.Close()
		p, err := presence.New(presence.Config{Tracker: tracker.Config{Bus: bus}})
		if err != nil {
			panic(err)
		}
		p.Start(ctx)
		defer p.Shutdown(ctx)
		nodes = append(nodes, p)
	}
	// Nodes discover each other through their first heartbeats.
	time.Sleep(100 * time.Millisecond)
	nodes[0].Track(ctx, "socket-1", "room:lobby", "alice", json.RawMessage(`{"status":"online"}`))
	for _, p := range nodes { // replication takes a few milliseconds
		for p.Count("room:lobby") == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, p := range nodes {
		fmt.Println(len(p.List("room:lobby")))
	}
	// Output:
	// 1
	// 1
	// 1
}
