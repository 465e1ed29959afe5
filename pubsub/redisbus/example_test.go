package redisbus_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/redisbus"
)

// Two nodes sharing one Redis (a server must listen on the URL's address,
// which is why this example has no checked output).
func Example() {
	ctx := context.Background()
	const url = "redis://127.0.0.1:6379"
	n1, err := redisbus.New(ctx, redisbus.Config{URL: url, NodeName: "n1"})
	if err != nil {
		log.Fatal(err)
	}
	defer n1.Close()
	n2, err := redisbus.New(ctx, redisbus.Config{URL: url, NodeName: "n2"})
	if err != nil {
		log.Fatal(err)
	}
	defer n2.Close()

	got := make(chan pubsub.Message, 1)
	n2.Subscribe("room:lobby", func(m pubsub.Message) { got <- m })
	n1.Broadcast(ctx, "room:lobby", []byte("hello"))
	m := <-got
	fmt.Printf("%s got %q from %s\n", n2.NodeName(), m.Data, m.From)
}
