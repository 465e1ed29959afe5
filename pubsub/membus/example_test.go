package membus_test

import (
	"context"
	"fmt"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/membus"
)

func Example() {
	net := membus.NewNetwork()
	n1, _ := net.Join("n1")
	n2, _ := net.Join("n2")
	defer n1.Close()
	defer n2.Close()

	got := make(chan pubsub.Message)
	n2.Subscribe("room:lobby", func(m pubsub.Message) { got <- m })

	n1.Broadcast(context.Background(), "room:lobby", []byte("hello"))
	m := <-got
	fmt.Printf("%s got %q from %s\n", n2.NodeName(), m.Data, m.From)

	// Cut n1 off: its messages no longer reach n2.
	net.Partition([]string{"n1"}, []string{"n2"})
	n1.Broadcast(context.Background(), "room:lobby", []byte("lost"))
	net.Heal()
	n1.Broadcast(context.Background(), "room:lobby", []byte("again"))
	m = <-got
	fmt.Printf("%s got %q from %s\n", n2.NodeName(), m.Data, m.From)
	// Output:
	// n2 got "hello" from n1
	// n2 got "again" from n1
}
